//! The policy engine: `evaluate(licences, rule_set, attestations, at) -> FleetVerdict`.
//!
//! Pure and deterministic (DESIGN.md "Policy engine invariants"): no clock, no I/O, and the
//! same inputs give the same verdict byte for byte, whatever their order. Every derived
//! figure (spec row, TPP, ECCN) is recomputed from the GPU's identity under the given rule
//! set; the agent's own classification is only compared, never used.
//!
//! # How a node finds its licence
//!
//! The node is the attestation's verified `node_subject`; of several attestations of one
//! node, the latest counts (greatest `iat`, then greatest token hash). A node whose claims
//! name a site (`tppguard.site`) belongs to the licence that lists that site id; when several
//! licences list it, to the stricter one (smaller `max_aggregate_tpp`, then smaller licence
//! id), with a `site_in_several_licences` warning per such site; when none lists it, the node
//! is `node_unassigned`, naming the site. A node without a site belongs to the one licence
//! when exactly one is evaluated; with none or several, it is `node_unassigned`. An
//! unassigned node is a violation (its GPUs are covered by no licence); its GPUs count in no
//! licence or country, and it is stale after [`DEFAULT_MAX_ATTESTATION_AGE_SECONDS`].
//!
//! # Countries
//!
//! Usage per destination country sums the licences with that destination. When the rule set
//! has country groups, each country shows its tier, and a country whose group carries an
//! allocation is checked against it (`country_allocation_exceeded`, a violation).
//!
//! # How a GPU counts
//!
//! A GPU is identified by (UUID, serial). When one identity appears more than once in the
//! current attestations it counts once, against the stricter licence: the one with the
//! smaller `max_aggregate_tpp`, then the smaller licence id (an assigned node before an
//! unassigned one; then node subject and submod name), and a `duplicate_device` finding
//! names every place it appears. A stale node's GPUs still count. A GPU not in the spec
//! table counts as a device with TPP unknown (`unknown_device`), unless it carries a
//! measurement (below). A lost or unreadable GPU counts too (hiding hardware must not lower
//! usage).
//!
//! # Measurements
//!
//! A GPU may carry a throughput measurement (submod `measurement`). Each measured median is
//! truncated to four decimals (exact [`Tops`]) and, where the spec table has a figure for the
//! same precision, held against it with the rule set's `[measurement]` tolerances, overridden
//! by the licence's: more than `exceeds_spec_percent` above is `exceeds_spec` (a violation:
//! the part is more capable than its identity claims), more than `below_spec_percent` below is
//! `below_spec` (a warning, with the clocks, power and throttle reasons seen). The measured
//! TPP is the maximum over precisions of median x bit length, a lower bound on the device's
//! TPP; above the licence's `max_tpp_per_device` it is `device_tpp_above_cap` (basis
//! `measured`) even when the spec TPP is within the cap. A GPU not in the spec table with a
//! measured TPP raises `unlisted_device` **instead of** `unknown_device`: it is classified by
//! its measured figures alone (die area and bandwidths unknown, treated as designed for
//! datacenters, so no carve-out for consumer parts applies) and counts with its measured TPP.
//! Everything measured is computed per GPU, never memoised by model identity: two GPUs of one
//! model measure differently.
//!
//! # Effective evidence tier
//!
//! The licence's `min_evidence_tier` is checked against the node's effective tier. A node
//! claiming `measured` keeps it only when every GPU it counts carries a measurement whose
//! status is `consistent` or `below_spec` (no precision above spec, in the spec table, at
//! least one precision with a spec figure); otherwise it is evaluated as `declared`, with a
//! `measured_tier_downgraded` warning that says why. A node claiming `declared` stays
//! `declared` whatever it carries (the agent decides what it claims), and `hardware` is
//! taken as claimed.

#[doc(hidden)]
pub mod bench_support;
mod reason;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use tppguard_proto::claims::measurement::{Measurement, MeasurementMethod};
use tppguard_proto::claims::{AttestationClaims, GpuStatus, GpuSubmod, Pci};
use tppguard_proto::classify::{Classification, classify_device};
use tppguard_proto::evidence::EvidenceTier;
use tppguard_proto::identity::NodeId;
use tppguard_proto::licence::{
    CountryCode, DEFAULT_MAX_ATTESTATION_AGE_SECONDS, Licence, Validity,
};
use tppguard_proto::ruleset::{INDETERMINATE, MeasurementTolerances, RuleSet, RuleSetStatus};
use tppguard_proto::site::SiteId;
use tppguard_proto::spec::{self, AcceleratorSpec, H100Equivalents, SpecMatch, UnknownReason};
use tppguard_proto::tpp::{ComputeFigures, Precision};
use tppguard_proto::units::{Tops, Tpp};

pub use reason::{Reason, Severity, SpecRatio, TppSource};

use crate::chain::VerifiedLeaf;

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
}

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
        }
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
    fn new(reason: Reason, licence: Option<&str>, node: Option<&str>, gpu: Option<&str>) -> Self {
        Self {
            code: reason.code(),
            severity: reason.severity(),
            sentence: reason.sentence(),
            node: node.map(str::to_owned),
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
    /// TPP against `max_aggregate_tpp` (devices of unknown TPP add nothing).
    pub tpp: TppCap,
    /// The worst finding about the licence or its nodes.
    pub severity: Severity,
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
    /// The TPP it counts with: from the spec table, or for a GPU not in it, its measured TPP
    /// (a lower bound); `None` when unknown.
    pub tpp: Option<Tpp>,
    /// `tpp` in H100-equivalents.
    pub h100_equivalents: Option<H100Equivalents>,
    /// Whether it counts here (`false` for a duplicate counted elsewhere).
    pub counted: bool,
    /// Where `tpp` comes from (`spec`, `measured`); `None` when unknown.
    pub tpp_from: Option<TppSource>,
    /// The GPU's measurement against the spec table, when it carries one.
    pub measured: Option<Box<GpuMeasurement>>,
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
    /// When it was made, Unix seconds.
    pub iat: i64,
    /// Its age at the evaluation instant, seconds (zero when from the future).
    pub age_s: u64,
    /// Older than the licence's `max_attestation_age`.
    pub stale: bool,
    /// The licence it is assigned to.
    pub licence: Option<String>,
    /// The evidence tier the attestation claims.
    pub evidence_tier: EvidenceTier,
    /// The tier the licence's `min_evidence_tier` is checked against: `measured` only when
    /// the measurements back it (`measured_tier_downgraded`), else as claimed.
    pub effective_evidence_tier: EvidenceTier,
    /// Devices counted here.
    pub devices_counted: u64,
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

/// What the verifier derives from one GPU identity, computed once per distinct identity.
struct Derived {
    /// `outcome`, shared by every GPU verdict with this identity.
    outcome_shared: Option<Arc<str>>,
    /// `clause`, shared likewise.
    clause_shared: Option<Arc<str>>,
    spec: Option<&'static AcceleratorSpec>,
    unknown: Option<UnknownReason>,
    outcome: Option<String>,
    eccn: Option<String>,
    tpp: Option<Tpp>,
    /// `tpp` as JSON prints it, to compare with the agent's figure.
    tpp_f64: Option<f64>,
    /// `tpp` in H100-equivalents.
    h100_equivalents: Option<H100Equivalents>,
}

impl Derived {
    fn new(pci: Option<u32>, name: Option<&str>, rule_set: &RuleSet) -> Self {
        match spec::lookup(pci, name) {
            SpecMatch::Found { spec, .. } => {
                let c = classify_device(&spec.figures(), rule_set);
                let eccn = eccn_of(rule_set, &c);
                Self {
                    outcome_shared: Some(Arc::from(c.outcome.as_str())),
                    clause_shared: c.clause.as_deref().map(Arc::from),
                    spec: Some(spec),
                    unknown: None,
                    outcome: Some(c.outcome),
                    eccn,
                    tpp_f64: c.tpp.map(Tpp::as_f64),
                    h100_equivalents: c.tpp.map(spec::h100_equivalents),
                    tpp: c.tpp,
                }
            }
            SpecMatch::Unknown { reason } => Self {
                outcome_shared: None,
                clause_shared: None,
                spec: None,
                unknown: Some(reason),
                outcome: None,
                eccn: None,
                tpp: None,
                tpp_f64: None,
                h100_equivalents: None,
            },
        }
    }
}

/// The classification's outcome when it is an ECCN of the rule set's (`3A090.a` under
/// `3A090`).
fn eccn_of(rule_set: &RuleSet, c: &Classification) -> Option<String> {
    rule_set
        .eccn
        .as_deref()
        .filter(|e| {
            c.outcome
                .strip_prefix(e)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(|_| c.outcome.clone())
}

/// A GPU's measurement held against its spec row (`None`: not in the table) with the
/// tolerances, and the findings about its rates.
struct Checked {
    verdict: GpuMeasurement,
    /// `exceeds_spec` and `below_spec`, in precision order.
    findings: Vec<Reason>,
    /// The measured median of `verdict.tpp_basis`.
    basis_tops: Option<Tops>,
}

fn check_measurement(
    m: &Measurement,
    attested_at: i64,
    gpu: &GpuSubmod,
    spec: Option<&AcceleratorSpec>,
    spec_tpp: Option<Tpp>,
    tolerances: MeasurementTolerances,
) -> Checked {
    let exceeds = u128::from(tolerances.exceeds_spec_percent).saturating_add(100);
    let below = 100u128.saturating_sub(u128::from(tolerances.below_spec_percent));
    let mut rates: Vec<MeasuredRate> = m
        .results
        .iter()
        .filter_map(|r| {
            let tops = Tops::from_measured(r.tops_median)?;
            let spec_tops = spec.and_then(|s| {
                s.dense_tops
                    .iter()
                    .find(|(p, t)| *p == r.precision && t.raw() > 0)
                    .map(|(_, t)| *t)
            });
            let (ratio, check) = match spec_tops {
                None => (None, RateCheck::NoSpecFigure),
                Some(st) => {
                    let measured = u128::from(tops.raw()).saturating_mul(100);
                    let check = if measured > u128::from(st.raw()).saturating_mul(exceeds) {
                        RateCheck::ExceedsSpec
                    } else if measured < u128::from(st.raw()).saturating_mul(below) {
                        RateCheck::BelowSpec
                    } else {
                        RateCheck::WithinTolerance
                    };
                    (SpecRatio::new(tops, st), check)
                }
            };
            Some(MeasuredRate {
                precision: r.precision,
                tops,
                spec_tops,
                ratio,
                check,
            })
        })
        .collect();
    rates.sort_by_key(|r| r.precision);

    // The lower-bound TPP, with the spec TPP's own tie-breaking between precisions.
    let figures = measured_figures(&rates);
    let best = tppguard_proto::tpp::tpp(&figures);

    let model = spec.map_or("", |s| s.model);
    let t = &m.telemetry;
    let mut findings = Vec::new();
    for r in &rates {
        let (Some(spec_tops), Some(ratio)) = (r.spec_tops, r.ratio) else {
            continue;
        };
        match r.check {
            RateCheck::ExceedsSpec => findings.push(Reason::ExceedsSpec {
                model: model.to_owned(),
                precision: r.precision,
                measured_tops: r.tops,
                spec_tops,
                ratio,
                tolerance_percent: tolerances.exceeds_spec_percent,
            }),
            RateCheck::BelowSpec => findings.push(Reason::BelowSpec {
                model: model.to_owned(),
                precision: r.precision,
                measured_tops: r.tops,
                spec_tops,
                ratio,
                tolerance_percent: tolerances.below_spec_percent,
                sm_clock_mhz_min: t.sm_clock_mhz_min,
                sm_clock_mhz_max: t.sm_clock_mhz_max,
                max_sm_clock_mhz: gpu.max_sm_clock_mhz,
                temperature_c_max: t.temperature_c_max,
                power_mw_max: t.power_mw_max,
                power_limit_mw: gpu.power_limit_mw,
                throttle_reasons: t.throttle_reasons.clone(),
            }),
            RateCheck::WithinTolerance | RateCheck::NoSpecFigure => {}
        }
    }

    let any = |check: RateCheck| rates.iter().any(|r| r.check == check);
    let age = attested_at.saturating_sub(m.started_at);
    let stale = age > tolerances.max_age_s() || m.started_at > attested_at;
    let status = if spec.is_none() {
        if best.is_some() {
            MeasurementStatus::Unlisted
        } else {
            MeasurementStatus::NoSpecFigure
        }
    } else if any(RateCheck::ExceedsSpec) {
        MeasurementStatus::ExceedsSpec
    } else if rates.iter().all(|r| r.spec_tops.is_none()) {
        MeasurementStatus::NoSpecFigure
    } else if stale {
        MeasurementStatus::Stale
    } else if any(RateCheck::BelowSpec) {
        MeasurementStatus::BelowSpec
    } else {
        MeasurementStatus::Consistent
    };
    let tpp = best.map(|b| b.tpp);
    let tpp_ratio = tpp.zip(spec_tpp).and_then(|(measured, spec)| {
        SpecRatio::new(
            Tops::from_ten_thousandths(measured.raw())?,
            Tops::from_ten_thousandths(spec.raw())?,
        )
    });
    Checked {
        basis_tops: best.map(|b| b.tops),
        verdict: GpuMeasurement {
            method: m.method,
            started_at: m.started_at,
            tpp,
            tpp_basis: best.map(|b| b.precision),
            tpp_ratio,
            status,
            tolerances,
            rates,
        },
        findings,
    }
}

/// The figures of a GPU known only by its measured rates: die area and bandwidths unknown,
/// and designed for datacenters (nothing says otherwise, so no carve-out for consumer parts
/// applies).
fn measured_figures(rates: &[MeasuredRate]) -> ComputeFigures {
    ComputeFigures {
        dense_tops: rates.iter().map(|r| (r.precision, r.tops)).collect(),
        die_area: None,
        datacenter: true,
        dram_bandwidth: None,
        interconnect_bandwidth: None,
    }
}

/// NVML's combined PCI id, `(device << 16) | vendor`, from `0x10de` and `0x2330`.
fn pci_combined(pci: &Pci) -> Option<u32> {
    fn hex16(text: &str) -> Option<u16> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))?;
        u16::from_str_radix(digits, 16).ok()
    }
    let vendor = hex16(&pci.vendor_id)?;
    let device = hex16(&pci.device_id)?;
    Some((u32::from(device) << 16) | u32::from(vendor))
}

/// Whether the licence allows the device's model and ECCN: `(model_ok, eccn_ok)`. The ECCN
/// logic is the licence's own ([`Licence::allows`]); only the model half is split off, so a
/// finding can say which list refused.
fn allowed(licence: &Licence, model: Option<&str>, eccn: Option<&str>) -> (bool, bool) {
    if licence.allows(eccn, model) {
        return (true, true);
    }
    let model_ok = licence.models().is_empty()
        || model.is_some_and(|m| licence.models().iter().any(|l| l == m));
    let eccn_ok = !model_ok && licence.allows(eccn, licence.models().first().map(String::as_str));
    (model_ok, eccn_ok)
}

fn hex(bytes: &[u8]) -> String {
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

/// Where one GPU occurrence sits: (node index, GPU index within the node).
type Place = (usize, usize);

/// What a spec lookup reads: PCI vendor id, PCI device id and NVML name, as reported.
type SpecKey<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// A GPU identity: (UUID, serial).
type Identity<'a> = (&'a str, Option<&'a str>);

/// Collects findings and the worst severity per node and per licence.
struct Findings {
    list: Vec<Finding>,
    node_severity: Vec<Severity>,
    licence_severity: Vec<Severity>,
}

impl Findings {
    fn push(
        &mut self,
        reason: Reason,
        licence: Option<(usize, &str)>,
        node: Option<(usize, &str)>,
        gpu: Option<&str>,
    ) {
        let severity = reason.severity();
        if let Some(s) = node.and_then(|(i, _)| self.node_severity.get_mut(i)) {
            *s = (*s).max(severity);
        }
        if let Some(s) = licence.and_then(|(i, _)| self.licence_severity.get_mut(i)) {
            *s = (*s).max(severity);
        }
        self.list.push(Finding::new(
            reason,
            licence.map(|(_, id)| id),
            node.map(|(_, n)| n),
            gpu,
        ));
    }
}

/// A GPU not in the spec table that carries a measurement: its `unlisted_device` finding and
/// its classification by the measured figures.
struct Unlisted {
    reason: Reason,
    /// The measured TPP it counts with.
    tpp: Tpp,
    eccn: Option<String>,
    class: Classification,
}

/// Why a node's counted GPUs do not back the `measured` tier, GPU by GPU.
#[derive(Default)]
struct TierGaps {
    unmeasured: u64,
    exceeding: u64,
    unlisted: u64,
    no_spec_figure: u64,
    stale: u64,
}

impl TierGaps {
    /// Adds a counted GPU, by its measurement's status (`None`: no measurement).
    fn add(&mut self, status: Option<MeasurementStatus>) {
        let gap = match status {
            None => &mut self.unmeasured,
            Some(MeasurementStatus::ExceedsSpec) => &mut self.exceeding,
            Some(MeasurementStatus::Unlisted) => &mut self.unlisted,
            Some(MeasurementStatus::NoSpecFigure) => &mut self.no_spec_figure,
            Some(MeasurementStatus::Stale) => &mut self.stale,
            Some(MeasurementStatus::Consistent | MeasurementStatus::BelowSpec) => return,
        };
        *gap = gap.saturating_add(1);
    }

    fn is_empty(&self) -> bool {
        self.unmeasured == 0
            && self.exceeding == 0
            && self.unlisted == 0
            && self.no_spec_figure == 0
            && self.stale == 0
    }
}

/// The per-device cap check: the spec TPP above the cap, or else the measured TPP above it
/// (whatever model the device claims); one finding at most.
fn per_device_cap(
    licence: &Licence,
    spec_tpp: Option<Tpp>,
    measured_tpp: Option<Tpp>,
) -> Option<Reason> {
    let cap = licence.max_tpp_per_device()?;
    if let Some(tpp) = spec_tpp.filter(|t| *t > cap) {
        return Some(Reason::DeviceTppAboveCap {
            tpp,
            cap,
            basis: TppSource::Spec,
        });
    }
    measured_tpp
        .filter(|t| *t > cap)
        .map(|tpp| Reason::DeviceTppAboveCap {
            tpp,
            cap,
            basis: TppSource::Measured,
        })
}

#[derive(Default)]
struct Tally {
    nodes: u64,
    stale_nodes: u64,
    devices: u64,
    devices_tpp_unknown: u64,
    devices_tpp_measured: u64,
    tpp: Tpp,
}

/// Which of a node's attestations is the newer: the one the verifier received last (`serve`),
/// else the greater `iat`, then the greater token SHA-256.
fn recency(a: &VerifiedAttestation) -> (Option<i64>, i64, &[u8; 32]) {
    (a.received_at, a.claims.iat, &a.token_sha256)
}

/// Evaluates a fleet's latest attestations against its licences under one rule set at
/// `at_unix`. See the module documentation for how nodes find licences and GPUs count.
///
/// `attestations` may hold several of one node (a slice, or a stored fleet chained with new
/// arrivals): the newest counts (greater `iat`; equal `iat`: greater token SHA-256).
pub fn evaluate<'a>(
    licences: &[VerifiedLicence],
    rule_set: &RuleSet,
    attestations: impl IntoIterator<Item = &'a VerifiedAttestation>,
    at_unix: i64,
) -> FleetVerdict {
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

    // The latest attestation per node.
    let attestations = attestations.into_iter();
    let mut latest: HashMap<NodeId, &VerifiedAttestation> =
        HashMap::with_capacity(attestations.size_hint().0);
    for a in attestations {
        latest
            .entry(a.node_id)
            .and_modify(|cur| {
                if recency(a) > recency(cur) {
                    *cur = a;
                }
            })
            .or_insert(a);
    }
    let mut nodes: Vec<&VerifiedAttestation> = latest.into_values().collect();
    nodes.sort_unstable_by_key(|a| a.node_id);
    let node_names: Vec<String> = nodes.iter().map(|a| a.node_id.to_string()).collect();

    // Assignment: by site, the stricter of the licences listing it; without a site, the one
    // licence when there is exactly one.
    let mut by_site: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, v) in lics.iter().enumerate() {
        for site in v.licence.sites() {
            by_site.entry(site.id.as_str()).or_default().push(i);
        }
    }
    let site_licence: HashMap<&str, usize> = by_site
        .iter()
        .filter_map(|(site, is)| {
            let stricter = is
                .iter()
                .copied()
                .min_by_key(|&i| (lics.get(i).map(|v| v.licence.max_aggregate_tpp()), i))?;
            Some((*site, stricter))
        })
        .collect();
    let single: Option<usize> = (lics.len() == 1).then_some(0);
    let assignment: Vec<Option<usize>> = nodes
        .iter()
        .map(|a| match a.claims.site() {
            Some(site) => site_licence.get(site).copied(),
            None => single,
        })
        .collect();
    let licence_of = |n: usize| assignment.get(n).copied().flatten();

    // Identities seen more than once, with every place, in (node, GPU) order. Each identity
    // is hashed once with a randomly keyed SipHash (`RandomState`: an agent cannot choose
    // colliding identities), the small (hash, place) records are sorted, and only places
    // sharing a hash are compared in full. Faster than a map of a million borrowed keys,
    // whose probes miss the cache; the result does not depend on the hash values.
    let hasher = RandomState::new();
    let gpu_total = nodes.iter().map(|a| a.claims.submods.len()).sum();
    let mut hashed: Vec<(u64, Place)> = Vec::with_capacity(gpu_total);
    for (n, node) in nodes.iter().enumerate() {
        for (g, gpu) in node.claims.submods.values().enumerate() {
            if let Some(uuid) = gpu.uuid.as_deref() {
                hashed.push((hasher.hash_one((uuid, gpu.serial.as_deref())), (n, g)));
            }
        }
    }
    hashed.sort_unstable();
    let identity_at = |(n, g): Place| -> Option<Identity<'_>> {
        let gpu = nodes.get(n)?.claims.submods.values().nth(g)?;
        Some((gpu.uuid.as_deref()?, gpu.serial.as_deref()))
    };
    let mut repeated: BTreeMap<Identity<'_>, Vec<Place>> = BTreeMap::new();
    for run in hashed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
        let mut groups: BTreeMap<Identity<'_>, Vec<Place>> = BTreeMap::new();
        for &(_, place) in run {
            if let Some(id) = identity_at(place) {
                groups.entry(id).or_default().push(place);
            }
        }
        repeated.extend(groups.into_iter().filter(|(_, places)| places.len() > 1));
    }
    drop(hashed);

    let mut findings = Findings {
        list: Vec::new(),
        node_severity: vec![Severity::Info; nodes.len()],
        licence_severity: vec![Severity::Info; lics.len()],
    };
    let node_ref = |n: usize| node_names.get(n).map(|id| (n, id.as_str()));
    let licence_ref = |l: Option<usize>| l.and_then(|i| lics.get(i).map(|v| (i, v.licence.id())));

    for (site, is) in by_site.iter().filter(|(_, is)| is.len() > 1) {
        let counted = site_licence.get(site).copied();
        let reason = Reason::SiteInSeveralLicences {
            site: (*site).to_owned(),
            licences: is
                .iter()
                .filter_map(|&i| lics.get(i).map(|v| v.licence.id().to_owned()))
                .collect(),
            counted_against: licence_ref(counted).map_or_else(String::new, |(_, id)| id.to_owned()),
        };
        findings.push(reason, licence_ref(counted), None, None);
    }
    let submod_of = |(n, g): Place| -> Option<&str> {
        nodes
            .get(n)
            .and_then(|a| a.claims.submods.keys().nth(g))
            .map(String::as_str)
    };

    // Duplicates count once, against the stricter licence.
    let mut not_counted: HashSet<Place> = HashSet::new();
    for ((uuid, serial), places) in &repeated {
        let strictness = |&(n, g): &Place| {
            let lic = licence_of(n);
            let cap = lic
                .and_then(|i| lics.get(i))
                .map(|v| v.licence.max_aggregate_tpp());
            (lic.is_none(), cap, lic, n, g)
        };
        let Some(&counted) = places.iter().min_by_key(|p| strictness(p)) else {
            continue;
        };
        not_counted.extend(places.iter().copied().filter(|&p| p != counted));
        let place_name = |p: Place| {
            format!(
                "{}/{}",
                node_ref(p.0).map_or("", |(_, s)| s),
                submod_of(p).unwrap_or("")
            )
        };
        let mut seen_in: Vec<String> = places.iter().map(|&p| place_name(p)).collect();
        seen_in.sort();
        let lic = licence_ref(licence_of(counted.0));
        let reason = Reason::DuplicateDevice {
            uuid: (*uuid).to_owned(),
            serial: serial.map(str::to_owned),
            seen_in,
            counted_in: place_name(counted),
            counted_against: lic.map(|(_, id)| id.to_owned()),
        };
        let mut others: Vec<&str> = Vec::new();
        for &(n, _) in places {
            if let Some(s) = findings.node_severity.get_mut(n) {
                *s = (*s).max(reason.severity());
            }
            if n != counted.0
                && let Some((_, subject)) = node_ref(n)
            {
                others.push(subject);
            }
        }
        others.sort_unstable();
        others.dedup();
        findings.push(reason, lic, node_ref(counted.0), submod_of(counted));
        if let Some(f) = findings.list.last_mut() {
            f.also_about = others.into_iter().map(str::to_owned).collect();
        }
    }

    // Per node and GPU.
    let mut memo: HashMap<SpecKey<'_>, usize> = HashMap::new();
    let mut derived: Vec<Derived> = Vec::new();
    let mut last = None;
    // (model_ok, eccn_ok) per (derived identity, licence), indexed `d_idx * lics + licence`.
    let mut allow_memo: Vec<Option<(bool, bool)>> = Vec::new();
    // Submod names repeat across nodes (`gpu0`..`gpu7`): share one `Arc<str>` per position.
    let mut submod_names: Vec<Arc<str>> = Vec::new();
    let mut tallies: Vec<Tally> = lics.iter().map(|_| Tally::default()).collect();
    let check_agent = rule_set.id == AGENT_CLASSIFICATION_RULE_SET;
    let mut node_verdicts: Vec<NodeVerdict> = Vec::with_capacity(nodes.len());

    for (n, node) in nodes.iter().enumerate() {
        let claims = &node.claims;
        let lic_idx = licence_of(n);
        let lic = lic_idx.and_then(|i| lics.get(i)).map(|v| &v.licence);
        let lref = licence_ref(lic_idx);
        let nref = node_ref(n);

        if claims.simulated {
            findings.push(
                Reason::SimulatedInventory {
                    gpus: claims.submods.len() as u64,
                },
                lref,
                nref,
                None,
            );
        }
        if claims.iat > at_unix.saturating_add(MAX_CLOCK_SKEW_S) {
            findings.push(
                Reason::AttestationFromFuture {
                    iat: claims.iat,
                    at: at_unix,
                    ahead_s: claims.iat.abs_diff(at_unix),
                },
                lref,
                nref,
                None,
            );
        }
        let age_s = u64::try_from(at_unix.saturating_sub(claims.iat)).unwrap_or(0);
        let max_age_s = lic.map_or(DEFAULT_MAX_ATTESTATION_AGE_SECONDS, |l| {
            l.max_attestation_age_s()
        });
        let stale = age_s > max_age_s;
        if stale {
            findings.push(
                Reason::StaleNode {
                    iat: claims.iat,
                    age_s,
                    max_age_s,
                },
                lref,
                nref,
                None,
            );
        }

        let mut gpus = Vec::with_capacity(claims.submods.len());
        let mut devices_counted: u64 = 0;
        let mut devices_tpp_unknown: u64 = 0;
        let mut devices_tpp_measured: u64 = 0;
        let mut tpp_counted = Tpp::default();
        let tolerances = lic.map_or(rule_set.measurement, |l| {
            l.measurement().apply(rule_set.measurement)
        });
        let mut gaps = TierGaps::default();
        for (g, (submod, gpu)) in claims.submods.iter().enumerate() {
            let key = (
                gpu.pci.as_ref().map(|p| p.vendor_id.as_str()),
                gpu.pci.as_ref().map(|p| p.device_id.as_str()),
                gpu.name.as_deref(),
            );
            // Neighbouring GPUs are usually alike: check the last identity before hashing.
            let d_idx = match last {
                Some((k, i)) if k == key => i,
                _ => {
                    let i = *memo.entry(key).or_insert_with(|| {
                        derived.push(Derived::new(
                            gpu.pci.as_ref().and_then(pci_combined),
                            gpu.name.as_deref(),
                            rule_set,
                        ));
                        derived.len().saturating_sub(1)
                    });
                    last = Some((key, i));
                    i
                }
            };
            let Some(d) = derived.get(d_idx) else {
                continue;
            };
            let counted = not_counted.is_empty() || !not_counted.contains(&(n, g));
            let readable = gpu.status == GpuStatus::Ok;
            let has_identity = gpu.pci.is_some() || gpu.name.is_some();
            let at_gpu = Some(submod.as_str());

            // Measured figures are this GPU's own: never memoised by identity.
            let checked = gpu
                .measurement
                .as_ref()
                .map(|m| check_measurement(m, claims.iat, gpu, d.spec, d.tpp, tolerances));
            let measured_tpp = checked.as_ref().and_then(|c| c.verdict.tpp);
            // A GPU not in the spec table, classified by its measurement.
            let unlisted = match (&d.unknown, &checked, measured_tpp) {
                (Some(unknown), Some(c), Some(tpp)) => {
                    let class = classify_device(&measured_figures(&c.verdict.rates), rule_set);
                    let eccn = eccn_of(rule_set, &class);
                    Some(Unlisted {
                        reason: Reason::UnlistedDevice {
                            lookup: unknown.code(),
                            detail: unknown.sentence(),
                            measured_tpp: tpp,
                            precision: c.verdict.tpp_basis.unwrap_or(Precision::Fp64),
                            measured_tops: c.basis_tops.unwrap_or_default(),
                            outcome: class.outcome.clone(),
                        },
                        tpp,
                        eccn,
                        class,
                    })
                }
                _ => None,
            };

            if !readable {
                findings.push(Reason::GpuLost { status: gpu.status }, lref, nref, at_gpu);
            }
            if let Some(u) = &unlisted {
                findings.push(u.reason.clone(), lref, nref, at_gpu);
            } else if let Some(unknown) = &d.unknown
                && (readable || has_identity)
            {
                findings.push(
                    Reason::UnknownDevice {
                        lookup: unknown.code(),
                        detail: unknown.sentence(),
                    },
                    lref,
                    nref,
                    at_gpu,
                );
            }
            if let Some(c) = &checked {
                for reason in &c.findings {
                    findings.push(reason.clone(), lref, nref, at_gpu);
                }
            }
            if let (Some(l), Some(i)) = (lic, lic_idx)
                && (readable || d.spec.is_some() || unlisted.is_some())
            {
                let (model_ok, eccn_ok) = if let Some(u) = &unlisted {
                    allowed(l, None, u.eccn.as_deref())
                } else {
                    let slot = d_idx.saturating_mul(lics.len()).saturating_add(i);
                    if allow_memo.len() <= slot {
                        allow_memo.resize(slot.saturating_add(1), None);
                    }
                    let model = d.spec.map(|s| s.model);
                    let eccn = d.eccn.as_deref();
                    match allow_memo.get_mut(slot) {
                        Some(Some(known)) => *known,
                        Some(empty) => *empty.insert(allowed(l, model, eccn)),
                        None => allowed(l, model, eccn),
                    }
                };
                if !model_ok {
                    let model = d.spec.map(|s| s.model.to_owned());
                    findings.push(Reason::ModelNotAllowed { model }, lref, nref, at_gpu);
                }
                if !eccn_ok {
                    let reason = match &unlisted {
                        Some(u) => Reason::EccnNotAllowed {
                            eccn: u.eccn.clone(),
                            outcome: Some(u.class.outcome.clone()),
                        },
                        None => Reason::EccnNotAllowed {
                            eccn: d.eccn.clone(),
                            outcome: d.outcome.clone(),
                        },
                    };
                    findings.push(reason, lref, nref, at_gpu);
                }
                if let Some(reason) = per_device_cap(l, d.tpp, measured_tpp) {
                    findings.push(reason, lref, nref, at_gpu);
                }
            }
            if check_agent && readable {
                agent_mismatch(gpu, d, &mut findings, lref, nref, at_gpu);
            }
            let (tpp, tpp_from) = match (d.tpp, &unlisted) {
                (Some(t), _) => (Some(t), Some(TppSource::Spec)),
                (None, Some(u)) => (Some(u.tpp), Some(TppSource::Measured)),
                (None, None) => (None, None),
            };
            if counted {
                devices_counted = devices_counted.saturating_add(1);
                match tpp {
                    Some(t) => tpp_counted = tpp_counted.saturating_add(t),
                    None => devices_tpp_unknown = devices_tpp_unknown.saturating_add(1),
                }
                if tpp_from == Some(TppSource::Measured) {
                    devices_tpp_measured = devices_tpp_measured.saturating_add(1);
                }
                gaps.add(checked.as_ref().map(|c| c.verdict.status));
            }
            let submod_name = match submod_names.get(g) {
                Some(shared) if **shared == **submod => Arc::clone(shared),
                _ => {
                    let shared: Arc<str> = Arc::from(submod.as_str());
                    if let Some(slot) = submod_names.get_mut(g) {
                        *slot = Arc::clone(&shared);
                    } else if submod_names.len() == g {
                        submod_names.push(Arc::clone(&shared));
                    }
                    shared
                }
            };
            let (outcome, clause) = match &unlisted {
                Some(u) => (
                    Some(Arc::from(u.class.outcome.as_str())),
                    u.class.clause.as_deref().map(Arc::from),
                ),
                None => (d.outcome_shared.clone(), d.clause_shared.clone()),
            };
            gpus.push(GpuVerdict {
                submod: submod_name,
                uuid: gpu.uuid.clone(),
                serial: gpu.serial.clone(),
                status: gpu.status,
                model: d.spec.map(|s| s.model),
                outcome,
                clause,
                tpp,
                h100_equivalents: match tpp_from {
                    Some(TppSource::Spec) => d.h100_equivalents,
                    Some(TppSource::Measured) => tpp.map(spec::h100_equivalents),
                    None => None,
                },
                counted,
                tpp_from,
                measured: checked.map(|c| Box::new(c.verdict)),
            });
        }

        // The tier the licence's minimum is checked against.
        let effective_tier = match claims.evidence_tier {
            EvidenceTier::Measured if !gaps.is_empty() => {
                findings.push(
                    Reason::MeasuredTierDowngraded {
                        claimed: EvidenceTier::Measured,
                        effective: EvidenceTier::Declared,
                        gpus: devices_counted,
                        unmeasured: gaps.unmeasured,
                        exceeding: gaps.exceeding,
                        unlisted: gaps.unlisted,
                        no_spec_figure: gaps.no_spec_figure,
                        stale: gaps.stale,
                    },
                    lref,
                    nref,
                    None,
                );
                EvidenceTier::Declared
            }
            claimed => claimed,
        };
        match lic {
            Some(l) => {
                if !effective_tier.meets(l.min_evidence_tier()) {
                    let reason = Reason::EvidenceTierTooLow {
                        have: effective_tier,
                        need: l.min_evidence_tier(),
                        gpus: devices_counted,
                    };
                    findings.push(reason, lref, nref, None);
                }
            }
            None => {
                let reason = Reason::NodeUnassigned {
                    licences: u64::try_from(lics.len()).unwrap_or(u64::MAX),
                    gpus: u64::try_from(claims.submods.len()).unwrap_or(u64::MAX),
                    site: claims.site().map(str::to_owned),
                };
                findings.push(reason, None, nref, None);
            }
        }
        if let Some(t) = lic_idx.and_then(|i| tallies.get_mut(i)) {
            t.nodes = t.nodes.saturating_add(1);
            t.stale_nodes = t.stale_nodes.saturating_add(u64::from(stale));
            t.devices = t.devices.saturating_add(devices_counted);
            t.devices_tpp_unknown = t.devices_tpp_unknown.saturating_add(devices_tpp_unknown);
            t.devices_tpp_measured = t.devices_tpp_measured.saturating_add(devices_tpp_measured);
            t.tpp = t.tpp.saturating_add(tpp_counted);
        }
        node_verdicts.push(NodeVerdict {
            node: node.node_id,
            subject: node.node_subject.clone(),
            token_sha256: hex(&node.token_sha256),
            iat: claims.iat,
            age_s,
            stale,
            licence: lic.map(|l| l.id().to_owned()),
            evidence_tier: claims.evidence_tier,
            effective_evidence_tier: effective_tier,
            devices_counted,
            tpp_counted,
            h100_equivalents: spec::h100_equivalents(tpp_counted),
            severity: Severity::Info,
            gpus,
        });
    }

    // Per licence.
    let mut usages = Vec::with_capacity(lics.len());
    let mut countries: BTreeMap<CountryCode, CountryUsage> = BTreeMap::new();
    for (i, (v, t)) in lics.iter().zip(&tallies).enumerate() {
        let l = &v.licence;
        let lref = Some((i, l.id()));
        let validity = l.is_valid_at(at_unix);
        match validity {
            Validity::Valid { .. } => {}
            Validity::NotYetValid {
                valid_from,
                starts_in_s,
                ..
            } => findings.push(
                Reason::LicenceNotYetValid {
                    valid_from,
                    starts_in_s,
                    devices: t.devices,
                },
                lref,
                None,
                None,
            ),
            Validity::Expired {
                valid_until,
                expired_for_s,
                ..
            } => findings.push(
                Reason::LicenceExpired {
                    valid_until,
                    expired_for_s,
                    devices: t.devices,
                },
                lref,
                None,
                None,
            ),
        }
        if l.rule_set() != rule_set.id {
            let reason = Reason::LicenceRuleSetMismatch {
                licence_rule_set: l.rule_set().to_owned(),
                rule_set: rule_set.id.clone(),
            };
            findings.push(reason, lref, None, None);
        }
        let devices = DeviceCap::new(t.devices, u64::from(l.max_devices()));
        if devices.over_by > 0 {
            let reason = Reason::DeviceCountAboveCap {
                used: devices.used,
                cap: devices.cap,
                over_by: devices.over_by,
            };
            findings.push(reason, lref, None, None);
        }
        let tpp = TppCap::new(t.tpp, l.max_aggregate_tpp());
        if tpp.is_over() {
            let reason = Reason::AggregateTppAboveCap {
                used: tpp.used,
                cap: tpp.cap,
                over_by: tpp.over_by,
            };
            findings.push(reason, lref, None, None);
        }
        let country = countries
            .entry(l.destination_country())
            .or_insert_with(|| CountryUsage {
                country: l.destination_country(),
                licences: Vec::new(),
                devices: 0,
                devices_tpp_unknown: 0,
                devices_tpp_measured: 0,
                tpp: Tpp::default(),
                h100_equivalents: spec::h100_equivalents(Tpp::default()),
                allocation: None,
                tier: rule_set
                    .country_tier(l.destination_country())
                    .map(str::to_owned),
                allocation_period: None,
            });
        country.licences.push(l.id().to_owned());
        country.devices = country.devices.saturating_add(t.devices);
        country.devices_tpp_unknown = country
            .devices_tpp_unknown
            .saturating_add(t.devices_tpp_unknown);
        country.devices_tpp_measured = country
            .devices_tpp_measured
            .saturating_add(t.devices_tpp_measured);
        country.tpp = country.tpp.saturating_add(t.tpp);
        country.h100_equivalents = spec::h100_equivalents(country.tpp);
        usages.push(LicenceUsage {
            licence: l.id().to_owned(),
            signer: v.signer_subject.clone(),
            destination_country: l.destination_country(),
            licence_rule_set: l.rule_set().to_owned(),
            validity,
            nodes: t.nodes,
            stale_nodes: t.stale_nodes,
            devices,
            devices_tpp_unknown: t.devices_tpp_unknown,
            devices_tpp_measured: t.devices_tpp_measured,
            tpp,
            severity: Severity::Info,
        });
    }

    // Per country: the rule set's allocation.
    for c in countries.values_mut() {
        let Some(a) = rule_set.country_allocation(c.country) else {
            continue;
        };
        let cap = TppCap::new(c.tpp, a.tpp);
        if cap.is_over() {
            let reason = Reason::CountryAllocationExceeded {
                country: c.country,
                tier: c.tier.clone(),
                used: cap.used,
                cap: cap.cap,
                over_by: cap.over_by,
                period: a.period.clone(),
            };
            findings.push(reason, None, None, None);
        }
        c.allocation = Some(cap);
        c.allocation_period = Some(a.period.clone());
    }

    let Findings {
        list: mut findings,
        node_severity,
        licence_severity,
    } = findings;
    for (n, (nv, s)) in node_verdicts.iter_mut().zip(node_severity).enumerate() {
        nv.severity = s;
        if let Some(u) = licence_of(n).and_then(|i| usages.get_mut(i)) {
            u.severity = u.severity.max(s);
        }
    }
    for (u, s) in usages.iter_mut().zip(licence_severity) {
        u.severity = u.severity.max(s);
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
        at: at_unix,
        rule_set: rule_set.id.clone(),
        rule_set_version: rule_set.version.clone(),
        rule_set_status: rule_set.status,
        verdict,
        nodes: node_verdicts,
        licences: usages,
        countries: countries.into_values().collect(),
        findings,
    }
}

/// Compares the agent's classification with the verifier's and records a difference.
fn agent_mismatch(
    gpu: &GpuSubmod,
    d: &Derived,
    findings: &mut Findings,
    lref: Option<(usize, &str)>,
    nref: Option<(usize, &str)>,
    at_gpu: Option<&str>,
) {
    let agent = &gpu.classification;
    let ours = d.outcome.as_deref().unwrap_or(INDETERMINATE);
    let eccn_differs = agent.eccn.as_deref().is_some_and(|e| e != ours);
    let tpp_differs = agent.tpp != d.tpp_f64;
    if eccn_differs || tpp_differs {
        let reason = Reason::AgentClassificationMismatch {
            agent_eccn: agent.eccn.clone(),
            eccn: d.outcome.clone(),
            agent_tpp: agent.tpp,
            tpp: d.tpp,
        };
        findings.push(reason, lref, nref, at_gpu);
    }
}
