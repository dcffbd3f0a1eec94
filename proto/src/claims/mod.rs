//! The attestation claim set: the payload of a JWS with `typ` [`ATTESTATION_TYP`], signed by a
//! node key (DESIGN.md "Formats").
//!
//! Claim names are EAT's (RFC 9711) where EAT has one (`iss`, `iat`, `eat_nonce`, `ueid`,
//! `eat_profile`, `submods`), and `tppguard.*` otherwise. Inside, field names are those of the
//! agent's inventory JSON (`docs/inventory.md`, schema `tppguard-inventory/v1`), so one name
//! means one idea. The agent's own classification travels in each submod for display; the
//! verifier recomputes it and never trusts it.
//!
//! [`AttestationClaims::from_json`] is the one entry for outside bytes: size and nesting depth
//! are checked before parsing, duplicate keys and unknown claims are rejected, and the nonce,
//! profile, submod names and evidence tier are validated with errors of their own.

pub mod measurement;
#[cfg(feature = "schema")]
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jws::json;
use crate::jws::{MAX_JSON_DEPTH, MAX_JWS_BYTES};

/// The JWS `typ` of an attestation.
pub const ATTESTATION_TYP: &str = "tppguard-attestation+jwt";
/// The `eat_profile` of an attestation (RFC 9711 §4.3.2), matched exactly.
pub const EAT_PROFILE: &str = "tag:tppguard.dev,2026:attestation/v1";
/// Largest claim set read, in bytes (a claim set always fits a JWS).
pub const MAX_CLAIMS_BYTES: usize = MAX_JWS_BYTES;
/// Fewest nonce bytes (DESIGN.md "Security invariants").
pub const MIN_NONCE_BYTES: usize = 32;
/// Most nonce characters: RFC 9711's JSON `eat_nonce` is 10 to 74 characters, so 37 bytes
/// in hex.
pub const MAX_NONCE_HEX_CHARS: usize = 74;
/// Most GPUs (submods) in one attestation.
pub const MAX_SUBMODS: usize = 256;

/// The claims every attestation carries.
pub const REQUIRED_CLAIMS: [&str; 8] = [
    "iss",
    "iat",
    "eat_nonce",
    "eat_profile",
    "submods",
    "tppguard.host",
    "tppguard.evidence_tier",
    "tppguard.driver",
];

/// Claims an attestation may carry.
pub const OPTIONAL_CLAIMS: [&str; 4] = [
    "ueid",
    "tppguard.site",
    "tppguard.simulated",
    "tppguard.gating",
];

/// An attestation claim set.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationClaims {
    /// The node's identity (its certificate's subject name).
    pub iss: String,
    /// When the agent made the claims: seconds since the Unix epoch (JWT NumericDate, whole).
    pub iat: i64,
    /// The verifier's challenge.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "String", regex(pattern = r"^([0-9a-f]{2}){32,37}$"))
    )]
    pub eat_nonce: Nonce,
    /// The node's universal entity id, when it has one (RFC 9711 §4.2.1; base64url of its
    /// bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ueid: Option<String>,
    /// Always [`EAT_PROFILE`].
    #[cfg_attr(
        feature = "schema",
        schemars(with = "String", extend("const" = EAT_PROFILE))
    )]
    pub eat_profile: Profile,
    /// One entry per GPU, keyed `gpu0`, `gpu1`, ... by NVML index.
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(max = MAX_SUBMODS),
            extend("propertyNames" = { "pattern": "^gpu(0|[1-9][0-9]{0,9})$" })
        )
    )]
    #[serde(deserialize_with = "unique_keys")]
    pub submods: BTreeMap<String, GpuSubmod>,
    /// The host.
    #[serde(rename = "tppguard.host")]
    pub host: Host,
    /// How strongly the GPU findings are backed.
    #[serde(rename = "tppguard.evidence_tier")]
    pub evidence_tier: EvidenceTier,
    /// The driver stack.
    #[serde(rename = "tppguard.driver")]
    pub driver: Driver,
    /// The site the node is installed at, as the operator names it; the verifier matches it
    /// against a licence's sites. Read it with [`AttestationClaims::site`].
    #[serde(
        rename = "tppguard.site",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub site: Option<String>,
    /// True when the inventory came from the agent's simulated driver, not a real GPU. Absent
    /// means false (and is how false is written). The agent's word only: a verifier flags it,
    /// never relies on its absence.
    #[serde(
        rename = "tppguard.simulated",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub simulated: bool,
    /// What the agent did about its lease since the last attestation (issue 15): the node's
    /// word, checked by the verifier against the lease it carries, which must be one the
    /// verifier signed for this node.
    #[serde(
        rename = "tppguard.gating",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gating: Option<crate::lease::GatingReport>,
}

impl AttestationClaims {
    /// Reads a claim set from outside (a verified JWS payload).
    ///
    /// A well-formed claim set is read in one typed pass: every struct denies unknown and
    /// duplicate fields and every map duplicate keys, and the types bound the nesting, so that
    /// pass accepts exactly what [`Self::from_json_reference`] accepts, at a third of its
    /// cost. Anything it refuses is read again by the reference, whose error names the first
    /// problem precisely. The fuzz target and the tests hold the two to the same answers.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClaimsError> {
        if bytes.len() > MAX_CLAIMS_BYTES {
            return Err(ClaimsError::TooLarge {
                len: bytes.len(),
                max: MAX_CLAIMS_BYTES,
            });
        }
        match serde_json::from_slice::<Self>(bytes) {
            Ok(parsed) => parsed.checked(),
            Err(_) => Self::from_json_reference(bytes),
        }
    }

    /// [`Self::from_json`] the slow, explicit way: depth scan, a strict generic parse, each
    /// claim checked in turn with its own error, then the typed conversion. Same answers, for
    /// differential tests and for naming what is wrong with a rejected claim set.
    pub fn from_json_reference(bytes: &[u8]) -> Result<Self, ClaimsError> {
        if bytes.len() > MAX_CLAIMS_BYTES {
            return Err(ClaimsError::TooLarge {
                len: bytes.len(),
                max: MAX_CLAIMS_BYTES,
            });
        }
        if !json::within_depth(bytes, MAX_JSON_DEPTH) {
            return Err(ClaimsError::TooDeep {
                max: MAX_JSON_DEPTH,
            });
        }
        let value = json::parse_strict(bytes).map_err(|source| ClaimsError::Json { source })?;
        let Value::Object(claims) = &value else {
            return Err(ClaimsError::NotAnObject);
        };
        for name in REQUIRED_CLAIMS {
            if !claims.contains_key(name) {
                return Err(ClaimsError::MissingClaim { name });
            }
        }
        match claims.get("eat_profile") {
            Some(Value::String(p)) if p == EAT_PROFILE => {}
            Some(Value::String(p)) => {
                return Err(ClaimsError::WrongProfile { profile: quote(p) });
            }
            _ => {
                return Err(ClaimsError::WrongType {
                    claim: "eat_profile",
                });
            }
        }
        match claims.get("eat_nonce") {
            Some(Value::String(n)) => {
                Nonce::parse(n)?;
            }
            _ => return Err(ClaimsError::WrongType { claim: "eat_nonce" }),
        }
        match claims.get("tppguard.evidence_tier") {
            Some(Value::String(t)) => {
                t.parse::<EvidenceTier>()
                    .map_err(|_| ClaimsError::UnknownEvidenceTier { tier: quote(t) })?;
            }
            _ => {
                return Err(ClaimsError::WrongType {
                    claim: "tppguard.evidence_tier",
                });
            }
        }
        match claims.get("submods") {
            Some(Value::Object(submods)) => {
                if submods.len() > MAX_SUBMODS {
                    return Err(ClaimsError::TooManySubmods {
                        len: submods.len(),
                        max: MAX_SUBMODS,
                    });
                }
                if let Some(name) = submods.keys().find(|k| !is_submod_name(k)) {
                    return Err(ClaimsError::BadSubmodName { name: quote(name) });
                }
            }
            _ => return Err(ClaimsError::WrongType { claim: "submods" }),
        }
        if let Some(name) = claims.keys().find(|k| {
            !REQUIRED_CLAIMS.contains(&k.as_str()) && !OPTIONAL_CLAIMS.contains(&k.as_str())
        }) {
            return Err(ClaimsError::UnknownClaim { name: quote(name) });
        }
        let parsed: Self =
            serde_json::from_value(value).map_err(|source| ClaimsError::Invalid { source })?;
        parsed.checked()
    }

    /// The checks types cannot express, in the reference's order: the submods' count and
    /// names (only reachable here from the typed pass), a non-empty issuer, and each submod
    /// named for its GPU's index.
    fn checked(self) -> Result<Self, ClaimsError> {
        if self.submods.len() > MAX_SUBMODS {
            return Err(ClaimsError::TooManySubmods {
                len: self.submods.len(),
                max: MAX_SUBMODS,
            });
        }
        if let Some(name) = self.submods.keys().find(|k| !is_submod_name(k)) {
            return Err(ClaimsError::BadSubmodName { name: quote(name) });
        }
        if self.iss.is_empty() {
            return Err(ClaimsError::EmptyIssuer);
        }
        if let Some(site) = &self.site
            && !crate::site::is_valid_id(site)
        {
            return Err(ClaimsError::BadSite { site: quote(site) });
        }
        for (name, gpu) in &self.submods {
            if let Some(reason) = gpu.measurement.as_ref().and_then(|m| m.problem()) {
                return Err(ClaimsError::BadMeasurement {
                    name: name.clone(),
                    reason,
                });
            }
        }
        if let Some((name, gpu)) = self
            .submods
            .iter()
            .find(|(name, gpu)| !names_index(name, gpu.index))
        {
            return Err(ClaimsError::SubmodIndexMismatch {
                name: name.clone(),
                index: gpu.index,
            });
        }
        Ok(self)
    }

    /// The site the node says it is installed at (`tppguard.site`), if it names one.
    pub fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }

    /// The claim set as JSON (the JWS payload).
    pub fn to_json(&self) -> Result<Vec<u8>, ClaimsError> {
        serde_json::to_vec(self).map_err(|source| ClaimsError::Json { source })
    }
}

/// The submod name for the GPU at NVML index `index`: `gpu0`, `gpu1`, ...
pub fn submod_name(index: u32) -> String {
    format!("gpu{index}")
}

/// A map that refuses a key it has already read (serde's maps keep the last one silently,
/// and two readers keeping different duplicates would see different claims).
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate key {:?}",
                        quote(&key)
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(Unique(std::marker::PhantomData))
}

/// Whether `name` is [`submod_name`]`(index)`, without building that name.
fn names_index(name: &str, index: u32) -> bool {
    is_submod_name(name)
        && name
            .strip_prefix("gpu")
            .is_some_and(|digits| digits.parse::<u32>() == Ok(index))
}

/// `gpu` and a decimal index without leading zeros.
fn is_submod_name(name: &str) -> bool {
    name.strip_prefix("gpu").is_some_and(|digits| {
        !digits.is_empty()
            && digits.len() <= 10
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && digits.parse::<u32>().is_ok()
    })
}

/// At most 64 characters of an outside string, for an error message.
fn quote(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A challenge nonce: lower-case hex of [`MIN_NONCE_BYTES`] or more bytes, at most
/// [`MAX_NONCE_HEX_CHARS`] characters. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nonce(String);

impl Nonce {
    /// Checks and keeps a hex nonce.
    pub fn parse(hex: &str) -> Result<Self, ClaimsError> {
        let well_formed = hex.len().is_multiple_of(2)
            && hex.len() <= MAX_NONCE_HEX_CHARS
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(ClaimsError::BadNonce);
        }
        let bytes = hex.len() / 2;
        if bytes < MIN_NONCE_BYTES {
            return Err(ClaimsError::ShortNonce {
                bytes,
                min: MIN_NONCE_BYTES,
            });
        }
        Ok(Self(hex.to_owned()))
    }

    /// A nonce from its bytes (the verifier's random challenge).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClaimsError> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::parse(&hex)
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nonce's bytes (its hex was checked when it was made).
    pub fn bytes(&self) -> Vec<u8> {
        self.0
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| match pair {
                [hi, lo] => (hex_digit(*hi) << 4) | hex_digit(*lo),
                _ => 0,
            })
            .collect()
    }
}

/// The value of a lower-case hex digit; 0 for any other byte (never reached: a [`Nonce`]
/// holds only checked hex).
fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => 0,
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({} hex chars)", self.0.len())
    }
}

impl TryFrom<String> for Nonce {
    type Error = ClaimsError;

    fn try_from(hex: String) -> Result<Self, ClaimsError> {
        Self::parse(&hex)
    }
}

impl From<Nonce> for String {
    fn from(nonce: Nonce) -> Self {
        nonce.0
    }
}

/// The `eat_profile` claim: always [`EAT_PROFILE`], so a claim set of another profile does
/// not parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub struct Profile;

impl TryFrom<String> for Profile {
    type Error = ClaimsError;

    fn try_from(profile: String) -> Result<Self, ClaimsError> {
        if profile == EAT_PROFILE {
            Ok(Self)
        } else {
            Err(ClaimsError::WrongProfile {
                profile: quote(&profile),
            })
        }
    }
}

impl From<Profile> for &'static str {
    fn from(_: Profile) -> Self {
        EAT_PROFILE
    }
}

/// How strongly a node's GPU findings are backed; one type for claims and licences.
pub use crate::evidence::EvidenceTier;

/// Why a fact is absent (inventory `absent[field].reason`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbsentReason {
    /// The GPU or driver does not support the query.
    NotSupported,
    /// The agent may not make the query.
    NoPermission,
    /// The installed driver does not implement the function.
    DriverLacksFunction,
    /// The NVML library does not export the function.
    SymbolMissing,
    /// The GPU fell off the bus.
    GpuLost,
    /// Another NVML error; `detail` names it.
    Error,
}

/// One absent fact.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Absence {
    /// Why it is absent.
    pub reason: AbsentReason,
    /// NVML's words.
    pub detail: String,
}

/// Absent facts by field name.
pub type Absences = BTreeMap<String, Absence>;

/// Whether a GPU could be read (inventory `gpus[].status`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuStatus {
    /// Read; some facts may still be absent.
    Ok,
    /// NVML reports the GPU lost.
    Lost,
    /// NVML gave no handle for the GPU.
    Unreadable,
}

/// One GPU: its identity as NVML reports it, and the agent's own classification.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSubmod {
    /// NVML index.
    pub index: u32,
    /// Whether the GPU could be read.
    pub status: GpuStatus,
    /// "GPU-…" UUID.
    pub uuid: Option<String>,
    /// Board serial number.
    pub serial: Option<String>,
    /// Product name.
    pub name: Option<String>,
    /// Brand, e.g. "NVIDIA".
    pub brand: Option<String>,
    /// Board part number.
    pub board_part_number: Option<String>,
    /// PCI identity.
    pub pci: Option<Pci>,
    /// Architecture, e.g. "Hopper".
    pub architecture: Option<String>,
    /// CUDA compute capability, "major.minor".
    pub cuda_compute_capability: Option<String>,
    /// Streaming multiprocessors.
    pub multiprocessor_count: Option<u32>,
    /// Framebuffer memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Maximum SM clock, MHz.
    pub max_sm_clock_mhz: Option<u32>,
    /// Maximum memory clock, MHz.
    pub max_memory_clock_mhz: Option<u32>,
    /// Power management limit, milliwatts.
    pub power_limit_mw: Option<u32>,
    /// VBIOS version.
    pub vbios_version: Option<String>,
    /// MIG state, where the GPU has MIG.
    pub mig: Option<Mig>,
    /// Facts NVML could not give, and why.
    #[serde(default, deserialize_with = "unique_keys")]
    pub absent: Absences,
    /// The agent's classification: shown, never trusted.
    pub classification: AgentClassification,
    /// The latest throughput measurement of this GPU, when the agent has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<measurement::Measurement>,
    /// The GPU's own signed evidence (SPDM measurement report and device certificate chain),
    /// when it is in a confidential-computing mode: the node's word until the verifier checks
    /// it (`docs/gpu-evidence.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_evidence: Option<crate::gpu_evidence::GpuEvidence>,
}

/// PCI identity (inventory `gpus[].pci`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pci {
    /// "domain:bus:device.function".
    pub bus_id: String,
    /// "0x10de".
    pub vendor_id: String,
    /// "0x2330".
    pub device_id: String,
    /// "0x16c110de", when reported.
    pub subsystem_id: Option<String>,
}

/// MIG state (inventory `gpus[].mig`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mig {
    /// MIG mode is on now.
    pub current_enabled: bool,
    /// MIG mode will be on after the next reset.
    pub pending_enabled: bool,
    /// The MIG devices.
    pub instances: Vec<MigInstance>,
    /// Facts about the instances NVML could not give.
    #[serde(default, deserialize_with = "unique_keys")]
    pub absent: Absences,
}

/// One MIG device (inventory `gpus[].mig.instances[]`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigInstance {
    /// Position among the parent's MIG devices.
    pub index: u32,
    /// "MIG-…" UUID.
    pub uuid: Option<String>,
    /// Name, including the profile.
    pub name: Option<String>,
    /// GPU instance id.
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id.
    pub compute_instance_id: Option<u32>,
    /// Streaming multiprocessors in the instance.
    pub multiprocessor_count: Option<u32>,
    /// Memory of the instance, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Facts NVML could not give, and why.
    #[serde(default, deserialize_with = "unique_keys")]
    pub absent: Absences,
}

/// The agent's own classification of one GPU (inventory `gpus[].classification`, the figures
/// only). JSON numbers as the inventory prints them; the verifier recomputes every one from
/// the identity and its own spec table and rule sets.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentClassification {
    /// Spec TPP, when the agent knew the part.
    pub tpp: Option<f64>,
    /// The precision that gives the TPP, e.g. `fp8`.
    pub tpp_basis: Option<String>,
    /// Performance density, when the die area is known.
    pub performance_density: Option<f64>,
    /// Outcome under `us-eccn-3a090`, e.g. `3A090.a`.
    pub eccn: Option<String>,
}

/// The host (inventory `host`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Host name.
    pub hostname: Option<String>,
    /// systemd machine id.
    pub machine_id: Option<String>,
    /// Operating system name and version.
    pub os: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// CPU architecture, e.g. "x86_64".
    pub cpu_arch: String,
    /// CPU model name.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpu_count: u64,
    /// Physical cores, when known.
    pub physical_cores: Option<u64>,
    /// Installed memory, bytes.
    pub memory_bytes: u64,
}

/// The driver stack (inventory `driver`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Driver {
    /// Kernel driver version, e.g. "550.90.07".
    pub driver_version: Option<String>,
    /// NVML library version.
    pub nvml_version: Option<String>,
    /// Highest CUDA version the driver supports, "major.minor".
    pub cuda_driver_version: Option<String>,
    /// Confidential-computing settings, where the driver reports them.
    pub confidential_computing: Option<ConfidentialComputing>,
    /// Facts NVML could not give, and why.
    #[serde(default, deserialize_with = "unique_keys")]
    pub absent: Absences,
}

/// Confidential-computing state (inventory `driver.confidential_computing`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidentialComputing {
    /// CC mode is on.
    pub enabled: bool,
    /// CC developer-tools mode is on.
    pub dev_tools_mode: bool,
    /// Multi-GPU protected PCIe mode is on.
    pub multi_gpu_protected_pcie: bool,
    /// GPUs accept client work, when the driver says.
    pub gpus_ready: Option<bool>,
}

/// Why a claim set was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// Larger than [`MAX_CLAIMS_BYTES`].
    #[error("claim set is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nests deeper than [`MAX_JSON_DEPTH`].
    #[error("claim set JSON nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Not JSON, or an object has a duplicate key.
    #[error("claim set is not valid JSON")]
    Json {
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// JSON, but not an object.
    #[error("claim set is not a JSON object")]
    NotAnObject,
    /// A required claim is missing.
    #[error("claim `{name}` is missing")]
    MissingClaim {
        /// The claim.
        name: &'static str,
    },
    /// A claim tppguard does not define.
    #[error("claim {name:?} is not part of profile {EAT_PROFILE}")]
    UnknownClaim {
        /// The claim (at most 64 characters of it).
        name: String,
    },
    /// A claim has the wrong JSON type.
    #[error("claim `{claim}` has the wrong JSON type")]
    WrongType {
        /// The claim.
        claim: &'static str,
    },
    /// `eat_profile` is not [`EAT_PROFILE`].
    #[error("`eat_profile` {profile:?} is not {EAT_PROFILE}")]
    WrongProfile {
        /// The profile given (at most 64 characters of it).
        profile: String,
    },
    /// `eat_nonce` is not lower-case hex of whole bytes, or longer than RFC 9711 allows.
    #[error("`eat_nonce` must be lower-case hex, an even number of at most 74 characters")]
    BadNonce,
    /// `eat_nonce` is shorter than [`MIN_NONCE_BYTES`].
    #[error("`eat_nonce` is {bytes} bytes; at least {min} are required")]
    ShortNonce {
        /// Its length in bytes.
        bytes: usize,
        /// The minimum.
        min: usize,
    },
    /// `tppguard.evidence_tier` is not `hardware`, `measured` or `declared`.
    #[error("`tppguard.evidence_tier` {tier:?} is not hardware, measured or declared")]
    UnknownEvidenceTier {
        /// The tier given (at most 64 characters of it).
        tier: String,
    },
    /// A submod name is not `gpu<index>`.
    #[error("submod {name:?} is not named gpu0, gpu1, ...")]
    BadSubmodName {
        /// The name (at most 64 characters of it).
        name: String,
    },
    /// More than [`MAX_SUBMODS`] submods.
    #[error("{len} submods, more than the limit of {max}")]
    TooManySubmods {
        /// Submods.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A submod's name is not `gpu` and its `index`.
    #[error("submod {name:?} holds the GPU at index {index}; name it gpu{index}")]
    SubmodIndexMismatch {
        /// The name.
        name: String,
        /// The GPU's index.
        index: u32,
    },
    /// `iss` is empty.
    #[error("`iss` is empty")]
    EmptyIssuer,
    /// `tppguard.site` is outside the site id alphabet.
    #[error("`tppguard.site` {site:?} {}", crate::site::ID_RULE)]
    BadSite {
        /// At most 64 characters of it.
        site: String,
    },
    /// A submod's measurement has impossible figures.
    #[error("submod {name:?}: the measurement has {reason}")]
    BadMeasurement {
        /// The submod.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A claim's contents do not match the profile (a field missing, unknown or mistyped;
    /// the message names it).
    #[error("claim set does not match profile {EAT_PROFILE}")]
    Invalid {
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
}

impl ClaimsError {
    /// Every reason code, in declaration order.
    pub const CODES: [&'static str; 18] = [
        "claims_too_large",
        "claims_too_deep",
        "claims_bad_json",
        "claims_not_an_object",
        "claims_missing_claim",
        "claims_unknown_claim",
        "claims_wrong_type",
        "claims_wrong_profile",
        "claims_bad_nonce",
        "claims_short_nonce",
        "claims_unknown_evidence_tier",
        "claims_bad_submod_name",
        "claims_too_many_submods",
        "claims_submod_index_mismatch",
        "claims_empty_issuer",
        "claims_invalid",
        "claims_bad_measurement",
        "claims_bad_site",
    ];

    /// The stable snake_case reason code. Codes are added, never renamed or reused.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "claims_too_large",
            Self::TooDeep { .. } => "claims_too_deep",
            Self::Json { .. } => "claims_bad_json",
            Self::NotAnObject => "claims_not_an_object",
            Self::MissingClaim { .. } => "claims_missing_claim",
            Self::UnknownClaim { .. } => "claims_unknown_claim",
            Self::WrongType { .. } => "claims_wrong_type",
            Self::WrongProfile { .. } => "claims_wrong_profile",
            Self::BadNonce => "claims_bad_nonce",
            Self::ShortNonce { .. } => "claims_short_nonce",
            Self::UnknownEvidenceTier { .. } => "claims_unknown_evidence_tier",
            Self::BadSubmodName { .. } => "claims_bad_submod_name",
            Self::TooManySubmods { .. } => "claims_too_many_submods",
            Self::SubmodIndexMismatch { .. } => "claims_submod_index_mismatch",
            Self::BadMeasurement { .. } => "claims_bad_measurement",
            Self::EmptyIssuer => "claims_empty_issuer",
            Self::BadSite { .. } => "claims_bad_site",
            Self::Invalid { .. } => "claims_invalid",
        }
    }
}
