//! `tppguard-verifier serve`: the verifier as an HTTP service (axum on tokio).
//!
//! Start-up: read the configuration ([`config`]), pin trust.toml, load the result key, open
//! the database ([`crate::store`]), verify and import every `*.jws` licence and
//! `*.revocation.jws` licence revocation of `licences_dir`, check the rule sets load, bind,
//! print `listening on http://ADDR` and serve until SIGTERM or ctrl-c (in-flight requests
//! finish; new connections are refused). trust.toml's CRLs are reloaded while serving, on a
//! timer and on SIGHUP ([`lifecycle`]); revocations and retirements are [`admin`] routes.
//!
//! Writes (challenges, attestations, rejections) go through one writer task that commits them
//! in batches ([`ingest`]); the fleet is evaluated from memory ([`fleet`]), caught up with the
//! database before every batch and every read, so several replicas over one PostgreSQL
//! database agree. The routes are [`ROUTES`]; `docs/openapi.json` describes them and a test
//! keeps the two in step.

mod admin;
mod api;
pub mod auth;
pub mod config;
mod fleet;
mod ingest;
mod lifecycle;
mod metrics;
mod tls;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::hmac;
use ring::rand::SystemRandom;
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::SigningKey;

use crate::chain::TrustAnchors;
use crate::check::load_result_key;
use crate::cli::ServeArgs;
use crate::error::Error;
use crate::licence::verify_licence;
use crate::store::Store;

pub use api::ROUTES;

/// Largest licence file read from `licences_dir`.
const MAX_LICENCE_FILE_BYTES: u64 = 1 << 20;
use config::Config;

/// What the handlers share.
pub(crate) struct AppState {
    store: Store,
    /// trust.toml's anchors; the CRLs are reloaded while serving ([`lifecycle`]).
    trust: lifecycle::TrustHolder,
    fleet: fleet::FleetState,
    /// The writer's queue ([`ingest`]).
    queue: tokio::sync::mpsc::Sender<ingest::Job>,
    result_key: SigningKey,
    nonce_ttl_s: i64,
    rng: SystemRandom,
    /// HMAC key and the admin token's tag under it: presented tokens are compared as HMAC
    /// tags (`hmac::verify`, constant time), never byte by byte.
    admin: Option<(hmac::Key, hmac::Tag)>,
    metrics: metrics::Metrics,
    limiter: RateLimiter,
}

impl AppState {
    /// The trust anchors in use (the CRLs as last reloaded).
    pub(crate) fn trust(&self) -> Arc<TrustAnchors> {
        self.trust.get()
    }
}

/// Most nodes the rate limiter tracks; past it, windows that ended are dropped.
const MAX_TRACKED_NODES: usize = 100_000;

/// Per-node (per key: machines sharing a certificate subject are counted apart) fixed
/// one-minute windows, in this process (each replica limits on its own).
pub(crate) struct RateLimiter {
    per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<NodeId, (i64, u32)>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: std::sync::Mutex::default(),
        }
    }

    /// Counts one attestation from `node` at `now`; `false` when over the limit.
    pub(crate) fn allow(&self, node: NodeId, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut windows = match self.windows.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if windows.len() >= MAX_TRACKED_NODES && !windows.contains_key(&node) {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let entry = windows.entry(node).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_minute
    }
}

/// Runs `serve` until a shutdown signal.
pub fn run(args: &ServeArgs, out: &mut dyn Write) -> Result<(), Error> {
    init_logging();
    let config = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Serve {
            what: "cannot start the async runtime".to_owned(),
            source,
        })?;
    runtime.block_on(serve(config, out))
}

async fn serve(config: Config, out: &mut dyn Write) -> Result<(), Error> {
    let now = crate::unix_now()?;
    let trust = TrustAnchors::from_trust_toml(&config.trust)?;
    let result_key = load_result_key(&config.result_key)?;
    let admin = match config.admin_token()? {
        Some(token) => {
            let rng = SystemRandom::new();
            let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| Error::Serve {
                what: "cannot draw a random key".to_owned(),
                source: std::io::Error::other("the system random source failed"),
            })?;
            let tag = hmac::sign(&key, &token);
            Some((key, tag))
        }
        None => None,
    };
    // Certificate and key are read before anything else starts, so a bad file stops the start.
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(&config.path, files)?),
        None => None,
    };
    let store = Store::open(&config.database).await?;
    if let Some(adopted) = store
        .adopt_legacy_pointers(fleet::stored_token_identity)
        .await?
        && adopted.nodes + adopted.dropped > 0
    {
        tracing::info!(
            nodes = adopted.nodes,
            dropped = adopted.dropped,
            "the nodes' latest attestations are now kept by node id (schema 3)"
        );
    }
    let fleet = fleet::FleetState::new(config.rule_sets.clone());
    if let Some(dir) = &config.licences_dir {
        import_licences(&store, &trust, &fleet, dir, &config.path, now).await?;
        lifecycle::import_revocations(&store, &trust, dir, now).await?;
    }
    fleet.lifecycle.set_crls(&trust);
    let loaded = fleet.refresh(&store).await;
    // The rule sets must load now, not at the first request; a stored row that cannot be
    // used is a finding, never a reason to stop.
    let loaded = loaded.and_then(|()| fleet.basis(&trust, now).map(|_| ()));
    if let Err(e) = loaded {
        return Err(Error::Serve {
            what: "cannot load the fleet from the database".to_owned(),
            source: std::io::Error::other(e.sentence().to_owned()),
        });
    }
    tracing::info!(
        database = store.url_redacted(),
        nodes = fleet.node_count(),
        "fleet loaded"
    );
    let (queue, jobs) = tokio::sync::mpsc::channel(ingest::QUEUE);
    let state = Arc::new(AppState {
        store,
        trust: lifecycle::TrustHolder::new(&config.trust, trust),
        fleet,
        queue,
        result_key,
        nonce_ttl_s: i64::try_from(config.nonce_ttl_s).unwrap_or(i64::MAX),
        rng: SystemRandom::new(),
        admin,
        metrics: metrics::Metrics::new(),
        limiter: RateLimiter::new(config.node_rate_per_minute),
    });
    // The writer holds the state until the runtime stops; it ends with the process.
    tokio::spawn(ingest::run(Arc::clone(&state), jobs));
    tokio::spawn(lifecycle::reload_loop(
        Arc::clone(&state),
        config.crl_reload_s,
        lifecycle::hangups(),
    ));
    let app = api::router(state, config.max_body_bytes, config.request_timeout_s);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Serve {
            what: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Serve {
        what: "cannot read the bound address".to_owned(),
        source,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    writeln!(out, "listening on {scheme}://{bound}")?;
    out.flush()?;
    let served = match tls {
        Some(tls) => {
            axum::serve(tls::TlsListener::new(listener, tls), app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    served.map_err(|source| Error::Serve {
        what: "the server stopped".to_owned(),
        source,
    })?;
    writeln!(out, "stopped")?;
    Ok(())
}

/// Verifies every `*.jws` of `dir` (sorted by name; `*.revocation.jws` aside, see
/// [`lifecycle::import_revocations`]) and stores it; one that does not verify, or names a rule
/// set this verifier cannot load, stops the start, naming the file.
async fn import_licences(
    store: &Store,
    trust: &TrustAnchors,
    fleet: &fleet::FleetState,
    dir: &Path,
    config: &Path,
    now: i64,
) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Config {
        path: config.to_owned(),
        key: "licences_dir",
        reason: format!("{}: {e}", dir.display()),
        hint: "name a folder of signed licences (*.jws, from `licence sign`)".to_owned(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jws"))
        .filter(|p| !lifecycle::is_revocation_file(p))
        .collect();
    files.sort();
    for file in files {
        let bytes = crate::chain::read_bounded(&file, MAX_LICENCE_FILE_BYTES)?;
        let token = String::from_utf8_lossy(&bytes).trim_ascii().to_owned();
        let verified =
            verify_licence(&token, trust, now).map_err(|source| Error::LicenceRejected {
                path: file.clone(),
                source,
            })?;
        let rule_set = verified.licence().rule_set();
        if !fleet.lifecycle.rule_set_loadable(rule_set) {
            return Err(Error::Config {
                path: config.to_owned(),
                key: "licences_dir",
                reason: format!(
                    "{}: {}",
                    file.display(),
                    lifecycle::unknown_rule_set(rule_set)
                ),
                hint: "sign the licence again naming a shipped rule set, or add its rule set \
                       file to rule_sets"
                    .to_owned(),
            });
        }
        store
            .add_licence(verified.licence().id(), &token, now)
            .await?;
    }
    Ok(())
}

/// Logs to stderr at `RUST_LOG`'s level (default `info`): no time stamps (journald adds them),
/// no colours unless stderr is a terminal. A second call (tests running serve in one process)
/// keeps the first subscriber.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        // An error here means no handler could be installed: never resolve on it.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_counts_per_node_per_minute() {
        let l = RateLimiter::new(2);
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        assert!(l.allow(a, 60) && l.allow(a, 61));
        assert!(!l.allow(a, 119), "third in the minute");
        assert!(l.allow(b, 119), "another node");
        assert!(l.allow(a, 120), "a new minute");
    }
}
