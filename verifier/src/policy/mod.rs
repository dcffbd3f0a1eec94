//! The policy engine: `evaluate(licences, shipments, rule_set, attestations, at) ->
//! FleetVerdict`.
//!
//! Pure and deterministic (DESIGN.md "Policy engine invariants"): no clock, no I/O, and the
//! same inputs give the same verdict byte for byte, whatever their order. Every derived
//! figure (spec row, TPP, ECCN, tier) is recomputed by the verifier; what the node says of
//! itself (its classification, its tier, its site) is compared, never used.
//!
//! A verdict may rest only on verified facts. Each licence, country and the fleet get one of
//! three verdicts ([`Verdict`]): `compliant`, `not_compliant` (a finding of severity
//! `violation`), or `unproven` (a finding of severity `unproven`: the evidence cannot
//! establish compliance).
//!
//! # The pipeline
//!
//! Each stage is a pure function with its own tests:
//!
//! 0. [`lifecycle`] (before [`evaluate_with`]): revoked and retired licences, retired nodes
//!    and nodes whose certificate a CRL revokes are left out, with findings.
//! 1. [`latest`]: the latest evidence per node. A node is its key ([`NodeId`]); its current
//!    attestation is the one the verifier received last, else the newest by `iat` not dated
//!    ahead of the evaluation instant.
//! 2. [`identity`]: one subject under several keys, one key on several machines.
//! 3. [`assign`]: the licence each node counts under, by the site its certificate certifies.
//! 4. [`gpu`]: each GPU classified from its identity and measurement, and whether the rule
//!    set controls it (a device it does not control is outside every licence: listed, never
//!    a violation, not counted).
//! 5. [`duplicates`]: one GPU (normalised UUID) in several nodes counts once, against the
//!    stricter licence.
//! 6. [`node`]: freshness, per-GPU findings against the licence, the derived evidence tier,
//!    the node's tallies.
//! 7. [`tally`]: licence usage against caps and validity; country usage against
//!    allocations. [`need`]: whether each licence's counted devices need a licence under
//!    the rule set, for the destination and party the signed licence names
//!    (`licence_need`), once per distinct outcome.
//! 8. [`verdicts`](roll_up): severities rolled up into node, licence, country and fleet
//!    verdicts.
//!
//! Shipments ([`shipments`], issue 15) run beside the stages: their devices are found in the
//! fleet by identity before stage 3 (so a node whose controlled GPUs are all on shipments of
//! one licence listing its site counts under that licence), and after stage 6 they add the
//! shipment findings (`diverted_device`, `unaccounted_device`, `unshipped_device`,
//! `shipped_device_duplicated`) and each licence's shipment summary.
//!
//! Evidence enters through one seam: a [`VerifiedAttestation`] carries the facts a verified
//! format yields (the node's key and certified site, the verifier's receipt time, the claims
//! whose figures the stages recompute). A hardware evidence format becomes a new producer of
//! those facts, not an edit to the stages.
//!
//! # Measurements
//!
//! A GPU may carry a throughput measurement (submod `measurement`). Each measured median is
//! truncated to four decimals (exact [`Tops`]) and, where the spec table has a figure for the
//! same precision, held against it with the rule set's `[measurement]` tolerances, overridden
//! by the licence's: more than `exceeds_spec_percent` above is `exceeds_spec` (a violation:
//! the part is more capable than its identity claims), more than `below_spec_percent` below is
//! `below_spec` (a warning). The measured TPP (maximum over precisions of median x bit
//! length) is a lower bound; above the licence's `max_tpp_per_device` it is
//! `device_tpp_above_cap` (basis `measured`). A GPU not in the spec table with a measured TPP
//! raises `unlisted_device` instead of `unknown_device`, is classified by its measured
//! figures alone and counts with its measured TPP; either leaves its licence `unproven`,
//! since the true TPP may be higher.

mod assign;
#[doc(hidden)]
pub mod bench_support;
mod duplicates;
mod findings;
pub mod gating;
mod gpu;
mod identity;
mod latest;
pub mod lifecycle;
mod need;
mod node;
mod reason;
pub mod shipments;
mod tally;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use tppguard_proto::claims::measurement::MeasurementMethod;
use tppguard_proto::claims::{AttestationClaims, GpuStatus};
use tppguard_proto::classify::{NeedDetermination, Party};
use tppguard_proto::evidence::EvidenceTier;
use tppguard_proto::identity::NodeId;
use tppguard_proto::licence::{CountryCode, Licence, Validity};
use tppguard_proto::ruleset::{MeasurementTolerances, RuleSet, RuleSetPosture, RuleSetStatus};
use tppguard_proto::site::SiteId;
use tppguard_proto::spec::{self, H100Equivalents};
use tppguard_proto::tpp::Precision;
use tppguard_proto::units::{Tops, Tpp};

pub use reason::{PartyProng, Reason, Severity, SpecRatio, TppSource};
pub use shipments::{ShipmentSummary, ShippedDevice, VerifiedShipment};

use crate::chain::VerifiedLeaf;
use crate::gpu_evidence::GpuEvidenceReport;

/// How far an attestation's `iat` may lie after the evaluation instant before it is
/// `attestation_from_future`, seconds.
pub const MAX_CLOCK_SKEW_S: i64 = 300;

/// The rule set the agent's own classification is computed under (claims
/// `classification.eccn`); it is compared with the verifier's only under this rule set.
pub const AGENT_CLASSIFICATION_RULE_SET: &str = "us-eccn-3a090";

/// An attestation whose signature, chain, nonce and claims were checked, with the facts the
/// verifier derived itself: the node's identity (its key), the site its certificate
/// certifies, and, in `serve`, when the verifier received it. Only the attestation verifier
/// constructs it, so [`evaluate`] cannot see unverified input.
#[derive(Debug, Clone)]
pub struct VerifiedAttestation {
    claims: AttestationClaims,
    node_id: NodeId,
    node_subject: String,
    certified_site: Option<SiteId>,
    received_at: Option<i64>,
    token_sha256: [u8; 32],
    gpu_evidence: GpuEvidenceFacts,
    /// What the verifier established from the node's gating report (issue 15), when it
    /// verified it; `None` read back from storage (the stage then takes the report as
    /// unverifiable).
    gating: Option<Arc<gating::GatingFacts>>,
}

/// What the verifier established from the GPUs' own evidence when it verified an attestation:
/// per submod name (`gpu0`), the report of [`verify_gpu_evidence`] for the evidence that submod
/// carried. A submod without evidence has no entry.
///
/// [`verify_gpu_evidence`]: crate::gpu_evidence::verify_gpu_evidence
pub type GpuEvidenceFacts = std::collections::BTreeMap<String, Arc<GpuEvidenceReport>>;

impl VerifiedAttestation {
    /// Wraps checked claims with the facts of the node's verified certificate and the token's
    /// SHA-256.
    pub(crate) fn new(
        claims: AttestationClaims,
        leaf: &VerifiedLeaf,
        token_sha256: [u8; 32],
    ) -> Self {
        Self {
            claims,
            node_id: leaf.node_id(),
            node_subject: leaf.subject().to_owned(),
            certified_site: leaf.certified_site().cloned(),
            received_at: None,
            token_sha256,
            gpu_evidence: GpuEvidenceFacts::new(),
            gating: None,
        }
    }

    /// An attestation verified earlier, read back from storage with the facts derived when it
    /// was verified. Only for rows the verifier itself recorded after [`verify_attestation`]
    /// accepted them, and for tests.
    ///
    /// [`verify_attestation`]: crate::attestation::verify_attestation
    pub(crate) fn from_stored(
        claims: AttestationClaims,
        node_id: NodeId,
        node_subject: String,
        certified_site: Option<SiteId>,
        received_at: Option<i64>,
        token_sha256: [u8; 32],
    ) -> Self {
        Self {
            claims,
            node_id,
            node_subject,
            certified_site,
            received_at,
            token_sha256,
            gpu_evidence: GpuEvidenceFacts::new(),
            gating: None,
        }
    }

    /// The same attestation with what the verifier established from its GPUs' evidence: set
    /// by the attestation verifier once it checked that evidence, and by `serve` from the
    /// facts it recorded then.
    #[must_use]
    pub(crate) fn with_gpu_evidence(mut self, facts: GpuEvidenceFacts) -> Self {
        self.gpu_evidence = facts;
        self
    }

    /// The same attestation with what the verifier established from its gating report (the
    /// lease it carries checked): set by the attestation verifier.
    #[must_use]
    pub(crate) fn with_gating(mut self, facts: Option<gating::GatingFacts>) -> Self {
        self.gating = facts.map(Arc::new);
        self
    }

    /// What the verifier established from the node's gating report, when it verified it.
    pub fn gating(&self) -> Option<&gating::GatingFacts> {
        self.gating.as_deref()
    }

    /// The same attestation, received by the verifier at `received_at` (Unix seconds, the
    /// verifier's clock): `serve` orders a node's attestations by it.
    #[must_use]
    pub fn received_at_time(mut self, received_at: i64) -> Self {
        self.received_at = Some(received_at);
        self
    }

    /// The verified claims.
    pub fn claims(&self) -> &AttestationClaims {
        &self.claims
    }

    /// The node's identity: the SHA-256 of its certificate's SubjectPublicKeyInfo.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The node certificate's subject, for display only (two nodes may share one).
    pub fn node_subject(&self) -> &str {
        &self.node_subject
    }

    /// The site the operator CA certified in the node's certificate, if any.
    pub fn certified_site(&self) -> Option<&SiteId> {
        self.certified_site.as_ref()
    }

    /// When the verifier received it (Unix seconds), when known (`serve`; `check` reads files
    /// and knows none).
    pub fn received_at(&self) -> Option<i64> {
        self.received_at
    }

    /// SHA-256 of the compact JWS.
    pub fn token_sha256(&self) -> &[u8; 32] {
        &self.token_sha256
    }

    /// What the verifier established from each GPU's own evidence, by submod name.
    pub fn gpu_evidence(&self) -> &GpuEvidenceFacts {
        &self.gpu_evidence
    }

    /// The hardware identity of GPU `submod`: its device certificate's key hash, only when
    /// its evidence verified (bound to this attestation); `None` otherwise.
    pub fn verified_hardware_id(&self, submod: &str) -> Option<&str> {
        self.gpu_evidence
            .get(submod)
            .filter(|r| r.verified())
            .and_then(|r| r.hardware_id.as_deref())
    }
}

/// A licence whose signature chains to the licence authority.
#[derive(Debug, Clone)]
pub struct VerifiedLicence {
    licence: Licence,
    signer_subject: String,
}

impl VerifiedLicence {
    /// Wraps a licence whose signature was checked, with its signer's subject.
    pub(crate) fn new(licence: Licence, signer_subject: String) -> Self {
        Self {
            licence,
            signer_subject,
        }
    }

    /// The licence.
    pub fn licence(&self) -> &Licence {
        &self.licence
    }

    /// The subject of the certificate that signed it.
    pub fn signer_subject(&self) -> &str {
        &self.signer_subject
    }
}

/// One finding: a reason code, its severity, a sentence, what it is about and its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable snake_case reason code ([`Reason::code`]).
    pub code: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// Human sentence with the figures.
    pub sentence: String,
    /// The node (certificate subject) it is about.
    pub node: Option<String>,
    /// The GPU (submod name, `gpu0`) it is about.
    pub gpu: Option<String>,
    /// The licence id it is about.
    pub licence: Option<String>,
    /// The figures.
    pub figures: Reason,
    /// Other nodes it bears on besides `node`: every other node reporting a duplicated GPU.
    /// Not serialized: the figures name them (`seen_in`).
    #[serde(skip)]
    pub also_about: Vec<String>,
}

impl Finding {
    fn new(reason: Reason, licence: Option<&str>, node: Option<String>, gpu: Option<&str>) -> Self {
        Self {
            code: reason.code(),
            severity: reason.severity(),
            sentence: reason.sentence(),
            node,
            gpu: gpu.map(str::to_owned),
            licence: licence.map(str::to_owned),
            figures: reason,
            also_about: Vec::new(),
        }
    }
}

/// A verdict on a licence, a country or the fleet: whether the verified evidence establishes
/// compliance. Ordered best first, so the verdict on several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every condition holds, on evidence strong enough to say so.
    Compliant,
    /// No condition is seen broken, but the evidence cannot establish compliance
    /// (findings of severity `unproven`).
    Unproven,
    /// A condition is broken (a finding of severity `violation`).
    NotCompliant,
}

impl Verdict {
    /// The verdict the worst finding leads to.
    pub const fn from_severity(worst: Severity) -> Self {
        match worst {
            Severity::Info | Severity::Warning => Self::Compliant,
            Severity::Unproven => Self::Unproven,
            Severity::Violation => Self::NotCompliant,
        }
    }

    /// The stable snake_case code, as serialized.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::Unproven => "unproven",
            Self::NotCompliant => "not_compliant",
        }
    }

    /// Whether it is `compliant`.
    pub fn is_compliant(self) -> bool {
        self == Self::Compliant
    }
}

/// A TPP cap check: used, cap and headroom, exact, with H100-equivalents beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TppCap {
    /// TPP counted.
    pub used: Tpp,
    /// The cap.
    pub cap: Tpp,
    /// `cap - used`, zero when over.
    pub headroom: Tpp,
    /// `used - cap`, zero when within.
    pub over_by: Tpp,
    /// `used` in H100-equivalents.
    pub used_h100_equivalents: H100Equivalents,
    /// `cap` in H100-equivalents.
    pub cap_h100_equivalents: H100Equivalents,
}

impl TppCap {
    fn new(used: Tpp, cap: Tpp) -> Self {
        Self {
            used,
            cap,
            headroom: tpp_minus(cap, used),
            over_by: tpp_minus(used, cap),
            used_h100_equivalents: spec::h100_equivalents(used),
            cap_h100_equivalents: spec::h100_equivalents(cap),
        }
    }

    /// Whether `used` is above `cap`.
    pub fn is_over(&self) -> bool {
        self.used > self.cap
    }
}

/// `a - b`, zero when `b >= a`.
fn tpp_minus(a: Tpp, b: Tpp) -> Tpp {
    a.raw()
        .checked_sub(b.raw())
        .and_then(Tpp::from_ten_thousandths)
        .unwrap_or_default()
}

/// A device-count cap check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceCap {
    /// Devices counted.
    pub used: u64,
    /// The cap.
    pub cap: u64,
    /// `cap - used`, zero when over.
    pub headroom: u64,
    /// `used - cap`, zero when within.
    pub over_by: u64,
}

impl DeviceCap {
    fn new(used: u64, cap: u64) -> Self {
        Self {
            used,
            cap,
            headroom: cap.saturating_sub(used),
            over_by: used.saturating_sub(cap),
        }
    }
}

/// One licence's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenceUsage {
    /// Licence id.
    pub licence: String,
    /// Subject of the certificate that signed it.
    pub signer: String,
    /// Its destination country.
    pub destination_country: CountryCode,
    /// The rule set the licence names.
    pub licence_rule_set: String,
    /// Its validity at the evaluation instant.
    pub validity: Validity,
    /// Nodes assigned to it.
    pub nodes: u64,
    /// Of those, nodes whose latest attestation is stale.
    pub stale_nodes: u64,
    /// Device count against `max_devices`.
    pub devices: DeviceCap,
    /// Counted devices whose TPP is unknown (not in the spec table).
    pub devices_tpp_unknown: u64,
    /// Counted devices not in the spec table that count with their measured TPP, a lower
    /// bound (`unlisted_device`): with any, `tpp.used` is itself a lower bound.
    pub devices_tpp_measured: u64,
    /// Devices at its nodes that the rule set does not control (no licence needed): listed,
    /// never counted.
    pub devices_not_controlled: u64,
    /// TPP against `max_aggregate_tpp` (devices of unknown TPP add nothing).
    pub tpp: TppCap,
    /// The party the licence names (licensee's headquarters and ultimate parent), from the
    /// signed licence.
    pub party: Party,
    /// Whether its counted devices need a licence under the rule set, for its destination
    /// and party.
    pub licence_need: LicenceNeedSummary,
    /// Its shipments (issue 15): how many, the devices they list, and where those stand.
    /// Absent when the licence has no shipment evaluated and does not require them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipments: Option<shipments::ShipmentSummary>,
    /// The licence's lease terms (`[lease]`, defaults when absent): how long its nodes'
    /// leases last, and whether an agent past the grace period without one fails open or
    /// closed.
    pub lease: tppguard_proto::lease::LeaseTerms,
    /// The worst finding about the licence or its nodes.
    pub severity: Severity,
    /// The licence's verdict, from `severity`.
    pub verdict: Verdict,
}

/// Whether a licence's counted devices need a licence under the rule set (for its destination
/// and party): counts per need, and each distinct determination with the devices it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LicenceNeedSummary {
    /// Counted devices that need a licence.
    pub required: u64,
    /// Counted devices that need none (the licence's caps still apply, as its terms).
    pub not_required: u64,
    /// Counted devices whose need the rule set cannot decide.
    pub undetermined: u64,
    /// One determination per distinct outcome of the counted devices: `required` first, then
    /// `undetermined`, then `not_required`, each by rule, then outcome.
    pub determinations: Vec<NeedCount>,
}

/// One determination and how many counted devices it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeedCount {
    /// The determination.
    #[serde(flatten)]
    pub determination: NeedDetermination,
    /// The device outcome it is about (`3A090.a`); `None` for an unknown device.
    pub outcome: Option<String>,
    /// Counted devices it covers.
    pub devices: u64,
}

/// Usage in one destination country, across licences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountryUsage {
    /// The country.
    pub country: CountryCode,
    /// Licences with this destination, by id.
    pub licences: Vec<String>,
    /// Devices counted.
    pub devices: u64,
    /// Counted devices whose TPP is unknown.
    pub devices_tpp_unknown: u64,
    /// Counted devices that count with their measured TPP, a lower bound.
    pub devices_tpp_measured: u64,
    /// TPP counted.
    pub tpp: Tpp,
    /// `tpp` in H100-equivalents.
    pub h100_equivalents: H100Equivalents,
    /// The rule set's allocation for the country, checked against `tpp`; `None` when the
    /// country's group (or the rule set) has none.
    pub allocation: Option<TppCap>,
    /// The country's group under the rule set (`tier_1`); `None` when it has no groups.
    pub tier: Option<String>,
    /// The period the allocation covers (`2025-2027`), with `allocation`.
    pub allocation_period: Option<String>,
    /// The country's verdict: the worst of its licences' and of its allocation check.
    pub verdict: Verdict,
}

/// One GPU of a node, as the verifier sees it. Strings repeated across GPUs (submod name,
/// outcome, clause) are shared (`Arc<str>`), so a large fleet does not allocate them per GPU;
/// they serialize as plain strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuVerdict {
    /// Submod name, `gpu0`.
    #[serde(serialize_with = "ser_str")]
    pub submod: Arc<str>,
    /// UUID, when reported.
    pub uuid: Option<String>,
    /// Serial, when reported.
    pub serial: Option<String>,
    /// NVML status.
    pub status: GpuStatus,
    /// The spec-table model; `None` when unknown.
    pub model: Option<&'static str>,
    /// Outcome under the rule set (`3A090.a`); `None` when the device is unknown.
    #[serde(serialize_with = "ser_opt_str")]
    pub outcome: Option<Arc<str>>,
    /// The clause that decided it.
    #[serde(serialize_with = "ser_opt_str")]
    pub clause: Option<Arc<str>>,
    /// Whether the rule set controls it; a device it does not control (`not_3a090`, a
    /// consumer part's carve-out) needs no licence and never counts.
    pub controlled: bool,
    /// The TPP it counts with: from the spec table, or for a GPU not in it, its measured TPP
    /// (a lower bound); `None` when unknown.
    pub tpp: Option<Tpp>,
    /// `tpp` in H100-equivalents.
    pub h100_equivalents: Option<H100Equivalents>,
    /// Whether it counts here (`false` for a device the rule set does not control, and for
    /// a duplicate counted elsewhere).
    pub counted: bool,
    /// Where `tpp` comes from (`spec`, `measured`); `None` when unknown.
    pub tpp_from: Option<TppSource>,
    /// The GPU's measurement against the spec table, when it carries one.
    pub measured: Option<Box<GpuMeasurement>>,
    /// The GPU's own tier, derived by the verifier: `hardware` when its evidence verified,
    /// `measured` when a real measurement consistent with its spec backs it, else
    /// `declared`.
    pub evidence_tier: EvidenceTier,
    /// What the attestation verifier made of the GPU's own evidence (its named checks, its
    /// hardware identity, the facts of its signed report), when it carried any.
    /// Shared with the attestation's facts: a fleet's verdict does not copy every report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_evidence: Option<Arc<GpuEvidenceReport>>,
}

/// What the verifier made of a GPU's measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasurementStatus {
    /// Every precision with a spec figure is within the tolerances (and one has one).
    Consistent,
    /// Some precision is below spec by more than the tolerance (`below_spec`), none above.
    BelowSpec,
    /// Some precision is above spec by more than the tolerance (`exceeds_spec`).
    ExceedsSpec,
    /// The GPU is not in the spec table; it is classified by its measurement
    /// (`unlisted_device`).
    Unlisted,
    /// No precision measured has a spec figure to hold it against (or nothing was measured).
    NoSpecFigure,
    /// Older than `max_age_days` at the attestation's `iat`, or dated after it: its rates are
    /// still held against the spec, but it does not back the `measured` tier.
    Stale,
}

impl MeasurementStatus {
    /// Whether the measurement backs the `measured` evidence tier.
    pub const fn backs_measured_tier(self) -> bool {
        matches!(self, Self::Consistent | Self::BelowSpec)
    }
}

/// How one measured precision compares with its spec figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateCheck {
    /// Within the tolerances.
    WithinTolerance,
    /// Above spec by more than `exceeds_spec_percent`.
    ExceedsSpec,
    /// Below spec by more than `below_spec_percent`.
    BelowSpec,
    /// The spec table has no figure for this precision of this device.
    NoSpecFigure,
}

/// One measured precision against its spec figure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasuredRate {
    /// The precision.
    pub precision: Precision,
    /// The measured median, TOPS, truncated to four decimals.
    pub tops: Tops,
    /// The spec figure for the precision, when the table has one.
    pub spec_tops: Option<Tops>,
    /// `tops / spec_tops`.
    pub ratio: Option<SpecRatio>,
    /// The comparison.
    pub check: RateCheck,
}

/// A GPU's measurement as the verifier holds it against the spec table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuMeasurement {
    /// How it was measured.
    pub method: MeasurementMethod,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// The measured TPP: the maximum over precisions of median x bit length, rounded down;
    /// a lower bound on the device's TPP. `None` when nothing was measured.
    pub tpp: Option<Tpp>,
    /// The precision that set `tpp`.
    pub tpp_basis: Option<Precision>,
    /// `tpp` over the spec TPP, when both are known.
    pub tpp_ratio: Option<SpecRatio>,
    /// What the verifier made of it.
    pub status: MeasurementStatus,
    /// The tolerances applied: the rule set's, with the licence's overrides.
    pub tolerances: MeasurementTolerances,
    /// One entry per precision measured, in precision order (FP64 first).
    pub rates: Vec<MeasuredRate>,
}

/// One node's latest attestation, as evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeVerdict {
    /// The node: the SHA-256 of its certificate's SubjectPublicKeyInfo, hex.
    pub node: NodeId,
    /// Its certificate's subject, for display (two nodes may share one).
    pub subject: String,
    /// SHA-256 of the attestation token evaluated, hex.
    pub token_sha256: String,
    /// When the node says it was made, Unix seconds.
    pub iat: i64,
    /// When the verifier received it, Unix seconds (`serve`; absent in `check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
    /// Its age at the evaluation instant, seconds, from `received_at` when known, else from
    /// `iat` (zero when from the future).
    pub age_s: u64,
    /// Older than the licence's `max_attestation_age`.
    pub stale: bool,
    /// The site it is at: the certified one, else the claimed one. Shared between the
    /// nodes of one site.
    #[serde(serialize_with = "ser_opt_str")]
    pub site: Option<Arc<str>>,
    /// Whether `site` comes from the node's certificate.
    pub site_certified: bool,
    /// The licence it is assigned to.
    pub licence: Option<String>,
    /// The evidence tier the attestation asks for (a request, never a fact).
    pub evidence_tier: EvidenceTier,
    /// The tier the verifier derived from what it verified, which the licence's
    /// `min_evidence_tier` is checked against.
    pub effective_evidence_tier: EvidenceTier,
    /// Devices counted here.
    pub devices_counted: u64,
    /// Devices here the rule set does not control (listed, never counted).
    pub devices_not_controlled: u64,
    /// TPP counted here.
    pub tpp_counted: Tpp,
    /// `tpp_counted` in H100-equivalents.
    pub h100_equivalents: H100Equivalents,
    /// The worst finding about the node or its GPUs.
    pub severity: Severity,
    /// Its GPUs, in submod order.
    pub gpus: Vec<GpuVerdict>,
}

/// The verdict on a fleet at one instant under one rule set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetVerdict {
    /// The evaluation instant, Unix seconds.
    pub at: i64,
    /// The rule set id.
    pub rule_set: String,
    /// Its version.
    pub rule_set_version: String,
    /// Its legal status.
    pub rule_set_status: RuleSetStatus,
    /// The enforcement posture: the rule set with its status, where it came from and how a
    /// scenario or a variant file modified it.
    pub posture: RuleSetPosture,
    /// `compliant`, `unproven` or `not_compliant`, from the worst finding.
    pub verdict: Verdict,
    /// Nodes by subject.
    pub nodes: Vec<NodeVerdict>,
    /// Licences by id.
    pub licences: Vec<LicenceUsage>,
    /// Destination countries by code.
    pub countries: Vec<CountryUsage>,
    /// Findings, worst first, then by code, licence, node and GPU.
    pub findings: Vec<Finding>,
}

/// The bytes as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

impl FleetVerdict {
    /// Which findings bear on which node, indexed once for many lookups.
    pub fn finding_index(&self) -> FindingIndex<'_> {
        let mut index = FindingIndex {
            verdict: self,
            by_node: HashMap::new(),
            by_licence: HashMap::new(),
            fleet: Vec::new(),
        };
        for (i, f) in self.findings.iter().enumerate() {
            match (&f.node, &f.licence) {
                (Some(n), _) => index.by_node.entry(n.as_str()).or_default().push(i),
                (None, Some(l)) => index.by_licence.entry(l.as_str()).or_default().push(i),
                (None, None) => index.fleet.push(i),
            }
            for other in &f.also_about {
                index.by_node.entry(other.as_str()).or_default().push(i);
            }
        }
        index
    }
}

/// The findings of a [`FleetVerdict`] by what they are about (see [`Self::for_node`]).
pub struct FindingIndex<'v> {
    verdict: &'v FleetVerdict,
    by_node: HashMap<&'v str, Vec<usize>>,
    by_licence: HashMap<&'v str, Vec<usize>>,
    fleet: Vec<usize>,
}

impl<'v> FindingIndex<'v> {
    /// The findings that bear on `node`, in the verdict's order: those about it or its GPUs
    /// (a duplicated GPU bears on every node reporting it), those about the licence it is
    /// assigned to, and those about the whole fleet (no node, no licence). A licence over its
    /// cap therefore bears on every node counted under it.
    pub fn for_node(&self, node: &NodeVerdict) -> Vec<&'v Finding> {
        let none = Vec::new();
        let id = node.node.to_string();
        let own = self.by_node.get(id.as_str()).unwrap_or(&none);
        let licence = node
            .licence
            .as_deref()
            .and_then(|l| self.by_licence.get(l))
            .unwrap_or(&none);
        let mut at: Vec<usize> = own
            .iter()
            .chain(licence)
            .chain(&self.fleet)
            .copied()
            .collect();
        at.sort_unstable();
        at.dedup();
        at.iter()
            .filter_map(|&i| self.verdict.findings.get(i))
            .collect()
    }
}

fn ser_str<S: Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

fn ser_opt_str<S: Serializer>(value: &Option<Arc<str>>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.serialize_some(&**v),
        None => serializer.serialize_none(),
    }
}

/// The licences in a fixed order, whatever the input order.
fn sorted_licences(licences: &[VerifiedLicence]) -> Vec<&VerifiedLicence> {
    let mut lics: Vec<&VerifiedLicence> = licences.iter().collect();
    lics.sort_by(|a, b| {
        let key = |v: &VerifiedLicence| {
            let l = &v.licence;
            (
                l.id().to_owned(),
                v.signer_subject.clone(),
                l.valid_from(),
                l.valid_until(),
                l.max_aggregate_tpp(),
                l.max_devices(),
            )
        };
        key(a).cmp(&key(b))
    });
    lics
}

/// Evaluates a fleet's latest attestations against its licences and their shipments under
/// one rule set at `at_unix`: the stages of the module documentation, in order.
///
/// `attestations` may hold several of one node (a slice, or a stored fleet chained with new
/// arrivals): [`latest`] picks the current one.
pub fn evaluate<'a>(
    licences: &[VerifiedLicence],
    shipments: &[VerifiedShipment],
    rule_set: &RuleSet,
    attestations: impl IntoIterator<Item = &'a VerifiedAttestation>,
    at_unix: i64,
) -> FleetVerdict {
    evaluate_with(
        licences,
        shipments,
        rule_set,
        attestations,
        at_unix,
        Vec::new(),
    )
}

/// [`evaluate`], with the findings of stage 0 ([`lifecycle::Lifecycle::apply`], whose
/// filtered licences and attestations are the ones given) in the verdict.
pub fn evaluate_with<'a>(
    licences: &[VerifiedLicence],
    shipments: &[VerifiedShipment],
    rule_set: &RuleSet,
    attestations: impl IntoIterator<Item = &'a VerifiedAttestation>,
    at_unix: i64,
    earlier: Vec<Finding>,
) -> FleetVerdict {
    let lics = sorted_licences(licences);
    let nodes = latest::select(attestations, at_unix);
    let mut findings = findings::Findings::new(nodes.len(), lics.len());
    findings.list.extend(earlier);

    identity::check(&nodes, &mut findings);
    let mut deriver = gpu::Deriver::new(rule_set, lics.len());
    let shipped = shipments::Shipped::new(shipments, &lics, &nodes);
    let preferred = shipped.preferred(&nodes, &mut deriver);
    let sites = assign::Sites::new(&lics);
    sites.report_overlaps(&lics, &mut findings);
    let assignment = assign::assign(&nodes, &lics, &sites, &preferred, &mut findings);
    let not_counted = duplicates::find(&nodes, &assignment, &lics, &mut findings);
    gating::check(&nodes, &assignment, &lics, &mut findings);

    let ctx = node::Context {
        rule_set,
        lics: &lics,
        at: at_unix,
        not_counted: &not_counted,
        check_agent: rule_set.id == AGENT_CLASSIFICATION_RULE_SET,
    };
    let mut tallies = vec![node::Tally::default(); lics.len()];
    let mut outcomes = vec![need::OutcomeCounts::default(); lics.len()];
    let mut node_verdicts = Vec::with_capacity(nodes.len());
    for (n, current) in nodes.iter().enumerate() {
        let a = assignment.get(n).copied().unwrap_or(assign::Assignment {
            licence: None,
            site: None,
        });
        let (verdict, tally) =
            node::evaluate_node(&ctx, &mut deriver, n, current, a, &mut findings);
        if let Some(t) = a.licence.and_then(|i| tallies.get_mut(i)) {
            t.add(&tally);
        }
        if let Some(o) = a.licence.and_then(|i| outcomes.get_mut(i)) {
            o.add_gpus(&verdict.gpus);
        }
        node_verdicts.push(verdict);
    }

    let fleet = shipments::Fleet {
        nodes: &nodes,
        assignment: &assignment,
        lics: &lics,
        verdicts: &node_verdicts,
        at: at_unix,
    };
    let shipment_summaries = shipped.report(&fleet, &mut findings);
    let mut usages = tally::licences(&lics, &tallies, rule_set, at_unix, &mut findings);
    for (usage, summary) in usages.iter_mut().zip(shipment_summaries) {
        usage.shipments = summary;
    }
    need::fill(&lics, &outcomes, rule_set, &mut usages, &mut findings);
    let countries = tally::countries(&usages, &tallies, rule_set, &mut findings);
    roll_up(
        rule_set,
        at_unix,
        findings,
        node_verdicts,
        usages,
        countries,
    )
}

/// Stage 8: severities into verdicts. A node's severity is the worst finding about it; a
/// licence's the worst about it or its nodes; a country's verdict the worst of its licences'
/// and of its allocation check; the fleet's the worst finding of all.
fn roll_up(
    rule_set: &RuleSet,
    at: i64,
    findings: findings::Findings,
    mut nodes: Vec<NodeVerdict>,
    mut usages: Vec<LicenceUsage>,
    mut countries: Vec<CountryUsage>,
) -> FleetVerdict {
    let findings::Findings {
        list: mut findings,
        node_severity,
        licence_severity,
    } = findings;
    let position: HashMap<String, usize> = usages
        .iter()
        .enumerate()
        .map(|(i, u)| (u.licence.clone(), i))
        .collect();
    let mut licence_severity = licence_severity;
    for (nv, s) in nodes.iter_mut().zip(node_severity) {
        nv.severity = s;
        if let Some(ls) = nv
            .licence
            .as_deref()
            .and_then(|l| position.get(l))
            .and_then(|&i| licence_severity.get_mut(i))
        {
            *ls = (*ls).max(s);
        }
    }
    // The stages walk nodes in memory order; the verdict lists them by node id.
    nodes.sort_unstable_by_key(|n| n.node);
    for (u, s) in usages.iter_mut().zip(licence_severity) {
        u.severity = s;
        u.verdict = Verdict::from_severity(s);
    }
    for c in &mut countries {
        let worst = c
            .licences
            .iter()
            .filter_map(|l| position.get(l.as_str()).and_then(|&i| usages.get(i)))
            .map(|u| u.verdict)
            .max()
            .unwrap_or(Verdict::Compliant);
        let over = c.allocation.is_some_and(|a| a.is_over());
        c.verdict = if over { Verdict::NotCompliant } else { worst };
    }
    findings.sort_by(|a, b| {
        (
            Reverse(a.severity),
            a.code,
            &a.licence,
            &a.node,
            &a.gpu,
            &a.sentence,
        )
            .cmp(&(
                Reverse(b.severity),
                b.code,
                &b.licence,
                &b.node,
                &b.gpu,
                &b.sentence,
            ))
    });
    let verdict = Verdict::from_severity(
        findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or_default(),
    );
    FleetVerdict {
        at,
        rule_set: rule_set.id.clone(),
        rule_set_version: rule_set.version.clone(),
        rule_set_status: rule_set.status,
        posture: rule_set.posture(),
        verdict,
        nodes,
        licences: usages,
        countries,
        findings,
    }
}
