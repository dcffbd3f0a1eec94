//! Findings: what the policy engine noticed, with a stable reason code, a severity and a
//! human sentence carrying the figures.

use serde::Serialize;
use tppguard_proto::claims::GpuStatus;
use tppguard_proto::evidence::EvidenceTier;
use tppguard_proto::licence::CountryCode;
use tppguard_proto::units::Tpp;

/// How bad a finding is. Ordered, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing to do.
    #[default]
    Info,
    /// Needs attention, but the licence conditions still hold.
    Warning,
    /// A licence condition is broken: the fleet is not compliant.
    Violation,
}

impl Severity {
    /// The stable snake_case code, as serialized.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Violation => "violation",
        }
    }
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
    /// The GPU's TPP is above the licence's per-device cap.
    DeviceTppAboveCap {
        /// The device's TPP.
        tpp: Tpp,
        /// The licence's `max_tpp_per_device`.
        cap: Tpp,
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
        /// The GPU's UUID.
        uuid: String,
        /// The GPU's serial, when reported.
        serial: Option<String>,
        /// Every place it appears, `node/submod`, sorted.
        seen_in: Vec<String>,
        /// The place where it counts, `node/submod`.
        counted_in: String,
        /// The licence it counts against, when its node has one.
        counted_against: Option<String>,
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
}

impl Reason {
    /// Every code, in declaration order (documentation and the uniqueness test).
    pub const CODES: [&'static str; 19] = [
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
        }
    }

    /// How bad it is. A licence outside its validity is a violation only while devices
    /// count against it (a licence issued ahead of time is not a breach).
    pub const fn severity(&self) -> Severity {
        match self {
            Self::ModelNotAllowed { .. }
            | Self::EccnNotAllowed { .. }
            | Self::DeviceTppAboveCap { .. }
            | Self::EvidenceTierTooLow { .. }
            | Self::NodeUnassigned { .. }
            | Self::AggregateTppAboveCap { .. }
            | Self::DeviceCountAboveCap { .. }
            | Self::CountryAllocationExceeded { .. } => Severity::Violation,
            Self::LicenceNotYetValid { devices, .. } | Self::LicenceExpired { devices, .. } => {
                if *devices > 0 {
                    Severity::Violation
                } else {
                    Severity::Warning
                }
            }
            Self::UnknownDevice { .. }
            | Self::GpuLost { .. }
            | Self::DuplicateDevice { .. }
            | Self::StaleNode { .. }
            | Self::AttestationFromFuture { .. }
            | Self::LicenceRuleSetMismatch { .. }
            | Self::AgentClassificationMismatch { .. }
            | Self::SiteInSeveralLicences { .. }
            | Self::SimulatedInventory { .. } => Severity::Warning,
        }
    }

    /// A human sentence with the figures (the subject, node or licence, is in the finding).
    pub fn sentence(&self) -> String {
        match self {
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
            Self::DeviceTppAboveCap { tpp, cap } => {
                format!("device TPP {tpp} is above the licence's per-device cap of {cap}")
            }
            Self::EvidenceTierTooLow { have, need, gpus } => format!(
                "evidence tier {have} is below the licence's minimum {need} ({gpus} GPUs \
                 affected)"
            ),
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
            Self::DuplicateDevice {
                uuid,
                serial,
                seen_in,
                counted_in,
                counted_against,
            } => format!(
                "GPU {uuid} (serial {}) appears in {} places ({}); it counts once, in {counted_in}{}",
                serial.as_deref().unwrap_or("unknown"),
                seen_in.len(),
                seen_in.join(", "),
                counted_against
                    .as_deref()
                    .map(|l| format!(", against licence {l}"))
                    .unwrap_or_default()
            ),
            Self::SimulatedInventory { gpus } => format!(
                "the agent read this node from its simulated driver, not real GPUs: its {gpus} \
                 GPUs count as claimed, but the evidence proves nothing about hardware"
            ),
            Self::StaleNode {
                age_s, max_age_s, ..
            } => format!(
                "the node's latest attestation is {age_s} s old, older than the {max_age_s} s \
                 allowed; its last known GPUs still count"
            ),
            Self::AttestationFromFuture { ahead_s, .. } => format!(
                "the node's latest attestation is dated {ahead_s} s after the evaluation \
                 instant; check the node's clock"
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
            Self::AggregateTppAboveCap { used, cap, over_by } => {
                format!("aggregate TPP {used} is above the licence's cap of {cap} by {over_by}")
            }
            Self::DeviceCountAboveCap { used, cap, over_by } => format!(
                "{used} devices count against the licence, above its cap of {cap} by {over_by}"
            ),
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
        }
    }
}
