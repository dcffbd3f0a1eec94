//! The `serve` configuration file (TOML, every key checked; format in `docs/serve.md` and
//! `deploy/verifier.toml`). Relative paths are read from the configuration file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tppguard_proto::jws::MAX_JWS_BYTES;

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
    crl_reload_s: Option<u64>,
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
    /// The file holding the bearer token for `POST /v1/licences`; `None`: that endpoint is off.
    pub admin_token_file: Option<PathBuf>,
    /// The certificate and key to serve HTTPS with; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Seconds between reloads of trust.toml's CRLs while serving; 0: only on SIGHUP.
    pub crl_reload_s: u64,
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
                   admin_token_file, tls_cert, tls_key, crl_reload_s (docs/serve.md)"
                .to_owned(),
        })?;
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
                "name the trust file `tppguard-verifier pki init` wrote, e.g. trust = \
                 \"pki/trust.toml\"",
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
            crl_reload_s,
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

        // Unknown keys are still refused, and the hint lists the TLS keys.
        let e = load("trust = \"t\"\ntls_certificate = \"c\"\n").unwrap_err();
        assert!(e.to_string().contains("tls_certificate"), "{e}");
        assert!(e.hint().unwrap().contains("tls_cert, tls_key"), "{e:?}");
    }
}
