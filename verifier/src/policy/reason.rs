//! Findings: what the policy engine noticed, with a stable reason code, a severity and a
//! human sentence carrying the figures.

use std::fmt;

use serde::{Serialize, Serializer};
use tppguard_proto::claims::GpuStatus;
use tppguard_proto::evidence::EvidenceTier;
use tppguard_proto::licence::CountryCode;
use tppguard_proto::tpp::Precision;
use tppguard_proto::units::{Tops, Tpp};

/// How bad a finding is. Ordered, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing to do.
    #[default]
    Info,
    /// Needs attention, but the licence conditions still hold.
    Warning,
    /// The evidence cannot establish that a licence condition holds (simulated, stale,
    /// unidentified or unlisted hardware, a tier below the licence's): the verdict is at best
    /// `unproven`.
    Unproven,
    /// A licence condition is broken: the fleet is not compliant.
    Violation,
}

impl Severity {
    /// The stable snake_case code, as serialized.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Unproven => "unproven",
            Self::Violation => "violation",
        }
    }
}

/// Where a TPP figure comes from: the spec table (the GPU's identity) or its measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TppSource {
    /// The spec table's figures for the GPU's identity.
    Spec,
    /// The GPU's measured dense rates (a lower bound on its TPP).
    Measured,
}

impl TppSource {
    /// The stable snake_case code, as serialized.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Spec => "spec",
            Self::Measured => "measured",
        }
    }
}

/// Which fact about the licensee a party rule bit on: its own headquarters, or its ultimate
/// parent's (15 CFR 742.6(a)(6)(iii)(A) turns on either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyProng {
    /// The licensee's own headquarters.
    Headquarters,
    /// Its ultimate parent's headquarters.
    UltimateParent,
}

/// A measured rate over its spec figure, exact to four decimals (rounded half up). Serialized
/// as a number (`0.6672`); shown with two decimals (`0.67`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecRatio(u64);

impl SpecRatio {
    /// `measured / spec`; `None` for a zero spec figure.
    pub fn new(measured: Tops, spec: Tops) -> Option<Self> {
        let spec = u128::from(spec.raw());
        let twice = u128::from(measured.raw())
            .checked_mul(20_000)?
            .checked_add(spec)?;
        let ratio = twice.checked_div(spec.checked_mul(2)?)?;
        u64::try_from(ratio).ok().map(Self)
    }

    /// The ratio in ten-thousandths (`6672` for 0.6672).
    pub const fn ten_thousandths(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SpecRatio {
    /// Two decimals, rounded half up: `0.67`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hundredths = self.0.saturating_add(50) / 100;
        f.pad(&format!("{}.{:02}", hundredths / 100, hundredths % 100))
    }
}

impl Serialize for SpecRatio {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = format!("{}.{:04}", self.0 / 10_000, self.0 % 10_000);
        serializer.serialize_f64(text.parse().unwrap_or(f64::NAN))
    }
}

/// A rate for a sentence: TOPS with one decimal (the figures keep all four).
fn tops_text(tops: Tops) -> String {
    format!("{:.1}", tops.as_f64())
}

/// Why a finding was raised, with the figures behind it. Serialized (untagged) as the
/// finding's `figures`. Codes are added, never renamed or reused.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Reason {
    /// The GPU's model is not among the licence's `models`.
    ModelNotAllowed {
        /// The model as the spec table names it; `None` when the device is unknown.
        model: Option<String>,
    },
    /// The GPU's ECCN under the rule set is not among the licence's `eccns`.
    EccnNotAllowed {
        /// The ECCN the verifier computed; `None` when the device is not under the rule
        /// set's ECCN or its classification is indeterminate.
        eccn: Option<String>,
        /// The outcome under the rule set (`3A090.a`, `not_3a090`, `indeterminate`), when
        /// the device is known.
        outcome: Option<String>,
    },
    /// The GPU's TPP is above the licence's per-device cap: its spec TPP, or else its
    /// measured TPP (whatever model it claims to be).
    DeviceTppAboveCap {
        /// The device's TPP.
        tpp: Tpp,
        /// The licence's `max_tpp_per_device`.
        cap: Tpp,
        /// Where `tpp` comes from: the spec table, or the measurement.
        basis: TppSource,
    },
    /// The node's evidence is weaker than the licence requires.
    EvidenceTierTooLow {
        /// The tier the node's attestation reaches.
        have: EvidenceTier,
        /// The licence's `min_evidence_tier`.
        need: EvidenceTier,
        /// GPUs of the node the licence counts.
        gpus: u64,
    },
    /// The GPU's identity is not in the spec table: it counts as a device with TPP unknown.
    UnknownDevice {
        /// The spec lookup's reason code (`pci_id_not_listed`, ...).
        lookup: &'static str,
        /// The spec lookup's sentence.
        detail: String,
    },
    /// NVML reports the GPU lost or unreadable.
    GpuLost {
        /// The status the agent reported.
        status: GpuStatus,
    },
    /// The same (UUID, serial) appears in more than one place in the current attestations.
    DuplicateDevice {
        /// The GPU's UUID (normalised; `unknown` when a duplicate found by hardware identity
        /// has none).
        uuid: String,
        /// The GPU's hardware identity (SHA-256 of its device certificate's key), when the
        /// duplicate was found by it: the same GPU signed evidence in several places.
        #[serde(skip_serializing_if = "Option::is_none")]
        hardware_id: Option<String>,
        /// The GPU's serial, when reported.
        serial: Option<String>,
        /// Every place it appears, `node/submod`, sorted.
        seen_in: Vec<String>,
        /// The place where it counts, `node/submod`.
        counted_in: String,
        /// The licence it counts against, when its node has one.
        counted_against: Option<String>,
        /// Whether its places differ in licence or site: then a violation (one device
        /// cannot stand in two places), else a warning.
        across_licences_or_sites: bool,
    },
    /// The node's latest attestation is older than the licence allows; its GPUs still count.
    StaleNode {
        /// When the latest attestation was made, Unix seconds.
        iat: i64,
        /// Its age at the evaluation instant, seconds.
        age_s: u64,
        /// The oldest allowed, seconds.
        max_age_s: u64,
    },
    /// The node's latest attestation claims to be from the future (beyond the allowed clock
    /// skew).
    AttestationFromFuture {
        /// When the attestation claims it was made, Unix seconds.
        iat: i64,
        /// The evaluation instant, Unix seconds.
        at: i64,
        /// How far ahead, seconds.
        ahead_s: u64,
        /// The clock skew allowed, seconds.
        max_skew_s: u64,
    },
    /// The licence's validity has not started.
    LicenceNotYetValid {
        /// Start of validity, Unix seconds.
        valid_from: i64,
        /// Seconds until it starts.
        starts_in_s: u64,
        /// Devices counted against it.
        devices: u64,
    },
    /// The licence's validity has ended.
    LicenceExpired {
        /// End of validity, Unix seconds (exclusive).
        valid_until: i64,
        /// Seconds since it ended.
        expired_for_s: u64,
        /// Devices counted against it.
        devices: u64,
    },
    /// The licence names another rule set than the one evaluated.
    LicenceRuleSetMismatch {
        /// The licence's `rule_set`.
        licence_rule_set: String,
        /// The rule set of this evaluation.
        rule_set: String,
    },
    /// The node could not be assigned to a licence: its GPUs are covered by none.
    NodeUnassigned {
        /// Licences evaluated.
        licences: u64,
        /// GPUs of the node.
        gpus: u64,
        /// The site the node names, which no licence lists; `None` when it names none (and
        /// not exactly one licence is evaluated).
        site: Option<String>,
    },
    /// The licence's aggregate TPP is above its cap.
    AggregateTppAboveCap {
        /// TPP counted against it.
        used: Tpp,
        /// Its `max_aggregate_tpp`.
        cap: Tpp,
        /// `used - cap`.
        over_by: Tpp,
    },
    /// More devices count against the licence than it covers.
    DeviceCountAboveCap {
        /// Devices counted against it.
        used: u64,
        /// Its `max_devices`.
        cap: u64,
        /// `used - cap`.
        over_by: u64,
    },
    /// The agent's own classification differs from the verifier's (shown only; the
    /// verifier's figures are the ones used).
    AgentClassificationMismatch {
        /// The agent's ECCN.
        agent_eccn: Option<String>,
        /// The verifier's outcome under the rule set.
        eccn: Option<String>,
        /// The agent's TPP.
        agent_tpp: Option<f64>,
        /// The verifier's TPP.
        tpp: Option<Tpp>,
    },
    /// Several licences list the same site id; its nodes count against the stricter one.
    SiteInSeveralLicences {
        /// The site id.
        site: String,
        /// The licences listing it, by id.
        licences: Vec<String>,
        /// The licence its nodes count against (smaller `max_aggregate_tpp`, then id).
        counted_against: String,
    },
    /// A destination country's TPP, across licences, is above the rule set's allocation.
    CountryAllocationExceeded {
        /// The country.
        country: CountryCode,
        /// Its group under the rule set (`tier_2`).
        tier: Option<String>,
        /// TPP counted in the country.
        used: Tpp,
        /// The allocation.
        cap: Tpp,
        /// `used - cap`.
        over_by: Tpp,
        /// The period the allocation covers.
        period: String,
    },
    /// The node's inventory came from the agent's simulated driver (`tppguard.simulated`):
    /// no real GPU was read. Its GPUs count as claimed, but the evidence proves nothing about
    /// hardware.
    SimulatedInventory {
        /// GPUs the simulated inventory lists.
        gpus: u64,
    },
    /// A measured dense rate is above the spec figure for the same precision by more than
    /// the tolerance: the part is more capable than its identity claims.
    ExceedsSpec {
        /// The spec-table model the GPU's identity names.
        model: String,
        /// The precision.
        precision: Precision,
        /// The measured median, TOPS (truncated to four decimals).
        measured_tops: Tops,
        /// The spec figure, TOPS.
        spec_tops: Tops,
        /// `measured_tops / spec_tops`.
        ratio: SpecRatio,
        /// The tolerance above spec, percent (`exceeds_spec_percent`).
        tolerance_percent: u32,
    },
    /// A measured dense rate is below the spec figure for the same precision by more than
    /// the tolerance: derated, throttled or power-capped.
    BelowSpec {
        /// The spec-table model the GPU's identity names.
        model: String,
        /// The precision.
        precision: Precision,
        /// The measured median, TOPS (truncated to four decimals).
        measured_tops: Tops,
        /// The spec figure, TOPS.
        spec_tops: Tops,
        /// `measured_tops / spec_tops`.
        ratio: SpecRatio,
        /// The tolerance below spec, percent (`below_spec_percent`).
        tolerance_percent: u32,
        /// Lowest SM clock seen during the measurement, MHz.
        sm_clock_mhz_min: Option<u32>,
        /// Highest SM clock seen during the measurement, MHz.
        sm_clock_mhz_max: Option<u32>,
        /// The GPU's maximum SM clock (inventory), MHz.
        max_sm_clock_mhz: Option<u32>,
        /// Highest temperature seen, °C.
        temperature_c_max: Option<u32>,
        /// Highest power draw seen, milliwatts.
        power_mw_max: Option<u32>,
        /// The GPU's power limit (inventory), milliwatts.
        power_limit_mw: Option<u32>,
        /// Every clock throttle reason seen, sorted.
        throttle_reasons: Vec<String>,
    },
    /// The GPU's identity is not in the spec table, but it carries a measurement: it is
    /// classified by its measured figures alone, and counts with its measured TPP, a lower
    /// bound. Raised instead of `unknown_device`.
    UnlistedDevice {
        /// The spec lookup's reason code (`pci_id_not_listed`, ...).
        lookup: &'static str,
        /// The spec lookup's sentence.
        detail: String,
        /// The measured TPP: the maximum over precisions of the measured median x bit
        /// length, rounded down; a lower bound on the device's TPP.
        measured_tpp: Tpp,
        /// The precision that set it.
        precision: Precision,
        /// Its measured median, TOPS.
        measured_tops: Tops,
        /// The outcome under the rule set from the measured figures (die area and
        /// bandwidths unknown, treated as designed for datacenters).
        outcome: String,
    },
    /// The node claims the `measured` evidence tier, but its measurements do not back it:
    /// the licence's `min_evidence_tier` is checked against `declared`.
    MeasuredTierDowngraded {
        /// The tier the attestation claims.
        claimed: EvidenceTier,
        /// The tier it is evaluated at.
        effective: EvidenceTier,
        /// GPUs of the node that count.
        gpus: u64,
        /// Of those, GPUs without a measurement.
        unmeasured: u64,
        /// GPUs whose measurement is above spec (`exceeds_spec`).
        exceeding: u64,
        /// GPUs not in the spec table (`unlisted_device`).
        unlisted: u64,
        /// GPUs whose measured precisions have no spec figure to hold them against.
        no_spec_figure: u64,
        /// GPUs whose measurement is older than `max_age_days` (or dated after the
        /// attestation).
        stale: u64,
        /// GPUs whose measurement is simulated (or the whole inventory is): never evidence.
        simulated: u64,
    },
    /// The node claims the `hardware` tier, but no verified hardware evidence backs it: the
    /// tier is the one the verifier derived.
    HardwareTierUnverified {
        /// The tier it is evaluated at.
        effective: EvidenceTier,
        /// GPUs of the node (duplicates counted elsewhere left out).
        gpus: u64,
        /// GPUs that carry no evidence of their own.
        without_evidence: u64,
        /// GPUs whose evidence did not verify (`gpu_evidence_failed`).
        failed: u64,
    },
    /// A GPU's own evidence (its signed SPDM report and device certificate chain) did not
    /// verify: the GPU does not back the `hardware` tier. The checks say why.
    GpuEvidenceFailed {
        /// The checks that failed, by name, in check order.
        failed: Vec<String>,
        /// The first failed check's reason code.
        first_code: String,
        /// The first failed check's sentence.
        detail: String,
    },
    /// One GPU (one verified hardware identity) signed the reports of several submods of one
    /// attestation: root asked the same GPU for several GPUs' evidence. None of them backs
    /// the hardware tier.
    GpuEvidenceReused {
        /// The GPU's hardware identity.
        hardware_id: String,
        /// The submods it signed for.
        submods: Vec<String>,
    },
    /// GPUs reported without a UUID: nothing identifies them, so a duplicate or a move
    /// cannot be seen.
    GpuWithoutIdentity {
        /// How many.
        gpus: u64,
    },
    /// Several nodes (keys) share one certificate subject: they are kept apart.
    SubjectWithSeveralKeys {
        /// The subject.
        subject: String,
        /// The node ids, hex, sorted.
        nodes: Vec<String>,
    },
    /// One node key reports several machine ids: the key was copied to other hosts.
    NodeKeyOnSeveralMachines {
        /// The machine ids reported, sorted.
        machine_ids: Vec<String>,
    },
    /// The node claims a site other than the one its certificate certifies.
    SiteClaimMismatch {
        /// The site claimed (`tppguard.site`).
        claimed: String,
        /// The site certified by the operator CA.
        certified: String,
    },
    /// The node's certificate certifies no site: where it stands rests on its own claim.
    SiteNotCertified {
        /// The site it claims, if any.
        claimed: Option<String>,
    },
    /// The node's site differs from its previous attestation's.
    NodeSiteChanged {
        /// The earlier site.
        from: String,
        /// The current site.
        to: String,
    },
    /// The licence authority revoked the licence (a signed revocation): it no longer counts.
    LicenceRevoked {
        /// The authority's reason (outside text).
        reason: String,
        /// When the authority revoked it, Unix seconds.
        revoked_at: i64,
        /// Whether the verifier holds the licence itself (a revocation may arrive first).
        held: bool,
    },
    /// An administrator retired the licence: it no longer counts.
    LicenceRetired {
        /// Why.
        reason: String,
        /// When, Unix seconds.
        retired_at: i64,
        /// Who (a credential's name).
        retired_by: String,
    },
    /// An administrator retired the node: its GPUs no longer count; its history is kept.
    NodeRetired {
        /// Its certificate subject when retired.
        subject: String,
        /// Why.
        reason: String,
        /// When, Unix seconds.
        retired_at: i64,
        /// Who (a credential's name).
        retired_by: String,
    },
    /// A CRL revokes a certificate of the node's chain: its latest attestation no longer
    /// counts.
    NodeCertificateRevoked {
        /// The revoked certificate's subject.
        certificate: String,
        /// Its serial number, lower-case hex with colons.
        serial: String,
    },
    /// A stored record (a licence, an attestation, a lifecycle row) cannot be used: it is
    /// left out of the evaluation instead of stopping the verifier.
    StoredRecordUnusable {
        /// Which record.
        record: String,
        /// Why.
        problem: String,
    },
    /// Gating (issue 15), `enforce` mode: a GPU that had to be gated (its lease leaves it
    /// out, every GPU past the grace period with `fail_closed`, or the agent marks it) is
    /// reported not gated, or not held (compute mode read back other than `prohibited`).
    /// The node's own report: see docs/trust-model.md.
    GatingNotHeld {
        /// The GPU's NVML index, as the lease or the report names it.
        index: u32,
        /// The first reason code of the lease that leaves it out, when it does.
        excluded_for: Option<String>,
        /// The agent reports no valid lease past the grace period under `fail_closed`.
        lapsed_fail_closed: bool,
        /// Whether the report names the GPU at all.
        reported: bool,
        /// The compute mode read back, when reported.
        compute_mode: Option<tppguard_proto::lease::ComputeMode>,
        /// The NVML error code when acting or reading back failed.
        error: Option<String>,
        /// The lease acted on had expired when the attestation arrived (history, named).
        lease_expired: bool,
    },
    /// Gating, `observe` mode: the lease leaves GPUs out (or lapsed under `fail_closed`);
    /// they would have been gated, and are not.
    GatingObserveOnly {
        /// Their NVML indexes, ascending.
        gpus: Vec<u32>,
        /// The agent reports no valid lease past the grace period under `fail_closed`.
        lapsed_fail_closed: bool,
    },
    /// The gating report carries a lease this verifier did not sign for this node: a forged
    /// or borrowed lease.
    GatingLeaseForeign {
        /// Why (`lease_bad_signature`, `lease_other_node`, `lease_wrong_typ`, a parse code).
        problem: String,
        /// The detail.
        detail: String,
    },
    /// The node's licence fails closed, and the attestation carries no gating report (an
    /// agent without gating).
    GatingNotReported {
        /// The licence's `[lease] on_expiry`.
        on_expiry: tppguard_proto::lease::OnExpiry,
    },
    /// The licensee's headquarters or ultimate parent brings the licence's counted devices
    /// under a licence requirement at any destination abroad (a party rule of the rule set's
    /// `[licensing]`, 15 CFR 742.6(a)(6)(iii)(A)): this licence is what covers them. From the
    /// signed licence's party, never from a node.
    LicenceRequiredByParty {
        /// The licensee's headquarters country.
        headquarters: CountryCode,
        /// The rule's party group listing it (`d5_macau`), if any.
        headquarters_group: Option<String>,
        /// Its ultimate parent's headquarters country.
        ultimate_parent: CountryCode,
        /// The rule's party group listing it, if any.
        ultimate_parent_group: Option<String>,
        /// Which of the two the rule bit on.
        prong: PartyProng,
        /// The licensing rule (`742.6(a)(6)(iii)(A)`).
        rule: String,
        /// The rule set.
        rule_set: String,
        /// The devices' outcome (`3A090.a`).
        outcome: Option<String>,
        /// Counted devices it covers.
        devices: u64,
    },
    /// The licence's counted devices of one outcome need no licence under the rule set, for
    /// its destination and party: the licence's caps still apply, as its terms.
    NoLicenceRequired {
        /// The licence's destination.
        destination: CountryCode,
        /// Its group under the rule set.
        destination_group: Option<String>,
        /// The licensing rule that decided; `None` when the rule set's default did.
        rule: Option<String>,
        /// The rule set.
        rule_set: String,
        /// The devices' outcome; `None` for unknown devices.
        outcome: Option<String>,
        /// Counted devices it covers.
        devices: u64,
    },
    /// The rule set cannot say whether the licence's counted devices of one outcome need a
    /// licence (a destination in no group it encodes, no `[licensing]` table, an unknown
    /// device): check the regulation, and treat them as needing one until then.
    LicenceNeedUndetermined {
        /// The rule set.
        rule_set: String,
        /// The devices' outcome; `None` for unknown devices.
        outcome: Option<String>,
        /// Counted devices it covers.
        devices: u64,
        /// The determination's own sentence: why it cannot be decided.
        why: String,
    },
    /// A shipped GPU is attested by a node not proven at a site of the shipment's licence in
    /// its destination country: the node's certified site is not one of the licence's, or
    /// its certificate certifies none. About the shipment's licence; about the node and the
    /// GPU too only when `hardware_proven`.
    DivertedDevice {
        /// The shipment id.
        shipment: String,
        /// The vendor that signed it.
        vendor: String,
        /// The device as the shipment lists it.
        device: crate::policy::shipments::ShippedDevice,
        /// The node attesting it (node id, hex).
        node: String,
        /// Its submod name there (`gpu0`).
        gpu: String,
        /// Whether the GPU's verified hardware identity is the one the shipment records;
        /// otherwise it matched by UUID or serial alone, the vendor's word.
        hardware_proven: bool,
        /// The node's certified site; `None` when its certificate certifies none.
        site: Option<String>,
        /// That site's country, as an evaluated licence listing it places it.
        site_country: Option<CountryCode>,
        /// The sites of the shipment's licence.
        licensed_sites: Vec<String>,
        /// The licence's destination country.
        destination: CountryCode,
    },
    /// A shipped GPU is in no node's current attestation (a simulated one does not count)
    /// more than the licence's `unaccounted_after` after the shipment's delivery.
    UnaccountedDevice {
        /// The shipment id.
        shipment: String,
        /// The vendor that signed it.
        vendor: String,
        /// The device as the shipment lists it.
        device: crate::policy::shipments::ShippedDevice,
        /// The delivery site.
        site: String,
        /// When it was delivered, Unix seconds.
        delivered_at: i64,
        /// The licence's `unaccounted_after`, seconds.
        unaccounted_after_s: u64,
        /// How far past it the evaluation instant is, seconds.
        overdue_s: u64,
    },
    /// A GPU counted under a licence that requires shipments is on none of its shipments.
    UnshippedDevice {
        /// Its UUID, as the node reports it.
        uuid: Option<String>,
        /// Its serial, as the node reports it.
        serial: Option<String>,
        /// Whether the node's inventory is simulated (its GPUs are on no shipment).
        simulated: bool,
        /// The licence's shipments evaluated.
        shipments: u64,
    },
    /// One shipped GPU is attested in several places. About the shipment's licence; the node
    /// and GPU are the first place.
    ShippedDeviceDuplicated {
        /// The shipment id.
        shipment: String,
        /// The vendor that signed it.
        vendor: String,
        /// The device as the shipment lists it.
        device: crate::policy::shipments::ShippedDevice,
        /// Every place it appears, `node/submod`, sorted.
        seen_in: Vec<String>,
    },
    /// A shipment's delivery site is not a site of its licence.
    ShipmentSiteNotLicensed {
        /// The shipment id.
        shipment: String,
        /// The vendor that signed it.
        vendor: String,
        /// The delivery site.
        site: String,
        /// The delivery country the shipment signs.
        country: CountryCode,
        /// The licence's sites.
        licensed_sites: Vec<String>,
    },
    /// A shipment's licence is not among the licences evaluated: its devices cannot be
    /// followed. The finding names that licence id.
    ShipmentLicenceUnknown {
        /// The shipment id.
        shipment: String,
        /// The vendor that signed it.
        vendor: String,
        /// The licence it ships under.
        licence: String,
        /// The devices it lists.
        devices: u64,
    },
}

impl Reason {
    /// Every code, in declaration order (documentation and the uniqueness test).
    pub const CODES: [&'static str; 50] = [
        "model_not_allowed",
        "eccn_not_allowed",
        "device_tpp_above_cap",
        "evidence_tier_too_low",
        "unknown_device",
        "gpu_lost",
        "duplicate_device",
        "stale_node",
        "attestation_from_future",
        "licence_not_yet_valid",
        "licence_expired",
        "licence_rule_set_mismatch",
        "node_unassigned",
        "aggregate_tpp_above_cap",
        "device_count_above_cap",
        "agent_classification_mismatch",
        "site_in_several_licences",
        "country_allocation_exceeded",
        "simulated_inventory",
        "exceeds_spec",
        "below_spec",
        "unlisted_device",
        "measured_tier_downgraded",
        "hardware_tier_unverified",
        "gpu_evidence_failed",
        "gpu_evidence_reused",
        "gpu_without_identity",
        "subject_with_several_keys",
        "node_key_on_several_machines",
        "site_claim_mismatch",
        "site_not_certified",
        "node_site_changed",
        "licence_revoked",
        "licence_retired",
        "node_retired",
        "node_certificate_revoked",
        "stored_record_unusable",
        "gating_not_held",
        "gating_observe_only",
        "gating_lease_foreign",
        "gating_not_reported",
        "licence_required_by_party",
        "no_licence_required",
        "licence_need_undetermined",
        "diverted_device",
        "unaccounted_device",
        "unshipped_device",
        "shipped_device_duplicated",
        "shipment_site_not_licensed",
        "shipment_licence_unknown",
    ];

    /// The stable snake_case reason code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::ModelNotAllowed { .. } => "model_not_allowed",
            Self::EccnNotAllowed { .. } => "eccn_not_allowed",
            Self::DeviceTppAboveCap { .. } => "device_tpp_above_cap",
            Self::EvidenceTierTooLow { .. } => "evidence_tier_too_low",
            Self::UnknownDevice { .. } => "unknown_device",
            Self::GpuLost { .. } => "gpu_lost",
            Self::DuplicateDevice { .. } => "duplicate_device",
            Self::StaleNode { .. } => "stale_node",
            Self::AttestationFromFuture { .. } => "attestation_from_future",
            Self::LicenceNotYetValid { .. } => "licence_not_yet_valid",
            Self::LicenceExpired { .. } => "licence_expired",
            Self::LicenceRuleSetMismatch { .. } => "licence_rule_set_mismatch",
            Self::NodeUnassigned { .. } => "node_unassigned",
            Self::AggregateTppAboveCap { .. } => "aggregate_tpp_above_cap",
            Self::DeviceCountAboveCap { .. } => "device_count_above_cap",
            Self::AgentClassificationMismatch { .. } => "agent_classification_mismatch",
            Self::SiteInSeveralLicences { .. } => "site_in_several_licences",
            Self::CountryAllocationExceeded { .. } => "country_allocation_exceeded",
            Self::SimulatedInventory { .. } => "simulated_inventory",
            Self::ExceedsSpec { .. } => "exceeds_spec",
            Self::BelowSpec { .. } => "below_spec",
            Self::UnlistedDevice { .. } => "unlisted_device",
            Self::MeasuredTierDowngraded { .. } => "measured_tier_downgraded",
            Self::HardwareTierUnverified { .. } => "hardware_tier_unverified",
            Self::GpuEvidenceFailed { .. } => "gpu_evidence_failed",
            Self::GpuEvidenceReused { .. } => "gpu_evidence_reused",
            Self::GpuWithoutIdentity { .. } => "gpu_without_identity",
            Self::SubjectWithSeveralKeys { .. } => "subject_with_several_keys",
            Self::NodeKeyOnSeveralMachines { .. } => "node_key_on_several_machines",
            Self::SiteClaimMismatch { .. } => "site_claim_mismatch",
            Self::SiteNotCertified { .. } => "site_not_certified",
            Self::NodeSiteChanged { .. } => "node_site_changed",
            Self::LicenceRevoked { .. } => "licence_revoked",
            Self::LicenceRetired { .. } => "licence_retired",
            Self::NodeRetired { .. } => "node_retired",
            Self::NodeCertificateRevoked { .. } => "node_certificate_revoked",
            Self::StoredRecordUnusable { .. } => "stored_record_unusable",
            Self::GatingNotHeld { .. } => "gating_not_held",
            Self::GatingObserveOnly { .. } => "gating_observe_only",
            Self::GatingLeaseForeign { .. } => "gating_lease_foreign",
            Self::GatingNotReported { .. } => "gating_not_reported",
            Self::LicenceRequiredByParty { .. } => "licence_required_by_party",
            Self::NoLicenceRequired { .. } => "no_licence_required",
            Self::LicenceNeedUndetermined { .. } => "licence_need_undetermined",
            Self::DivertedDevice { .. } => "diverted_device",
            Self::UnaccountedDevice { .. } => "unaccounted_device",
            Self::UnshippedDevice { .. } => "unshipped_device",
            Self::ShippedDeviceDuplicated { .. } => "shipped_device_duplicated",
            Self::ShipmentSiteNotLicensed { .. } => "shipment_site_not_licensed",
            Self::ShipmentLicenceUnknown { .. } => "shipment_licence_unknown",
        }
    }

    /// How bad it is. A licence outside its validity is a violation only while devices
    /// count against it (a licence issued ahead of time is not a breach).
    pub const fn severity(&self) -> Severity {
        match self {
            Self::ModelNotAllowed { .. }
            | Self::EccnNotAllowed { .. }
            | Self::DeviceTppAboveCap { .. }
            | Self::NodeUnassigned { .. }
            | Self::AggregateTppAboveCap { .. }
            | Self::DeviceCountAboveCap { .. }
            | Self::CountryAllocationExceeded { .. }
            | Self::SiteClaimMismatch { .. }
            | Self::GpuEvidenceReused { .. }
            | Self::GatingNotHeld { .. }
            | Self::GatingLeaseForeign { .. }
            | Self::ExceedsSpec { .. } => Severity::Violation,
            Self::GatingObserveOnly { .. } | Self::GatingNotReported { .. } => Severity::Warning,
            Self::DuplicateDevice {
                across_licences_or_sites,
                ..
            } => {
                if *across_licences_or_sites {
                    Severity::Violation
                } else {
                    Severity::Warning
                }
            }
            Self::LicenceNotYetValid { devices, .. } | Self::LicenceExpired { devices, .. } => {
                if *devices > 0 {
                    Severity::Violation
                } else {
                    Severity::Warning
                }
            }
            Self::EvidenceTierTooLow { .. }
            | Self::UnknownDevice { .. }
            | Self::UnlistedDevice { .. }
            | Self::StaleNode { .. }
            | Self::AttestationFromFuture { .. }
            | Self::SimulatedInventory { .. }
            | Self::GpuWithoutIdentity { .. }
            | Self::NodeKeyOnSeveralMachines { .. }
            | Self::SiteNotCertified { .. }
            | Self::NodeCertificateRevoked { .. } => Severity::Unproven,
            Self::NodeRetired { .. }
            | Self::LicenceRequiredByParty { .. }
            | Self::NoLicenceRequired { .. } => Severity::Info,
            Self::GpuLost { .. }
            | Self::LicenceRuleSetMismatch { .. }
            | Self::AgentClassificationMismatch { .. }
            | Self::SiteInSeveralLicences { .. }
            | Self::BelowSpec { .. }
            | Self::MeasuredTierDowngraded { .. }
            | Self::HardwareTierUnverified { .. }
            | Self::GpuEvidenceFailed { .. }
            | Self::SubjectWithSeveralKeys { .. }
            | Self::NodeSiteChanged { .. }
            | Self::LicenceRevoked { .. }
            | Self::LicenceRetired { .. }
            | Self::StoredRecordUnusable { .. }
            | Self::LicenceNeedUndetermined { .. } => Severity::Warning,
            Self::DivertedDevice { .. }
            | Self::UnshippedDevice { .. }
            | Self::ShippedDeviceDuplicated { .. } => Severity::Violation,
            Self::UnaccountedDevice { .. }
            | Self::ShipmentSiteNotLicensed { .. }
            | Self::ShipmentLicenceUnknown { .. } => Severity::Warning,
        }
    }

    /// A human sentence with the figures (the subject, node or licence, is in the finding).
    /// Rendered by family, each in its own function below.
    pub fn sentence(&self) -> String {
        // No wildcard: a new variant does not compile until it is given a family.
        let family: fn(&Self) -> Option<String> = match self {
            Self::ModelNotAllowed { .. }
            | Self::EccnNotAllowed { .. }
            | Self::DeviceTppAboveCap { .. }
            | Self::AggregateTppAboveCap { .. }
            | Self::DeviceCountAboveCap { .. }
            | Self::CountryAllocationExceeded { .. }
            | Self::LicenceNotYetValid { .. }
            | Self::LicenceExpired { .. }
            | Self::LicenceRuleSetMismatch { .. } => Self::licence_sentence,
            Self::DuplicateDevice { .. }
            | Self::StaleNode { .. }
            | Self::AttestationFromFuture { .. }
            | Self::SimulatedInventory { .. }
            | Self::GpuWithoutIdentity { .. }
            | Self::SubjectWithSeveralKeys { .. }
            | Self::NodeKeyOnSeveralMachines { .. } => Self::node_sentence,
            Self::NodeUnassigned { .. }
            | Self::SiteInSeveralLicences { .. }
            | Self::SiteClaimMismatch { .. }
            | Self::SiteNotCertified { .. }
            | Self::NodeSiteChanged { .. } => Self::site_sentence,
            Self::UnknownDevice { .. }
            | Self::GpuLost { .. }
            | Self::AgentClassificationMismatch { .. }
            | Self::ExceedsSpec { .. }
            | Self::BelowSpec { .. }
            | Self::UnlistedDevice { .. } => Self::device_sentence,
            Self::EvidenceTierTooLow { .. }
            | Self::MeasuredTierDowngraded { .. }
            | Self::HardwareTierUnverified { .. }
            | Self::GpuEvidenceFailed { .. }
            | Self::GpuEvidenceReused { .. } => Self::evidence_sentence,
            Self::LicenceRevoked { .. }
            | Self::LicenceRetired { .. }
            | Self::NodeRetired { .. }
            | Self::NodeCertificateRevoked { .. }
            | Self::StoredRecordUnusable { .. } => Self::lifecycle_sentence,
            Self::GatingNotHeld { .. }
            | Self::GatingObserveOnly { .. }
            | Self::GatingLeaseForeign { .. }
            | Self::GatingNotReported { .. } => Self::gating_sentence,
            Self::LicenceRequiredByParty { .. }
            | Self::NoLicenceRequired { .. }
            | Self::LicenceNeedUndetermined { .. } => Self::need_sentence,
            Self::DivertedDevice { .. }
            | Self::UnaccountedDevice { .. }
            | Self::UnshippedDevice { .. }
            | Self::ShippedDeviceDuplicated { .. }
            | Self::ShipmentSiteNotLicensed { .. }
            | Self::ShipmentLicenceUnknown { .. } => Self::shipment_sentence,
        };
        family(self).unwrap_or_default()
    }

    /// Shipments (issue 15): where the vendor's shipped devices stand. Shipment text (ids,
    /// vendors, sites, identities) and node-reported identities are escaped.
    fn shipment_sentence(&self) -> Option<String> {
        use tppguard_proto::text::escape;
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| escape(i).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sentence = match self {
            Self::DivertedDevice {
                shipment,
                vendor,
                device,
                node,
                gpu,
                hardware_proven,
                site,
                site_country,
                licensed_sites,
                destination,
            } => {
                let proof = if *hardware_proven {
                    "matched by its verified hardware identity"
                } else {
                    "matched by UUID or serial only, not by a verified hardware identity, so it \
                     counts against this licence, not the node"
                };
                let where_ = match (site, site_country) {
                    (Some(s), Some(c)) => format!("at site {} (in {c})", escape(s)),
                    (Some(s), None) => {
                        format!("at site {} (no licence evaluated lists it)", escape(s))
                    }
                    (None, _) => "by a node whose certificate certifies no site, so it is not \
                                  proven at a licensed site"
                        .to_owned(),
                };
                format!(
                    "GPU {} of shipment {} (vendor {}), node {}'s {} ({proof}), is attested \
                     {where_}; this licence allows it only at its sites {} in {destination}: the \
                     device was moved outside its licence; return it to a licensed site, or have \
                     the licence amended and the shipment re-issued",
                    device.label(),
                    escape(shipment),
                    escape(vendor),
                    escape(node),
                    escape(gpu),
                    list(licensed_sites)
                )
            }
            Self::UnaccountedDevice {
                shipment,
                vendor,
                device,
                site,
                delivered_at,
                unaccounted_after_s,
                overdue_s,
            } => format!(
                "GPU {} of shipment {} (vendor {}), delivered to site {} at {}, is in no node's \
                 current attestation {overdue_s} s past the {unaccounted_after_s} s allowed \
                 after delivery: find the device and attest the node that holds it, or report it \
                 to the vendor as lost",
                device.label(),
                escape(shipment),
                escape(vendor),
                escape(site),
                crate::licence::format_rfc3339(*delivered_at)
            ),
            Self::UnshippedDevice {
                uuid,
                serial,
                simulated,
                shipments,
            } => format!(
                "GPU {} (serial {}) counts under this licence, which requires every device it \
                 counts to be on one of its shipments, but it is on none of its {shipments} \
                 shipments evaluated{}: have the vendor sign a shipment listing it, or remove the device",
                escape(uuid.as_deref().unwrap_or("without UUID")),
                escape(serial.as_deref().unwrap_or("unknown")),
                if *simulated {
                    " (a simulated inventory's GPUs are on no shipment)"
                } else {
                    ""
                }
            ),
            Self::ShippedDeviceDuplicated {
                shipment,
                vendor,
                device,
                seen_in,
            } => format!(
                "GPU {} of shipment {} (vendor {}) appears in {} places ({}): one shipped device \
                 cannot stand in two places; find which node reports a copied identity, or \
                 re-key the node whose key was copied",
                device.label(),
                escape(shipment),
                escape(vendor),
                seen_in.len(),
                list(seen_in)
            ),
            Self::ShipmentSiteNotLicensed {
                shipment,
                vendor,
                site,
                country,
                licensed_sites,
            } => format!(
                "shipment {} (vendor {}) was delivered to site {} in {country}, which is not a \
                 site of this licence in that country ({}): its devices are followed where they are attested; have the \
                 licence list the site, or the vendor correct the shipment",
                escape(shipment),
                escape(vendor),
                escape(site),
                list(licensed_sites)
            ),
            Self::ShipmentLicenceUnknown {
                shipment,
                vendor,
                licence,
                devices,
            } => format!(
                "shipment {} (vendor {}) of {devices} devices ships under licence {}, which is \
                 not among the licences evaluated: its devices cannot be followed; load that \
                 licence, or have the vendor correct the shipment",
                escape(shipment),
                escape(vendor),
                escape(licence)
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// Lifecycle: revocations, retirements, records left out. Outside text (reasons, names,
    /// subjects) is escaped.
    fn lifecycle_sentence(&self) -> Option<String> {
        use tppguard_proto::text::escape;
        let at = crate::licence::format_rfc3339;
        let sentence = match self {
            Self::LicenceRevoked {
                reason,
                revoked_at,
                held,
            } => format!(
                "the licence authority revoked this licence at {} (\"{}\"): {}",
                at(*revoked_at),
                escape(reason),
                if *held {
                    "it no longer counts, and nodes at its sites are unlicensed; re-uploading \
                     it does not revive it"
                } else {
                    "the verifier does not hold this licence; if it is uploaded, it will not count"
                }
            ),
            Self::LicenceRetired {
                reason,
                retired_at,
                retired_by,
            } => format!(
                "{} retired this licence at {} (\"{}\"): it no longer counts",
                escape(retired_by),
                at(*retired_at),
                escape(reason)
            ),
            Self::NodeRetired {
                subject,
                reason,
                retired_at,
                retired_by,
            } => format!(
                "{} retired node {} at {} (\"{}\"): its GPUs no longer count; its history is kept",
                escape(retired_by),
                escape(subject),
                at(*retired_at),
                escape(reason)
            ),
            Self::NodeCertificateRevoked {
                certificate,
                serial,
            } => format!(
                "a CRL revokes certificate {} (serial {}) of this node's chain: its attestations \
                 no longer count; issue it a new certificate, or retire the node",
                escape(certificate),
                escape(serial)
            ),
            Self::StoredRecordUnusable { record, problem } => format!(
                "stored {} cannot be used ({}): it is left out of the evaluation; replace or \
                 retire it",
                escape(record),
                escape(problem)
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// Gating: what a node reports it did about its lease. The error code and the detail
    /// come from the node's report or the lease it carries, so they are escaped.
    fn gating_sentence(&self) -> Option<String> {
        use tppguard_proto::text::escape;
        let sentence = match self {
            Self::GatingNotHeld {
                index,
                excluded_for,
                lapsed_fail_closed,
                reported,
                compute_mode,
                error,
                lease_expired,
            } => {
                let why = match (excluded_for, lapsed_fail_closed) {
                    (Some(code), _) => format!("its lease leaves out ({})", escape(code)),
                    (None, true) => "every GPU is gated past the grace period without a valid \
                                     lease (fail_closed)"
                        .to_owned(),
                    (None, false) => "the agent marks for gating".to_owned(),
                };
                let how = if *reported {
                    let mode = compute_mode.map_or("nothing", |m| match m {
                        tppguard_proto::lease::ComputeMode::Default => "default",
                        tppguard_proto::lease::ComputeMode::ExclusiveProcess => "exclusive_process",
                        tppguard_proto::lease::ComputeMode::Prohibited => "prohibited",
                        tppguard_proto::lease::ComputeMode::Other => "another mode",
                    });
                    let error = error
                        .as_deref()
                        .map(|e| format!(", NVML error {}", escape(e)))
                        .unwrap_or_default();
                    format!("the agent read back compute mode {mode}{error}, not held")
                } else {
                    "the gating report does not name it".to_owned()
                };
                let expired = if *lease_expired {
                    "; the lease acted on had expired when the attestation arrived"
                } else {
                    ""
                };
                format!("enforce mode, but GPU {index}, which {why}, is not gated: {how}{expired}")
            }
            Self::GatingObserveOnly {
                gpus,
                lapsed_fail_closed,
            } => {
                let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
                let why = if *lapsed_fail_closed {
                    "no valid lease past the grace period (fail_closed)"
                } else {
                    "its lease leaves them out"
                };
                format!(
                    "observe mode: {} GPUs (index {}) would be gated, {why}, but the agent only \
                     reports; set the agent to enforce to gate them",
                    gpus.len(),
                    list.join(", ")
                )
            }
            Self::GatingLeaseForeign { problem, detail } => format!(
                "the gating report carries a lease this verifier did not issue to this node ({}: \
                 {}): a forged or borrowed lease, so the node's gating cannot rest on it",
                escape(problem),
                escape(detail)
            ),
            Self::GatingNotReported { on_expiry } => format!(
                "the licence's leases fail closed ({}), but the attestation carries no gating \
                 report (an agent without gating): nothing shows the node gates the GPUs its \
                 lease leaves out; run an agent with gating",
                on_expiry.as_str()
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// Licence need: whether the licence's counted devices need a licence under the rule set.
    /// Rule-set text (ids, rules, groups, outcomes, a determination's sentence) may come from
    /// a user's file, so it is escaped.
    fn need_sentence(&self) -> Option<String> {
        use tppguard_proto::text::escape;
        let group = |g: &Option<String>| {
            g.as_deref()
                .map_or_else(|| "no group".to_owned(), |g| format!("group {}", escape(g)))
        };
        let devices = |n: &u64, outcome: &Option<String>| match outcome {
            Some(o) => format!("{n} counted {} devices", escape(o)),
            None => format!("{n} counted devices of unknown outcome"),
        };
        let sentence = match self {
            Self::LicenceRequiredByParty {
                headquarters,
                headquarters_group,
                ultimate_parent,
                ultimate_parent_group,
                prong,
                rule,
                rule_set,
                outcome,
                devices: n,
            } => {
                // The party group that bit, then where the other party stands (its party
                // group only when it is in one too).
                let party_group = |g: &Option<String>| {
                    g.as_deref()
                        .map_or_else(String::new, |g| format!(", party group {}", escape(g)))
                };
                let facts = match prong {
                    PartyProng::Headquarters => format!(
                        "the licensee is headquartered in {headquarters} (party group {}; its \
                         ultimate parent in {ultimate_parent}{})",
                        escape(headquarters_group.as_deref().unwrap_or("none")),
                        party_group(ultimate_parent_group)
                    ),
                    PartyProng::UltimateParent => format!(
                        "the licensee's ultimate parent is headquartered in {ultimate_parent} \
                         (party group {}; the licensee itself in {headquarters}{})",
                        escape(ultimate_parent_group.as_deref().unwrap_or("none")),
                        party_group(headquarters_group)
                    ),
                };
                format!(
                    "{facts}: under {} rule {} its {} need a licence at any destination abroad; this \
                     licence covers them",
                    escape(rule_set),
                    escape(rule),
                    devices(n, outcome)
                )
            }
            Self::NoLicenceRequired {
                destination,
                destination_group,
                rule,
                rule_set,
                outcome,
                devices: n,
            } => format!(
                "under {} {} the {} at destination {destination} ({}) need no licence for \
                 this destination and licensee; the licence's caps still apply, as its terms",
                escape(rule_set),
                rule.as_deref().map_or_else(
                    || "(its default)".to_owned(),
                    |r| format!("rule {}", escape(r))
                ),
                devices(n, outcome),
                group(destination_group)
            ),
            Self::LicenceNeedUndetermined {
                rule_set,
                outcome,
                devices: n,
                why,
            } => format!(
                "whether the {} need a licence cannot be decided under {} ({}): check the \
                 regulation for this destination and licensee, and treat them as needing one \
                 until then",
                devices(n, outcome),
                escape(rule_set),
                escape(why)
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// The sentence of a reason about the licence's own conditions (its model and ECCN lists,
    /// its caps and the country allocations, its validity, its rule set); `None` for another.
    fn licence_sentence(&self) -> Option<String> {
        let sentence = match self {
            Self::ModelNotAllowed { model } => match model {
                Some(m) => format!("model {m} is not among the models the licence allows"),
                None => {
                    "the model is unknown, so the licence's model list cannot allow it".to_owned()
                }
            },
            Self::EccnNotAllowed { eccn, outcome } => match (eccn, outcome) {
                (Some(e), _) => format!("ECCN {e} is not among the ECCNs the licence allows"),
                (None, Some(o)) => format!(
                    "the device has no ECCN under the rule set (outcome {o}), so the licence's \
                     ECCN list cannot allow it"
                ),
                (None, None) => "the device is unknown, so its ECCN is unknown and the \
                                 licence's ECCN list cannot allow it"
                    .to_owned(),
            },
            Self::DeviceTppAboveCap { tpp, cap, basis } => match basis {
                TppSource::Spec => {
                    format!("device TPP {tpp} is above the licence's per-device cap of {cap}")
                }
                TppSource::Measured => format!(
                    "measured device TPP {tpp} (a lower bound) is above the licence's \
                     per-device cap of {cap}, whatever model the device claims to be"
                ),
            },
            Self::AggregateTppAboveCap { used, cap, over_by } => {
                format!("aggregate TPP {used} is above the licence's cap of {cap} by {over_by}")
            }
            Self::DeviceCountAboveCap { used, cap, over_by } => format!(
                "{used} devices count against the licence, above its cap of {cap} by {over_by}"
            ),
            Self::CountryAllocationExceeded {
                country,
                tier,
                used,
                cap,
                over_by,
                period,
            } => format!(
                "TPP {used} in {country}{} is above the rule set's allocation of {cap} for \
                 {period} by {over_by}",
                tier.as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ),
            Self::LicenceNotYetValid {
                starts_in_s,
                devices,
                ..
            } => format!(
                "the licence is not valid yet: it starts in {starts_in_s} s, and {devices} \
                 devices count against it"
            ),
            Self::LicenceExpired {
                expired_for_s,
                devices,
                ..
            } => format!(
                "the licence expired {expired_for_s} s ago, and {devices} devices count against it"
            ),
            Self::LicenceRuleSetMismatch {
                licence_rule_set,
                rule_set,
            } => format!(
                "the licence is written against rule set {licence_rule_set} but is evaluated \
                 under {rule_set}"
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// The sentence of a reason about a node's identity and freshness (duplicate or
    /// unidentified GPUs, stale or future-dated attestations, a simulated inventory, a shared
    /// subject, a copied key); `None` for another.
    fn node_sentence(&self) -> Option<String> {
        let sentence = match self {
            Self::DuplicateDevice {
                uuid,
                hardware_id,
                serial,
                seen_in,
                counted_in,
                counted_against,
                across_licences_or_sites,
            } => format!(
                "GPU {uuid} (serial {}{}) appears in {} places ({}); it counts once, in \
                 {counted_in}{}{}",
                serial.as_deref().unwrap_or("unknown"),
                hardware_id
                    .as_deref()
                    .map(|h| format!(", hardware identity {h}"))
                    .unwrap_or_default(),
                seen_in.len(),
                seen_in.join(", "),
                counted_against
                    .as_deref()
                    .map(|l| format!(", against licence {l}"))
                    .unwrap_or_default(),
                if *across_licences_or_sites {
                    "; one device cannot stand under two licences or at two sites: find \
                     which node lies, or re-key the node whose key was copied"
                } else {
                    ""
                }
            ),
            Self::StaleNode {
                age_s, max_age_s, ..
            } => format!(
                "the node's latest attestation is {age_s} s old, older than the {max_age_s} s \
                 allowed; its last known GPUs still count, but compliance is unproven until \
                 it attests again"
            ),
            Self::AttestationFromFuture {
                ahead_s,
                max_skew_s,
                ..
            } => format!(
                "the node sent an attestation dated {ahead_s} s after the evaluation instant \
                 (more than the {max_skew_s} s skew allowed): it is not taken as current, and \
                 the node is unproven; check the node's clock"
            ),
            Self::SimulatedInventory { gpus } => format!(
                "the agent read this node from a simulated driver, not real GPUs: its {gpus} \
                 GPUs count as claimed, but simulated evidence proves nothing, so the verdict \
                 is at best unproven"
            ),
            Self::GpuWithoutIdentity { gpus } => format!(
                "{gpus} GPUs carry no UUID, so a duplicate or a move cannot be seen: the node \
                 is unproven until the agent reports every GPU's UUID"
            ),
            Self::SubjectWithSeveralKeys { subject, nodes } => format!(
                "{} node keys share the certificate subject {subject:?}; they count as \
                 separate nodes (retire the old key with `pki issue-node --replace`, or give \
                 each host its own subject)",
                nodes.len()
            ),
            Self::NodeKeyOnSeveralMachines { machine_ids } => format!(
                "this node key reports {} machine ids ({}): the key was copied to other \
                 hosts, whose GPUs may hide behind this node; give each host its own key",
                machine_ids.len(),
                machine_ids.join(", ")
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// The sentence of a reason about where a node stands (its site, certified or claimed, and
    /// the licence it falls under); `None` for another.
    fn site_sentence(&self) -> Option<String> {
        let sentence = match self {
            Self::NodeUnassigned {
                licences,
                gpus,
                site,
            } => match site {
                Some(site) => format!(
                    "the node's site {site} is listed by none of the {licences} licences \
                     evaluated, so none covers its {gpus} GPUs"
                ),
                None => format!(
                    "the node carries no site and {licences} licences are evaluated, so none \
                     covers its {gpus} GPUs"
                ),
            },
            Self::SiteInSeveralLicences {
                site,
                licences,
                counted_against,
            } => format!(
                "site {site} is listed by {} licences ({}); its nodes count against the \
                 stricter, {counted_against}",
                licences.len(),
                licences.join(", ")
            ),
            Self::SiteClaimMismatch { claimed, certified } => format!(
                "the node claims site {claimed} but its certificate certifies site \
                 {certified}: the certified site counts"
            ),
            Self::SiteNotCertified { claimed } => match claimed {
                Some(c) => format!(
                    "the node's certificate certifies no site, so its licence rests on its own \
                     claim (site {c}); issue its certificate with `pki issue-node --site {c}`"
                ),
                None => "the node's certificate certifies no site, so where it stands is \
                         unproven; issue its certificate with `pki issue-node --site ID`"
                    .to_owned(),
            },
            Self::NodeSiteChanged { from, to } => format!(
                "the node moved from site {from} to site {to} since its previous attestation"
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// The sentence of a reason about one GPU against the spec table (its identity, its
    /// status, its measured rates); `None` for another.
    fn device_sentence(&self) -> Option<String> {
        let sentence = match self {
            Self::UnknownDevice { detail, .. } => {
                format!("{detail}; the device counts against the device cap with its TPP unknown")
            }
            Self::GpuLost { status } => {
                let how = match status {
                    GpuStatus::Lost => "lost (fallen off the bus)",
                    GpuStatus::Unreadable => "unreadable",
                    GpuStatus::Ok => "readable",
                };
                format!("NVML reports the GPU {how}; it still counts where its identity is known")
            }
            Self::AgentClassificationMismatch {
                agent_eccn,
                eccn,
                agent_tpp,
                tpp,
            } => format!(
                "the agent classified the GPU as {} with TPP {}, the verifier as {} with TPP \
                 {}; the verifier's figures are used",
                agent_eccn.as_deref().unwrap_or("unknown"),
                agent_tpp.map_or_else(|| "unknown".to_owned(), |t| t.to_string()),
                eccn.as_deref().unwrap_or("unknown"),
                tpp.map_or_else(|| "unknown".to_owned(), |t| t.to_string()),
            ),
            Self::ExceedsSpec {
                model,
                precision,
                measured_tops,
                spec_tops,
                ratio,
                tolerance_percent,
            } => format!(
                "measured {precision} {} TOPS is {ratio} of the spec's {} TOPS for {model}, more \
                 than {tolerance_percent} % above it: the part is more capable than its identity \
                 claims (relabelled, or a spec-table error to report)",
                tops_text(*measured_tops),
                tops_text(*spec_tops),
            ),
            Self::BelowSpec {
                model,
                precision,
                measured_tops,
                spec_tops,
                ratio,
                tolerance_percent,
                sm_clock_mhz_min,
                sm_clock_mhz_max,
                max_sm_clock_mhz,
                throttle_reasons,
                ..
            } => {
                let mhz = |v: &Option<u32>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
                let clocks = match (sm_clock_mhz_min, sm_clock_mhz_max) {
                    (None, None) => "SM clock not reported".to_owned(),
                    (lo, hi) => format!("SM clock {}-{} MHz", mhz(lo), mhz(hi)),
                };
                let max = max_sm_clock_mhz
                    .map(|m| format!(" of {m} MHz max"))
                    .unwrap_or_default();
                let throttle = if throttle_reasons.is_empty() {
                    "no throttle reason reported".to_owned()
                } else {
                    format!("throttle reasons: {}", throttle_reasons.join(", "))
                };
                format!(
                    "measured {precision} {} TOPS is {ratio} of the spec's {} TOPS for {model}, \
                     more than {tolerance_percent} % below it: derated, throttled or \
                     power-capped ({clocks}{max}; {throttle})",
                    tops_text(*measured_tops),
                    tops_text(*spec_tops),
                )
            }
            Self::UnlistedDevice {
                detail,
                measured_tpp,
                precision,
                measured_tops,
                outcome,
                ..
            } => format!(
                "{detail}; classified by its measured figures alone ({outcome}; die area \
                 unknown): TPP at least {measured_tpp} ({precision} {} TOPS measured x {}), a \
                 lower bound since a benchmark stays below peak, and it counts with that TPP",
                tops_text(*measured_tops),
                precision.bit_length(),
            ),
            _ => return None,
        };
        Some(sentence)
    }

    /// The sentence of a reason about the evidence tier a node reaches against the one it
    /// claims or the licence needs; `None` for another.
    fn evidence_sentence(&self) -> Option<String> {
        let sentence = match self {
            Self::EvidenceTierTooLow { have, need, gpus } => format!(
                "evidence tier {have} is below the licence's minimum {need} ({gpus} GPUs \
                 affected)"
            ),
            Self::MeasuredTierDowngraded {
                claimed,
                effective,
                gpus,
                unmeasured,
                exceeding,
                unlisted,
                no_spec_figure,
                stale,
                simulated,
            } => {
                let mut why = Vec::new();
                for (n, what) in [
                    (unmeasured, "carry no measurement"),
                    (exceeding, "measure above spec"),
                    (unlisted, "are not in the spec table"),
                    (
                        no_spec_figure,
                        "have no spec figure for any precision measured",
                    ),
                    (
                        stale,
                        "carry a measurement older than the allowed age (or dated after the \
                         attestation); measure again",
                    ),
                    (
                        simulated,
                        "were measured (or read) by a simulation, never evidence",
                    ),
                ] {
                    if *n > 0 {
                        why.push(format!("{n} {what}"));
                    }
                }
                if why.is_empty() {
                    // No GPU at all: nothing was measured, so nothing backs the tier.
                    format!(
                        "the node claims evidence tier {claimed}, but it reports no GPU to \
                         measure: it is evaluated as {effective}"
                    )
                } else {
                    format!(
                        "the node claims evidence tier {claimed}, but of its {gpus} GPUs {}: it \
                         is evaluated as {effective}",
                        why.join(", ")
                    )
                }
            }
            Self::HardwareTierUnverified {
                effective,
                gpus,
                without_evidence,
                failed,
            } => format!(
                "the node claims evidence tier hardware, but of its {gpus} GPUs \
                 {without_evidence} carry no evidence of their own and {failed} carry evidence \
                 that did not verify: it is evaluated as {effective}; put every GPU in \
                 confidential-computing or protected-PCIe mode and see gpu_evidence_failed"
            ),
            Self::GpuEvidenceFailed {
                failed,
                first_code,
                detail,
            } => format!(
                "the GPU's own evidence did not verify ({} failed; first: {}, {}): it does \
                 not back the hardware tier",
                failed.join(", "),
                tppguard_proto::text::escape(first_code),
                tppguard_proto::text::escape(detail)
            ),
            Self::GpuEvidenceReused {
                hardware_id,
                submods,
            } => format!(
                "one GPU (hardware identity {hardware_id}) signed the evidence of {} submods \
                 ({}): a GPU answers for itself only, so none of them backs the hardware tier; \
                 the node reports GPUs that did not sign",
                submods.len(),
                submods.join(", ")
            ),
            _ => return None,
        };
        Some(sentence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, and every branch of its sentence: both arms of each `Option`, each
    /// status and basis, empty and full lists.
    fn representative() -> Vec<Reason> {
        let tpp = |t: &str| t.parse::<Tpp>().unwrap();
        let tops = |t: &str| t.parse::<Tops>().unwrap();
        let text = |t: &str| t.to_owned();
        let ratio = |m: &str, s: &str| SpecRatio::new(tops(m), tops(s)).unwrap();
        let below =
            |min: Option<u32>, max: Option<u32>, max_clock: Option<u32>, throttle: &[&str]| {
                Reason::BelowSpec {
                    model: text("H100 SXM5 80GB"),
                    precision: Precision::Fp8,
                    measured_tops: tops("900.25"),
                    spec_tops: tops("1978.9"),
                    ratio: ratio("900.25", "1978.9"),
                    tolerance_percent: 50,
                    sm_clock_mhz_min: min,
                    sm_clock_mhz_max: max,
                    max_sm_clock_mhz: max_clock,
                    temperature_c_max: Some(83),
                    power_mw_max: Some(700_000),
                    power_limit_mw: Some(700_000),
                    throttle_reasons: throttle.iter().map(|t| text(t)).collect(),
                }
            };
        let downgraded = |counts: [u64; 6]| {
            let [
                unmeasured,
                exceeding,
                unlisted,
                no_spec_figure,
                stale,
                simulated,
            ] = counts;
            Reason::MeasuredTierDowngraded {
                claimed: EvidenceTier::Measured,
                effective: EvidenceTier::Declared,
                gpus: 8,
                unmeasured,
                exceeding,
                unlisted,
                no_spec_figure,
                stale,
                simulated,
            }
        };
        vec![
            Reason::ModelNotAllowed {
                model: Some(text("H100 SXM5 80GB")),
            },
            Reason::ModelNotAllowed { model: None },
            Reason::EccnNotAllowed {
                eccn: Some(text("3A090.a")),
                outcome: Some(text("3A090.a")),
            },
            Reason::EccnNotAllowed {
                eccn: None,
                outcome: Some(text("not_3a090")),
            },
            Reason::EccnNotAllowed {
                eccn: None,
                outcome: None,
            },
            Reason::DeviceTppAboveCap {
                tpp: tpp("15831.2"),
                cap: tpp("4800"),
                basis: TppSource::Spec,
            },
            Reason::DeviceTppAboveCap {
                tpp: tpp("5000"),
                cap: tpp("4800"),
                basis: TppSource::Measured,
            },
            Reason::EvidenceTierTooLow {
                have: EvidenceTier::Declared,
                need: EvidenceTier::Hardware,
                gpus: 8,
            },
            Reason::UnknownDevice {
                lookup: "pci_id_not_listed",
                detail: text("PCI device id 0x12345678 is not in the spec table"),
            },
            Reason::GpuLost {
                status: GpuStatus::Lost,
            },
            Reason::GpuLost {
                status: GpuStatus::Unreadable,
            },
            Reason::GpuLost {
                status: GpuStatus::Ok,
            },
            Reason::DuplicateDevice {
                uuid: text("GPU-1"),
                hardware_id: None,
                serial: Some(text("1650123456789")),
                seen_in: vec![text("a/gpu0"), text("b/gpu3")],
                counted_in: text("a/gpu0"),
                counted_against: Some(text("LIC-1")),
                across_licences_or_sites: true,
            },
            Reason::DuplicateDevice {
                uuid: text("GPU-2"),
                hardware_id: Some(text("ab12")),
                serial: None,
                seen_in: vec![],
                counted_in: text("a/gpu1"),
                counted_against: None,
                across_licences_or_sites: false,
            },
            Reason::StaleNode {
                iat: 0,
                age_s: 7200,
                max_age_s: 3600,
            },
            Reason::AttestationFromFuture {
                iat: 1000,
                at: 0,
                ahead_s: 1000,
                max_skew_s: 300,
            },
            Reason::LicenceNotYetValid {
                valid_from: 100,
                starts_in_s: 100,
                devices: 0,
            },
            Reason::LicenceExpired {
                valid_until: 1,
                expired_for_s: 86_400,
                devices: 3,
            },
            Reason::LicenceRuleSetMismatch {
                licence_rule_set: text("us-eccn-3a090"),
                rule_set: text("us-ai-diffusion-2025"),
            },
            Reason::NodeUnassigned {
                licences: 2,
                gpus: 8,
                site: Some(text("fra-1")),
            },
            Reason::NodeUnassigned {
                licences: 2,
                gpus: 8,
                site: None,
            },
            Reason::AggregateTppAboveCap {
                used: tpp("31662.4"),
                cap: tpp("30000"),
                over_by: tpp("1662.4"),
            },
            Reason::DeviceCountAboveCap {
                used: 9,
                cap: 8,
                over_by: 1,
            },
            Reason::AgentClassificationMismatch {
                agent_eccn: Some(text("3A090.a")),
                eccn: Some(text("4A090.a")),
                agent_tpp: Some(15831.2),
                tpp: Some(tpp("15831.2")),
            },
            Reason::AgentClassificationMismatch {
                agent_eccn: None,
                eccn: None,
                agent_tpp: None,
                tpp: None,
            },
            Reason::SiteInSeveralLicences {
                site: text("fra-1"),
                licences: vec![text("A"), text("B")],
                counted_against: text("A"),
            },
            Reason::CountryAllocationExceeded {
                country: "DE".parse().unwrap(),
                tier: Some(text("tier_2")),
                used: tpp("2"),
                cap: tpp("1"),
                over_by: tpp("1"),
                period: text("2025-2027"),
            },
            Reason::CountryAllocationExceeded {
                country: "FR".parse().unwrap(),
                tier: None,
                used: tpp("2"),
                cap: tpp("1"),
                over_by: tpp("1"),
                period: text("2025-2027"),
            },
            Reason::SimulatedInventory { gpus: 8 },
            Reason::ExceedsSpec {
                model: text("H100 SXM5 80GB"),
                precision: Precision::Fp8,
                measured_tops: tops("2200.05"),
                spec_tops: tops("1978.9"),
                ratio: ratio("2200.05", "1978.9"),
                tolerance_percent: 10,
            },
            below(None, None, None, &[]),
            below(Some(1100), None, Some(1980), &["sw_power_cap"]),
            below(
                None,
                Some(1400),
                None,
                &["hw_slowdown", "sw_thermal_slowdown"],
            ),
            below(Some(1100), Some(1400), Some(1980), &[]),
            Reason::UnlistedDevice {
                lookup: "pci_id_not_listed",
                detail: text("PCI device id 0x12345678 is not in the spec table"),
                measured_tpp: tpp("8000"),
                precision: Precision::Fp16,
                measured_tops: tops("500.125"),
                outcome: text("3A090.a"),
            },
            downgraded([1, 0, 0, 0, 0, 0]),
            downgraded([1, 2, 3, 4, 5, 6]),
            downgraded([0, 0, 0, 0, 0, 0]),
            downgraded([0, 0, 0, 0, 2, 8]),
            Reason::HardwareTierUnverified {
                effective: EvidenceTier::Measured,
                gpus: 8,
                without_evidence: 7,
                failed: 1,
            },
            Reason::GpuEvidenceFailed {
                failed: vec![text("nonce"), text("signature")],
                first_code: text("nonce_mismatch"),
                detail: text("the report answers another nonce"),
            },
            Reason::GpuEvidenceReused {
                hardware_id: text("ab12"),
                submods: vec![text("gpu0"), text("gpu1")],
            },
            Reason::GpuWithoutIdentity { gpus: 2 },
            Reason::SubjectWithSeveralKeys {
                subject: text("CN=gpu \"node\" 01"),
                nodes: vec![text("00"), text("11")],
            },
            Reason::NodeKeyOnSeveralMachines {
                machine_ids: vec![text("m1"), text("m2")],
            },
            Reason::SiteClaimMismatch {
                claimed: text("fra-1"),
                certified: text("ber-1"),
            },
            Reason::SiteNotCertified {
                claimed: Some(text("fra-1")),
            },
            Reason::SiteNotCertified { claimed: None },
            Reason::NodeSiteChanged {
                from: text("fra-1"),
                to: text("ber-1"),
            },
            Reason::LicenceRevoked {
                reason: text("terms \u{1b}[31mbreached"),
                revoked_at: 1_767_225_600,
                held: true,
            },
            Reason::LicenceRevoked {
                reason: text("terms breached"),
                revoked_at: 1_767_225_600,
                held: false,
            },
            Reason::LicenceRetired {
                reason: text("superseded"),
                retired_at: 1_767_225_600,
                retired_by: text("admin"),
            },
            Reason::NodeRetired {
                subject: text("CN=gpu-node-01"),
                reason: text("decommissioned"),
                retired_at: 1_767_225_600,
                retired_by: text("admin"),
            },
            Reason::NodeCertificateRevoked {
                certificate: text("CN=gpu-node-01"),
                serial: text("01:02"),
            },
            Reason::StoredRecordUnusable {
                record: text("licence LIC-1"),
                problem: text("it names rule set \"x\", which this verifier cannot load"),
            },
            Reason::GatingNotHeld {
                index: 3,
                excluded_for: Some(text("device_count_above_cap")),
                lapsed_fail_closed: false,
                reported: true,
                compute_mode: Some(tppguard_proto::lease::ComputeMode::Default),
                error: Some(text("no_permission")),
                lease_expired: false,
            },
            Reason::GatingNotHeld {
                index: 0,
                excluded_for: None,
                lapsed_fail_closed: true,
                reported: false,
                compute_mode: None,
                error: None,
                lease_expired: true,
            },
            Reason::GatingObserveOnly {
                gpus: vec![6, 7],
                lapsed_fail_closed: false,
            },
            Reason::GatingLeaseForeign {
                problem: text("lease_bad_signature"),
                detail: text("the signature does not verify under this verifier's result key"),
            },
            Reason::GatingNotReported {
                on_expiry: tppguard_proto::lease::OnExpiry::FailClosed,
            },
            Reason::LicenceRequiredByParty {
                headquarters: "DE".parse().unwrap(),
                headquarters_group: None,
                ultimate_parent: "CN".parse().unwrap(),
                ultimate_parent_group: Some(text("d5_macau")),
                prong: PartyProng::UltimateParent,
                rule: text("742.6(a)(6)(iii)(A)"),
                rule_set: text("us-eccn-3a090"),
                outcome: Some(text("3A090.a")),
                devices: 8,
            },
            Reason::LicenceRequiredByParty {
                headquarters: "MO".parse().unwrap(),
                headquarters_group: Some(text("d5_macau")),
                ultimate_parent: "US".parse().unwrap(),
                ultimate_parent_group: None,
                prong: PartyProng::Headquarters,
                rule: text("742.6(a)(6)(iii)(A)"),
                rule_set: text("us-eccn-3a090"),
                outcome: None,
                devices: 1,
            },
            Reason::NoLicenceRequired {
                destination: "DE".parse().unwrap(),
                destination_group: Some(text("a5")),
                rule: Some(text("742.6(a)(6)(iii).destination_a5")),
                rule_set: text("us-eccn-3a090"),
                outcome: Some(text("3A090.a")),
                devices: 8,
            },
            Reason::NoLicenceRequired {
                destination: "FR".parse().unwrap(),
                destination_group: None,
                rule: None,
                rule_set: text("my-rules"),
                outcome: None,
                devices: 2,
            },
            Reason::LicenceNeedUndetermined {
                rule_set: text("us-gain-ai-act-s3150"),
                outcome: Some(text("3A090.a")),
                devices: 8,
                why: text(
                    "us-gain-ai-act-s3150 classifies 3A090.a but does not state where a licence is needed",
                ),
            },
            Reason::LicenceNeedUndetermined {
                rule_set: text("us-eccn-3a090"),
                outcome: None,
                devices: 2,
                why: text("the rule \u{1b}[31m text"),
            },
            Reason::DivertedDevice {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                device: shipped(Some("GPU-5e1f"), Some("1650123456789"), None),
                node: text("9fa5"),
                gpu: text("gpu2"),
                hardware_proven: false,
                site: Some(text("muc-1")),
                site_country: Some("DE".parse::<CountryCode>().unwrap()),
                licensed_sites: vec![text("fra-1"), text("ber-1")],
                destination: "DE".parse::<CountryCode>().unwrap(),
            },
            Reason::DivertedDevice {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                device: shipped(None, Some("16501\u{1b}[31m"), None),
                node: text("9fa5"),
                gpu: text("gpu\u{1b}"),
                hardware_proven: false,
                site: Some(text("ams-9")),
                site_country: None,
                licensed_sites: vec![text("fra-1")],
                destination: "DE".parse::<CountryCode>().unwrap(),
            },
            Reason::DivertedDevice {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                device: shipped(None, None, Some("ab12")),
                node: text("9fa5"),
                gpu: text("gpu0"),
                hardware_proven: true,
                site: None,
                site_country: None,
                licensed_sites: vec![text("fra-1")],
                destination: "DE".parse::<CountryCode>().unwrap(),
            },
            Reason::UnaccountedDevice {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                device: shipped(Some("GPU-5e1f"), None, None),
                site: text("fra-1"),
                delivered_at: 1_767_225_600,
                unaccounted_after_s: 1_209_600,
                overdue_s: 3600,
            },
            Reason::UnshippedDevice {
                uuid: Some(text("GPU-77aa")),
                serial: Some(text("1650123456789")),
                simulated: false,
                shipments: 2,
            },
            Reason::UnshippedDevice {
                uuid: None,
                serial: None,
                simulated: true,
                shipments: 0,
            },
            Reason::ShippedDeviceDuplicated {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                device: shipped(Some("GPU-5e1f"), None, None),
                seen_in: vec![text("a/gpu0"), text("b/gpu3")],
            },
            Reason::ShipmentSiteNotLicensed {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                site: text("muc-1"),
                country: "DE".parse::<CountryCode>().unwrap(),
                licensed_sites: vec![text("fra-1"), text("ber-1")],
            },
            Reason::ShipmentLicenceUnknown {
                shipment: text("SHP-2026-0007"),
                vendor: text("CN=Example GPU vendor shipments"),
                licence: text("OTHER-1"),
                devices: 8,
            },
        ]
    }

    /// A shipped device with these identities (no model).
    fn shipped(
        uuid: Option<&str>,
        serial: Option<&str>,
        hardware_id: Option<&str>,
    ) -> crate::policy::shipments::ShippedDevice {
        crate::policy::shipments::ShippedDevice {
            uuid: uuid.map(str::to_owned),
            serial: serial.map(str::to_owned),
            hardware_id: hardware_id.map(str::to_owned),
            model: None,
        }
    }

    /// The sentence of each of [`representative`], by code, as rendered before
    /// [`Reason::sentence`] was split by family: the split must not change one byte.
    const SENTENCES: &[(&str, &str)] = &[
        (
            "model_not_allowed",
            r#"model H100 SXM5 80GB is not among the models the licence allows"#,
        ),
        (
            "model_not_allowed",
            r#"the model is unknown, so the licence's model list cannot allow it"#,
        ),
        (
            "eccn_not_allowed",
            r#"ECCN 3A090.a is not among the ECCNs the licence allows"#,
        ),
        (
            "eccn_not_allowed",
            r#"the device has no ECCN under the rule set (outcome not_3a090), so the licence's ECCN list cannot allow it"#,
        ),
        (
            "eccn_not_allowed",
            r#"the device is unknown, so its ECCN is unknown and the licence's ECCN list cannot allow it"#,
        ),
        (
            "device_tpp_above_cap",
            r#"device TPP 15831.2 is above the licence's per-device cap of 4800"#,
        ),
        (
            "device_tpp_above_cap",
            r#"measured device TPP 5000 (a lower bound) is above the licence's per-device cap of 4800, whatever model the device claims to be"#,
        ),
        (
            "evidence_tier_too_low",
            r#"evidence tier declared is below the licence's minimum hardware (8 GPUs affected)"#,
        ),
        (
            "unknown_device",
            r#"PCI device id 0x12345678 is not in the spec table; the device counts against the device cap with its TPP unknown"#,
        ),
        (
            "gpu_lost",
            r#"NVML reports the GPU lost (fallen off the bus); it still counts where its identity is known"#,
        ),
        (
            "gpu_lost",
            r#"NVML reports the GPU unreadable; it still counts where its identity is known"#,
        ),
        (
            "gpu_lost",
            r#"NVML reports the GPU readable; it still counts where its identity is known"#,
        ),
        (
            "duplicate_device",
            r#"GPU GPU-1 (serial 1650123456789) appears in 2 places (a/gpu0, b/gpu3); it counts once, in a/gpu0, against licence LIC-1; one device cannot stand under two licences or at two sites: find which node lies, or re-key the node whose key was copied"#,
        ),
        (
            "duplicate_device",
            r#"GPU GPU-2 (serial unknown, hardware identity ab12) appears in 0 places (); it counts once, in a/gpu1"#,
        ),
        (
            "stale_node",
            r#"the node's latest attestation is 7200 s old, older than the 3600 s allowed; its last known GPUs still count, but compliance is unproven until it attests again"#,
        ),
        (
            "attestation_from_future",
            r#"the node sent an attestation dated 1000 s after the evaluation instant (more than the 300 s skew allowed): it is not taken as current, and the node is unproven; check the node's clock"#,
        ),
        (
            "licence_not_yet_valid",
            r#"the licence is not valid yet: it starts in 100 s, and 0 devices count against it"#,
        ),
        (
            "licence_expired",
            r#"the licence expired 86400 s ago, and 3 devices count against it"#,
        ),
        (
            "licence_rule_set_mismatch",
            r#"the licence is written against rule set us-eccn-3a090 but is evaluated under us-ai-diffusion-2025"#,
        ),
        (
            "node_unassigned",
            r#"the node's site fra-1 is listed by none of the 2 licences evaluated, so none covers its 8 GPUs"#,
        ),
        (
            "node_unassigned",
            r#"the node carries no site and 2 licences are evaluated, so none covers its 8 GPUs"#,
        ),
        (
            "aggregate_tpp_above_cap",
            r#"aggregate TPP 31662.4 is above the licence's cap of 30000 by 1662.4"#,
        ),
        (
            "device_count_above_cap",
            r#"9 devices count against the licence, above its cap of 8 by 1"#,
        ),
        (
            "agent_classification_mismatch",
            r#"the agent classified the GPU as 3A090.a with TPP 15831.2, the verifier as 4A090.a with TPP 15831.2; the verifier's figures are used"#,
        ),
        (
            "agent_classification_mismatch",
            r#"the agent classified the GPU as unknown with TPP unknown, the verifier as unknown with TPP unknown; the verifier's figures are used"#,
        ),
        (
            "site_in_several_licences",
            r#"site fra-1 is listed by 2 licences (A, B); its nodes count against the stricter, A"#,
        ),
        (
            "country_allocation_exceeded",
            r#"TPP 2 in DE (tier_2) is above the rule set's allocation of 1 for 2025-2027 by 1"#,
        ),
        (
            "country_allocation_exceeded",
            r#"TPP 2 in FR is above the rule set's allocation of 1 for 2025-2027 by 1"#,
        ),
        (
            "simulated_inventory",
            r#"the agent read this node from a simulated driver, not real GPUs: its 8 GPUs count as claimed, but simulated evidence proves nothing, so the verdict is at best unproven"#,
        ),
        (
            "exceeds_spec",
            r#"measured FP8 2200.1 TOPS is 1.11 of the spec's 1978.9 TOPS for H100 SXM5 80GB, more than 10 % above it: the part is more capable than its identity claims (relabelled, or a spec-table error to report)"#,
        ),
        (
            "below_spec",
            r#"measured FP8 900.2 TOPS is 0.45 of the spec's 1978.9 TOPS for H100 SXM5 80GB, more than 50 % below it: derated, throttled or power-capped (SM clock not reported; no throttle reason reported)"#,
        ),
        (
            "below_spec",
            r#"measured FP8 900.2 TOPS is 0.45 of the spec's 1978.9 TOPS for H100 SXM5 80GB, more than 50 % below it: derated, throttled or power-capped (SM clock 1100-? MHz of 1980 MHz max; throttle reasons: sw_power_cap)"#,
        ),
        (
            "below_spec",
            r#"measured FP8 900.2 TOPS is 0.45 of the spec's 1978.9 TOPS for H100 SXM5 80GB, more than 50 % below it: derated, throttled or power-capped (SM clock ?-1400 MHz; throttle reasons: hw_slowdown, sw_thermal_slowdown)"#,
        ),
        (
            "below_spec",
            r#"measured FP8 900.2 TOPS is 0.45 of the spec's 1978.9 TOPS for H100 SXM5 80GB, more than 50 % below it: derated, throttled or power-capped (SM clock 1100-1400 MHz of 1980 MHz max; no throttle reason reported)"#,
        ),
        (
            "unlisted_device",
            r#"PCI device id 0x12345678 is not in the spec table; classified by its measured figures alone (3A090.a; die area unknown): TPP at least 8000 (FP16 500.1 TOPS measured x 16), a lower bound since a benchmark stays below peak, and it counts with that TPP"#,
        ),
        (
            "measured_tier_downgraded",
            r#"the node claims evidence tier measured, but of its 8 GPUs 1 carry no measurement: it is evaluated as declared"#,
        ),
        (
            "measured_tier_downgraded",
            r#"the node claims evidence tier measured, but of its 8 GPUs 1 carry no measurement, 2 measure above spec, 3 are not in the spec table, 4 have no spec figure for any precision measured, 5 carry a measurement older than the allowed age (or dated after the attestation); measure again, 6 were measured (or read) by a simulation, never evidence: it is evaluated as declared"#,
        ),
        (
            "measured_tier_downgraded",
            r#"the node claims evidence tier measured, but it reports no GPU to measure: it is evaluated as declared"#,
        ),
        (
            "measured_tier_downgraded",
            r#"the node claims evidence tier measured, but of its 8 GPUs 2 carry a measurement older than the allowed age (or dated after the attestation); measure again, 8 were measured (or read) by a simulation, never evidence: it is evaluated as declared"#,
        ),
        (
            "hardware_tier_unverified",
            r#"the node claims evidence tier hardware, but of its 8 GPUs 7 carry no evidence of their own and 1 carry evidence that did not verify: it is evaluated as measured; put every GPU in confidential-computing or protected-PCIe mode and see gpu_evidence_failed"#,
        ),
        (
            "gpu_evidence_failed",
            r#"the GPU's own evidence did not verify (nonce, signature failed; first: nonce_mismatch, the report answers another nonce): it does not back the hardware tier"#,
        ),
        (
            "gpu_evidence_reused",
            r#"one GPU (hardware identity ab12) signed the evidence of 2 submods (gpu0, gpu1): a GPU answers for itself only, so none of them backs the hardware tier; the node reports GPUs that did not sign"#,
        ),
        (
            "gpu_without_identity",
            r#"2 GPUs carry no UUID, so a duplicate or a move cannot be seen: the node is unproven until the agent reports every GPU's UUID"#,
        ),
        (
            "subject_with_several_keys",
            r#"2 node keys share the certificate subject "CN=gpu \"node\" 01"; they count as separate nodes (retire the old key with `pki issue-node --replace`, or give each host its own subject)"#,
        ),
        (
            "node_key_on_several_machines",
            r#"this node key reports 2 machine ids (m1, m2): the key was copied to other hosts, whose GPUs may hide behind this node; give each host its own key"#,
        ),
        (
            "site_claim_mismatch",
            r#"the node claims site fra-1 but its certificate certifies site ber-1: the certified site counts"#,
        ),
        (
            "site_not_certified",
            r#"the node's certificate certifies no site, so its licence rests on its own claim (site fra-1); issue its certificate with `pki issue-node --site fra-1`"#,
        ),
        (
            "site_not_certified",
            r#"the node's certificate certifies no site, so where it stands is unproven; issue its certificate with `pki issue-node --site ID`"#,
        ),
        (
            "node_site_changed",
            r#"the node moved from site fra-1 to site ber-1 since its previous attestation"#,
        ),
        (
            "licence_revoked",
            r#"the licence authority revoked this licence at 2026-01-01T00:00:00Z ("terms \u{1b}[31mbreached"): it no longer counts, and nodes at its sites are unlicensed; re-uploading it does not revive it"#,
        ),
        (
            "licence_revoked",
            r#"the licence authority revoked this licence at 2026-01-01T00:00:00Z ("terms breached"): the verifier does not hold this licence; if it is uploaded, it will not count"#,
        ),
        (
            "licence_retired",
            r#"admin retired this licence at 2026-01-01T00:00:00Z ("superseded"): it no longer counts"#,
        ),
        (
            "node_retired",
            r#"admin retired node CN=gpu-node-01 at 2026-01-01T00:00:00Z ("decommissioned"): its GPUs no longer count; its history is kept"#,
        ),
        (
            "node_certificate_revoked",
            r#"a CRL revokes certificate CN=gpu-node-01 (serial 01:02) of this node's chain: its attestations no longer count; issue it a new certificate, or retire the node"#,
        ),
        (
            "stored_record_unusable",
            r#"stored licence LIC-1 cannot be used (it names rule set "x", which this verifier cannot load): it is left out of the evaluation; replace or retire it"#,
        ),
        (
            "gating_not_held",
            r#"enforce mode, but GPU 3, which its lease leaves out (device_count_above_cap), is not gated: the agent read back compute mode default, NVML error no_permission, not held"#,
        ),
        (
            "gating_not_held",
            r#"enforce mode, but GPU 0, which every GPU is gated past the grace period without a valid lease (fail_closed), is not gated: the gating report does not name it; the lease acted on had expired when the attestation arrived"#,
        ),
        (
            "gating_observe_only",
            r#"observe mode: 2 GPUs (index 6, 7) would be gated, its lease leaves them out, but the agent only reports; set the agent to enforce to gate them"#,
        ),
        (
            "gating_lease_foreign",
            r#"the gating report carries a lease this verifier did not issue to this node (lease_bad_signature: the signature does not verify under this verifier's result key): a forged or borrowed lease, so the node's gating cannot rest on it"#,
        ),
        (
            "gating_not_reported",
            r#"the licence's leases fail closed (fail_closed), but the attestation carries no gating report (an agent without gating): nothing shows the node gates the GPUs its lease leaves out; run an agent with gating"#,
        ),
        (
            "licence_required_by_party",
            r#"the licensee's ultimate parent is headquartered in CN (party group d5_macau; the licensee itself in DE): under us-eccn-3a090 rule 742.6(a)(6)(iii)(A) its 8 counted 3A090.a devices need a licence at any destination abroad; this licence covers them"#,
        ),
        (
            "licence_required_by_party",
            r#"the licensee is headquartered in MO (party group d5_macau; its ultimate parent in US): under us-eccn-3a090 rule 742.6(a)(6)(iii)(A) its 1 counted devices of unknown outcome need a licence at any destination abroad; this licence covers them"#,
        ),
        (
            "no_licence_required",
            r#"under us-eccn-3a090 rule 742.6(a)(6)(iii).destination_a5 the 8 counted 3A090.a devices at destination DE (group a5) need no licence for this destination and licensee; the licence's caps still apply, as its terms"#,
        ),
        (
            "no_licence_required",
            r#"under my-rules (its default) the 2 counted devices of unknown outcome at destination FR (no group) need no licence for this destination and licensee; the licence's caps still apply, as its terms"#,
        ),
        (
            "licence_need_undetermined",
            r#"whether the 8 counted 3A090.a devices need a licence cannot be decided under us-gain-ai-act-s3150 (us-gain-ai-act-s3150 classifies 3A090.a but does not state where a licence is needed): check the regulation for this destination and licensee, and treat them as needing one until then"#,
        ),
        (
            "licence_need_undetermined",
            r#"whether the 2 counted devices of unknown outcome need a licence cannot be decided under us-eccn-3a090 (the rule \u{1b}[31m text): check the regulation for this destination and licensee, and treat them as needing one until then"#,
        ),
        (
            "diverted_device",
            r#"GPU GPU-5e1f of shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments), node 9fa5's gpu2 (matched by UUID or serial only, not by a verified hardware identity, so it counts against this licence, not the node), is attested at site muc-1 (in DE); this licence allows it only at its sites fra-1, ber-1 in DE: the device was moved outside its licence; return it to a licensed site, or have the licence amended and the shipment re-issued"#,
        ),
        (
            "diverted_device",
            r#"GPU serial 16501\u{1b}[31m of shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments), node 9fa5's gpu\u{1b} (matched by UUID or serial only, not by a verified hardware identity, so it counts against this licence, not the node), is attested at site ams-9 (no licence evaluated lists it); this licence allows it only at its sites fra-1 in DE: the device was moved outside its licence; return it to a licensed site, or have the licence amended and the shipment re-issued"#,
        ),
        (
            "diverted_device",
            r#"GPU hardware identity ab12 of shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments), node 9fa5's gpu0 (matched by its verified hardware identity), is attested by a node whose certificate certifies no site, so it is not proven at a licensed site; this licence allows it only at its sites fra-1 in DE: the device was moved outside its licence; return it to a licensed site, or have the licence amended and the shipment re-issued"#,
        ),
        (
            "unaccounted_device",
            r#"GPU GPU-5e1f of shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments), delivered to site fra-1 at 2026-01-01T00:00:00Z, is in no node's current attestation 3600 s past the 1209600 s allowed after delivery: find the device and attest the node that holds it, or report it to the vendor as lost"#,
        ),
        (
            "unshipped_device",
            r#"GPU GPU-77aa (serial 1650123456789) counts under this licence, which requires every device it counts to be on one of its shipments, but it is on none of its 2 shipments evaluated: have the vendor sign a shipment listing it, or remove the device"#,
        ),
        (
            "unshipped_device",
            r#"GPU without UUID (serial unknown) counts under this licence, which requires every device it counts to be on one of its shipments, but it is on none of its 0 shipments evaluated (a simulated inventory's GPUs are on no shipment): have the vendor sign a shipment listing it, or remove the device"#,
        ),
        (
            "shipped_device_duplicated",
            r#"GPU GPU-5e1f of shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments) appears in 2 places (a/gpu0, b/gpu3): one shipped device cannot stand in two places; find which node reports a copied identity, or re-key the node whose key was copied"#,
        ),
        (
            "shipment_site_not_licensed",
            r#"shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments) was delivered to site muc-1 in DE, which is not a site of this licence in that country (fra-1, ber-1): its devices are followed where they are attested; have the licence list the site, or the vendor correct the shipment"#,
        ),
        (
            "shipment_licence_unknown",
            r#"shipment SHP-2026-0007 (vendor CN=Example GPU vendor shipments) of 8 devices ships under licence OTHER-1, which is not among the licences evaluated: its devices cannot be followed; load that licence, or have the vendor correct the shipment"#,
        ),
    ];

    #[test]
    fn sentences_are_unchanged() {
        let reasons = representative();
        assert_eq!(reasons.len(), SENTENCES.len());
        for (reason, (code, sentence)) in reasons.iter().zip(SENTENCES) {
            assert_eq!(reason.code(), *code);
            assert_eq!(reason.sentence(), *sentence, "{code}");
        }
        for code in Reason::CODES {
            assert!(
                SENTENCES.iter().any(|(c, _)| *c == code),
                "{code} has no representative"
            );
        }
    }
}
