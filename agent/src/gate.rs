//! Gating (issue 15): the agent acts on the verifier's lease. It owns
//!
//! - **lease verification** ([`verify_lease`]): a compact JWS of `typ` [`LEASE_TYP`] that
//!   verifies under the pinned verifier result key ([`ResultKey`]), reads as [`LeaseClaims`],
//!   names this node (`sub`), answers the token just sent (`tppguard.token-sha256`, for a lease
//!   from a push answer), is within `nbf`/`exp` give or take [`LEASE_SKEW_S`], and is not older
//!   than the lease held. Anything else is a [`LeaseRefusal`]: logged, and the current state
//!   kept, so a forged, expired, replayed or other node's lease never un-gates a GPU;
//! - **the state** ([`standing`]): no lease yet (nothing gated until the first lease or
//!   `first_lease_grace_s` after the first start), leased, grace (the lease expired: its state
//!   is kept for its `tppguard.grace_s`), lapsed (the lease's `on_expiry`: `fail_closed` gates
//!   every GPU, `fail_open` only what the last lease did not allow; with no lease ever,
//!   `[gating] without_lease`, whose `fail_open` gates none);
//! - **acting** ([`act`]) through [`GpuControl`] (NVML in production, [`crate::nvml::control`];
//!   a fake in tests): in `enforce`, compute mode `PROHIBITED` on a gated GPU and, on an allowed
//!   GPU the agent gated, the mode found before gating, each read back, a set call only where the
//!   read-back differs; with confidential computing on, the GPUs-ready state not-ready when every
//!   GPU is gated and back to what was found after. What the agent did not set it never undoes.
//!   In `observe` (and a dry run), nothing is changed and the report says what would be;
//! - **the files** in the node folder: [`LEASE_FILE`] (the lease held, verified before it is
//!   written and again when read, never older than the last lease held), [`STATE_FILE`] (the
//!   first start, the modes and CC state found before gating, the last state and gated set,
//!   the last lease's `iat` and SHA-256, the Kubernetes marks last made) and [`REPORT_FILE`] (the [`GatingReport`] the next
//!   attestation carries as `tppguard.gating`).
//!
//! Everything but [`Gatekeeper`]'s file handling and the NVML shell is pure and takes `now`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{self, JwsError};
use tppguard_proto::lease::{
    CcReadyGate, ComputeMode, GatingMode, GatingReport, GatingState, GpuGate, GpuRef, LEASE_TYP,
    LeaseClaims, LeaseError, LeaseTime, OnExpiry,
};
use tppguard_proto::text::Escaped;

use crate::ear::ResultKey;
use crate::kube::KubeConfig;

/// The lease held, in the node folder.
pub const LEASE_FILE: &str = "lease.jws";
/// The gating state kept between runs, in the node folder.
pub const STATE_FILE: &str = "gate-state.json";
/// The latest gating report, in the node folder: the next attestation carries it.
pub const REPORT_FILE: &str = "gate-report.json";
/// How far a new lease's `nbf` may lie ahead of the agent's clock, and its `exp` behind it,
/// in seconds (clock skew between the node and the verifier).
pub const LEASE_SKEW_S: i64 = 60;
/// Default `first_lease_grace_s`: one hour, the default lease grace.
pub const DEFAULT_FIRST_LEASE_GRACE_S: u64 = 3600;
/// The largest file of this module read (a lease is at most 128 KiB of payload).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// `[gating]` in the agent's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatingConfig {
    /// `observe` or `enforce`.
    pub mode: GatingMode,
    /// Seconds after the first start during which, with no lease received yet, nothing is
    /// gated (the time a first attestation needs).
    #[serde(default = "default_first_lease_grace")]
    pub first_lease_grace_s: u64,
    /// What applies past that with no lease ever received: `fail_open` (default) or
    /// `fail_closed`. Once a lease is held, its own `on_expiry` decides.
    #[serde(default)]
    pub without_lease: OnExpiry,
    /// `[gating.kubernetes]`: mark the Kubernetes node after each change.
    #[serde(default)]
    pub kubernetes: Option<KubeConfig>,
}

fn default_first_lease_grace() -> u64 {
    DEFAULT_FIRST_LEASE_GRACE_S
}

impl GatingConfig {
    /// A configuration with `mode` and every default.
    pub fn new(mode: GatingMode) -> Self {
        Self {
            mode,
            first_lease_grace_s: DEFAULT_FIRST_LEASE_GRACE_S,
            without_lease: OnExpiry::FailOpen,
            kubernetes: None,
        }
    }
}

/// A lease that verified: its compact JWS and its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The compact JWS, as received.
    pub jws: String,
    /// Its claims.
    pub claims: LeaseClaims,
}

/// What a lease must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// This node.
    pub node: NodeId,
    /// The SHA-256 (hex) of the attestation just sent, for a lease from a push answer.
    pub token_sha256: Option<&'a str>,
    /// The agent's clock, for a new lease (`None`: a lease read back from the node folder,
    /// whose time [`standing`] judges).
    pub now: Option<i64>,
    /// The `iat` of the lease held: an older lease is refused (a replay).
    pub held_iat: Option<i64>,
}

/// Why a lease is not acted on. The verifier's text in it is quoted as sent: whoever shows
/// the message escapes it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseRefusal {
    /// No result key is pinned, so no lease can be verified.
    #[error(
        "no verifier result key is pinned, so the lease cannot be verified; set \
         verifier_result_key (or --verifier-result-key) to the verifier's \
         verifier-result.pub.pem"
    )]
    NoKey,
    /// Not a compact JWS the shared code reads.
    #[error("the lease is not a JWS ({}: {source})", .source.code())]
    Malformed {
        /// Why.
        #[source]
        source: JwsError,
    },
    /// Its signature does not verify under the pinned key.
    #[error("the lease does not verify under the pinned result key {} ({}: {source})", .key.display(), .source.code())]
    Signature {
        /// The pinned key's file.
        key: PathBuf,
        /// Why.
        #[source]
        source: JwsError,
    },
    /// Signed, but its `typ` is not a lease's.
    #[error("the signed token's typ is {typ}, not {LEASE_TYP}: it is not a lease")]
    WrongTyp {
        /// The `typ` given (`-` when none).
        typ: String,
    },
    /// Its claims do not read as a lease's.
    #[error(transparent)]
    Claims(#[from] LeaseError),
    /// It names another node.
    #[error("the lease is for node {sub}, not this node ({node})")]
    AnotherNode {
        /// The lease's `sub`.
        sub: String,
        /// This node.
        node: NodeId,
    },
    /// It answers another attestation.
    #[error("the lease answers the attestation with SHA-256 {lease}, not the one sent ({sent})")]
    AnotherToken {
        /// The lease's `tppguard.token-sha256`.
        lease: String,
        /// The token sent.
        sent: String,
    },
    /// Expired before it arrived.
    #[error(
        "the lease expired at {exp} (Unix time), before it arrived ({now}, allowing \
         {LEASE_SKEW_S} s of clock skew)"
    )]
    Expired {
        /// Its `exp`.
        exp: i64,
        /// The agent's clock.
        now: i64,
    },
    /// Not valid yet.
    #[error(
        "the lease is valid only from {nbf} (Unix time), later than now ({now}) by more than \
         {LEASE_SKEW_S} s of clock skew; check the node's clock"
    )]
    NotYetValid {
        /// Its `nbf`.
        nbf: i64,
        /// The agent's clock.
        now: i64,
    },
    /// Older than the lease held: a replay.
    #[error("the lease was issued at {iat}, before the lease held ({held}): an old lease replayed")]
    Older {
        /// Its `iat`.
        iat: i64,
        /// The held lease's `iat`.
        held: i64,
    },
}

impl LeaseRefusal {
    /// The agent's own codes (a claims error has its [`LeaseError`] code).
    pub const CODES: [&'static str; 9] = [
        "lease_unverifiable",
        "lease_malformed",
        "lease_signature_invalid",
        "lease_wrong_typ",
        "lease_for_another_node",
        "lease_for_another_token",
        "lease_expired",
        "lease_not_yet_valid",
        "lease_older_than_held",
    ];

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoKey => "lease_unverifiable",
            Self::Malformed { .. } => "lease_malformed",
            Self::Signature { .. } => "lease_signature_invalid",
            Self::WrongTyp { .. } => "lease_wrong_typ",
            Self::Claims(e) => e.code(),
            Self::AnotherNode { .. } => "lease_for_another_node",
            Self::AnotherToken { .. } => "lease_for_another_token",
            Self::Expired { .. } => "lease_expired",
            Self::NotYetValid { .. } => "lease_not_yet_valid",
            Self::Older { .. } => "lease_older_than_held",
        }
    }
}

/// Verifies `jws` as a lease for what `expect` says (the module's list).
pub fn verify_lease(
    key: Option<&ResultKey>,
    jws: &str,
    expect: &Expect<'_>,
) -> Result<HeldLease, LeaseRefusal> {
    let key = key.ok_or(LeaseRefusal::NoKey)?;
    let jws = jws.trim();
    let verified = jws::decode(jws)
        .map_err(|source| LeaseRefusal::Malformed { source })?
        .verify(key.key())
        .map_err(|source| LeaseRefusal::Signature {
            key: key.path().to_owned(),
            source,
        })?;
    if verified.header().typ.as_deref() != Some(LEASE_TYP) {
        return Err(LeaseRefusal::WrongTyp {
            typ: verified
                .header()
                .typ
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
        });
    }
    let claims = LeaseClaims::from_json(verified.payload())?;
    if NodeId::from_hex(&claims.sub) != Some(expect.node) {
        return Err(LeaseRefusal::AnotherNode {
            sub: claims.sub,
            node: expect.node,
        });
    }
    if let Some(sent) = expect.token_sha256
        && !claims.token_sha256.eq_ignore_ascii_case(sent)
    {
        return Err(LeaseRefusal::AnotherToken {
            lease: claims.token_sha256,
            sent: sent.to_owned(),
        });
    }
    if let Some(now) = expect.now {
        if now >= claims.exp.saturating_add(LEASE_SKEW_S) {
            return Err(LeaseRefusal::Expired {
                exp: claims.exp,
                now,
            });
        }
        if claims.nbf > now.saturating_add(LEASE_SKEW_S) {
            return Err(LeaseRefusal::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
    }
    if let Some(held) = expect.held_iat
        && claims.iat < held
    {
        return Err(LeaseRefusal::Older {
            iat: claims.iat,
            held,
        });
    }
    Ok(HeldLease {
        jws: jws.to_owned(),
        claims,
    })
}

/// Where the agent stands at `now`: with `lease` held (if any), the agent first started at
/// `started_at`, under `config`. `last_on_expiry` is the `on_expiry` of the last lease held,
/// if one ever was: a lease that went missing since (its file deleted or replaced) counts as
/// lapsed under it at once, never as "no lease yet".
pub fn standing(
    lease: Option<&LeaseClaims>,
    last_on_expiry: Option<OnExpiry>,
    started_at: i64,
    now: i64,
    config: &GatingConfig,
) -> GatingState {
    let lapsed = |on_expiry| match on_expiry {
        OnExpiry::FailClosed => GatingState::LapsedFailClosed,
        OnExpiry::FailOpen => GatingState::LapsedFailOpen,
    };
    match (lease, last_on_expiry) {
        // A lease held was within its nbf (give or take the skew) when it came: a clock that
        // went back since does not drop it.
        (Some(l), _) => match l.time_at(now) {
            LeaseTime::NotYetValid | LeaseTime::Valid | LeaseTime::RenewDue => GatingState::Leased,
            LeaseTime::Grace => GatingState::Grace,
            LeaseTime::Lapsed => lapsed(l.on_expiry),
        },
        (None, Some(on_expiry)) => lapsed(on_expiry),
        (None, None) => {
            let until = started_at.saturating_add(secs(config.first_lease_grace_s));
            if now < until {
                GatingState::NoLeaseYet
            } else {
                lapsed(config.without_lease)
            }
        }
    }
}

/// Whether `gpu` must be gated in `state` under `lease`: a GPU the lease does not allow (one
/// it leaves out, or one it does not name) while leased, in grace, or lapsed fail-open
/// (fail-open keeps licensed GPUs running through a verifier outage; it never releases the
/// GPUs the lease left out); every GPU when lapsed fail-closed; none before the first lease.
/// Lapsed fail-open with no lease at hand gates nothing here: [`Gatekeeper`] keeps the last
/// gated set when a lease was held before.
pub fn must_gate(state: GatingState, lease: Option<&LeaseClaims>, gpu: &GpuRef) -> bool {
    match state {
        GatingState::NoLeaseYet => false,
        GatingState::LapsedFailOpen => lease.is_some_and(|l| !l.allows(gpu)),
        GatingState::LapsedFailClosed => true,
        GatingState::Leased | GatingState::Grace => !lease.is_some_and(|l| l.allows(gpu)),
    }
}

/// The next instant after `now` at which the state may change with no new lease: the lease's
/// `renew_at` (renewal), `exp` (grace begins) and `exp + grace_s` (lapse), or the end of the
/// first-lease grace. `run` wakes up then, whether or not the verifier answers.
pub fn next_change(
    lease: Option<&LeaseClaims>,
    started_at: i64,
    now: i64,
    config: &GatingConfig,
) -> Option<i64> {
    let instants = match lease {
        Some(l) => vec![
            l.nbf,
            l.renew_at,
            l.exp,
            l.exp.saturating_add(secs(l.grace_s)),
        ],
        None => vec![started_at.saturating_add(secs(config.first_lease_grace_s))],
    };
    instants.into_iter().filter(|t| *t > now).min()
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// The NVML calls gating makes, on the GPUs by index. Errors are NVML's as snake_case codes
/// (`no_permission`, `not_supported`, ...).
pub trait GpuControl {
    /// This node's GPUs: index, UUID and serial where NVML gives them.
    fn gpus(&mut self) -> Result<Vec<GpuRef>, String>;
    /// `nvmlDeviceGetComputeMode`.
    fn compute_mode(&mut self, index: u32) -> Result<ComputeMode, String>;
    /// `nvmlDeviceSetComputeMode` (never [`ComputeMode::Other`]).
    fn set_compute_mode(&mut self, index: u32, mode: ComputeMode) -> Result<(), String>;
    /// Whether confidential computing is on (an error counts as off).
    fn cc_on(&mut self) -> bool;
    /// `nvmlSystemGetConfComputeGpusReadyState`.
    fn cc_ready(&mut self) -> Result<bool, String>;
    /// `nvmlSystemSetConfComputeGpusReadyState`.
    fn set_cc_ready(&mut self, ready: bool) -> Result<(), String>;
}

/// `NODE/gate-state.json`: what gating keeps between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateRecord {
    /// When the agent first started gating on this node (Unix seconds): the first-lease grace
    /// counts from here, across restarts.
    pub started_at: i64,
    /// The compute mode each GPU had before the agent gated it, by [`gpu_key`]: restored when
    /// it is allowed again.
    #[serde(default)]
    pub restore: BTreeMap<String, ComputeMode>,
    /// The state of the last evaluation.
    #[serde(default)]
    pub last_state: Option<GatingState>,
    /// The GPUs gated at the last evaluation, by [`gpu_key`].
    #[serde(default)]
    pub last_gated: Vec<String>,
    /// The `on_expiry` of the last lease held, once one was: without it the state is lapsed.
    #[serde(default)]
    pub lease_on_expiry: Option<OnExpiry>,
    /// The `iat` of the last lease held: a lease file older than it (swapped in while the
    /// agent was down) is refused at start, and a clock behind it is not trusted.
    #[serde(default)]
    pub lease_iat: Option<i64>,
    /// The SHA-256 (hex) of the last lease held's compact JWS, for whoever audits the node.
    #[serde(default)]
    pub lease_sha256: Option<String>,
    /// The CC GPUs-ready state found before the agent set it not-ready (`None`: the agent
    /// has not set it): restored when not every GPU is gated any more.
    #[serde(default)]
    pub cc_ready_found: Option<bool>,
    /// What the Kubernetes node was last marked with successfully: marked again whenever
    /// the wanted marks differ (so a failed mark is tried again).
    #[serde(default)]
    pub kube_marked: Option<KubeMarks>,
}

/// The marks on the Kubernetes node: the mode and the counts of GPUs left out and allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeMarks {
    /// The gating mode the marks were made in.
    pub mode: GatingMode,
    /// GPUs left out.
    pub left_out: usize,
    /// GPUs allowed.
    pub allowed: usize,
}

/// The SHA-256 (hex) of a lease's compact JWS.
fn lease_sha256(jws: &str) -> String {
    crate::push::sha256_hex(jws.as_bytes())
}

/// How the record and reports name a GPU: its UUID, else `index:N`.
pub fn gpu_key(gpu: &GpuRef) -> String {
    gpu.uuid
        .clone()
        .unwrap_or_else(|| format!("index:{}", gpu.index))
}

/// Whether `mode` is what `gate` asks: prohibited when gated, anything else otherwise.
fn holds(mode: Option<ComputeMode>, gate: bool) -> bool {
    mode.is_some_and(|m| (m == ComputeMode::Prohibited) == gate)
}

/// One GPU under `mode`: reads its compute mode and, in `enforce`, sets it where it differs
/// from what `gate` asks, then reads it back.
fn act_on_gpu(
    control: &mut dyn GpuControl,
    mode: GatingMode,
    gpu: GpuRef,
    gate: bool,
    record: &mut GateRecord,
) -> GpuGate {
    let key = gpu_key(&gpu);
    let found = control.compute_mode(gpu.index);
    let mut result = GpuGate {
        gpu,
        gate,
        compute_mode: found.as_ref().ok().copied(),
        held: holds(found.as_ref().ok().copied(), gate),
        error: found.as_ref().err().cloned(),
    };
    if mode == GatingMode::Observe {
        return result;
    }
    if result.held {
        if !gate {
            // Allowed and usable: nothing to restore any more.
            record.restore.remove(&key);
        }
        return result;
    }
    let target = if gate {
        // The agent is about to gate it: what to restore later (a mode it cannot read is
        // restored to DEFAULT, NVML's own default).
        let m = match found {
            Ok(m @ (ComputeMode::Default | ComputeMode::ExclusiveProcess)) => m,
            _ => ComputeMode::Default,
        };
        record.restore.entry(key.clone()).or_insert(m);
        ComputeMode::Prohibited
    } else {
        // Restore only what the agent itself gated: an allowed GPU someone else prohibited
        // (or whose mode cannot be read) is left as found, and reported as found.
        match record.restore.get(&key).copied() {
            Some(m @ (ComputeMode::Default | ComputeMode::ExclusiveProcess)) if found.is_ok() => m,
            _ => return result,
        }
    };
    let set = control.set_compute_mode(result.gpu.index, target);
    let back = control.compute_mode(result.gpu.index);
    result.compute_mode = back.as_ref().ok().copied();
    result.held = holds(result.compute_mode, gate);
    result.error = set.err().or_else(|| back.err());
    if result.held && !gate {
        record.restore.remove(&key);
    }
    let verb = if gate { "GPU gated" } else { "GPU un-gated" };
    if result.held {
        tracing::info!(gpu = result.gpu.index, uuid = %Escaped(&key), compute_mode = ?result.compute_mode, "{verb}");
    } else {
        tracing::warn!(gpu = result.gpu.index, uuid = %Escaped(&key), compute_mode = ?result.compute_mode, error = %Escaped(result.error.as_deref().unwrap_or("-")), "gating did not hold: the compute mode read back is not what the lease asks; the next attestation reports it");
    }
    result
}

/// The CC GPUs-ready state: set not-ready in `enforce` when every GPU is gated (the state
/// found first kept in `record`), and restored to what was found when not every GPU is gated
/// any more; read back. The agent never sets ready a system it did not make not-ready: then
/// the state found is reported as it is. `None` where CC is off.
fn act_on_cc(
    control: &mut dyn GpuControl,
    mode: GatingMode,
    gpus: &[GpuGate],
    record: &mut GateRecord,
) -> Option<CcReadyGate> {
    if !control.cc_on() {
        return None;
    }
    let all_gated = !gpus.is_empty() && gpus.iter().all(|g| g.gate);
    let mut read_back = control.cc_ready().ok();
    let ready = if all_gated {
        false
    } else {
        // Not the agent's to decide: what it found before gating, else what is there.
        record.cc_ready_found.or(read_back).unwrap_or(true)
    };
    let ours = all_gated || record.cc_ready_found.is_some();
    if mode == GatingMode::Enforce && ours && read_back != Some(ready) {
        if all_gated && record.cc_ready_found.is_none() {
            // An unreadable state is taken as ready: the agent is the one making it not-ready.
            record.cc_ready_found = Some(read_back.unwrap_or(true));
        }
        if let Err(e) = control.set_cc_ready(ready) {
            tracing::warn!(ready, error = %Escaped(&e), "the confidential-computing GPUs-ready state could not be set");
        }
        read_back = control.cc_ready().ok();
    }
    if mode == GatingMode::Enforce && !all_gated && read_back == Some(ready) {
        record.cc_ready_found = None;
    }
    Some(CcReadyGate {
        ready,
        read_back,
        held: read_back == Some(ready),
    })
}

/// Evaluates and acts: the report of what `mode` did in `state` under `lease` on every GPU
/// `control` lists. `record` gains the modes found before gating and the result.
/// `keep`: the GPUs to gate instead of what [`must_gate`] says (the last gated set, when no
/// lease can be judged: a clock behind the lease held, or a lease gone under fail-open).
pub fn act(
    control: &mut dyn GpuControl,
    mode: GatingMode,
    state: GatingState,
    lease: Option<&HeldLease>,
    keep: Option<&[String]>,
    record: &mut GateRecord,
) -> Result<GatingReport, String> {
    let claims = lease.map(|l| &l.claims);
    let mut gpus = control.gpus()?;
    gpus.sort_by_key(|g| g.index);
    let gates: Vec<GpuGate> = gpus
        .into_iter()
        .map(|gpu| {
            let gate = match keep {
                Some(keys) => keys.contains(&gpu_key(&gpu)),
                None => must_gate(state, claims, &gpu),
            };
            if mode == GatingMode::Observe && gate {
                let reasons = claims
                    .and_then(|l| l.exclusion(&gpu))
                    .map(|e| {
                        e.reasons
                            .iter()
                            .map(|r| r.code.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "not in the lease".to_owned());
                tracing::info!(gpu = gpu.index, uuid = %Escaped(&gpu_key(&gpu)), reasons = %Escaped(&reasons), "observe: this GPU would be gated");
            }
            act_on_gpu(control, mode, gpu, gate, record)
        })
        .collect();
    let cc_ready = act_on_cc(control, mode, &gates, record);
    if record.last_state != Some(state) {
        tracing::info!(from = ?record.last_state, to = ?state, "gating state changed");
    }
    record.last_state = Some(state);
    if let Some(l) = lease {
        record.lease_on_expiry = Some(l.claims.on_expiry);
        if record.lease_iat.is_none_or(|held| l.claims.iat >= held) {
            record.lease_iat = Some(l.claims.iat);
            record.lease_sha256 = Some(lease_sha256(&l.jws));
        }
    }
    record.last_gated = gates
        .iter()
        .filter(|g| g.gate)
        .map(|g| gpu_key(&g.gpu))
        .collect();
    Ok(GatingReport {
        mode,
        state,
        lease: lease.map(|l| l.jws.clone()),
        gpus: gates,
        cc_ready,
    })
}

/// Gating on one node: the lease held, the record, and the files they live in.
#[derive(Debug)]
pub struct Gatekeeper {
    dir: PathBuf,
    config: GatingConfig,
    key: Option<ResultKey>,
    node: NodeId,
    lease: Option<HeldLease>,
    record: GateRecord,
    dry_run: bool,
}

impl Gatekeeper {
    /// Gating for the node folder `dir`: reads the lease held (kept only if it still verifies
    /// for this node under `key`; otherwise logged and set aside) and the record (a first
    /// start records `now`).
    pub fn open(
        dir: &Path,
        config: GatingConfig,
        key: Option<ResultKey>,
        node: NodeId,
        now: i64,
    ) -> anyhow::Result<Self> {
        let record = match read_bounded(&dir.join(STATE_FILE), MAX_FILE_BYTES)? {
            Some(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} does not read; it is the agent's own file: move it away to start \
                     gating afresh (the first-lease grace then starts again)",
                    dir.join(STATE_FILE).display()
                )
            })?,
            None => GateRecord {
                started_at: now,
                ..GateRecord::default()
            },
        };
        let lease = match read_bounded(&dir.join(LEASE_FILE), MAX_FILE_BYTES)? {
            Some(jws) => {
                let expect = Expect {
                    node,
                    token_sha256: None,
                    now: None,
                    held_iat: record.lease_iat,
                };
                match verify_lease(key.as_ref(), &jws, &expect) {
                    Ok(lease) => Some(lease),
                    Err(e) => {
                        tracing::warn!(code = e.code(), error = %Escaped(&e.to_string()), file = %dir.join(LEASE_FILE).display(), "the stored lease is not acted on");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Self {
            dir: dir.to_owned(),
            config,
            key,
            node,
            lease,
            record,
            dry_run: false,
        })
    }

    /// Makes this a dry run (`gate --at`): nothing is set through NVML (the GPUs are acted on
    /// as in observe), no file is written and no Kubernetes node is marked.
    pub fn dry_run(&mut self) {
        self.dry_run = true;
    }

    /// Whether the clock reads earlier than the last lease held was issued, beyond the skew:
    /// a clock rolled back, under which no lease time can be judged.
    pub fn clock_behind(&self, now: i64) -> bool {
        let iat = self
            .lease
            .as_ref()
            .map(|l| l.claims.iat)
            .max(self.record.lease_iat);
        iat.is_some_and(|iat| now < iat.saturating_sub(LEASE_SKEW_S))
    }

    /// The lease held.
    pub fn lease(&self) -> Option<&HeldLease> {
        self.lease.as_ref()
    }

    /// The gating configuration.
    pub fn config(&self) -> &GatingConfig {
        &self.config
    }

    /// Takes a lease from the verifier (`token_sha256`: the attestation it must answer, for a
    /// push answer): verified, then held and written to NODE/lease.jws. A refusal is logged
    /// (escaped) and changes nothing.
    pub fn offer(
        &mut self,
        jws: &str,
        token_sha256: Option<&str>,
        now: i64,
    ) -> Result<(), LeaseRefusal> {
        let expect = Expect {
            node: self.node,
            token_sha256,
            now: Some(now),
            held_iat: self
                .lease
                .as_ref()
                .map(|l| l.claims.iat)
                .max(self.record.lease_iat),
        };
        match verify_lease(self.key.as_ref(), jws, &expect) {
            Ok(lease) => {
                if self.dry_run {
                    tracing::info!("dry run: the lease is acted on but not kept");
                } else if let Err(e) =
                    write_atomic(&self.dir.join(LEASE_FILE), &format!("{}\n", lease.jws))
                {
                    tracing::error!(error = %Escaped(&format!("{e:#}")), "the lease is acted on but could not be kept in the node folder: a restart would not find it");
                }
                tracing::info!(
                    iat = lease.claims.iat,
                    exp = lease.claims.exp,
                    renew_at = lease.claims.renew_at,
                    allowed = lease.claims.gpus.len(),
                    excluded = lease.claims.excluded.len(),
                    on_expiry = lease.claims.on_expiry.as_str(),
                    "lease accepted"
                );
                self.lease = Some(lease);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %Escaped(&e.to_string()), "lease refused: nothing changes, the current gating stays");
                Err(e)
            }
        }
    }

    /// Where the agent stands at `now`.
    pub fn state(&self, now: i64) -> GatingState {
        standing(
            self.lease.as_ref().map(|l| &l.claims),
            self.record.lease_on_expiry,
            self.record.started_at,
            now,
            &self.config,
        )
    }

    /// When `run` must look again without any answer ([`next_change`]).
    pub fn next_change(&self, now: i64) -> Option<i64> {
        next_change(
            self.lease.as_ref().map(|l| &l.claims),
            self.record.started_at,
            now,
            &self.config,
        )
    }

    /// The lease's `renew_at`, when one is held.
    pub fn renew_at(&self) -> Option<i64> {
        self.lease.as_ref().map(|l| l.claims.renew_at)
    }

    /// Evaluates at `now` and acts through `control`; writes the record and the report (for
    /// the next attestation), and marks the Kubernetes node where its marks differ from the
    /// last ones made. A clock behind the lease held keeps the last state and gated set; a
    /// lease gone under fail-open keeps the last gated set.
    pub fn evaluate(
        &mut self,
        control: &mut dyn GpuControl,
        now: i64,
    ) -> anyhow::Result<GatingReport> {
        let behind = self.clock_behind(now);
        let state = match self.record.last_state {
            Some(last) if behind => last,
            _ => self.state(now),
        };
        if behind {
            tracing::warn!(
                now,
                lease_iat = ?self.record.lease_iat,
                "the clock reads before the lease held was issued: no lease time can be judged, so the last gated set is kept; check the node's clock"
            );
        }
        let lease_gone = self.lease.is_none() && self.record.lease_iat.is_some();
        let keep = (behind || (lease_gone && state == GatingState::LapsedFailOpen))
            .then(|| self.record.last_gated.clone());
        let mode = if self.dry_run {
            GatingMode::Observe
        } else {
            self.config.mode
        };
        let mut record = self.record.clone();
        let report = act(
            control,
            mode,
            state,
            self.lease.as_ref(),
            keep.as_deref(),
            &mut record,
        )
        .map_err(|e| anyhow::anyhow!("NVML cannot list the GPUs to gate ({e})"))?;
        if self.dry_run {
            return Ok(report);
        }
        self.record = record;
        self.mark_kube(&report);
        write_atomic(
            &self.dir.join(STATE_FILE),
            &serde_json::to_string_pretty(&self.record)?,
        )?;
        write_atomic(
            &self.dir.join(REPORT_FILE),
            &serde_json::to_string_pretty(&report)?,
        )?;
        Ok(report)
    }

    /// Marks the Kubernetes node (in both modes: in observe, a would-gate label and never a
    /// taint) when the marks wanted differ from the last made; a failure is logged and tried
    /// again at the next evaluation.
    fn mark_kube(&mut self, report: &GatingReport) {
        let Some(kube) = &self.config.kubernetes else {
            return;
        };
        let left_out = report.gpus.iter().filter(|g| g.gate).count();
        let wanted = KubeMarks {
            mode: self.config.mode,
            left_out,
            allowed: report.gpus.len().saturating_sub(left_out),
        };
        if self.record.kube_marked == Some(wanted) {
            return;
        }
        let env = |name: &str| std::env::var(name).ok();
        match crate::kube::mark(kube, &env, wanted.mode, wanted.left_out, wanted.allowed) {
            Ok(()) => self.record.kube_marked = Some(wanted),
            Err(e) => {
                tracing::warn!(code = e.code(), error = %Escaped(&e.to_string()), "could not mark the Kubernetes node; gating goes on through NVML, and the mark is tried again at the next evaluation");
            }
        }
    }
}

/// The gating report in `dir` (NODE/gate-report.json), for the next attestation; `None` when
/// there is none. A report that does not read is an error: the attestation would otherwise
/// silently say nothing about gating.
pub fn load_report(dir: &Path) -> anyhow::Result<Option<GatingReport>> {
    let path = dir.join(REPORT_FILE);
    read_bounded(&path, MAX_FILE_BYTES)?
        .map(|text| {
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} does not read as a gating report; it is the agent's own file, \
                     rewritten at each evaluation: remove it, or run `tppguard-agent gate`",
                    path.display()
                )
            })
        })
        .transpose()
}

/// A file's text, at most `max` bytes; `None` when it does not exist. The one bounded read of
/// the agent's gating files and of a lease given on the command line.
pub(crate) fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Option<String>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut text = String::new();
    file.take(max.saturating_add(1))
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if u64::try_from(text.len()).map_or(true, |n| n > max) {
        anyhow::bail!(
            "{} is larger than {max} bytes: not a file the agent wrote, nor a lease",
            path.display()
        );
    }
    Ok(Some(text))
}

/// Writes `text` to `path` atomically (a temporary file beside it, renamed).
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub mod command;
#[cfg(test)]
mod tests;
