//! `run`: the agent as a service. Pushes on a schedule (`interval_s` ± 10 %), backs off
//! exponentially (capped at `backoff_max_s`) while the verifier is unreachable, keeps signed
//! attestations it could not deliver in NODE/queue/ and stops on SIGTERM or SIGINT.
//!
//! The queue: a token can only be signed over a challenge the verifier issued, and that nonce
//! expires (`expires_at`, `nonce_ttl_s` on the verifier). A queued token is therefore delivered
//! on reconnect only while its nonce is still live; one whose nonce has expired is dropped with
//! a log line instead of being posted for a certain `nonce_expired`, and the agent attests
//! afresh over a new challenge. The verifier then holds the node's current state, not a
//! stale one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::{RunArgs, SourceArgs};
use crate::push::{Client, PushError};
use crate::{EXIT_OK, attest_token, sign};

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
    /// How many undelivered attestations NODE/queue/ keeps (the oldest go first).
    #[serde(default = "default_queue_max")]
    pub queue_max: usize,
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
        if let Some(p) = config.ca_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = config.nvml_lib.as_mut() {
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
        ] {
            if !range.contains(&value) {
                anyhow::bail!(
                    "{}: {key} = {value} is out of range ({} to {})",
                    path.display(),
                    range.start(),
                    range.end()
                );
            }
        }
        Ok(config)
    }

    fn source(&self) -> SourceArgs {
        SourceArgs {
            simulate: self.simulate.clone(),
            nvml_lib: self.nvml_lib.clone(),
        }
    }
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
    /// Delivered (the verifier's status).
    Delivered(String),
    /// The verifier is unreachable or failing: back off.
    Unreachable(PushError),
    /// Something else failed (inventory, signing, a rejection): try again next interval.
    Failed(anyhow::Error),
}

/// One round: a challenge, the queue's live tokens, a fresh attestation.
fn round(config: &RunConfig, client: &Client, queue: &Queue, shutdown: &mut Shutdown) -> Round {
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
                        tracing::warn!(file = %q.path.display(), error = %e, "unreadable queued attestation: dropped");
                        let _ = std::fs::remove_file(&q.path);
                        continue;
                    }
                };
                match client.post_attestation(&token) {
                    Ok(v) => {
                        tracing::info!(file = %q.path.display(), status = %v.status, "queued attestation delivered");
                        let _ = std::fs::remove_file(&q.path);
                    }
                    Err(e) if e.is_transient() => return Round::Unreachable(e),
                    Err(e) => {
                        tracing::warn!(file = %q.path.display(), error = %e, "queued attestation rejected: dropped");
                        let _ = std::fs::remove_file(&q.path);
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the queue"),
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
    match client.post_attestation(&attested.token) {
        Ok(v) => {
            for f in &v.findings {
                tracing::info!(
                    severity = f["severity"].as_str().unwrap_or("-"),
                    code = f["code"].as_str().unwrap_or("-"),
                    "{}",
                    f["sentence"].as_str().unwrap_or("")
                );
            }
            Round::Delivered(v.status)
        }
        Err(e) if e.is_transient() => {
            match queue.add(&attested.token, challenge.expires_at) {
                Ok(path) => {
                    tracing::warn!(file = %path.display(), "attestation not delivered: queued")
                }
                Err(q) => {
                    tracing::error!(error = %format!("{q:#}"), "attestation not delivered and could not be queued")
                }
            }
            Round::Unreachable(e)
        }
        Err(e) => Round::Failed(e.into()),
    }
}

/// `tppguard-agent run`.
pub fn run_command(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = RunConfig::load(&args.config)?;
    let client = Client::new(&config.verifier, config.ca_file.as_deref())?;
    // Credentials and site are checked once at start: a node that cannot sign is a
    // configuration problem (exit 2), not something to retry.
    sign::NodeCredentials::load(&config.dir).map_err(|e| anyhow::anyhow!(e.render()))?;
    if let Some(site) = &config.site {
        sign::parse_site(site).map_err(|e| anyhow::anyhow!(e.render()))?;
    }
    let queue = Queue::new(&config.dir, config.queue_max);
    let mut shutdown = Shutdown::install()?;
    let interval = Duration::from_secs(config.interval_s);
    let backoff_max = Duration::from_secs(config.backoff_max_s);
    tracing::info!(verifier = client.base(), dir = %config.dir.display(), interval_s = config.interval_s, "running");
    let mut failures: u32 = 0;
    while !shutdown.requested() {
        let wait = match round(&config, &client, &queue, &mut shutdown) {
            Round::Delivered(status) => {
                if failures > 0 {
                    tracing::info!(after = failures, "verifier reachable again");
                }
                failures = 0;
                tracing::info!(status = %status, "attestation delivered");
                jittered(interval)
            }
            Round::Unreachable(e) => {
                failures = failures.saturating_add(1);
                let wait = jittered(backoff(failures, backoff_max));
                tracing::warn!(error = %e, failures, retry_in_s = wait.as_secs_f64(), "verifier unavailable");
                wait
            }
            Round::Failed(e) => {
                if shutdown.requested() {
                    break;
                }
                failures = 0;
                tracing::error!(error = %format!("{e:#}"), "push failed");
                jittered(interval)
            }
        };
        if shutdown.wait(wait) {
            break;
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::from(EXIT_OK))
}

#[cfg(test)]
mod tests {
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
    fn config_defaults_and_relative_paths() {
        let (dir, path) =
            write_config("verifier = \"http://v:8080\"\ndir = \"node\"\nca_file = \"ca.pem\"\n");
        let c = RunConfig::load(&path).unwrap();
        assert_eq!(c.dir, dir.path().join("node"));
        assert_eq!(c.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!((c.interval_s, c.backoff_max_s, c.queue_max), (300, 600, 32));
        assert!(c.simulate.is_none() && c.site.is_none());
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
    }
}
