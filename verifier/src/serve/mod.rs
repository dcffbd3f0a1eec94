//! `tppguard-verifier serve`: the verifier as an HTTP service (axum on tokio).
//!
//! Start-up: read the configuration ([`config`]), pin trust.toml, load the result key, open
//! the database ([`crate::store`]), verify and import every `*.jws` licence and
//! `*.revocation.jws` licence revocation of `licences_dir`, check the rule sets load, bind,
//! print `listening on http://ADDR` and serve ([`conn`], under the limits of
//! [`config::Limits`]) until SIGTERM or ctrl-c: new connections are refused, in-flight
//! requests finish within `shutdown_grace_s`, and whatever is still open then is dropped.
//! trust.toml's CRLs are reloaded while serving, on a timer and on SIGHUP ([`lifecycle`]);
//! revocations and retirements are [`admin`] routes.
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
mod conn;
mod fleet;
mod ingest;
mod lifecycle;
mod limits;
mod metrics;
mod reads;
mod scenario;
mod shipments;
mod tls;
pub mod view;
mod webhooks;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    metrics: metrics::Metrics,
    /// Attestations per node per minute (fixed windows, this replica); counted only for
    /// attestations whose nonce was fresh ([`ingest`]).
    limiter: limits::RateLimiter<NodeId>,
    /// Challenges per client and outstanding challenges.
    challenges: limits::Challenges,
    /// Rejected attestations recorded per client per minute (`challenge_rate_per_minute`).
    rejections: limits::RateLimiter<limits::Client>,
    /// One permit per signature and chain check running (`max_concurrent_verifications`).
    verifications: Arc<tokio::sync::Semaphore>,
    /// One permit per request in flight (`max_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// One permit: one what-if (`GET /v1/scenario`) evaluates at a time ([`scenario`]).
    what_ifs: Arc<tokio::sync::Semaphore>,
    /// What a regulator's reads redact (`[regulator] redact`), under a key drawn at start.
    redactor: view::Redactor,
    /// The credentials requests authenticate with ([`auth`]).
    credentials: auth::Credentials,
    /// The clock the handlers and the authentication read.
    clock: Clock,
    /// `[[webhooks]]` (issue 15): where findings are delivered ([`webhooks`]).
    webhooks: webhooks::Webhooks,
}

impl AppState {
    /// The trust anchors in use (the CRLs as last reloaded).
    pub(crate) fn trust(&self) -> Arc<TrustAnchors> {
        self.trust.get()
    }
}

/// The service's clock: Unix seconds, `None` when it cannot be read (before 1970).
/// [`system_clock`] in service; tests inject their own.
pub type Clock = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| crate::unix_now().ok())
}

/// `clock`'s now, or the error naming an unreadable clock.
fn read_clock(clock: &Clock) -> Result<i64, Error> {
    clock().ok_or(Error::Clock { unix: -1 })
}

/// The whole service without a socket: the router over its state (the store opened and
/// migrated, the licences imported, the fleet loaded, the writer task running on the
/// current tokio runtime), for [`run`] to serve and for tests to call in-process.
pub struct App {
    router: axum::Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    listen: std::net::SocketAddr,
}

impl App {
    /// The router (cheap to clone); every request goes through authentication.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
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
    let served = runtime.block_on(serve(config, out));
    // A signature check still running on a blocking thread gets a second, never more: the
    // connections already had `shutdown_grace_s`.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

async fn serve(config: Config, out: &mut dyn Write) -> Result<(), Error> {
    let app = build(&config, system_clock()).await?;
    let listener = tokio::net::TcpListener::bind(app.listen)
        .await
        .map_err(|source| Error::Serve {
            what: format!("cannot listen on {}", app.listen),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Serve {
        what: "cannot read the bound address".to_owned(),
        source,
    })?;
    let scheme = if app.tls.is_some() { "https" } else { "http" };
    writeln!(out, "listening on {scheme}://{bound}")?;
    out.flush()?;
    let limits = &config.limits;
    let stopped = match app.tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)
                .with_handshake_timeout(limits.handshake_timeout);
            conn::serve(listener, app.router, limits, shutdown_signal()).await
        }
        None => conn::serve(listener, app.router, limits, shutdown_signal()).await,
    };
    tracing::info!(
        open = stopped.open,
        dropped = stopped.dropped,
        grace_s = limits.shutdown_grace.as_secs(),
        "stopped accepting; connections finished or dropped"
    );
    writeln!(out, "stopped")?;
    Ok(())
}

/// Builds the service of `config` on `clock` ([`App`]); binds nothing.
pub async fn build(config: &Config, clock: Clock) -> Result<App, Error> {
    let (state, tls) = build_state(config, clock).await?;
    let router = api::router(state, config.max_body_bytes, config.request_timeout_s);
    Ok(App {
        router,
        tls,
        listen: config.listen,
    })
}

/// The shared state of [`build`] (its tasks started) and the TLS configuration.
async fn build_state(
    config: &Config,
    clock: Clock,
) -> Result<
    (
        Arc<AppState>,
        Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ),
    Error,
> {
    let now = read_clock(&clock)?;
    let trust = TrustAnchors::from_trust_toml(&config.trust)?;
    let result_key = load_result_key(&config.result_key)?;
    let credentials = auth::Credentials::new(config.admin_token()?.as_deref())?;
    let webhooks = webhooks::Webhooks::new(&config.webhooks)?;
    // Certificate and key are read before anything else starts, so a bad file stops the start.
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(
            &config.path,
            files,
            config.client_auth,
            &trust,
        )?),
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
    fleet.set_lease_key(result_key.verifying_key());
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
    // The tokens issued before the start are known from the first request.
    credentials.refresh(&store, now).await;
    let (queue, jobs) = tokio::sync::mpsc::channel(ingest::QUEUE);
    let state = Arc::new(AppState {
        store,
        trust: lifecycle::TrustHolder::new(&config.trust, trust),
        fleet,
        queue,
        result_key,
        nonce_ttl_s: i64::try_from(config.nonce_ttl_s).unwrap_or(i64::MAX),
        rng: SystemRandom::new(),
        metrics: metrics::Metrics::new(),
        limiter: limits::RateLimiter::new(config.node_rate_per_minute),
        challenges: limits::Challenges::new(
            config.limits.challenge_rate_per_minute,
            config.limits.max_outstanding_challenges,
        ),
        rejections: limits::RateLimiter::new(config.limits.challenge_rate_per_minute),
        verifications: Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_concurrent_verifications,
        )),
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.limits.max_in_flight)),
        what_ifs: Arc::new(tokio::sync::Semaphore::new(1)),
        credentials,
        clock,
        redactor: view::Redactor::new(&config.regulator_redact, random_key()?),
        webhooks,
    });
    // The writer holds the state until the runtime stops; it ends with the process.
    tokio::spawn(ingest::run(Arc::clone(&state), jobs));
    tokio::spawn(lifecycle::reload_loop(
        Arc::clone(&state),
        config.crl_reload_s,
        lifecycle::hangups(),
    ));
    // Issue 15: each webhook's delivery, and the scan for events that come by time alone.
    for index in 0..config.webhooks.len() {
        tokio::spawn(webhooks::deliver_loop(Arc::clone(&state), index));
    }
    tokio::spawn(webhooks::scan_loop(
        Arc::clone(&state),
        config.webhook_scan_s,
    ));
    Ok((state, tls))
}

/// The state of a verifier over `dir/pki` (from `pki init`) and a SQLite database in `dir`,
/// its writer running, for handler tests that need no router.
#[cfg(test)]
pub(crate) async fn test_state(dir: &Path) -> Arc<AppState> {
    let config = dir.join("verifier.toml");
    std::fs::write(
        &config,
        "trust = \"pki/verifier/trust.toml\"\ndatabase = \"sqlite://v.db\"\n",
    )
    .unwrap();
    let mut config = Config::load(&config).unwrap();
    config.database = format!("sqlite://{}", dir.join("v.db").display());
    build_state(&config, system_clock()).await.unwrap().0
}

/// A fresh HMAC-SHA256 key from the system's random source.
pub(crate) fn random_key() -> Result<ring::hmac::Key, Error> {
    ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &SystemRandom::new()).map_err(|_| {
        Error::Serve {
            what: "cannot draw a random key".to_owned(),
            source: std::io::Error::other("the system random source failed"),
        }
    })
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
