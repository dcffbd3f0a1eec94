//! Hardware evidence: each GPU's own signed attestation report and certificate chain, read
//! through NVML's confidential-computing calls for the verifier's challenge, and put in the
//! GPU's submod as NVIDIA's evidence item (`gpu_evidence`); or, for a GPU without it, the
//! precise reason in the submod's `absent["gpu_evidence"]`.
//!
//! Each GPU is given the nonce [`gpu_nonce`]`(challenge, node id, index)`: a domain-separated
//! SHA-256 of the verifier's challenge, the node key's SPKI hash and the GPU's index, so a
//! report answers this challenge, for this node, at this GPU, and cannot be borrowed.
//!
//! Every NVML call here runs on a worker thread of its own, waited for at most
//! [`CallPolicy::timeout`] (NVIDIA's tools: `MAX_NVML_TIME_DELAY`, 5 s) and tried up to
//! [`CallPolicy::attempts`] times (`MAX_RETRY_COUNT`, 3) when the failure may pass: the wait
//! ran out, or NVML said `Timeout`, `Unknown`, `IrqIssue` or `InUse`. Any other answer is final
//! (`NotSupported`, `NoPermission`, a missing function, a lost GPU, an out-of-range size). A
//! hung driver call leaves its worker behind and the agent goes on (at most 64
//! at once); a panic on a worker is an error of that call, never the agent's end.
//!
//! What NVML returns is passed on as it is (trailing NUL padding of the chain trimmed): the
//! verifier judges it. The tier the agent claims is only a request the verifier re-derives.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use nvml_wrapper::error::NvmlError;
use serde::Serialize;
use tppguard_proto::claims::{self, AttestationClaims, Nonce};
use tppguard_proto::evidence::EvidenceTier;
use tppguard_proto::gpu_evidence::{GpuEvidence, gpu_nonce};
use tppguard_proto::identity::NodeId;

use crate::inventory::{AbsentReason, GpuStatus};
use crate::nvml::Session;
use crate::nvml::raw::{self, CcCallError};
use crate::report::Report;

/// How long one NVML call may take: NVIDIA's `MAX_NVML_TIME_DELAY`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a call that may pass is tried: NVIDIA's `MAX_RETRY_COUNT`.
pub const ATTEMPTS: u32 = 3;

/// The NVML function names, as the reasons quote them.
const CERTIFICATE_CALL: &str = "nvmlDeviceGetConfComputeGpuCertificate";
const REPORT_CALL: &str = "nvmlDeviceGetConfComputeGpuAttestationReport";
const SETTINGS_CALL: &str = "nvmlSystemGetConfComputeSettings";

/// The timeout and attempts of each evidence call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// How long one attempt is waited for.
    pub timeout: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: CALL_TIMEOUT,
            attempts: ATTEMPTS,
        }
    }
}

/// Why a GPU carries no evidence. [`Missing::code`] is stable; the text names the reason
/// and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// Neither CC mode nor multi-GPU protected PCIe is on: the GPUs sign no report.
    #[error(
        "confidential computing is off on this node (CC mode off, multi-GPU protected PCIe \
         off), so the GPU signs no attestation report; turn CC mode on (nvidia-smi \
         conf-compute, see NVIDIA's Confidential Computing Deployment Guide) for the hardware \
         tier"
    )]
    CcOff,
    /// NVML could not say whether CC is on.
    #[error("NVML could not tell whether confidential computing is on: {detail}")]
    CcStateUnknown {
        /// NVML's words.
        detail: String,
    },
    /// The driver's NVML lacks a confidential-computing function.
    #[error(
        "the NVIDIA driver is too old: its NVML has no {symbol} (confidential computing \
         needs a driver of the R535 branch or newer); update the driver"
    )]
    DriverTooOld {
        /// The missing function.
        symbol: &'static str,
    },
    /// Only Hopper and Blackwell GPUs sign reports.
    #[error(
        "this GPU's architecture ({arch}) has no NVIDIA device attestation (Hopper and \
         Blackwell have)"
    )]
    ArchitectureNotSupported {
        /// The architecture NVML gave, or "unknown".
        arch: String,
    },
    /// NVML says the GPU does not support the call.
    #[error("{call} is not supported on this GPU (NVML: {detail})")]
    NotSupported {
        /// The NVML function.
        call: &'static str,
        /// NVML's words.
        detail: String,
    },
    /// NVML refused the agent.
    #[error(
        "{call} was refused (NVML: {detail}); run the agent as a user with access to \
         /dev/nvidia*, or as root"
    )]
    NoPermission {
        /// The NVML function.
        call: &'static str,
        /// NVML's words.
        detail: String,
    },
    /// The GPU is lost or could not be read at inventory time.
    #[error("the GPU is {status} (see its status), so it was not asked for evidence")]
    GpuNotReadable {
        /// `lost` or `unreadable`.
        status: &'static str,
    },
    /// NVML said the GPU fell off the bus during the call.
    #[error("{call}: the GPU fell off the bus (NVML: {detail})")]
    GpuLost {
        /// The NVML function.
        call: &'static str,
        /// NVML's words.
        detail: String,
    },
    /// Every attempt ran out of time.
    #[error(
        "{call} did not answer within {timeout_ms} ms, {attempts} attempt(s); the driver may \
         be hung: check `nvidia-smi` and the kernel log"
    )]
    TimedOut {
        /// The NVML function.
        call: &'static str,
        /// The wait of each attempt.
        timeout_ms: u128,
        /// Attempts made.
        attempts: u32,
    },
    /// NVML answered an error (after the attempts, where it may pass).
    #[error("{call} failed after {attempts} attempt(s): {detail}")]
    DriverError {
        /// The NVML function.
        call: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        detail: String,
    },
    /// The driver's answer is out of range (a size past its buffer).
    #[error("{call} gave an answer the agent refuses: {detail}")]
    BadAnswer {
        /// The NVML function.
        call: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The node certificate's key cannot be read, so no nonce binds a GPU to this node.
    #[error(
        "the node certificate's public key cannot be read, so no GPU nonce can bind a report \
         to this node; reissue the node certificate"
    )]
    NoNodeId,
}

impl Missing {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::CcOff => "cc_off",
            Self::CcStateUnknown { .. } => "cc_state_unknown",
            Self::DriverTooOld { .. } => "driver_too_old",
            Self::ArchitectureNotSupported { .. } => "architecture_not_supported",
            Self::NotSupported { .. } => "not_supported",
            Self::NoPermission { .. } => "no_permission",
            Self::GpuNotReadable { .. } => "gpu_not_readable",
            Self::GpuLost { .. } => "gpu_lost",
            Self::TimedOut { .. } => "timed_out",
            Self::DriverError { .. } => "driver_error",
            Self::BadAnswer { .. } => "bad_answer",
            Self::NoNodeId => "no_node_id",
        }
    }

    /// The claims' absence: the closest [`claims::AbsentReason`], and `code: text` as the
    /// detail so the precise reason survives in the signed claims.
    pub fn absence(&self) -> claims::Absence {
        let reason = match self {
            Self::CcOff | Self::ArchitectureNotSupported { .. } | Self::NotSupported { .. } => {
                claims::AbsentReason::NotSupported
            }
            Self::DriverTooOld { .. } => claims::AbsentReason::SymbolMissing,
            Self::NoPermission { .. } => claims::AbsentReason::NoPermission,
            Self::GpuNotReadable { .. } | Self::GpuLost { .. } => claims::AbsentReason::GpuLost,
            Self::CcStateUnknown { .. }
            | Self::TimedOut { .. }
            | Self::DriverError { .. }
            | Self::BadAnswer { .. }
            | Self::NoNodeId => claims::AbsentReason::Error,
        };
        claims::Absence {
            reason,
            detail: format!("{}: {self}", self.code()),
        }
    }
}

/// One call's failure, before the attempts are counted.
#[derive(Debug)]
enum CallError {
    /// The worker did not answer in time.
    TimedOut,
    /// The worker could not be started, or it panicked.
    Worker(String),
    /// What the call answered.
    Call(CcCallError),
}

impl CallError {
    /// Whether another attempt may succeed.
    fn may_pass(&self) -> bool {
        matches!(
            self,
            Self::TimedOut
                | Self::Call(CcCallError::Nvml(
                    NvmlError::Timeout
                        | NvmlError::Unknown
                        | NvmlError::IrqIssue
                        | NvmlError::InUse
                ))
        )
    }

    fn into_missing(self, call: &'static str, policy: CallPolicy, attempts: u32) -> Missing {
        match self {
            Self::TimedOut => Missing::TimedOut {
                call,
                timeout_ms: policy.timeout.as_millis(),
                attempts,
            },
            Self::Worker(detail) => Missing::DriverError {
                call,
                attempts,
                detail,
            },
            Self::Call(CcCallError::SizeOutOfRange { what, size, buffer }) => Missing::BadAnswer {
                call,
                detail: format!(
                    "it said it wrote {size} bytes of {what} into a {buffer}-byte buffer"
                ),
            },
            Self::Call(CcCallError::Nvml(e)) => {
                let detail = e.to_string();
                match e {
                    NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound => {
                        Missing::DriverTooOld { symbol: call }
                    }
                    NvmlError::NotSupported => Missing::NotSupported { call, detail },
                    NvmlError::NoPermission => Missing::NoPermission { call, detail },
                    NvmlError::GpuLost => Missing::GpuLost { call, detail },
                    _ => Missing::DriverError {
                        call,
                        attempts,
                        detail,
                    },
                }
            }
        }
    }
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// How many workers may be running at once. A driver that hangs every call would otherwise
/// leave workers behind without end in `run`, round after round; past this, no new call is
/// started until some of them return.
const MAX_WORKERS: usize = 64;

/// Workers running now (hung ones included).
static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Counts a running worker until dropped (on the worker, whatever way it ends).
struct WorkerSlot;

impl WorkerSlot {
    fn take() -> Option<Self> {
        WORKERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WORKERS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        WORKERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `f` on a worker thread and waits at most `timeout` for it. A worker still running
/// then is left behind (it holds its own reference to the session); a panic on it is this
/// call's error.
fn on_worker<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Result<T, CcCallError> + Send + 'static,
) -> Result<T, CallError> {
    let slot = WorkerSlot::take().ok_or_else(|| {
        CallError::Worker(format!(
            "{MAX_WORKERS} earlier NVML calls have not returned (the driver hangs): no new \
             call is started until they do; check `nvidia-smi` and the kernel log"
        ))
    })?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("nvml-cc".to_owned())
        .spawn(move || {
            let _slot = slot;
            let result = catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_text(p.as_ref()));
            if tx.send(result).is_err() {
                tracing::debug!("an NVML call answered after the agent stopped waiting");
            }
        })
        .map_err(|e| CallError::Worker(format!("no worker thread could be started: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(CallError::Call(e)),
        Ok(Err(text)) => Err(CallError::Worker(format!("the NVML call panicked: {text}"))),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(CallError::TimedOut),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Worker(
            "the NVML call's worker ended without an answer".to_owned(),
        )),
    }
}

/// One evidence call for GPU `index`, on a worker, tried as [`CallPolicy`] says.
fn call_gpu<T, F>(
    session: &Arc<Session>,
    index: u32,
    call: &'static str,
    policy: CallPolicy,
    f: F,
) -> Result<T, Failed>
where
    T: Send + 'static,
    F: Fn(&nvml_wrapper::Nvml, &nvml_wrapper::Device<'_>) -> Result<T, CcCallError>
        + Clone
        + Send
        + 'static,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let session = Arc::clone(session);
        let f = f.clone();
        let result = on_worker(policy.timeout, move || {
            let device = session.nvml.device_by_index(index)?;
            f(&session.nvml, &device)
        });
        match result {
            Ok(value) => return Ok(value),
            Err(e) if e.may_pass() && attempt < attempts => {
                tracing::debug!(gpu = index, call, attempt, error = ?e, "retrying an NVML call");
            }
            Err(error) => {
                return Err(Failed {
                    call,
                    error,
                    attempts: attempt,
                    policy,
                });
            }
        }
    }
}

/// A call that failed for good.
#[derive(Debug)]
struct Failed {
    call: &'static str,
    error: CallError,
    attempts: u32,
    policy: CallPolicy,
}

impl Failed {
    fn into_missing(self) -> Missing {
        self.error
            .into_missing(self.call, self.policy, self.attempts)
    }

    /// NVML's own name for the error (`NotSupported`), when NVML answered one.
    fn nvml_error(&self) -> Option<String> {
        match &self.error {
            CallError::Call(CcCallError::Nvml(e)) => Some(format!("{e:?}")),
            _ => None,
        }
    }
}

impl From<Failed> for Missing {
    fn from(f: Failed) -> Self {
        f.into_missing()
    }
}

/// NVIDIA's architecture name in the evidence item, for the architectures that attest.
fn evidence_arch(architecture: Option<&str>) -> Result<&'static str, Missing> {
    match architecture {
        Some(a) if a.eq_ignore_ascii_case("hopper") => Ok("HOPPER"),
        Some(a) if a.eq_ignore_ascii_case("blackwell") => Ok("BLACKWELL"),
        other => Err(Missing::ArchitectureNotSupported {
            arch: other.unwrap_or("unknown").to_owned(),
        }),
    }
}

/// Whether the node's CC settings let GPUs attest: CC mode or multi-GPU protected PCIe on.
fn cc_ready(report: &Report) -> Result<(), Missing> {
    let d = &report.driver;
    match &d.confidential_computing {
        Some(cc) if cc.enabled || cc.multi_gpu_protected_pcie => Ok(()),
        Some(_) => Err(Missing::CcOff),
        None => match d.absent.get("confidential_computing") {
            Some(a)
                if matches!(
                    a.reason,
                    AbsentReason::SymbolMissing | AbsentReason::DriverLacksFunction
                ) =>
            {
                Err(Missing::DriverTooOld {
                    symbol: SETTINGS_CALL,
                })
            }
            Some(a) => Err(Missing::CcStateUnknown {
                detail: a.detail.clone(),
            }),
            None => Err(Missing::CcStateUnknown {
                detail: "the inventory has no confidential-computing state".to_owned(),
            }),
        },
    }
}

/// The trailing NUL padding of a buffer NVML filled, trimmed; nothing else is changed.
fn trim_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// Reads one GPU's evidence for `nonce`.
fn gpu_evidence(
    session: &Arc<Session>,
    index: u32,
    arch: &'static str,
    nonce: [u8; 32],
    policy: CallPolicy,
) -> Result<GpuEvidence, Missing> {
    let chain = call_gpu(
        session,
        index,
        CERTIFICATE_CALL,
        policy,
        raw::gpu_attestation_cert_chain,
    )?;
    let report = call_gpu(session, index, REPORT_CALL, policy, move |nvml, device| {
        raw::gpu_attestation_report(nvml, device, nonce)
    })?;
    Ok(GpuEvidence::from_parts(arch, &trim_nuls(chain), &report))
}

/// Each GPU's evidence, or why it has none, by NVML index.
#[derive(Debug, Default)]
pub struct Collected {
    /// By GPU index.
    pub gpus: BTreeMap<u32, Result<GpuEvidence, Missing>>,
}

/// Reads every GPU's evidence for the verifier's `challenge`, bound to the node `node`
/// (`None` when the node certificate's key cannot be read): GPUs the inventory could read,
/// when CC mode or protected PCIe is on, one GPU after another.
pub fn collect(
    session: &Arc<Session>,
    report: &Report,
    challenge: &Nonce,
    node: Option<&NodeId>,
    policy: CallPolicy,
) -> Collected {
    let node_ready = cc_ready(report).and_then(|()| node.ok_or(Missing::NoNodeId));
    let gpus = report
        .gpus
        .iter()
        .map(|g| {
            let index = g.gpu.index;
            let result = node_ready.clone().and_then(|node| {
                match g.gpu.status {
                    GpuStatus::Ok => {}
                    GpuStatus::Lost => return Err(Missing::GpuNotReadable { status: "lost" }),
                    GpuStatus::Unreadable => {
                        return Err(Missing::GpuNotReadable {
                            status: "unreadable",
                        });
                    }
                }
                let arch = evidence_arch(g.gpu.architecture.as_deref())?;
                let nonce = gpu_nonce(challenge, node, index);
                gpu_evidence(session, index, arch, nonce, policy)
            });
            if let Err(m) = &result {
                tracing::debug!(gpu = index, reason = m.code(), "no GPU evidence");
            }
            (index, result)
        })
        .collect();
    Collected { gpus }
}

impl Collected {
    /// Puts each GPU's evidence, or its absence, in its submod; the claimed tier becomes
    /// `hardware` when every readable GPU (status `ok`) carries evidence, and at least one does.
    pub fn apply(self, claims: &mut AttestationClaims) {
        for (index, result) in self.gpus {
            let Some(submod) = claims.submods.get_mut(&claims::submod_name(index)) else {
                continue;
            };
            match result {
                Ok(evidence) => submod.gpu_evidence = Some(evidence),
                Err(missing) => {
                    submod
                        .absent
                        .insert("gpu_evidence".to_owned(), missing.absence());
                }
            }
        }
        let mut readable = claims
            .submods
            .values()
            .filter(|s| s.status == claims::GpuStatus::Ok)
            .peekable();
        if readable.peek().is_some() && readable.all(|s| s.gpu_evidence.is_some()) {
            claims.evidence_tier = EvidenceTier::Hardware;
        }
    }
}

/// One GPU's evidence outcome, for `attest`'s summary.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryLine {
    /// NVML index.
    pub index: u32,
    /// Whether the submod carries `gpu_evidence`.
    pub attached: bool,
    /// Why not: the absence's detail (`code: text`).
    pub reason: Option<String>,
}

/// Each submod's evidence outcome, from signed claims.
pub fn summary(claims: &AttestationClaims) -> Vec<SummaryLine> {
    claims
        .submods
        .values()
        .map(|s| SummaryLine {
            index: s.index,
            attached: s.gpu_evidence.is_some(),
            reason: s.absent.get("gpu_evidence").map(|a| a.detail.clone()),
        })
        .collect()
}

/// The schema of `tppguard-agent gpu-evidence --json`.
pub const PROBE_SCHEMA: &str = "tppguard-gpu-evidence-probe/v1";

/// One evidence call's outcome in a [`Probe`].
#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    /// The NVML function.
    pub call: &'static str,
    /// The call gave bytes.
    pub ok: bool,
    /// How many (a chain's trailing NULs trimmed).
    pub bytes: Option<usize>,
    /// NVML's error, by nvml-wrapper's name for it (`NotSupported`), when NVML answered one.
    pub nvml_error: Option<String>,
    /// The reason code, as `absent.gpu_evidence` would give it.
    pub code: Option<&'static str>,
    /// The reason's text.
    pub detail: Option<String>,
}

impl CallOutcome {
    fn of(call: &'static str, result: Result<usize, Failed>) -> Self {
        match result {
            Ok(bytes) => Self {
                call,
                ok: true,
                bytes: Some(bytes),
                nvml_error: None,
                code: None,
                detail: None,
            },
            Err(failed) => {
                let nvml_error = failed.nvml_error();
                let missing = failed.into_missing();
                Self {
                    call,
                    ok: false,
                    bytes: None,
                    nvml_error,
                    code: Some(missing.code()),
                    detail: Some(missing.to_string()),
                }
            }
        }
    }
}

/// One GPU in a [`Probe`].
#[derive(Debug, Clone, Serialize)]
pub struct ProbeGpu {
    /// NVML index.
    pub index: u32,
    /// NVML's name.
    pub name: Option<String>,
    /// NVML's architecture.
    pub architecture: Option<String>,
    /// NVML's VBIOS version (the signed report carries it too).
    pub vbios_version: Option<String>,
    /// The nonce the report call was given, hex.
    pub nonce: String,
    /// `nvmlDeviceGetConfComputeGpuCertificate`.
    pub certificate: CallOutcome,
    /// `nvmlDeviceGetConfComputeGpuAttestationReport`.
    pub report: CallOutcome,
    /// The report written as hex (request || response), as NVIDIA's tools write it.
    pub report_file: Option<std::path::PathBuf>,
    /// The attestation certificate chain written as PEM.
    pub chain_file: Option<std::path::PathBuf>,
}

/// What `tppguard-agent gpu-evidence` found: the node's CC state and, for every readable GPU,
/// what the two evidence calls answer, asked whatever the CC state (a diagnosis, not an
/// attestation: nothing is signed).
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Always [`PROBE_SCHEMA`].
    pub schema: &'static str,
    /// The NVML library that answered.
    pub library: String,
    /// The library is tppguard's fake.
    pub simulated: bool,
    /// The driver version.
    pub driver_version: Option<String>,
    /// CC settings and ready state, as the inventory reads them.
    pub confidential_computing: Option<crate::inventory::ConfidentialComputing>,
    /// Why the CC state is (partly) absent.
    pub confidential_computing_absent: BTreeMap<&'static str, crate::inventory::Absence>,
    /// Whether `attest` asks the GPUs for evidence (CC mode or protected PCIe on).
    pub attest_collects: bool,
    /// Why not (`code: text`), when it does not.
    pub attest_collects_not_because: Option<String>,
    /// The GPUs.
    pub gpus: Vec<ProbeGpu>,
}

/// Asks every readable GPU for its chain and a report for `nonce` (the same nonce for all:
/// no challenge or node binds it), writing both to `out_dir` when given and both calls
/// answered.
pub fn probe(
    session: &Arc<Session>,
    report: &Report,
    nonce: [u8; 32],
    out_dir: Option<&std::path::Path>,
    policy: CallPolicy,
) -> std::io::Result<Probe> {
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let mut gpus = Vec::new();
    for g in report.gpus.iter().filter(|g| g.gpu.status == GpuStatus::Ok) {
        let index = g.gpu.index;
        let chain = call_gpu(
            session,
            index,
            CERTIFICATE_CALL,
            policy,
            raw::gpu_attestation_cert_chain,
        )
        .map(trim_nuls);
        let signed = call_gpu(session, index, REPORT_CALL, policy, move |nvml, device| {
            raw::gpu_attestation_report(nvml, device, nonce)
        });
        let (mut report_file, mut chain_file) = (None, None);
        if let (Some(dir), Ok(chain), Ok(signed)) = (out_dir, &chain, &signed) {
            let r = dir.join(format!("gpu{index}-report.hex"));
            let hex: String = signed.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&r, format!("{hex}\n"))?;
            let c = dir.join(format!("gpu{index}-chain.pem"));
            std::fs::write(&c, chain)?;
            (report_file, chain_file) = (Some(r), Some(c));
        }
        gpus.push(ProbeGpu {
            index,
            name: g.gpu.name.clone(),
            architecture: g.gpu.architecture.clone(),
            vbios_version: g.gpu.vbios_version.clone(),
            nonce: hex.clone(),
            certificate: CallOutcome::of(CERTIFICATE_CALL, chain.map(|c| c.len())),
            report: CallOutcome::of(REPORT_CALL, signed.map(|r| r.len())),
            report_file,
            chain_file,
        });
    }
    let d = &report.driver;
    Ok(Probe {
        schema: PROBE_SCHEMA,
        library: report.source.library.clone(),
        simulated: report.source.simulated,
        driver_version: d.driver_version.clone(),
        confidential_computing: d.confidential_computing,
        confidential_computing_absent: d
            .absent
            .iter()
            .filter(|(k, _)| k.starts_with("confidential_computing"))
            .map(|(k, v)| (*k, v.clone()))
            .collect(),
        attest_collects: cc_ready(report).is_ok(),
        attest_collects_not_because: cc_ready(report).err().map(|m| format!("{}: {m}", m.code())),
        gpus,
    })
}

impl Probe {
    /// Whether every readable GPU answered both calls.
    pub fn complete(&self) -> bool {
        !self.gpus.is_empty() && self.gpus.iter().all(|g| g.certificate.ok && g.report.ok)
    }

    /// The human form (outside text escaped).
    pub fn render(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        use tppguard_proto::text::Escaped;
        let yes_no = |b: bool| if b { "on" } else { "off" };
        match &self.confidential_computing {
            Some(cc) => writeln!(
                out,
                "confidential computing: CC mode {}, dev tools {}, multi-GPU protected PCIe {}, \
                 GPUs ready {}",
                yes_no(cc.enabled),
                yes_no(cc.dev_tools_mode),
                yes_no(cc.multi_gpu_protected_pcie),
                cc.gpus_ready
                    .map_or("not reported", |r| if r { "yes" } else { "no" }),
            )?,
            None => writeln!(out, "confidential computing: not reported")?,
        }
        for (field, a) in &self.confidential_computing_absent {
            writeln!(
                out,
                "  {field}: {} ({})",
                a.reason.code(),
                Escaped(&a.detail)
            )?;
        }
        match &self.attest_collects_not_because {
            None => writeln!(out, "attest collects GPU evidence")?,
            Some(why) => writeln!(out, "attest collects no GPU evidence: {}", Escaped(why))?,
        }
        for g in &self.gpus {
            writeln!(
                out,
                "GPU {} {} ({})",
                g.index,
                Escaped(g.name.as_deref().unwrap_or("-")),
                Escaped(g.architecture.as_deref().unwrap_or("architecture unknown")),
            )?;
            for (what, c) in [("certificate chain", &g.certificate), ("report", &g.report)] {
                match (c.bytes, &c.detail) {
                    (Some(n), _) => writeln!(out, "  {what}: {n} bytes")?,
                    (None, detail) => writeln!(
                        out,
                        "  {what}: {} {}",
                        c.nvml_error.as_deref().or(c.code).unwrap_or("failed"),
                        Escaped(detail.as_deref().unwrap_or(""))
                    )?,
                }
            }
            for file in [&g.report_file, &g.chain_file].into_iter().flatten() {
                writeln!(out, "  wrote {}", Escaped(&file.display().to_string()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_what_may_pass() {
        assert!(CallError::TimedOut.may_pass());
        assert!(CallError::Call(CcCallError::Nvml(NvmlError::Unknown)).may_pass());
        assert!(!CallError::Call(CcCallError::Nvml(NvmlError::NotSupported)).may_pass());
        assert!(!CallError::Call(CcCallError::Nvml(NvmlError::GpuLost)).may_pass());
        assert!(!CallError::Worker("panic".into()).may_pass());
        let size = CcCallError::SizeOutOfRange {
            what: "attestation report",
            size: 9000,
            buffer: 8192,
        };
        assert!(!CallError::Call(size).may_pass());
    }

    #[test]
    fn a_worker_that_hangs_or_panics_is_an_error_of_the_call() {
        let hung = on_worker(Duration::from_millis(20), || {
            std::thread::sleep(Duration::from_secs(2));
            Ok(1)
        });
        assert!(matches!(hung, Err(CallError::TimedOut)), "{hung:?}");
        let panicked: Result<u8, _> = on_worker(Duration::from_secs(5), || {
            let buf = [0u8; 4];
            let n = std::hint::black_box(9);
            Ok(buf[..n].len() as u8)
        });
        match panicked {
            Err(CallError::Worker(text)) => assert!(text.contains("panicked"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(on_worker(Duration::from_secs(5), || Ok(7)).unwrap(), 7);
    }

    /// The claims of the simulated `fixture`, one GPU of which is lost in `fault-gpu-lost`.
    fn claims_of(fixture: &str) -> (AttestationClaims, Vec<(u32, bool)>) {
        use crate::nvml::LibrarySource;
        let driver = crate::simulate::SimulatedDriver::install(fixture).unwrap();
        let session = Session::open(LibrarySource::Simulated(driver)).unwrap();
        let gpus = crate::inventory::collect(&session.nvml).unwrap();
        let report = Report::new(&session, crate::host::Host::read(), gpus).unwrap();
        let readable = report
            .gpus
            .iter()
            .map(|g| (g.gpu.index, g.gpu.status == GpuStatus::Ok))
            .collect();
        let context = crate::sign::ClaimsContext {
            iss: "n".into(),
            iat: 1_790_000_000,
            nonce: Nonce::parse(&"ab".repeat(32)).unwrap(),
            site: None,
            measurements: BTreeMap::new(),
            gating: None,
        };
        (crate::sign::claims_from_report(&report, context), readable)
    }

    fn evidence() -> GpuEvidence {
        GpuEvidence::from_parts("HOPPER", b"PEM", b"report")
    }

    #[test]
    fn hardware_is_claimed_only_when_every_readable_gpu_carries_evidence() {
        let (claims, readable) = claims_of("fault-gpu-lost");
        assert!(
            readable.iter().any(|(_, ok)| !ok),
            "the fixture has a lost GPU"
        );
        let all_readable = |claims: &mut AttestationClaims| {
            Collected {
                gpus: readable
                    .iter()
                    .map(|(i, ok)| {
                        let r = if *ok {
                            Ok(evidence())
                        } else {
                            Err(Missing::GpuNotReadable { status: "lost" })
                        };
                        (*i, r)
                    })
                    .collect(),
            }
            .apply(claims);
        };
        let mut with_all = claims.clone();
        all_readable(&mut with_all);
        assert_eq!(with_all.evidence_tier, EvidenceTier::Hardware);
        let lost = readable.iter().find(|(_, ok)| !ok).unwrap().0;
        let absent = &with_all.submods[&claims::submod_name(lost)].absent["gpu_evidence"];
        assert_eq!(absent.reason, claims::AbsentReason::GpuLost);
        assert!(
            absent.detail.starts_with("gpu_not_readable: "),
            "{}",
            absent.detail
        );

        let mut one_short = claims.clone();
        let first_ok = readable.iter().find(|(_, ok)| *ok).unwrap().0;
        Collected {
            gpus: readable
                .iter()
                .map(|(i, _)| {
                    let r = if *i == first_ok {
                        Err(Missing::CcOff)
                    } else {
                        Ok(evidence())
                    };
                    (*i, r)
                })
                .collect(),
        }
        .apply(&mut one_short);
        assert_eq!(one_short.evidence_tier, claims.evidence_tier);
        assert_ne!(one_short.evidence_tier, EvidenceTier::Hardware);

        let mut none = claims.clone();
        Collected::default().apply(&mut none);
        assert_eq!(
            none.evidence_tier, claims.evidence_tier,
            "nothing collected"
        );
    }

    #[test]
    fn reasons_have_codes_and_claims_absences() {
        let timed_out = CallError::TimedOut.into_missing(REPORT_CALL, CallPolicy::default(), 3);
        assert_eq!(timed_out.code(), "timed_out");
        let absence = timed_out.absence();
        assert_eq!(absence.reason, claims::AbsentReason::Error);
        assert!(
            absence.detail.starts_with("timed_out: "),
            "{}",
            absence.detail
        );
        assert!(
            absence.detail.contains("5000 ms, 3 attempt(s)"),
            "{}",
            absence.detail
        );
        let old = CallError::Call(CcCallError::Nvml(NvmlError::FailedToLoadSymbol("x".into())))
            .into_missing(CERTIFICATE_CALL, CallPolicy::default(), 1);
        assert_eq!(old.code(), "driver_too_old");
        assert_eq!(old.absence().reason, claims::AbsentReason::SymbolMissing);
        assert_eq!(
            Missing::CcOff.absence().reason,
            claims::AbsentReason::NotSupported
        );
        assert_eq!(evidence_arch(Some("Hopper")), Ok("HOPPER"));
        assert_eq!(evidence_arch(Some("Blackwell")), Ok("BLACKWELL"));
        assert_eq!(
            evidence_arch(Some("Ampere")).map_err(|e| e.code()),
            Err("architecture_not_supported")
        );
        assert_eq!(trim_nuls(b"PEM\n\0\0".to_vec()), b"PEM\n");
    }
}
