//! Leases and gating (issue 15): what the verifier lets a node use, and what the node says it
//! did about it.
//!
//! - A **lease** ([`LeaseClaims`]) is a short-lived JWS (`typ` [`LEASE_TYP`]) the verifier
//!   signs with its result key after each accepted attestation. It names the node (`sub`, the
//!   node id), the GPUs the node may use ([`LeaseGpu`], each with the licence it counts under),
//!   the GPUs left out with their reasons ([`LeaseExclusion`]), `nbf` / `exp`, when to renew
//!   (`tppguard.renew_at`), the verdict behind it, and what the agent does when no valid lease
//!   is held past the grace period ([`OnExpiry`], chosen by the licence).
//! - The **gating report** ([`GatingReport`], claim `tppguard.gating` of the next attestation)
//!   is the node's account of what it did: its mode ([`GatingMode`]), the lease it acted on,
//!   and per GPU whether it should be gated and what the driver read back.
//!
//! The agent verifies a lease under the pinned result key before acting on it; the verifier
//! checks the lease inside a report is one it signed for that node. Both sides parse with
//! [`LeaseClaims::from_json`], here, once. Nothing here reads a clock.

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

/// The JWS `typ` of a lease.
pub const LEASE_TYP: &str = "tppguard-lease+jwt";
/// The profile every lease names (`eat_profile`).
pub const LEASE_PROFILE: &str = "tag:tppguard.dev,2026:lease/v1";
/// Largest lease payload accepted, checked before parsing.
pub const MAX_LEASE_BYTES: usize = 128 * 1024;
/// Most GPUs a lease lists (allowed and excluded together): one attestation's submods.
pub const MAX_LEASE_GPUS: usize = crate::claims::MAX_SUBMODS;
/// Most reasons one excluded GPU carries.
pub const MAX_REASONS: usize = 16;
/// Longest text field (ids, codes, sentences) in a lease or a gating report.
pub const MAX_TEXT_CHARS: usize = 1024;

/// What the agent does when it holds no valid lease after the grace period.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// Keep the GPUs the last lease allowed usable, and those it left out gated (the default:
    /// a verifier outage never stops licensed GPUs, nor releases unlicensed ones).
    #[default]
    FailOpen,
    /// Gate every GPU until a valid lease arrives.
    FailClosed,
}

impl OnExpiry {
    /// The snake_case name, as in licences and leases.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

/// How the agent acts on leases.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatingMode {
    /// Log and report what would be gated; change nothing on the GPUs.
    #[default]
    Observe,
    /// Gate GPUs the lease leaves out (compute mode prohibited), and restore them.
    Enforce,
}

impl GatingMode {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Enforce => "enforce",
        }
    }
}

/// A licence's lease terms (`[lease]`): how long a lease lasts, when the agent renews it, and
/// what happens when none is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct LeaseTerms {
    /// Seconds from issue to `exp`.
    pub lifetime_s: u64,
    /// Seconds before `exp` at which the agent renews (`tppguard.renew_at`).
    pub renew_before_s: u64,
    /// Seconds after `exp` during which the agent keeps the last lease's state.
    pub grace_s: u64,
    /// What the agent does past the grace period without a valid lease.
    pub on_expiry: OnExpiry,
}

impl LeaseTerms {
    /// Default lifetime: one hour.
    pub const DEFAULT_LIFETIME_S: u64 = 3600;
    /// Default renewal margin: fifteen minutes.
    pub const DEFAULT_RENEW_BEFORE_S: u64 = 900;
    /// Default grace: one hour.
    pub const DEFAULT_GRACE_S: u64 = 3600;
    /// Longest lifetime or grace: seven days (a lease is short-lived by design).
    pub const MAX_S: u64 = 7 * 86_400;
}

impl Default for LeaseTerms {
    fn default() -> Self {
        Self {
            lifetime_s: Self::DEFAULT_LIFETIME_S,
            renew_before_s: Self::DEFAULT_RENEW_BEFORE_S,
            grace_s: Self::DEFAULT_GRACE_S,
            on_expiry: OnExpiry::FailOpen,
        }
    }
}

/// The verdict behind a lease: the node's, as the verifier evaluated it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseVerdict {
    /// Everything proven within the licence.
    Compliant,
    /// Evidence too weak to decide.
    Unproven,
    /// A violation.
    NotCompliant,
}

/// A GPU as a lease or a gating report names it: NVML index and whichever identities are
/// known (the hardware identity is the verified device certificate's, where there is one).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRef {
    /// NVML index on the node when attested.
    pub index: u32,
    /// "GPU-…" UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Board serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Hardware identity from the verified device certificate (hex), where verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
}

impl GpuRef {
    /// Whether `other` is the same GPU: the hardware identity when both have one, else the
    /// UUID when both have one, else the serial when both have one (case-insensitive for
    /// UUIDs and serials, which NVML reports in either case). The index alone never matches:
    /// indexes move when GPUs are added or removed.
    pub fn same_gpu(&self, other: &GpuRef) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => Some(a.trim().eq_ignore_ascii_case(b.trim())),
            _ => None,
        };
        eq(&self.hardware_id, &other.hardware_id)
            .or_else(|| eq(&self.uuid, &other.uuid))
            .or_else(|| eq(&self.serial, &other.serial))
            .unwrap_or(false)
    }
}

/// A GPU the node may use.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGpu {
    /// The GPU.
    #[serde(flatten)]
    pub gpu: GpuRef,
    /// The licence it counts under; `None` when no licence controls it (outside the rule set).
    #[serde(default)]
    pub licence: Option<String>,
}

/// Why a GPU is left out of a lease: a finding's code and sentence.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseReason {
    /// Stable snake_case code (a policy finding's).
    pub code: String,
    /// Human sentence with the figures.
    pub sentence: String,
}

/// A GPU the node must not use, and why.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseExclusion {
    /// The GPU.
    #[serde(flatten)]
    pub gpu: GpuRef,
    /// At least one reason.
    pub reasons: Vec<LeaseReason>,
}

/// A lease's claims (the JWS payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseClaims {
    /// The verifier (its result key's owner), as configured.
    pub iss: String,
    /// The node: its id (lower-case hex SHA-256 of the node key's SPKI).
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Not after (exclusive), Unix seconds.
    pub exp: i64,
    /// Always [`LEASE_PROFILE`].
    pub eat_profile: String,
    /// The SHA-256 (hex) of the attestation the lease answers.
    #[serde(rename = "tppguard.token-sha256")]
    pub token_sha256: String,
    /// The node's verdict the lease rests on.
    #[serde(rename = "tppguard.verdict")]
    pub verdict: LeaseVerdict,
    /// When the agent should ask for a new lease (attest again), Unix seconds.
    #[serde(rename = "tppguard.renew_at")]
    pub renew_at: i64,
    /// Seconds after `exp` the agent keeps this lease's state before `on_expiry` applies.
    #[serde(rename = "tppguard.grace_s")]
    pub grace_s: u64,
    /// What the agent does past the grace period without a valid lease.
    #[serde(rename = "tppguard.on_expiry")]
    pub on_expiry: OnExpiry,
    /// The GPUs the node may use.
    #[serde(rename = "tppguard.gpus")]
    pub gpus: Vec<LeaseGpu>,
    /// The GPUs left out, with their reasons.
    #[serde(rename = "tppguard.excluded")]
    pub excluded: Vec<LeaseExclusion>,
}

/// Where an instant lies against a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseTime {
    /// Before `nbf`.
    NotYetValid,
    /// Within `[nbf, renew_at)`.
    Valid,
    /// Within `[renew_at, exp)`: valid, renew now.
    RenewDue,
    /// Within `[exp, exp + grace)`: expired, its state still kept.
    Grace,
    /// At or after `exp + grace`: `on_expiry` applies.
    Lapsed,
}

/// Why a lease payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Larger than [`MAX_LEASE_BYTES`].
    #[error("the lease is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a lease's JSON: a claim missing, unknown or of the wrong type.
    #[error("the lease's claims do not read: {0}")]
    Json(#[from] serde_json::Error),
    /// `eat_profile` is not [`LEASE_PROFILE`].
    #[error("the payload's profile {profile:?} is not a lease's ({LEASE_PROFILE})")]
    WrongProfile {
        /// The profile given.
        profile: String,
    },
    /// The instants are out of order (`nbf <= renew_at <= exp` must hold).
    #[error("the lease's instants are out of order: nbf {nbf}, renew_at {renew_at}, exp {exp}")]
    BadInstants {
        /// Not before.
        nbf: i64,
        /// Renewal.
        renew_at: i64,
        /// Not after.
        exp: i64,
    },
    /// Too many GPUs, reasons, or a text too long.
    #[error("the lease exceeds a limit: {what}")]
    TooMuch {
        /// Which limit.
        what: &'static str,
    },
    /// A GPU is named with no identity, or both allowed and excluded.
    #[error("the lease names GPU {index} {problem}")]
    BadGpu {
        /// Its index.
        index: u32,
        /// What is wrong.
        problem: &'static str,
    },
}

impl LeaseError {
    /// Every code.
    pub const CODES: [&'static str; 6] = [
        "lease_too_large",
        "lease_invalid_json",
        "lease_wrong_profile",
        "lease_bad_instants",
        "lease_too_much",
        "lease_bad_gpu",
    ];

    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "lease_too_large",
            Self::Json(_) => "lease_invalid_json",
            Self::WrongProfile { .. } => "lease_wrong_profile",
            Self::BadInstants { .. } => "lease_bad_instants",
            Self::TooMuch { .. } => "lease_too_much",
            Self::BadGpu { .. } => "lease_bad_gpu",
        }
    }
}

impl LeaseClaims {
    /// Reads a lease payload from outside (a verified JWS payload), with every check types
    /// cannot express.
    pub fn from_json(bytes: &[u8]) -> Result<Self, LeaseError> {
        if bytes.len() > MAX_LEASE_BYTES {
            return Err(LeaseError::TooLarge {
                len: bytes.len(),
                max: MAX_LEASE_BYTES,
            });
        }
        let claims: Self = serde_json::from_slice(bytes)?;
        claims.checked()
    }

    /// The payload's JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    fn checked(self) -> Result<Self, LeaseError> {
        if self.eat_profile != LEASE_PROFILE {
            return Err(LeaseError::WrongProfile {
                profile: self.eat_profile.chars().take(MAX_TEXT_CHARS).collect(),
            });
        }
        if !(self.nbf <= self.renew_at && self.renew_at <= self.exp) {
            return Err(LeaseError::BadInstants {
                nbf: self.nbf,
                renew_at: self.renew_at,
                exp: self.exp,
            });
        }
        if self.gpus.len().saturating_add(self.excluded.len()) > MAX_LEASE_GPUS {
            return Err(LeaseError::TooMuch {
                what: "more GPUs than one attestation can name",
            });
        }
        let long = |s: &str| s.chars().count() > MAX_TEXT_CHARS;
        let refs = self
            .gpus
            .iter()
            .map(|g| &g.gpu)
            .chain(self.excluded.iter().map(|e| &e.gpu));
        for gpu in refs {
            if gpu.uuid.is_none() && gpu.serial.is_none() && gpu.hardware_id.is_none() {
                return Err(LeaseError::BadGpu {
                    index: gpu.index,
                    problem: "without a UUID, serial or hardware identity",
                });
            }
            if [&gpu.uuid, &gpu.serial, &gpu.hardware_id]
                .into_iter()
                .flatten()
                .any(|s| long(s))
            {
                return Err(LeaseError::TooMuch {
                    what: "an identity longer than 1024 characters",
                });
            }
        }
        for e in &self.excluded {
            if e.reasons.is_empty() {
                return Err(LeaseError::BadGpu {
                    index: e.gpu.index,
                    problem: "as excluded without a reason",
                });
            }
            if e.reasons.len() > MAX_REASONS {
                return Err(LeaseError::TooMuch {
                    what: "more than 16 reasons for one GPU",
                });
            }
            if e.reasons.iter().any(|r| long(&r.code) || long(&r.sentence)) {
                return Err(LeaseError::TooMuch {
                    what: "a reason longer than 1024 characters",
                });
            }
            if self.gpus.iter().any(|g| g.gpu.same_gpu(&e.gpu)) {
                return Err(LeaseError::BadGpu {
                    index: e.gpu.index,
                    problem: "both allowed and excluded",
                });
            }
        }
        if [&self.iss, &self.sub, &self.token_sha256]
            .into_iter()
            .chain(self.gpus.iter().filter_map(|g| g.licence.as_ref()))
            .any(|s| long(s))
        {
            return Err(LeaseError::TooMuch {
                what: "a text longer than 1024 characters",
            });
        }
        Ok(self)
    }

    /// Where `now` lies against the lease.
    pub fn time_at(&self, now: i64) -> LeaseTime {
        let lapse = self
            .exp
            .saturating_add(i64::try_from(self.grace_s).unwrap_or(i64::MAX));
        if now < self.nbf {
            LeaseTime::NotYetValid
        } else if now < self.renew_at {
            LeaseTime::Valid
        } else if now < self.exp {
            LeaseTime::RenewDue
        } else if now < lapse {
            LeaseTime::Grace
        } else {
            LeaseTime::Lapsed
        }
    }

    /// Whether the lease lets the node use `gpu`: it is listed in `tppguard.gpus` (and not
    /// excluded). A GPU the lease does not name at all is not allowed: a GPU that appeared
    /// after the attestation waits for the next lease.
    pub fn allows(&self, gpu: &GpuRef) -> bool {
        self.gpus.iter().any(|g| g.gpu.same_gpu(gpu))
            && !self.excluded.iter().any(|e| e.gpu.same_gpu(gpu))
    }

    /// The exclusion naming `gpu`, if any.
    pub fn exclusion(&self, gpu: &GpuRef) -> Option<&LeaseExclusion> {
        self.excluded.iter().find(|e| e.gpu.same_gpu(gpu))
    }
}

/// Where the agent stands with leases when it reports.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatingState {
    /// No lease received yet (first start): nothing gated, whatever `on_expiry` says,
    /// until the first answer or the grace period after start.
    NoLeaseYet,
    /// A valid lease is acted on.
    Leased,
    /// The lease expired; its state is kept during the grace period.
    Grace,
    /// No valid lease past the grace period; `fail_closed` gates every GPU.
    LapsedFailClosed,
    /// No valid lease past the grace period; `fail_open` keeps the GPUs the last lease
    /// allowed usable and those it left out gated.
    LapsedFailOpen,
}

/// What the driver reports as a GPU's compute mode.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeMode {
    /// Several processes may use the GPU.
    Default,
    /// One process at a time (exclusive process).
    ExclusiveProcess,
    /// No compute context may be created: gated.
    Prohibited,
    /// Any other value the driver gave.
    Other,
}

/// One GPU in a gating report.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuGate {
    /// The GPU.
    #[serde(flatten)]
    pub gpu: GpuRef,
    /// Whether the lease (or its absence) says the GPU must be gated.
    pub gate: bool,
    /// The compute mode read back after acting (or, in `observe`, as found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_mode: Option<ComputeMode>,
    /// Whether what was read back is what `gate` asks (prohibited when gated, not
    /// prohibited otherwise). In `observe`, whether it already was.
    pub held: bool,
    /// The NVML error code when acting or reading back failed (`no_permission`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The confidential-computing GPUs-ready state, where CC is on.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcReadyGate {
    /// Whether the GPUs should accept CC work (false when every GPU is gated).
    pub ready: bool,
    /// What was read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_back: Option<bool>,
    /// Whether the read-back matches.
    pub held: bool,
}

/// Claim `tppguard.gating`: what the agent did about its lease.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatingReport {
    /// `observe` or `enforce`.
    pub mode: GatingMode,
    /// Where the agent stood with leases.
    pub state: GatingState,
    /// The lease acted on (compact JWS), when one was held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Per GPU, in index order.
    pub gpus: Vec<GpuGate>,
    /// The CC ready state, where CC is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_ready: Option<CcReadyGate>,
}

impl GatingReport {
    /// The GPUs that should be gated but were not read back so (enforce mode only; in
    /// observe mode nothing is expected to hold).
    pub fn not_held(&self) -> impl Iterator<Item = &GpuGate> {
        self.gpus
            .iter()
            .filter(move |g| self.mode == GatingMode::Enforce && !g.held)
    }
}
