//! The `serve` configuration file (TOML, every key checked; format in `docs/serve.md` and
//! `deploy/verifier.toml`). Relative paths are read from the configuration file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tppguard_proto::jws::MAX_JWS_BYTES;

use super::view::Redact;
use crate::error::Error;
use crate::pki::RESULT_KEY;

/// The address served when `listen` is not given: loopback only (set `tls_cert` and `tls_key`,
/// or put a TLS proxy in front, before serving other hosts).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The database file made beside the configuration when `database` is not given.
pub const DEFAULT_DATABASE_FILE: &str = "tppguard-verifier.db";
/// How long a challenge nonce may be answered, when `nonce_ttl_s` is not given.
pub const DEFAULT_NONCE_TTL_S: u64 = 300;
/// The longest `nonce_ttl_s`.
pub const MAX_NONCE_TTL_S: u64 = 86_400;
/// The longest request body, when `max_body_bytes` is not given: one attestation token.
pub const DEFAULT_MAX_BODY_BYTES: usize = MAX_JWS_BYTES;
/// The smallest `max_body_bytes` accepted.
pub const MIN_MAX_BODY_BYTES: usize = 4096;
/// How long one request may take, when `request_timeout_s` is not given.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;
/// The longest `request_timeout_s`.
pub const MAX_REQUEST_TIMEOUT_S: u64 = 600;
/// Attestations one node may post per minute, when `node_rate_per_minute` is not given.
pub const DEFAULT_NODE_RATE_PER_MINUTE: u32 = 30;
/// The largest `node_rate_per_minute`.
pub const MAX_NODE_RATE_PER_MINUTE: u32 = 6000;
// Limits (issue 12; docs/serve.md, Limits): defaults and bounds of the keys below.
/// Connections served at once, when `max_connections` is not given.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The largest `max_connections` (`LimitNOFILE` in deploy/systemd must stay above it).
pub const MAX_MAX_CONNECTIONS: usize = 65_536;
/// Seconds a TLS handshake may take, when `handshake_timeout_s` is not given.
pub const DEFAULT_HANDSHAKE_TIMEOUT_S: u64 = 10;
/// Seconds for a request's head, when `header_read_timeout_s` is not given.
pub const DEFAULT_HEADER_READ_TIMEOUT_S: u64 = 10;
/// Seconds a connection may sit idle, when `idle_timeout_s` is not given.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 5;
/// The longest `handshake_timeout_s`, `header_read_timeout_s` and `idle_timeout_s`.
pub const MAX_CONNECTION_TIMEOUT_S: u64 = 300;
/// Requests handled at once, when `max_in_flight` is not given.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// The largest `max_in_flight`.
pub const MAX_MAX_IN_FLIGHT: usize = 65_536;
/// The largest `max_concurrent_verifications` (its default is the number of CPUs).
pub const MAX_MAX_CONCURRENT_VERIFICATIONS: usize = 1024;
/// Seconds in-flight requests get to finish at shutdown, when `shutdown_grace_s` is not given.
pub const DEFAULT_SHUTDOWN_GRACE_S: u64 = 20;
/// The longest `shutdown_grace_s`.
pub const MAX_SHUTDOWN_GRACE_S: u64 = 600;
/// Challenges one client may ask for per minute, when `challenge_rate_per_minute` is not given.
pub const DEFAULT_CHALLENGE_RATE_PER_MINUTE: u32 = 120;
/// The largest `challenge_rate_per_minute`.
pub const MAX_CHALLENGE_RATE_PER_MINUTE: u32 = 10_000_000;
/// Unanswered, unexpired challenges at once, when `max_outstanding_challenges` is not given.
pub const DEFAULT_MAX_OUTSTANDING_CHALLENGES: usize = 100_000;
/// The largest `max_outstanding_challenges`.
pub const MAX_MAX_OUTSTANDING_CHALLENGES: usize = 10_000_000;

/// Seconds between CRL reloads, when `crl_reload_s` is not given (lifecycle, issue 12).
pub const DEFAULT_CRL_RELOAD_S: u64 = 300;
/// The longest `crl_reload_s`.
pub const MAX_CRL_RELOAD_S: u64 = 86_400;

/// Largest configuration or admin-token file read.
const MAX_FILE_BYTES: u64 = 64 << 10;
/// Shortest admin token accepted.
const MIN_ADMIN_TOKEN_BYTES: usize = 16;
/// The fix when only one of `tls_cert` and `tls_key` is given.
const TLS_BOTH_HINT: &str = "give both tls_cert (PEM certificate chain, leaf first) and tls_key \
                             (its PEM private key) to serve HTTPS, or neither to serve plain \
                             HTTP behind a TLS proxy (docs/serve.md, TLS)";

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    database: Option<String>,
    trust: Option<PathBuf>,
    licences_dir: Option<PathBuf>,
    #[serde(default)]
    rule_sets: Vec<String>,
    result_key: Option<PathBuf>,
    nonce_ttl_s: Option<u64>,
    max_body_bytes: Option<usize>,
    request_timeout_s: Option<u64>,
    node_rate_per_minute: Option<u32>,
    admin_token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    // Authentication (issue 12).
    client_auth: Option<String>,
    // Limits (issue 12).
    max_connections: Option<usize>,
    handshake_timeout_s: Option<u64>,
    header_read_timeout_s: Option<u64>,
    idle_timeout_s: Option<u64>,
    max_in_flight: Option<usize>,
    max_concurrent_verifications: Option<usize>,
    shutdown_grace_s: Option<u64>,
    challenge_rate_per_minute: Option<u32>,
    max_outstanding_challenges: Option<usize>,
    // Lifecycle (issue 12).
    crl_reload_s: Option<u64>,
    // Issue 12, reads: what a regulator's reads redact.
    regulator: Option<RawRegulator>,
    // Issue 15: webhooks (vendors' event feeds) and how often the fleet is scanned for events.
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    webhook_scan_s: Option<u64>,
}

/// `[regulator]` as written (issue 12, reads).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegulator {
    redact: Option<Vec<String>>,
}

/// The server certificate and key for HTTPS, paths resolved (read when `serve` starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// A checked configuration, paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration file.
    pub path: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database URL.
    pub database: String,
    /// trust.toml.
    pub trust: PathBuf,
    /// Folder of signed licences (`*.jws`) imported at start, if any.
    pub licences_dir: Option<PathBuf>,
    /// Rule sets (ids or files) to evaluate; empty: those the licences name.
    pub rule_sets: Vec<String>,
    /// The EAR signing key (PKCS#8 PEM).
    pub result_key: PathBuf,
    /// Seconds a nonce stays answerable.
    pub nonce_ttl_s: u64,
    /// Longest request body.
    pub max_body_bytes: usize,
    /// Longest request, seconds.
    pub request_timeout_s: u64,
    /// Attestations one node may post per minute (this replica).
    pub node_rate_per_minute: u32,
    /// A file holding a static admin bearer token (besides `token issue --role admin`).
    pub admin_token_file: Option<PathBuf>,
    /// The certificate and key to serve HTTPS with; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// What a regulator's reads redact (`[regulator] redact`; default serials and UUIDs).
    pub regulator_redact: Vec<Redact>,
    /// Whether HTTPS asks clients for a certificate (a node's, from the operator CA).
    pub client_auth: ClientAuth,
    /// What one client, and all of them together, may take (docs/serve.md, Limits).
    pub limits: Limits,
    /// Seconds between reloads of trust.toml's CRLs while serving; 0: only on SIGHUP.
    pub crl_reload_s: u64,
    /// `[[webhooks]]` (issue 15): where findings are delivered as signed events.
    pub webhooks: Vec<WebhookConfig>,
    /// Seconds between scans of the fleet for events that come by time alone (issue 15,
    /// `webhook_scan_s`); 0: events only from attestations' batches.
    pub webhook_scan_s: u64,
}

/// The service's limits (docs/serve.md, Limits): each is one configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; past it, new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's whole head, from the connection's start (after TLS) or the
    /// previous answer.
    pub header_read_timeout: Duration,
    /// Longest time nothing moves while the verifier waits on the client (no request in
    /// flight).
    pub idle_timeout: Duration,
    /// Requests handled at once; past it, 503 `overloaded`.
    pub max_in_flight: usize,
    /// Attestation signature and chain checks run at once (off the async workers).
    pub max_concurrent_verifications: usize,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Challenges one client may ask for per minute (this replica).
    pub challenge_rate_per_minute: u32,
    /// Challenges issued, not yet answered and not expired, at once (this replica).
    pub max_outstanding_challenges: usize,
}

// Authentication (issue 12): `client_auth`.

/// Whether the HTTPS server asks clients for a certificate (`client_auth`; docs/serve.md,
/// Roles and credentials). A client certificate that verifies to the operator CA
/// authenticates its connection as a [`super::auth::Role::Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates (bearer tokens only).
    #[default]
    Off,
    /// Asked for; a client without one may still use a bearer token.
    Optional,
    /// Every client must present a node certificate that verifies at the handshake.
    Required,
}

impl ClientAuth {
    /// The mode `text` names (`off`, `optional`, `required`), if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Self::Off),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// `client_auth` as written, checked: a mode other than `off` needs HTTPS.
fn client_auth(path: &Path, text: Option<&str>, tls: bool) -> Result<ClientAuth, Error> {
    let Some(text) = text else {
        return Ok(ClientAuth::Off);
    };
    let mode = ClientAuth::parse(text).ok_or_else(|| {
        config_err(
            path,
            "client_auth",
            format!("{text:?} is not a mode"),
            "write client_auth = \"off\", \"optional\" or \"required\"",
        )
    })?;
    if mode != ClientAuth::Off && !tls {
        return Err(config_err(
            path,
            "client_auth",
            format!("{text:?} needs HTTPS"),
            "client certificates come with TLS: set tls_cert and tls_key too, or remove \
             client_auth",
        ));
    }
    Ok(mode)
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = read_small(path).map_err(|e| config_err(path, "file", e, "check the path"))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            key: "file",
            reason: e.message().to_owned() + &span_note(&text, e.span()),
            hint: "keys: listen, database, trust, licences_dir, rule_sets, result_key, \
                   nonce_ttl_s, max_body_bytes, request_timeout_s, node_rate_per_minute, \
                   admin_token_file, tls_cert, tls_key, client_auth, max_connections, \
                   handshake_timeout_s, header_read_timeout_s, idle_timeout_s, max_in_flight, \
                   max_concurrent_verifications, shutdown_grace_s, challenge_rate_per_minute, \
                   max_outstanding_challenges, crl_reload_s, [regulator] redact, \
                   webhook_scan_s, [[webhooks]] (docs/serve.md)"
                .to_owned(),
        })?;
        let limits = Limits::check(path, &raw)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."))
            .to_owned();
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|e| {
            config_err(
                path,
                "listen",
                format!("{listen_text:?} is not IP:PORT ({e})"),
                "write an address and port, e.g. listen = \"127.0.0.1:8080\"",
            )
        })?;
        let database = match raw.database {
            Some(url) => url,
            None => format!(
                "sqlite://{}",
                resolve(PathBuf::from(DEFAULT_DATABASE_FILE)).display()
            ),
        };
        let Some(trust) = raw.trust.map(resolve) else {
            return Err(config_err(
                path,
                "trust",
                "missing".to_owned(),
                "name the trust file `tppguard-verifier pki init-verifier` wrote, e.g. \
                 trust = \"pki/verifier/trust.toml\"",
            ));
        };
        let result_key = raw.result_key.map(resolve).unwrap_or_else(|| {
            trust
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(RESULT_KEY)
        });
        let nonce_ttl_s = raw.nonce_ttl_s.unwrap_or(DEFAULT_NONCE_TTL_S);
        if !(1..=MAX_NONCE_TTL_S).contains(&nonce_ttl_s) {
            return Err(config_err(
                path,
                "nonce_ttl_s",
                format!("{nonce_ttl_s} is out of range"),
                &format!("give 1 to {MAX_NONCE_TTL_S} seconds (default {DEFAULT_NONCE_TTL_S})"),
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(MIN_MAX_BODY_BYTES..=MAX_JWS_BYTES).contains(&max_body_bytes) {
            return Err(config_err(
                path,
                "max_body_bytes",
                format!("{max_body_bytes} is out of range"),
                &format!(
                    "give {MIN_MAX_BODY_BYTES} to {MAX_JWS_BYTES} bytes (default \
                     {DEFAULT_MAX_BODY_BYTES}, the largest attestation token)"
                ),
            ));
        }
        let request_timeout_s = raw.request_timeout_s.unwrap_or(DEFAULT_REQUEST_TIMEOUT_S);
        if !(1..=MAX_REQUEST_TIMEOUT_S).contains(&request_timeout_s) {
            return Err(config_err(
                path,
                "request_timeout_s",
                format!("{request_timeout_s} is out of range"),
                &format!(
                    "give 1 to {MAX_REQUEST_TIMEOUT_S} seconds (default \
                     {DEFAULT_REQUEST_TIMEOUT_S})"
                ),
            ));
        }
        let node_rate_per_minute = raw
            .node_rate_per_minute
            .unwrap_or(DEFAULT_NODE_RATE_PER_MINUTE);
        if !(1..=MAX_NODE_RATE_PER_MINUTE).contains(&node_rate_per_minute) {
            return Err(config_err(
                path,
                "node_rate_per_minute",
                format!("{node_rate_per_minute} is out of range"),
                &format!(
                    "give 1 to {MAX_NODE_RATE_PER_MINUTE} (default \
                     {DEFAULT_NODE_RATE_PER_MINUTE})"
                ),
            ));
        }
        // Lifecycle (issue 12): CRLs reloaded while serving.
        let crl_reload_s = raw.crl_reload_s.unwrap_or(DEFAULT_CRL_RELOAD_S);
        if crl_reload_s > MAX_CRL_RELOAD_S {
            return Err(config_err(
                path,
                "crl_reload_s",
                format!("{crl_reload_s} is out of range"),
                &format!(
                    "give 0 (reload only on SIGHUP) to {MAX_CRL_RELOAD_S} seconds (default \
                     {DEFAULT_CRL_RELOAD_S})"
                ),
            ));
        }
        let tls = match (raw.tls_cert.map(resolve), raw.tls_key.map(resolve)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(config_err(
                    path,
                    "tls_key",
                    "missing while tls_cert is set".to_owned(),
                    TLS_BOTH_HINT,
                ));
            }
            (None, Some(_)) => {
                return Err(config_err(
                    path,
                    "tls_cert",
                    "missing while tls_key is set".to_owned(),
                    TLS_BOTH_HINT,
                ));
            }
        };
        let client_auth = client_auth(path, raw.client_auth.as_deref(), tls.is_some())?;
        Ok(Self {
            path: path.to_owned(),
            listen,
            database,
            trust,
            licences_dir: raw.licences_dir.map(resolve),
            rule_sets: raw.rule_sets,
            result_key,
            nonce_ttl_s,
            max_body_bytes,
            request_timeout_s,
            node_rate_per_minute,
            admin_token_file: raw.admin_token_file.map(resolve),
            tls,
            client_auth,
            regulator_redact: regulator_redact(path, raw.regulator)?,
            limits,
            crl_reload_s,
            webhooks: webhooks(path, raw.webhooks, &resolve)?,
            webhook_scan_s: in_range(
                path,
                "webhook_scan_s",
                raw.webhook_scan_s.unwrap_or(DEFAULT_WEBHOOK_SCAN_S),
                0,
                MAX_WEBHOOK_SCAN_S,
                DEFAULT_WEBHOOK_SCAN_S,
                "seconds (0: no scan)",
            )?,
        })
    }

    /// The admin token, trimmed, when `admin_token_file` is set.
    pub fn admin_token(&self) -> Result<Option<Vec<u8>>, Error> {
        let Some(file) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = read_small(file).map_err(|e| {
            config_err(
                &self.path,
                "admin_token_file",
                format!("{}: {e}", file.display()),
                "check the path and its permissions (the file should be mode 0600)",
            )
        })?;
        let token = text.trim();
        if token.len() < MIN_ADMIN_TOKEN_BYTES {
            return Err(config_err(
                &self.path,
                "admin_token_file",
                format!(
                    "{}: the token is {} bytes, shorter than {MIN_ADMIN_TOKEN_BYTES}",
                    file.display(),
                    token.len()
                ),
                "write a long random token, e.g. `openssl rand -hex 32 > admin.token`",
            ));
        }
        Ok(Some(token.as_bytes().to_vec()))
    }
}

/// `[regulator] redact`, checked (issue 12, reads): names from [`Redact::ALL`], each once;
/// [`Redact::DEFAULT`] when not given.
fn regulator_redact(path: &Path, raw: Option<RawRegulator>) -> Result<Vec<Redact>, Error> {
    let Some(names) = raw.and_then(|r| r.redact) else {
        return Ok(Redact::DEFAULT.to_vec());
    };
    let mut redact = Vec::with_capacity(names.len());
    for name in &names {
        let Some(r) = Redact::parse(name) else {
            return Err(config_err(
                path,
                "regulator.redact",
                format!("{name:?} is not something a regulator's reads can redact"),
                "list any of \"serials\", \"uuids\", \"subjects\", \"hardware_ids\" (default \
                 [\"serials\", \"uuids\", \"hardware_ids\"]; [] redacts nothing)",
            ));
        };
        if !redact.contains(&r) {
            redact.push(r);
        }
    }
    Ok(redact)
}

impl Limits {
    /// The limits `raw` gives, each checked against its range.
    fn check(path: &Path, raw: &RawConfig) -> Result<Self, Error> {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let secs = |key, value: Option<u64>, default, max| {
            in_range(
                path,
                key,
                value.unwrap_or(default),
                1,
                max,
                default,
                "seconds",
            )
            .map(Duration::from_secs)
        };
        let handshake_timeout = secs(
            "handshake_timeout_s",
            raw.handshake_timeout_s,
            DEFAULT_HANDSHAKE_TIMEOUT_S,
            MAX_CONNECTION_TIMEOUT_S,
        )?;
        let header_read_timeout = secs(
            "header_read_timeout_s",
            raw.header_read_timeout_s,
            DEFAULT_HEADER_READ_TIMEOUT_S,
            MAX_CONNECTION_TIMEOUT_S,
        )?;
        let idle_timeout = secs(
            "idle_timeout_s",
            raw.idle_timeout_s,
            DEFAULT_IDLE_TIMEOUT_S,
            MAX_CONNECTION_TIMEOUT_S,
        )?;
        let shutdown_grace = secs(
            "shutdown_grace_s",
            raw.shutdown_grace_s,
            DEFAULT_SHUTDOWN_GRACE_S,
            MAX_SHUTDOWN_GRACE_S,
        )?;
        let count = |key, value: Option<usize>, default: usize, max: usize, unit| {
            let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            in_range(
                path,
                key,
                as_u64(value.unwrap_or(default)),
                1,
                as_u64(max),
                as_u64(default),
                unit,
            )
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        Ok(Self {
            max_connections: count(
                "max_connections",
                raw.max_connections,
                DEFAULT_MAX_CONNECTIONS,
                MAX_MAX_CONNECTIONS,
                "connections",
            )?,
            handshake_timeout,
            header_read_timeout,
            idle_timeout,
            max_in_flight: count(
                "max_in_flight",
                raw.max_in_flight,
                DEFAULT_MAX_IN_FLIGHT,
                MAX_MAX_IN_FLIGHT,
                "requests",
            )?,
            max_concurrent_verifications: count(
                "max_concurrent_verifications",
                raw.max_concurrent_verifications,
                cpus.min(MAX_MAX_CONCURRENT_VERIFICATIONS),
                MAX_MAX_CONCURRENT_VERIFICATIONS,
                "verifications (default: the number of CPUs)",
            )?,
            shutdown_grace,
            challenge_rate_per_minute: u32::try_from(in_range(
                path,
                "challenge_rate_per_minute",
                raw.challenge_rate_per_minute
                    .unwrap_or(DEFAULT_CHALLENGE_RATE_PER_MINUTE)
                    .into(),
                1,
                MAX_CHALLENGE_RATE_PER_MINUTE.into(),
                DEFAULT_CHALLENGE_RATE_PER_MINUTE.into(),
                "challenges per client per minute",
            )?)
            .unwrap_or(MAX_CHALLENGE_RATE_PER_MINUTE),
            max_outstanding_challenges: count(
                "max_outstanding_challenges",
                raw.max_outstanding_challenges,
                DEFAULT_MAX_OUTSTANDING_CHALLENGES,
                MAX_MAX_OUTSTANDING_CHALLENGES,
                "challenges",
            )?,
        })
    }
}

// Webhooks (issue 15): `[[webhooks]]`, each checked; see super::webhooks.

/// The finding codes a webhook receives when `codes` is not given: a vendor's.
pub const DEFAULT_WEBHOOK_CODES: [&str; 4] = [
    "diverted_device",
    "unaccounted_device",
    "unshipped_device",
    "shipped_device_duplicated",
];
/// Most `[[webhooks]]`.
pub const MAX_WEBHOOKS: usize = 64;
/// Longest webhook name.
pub const MAX_WEBHOOK_NAME_LEN: usize = 64;
/// Longest webhook URL.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Seconds one delivery may take, when `timeout_s` is not given.
pub const DEFAULT_WEBHOOK_TIMEOUT_S: u64 = 10;
/// Attempts before an event is given up, when `max_attempts` is not given.
pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u64 = 12;
/// The first retry's delay, when `backoff_s` is not given (doubled each attempt).
pub const DEFAULT_WEBHOOK_BACKOFF_S: u64 = 10;
/// The longest retry delay, when `backoff_max_s` is not given.
pub const DEFAULT_WEBHOOK_BACKOFF_MAX_S: u64 = 3600;
/// Seconds between scans for events by time alone, when `webhook_scan_s` is not given.
pub const DEFAULT_WEBHOOK_SCAN_S: u64 = 60;
/// The longest `webhook_scan_s`.
pub const MAX_WEBHOOK_SCAN_S: u64 = 86_400;

/// `[[webhooks]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    licences: Vec<String>,
    codes: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    timeout_s: Option<u64>,
    max_attempts: Option<u64>,
    backoff_s: Option<u64>,
    backoff_max_s: Option<u64>,
}

/// One webhook, checked: the findings it receives and how they are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Its name: letters, digits, `.`, `_`, `-` (names its outbox rows).
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The licences whose findings it receives (a vendor's).
    pub licences: Vec<String>,
    /// The finding codes it receives.
    pub codes: Vec<String>,
    /// PEM roots for an `https://` URL, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Seconds one delivery may take.
    pub timeout_s: u64,
    /// Attempts before an event is given up (left in the outbox, `gave_up_at` set).
    pub max_attempts: u64,
    /// The first retry's delay, seconds; doubled per attempt, with jitter.
    pub backoff_s: u64,
    /// The longest retry delay, seconds.
    pub backoff_max_s: u64,
}

fn webhooks(
    path: &Path,
    raw: Vec<RawWebhook>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Vec<WebhookConfig>, Error> {
    if raw.len() > MAX_WEBHOOKS {
        return Err(config_err(
            path,
            "webhooks",
            format!("{} webhooks", raw.len()),
            &format!("configure at most {MAX_WEBHOOKS}"),
        ));
    }
    let mut out: Vec<WebhookConfig> = Vec::with_capacity(raw.len());
    for w in raw {
        let name_ok = (1..=MAX_WEBHOOK_NAME_LEN).contains(&w.name.len())
            && w.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok || out.iter().any(|o| o.name == w.name) {
            return Err(config_err(
                path,
                "webhooks.name",
                format!("{:?} is not a new webhook name", w.name),
                &format!(
                    "give each webhook its own name of 1 to {MAX_WEBHOOK_NAME_LEN} letters, \
                     digits, '.', '_' or '-'"
                ),
            ));
        }
        let http = w.url.starts_with("http://");
        let https = w.url.starts_with("https://");
        let host = w.url.split("://").nth(1).unwrap_or("");
        if !(http || https)
            || host.is_empty()
            || host.starts_with('/')
            || w.url.len() > MAX_WEBHOOK_URL_LEN
            || w.url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(config_err(
                path,
                "webhooks.url",
                format!(
                    "webhook {}: {:?} is not an http:// or https:// URL",
                    w.name, w.url
                ),
                "write the receiver's URL, e.g. url = \"https://hooks.vendor.example/tppguard\"",
            ));
        }
        if w.ca_file.is_some() && !https {
            return Err(config_err(
                path,
                "webhooks.ca_file",
                format!("webhook {}: ca_file needs an https:// URL", w.name),
                "remove ca_file, or give the receiver's https:// URL",
            ));
        }
        if w.licences.is_empty() || w.licences.iter().any(|l| l.is_empty()) {
            return Err(config_err(
                path,
                "webhooks.licences",
                format!("webhook {}: no licence named", w.name),
                "list the licence ids whose findings it receives, e.g. licences = [\"LIC-1\"]",
            ));
        }
        let codes = w
            .codes
            .unwrap_or_else(|| DEFAULT_WEBHOOK_CODES.map(str::to_owned).to_vec());
        let snake = |c: &str| {
            !c.is_empty()
                && c.len() <= 128
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if codes.is_empty() || !codes.iter().all(|c| snake(c)) {
            return Err(config_err(
                path,
                "webhooks.codes",
                format!(
                    "webhook {}: codes must be finding codes (snake_case)",
                    w.name
                ),
                "list finding codes, e.g. codes = [\"diverted_device\"] (default: the vendor \
                 codes diverted_device, unaccounted_device, unshipped_device, \
                 shipped_device_duplicated)",
            ));
        }
        let timeout_s = in_range(
            path,
            "webhooks.timeout_s",
            w.timeout_s.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_S),
            1,
            120,
            DEFAULT_WEBHOOK_TIMEOUT_S,
            "seconds",
        )?;
        let max_attempts = in_range(
            path,
            "webhooks.max_attempts",
            w.max_attempts.unwrap_or(DEFAULT_WEBHOOK_MAX_ATTEMPTS),
            1,
            1000,
            DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            "attempts",
        )?;
        let backoff_s = in_range(
            path,
            "webhooks.backoff_s",
            w.backoff_s.unwrap_or(DEFAULT_WEBHOOK_BACKOFF_S),
            1,
            86_400,
            DEFAULT_WEBHOOK_BACKOFF_S,
            "seconds",
        )?;
        let backoff_max_s = in_range(
            path,
            "webhooks.backoff_max_s",
            w.backoff_max_s
                .unwrap_or(DEFAULT_WEBHOOK_BACKOFF_MAX_S.max(backoff_s)),
            backoff_s,
            7 * 86_400,
            DEFAULT_WEBHOOK_BACKOFF_MAX_S,
            "seconds, at least backoff_s",
        )?;
        out.push(WebhookConfig {
            name: w.name,
            url: w.url,
            licences: w.licences,
            codes,
            ca_file: w.ca_file.map(resolve),
            timeout_s,
            max_attempts,
            backoff_s,
            backoff_max_s,
        });
    }
    Ok(out)
}

/// `value`, or the range error naming `key`, its bounds and default.
fn in_range(
    path: &Path,
    key: &'static str,
    value: u64,
    min: u64,
    max: u64,
    default: u64,
    unit: &str,
) -> Result<u64, Error> {
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    Err(config_err(
        path,
        key,
        format!("{value} is out of range"),
        &format!("give {min} to {max} {unit} (default {default}; docs/serve.md, Limits)"),
    ))
}

fn read_small(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(text)
}

fn config_err(path: &Path, key: &'static str, reason: String, hint: &str) -> Error {
    Error::Config {
        path: path.to_owned(),
        key,
        reason,
        hint: hint.to_owned(),
    }
}

/// ` (line N)` for a TOML error's span.
fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.and_then(|s| text.get(..s.start))
        .map(|before| format!(" (line {})", before.matches('\n').count() + 1))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verifier.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn defaults_resolve_beside_the_file() {
        let c = load("trust = \"pki/trust.toml\"\n").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.database.starts_with("sqlite://"));
        assert!(c.database.ends_with("/tppguard-verifier.db"));
        assert!(c.trust.ends_with("pki/trust.toml") && c.trust.is_absolute());
        assert!(c.result_key.ends_with("pki/verifier-result.key"));
        assert_eq!(c.nonce_ttl_s, DEFAULT_NONCE_TTL_S);
        assert_eq!(c.max_body_bytes, MAX_JWS_BYTES);
        assert!(c.admin_token_file.is_none());
    }

    #[test]
    fn webhooks_are_checked() {
        let c = load(
            "trust = \"t\"\n[[webhooks]]\nname = \"vendor-a\"\nurl = \"https://h.example/x\"\n\
             licences = [\"LIC-1\"]\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        let w = &c.webhooks[0];
        assert_eq!(w.codes, DEFAULT_WEBHOOK_CODES.map(str::to_owned).to_vec());
        assert!(w.ca_file.as_ref().unwrap().is_absolute());
        assert_eq!(
            (w.timeout_s, w.max_attempts, w.backoff_s, w.backoff_max_s),
            (10, 12, 10, 3600)
        );
        assert_eq!(c.webhook_scan_s, DEFAULT_WEBHOOK_SCAN_S);
        let base = "trust = \"t\"\n[[webhooks]]\n";
        for (body, key) in [
            (
                "name = \"a b\"\nurl = \"http://h/\"\nlicences = [\"L\"]",
                "webhooks.name",
            ),
            (
                "name = \"a\"\nurl = \"ftp://h/\"\nlicences = [\"L\"]",
                "webhooks.url",
            ),
            (
                "name = \"a\"\nurl = \"http://\"\nlicences = [\"L\"]",
                "webhooks.url",
            ),
            (
                "name = \"a\"\nurl = \"http://h/\"\nlicences = []",
                "webhooks.licences",
            ),
            (
                "name = \"a\"\nurl = \"http://h/\"\nlicences = [\"L\"]\nca_file = \"c\"",
                "webhooks.ca_file",
            ),
            (
                "name = \"a\"\nurl = \"http://h/\"\nlicences = [\"L\"]\ncodes = [\"Bad Code\"]",
                "webhooks.codes",
            ),
            (
                "name = \"a\"\nurl = \"http://h/\"\nlicences = [\"L\"]\nbackoff_s = 60\nbackoff_max_s = 30",
                "webhooks.backoff_max_s",
            ),
            (
                "name = \"a\"\nurl = \"http://h/\"\nlicences = [\"L\"]\nmax_attempts = 0",
                "webhooks.max_attempts",
            ),
        ] {
            match load(&format!("{base}{body}\n")) {
                Err(Error::Config { key: k, .. }) => assert_eq!(k, key, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let twice = format!(
            "{base}name = \"a\"\nurl = \"http://h/\"\nlicences = [\"L\"]\n\
             [[webhooks]]\nname = \"a\"\nurl = \"http://h/\"\nlicences = [\"L\"]\n"
        );
        assert!(matches!(
            load(&twice),
            Err(Error::Config {
                key: "webhooks.name",
                ..
            })
        ));
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("trust = \"t\"\nlisten_addr = \"x\"\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("listen_addr") && text.contains("line 2"),
            "{text}"
        );
        assert!(e.hint().unwrap().contains("listen,"), "{e:?}");
        let e = load("").unwrap_err().to_string();
        assert!(e.contains(": trust: missing"), "{e}");
        let e = load("trust = \"t\"\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.to_string().contains(": listen: "), "{e}");
        let e = load("trust = \"t\"\nnonce_ttl_s = 0\n").unwrap_err();
        assert!(e.to_string().contains("nonce_ttl_s"), "{e}");
        let e = load("trust = \"t\"\nnode_rate_per_minute = 0\n").unwrap_err();
        assert!(e.to_string().contains("node_rate_per_minute"), "{e}");
        let e = load("trust = \"t\"\nmax_body_bytes = 99999999\n").unwrap_err();
        assert!(e.to_string().contains("max_body_bytes"), "{e}");
    }

    #[test]
    fn limits_have_defaults_and_ranges() {
        let l = load("trust = \"t\"\n").unwrap().limits;
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            l.header_read_timeout.as_secs(),
            DEFAULT_HEADER_READ_TIMEOUT_S
        );
        assert_eq!(l.idle_timeout.as_secs(), DEFAULT_IDLE_TIMEOUT_S);
        assert_eq!(l.shutdown_grace.as_secs(), DEFAULT_SHUTDOWN_GRACE_S);
        assert!(l.max_concurrent_verifications >= 1);
        let l = load(
            "trust = \"t\"\nmax_connections = 7\nidle_timeout_s = 2\n\
             max_concurrent_verifications = 3\nchallenge_rate_per_minute = 9\n",
        )
        .unwrap()
        .limits;
        assert_eq!(
            (
                l.max_connections,
                l.idle_timeout.as_secs(),
                l.max_concurrent_verifications,
                l.challenge_rate_per_minute
            ),
            (7, 2, 3, 9)
        );
        for key in [
            "max_connections",
            "handshake_timeout_s",
            "header_read_timeout_s",
            "idle_timeout_s",
            "max_in_flight",
            "max_concurrent_verifications",
            "shutdown_grace_s",
            "challenge_rate_per_minute",
            "max_outstanding_challenges",
        ] {
            let e = load(&format!("trust = \"t\"\n{key} = 0\n")).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!(": {key}: 0 is out of range")),
                "{e}"
            );
            assert!(e.hint().unwrap().contains("Limits"), "{e:?}");
            let e = load(&format!("trust = \"t\"\n{key} = 99999999\n")).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn crl_reload_s_is_checked() {
        assert_eq!(
            load("trust = \"t\"\n").unwrap().crl_reload_s,
            DEFAULT_CRL_RELOAD_S
        );
        assert_eq!(
            load("trust = \"t\"\ncrl_reload_s = 0\n")
                .unwrap()
                .crl_reload_s,
            0
        );
        let e = load("trust = \"t\"\ncrl_reload_s = 86401\n").unwrap_err();
        assert!(e.to_string().contains("crl_reload_s"), "{e}");
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        assert_eq!(load("trust = \"t\"\n").unwrap().tls, None);
        let c =
            load("trust = \"t\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/etc/k.pem\"\n").unwrap();
        let tls = c.tls.unwrap();
        assert!(
            tls.cert.is_absolute() && tls.cert.ends_with("tls/cert.pem"),
            "{tls:?}"
        );
        assert_eq!(tls.key, Path::new("/etc/k.pem"));

        let e = load("trust = \"t\"\ntls_cert = \"cert.pem\"\n").unwrap_err();
        assert!(
            e.to_string()
                .ends_with(": tls_key: missing while tls_cert is set"),
            "{e}"
        );
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("give both tls_cert") && hint.contains("or neither"),
            "{hint}"
        );
        let e = load("trust = \"t\"\ntls_key = \"key.pem\"\n").unwrap_err();
        assert!(
            e.to_string()
                .ends_with(": tls_cert: missing while tls_key is set"),
            "{e}"
        );

        // client_auth: a mode, and only with HTTPS.
        let c =
            load("trust = \"t\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_auth = \"optional\"\n")
                .unwrap();
        assert_eq!(c.client_auth, ClientAuth::Optional);
        assert_eq!(
            load("trust = \"t\"\n").unwrap().client_auth,
            ClientAuth::Off
        );
        let e = load("trust = \"t\"\nclient_auth = \"required\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("client_auth: \"required\" needs HTTPS"),
            "{e}"
        );
        let e = load("trust = \"t\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_auth = \"yes\"\n")
            .unwrap_err();
        assert!(e.hint().unwrap().contains("\"optional\""), "{e:?}");

        // Unknown keys are still refused, and the hint lists the TLS keys.
        let e = load("trust = \"t\"\ntls_certificate = \"c\"\n").unwrap_err();
        assert!(e.to_string().contains("tls_certificate"), "{e}");
        assert!(e.hint().unwrap().contains("tls_cert, tls_key"), "{e:?}");
    }

    // Issue 12, reads: `[regulator] redact`.
    #[test]
    fn regulator_redactions_default_to_serials_and_uuids() {
        assert_eq!(
            load("trust = \"t\"\n").unwrap().regulator_redact,
            Redact::DEFAULT
        );
        let c = load(
            "trust = \"t\"\n[regulator]\nredact = [\"subjects\", \"serials\", \"subjects\"]\n",
        )
        .unwrap();
        assert_eq!(c.regulator_redact, [Redact::Subjects, Redact::Serials]);
        let none = load("trust = \"t\"\n[regulator]\nredact = []\n").unwrap();
        assert!(none.regulator_redact.is_empty());
        let e = load("trust = \"t\"\n[regulator]\nredact = [\"names\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("regulator.redact") && e.to_string().contains("\"names\""),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("\"subjects\""), "{e:?}");
    }
}
