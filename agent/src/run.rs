//! `run`: the agent as a service. Pushes on a schedule (`interval_s` ± 10 %), backs off
//! exponentially (capped at `backoff_max_s`) while the verifier is unreachable, keeps signed
//! attestations it could not deliver in NODE/queue/, re-measures the GPUs on a schedule of
//! its own (`measure_interval_s` ± 10 %) and stops on SIGTERM or SIGINT.
//!
//! Re-measurement: `attest` claims evidence tier `measured` only while every GPU's
//! measurement is at most 30 days old, so a service that only pushes would fall to
//! `declared` a month after the last `measure --dir`. Measuring happens between pushes, on
//! the same thread, so it never overlaps an attestation. A busy GPU or a failed measurement
//! keeps the previous one in NODE/measurements.json and is tried again `measure_retry_s`
//! later; the daemon carries on pushing meanwhile.
//!
//! The queue: a token can only be signed over a challenge the verifier issued, and that nonce
//! expires (`expires_at`, `nonce_ttl_s` on the verifier). A queued token is therefore delivered
//! on reconnect only while its nonce is still live; one whose nonce has expired is dropped with
//! a log line instead of being posted for a certain `nonce_expired`, and the agent attests
//! afresh over a new challenge. The verifier then holds the node's current state, not a
//! stale one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tppguard_proto::claims::measurement::Measurement;
use tppguard_proto::identity::NodeId;
use tppguard_proto::text::Escaped;

use crate::cli::{RunArgs, SourceArgs};
use crate::gate::{Gatekeeper, GatingConfig};
use crate::measure::run::Cache;
use crate::push::{Client, ClientOptions, PushError, Verdict};
use crate::{EXIT_OK, MeasurePlan, attest_token, measure, sign};

/// `run`'s configuration file (TOML). Relative paths are read from the file's folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The verifier's base URL.
    pub verifier: String,
    /// The node folder (node.key, node-chain.pem, measurements.json, queue/).
    pub dir: PathBuf,
    /// The site id (`tppguard.site`).
    #[serde(default)]
    pub site: Option<String>,
    /// Seconds between pushes (± 10 % jitter).
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// The longest wait between retries while the verifier is unreachable.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_s: u64,
    /// A simulated driver fixture instead of the real driver.
    #[serde(default)]
    pub simulate: Option<String>,
    /// NVML library file instead of the installed driver's.
    #[serde(default)]
    pub nvml_lib: Option<PathBuf>,
    /// PEM CA certificates for an `https://` verifier.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The verifier's result public key (`verifier-result.pub.pem`): answers whose EAR does
    /// not verify under it are refused. Unset: answers are believed unverified (a warning).
    #[serde(default)]
    pub verifier_result_key: Option<PathBuf>,
    /// A file holding the node's bearer token, sent on every request.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How many undelivered attestations NODE/queue/ keeps (the oldest go first).
    #[serde(default = "default_queue_max")]
    pub queue_max: usize,
    /// Measure the GPUs on a schedule (off: attest with whatever NODE/measurements.json
    /// holds, e.g. kept fresh by `measure --dir` from a timer).
    #[serde(default = "default_measure")]
    pub measure: bool,
    /// Seconds between measurements of a GPU (± 10 %).
    #[serde(default = "default_measure_interval")]
    pub measure_interval_s: u64,
    /// Seconds before trying again after a GPU was busy or could not be measured (± 10 %).
    #[serde(default = "default_measure_retry")]
    pub measure_retry_s: u64,
    /// A folder holding cuBLAS and cuBLASLt when the loader does not find them.
    #[serde(default)]
    pub cuda_lib_dir: Option<PathBuf>,
    /// `[gating]`: act on the verifier's leases ([`crate::gate`]). Absent: gating off, and no
    /// gating report in the attestations.
    #[serde(default)]
    pub gating: Option<GatingConfig>,
}

fn default_interval() -> u64 {
    300
}
fn default_backoff_max() -> u64 {
    600
}
fn default_queue_max() -> usize {
    32
}
fn default_measure() -> bool {
    true
}
fn default_measure_interval() -> u64 {
    7 * 86_400
}
fn default_measure_retry() -> u64 {
    900
}

/// The shortest `measure_interval_s`: a measurement loads every GPU for a few seconds and
/// refuses busy ones, so hourly is already more than the 30-day freshness needs.
pub const MIN_MEASURE_INTERVAL_S: u64 = 3_600;
/// The longest `measure_interval_s`: 25 days, so that with +10 % jitter and a push interval
/// of up to a day before the check a measurement is renewed before `attest` stops counting
/// it (`DEFAULT_MEASUREMENT_MAX_AGE_DAYS`, 30).
pub const MAX_MEASURE_INTERVAL_S: u64 = 25 * 86_400;

impl RunConfig {
    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let mut config: Self = toml::from_str(&text)
            .with_context(|| format!("the configuration {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.dir);
        for p in [
            config.ca_file.as_mut(),
            config.verifier_result_key.as_mut(),
            config.token_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        if let Some(p) = config.nvml_lib.as_mut() {
            resolve(p);
        }
        if let Some(p) = config.cuda_lib_dir.as_mut() {
            resolve(p);
        }
        if config.simulate.is_some() && config.nvml_lib.is_some() {
            anyhow::bail!(
                "{}: simulate and nvml_lib exclude each other",
                path.display()
            );
        }
        for (key, value, range) in [
            ("interval_s", config.interval_s, 1..=86_400),
            ("backoff_max_s", config.backoff_max_s, 1..=86_400),
            ("queue_max", config.queue_max as u64, 1..=10_000),
            (
                "measure_interval_s",
                config.measure_interval_s,
                MIN_MEASURE_INTERVAL_S..=MAX_MEASURE_INTERVAL_S,
            ),
            ("measure_retry_s", config.measure_retry_s, 60..=86_400),
        ] {
            if !range.contains(&value) {
                // 0 is no way to turn measuring off: say which key does.
                let hint = if key.starts_with("measure_") {
                    "; to stop measuring, set measure = false"
                } else {
                    ""
                };
                anyhow::bail!(
                    "{}: {key} = {value} is out of range ({} to {}){hint}",
                    path.display(),
                    range.start(),
                    range.end()
                );
            }
        }
        if let Some(gating) = &config.gating {
            check_gating(path, gating, config.verifier_result_key.is_some())?;
        }
        if config.measure_retry_s > config.measure_interval_s {
            anyhow::bail!(
                "{}: measure_retry_s = {} is longer than measure_interval_s = {}; a retry \
                 after a busy GPU should come sooner than the next regular measurement, so \
                 lower measure_retry_s",
                path.display(),
                config.measure_retry_s,
                config.measure_interval_s
            );
        }
        Ok(config)
    }

    /// Where the GPUs are read from.
    pub fn source(&self) -> SourceArgs {
        SourceArgs {
            simulate: self.simulate.clone(),
            nvml_lib: self.nvml_lib.clone(),
        }
    }
}

/// The longest `first_lease_grace_s`: seven days, the longest lease grace.
pub const MAX_FIRST_LEASE_GRACE_S: u64 = tppguard_proto::lease::LeaseTerms::MAX_S;

/// Checks `[gating]`: `enforce` acts only on verified leases, so it needs the result key.
pub fn check_gating(path: &Path, gating: &GatingConfig, result_key: bool) -> anyhow::Result<()> {
    if gating.mode == tppguard_proto::lease::GatingMode::Enforce && !result_key {
        anyhow::bail!(
            "{}: [gating] mode = \"enforce\" needs verifier_result_key: a lease is acted on \
             only once it verifies under the verifier's result key, and without one every \
             lease would be refused. Copy verifier-result.pub.pem from the verifier's folder \
             and set verifier_result_key = \"verifier-result.pub.pem\", or use mode = \
             \"observe\" meanwhile",
            path.display()
        );
    }
    if gating.first_lease_grace_s > MAX_FIRST_LEASE_GRACE_S {
        anyhow::bail!(
            "{}: [gating] first_lease_grace_s = {} is out of range (0 to {MAX_FIRST_LEASE_GRACE_S})",
            path.display(),
            gating.first_lease_grace_s
        );
    }
    Ok(())
}

/// `interval` scaled by a random factor in [0.9, 1.1].
pub fn jittered(interval: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let unit = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    interval.mul_f64(0.9 + 0.2 * unit)
}

/// The wait after `failures` consecutive failures: 1 s, 2 s, 4 s, ... capped at `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    Duration::from_secs(1u64 << exp).min(max)
}

/// Whether to measure at `now` (Unix seconds), given the last measurement's start `last`:
/// never measured, measured `interval` or longer ago, or stamped in the future (the clock
/// went back, and `attest` does not count such a measurement); but not before `retry_at`,
/// which a busy GPU or a failure sets.
pub fn measurement_due(
    last: Option<i64>,
    now: i64,
    interval: Duration,
    retry_at: Option<i64>,
) -> bool {
    if retry_at.is_some_and(|at| now < at) {
        return false;
    }
    let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
    last.is_none_or(|at| at > now || now.saturating_sub(at) >= interval)
}

/// The oldest measurement's start among `gpus` (UUIDs), or among every cached GPU while no
/// inventory has been taken; `None` when one of `gpus` has no measurement, or there is none.
pub fn oldest_measurement(
    cache: &BTreeMap<String, Measurement>,
    gpus: Option<&[String]>,
) -> Option<i64> {
    match gpus {
        Some(gpus) => gpus
            .iter()
            .map(|uuid| cache.get(uuid).map(|m| m.started_at))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min(),
        None => cache.values().map(|m| m.started_at).min(),
    }
}

/// What a GPU left unmeasured means for the attestations, for the warning.
fn unmeasured_consequence(last: Option<i64>, now: i64) -> String {
    let max_age_s =
        i64::from(tppguard_proto::ruleset::DEFAULT_MEASUREMENT_MAX_AGE_DAYS).saturating_mul(86_400);
    match last {
        Some(at) if at <= now && now.saturating_sub(at) <= max_age_s => {
            let left_h = max_age_s.saturating_sub(now.saturating_sub(at)) / 3_600;
            format!(
                "the previous measurement stays in use for {left_h} h more, after which \
                 attestations fall to evidence tier declared"
            )
        }
        _ => "there is no measurement attest can count, so attestations stay at evidence \
              tier declared"
            .to_owned(),
    }
}

/// The re-measurement schedule between pushes.
#[derive(Debug)]
struct Schedule {
    interval: Duration,
    retry: Duration,
    /// This cycle's interval: `interval` jittered, drawn again after each complete pass.
    due_after: Duration,
    /// No pass before this (Unix seconds), after a busy GPU or a failure.
    retry_at: Option<i64>,
}

/// How a measurement pass ended.
enum Pass {
    /// Every GPU that was due is measured and saved.
    Complete,
    /// Something is left (a busy GPU, a failure, a stop): try again after `measure_retry_s`.
    Incomplete,
}

impl Schedule {
    fn new(config: &RunConfig) -> Self {
        let interval = Duration::from_secs(config.measure_interval_s);
        Self {
            interval,
            retry: Duration::from_secs(config.measure_retry_s),
            due_after: jittered(interval),
            retry_at: None,
        }
    }

    /// Measures the GPUs that are due, if any; `gpus` are the latest inventory's UUIDs.
    fn tick(
        &mut self,
        config: &RunConfig,
        gpus: &mut Option<Vec<String>>,
        shutdown: &mut Shutdown,
    ) {
        let now = sign::now().unwrap_or(i64::MAX);
        // An unreadable cache counts as empty here; the pass says what is wrong with it.
        let cached = Cache::load(&config.dir).map(|c| c.gpus).unwrap_or_default();
        let last = oldest_measurement(&cached, gpus.as_deref());
        if !measurement_due(last, now, self.due_after, self.retry_at) {
            return;
        }
        match measure_pass(config, self.due_after, gpus, shutdown) {
            Pass::Complete => {
                self.retry_at = None;
                self.due_after = jittered(self.interval);
            }
            Pass::Incomplete => {
                let wait = jittered(self.retry);
                self.retry_at =
                    Some(now.saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX)));
            }
        }
    }
}

/// One measurement pass, as `measure --dir` runs it but never forced onto a busy GPU: each
/// GPU whose measurement is `due_after` old or missing, then NODE/measurements.json written
/// atomically. Records the inventory's UUIDs in `gpus`.
fn measure_pass(
    config: &RunConfig,
    due_after: Duration,
    gpus: &mut Option<Vec<String>>,
    shutdown: &mut Shutdown,
) -> Pass {
    let retry_in_s = config.measure_retry_s;
    let session = match crate::open_session(&config.source()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %Escaped(&format!("{e:#}")), retry_in_s, "cannot measure: NVML did not start; measurements stay as they are and are tried again later");
            return Pass::Incomplete;
        }
    };
    let prepared = crate::simulated_fixture(&session).and_then(|fixture| {
        let inventory = crate::inventory::collect(&session.nvml)?;
        let cache = Cache::load(&config.dir)?;
        Ok((fixture, inventory.gpus, cache))
    });
    let (fixture, found, mut cache) = match prepared {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %Escaped(&format!("{e:#}")), retry_in_s, "cannot measure; measurements stay as they are and are tried again later");
            return Pass::Incomplete;
        }
    };
    *gpus = Some(found.iter().filter_map(|g| g.uuid.clone()).collect());
    let plan = MeasurePlan {
        precisions: &measure::DEFAULT_PRECISIONS,
        params: measure::Params::default(),
        force: false,
        fixture_json: fixture.as_ref().map(|(_, json)| json.as_str()),
        cuda_lib_dir: config.cuda_lib_dir.as_deref(),
        simulated_node: session.simulated,
    };
    let now = sign::now().unwrap_or(i64::MAX);
    let mut pass = if found.is_empty() {
        tracing::warn!(retry_in_s, "no GPU to measure: NVML lists none");
        Pass::Incomplete
    } else {
        Pass::Complete
    };
    let mut measured = 0_usize;
    for gpu in &found {
        let Some(uuid) = gpu.uuid.as_deref() else {
            // attest files measurements by UUID: one without could never be used.
            tracing::warn!(
                gpu = gpu.index,
                retry_in_s,
                "not measuring a GPU NVML gives no UUID for: attest could not use its measurement, so attestations stay at evidence tier declared"
            );
            pass = Pass::Incomplete;
            continue;
        };
        let last = cache.gpus.get(uuid).map(|m| m.started_at);
        if !measurement_due(last, now, due_after, None) {
            continue;
        }
        // A GPU takes a few seconds; a stop waits for the one under way, no longer.
        if shutdown.requested() {
            pass = Pass::Incomplete;
            break;
        }
        let outcome = match crate::measure_one(&session.nvml, gpu, &plan, &mut |_, _| {}) {
            Ok(o) => o,
            Err(e) => {
                let oldest = oldest_measurement(&cache.gpus, gpus.as_deref());
                tracing::warn!(error = %Escaped(&format!("{e:#}")), retry_in_s, "cannot measure this node's GPUs (measure = false stops trying); {}", unmeasured_consequence(oldest, now));
                pass = Pass::Incomplete;
                break;
            }
        };
        match &outcome.measurement {
            Some(m) => {
                let median_tops = outcome
                    .results
                    .iter()
                    .map(|r| format!("{}={:.1}", r.precision, r.tops_median))
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::info!(
                    gpu = gpu.index,
                    uuid,
                    model = outcome.model.unwrap_or("unlisted"),
                    median_tops = %median_tops,
                    measured_tpp = %outcome.measured_tpp.map(|t| t.to_string()).unwrap_or_else(|| "-".to_owned()),
                    duration_ms = m.duration_ms,
                    "GPU measured"
                );
                cache.insert(uuid.to_owned(), m.clone());
                measured += 1;
            }
            None if outcome.status == "busy" => {
                tracing::warn!(
                    gpu = gpu.index,
                    uuid,
                    compute_processes = ?outcome.compute_processes,
                    retry_in_s,
                    "GPU busy, not measured: other compute processes run on it, which a \
                     measurement would disturb; {}",
                    unmeasured_consequence(last, now)
                );
                pass = Pass::Incomplete;
            }
            None => {
                tracing::warn!(
                    gpu = gpu.index,
                    uuid,
                    error = outcome.error.as_deref().unwrap_or("-"),
                    retry_in_s,
                    "GPU could not be measured; {}",
                    unmeasured_consequence(last, now)
                );
                pass = Pass::Incomplete;
            }
        }
    }
    if measured > 0 {
        match cache.save(&config.dir) {
            Ok(path) => {
                tracing::debug!(file = %path.display(), gpus = measured, "measurements saved")
            }
            Err(e) => {
                tracing::error!(error = %Escaped(&e.to_string()), retry_in_s, "measurements taken but not saved: attest keeps using the old ones; check the node folder's space and permissions");
                pass = Pass::Incomplete;
            }
        }
    }
    pass
}

/// NODE/queue/: signed attestations not yet delivered, one file per token named
/// `SEQUENCE-EXPIRES.jws` (sequence: nanoseconds since the epoch, zero-padded, so the names
/// sort in the order they were queued), written atomically (a temporary file renamed).
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    max: usize,
}

/// One queued attestation.
#[derive(Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its file.
    pub path: PathBuf,
    /// When its nonce expires (Unix seconds).
    pub expires_at: i64,
}

impl Queue {
    /// The queue in `node`/queue, at most `max` tokens.
    pub fn new(node: &Path, max: usize) -> Self {
        Self {
            dir: node.join("queue"),
            max: max.max(1),
        }
    }

    /// Adds `token`, whose nonce expires at `expires_at`; drops the oldest beyond the bound.
    pub fn add(&self, token: &str, expires_at: i64) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = loop {
            let path = self
                .dir
                .join(format!("{seq:024}-{:012}.jws", expires_at.max(0)));
            if !path.exists() {
                break path;
            }
            seq += 1;
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("writing in {}", self.dir.display()))?;
        std::io::Write::write_all(&mut tmp, format!("{}\n", token.trim()).as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        let entries = self.entries()?;
        for old in entries.iter().take(entries.len().saturating_sub(self.max)) {
            tracing::warn!(file = %old.path.display(), max = self.max, "queue full: dropping the oldest undelivered attestation");
            std::fs::remove_file(&old.path)?;
        }
        Ok(path)
    }

    /// The queued tokens, oldest first.
    pub fn entries(&self) -> anyhow::Result<Vec<Queued>> {
        let read = match std::fs::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut entries = Vec::new();
        for entry in read {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".jws") else {
                continue;
            };
            let Some(expires_at) = stem
                .split_once('-')
                .and_then(|(_, e)| e.parse::<i64>().ok())
            else {
                continue;
            };
            entries.push(Queued { path, expires_at });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }
}

/// Waits for SIGTERM or SIGINT on a helper thread; [`Shutdown::wait`] sleeps until either
/// the time is up or a signal came.
struct Shutdown {
    rx: mpsc::Receiver<()>,
    requested: bool,
}

impl Shutdown {
    fn install() -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                use tokio::signal::unix::{SignalKind, signal};
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let (mut term, mut int) = match (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) {
                        (Ok(t), Ok(i)) => (t, i),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    tracing::info!(signal = name, "stopping");
                    let _ = tx.send(());
                });
            })
            .context("starting the signal thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                rx,
                requested: false,
            }),
            Ok(Err(e)) => anyhow::bail!("installing the SIGTERM/SIGINT handlers: {e}"),
            Err(_) => anyhow::bail!("installing the SIGTERM/SIGINT handlers failed"),
        }
    }

    /// Whether a signal came (without waiting).
    fn requested(&mut self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// Sleeps up to `d`; true when a signal came.
    fn wait(&mut self, d: Duration) -> bool {
        if !self.requested {
            self.requested = !matches!(
                self.rx.recv_timeout(d),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
        }
        self.requested
    }
}

/// How a round ended.
enum Round {
    /// Delivered: the verifier's answer.
    Delivered(Box<Verdict>),
    /// The verifier is unreachable or failing: back off.
    Unreachable(PushError),
    /// Something else failed (inventory, signing, a rejection): try again next interval.
    Failed(anyhow::Error),
}

/// One round: a challenge, the queue's live tokens, a fresh attestation. Records the
/// inventory's GPU UUIDs in `gpus`, for the measurement schedule.
fn round(
    config: &RunConfig,
    client: &Client,
    node: NodeId,
    queue: &Queue,
    gpus: &mut Option<Vec<String>>,
    shutdown: &mut Shutdown,
) -> Round {
    let challenge = match client.challenge() {
        Ok(c) => c,
        Err(e) if e.is_transient() => return Round::Unreachable(e),
        Err(e) => return Round::Failed(e.into()),
    };
    // Reachable again: the queue first, in order.
    match queue.entries() {
        Ok(entries) => {
            let now = sign::now().unwrap_or(i64::MAX);
            for q in entries {
                if shutdown.requested() {
                    return Round::Failed(anyhow::anyhow!("stopping"));
                }
                if q.expires_at <= now {
                    tracing::info!(file = %q.path.display(), expires_at = q.expires_at, "dropping a queued attestation: its nonce has expired; attesting afresh instead");
                    let _ = std::fs::remove_file(&q.path);
                    continue;
                }
                let token = match std::fs::read_to_string(&q.path) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(file = %q.path.display(), error = %Escaped(&e.to_string()), "unreadable queued attestation: dropped");
                        let _ = std::fs::remove_file(&q.path);
                        continue;
                    }
                };
                // Its nonce is inside the token, which the answer's token hash binds.
                match client.post_attestation(&token, node, None) {
                    Ok(v) => {
                        tracing::info!(file = %q.path.display(), status = %Escaped(&v.status), subject = %Escaped(&v.subject), node = %Escaped(v.short_node()), "queued attestation delivered");
                        let _ = std::fs::remove_file(&q.path);
                    }
                    Err(e) if e.is_transient() => return Round::Unreachable(e),
                    Err(e) => {
                        tracing::warn!(file = %q.path.display(), error = %Escaped(&e.to_string()), "queued attestation rejected: dropped");
                        let _ = std::fs::remove_file(&q.path);
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %Escaped(&format!("{e:#}")), "cannot read the queue"),
    }
    let attested = match attest_token(
        &config.dir,
        &config.source(),
        &challenge.nonce,
        config.site.as_deref(),
    ) {
        Ok(a) => a,
        Err(e) => return Round::Failed(e),
    };
    if attested.claims.simulated {
        tracing::warn!(
            library = %Escaped(&attested.report.source.library),
            "SIMULATED NODE: the NVML library is tppguard's fake; no real GPU was read, and the \
             attestation says so (tppguard.simulated)"
        );
    }
    *gpus = Some(
        attested
            .report
            .gpus
            .iter()
            .filter_map(|g| g.gpu.uuid.clone())
            .collect(),
    );
    match client.post_attestation(&attested.token, node, Some(&challenge.nonce)) {
        Ok(v) => {
            for f in &v.findings {
                // The verifier's words are outside text: escaped for the journal and terminals.
                tracing::info!(
                    severity = %Escaped(f["severity"].as_str().unwrap_or("-")),
                    code = %Escaped(f["code"].as_str().unwrap_or("-")),
                    "{}",
                    Escaped(f["sentence"].as_str().unwrap_or(""))
                );
            }
            Round::Delivered(Box::new(v))
        }
        Err(e) if e.is_transient() => {
            match queue.add(&attested.token, challenge.expires_at) {
                Ok(path) => {
                    tracing::warn!(file = %path.display(), "attestation not delivered: queued")
                }
                Err(q) => {
                    tracing::error!(error = %Escaped(&format!("{q:#}")), "attestation not delivered and could not be queued")
                }
            }
            Round::Unreachable(e)
        }
        Err(e) => Round::Failed(e.into()),
    }
}

/// Gating for `run`, when `[gating]` is configured; with it off, a report left by an earlier
/// gating run is removed so that no attestation carries a stale one.
fn open_gate(
    config: &RunConfig,
    options: &ClientOptions,
    node: NodeId,
) -> anyhow::Result<Option<Gatekeeper>> {
    let Some(gating) = &config.gating else {
        let stale = config.dir.join(crate::gate::REPORT_FILE);
        if stale.exists() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("removing {}", stale.display()))?;
            tracing::info!(file = %stale.display(), "gating is off: removed the gating report an earlier run left, so no attestation carries it");
        }
        return Ok(None);
    };
    let now = sign::now().map_err(|e| anyhow::anyhow!(e.render()))?;
    let gate = Gatekeeper::open(
        &config.dir,
        gating.clone(),
        options.result_key.clone(),
        node,
        now,
    )?;
    if options.result_key.is_none() {
        tracing::warn!(
            "gating in observe mode without verifier_result_key: no lease can be verified, so none is acted on; the report says so (state no_lease_yet, then lapsed)"
        );
    }
    tracing::info!(mode = gating.mode.as_str(), state = ?gate.state(now), lease = gate.lease().is_some(), kubernetes = gating.kubernetes.is_some(), "gating");
    Ok(Some(gate))
}

/// Evaluates gating now through NVML; a failure is logged, and tried again at the next wake.
fn evaluate_gate(config: &RunConfig, gate: &mut Gatekeeper) {
    // A clock that cannot be read would make every lease look lapsed: nothing is judged.
    let Some(now) = gating_now(sign::now()) else {
        return;
    };
    let evaluated = crate::open_session(&config.source()).and_then(|session| {
        gate.evaluate(
            &mut crate::nvml::control::NvmlControl::new(&session.nvml),
            now,
        )
    });
    match evaluated {
        Ok(report) => tracing::debug!(
            state = ?report.state,
            gated = report.gpus.iter().filter(|g| g.gate).count(),
            not_held = report.not_held().count(),
            "gating evaluated"
        ),
        Err(e) => {
            tracing::error!(error = %Escaped(&format!("{e:#}")), "gating could not be evaluated: the GPUs stay as they are; tried again at the next wake-up")
        }
    }
}

/// The clock for gating from `clock` ([`sign::now`]); `None` (logged) when it cannot be read,
/// so that nothing is judged and the GPUs stay as they are (a stand-in time such as
/// `i64::MAX` would make every lease look lapsed, and un-gate under `fail_open`).
fn gating_now(clock: Result<i64, sign::SignError>) -> Option<i64> {
    match clock {
        Ok(now) => Some(now),
        Err(e) => {
            tracing::error!(error = %Escaped(&e.render()), "the clock cannot be read: gating is not evaluated, the GPUs stay as they are; tried again at the next wake-up");
            None
        }
    }
}

/// Takes the lease of a delivered answer (bound to the token just sent) and acts on it.
fn take_lease(config: &RunConfig, gate: &mut Gatekeeper, verdict: &Verdict) {
    let Some(lease) = &verdict.lease else {
        tracing::debug!("the verifier's answer carries no lease");
        return;
    };
    let Some(now) = gating_now(sign::now()) else {
        return;
    };
    // `token_sha256` was checked to be the token sent (push::Client::post_attestation).
    if gate.offer(lease, Some(&verdict.token_sha256), now).is_ok() {
        evaluate_gate(config, gate);
    }
}

/// `tppguard-agent run`.
pub fn run_command(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = RunConfig::load(&args.config)?;
    // The Kubernetes node name may come from the environment (the DaemonSet's NODE_NAME):
    // checked here, at start, so a wrong key stops the start rather than a gating cycle.
    if let Some(kube) = config.gating.as_ref().and_then(|g| g.kubernetes.as_ref()) {
        kube.check(&|name: &str| std::env::var(name).ok())
            .map_err(|e| anyhow::anyhow!("{}: [gating.kubernetes]: {e}", args.config.display()))?;
    }
    // Credentials and site are checked once at start: a node that cannot sign is a
    // configuration problem (exit 2), not something to retry.
    let credentials =
        sign::NodeCredentials::load(&config.dir).map_err(|e| anyhow::anyhow!(e.render()))?;
    let node = crate::push::node_id(&credentials)?;
    let options = ClientOptions::load(
        config.ca_file.as_deref(),
        config.token_file.as_deref(),
        config.verifier_result_key.as_deref(),
        &credentials,
    )?;
    let client = Client::new(&config.verifier, &options)?;
    if let Some(site) = &config.site {
        sign::parse_site(site).map_err(|e| anyhow::anyhow!(e.render()))?;
    }
    let queue = Queue::new(&config.dir, config.queue_max);
    let mut shutdown = Shutdown::install()?;
    let interval = Duration::from_secs(config.interval_s);
    let backoff_max = Duration::from_secs(config.backoff_max_s);
    tracing::info!(verifier = client.base(), dir = %config.dir.display(), result_key_pinned = client.pins_result_key(), bearer_token = config.token_file.is_some(), interval_s = config.interval_s, measure = config.measure, measure_interval_s = config.measure_interval_s, "running");
    let mut schedule = config.measure.then(|| Schedule::new(&config));
    let mut gate = open_gate(&config, &options, node)?;
    // Unknown until the first inventory: the schedule then looks at every cached GPU.
    let mut gpus: Option<Vec<String>> = None;
    let mut failures: u32 = 0;
    let mut next_push = std::time::Instant::now();
    while !shutdown.requested() {
        // Between pushes, on this thread: a measurement never overlaps an attestation.
        if let Some(schedule) = schedule.as_mut() {
            schedule.tick(&config, &mut gpus, &mut shutdown);
            if shutdown.requested() {
                break;
            }
        }
        // Before each round, so the attestation carries a fresh report, and at each wake-up,
        // so an expiry gates on time while the verifier is down.
        if let Some(gate) = gate.as_mut() {
            evaluate_gate(&config, gate);
        }
        if std::time::Instant::now() >= next_push {
            let wait = match round(&config, &client, node, &queue, &mut gpus, &mut shutdown) {
                Round::Delivered(v) => {
                    if failures > 0 {
                        tracing::info!(after = failures, "verifier reachable again");
                    }
                    failures = 0;
                    tracing::info!(status = %Escaped(&v.status), subject = %Escaped(&v.subject), node = %Escaped(v.short_node()), "attestation delivered");
                    let mut wait = jittered(interval);
                    if let Some(gate) = gate.as_mut() {
                        take_lease(&config, gate, &v);
                        // Renew before the lease runs out, if that comes before the interval.
                        let now = sign::now().unwrap_or(i64::MAX);
                        if let Some(renew_at) = gate.renew_at().filter(|at| *at > now) {
                            let until = u64::try_from(renew_at.saturating_sub(now)).unwrap_or(0);
                            wait = wait.min(Duration::from_secs(until));
                        }
                    }
                    wait
                }
                Round::Unreachable(e) => {
                    failures = failures.saturating_add(1);
                    let wait = jittered(backoff(failures, backoff_max));
                    tracing::warn!(error = %Escaped(&e.to_string()), failures, retry_in_s = wait.as_secs_f64(), "verifier unavailable");
                    wait
                }
                Round::Failed(e) => {
                    if shutdown.requested() {
                        break;
                    }
                    failures = 0;
                    tracing::error!(error = %Escaped(&format!("{e:#}")), "push failed");
                    jittered(interval)
                }
            };
            next_push = std::time::Instant::now() + wait;
        }
        let mut wait = next_push.saturating_duration_since(std::time::Instant::now());
        if let Some(gate) = &gate {
            let now = sign::now().unwrap_or(i64::MAX);
            if let Some(at) = gate.next_change(now) {
                let until = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
                wait = wait.min(Duration::from_secs(until));
            }
        }
        if shutdown.wait(wait) {
            break;
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::from(EXIT_OK))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gating_is_not_evaluated_without_a_clock() {
        assert_eq!(super::gating_now(Err(crate::sign::SignError::Clock)), None);
        assert_eq!(super::gating_now(Ok(1_800_000_000)), Some(1_800_000_000));
    }

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(30);
        let got: Vec<u64> = (1..=7).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(u32::MAX, max), max);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(100);
        for _ in 0..200 {
            let d = jittered(base);
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
    }

    #[test]
    fn queue_keeps_order_and_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path(), 3);
        assert!(q.entries().unwrap().is_empty());
        for i in 0..5 {
            q.add(&format!("token-{i}"), 1000 + i).unwrap();
        }
        let entries = q.entries().unwrap();
        assert_eq!(entries.len(), 3);
        let tokens: Vec<String> = entries
            .iter()
            .map(|e| std::fs::read_to_string(&e.path).unwrap().trim().to_owned())
            .collect();
        assert_eq!(tokens, ["token-2", "token-3", "token-4"]);
        assert_eq!(
            entries.iter().map(|e| e.expires_at).collect::<Vec<_>>(),
            [1002, 1003, 1004]
        );
        // No temporary files are left behind, and stray files are ignored.
        std::fs::write(dir.path().join("queue").join("notes.txt"), "x").unwrap();
        assert_eq!(q.entries().unwrap().len(), 3);
        assert_eq!(
            std::fs::read_dir(dir.path().join("queue")).unwrap().count(),
            4
        );
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn config_gating_section() {
        let (_dir, path) = write_config("verifier = \"http://v\"\ndir = \"node\"\n");
        assert!(
            RunConfig::load(&path).unwrap().gating.is_none(),
            "off by default"
        );
        let (_dir, path) = write_config(
            "verifier = \"http://v\"\ndir = \"node\"\nverifier_result_key = \"r.pem\"\n\
             [gating]\nmode = \"enforce\"\nwithout_lease = \"fail_closed\"\n\
             first_lease_grace_s = 60\n[gating.kubernetes]\nnode_name = \"n1\"\n",
        );
        let g = RunConfig::load(&path).unwrap().gating.unwrap();
        assert_eq!(g.mode, tppguard_proto::lease::GatingMode::Enforce);
        assert_eq!(g.without_lease, tppguard_proto::lease::OnExpiry::FailClosed);
        assert_eq!(g.first_lease_grace_s, 60);
        assert_eq!(g.kubernetes.unwrap().node_name, "n1");
        let (_dir, path) =
            write_config("verifier = \"http://v\"\ndir = \"node\"\n[gating]\nmode = \"observe\"\n");
        let g = RunConfig::load(&path).unwrap().gating.unwrap();
        assert_eq!(
            (g.first_lease_grace_s, g.without_lease),
            (3600, tppguard_proto::lease::OnExpiry::FailOpen)
        );
        for (bad, says) in [
            (
                "[gating]\nmode = \"enforce\"\n",
                "needs verifier_result_key",
            ),
            ("[gating]\nmode = \"block\"\n", "mode"),
            ("[gating]\nmode = \"observe\"\ncolour = 1\n", "colour"),
            (
                "[gating]\nmode = \"observe\"\nfirst_lease_grace_s = 999999999\n",
                "out of range",
            ),
        ] {
            let (_dir, path) =
                write_config(&format!("verifier = \"http://v\"\ndir = \"node\"\n{bad}"));
            let err = format!("{:#}", RunConfig::load(&path).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn config_defaults_and_relative_paths() {
        let (dir, path) =
            write_config("verifier = \"http://v:8080\"\ndir = \"node\"\nca_file = \"ca.pem\"\n");
        let c = RunConfig::load(&path).unwrap();
        assert_eq!(c.dir, dir.path().join("node"));
        assert_eq!(c.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!((c.interval_s, c.backoff_max_s, c.queue_max), (300, 600, 32));
        assert!(c.simulate.is_none() && c.site.is_none());
        assert!(c.measure);
        assert_eq!((c.measure_interval_s, c.measure_retry_s), (604_800, 900));
        assert!(c.cuda_lib_dir.is_none());
        assert!(c.token_file.is_none() && c.verifier_result_key.is_none());
        let (dir, path) = write_config(
            "verifier = \"https://v\"\ndir = \"node\"\ntoken_file = \"node.token\"\n\
             verifier_result_key = \"/etc/tppguard/verifier-result.pub.pem\"\n",
        );
        let c = RunConfig::load(&path).unwrap();
        assert_eq!(c.token_file, Some(dir.path().join("node.token")));
        assert_eq!(
            c.verifier_result_key,
            Some(PathBuf::from("/etc/tppguard/verifier-result.pub.pem"))
        );
    }

    #[test]
    fn config_measurement_keys() {
        let (dir, path) = write_config(
            "verifier = \"http://v\"\ndir = \"n\"\nmeasure = false\n\
             measure_interval_s = 86400\nmeasure_retry_s = 600\ncuda_lib_dir = \"cuda\"\n",
        );
        let c = RunConfig::load(&path).unwrap();
        assert!(!c.measure);
        assert_eq!((c.measure_interval_s, c.measure_retry_s), (86_400, 600));
        assert_eq!(c.cuda_lib_dir, Some(dir.path().join("cuda")));
        // The bounds themselves are accepted.
        for (interval, retry) in [
            (MIN_MEASURE_INTERVAL_S, 60),
            (MAX_MEASURE_INTERVAL_S, 86_400),
        ] {
            let (_dir, path) = write_config(&format!(
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure_interval_s = {interval}\n\
                 measure_retry_s = {retry}\n"
            ));
            RunConfig::load(&path).unwrap();
        }
    }

    #[test]
    fn the_longest_measure_interval_renews_before_attest_stops_counting() {
        let max_age_s =
            u64::from(tppguard_proto::ruleset::DEFAULT_MEASUREMENT_MAX_AGE_DAYS) * 86_400;
        // Jittered up by 10 %, then noticed at the next push tick (interval_s is at most a day).
        let latest = MAX_MEASURE_INTERVAL_S * 11 / 10 + 86_400;
        assert!(latest < max_age_s, "{latest} >= {max_age_s}");
        assert_eq!(default_measure_interval(), 7 * 86_400);
        assert!(default_measure_interval() <= MAX_MEASURE_INTERVAL_S);
    }

    #[test]
    fn measurement_schedule() {
        let day = Duration::from_secs(86_400);
        let now = 1_800_000_000;
        // Never measured: now.
        assert!(measurement_due(None, now, day, None));
        // Younger than the interval: not yet; at and past it: now.
        assert!(!measurement_due(Some(now - 86_399), now, day, None));
        assert!(measurement_due(Some(now - 86_400), now, day, None));
        assert!(measurement_due(Some(now - 40 * 86_400), now, day, None));
        // Stamped in the future (the clock went back): attest would not count it.
        assert!(measurement_due(Some(now + 10), now, day, None));
        // After a busy GPU: nothing before the retry time, even when due.
        assert!(!measurement_due(None, now, day, Some(now + 1)));
        assert!(measurement_due(None, now, day, Some(now)));
        assert!(!measurement_due(Some(now - 60), now, day, Some(now - 1)));
        // Extremes do not overflow.
        assert!(measurement_due(
            Some(i64::MIN),
            i64::MAX,
            Duration::MAX,
            None
        ));
        assert!(!measurement_due(Some(0), 0, Duration::MAX, None));
    }

    #[test]
    fn the_oldest_measurement_of_the_node() {
        let m = |started_at| Measurement {
            method: tppguard_proto::claims::measurement::MeasurementMethod::Simulated,
            backend: "test".to_owned(),
            started_at,
            duration_ms: 1,
            repeats: 1,
            results: Vec::new(),
            telemetry: tppguard_proto::claims::measurement::Telemetry::default(),
        };
        let cache: BTreeMap<String, Measurement> = [
            ("GPU-a".to_owned(), m(300)),
            ("GPU-b".to_owned(), m(100)),
            ("GPU-gone".to_owned(), m(50)),
        ]
        .into();
        let uuids = |u: &[&str]| u.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Before an inventory: every cached GPU.
        assert_eq!(oldest_measurement(&cache, None), Some(50));
        assert_eq!(oldest_measurement(&BTreeMap::new(), None), None);
        // After one: only the node's GPUs; one never measured makes the node due.
        assert_eq!(
            oldest_measurement(&cache, Some(&uuids(&["GPU-a", "GPU-b"]))),
            Some(100)
        );
        assert_eq!(
            oldest_measurement(&cache, Some(&uuids(&["GPU-a", "GPU-new"]))),
            None
        );
        assert_eq!(oldest_measurement(&cache, Some(&[])), None);
    }

    #[test]
    fn the_warning_says_how_long_the_old_measurement_counts() {
        let now = 1_800_000_000;
        let fresh = unmeasured_consequence(Some(now - 86_400), now);
        assert!(fresh.contains("696 h more"), "{fresh}");
        assert!(fresh.contains("declared"), "{fresh}");
        for last in [None, Some(now - 31 * 86_400), Some(now + 5)] {
            let gone = unmeasured_consequence(last, now);
            assert!(gone.contains("stay at evidence tier declared"), "{gone}");
        }
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_values() {
        for (text, needle) in [
            (
                "verifier = \"http://v\"\ndir = \"n\"\nintervall_s = 5\n",
                "intervall_s",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\ninterval_s = 0\n",
                "interval_s",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nbackoff_max_s = 0\n",
                "backoff_max_s",
            ),
            ("dir = \"n\"\n", "verifier"),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure_interval_s = 0\n",
                "measure = false",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure_interval_s = 2592000\n",
                "measure_interval_s = 2592000 is out of range (3600 to 2160000)",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure_retry_s = 59\n",
                "measure_retry_s",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure_interval_s = 3600\nmeasure_retry_s = 7200\n",
                "lower measure_retry_s",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure = \"yes\"\n",
                "measure",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nmeasure_intervall_s = 3600\n",
                "measure_intervall_s",
            ),
            (
                "verifier = \"http://v\"\ndir = \"n\"\nsimulate = \"dgx-h100\"\nnvml_lib = \"/x\"\n",
                "exclude",
            ),
        ] {
            let (_dir, path) = write_config(text);
            let err = format!("{:#}", RunConfig::load(&path).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("deploy")
            .join("agent.toml");
        let c = RunConfig::load(&path).unwrap();
        assert!(c.verifier.starts_with("http"));
        assert!(c.gating.is_none(), "gating is off unless asked for");
        // The commented [gating] example, switched on, reads too.
        let text = std::fs::read_to_string(&path).unwrap();
        let at = text.find("# [gating]").unwrap();
        let on: String = text[at..]
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if !rest.starts_with('#')
                        && (rest.starts_with('[') || rest.contains(" = ")) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let (_dir, example) = write_config(&format!("{}\n{on}\n", &text[..at]));
        let g = RunConfig::load(&example).unwrap().gating.unwrap();
        assert_eq!(g.mode, tppguard_proto::lease::GatingMode::Observe);
        assert_eq!(g.kubernetes.unwrap().node_name, "gpu-node-01");
    }

    #[test]
    fn the_kubernetes_configmap_config_loads() {
        let manifest = include_str!("../../deploy/kubernetes/configmap.yaml");
        let at = manifest.find("agent.toml: |").unwrap();
        let toml: String = manifest[at..]
            .lines()
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let (_dir, path) = write_config(&toml);
        let c = RunConfig::load(&path).unwrap();
        let g = c.gating.unwrap();
        assert_eq!(g.mode, tppguard_proto::lease::GatingMode::Observe);
        let kube = g.kubernetes.unwrap();
        assert_eq!(kube.node_name_env.as_deref(), Some("NODE_NAME"));
        let env = |name: &str| match name {
            "NODE_NAME" => Some("gpu-node-07".to_owned()),
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        kube.check(&env).unwrap();
        assert!(
            kube.check(&|_: &str| None).is_err(),
            "NODE_NAME unset stops the start"
        );
    }
}
