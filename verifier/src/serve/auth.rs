//! Who is asking: the roles a credential grants, the principal a request authenticated as,
//! which roles each route admits ([`POLICY`]) and the middleware that enforces it
//! ([`authenticate`]).
//!
//! Every route but `/healthz` and `/readyz` requires a principal. A request proves one with
//! a bearer token (`Authorization: Bearer tpg_<id>_<secret>`, issued by `tppguard-verifier
//! token issue`; the database keeps only the SHA-256 of the secret, and the presented secret's
//! digest is compared in constant time), the token of `admin_token_file` (an admin
//! credential), or, over HTTPS with `client_auth`, a client certificate that chains to the
//! operator CA (a node). No credential, or one that does not check out: 401 `unauthenticated`;
//! a role the route does not admit: 403 `forbidden`. What a role may see is the read views'
//! business.
//!
//! Tokens are served from memory. The cache is reloaded from the database at most once per
//! second of the verifier's clock, by the first authenticated request of a new second, so a
//! token issued or revoked with the CLI takes effect within about a second, without a
//! restart, and a stranger presenting random token ids never causes more than that one query
//! a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::ApiError;
use super::tls::PeerCertificates;
use crate::store::{ApiToken, Store};

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A GPU node: asks for challenges and posts attestations.
    Node,
    /// The operator: reads everything.
    Operator,
    /// A regulator: reads, through the redactions the configuration names.
    Regulator,
    /// A vendor: reads only what concerns the licences its credential names.
    Vendor,
    /// Administration: licences, revocation, node retirement.
    Admin,
    /// Scrapes `/metrics` only.
    Metrics,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Node,
        Self::Operator,
        Self::Regulator,
        Self::Vendor,
        Self::Admin,
        Self::Metrics,
    ];

    /// The role's name, as the CLI, the database and the docs write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Operator => "operator",
            Self::Regulator => "regulator",
            Self::Vendor => "vendor",
            Self::Admin => "admin",
            Self::Metrics => "metrics",
        }
    }

    /// The role named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's name (as issued; for logs and records).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// For [`Role::Vendor`]: the licence ids it may see; empty for every other role.
    pub licences: Vec<String>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a credential (health checks).
    Public,
    /// A principal of one of these roles.
    Roles(&'static [Role]),
}

const NODES: Access = Access::Roles(&[Role::Node]);
const READERS: Access = Access::Roles(&[Role::Operator, Role::Regulator, Role::Vendor]);
const ADMINS: Access = Access::Roles(&[Role::Admin]);
/// The lifecycle records and what-if scenarios name every licensee's licences and nodes: not
/// for a vendor.
const AUDITORS: Access = Access::Roles(&[Role::Operator, Role::Regulator, Role::Admin]);
/// Issue 15: who posts shipments, and who reads them (a vendor only its licences').
const SHIPPERS: Access = Access::Roles(&[Role::Vendor, Role::Admin]);
const SHIPMENT_READERS: Access =
    Access::Roles(&[Role::Operator, Role::Regulator, Role::Vendor, Role::Admin]);
const SCRAPERS: Access = Access::Roles(&[Role::Metrics, Role::Operator, Role::Admin]);

/// Every route's access, as (method, path, access): one row per route of
/// [`super::ROUTES`] (a test keeps the two in step). A route with no row is refused to
/// everyone.
pub const POLICY: &[(&str, &str, Access)] = &[
    ("post", "/v1/challenge", NODES),
    ("post", "/v1/attestations", NODES),
    ("get", "/v1/fleet", READERS),
    ("get", "/v1/nodes", READERS),
    ("get", "/v1/nodes/{node}", READERS),
    ("get", "/v1/nodes/{node}/history", READERS),
    ("get", "/v1/licences", READERS),
    ("post", "/v1/licences", ADMINS),
    ("post", "/v1/licences/{id}/revocation", ADMINS),
    ("post", "/v1/licences/{id}/retirement", ADMINS),
    ("post", "/v1/nodes/{node}/retirement", ADMINS),
    ("get", "/v1/lifecycle", AUDITORS),
    ("get", "/v1/findings", READERS),
    ("get", "/v1/countries", READERS),
    ("get", "/healthz", Access::Public),
    ("get", "/readyz", Access::Public),
    ("get", "/metrics", SCRAPERS),
    ("get", "/v1/scenario", AUDITORS),
    // Shipments and webhooks (issue 15): a vendor posts and reads its licences' shipments.
    ("post", "/v1/shipments", SHIPPERS),
    ("get", "/v1/shipments", SHIPMENT_READERS),
    ("get", "/v1/shipments/{id}", SHIPMENT_READERS),
    ("get", "/v1/devices/{identity}/sites", SHIPMENT_READERS),
    ("get", "/v1/webhooks/outbox", ADMINS),
];

/// The access row of `method` (lower case) and `path` (as routed, `{node}` and all).
pub fn access(method: &str, path: &str) -> Option<Access> {
    // axum answers HEAD with a GET route's handler (without the body): the same access.
    let method = if method == "head" { "get" } else { method };
    POLICY
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, a)| *a)
}

/// Whether `role` may call `method path`.
pub fn admits(method: &str, path: &str, role: Role) -> bool {
    match access(method, path) {
        Some(Access::Public) => true,
        Some(Access::Roles(roles)) => roles.contains(&role),
        None => false,
    }
}

/// The text before a token's id.
pub const TOKEN_PREFIX: &str = "tpg_";
/// Bytes of a token id (hex-encoded in the token).
pub const TOKEN_ID_BYTES: usize = 8;
/// Bytes of a token secret (hex-encoded in the token): 256 bits.
pub const TOKEN_SECRET_BYTES: usize = 32;

/// A presented token, split: `tpg_<id>_<secret>`, both lower-case hex of the right length.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenParts<'a> {
    /// The public id.
    pub id: &'a str,
    /// The secret's text.
    pub secret: &'a str,
}

impl<'a> TokenParts<'a> {
    /// Splits `text`; `None` when it is not a token of this form.
    pub fn parse(text: &'a str) -> Option<Self> {
        let (id, secret) = text.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
        let hex = |s: &str, bytes: usize| {
            s.len() == 2 * bytes && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        (hex(id, TOKEN_ID_BYTES) && hex(secret, TOKEN_SECRET_BYTES)).then_some(Self { id, secret })
    }
}

/// SHA-256 of a token secret, lower-case hex: what the database keeps.
pub fn secret_digest(secret: &str) -> String {
    crate::store::sha256_hex(secret.as_bytes())
}

/// One usable token, as cached.
struct Cached {
    principal: Principal,
    /// HMAC (under [`Credentials::key`]) of the stored secret digest.
    tag: hmac::Tag,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// Why a request has no principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No `Authorization` header and no client certificate.
    Missing,
    /// An `Authorization` header that is not `Bearer` and a token.
    Malformed,
    /// A token id this verifier does not know.
    Unknown,
    /// A known id with the wrong secret.
    Secret,
    /// A token past its expiry.
    Expired,
    /// A revoked token.
    Revoked,
    /// A client certificate that does not chain to the operator CA.
    Certificate,
    /// Every verification slot stayed busy: the certificate could not be checked now.
    Overloaded,
}

impl Failure {
    /// The metrics label and log reason.
    pub(crate) const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown_token",
            Self::Secret => "wrong_secret",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Certificate => "certificate_rejected",
            Self::Overloaded => "overloaded",
        }
    }

    fn sentence(self) -> &'static str {
        match self {
            Self::Missing => {
                "this route needs a credential: send Authorization: Bearer TOKEN (issued by \
                 `tppguard-verifier token issue`), or a node certificate over HTTPS where \
                 client_auth is on (docs/serve.md, Roles and credentials)"
            }
            Self::Malformed => {
                "the Authorization header is not `Bearer TOKEN`: send the token exactly as \
                 `tppguard-verifier token issue` printed it"
            }
            Self::Unknown | Self::Secret => {
                "the bearer token is not valid here: check it was issued for this verifier \
                 (`tppguard-verifier token list`), or ask for a new one"
            }
            Self::Expired => "the bearer token expired: ask the operator for a new one",
            Self::Revoked => "the bearer token was revoked: ask the operator for a new one",
            Self::Certificate => {
                "the client certificate does not chain to the operator CA pinned in \
                 trust.toml: present the node's certificate (node-chain.pem)"
            }
            Self::Overloaded => {
                "the verifier is at its max_concurrent_verifications limit: retry in a second"
            }
        }
    }
}

/// The credentials `serve` accepts: the token cache and the `admin_token_file` token.
pub(crate) struct Credentials {
    /// A per-process key: cached digests are kept and compared as HMAC tags under it
    /// (`hmac::verify`: constant time).
    key: hmac::Key,
    tokens: RwLock<Arc<HashMap<String, Cached>>>,
    /// The clock second of the last reload (`i64::MIN`: never).
    loaded_at: AtomicI64,
    /// The tag of the `admin_token_file` token, if configured.
    admin_file: Option<hmac::Tag>,
}

impl Credentials {
    /// Empty credentials (loaded at the first request), with `admin_file`'s token if given.
    pub(crate) fn new(admin_file: Option<&[u8]>) -> Result<Self, crate::Error> {
        let key = super::random_key()?;
        let admin_file = admin_file.map(|token| hmac::sign(&key, token));
        Ok(Self {
            key,
            tokens: RwLock::default(),
            loaded_at: AtomicI64::new(i64::MIN),
            admin_file,
        })
    }

    /// Reloads the tokens from `store` unless they were loaded at this clock second already
    /// (one caller of a second reloads; the others go on with the tokens they have). A failed reload
    /// keeps the tokens loaded before. Returns whether this call reloaded.
    pub(crate) async fn refresh(&self, store: &Store, now: i64) -> bool {
        let last = self.loaded_at.load(Ordering::Acquire);
        // Any other second than the last reload's (a clock set back too).
        if now == last
            || self
                .loaded_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        match store.recent_api_tokens(now).await {
            Ok(rows) => {
                let loaded = self.cache(&rows);
                let mut tokens = match self.tokens.write() {
                    Ok(t) => t,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *tokens = Arc::new(loaded);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reloading API tokens failed; keeping those loaded")
            }
        }
        true
    }

    fn cache(&self, rows: &[ApiToken]) -> HashMap<String, Cached> {
        let mut map = HashMap::with_capacity(rows.len());
        for t in rows {
            let (Some(role), Some(digest)) = (Role::parse(&t.role), hex32(&t.secret_sha256)) else {
                tracing::warn!(id = %t.id, "a stored API token is unreadable; it is not accepted");
                continue;
            };
            map.insert(
                t.id.clone(),
                Cached {
                    principal: Principal {
                        name: t.name.clone(),
                        role,
                        licences: t.licences.clone(),
                    },
                    tag: hmac::sign(&self.key, &digest),
                    expires_at: t.expires_at,
                    revoked_at: t.revoked_at,
                },
            );
        }
        map
    }

    /// The principal `bearer` proves at `now`.
    pub(crate) fn check(&self, bearer: &str, now: i64) -> Result<Principal, Failure> {
        let Some(parts) = TokenParts::parse(bearer) else {
            // Not a `token issue` token: the admin_token_file token, or nothing.
            return match &self.admin_file {
                Some(tag) if hmac::verify(&self.key, bearer.as_bytes(), tag.as_ref()).is_ok() => {
                    Ok(Principal {
                        name: "admin_token_file".to_owned(),
                        role: Role::Admin,
                        licences: Vec::new(),
                    })
                }
                _ => Err(Failure::Unknown),
            };
        };
        let tokens = match self.tokens.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let cached = tokens.get(parts.id).ok_or(Failure::Unknown)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, parts.secret.as_bytes());
        hmac::verify(&self.key, digest.as_ref(), cached.tag.as_ref())
            .map_err(|_| Failure::Secret)?;
        if cached.revoked_at.is_some() {
            return Err(Failure::Revoked);
        }
        if cached.expires_at.is_some_and(|e| now >= e) {
            return Err(Failure::Expired);
        }
        Ok(cached.principal.clone())
    }
}

/// 32 bytes from 64 lower-case hex digits.
fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = super::api::hex_bytes(text);
    (text.len() == 64).then_some(())?;
    bytes.try_into().ok()
}

/// The middleware: finds the route's [`Access`], authenticates the request, checks the role
/// and hands the [`Principal`] to the handler as an `Extension`.
pub(crate) async fn authenticate(
    State(s): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_ascii_lowercase();
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let roles = match access(&method, &path) {
        Some(Access::Public) => return next.run(request).await,
        Some(Access::Roles(roles)) => roles,
        None => {
            tracing::error!(%method, %path, "a route without an access policy row was called");
            return forbidden("this route has no access policy; nobody may call it")
                .into_response();
        }
    };
    let now = match super::read_clock(&s.clock) {
        Ok(now) => now,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_owned));
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerCertificates>>()
        .map(|c| c.0.clone());
    let principal = match principal(&s, authorization, peer, now).await {
        Ok(p) => p,
        Err(Failure::Overloaded) => {
            s.metrics.refused("overloaded");
            return super::limits::overloaded("max_concurrent_verifications").into_response();
        }
        Err(failure) => {
            s.metrics.auth_failure(failure.reason());
            // At debug: a stranger's flood must not become a log flood; the metric counts it.
            tracing::debug!(%method, %path, reason = failure.reason(), "request not authenticated");
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                failure.sentence(),
            )
            .into_response();
        }
    };
    if !admits(&method, &path, principal.role) {
        s.metrics.auth_failure("forbidden");
        tracing::info!(%method, %path, role = %principal.role, name = ?principal.name, "role not admitted");
        let admitted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        return forbidden(&format!(
            "a {} credential may not call {} {path}: it takes {}",
            principal.role,
            method.to_ascii_uppercase(),
            admitted.join(" or ")
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn forbidden(sentence: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", sentence)
}

/// The principal a request proves: its `Authorization` header (`Err` when not text), else
/// its client certificate chain.
async fn principal(
    s: &AppState,
    authorization: Option<Result<String, header::ToStrError>>,
    peer: Option<PeerCertificates>,
    now: i64,
) -> Result<Principal, Failure> {
    if let Some(value) = authorization {
        let text = value.map_err(|_| Failure::Malformed)?;
        let (scheme, token) = text.trim().split_once(' ').ok_or(Failure::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Malformed);
        }
        if s.credentials.refresh(&s.store, now).await {
            s.metrics.credential_reload();
        }
        return s.credentials.check(token.trim(), now);
    }
    let chain = peer.filter(|c| !c.is_empty()).ok_or(Failure::Missing)?;
    // Path validation is CPU work a stranger's certificate can ask for on every request: off
    // the async workers and within `max_concurrent_verifications`, as attestations' checks.
    let slot = super::limits::verification_slot(&s.verifications)
        .await
        .map_err(|_| Failure::Overloaded)?;
    let trust = s.trust();
    let verified = tokio::task::spawn_blocking(move || {
        let verified = trust.verify_node(chain.chain(), now);
        drop(slot);
        verified
    })
    .await
    .map_err(|_| Failure::Overloaded)?;
    let leaf = verified.map_err(|_| Failure::Certificate)?;
    Ok(Principal {
        name: leaf.leaf().subject().to_owned(),
        role: Role::Node,
        licences: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn token(id: &str, secret: &str, role: &str) -> ApiToken {
        ApiToken {
            id: id.to_owned(),
            name: "n".to_owned(),
            role: role.to_owned(),
            licences: Vec::new(),
            secret_sha256: secret_digest(secret),
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        }
    }

    /// Every route has exactly one policy row, and every row a route.
    #[test]
    fn every_route_has_a_policy_row() {
        let routes: BTreeSet<(&str, &str)> = super::super::ROUTES.iter().copied().collect();
        let rows: BTreeSet<(&str, &str)> = POLICY.iter().map(|(m, p, _)| (*m, *p)).collect();
        assert_eq!(routes, rows);
        assert_eq!(rows.len(), POLICY.len(), "a route has two rows");
        assert!(admits("post", "/v1/attestations", Role::Node));
        assert!(!admits("get", "/v1/fleet", Role::Node));
        assert!(!admits("post", "/v1/licences", Role::Vendor));
        assert!(admits("get", "/metrics", Role::Metrics));
        assert!(!admits("get", "/v1/fleet", Role::Metrics));
        assert!(admits("get", "/healthz", Role::Metrics));
        assert!(!admits("get", "/v1/unlisted", Role::Admin));
        // HEAD is a GET without the body: the same access, no more.
        assert!(admits("head", "/healthz", Role::Metrics));
        assert!(admits("head", "/v1/fleet", Role::Regulator));
        assert!(!admits("head", "/v1/fleet", Role::Node));
        assert!(!admits("head", "/v1/challenge", Role::Node));
    }

    /// docs/openapi.json asks for a credential exactly where the policy does.
    #[test]
    fn openapi_security_follows_the_policy() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        for (method, path, access) in POLICY {
            let security = &doc["paths"][path][method]["security"];
            let open = security.as_array().is_some_and(Vec::is_empty);
            assert_eq!(
                open,
                *access == Access::Public,
                "{method} {path}: {security}"
            );
            if let Access::Roles(roles) = access {
                let text = doc["paths"][path][method]["description"].as_str().unwrap();
                for r in *roles {
                    assert!(text.contains(r.as_str()), "{method} {path}: {text}");
                }
            }
        }
    }

    #[test]
    fn token_parts_take_only_the_issued_form() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        let text = format!("tpg_{id}_{secret}");
        assert_eq!(
            TokenParts::parse(&text),
            Some(TokenParts {
                id,
                secret: &secret
            })
        );
        for bad in [
            format!("tpg_{id}"),
            format!("tpg_{id}_{}", &secret[1..]),
            format!("tpg_{}_{secret}", id.to_uppercase()),
            format!("xyz_{id}_{secret}"),
            format!("tpg_{id}_{secret}_"),
        ] {
            assert_eq!(TokenParts::parse(&bad), None, "{bad}");
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }

    /// The comparison path: the presented secret's digest is checked with `hmac::verify`
    /// against a tag of the stored digest, so no byte-by-byte comparison of secrets exists;
    /// a secret differing in its last byte fails like one differing in its first.
    #[test]
    fn secrets_are_compared_as_hmac_tags() {
        let c = Credentials::new(Some(b"a-long-admin-token-from-a-file")).unwrap();
        let (id, secret) = ("00000000000000aa", "cd".repeat(32));
        let mut revoked = token("00000000000000bb", &secret, "operator");
        revoked.revoked_at = Some(5);
        *c.tokens.write().unwrap() = Arc::new(c.cache(&[token(id, &secret, "regulator"), revoked]));
        let ok = c.check(&format!("tpg_{id}_{secret}"), 10).unwrap();
        assert_eq!(ok.role, Role::Regulator);
        let mut last = secret.clone();
        last.replace_range(63.., "e");
        let mut first = secret.clone();
        first.replace_range(..1, "e");
        for wrong in [last, first] {
            assert_eq!(
                c.check(&format!("tpg_{id}_{wrong}"), 10),
                Err(Failure::Secret)
            );
        }
        assert_eq!(
            c.check(&format!("tpg_{id}_{secret}"), 100),
            Err(Failure::Expired)
        );
        assert_eq!(
            c.check(&format!("tpg_00000000000000bb_{secret}"), 10),
            Err(Failure::Revoked)
        );
        assert_eq!(
            c.check(&format!("tpg_00000000000000cc_{secret}"), 10),
            Err(Failure::Unknown)
        );
        assert_eq!(
            c.check("a-long-admin-token-from-a-file", 10).unwrap().role,
            Role::Admin
        );
        assert_eq!(
            c.check("a-long-admin-token-from-a-fil", 10),
            Err(Failure::Unknown)
        );
    }
}
