//! GPU evidence: the checks that turn one GPU's signed SPDM measurement report and device
//! certificate chain (NVIDIA's evidence item, [`tppguard_proto::gpu_evidence::GpuEvidence`]) into a [`GpuEvidenceReport`]
//! of named checks, each `passed`, `failed` or `not_checked` with a stable code and a sentence.
//!
//! This module owns those checks ([`verify_gpu_evidence`]), the reading of the leaf's DICE
//! firmware id ([`dice`]), the chip table behind the `model` check ([`chips`]), reference
//! values ([`rim`]) and the `gpu-evidence` command ([`cli`]). Chain validation is
//! [`crate::chain`]'s (`[vendor] device_roots`, [`crate::chain::TrustAnchors::verify_gpu_device`]); parsing
//! the report is `tppguard_proto::gpu_evidence::spdm`'s. Nothing here reads the clock: the
//! verification time is an argument. `docs/gpu-evidence.md` describes every check and code.

use serde::{Deserialize, Serialize};

mod checks;
pub mod chips;
pub mod cli;
pub mod dice;
pub mod rim;
// Test GPUs: only in the verifier's own tests and where a test or bench crate asks for them
// (feature `test-device`), never in a release build.
#[cfg(any(test, feature = "test-device"))]
#[doc(hidden)]
pub mod test_device;

#[cfg(test)]
mod tests;

pub use checks::verify_gpu_evidence;

/// The most certificates a GPU's chain may hold, checked before any path building: NVIDIA's
/// chains are leaf, device (GSP BROM), provisioner, identity CA and root, and nvtrust refuses
/// longer ones too. A longer chain could only buy path-building work.
pub const MAX_GPU_CHAIN_CERTS: usize = 5;

/// The most GPUs of one attestation whose evidence is checked: each costs a P-384 signature
/// check (and a chain validation the first time), so a node cannot make one request cost
/// hundreds. Evidence beyond it is refused, named, and backs nothing.
pub const MAX_GPU_EVIDENCE_PER_ATTESTATION: usize = 64;

/// Whether the inventory must state the driver and VBIOS versions the report is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryRule {
    /// Attestations: a node's inventory must say what it runs; a version it does not state
    /// fails its check (`inventory_silent`).
    Required,
    /// The analyst command: there is no inventory; a version not given on the command line is
    /// `not_checked` (`no_claim`).
    Optional,
}

/// What the verifier expects of one GPU's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The nonce the GPU must have signed over (`tppguard_proto::gpu_evidence::gpu_nonce`).
    pub nonce: [u8; 32],
    /// The driver version the inventory claims (the node's NVML driver version).
    pub driver_version: Option<&'a str>,
    /// The VBIOS version the inventory claims for this GPU.
    pub vbios_version: Option<&'a str>,
    /// The architecture the inventory claims (`Hopper`, `Blackwell`; case-insensitive).
    pub architecture: Option<&'a str>,
    /// The model name the inventory claims (`NVIDIA H100 80GB HBM3`).
    pub model: Option<&'a str>,
    /// Whether a version the inventory does not state fails or is not checked.
    pub inventory: InventoryRule,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The check ran and the evidence satisfied it.
    Passed,
    /// The check ran and the evidence did not satisfy it.
    Failed,
    /// The check could not run (the sentence says why); never counts as passed.
    NotChecked,
}

impl Outcome {
    /// `passed`, `failed` or `not_checked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::NotChecked => "not_checked",
        }
    }
}

/// The checks, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The evidence item's base64 fields and the PEM chain decode, within their bounds.
    EvidenceDecoded,
    /// The report parses as SPDM GET_MEASUREMENTS || MEASUREMENTS || signature.
    ReportParsed,
    /// The chain leads to a pinned `[vendor] device_roots` root.
    CertChain,
    /// Every certificate of the path is valid at the verification time.
    CertValidity,
    /// The report's ECDSA P-384 / SHA-384 signature verifies with the leaf's key.
    Signature,
    /// The report answers the expected (derived) nonce.
    Nonce,
    /// The leaf's DICE firmware id equals the report's.
    Fwid,
    /// The signed driver version equals the inventory's.
    DriverVersion,
    /// The signed VBIOS version equals the inventory's.
    VbiosVersion,
    /// The certified chip agrees with the evidence's and the inventory's architecture and model.
    Model,
    /// The measurements equal the reference values (RIMs) of the reported versions.
    Measurements,
    /// A stapled or cached OCSP response for the chain.
    Ocsp,
}

impl CheckName {
    /// Every check, in report order.
    pub const ALL: [CheckName; 12] = [
        Self::EvidenceDecoded,
        Self::ReportParsed,
        Self::CertChain,
        Self::CertValidity,
        Self::Signature,
        Self::Nonce,
        Self::Fwid,
        Self::DriverVersion,
        Self::VbiosVersion,
        Self::Model,
        Self::Measurements,
        Self::Ocsp,
    ];

    /// The checks that must pass for a GPU's evidence to count as verified: every check of
    /// [`Self::ALL`] before `model` (the last three may be `not_checked`).
    pub const REQUIRED: &'static [CheckName] = Self::ALL.as_slice().split_at(9).0;

    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EvidenceDecoded => "evidence_decoded",
            Self::ReportParsed => "report_parsed",
            Self::CertChain => "cert_chain",
            Self::CertValidity => "cert_validity",
            Self::Signature => "signature",
            Self::Nonce => "nonce",
            Self::Fwid => "fwid",
            Self::DriverVersion => "driver_version",
            Self::VbiosVersion => "vbios_version",
            Self::Model => "model",
            Self::Measurements => "measurements",
            Self::Ocsp => "ocsp",
        }
    }
}

/// One named check and how it came out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// How it came out.
    pub outcome: Outcome,
    /// A stable snake_case reason (`passed`, `nonce_mismatch`, a chain or parser code).
    pub code: String,
    /// What was found, in words (outside text escaped).
    pub sentence: String,
}

/// What the signed report says, read only when its signature verified with the leaf's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFacts {
    /// Opaque id 3.
    pub driver_version: Option<String>,
    /// Opaque id 6, as `96.00.9F.00.01`.
    pub vbios_version: Option<String>,
    /// Opaque id 20, lower-case hex.
    pub fwid: Option<String>,
    /// The chip the leaf certificate names (`GH100`).
    pub chip: Option<String>,
    /// The architecture of that chip (`Hopper`), from [`chips`].
    pub architecture: Option<String>,
    /// Opaque id 14.
    pub board_id: Option<u32>,
    /// Opaque id 15.
    pub chip_sku: Option<String>,
    /// Opaque id 17.
    pub project: Option<String>,
    /// Opaque id 18.
    pub project_sku: Option<String>,
    /// Opaque id 21, the raw byte.
    pub protected_pcie_status: Option<u8>,
    /// Opaque id 11: `enabled`, `disabled` or `other(0xNN)`.
    pub nvdec0_status: Option<String>,
    /// Opaque id 36: `spt`, `mpt`, `ppcie` or `other(N)`.
    pub feature_flag: Option<String>,
    /// Opaque id 35, escaped.
    pub chip_info: Option<String>,
    /// Measurement blocks in the report.
    pub measurement_count: usize,
    /// Opaque ids this verifier does not know, kept and reported.
    pub unknown_opaque_ids: Vec<u16>,
}

/// The outcome of every check of one GPU's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidenceReport {
    /// Every check of [`CheckName::ALL`], in that order.
    pub checks: Vec<Check>,
    /// Lower-case hex SHA-256 of the SubjectPublicKeyInfo of the certificate that issued the
    /// leaf in the verified path (NVIDIA's per-device "GSP BROM" certificate): the GPU's stable
    /// hardware identity. Set only when `cert_chain` and `cert_validity`
    /// passed (the chain verified at the verification time).
    pub hardware_id: Option<String>,
    /// That certificate's subject serialNumber (NVIDIA: the chip's ECID), escaped.
    pub ecid: Option<String>,
    /// What the report says; set only when `signature` passed.
    pub facts: Option<ReportFacts>,
}

impl GpuEvidenceReport {
    /// The report of evidence refused before any check ran: `evidence_decoded` failed with
    /// `code` and `sentence`, every other check not checked.
    pub fn refused(code: &str, sentence: &str) -> Self {
        let checks = CheckName::ALL
            .iter()
            .map(|&name| {
                if name == CheckName::EvidenceDecoded {
                    Check {
                        name,
                        outcome: Outcome::Failed,
                        code: code.to_owned(),
                        sentence: sentence.to_owned(),
                    }
                } else {
                    Check {
                        name,
                        outcome: Outcome::NotChecked,
                        code: "evidence_refused".to_owned(),
                        sentence: "the evidence was refused before this check".to_owned(),
                    }
                }
            })
            .collect();
        Self {
            checks,
            hardware_id: None,
            ecid: None,
            facts: None,
        }
    }

    /// True iff no check failed and every check of [`CheckName::REQUIRED`] passed (`model`,
    /// `measurements` and `ocsp` may be `not_checked`).
    pub fn verified(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Failed)
            && CheckName::REQUIRED
                .iter()
                .all(|name| self.outcome(*name) == Some(Outcome::Passed))
    }

    /// The check named `name`.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The outcome of the check named `name`.
    pub fn outcome(&self, name: CheckName) -> Option<Outcome> {
        self.check(name).map(|c| c.outcome)
    }

    /// The failed checks, in order.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Failed)
    }
}
