//! The HTTP routes, their handlers and their errors.
//!
//! Every error answers `{"code": snake_case, "sentence": "..."}` with a status that says who
//! must act: 400 a malformed request, 401 no valid credential (`unauthenticated`, see
//! [`super::auth`]) or an unknown nonce, 403 a role the route does not admit (`forbidden`) or
//! an expired nonce, 404 no such resource, 409 a replayed nonce, a certificate subject that
//! names several nodes or a retired node, 429 a node over `node_rate_per_minute` or a client
//! over `challenge_rate_per_minute` (with `Retry-After`), 413 a body over
//! `max_body_bytes`, 415 a content type other than `application/jose`, 422 a token that does
//! not verify, 500 the verifier's own fault, 503 the database unreachable or the verifier at a
//! limit of its own (`overloaded`, with `Retry-After`), 408 a request over `request_timeout_s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ring::rand::SecureRandom;
use serde::Serialize;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tppguard_proto::claims::Nonce;
use tppguard_proto::identity::NodeId;

use tokio::sync::oneshot;

use super::AppState;
use super::auth::Principal;
use super::ingest::{self, Job, Submission};
use super::limits;
use super::reads;
pub(super) use super::reads::{NodeFinding, node_of, with_subjects};
use crate::attestation::verify_attestation_with_leases;
use crate::ear::EarStatus;
use crate::licence::verify_licence;
use crate::policy::{MAX_CLOCK_SKEW_S, VerifiedAttestation};
use crate::store::{NewAttestation, NonceUse, Outcome, StoreError};

type Shared = Arc<AppState>;

const CHALLENGE: &str = "/v1/challenge";
const ATTESTATIONS: &str = "/v1/attestations";
const FLEET: &str = "/v1/fleet";
const NODES: &str = "/v1/nodes";
const NODE: &str = "/v1/nodes/{node}";
const NODE_HISTORY: &str = "/v1/nodes/{node}/history";
const LICENCES: &str = "/v1/licences";
const FINDINGS: &str = "/v1/findings";
const COUNTRIES: &str = "/v1/countries";
const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const METRICS: &str = "/metrics";

/// Every route, as (method, path): what `docs/openapi.json` must describe.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", CHALLENGE),
    ("post", ATTESTATIONS),
    ("get", FLEET),
    ("get", NODES),
    ("get", NODE),
    ("get", NODE_HISTORY),
    ("get", LICENCES),
    ("post", LICENCES),
    ("get", FINDINGS),
    ("get", COUNTRIES),
    ("get", HEALTHZ),
    ("get", READYZ),
    ("get", METRICS),
    // Lifecycle (issue 12): super::admin.
    ("post", super::admin::LICENCE_REVOCATION),
    ("post", super::admin::LICENCE_RETIREMENT),
    ("post", super::admin::NODE_RETIREMENT),
    ("get", super::admin::LIFECYCLE),
    ("get", super::scenario::SCENARIO),
    // Shipments and webhooks (issue 15): super::shipments, super::webhooks.
    ("post", super::shipments::SHIPMENTS),
    ("get", super::shipments::SHIPMENTS),
    ("get", super::shipments::SHIPMENT),
    ("get", super::shipments::DEVICE_SITES),
    ("get", super::shipments::OUTBOX),
];

/// The content type of a compact JWS (RFC 7515 section 9.2.1).
const JOSE: &str = "application/jose";
/// The node recorded for an attestation whose signer could not be established.
const UNVERIFIED_NODE: &str = "unverified";

/// The router, with authentication ([`super::auth::authenticate`], on every route; the
/// fallback answers 404 to anyone), the body limit and the request timeout.
pub(super) fn router(state: Shared, max_body_bytes: usize, timeout_s: u64) -> Router {
    let authenticate =
        axum::middleware::from_fn_with_state(Arc::clone(&state), super::auth::authenticate);
    Router::new()
        .route(CHALLENGE, post(challenge))
        .route(ATTESTATIONS, post(attest))
        .route(FLEET, get(reads::fleet))
        .route(NODES, get(reads::nodes))
        .route(NODE, get(reads::node))
        .route(NODE_HISTORY, get(reads::node_history))
        .route(LICENCES, get(reads::licences).post(add_licence))
        .route(FINDINGS, get(reads::findings))
        .route(COUNTRIES, get(reads::countries))
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .route(METRICS, get(reads::metrics))
        .merge(super::admin::routes())
        .route(super::scenario::SCENARIO, get(super::scenario::scenario))
        .merge(super::shipments::routes())
        .route_layer(authenticate)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(timeout_s),
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.in_flight),
            limits::in_flight,
        ))
        .with_state(state)
}

/// An error answer.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    sentence: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers of a limit).
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, sentence: impl Into<String>) -> Self {
        Self {
            status,
            code,
            sentence: sentence.into(),
            retry_after: None,
        }
    }

    /// The same answer, telling the client to retry after `seconds`.
    pub(super) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The stable reason code.
    pub(super) fn code(&self) -> &'static str {
        self.code
    }

    /// The `Retry-After` seconds, if any.
    #[cfg(test)]
    pub(super) fn retry_after_s(&self) -> Option<u64> {
        self.retry_after
    }

    pub(super) fn internal(e: &dyn std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the verifier failed: {e}"),
        )
    }
}

impl ApiError {
    /// The human sentence.
    pub(super) fn sentence(&self) -> &str {
        &self.sentence
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The request's own fault: retrying it cannot help.
            StoreError::InvalidInput { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unrecordable",
                format!("the verifier cannot record this request: {e}"),
            ),
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the verifier's database failed: {e}"),
            ),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        Self::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({"code": self.code, "sentence": self.sentence})),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// The service clock's now.
pub(super) fn now(s: &AppState) -> ApiResult<i64> {
    super::read_clock(&s.clock).map_err(ApiError::from)
}

/// JSON with a trailing newline; key order is the types' field order, so answers are stable.
pub(super) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> ApiResult<Response> {
    let mut body = serde_json::to_vec_pretty(value).map_err(|e| ApiError::internal(&e))?;
    body.push(b'\n');
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; the API is described in docs/openapi.json",
    )
}

/// The body of a `application/jose` request, as text.
pub(super) fn jose_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(JOSE) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the compact JWS with Content-Type: {JOSE}"),
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than the verifier's max_body_bytes",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("the request body could not be read: {e}"),
            )
        }
    })?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_not_utf8",
            "a compact JWS is ASCII text",
        )
    })?;
    Ok(text.trim_ascii().to_owned())
}

#[derive(Serialize)]
struct ChallengeAnswer {
    nonce: String,
    expires_at: i64,
}

async fn challenge(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
) -> ApiResult<Response> {
    let mut bytes = [0u8; 32];
    s.rng
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal(&"the system random source failed"))?;
    // Counted before anything is stored: a refused challenge costs no write.
    let now = now(&s)?;
    let client = limits::client_of(&principal, peer.as_ref().map(|Extension(p)| p));
    if let Err(e) = s
        .challenges
        .admit(client, bytes, now, now.saturating_add(s.nonce_ttl_s))
    {
        s.metrics.refused(e.code());
        return Err(e);
    }
    let (reply, answer) = oneshot::channel();
    ingest::submit(
        &s.queue,
        Job::Challenge {
            nonce: bytes,
            reply,
        },
    )
    .await?;
    let expires_at = answer.await.map_err(|_| writer_gone())??;
    let nonce = Nonce::from_bytes(&bytes).map_err(|e| ApiError::internal(&e))?;
    json_response(
        StatusCode::OK,
        &ChallengeAnswer {
            nonce: nonce.as_str().to_owned(),
            expires_at,
        },
    )
}

fn writer_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the verifier could not finish writing this request (its batch timed out or the writer \
         stopped): retry with a new challenge",
    )
}

#[derive(Serialize)]
struct AttestAnswer {
    status: EarStatus,
    ear: String,
    /// The node: its key's id.
    node: NodeId,
    /// Its certificate subject, for display.
    subject: String,
    /// SHA-256 of the token this answer (and its EAR) appraises.
    token_sha256: String,
    findings: Vec<NodeFinding>,
    /// The node's lease (issue 15): a compact JWS, `typ` `tppguard-lease+jwt`, signed with
    /// the result key, made from the same verdict as `ear`.
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<String>,
}

async fn attest(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let client = limits::client_of(&principal, peer.as_ref().map(|Extension(p)| p));
    let token =
        jose_body(&headers, body).inspect_err(|e| s.metrics.attestation("rejected", e.code))?;
    let now = now(&s)?;
    // Signature and chain checks run off the async workers, at most
    // `max_concurrent_verifications` at once; past it, a short wait, then 503.
    let slot = limits::verification_slot(&s.verifications)
        .await
        .inspect_err(|e| s.metrics.refused(e.code()))?;
    let state = Arc::clone(&s);
    let (token, verified) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        // The lease a gating report carries is checked under this verifier's own key.
        let lease_key = state.result_key.verifying_key();
        let verified =
            verify_attestation_with_leases(&token, &state.trust(), now, None, Some(&lease_key));
        state.metrics.verification(started.elapsed());
        drop(slot);
        (token, verified)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let verified = match verified {
        // The verifier's clock orders a node's attestations, never the node's `iat`.
        Ok(v) => v.received_at_time(now),
        Err(e) => {
            let rejection = Rejection {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: e.code(),
                sentence: e.sentence(),
            };
            return Err(reject(&s, client, &token, None, now, rejection).await);
        }
    };
    let node = verified.node_id();
    // Lifecycle (issue 12): a retired node is not taken back by attesting again.
    if let Some(r) = s.fleet.lifecycle.node_retirement(node) {
        let rejection = Rejection {
            status: StatusCode::CONFLICT,
            code: "node_retired",
            sentence: format!(
                "this node was retired at {} by {}: its attestations no longer count; a \
                 machine returning to service needs a new node key (`init`) and certificate",
                crate::licence::format_rfc3339(r.retired_at),
                tppguard_proto::text::escape(&r.retired_by)
            ),
        };
        return Err(reject(&s, client, &token, Some(&verified), now, rejection).await);
    }
    let subject = verified.node_subject().to_owned();
    let token_sha256 = crate::store::sha256_hex(token.as_bytes());
    let nonce = hex_bytes(verified.claims().eat_nonce.as_str());
    let claims_json =
        serde_json::to_string(verified.claims()).map_err(|e| ApiError::internal(&e))?;
    let (reply, answer) = oneshot::channel();
    let submission = Submission {
        verified,
        token,
        claims_json,
        nonce,
        received_at: now,
        reply,
    };
    ingest::submit(&s.queue, Job::Attest(Box::new(submission))).await?;
    let accepted = answer.await.map_err(|_| writer_gone())??;
    json_response(
        StatusCode::OK,
        &AttestAnswer {
            status: accepted.status,
            ear: accepted.ear,
            node,
            subject,
            token_sha256,
            findings: accepted.findings,
            lease: accepted.lease,
        },
    )
}

/// Why an attestation is refused, and the answer's status.
pub(super) struct Rejection {
    status: StatusCode,
    pub(super) code: &'static str,
    sentence: String,
}

impl Rejection {
    pub(super) fn error(&self) -> ApiError {
        ApiError::new(self.status, self.code, self.sentence.clone())
    }
}

/// The answer to a node over `node_rate_per_minute`. Only attestations whose nonce was fresh
/// count ([`ingest`]): replaying a node's old tokens cannot lock it out.
pub(super) fn rate_limited(now: i64) -> ApiError {
    let wait = limits::next_minute_s(now);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "this node sent more attestations this minute than the verifier's \
             node_rate_per_minute allows: retry in {wait} s with a new challenge"
        ),
    )
    .with_retry_after(wait)
}

/// The rejection for a nonce that was not fresh; `None` for a fresh one.
pub(super) fn nonce_rejection(used: NonceUse) -> Option<Rejection> {
    match used {
        NonceUse::Fresh => None,
        NonceUse::Used => Some(Rejection {
            status: StatusCode::CONFLICT,
            code: "nonce_replayed",
            sentence: "the attestation answers a challenge that was already answered: ask \
                       POST /v1/challenge for a new nonce"
                .to_owned(),
        }),
        NonceUse::Unknown => Some(Rejection {
            status: StatusCode::UNAUTHORIZED,
            code: "nonce_unknown",
            sentence: "the attestation's eat_nonce was not issued by this verifier: ask POST \
                       /v1/challenge for a nonce"
                .to_owned(),
        }),
        NonceUse::Expired => Some(Rejection {
            status: StatusCode::FORBIDDEN,
            code: "nonce_expired",
            sentence: "the challenge expired before the attestation arrived: ask POST \
                       /v1/challenge for a new nonce and answer it sooner"
                .to_owned(),
        }),
    }
}

/// The rejection for an attestation whose `iat` lies outside the challenge's window:
/// `[issued_at - skew, received_at + skew]` (skew [`MAX_CLOCK_SKEW_S`]). The node writes
/// `iat`; the verifier knows when it issued the nonce the token answers and when the token
/// arrived, so a token dated before its own challenge or after its own receipt (beyond clock
/// skew) is refused instead of being believed. `None` inside the window.
pub(super) fn iat_rejection(iat: i64, issued_at: i64, received_at: i64) -> Option<Rejection> {
    let earliest = issued_at.saturating_sub(MAX_CLOCK_SKEW_S);
    let latest = received_at.saturating_add(MAX_CLOCK_SKEW_S);
    if (earliest..=latest).contains(&iat) {
        return None;
    }
    let how = if iat < earliest {
        format!(
            "{} s before the challenge was issued",
            issued_at.abs_diff(iat)
        )
    } else {
        format!(
            "{} s after the verifier received it",
            iat.abs_diff(received_at)
        )
    };
    Some(Rejection {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "iat_outside_challenge_window",
        sentence: format!(
            "the attestation's iat {iat} is {how}: the verifier accepts iat from {earliest} \
             (challenge issued at {issued_at}, less {MAX_CLOCK_SKEW_S} s of clock skew) to \
             {latest} (received at {received_at}, plus {MAX_CLOCK_SKEW_S} s); set the node's \
             clock (NTP) and answer a new challenge"
        ),
    })
}

/// Bytes of a rejected token its record keeps (escaped); the whole token is named by its SHA-256.
pub(super) const REJECTED_PREFIX_BYTES: usize = 256;

/// The record of a rejected attestation (its node when the signature verified): the token's
/// SHA-256, its first bytes (at most [`REJECTED_PREFIX_BYTES`], escaped) and the reason, never
/// the whole token, so a flood of large bodies cannot fill the database.
pub(super) fn rejected_record(
    token: &str,
    verified: Option<&VerifiedAttestation>,
    now: i64,
    r: &Rejection,
) -> NewAttestation {
    NewAttestation {
        node_id: verified.map(VerifiedAttestation::node_id),
        subject: verified
            .map_or(UNVERIFIED_NODE, |v| v.node_subject())
            .to_owned(),
        certified_site: verified.and_then(|v| v.certified_site().cloned()),
        iat: verified.map_or(0, |v| v.claims().iat),
        received_at: now,
        token: rejected_prefix(token),
        token_sha256: Some(crate::store::sha256_hex(token.as_bytes())),
        claims_json: "{}".to_owned(),
        outcome: Outcome::Rejected,
        reason: r.code.to_owned(),
        sentence: r.sentence.clone(),
        ear: None,
        gpu_evidence_json: None,
    }
}

/// The first bytes of `token` as its record keeps them: a compact JWS (base64url and dots)
/// as sent, anything else escaped, so what an attacker sends (NUL, control characters) is
/// recorded readably and fits every backend; marked when cut.
fn rejected_prefix(token: &str) -> String {
    const CUT: &str = "...(truncated)";
    let mut kept = String::with_capacity(REJECTED_PREFIX_BYTES + CUT.len());
    for c in token.escape_debug() {
        if kept.len() + c.len_utf8() > REJECTED_PREFIX_BYTES {
            kept.push_str(CUT);
            break;
        }
        kept.push(c);
    }
    kept
}

/// Records an attestation rejected before its nonce was looked at and gives the answer.
async fn reject(
    s: &AppState,
    client: limits::Client,
    token: &str,
    verified: Option<&VerifiedAttestation>,
    now: i64,
    r: Rejection,
) -> ApiError {
    // An empty token is not recorded; the same token sent again is already recorded. A client
    // (credential and address) has at most `challenge_rate_per_minute` rejections recorded a
    // minute: past it they are answered and counted, never written, so a node credential
    // cannot grow the database at line rate.
    s.metrics.rejected_bytes(token.len());
    let recorded = s.rejections.allow(client, now);
    if !recorded {
        s.metrics.refused("rejection_not_recorded");
    }
    if recorded && !token.is_empty() {
        let record = Box::new(rejected_record(token, verified, now, &r));
        let (reply, answer) = oneshot::channel();
        if let Err(e) = ingest::submit(&s.queue, Job::Rejected { record, reply }).await {
            return e;
        }
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e,
            Err(_) => return writer_gone(),
        }
    }
    s.metrics.attestation("rejected", r.code);
    r.error()
}

/// The bytes of lower-case hex text (pairs that are not hex are skipped: callers pass text
/// already checked to be hex).
pub(super) fn hex_bytes(hex: &str) -> Vec<u8> {
    hex.as_bytes()
        .chunks(2)
        .filter_map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

/// `POST /v1/licences`: an admin credential (checked by [`super::auth`]) adds a licence.
async fn add_licence(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let token = jose_body(&headers, body)?;
    let now = now(&s)?;
    let verified = verify_licence(&token, &s.trust(), now).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            format!("the licence is rejected: {e}"),
        )
    })?;
    // Lifecycle (issue 12): a licence the verifier could never evaluate is never stored.
    if !s
        .fleet
        .lifecycle
        .rule_set_loadable(verified.licence().rule_set())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence_rule_set_unknown",
            format!(
                "the licence is rejected: {}",
                super::lifecycle::unknown_rule_set(verified.licence().rule_set())
            ),
        ));
    }
    let id = verified.licence().id().to_owned();
    let new = s.store.add_licence(&id, &token, now).await?;
    json_response(
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &json!({"licence": id, "added": new}),
    )
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(s): State<Shared>) -> ApiResult<Response> {
    if s.queue.is_closed() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writer_stopped",
            "the verifier's writer task stopped: restart the verifier",
        ));
    }
    s.store.ping().await?;
    Ok((StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The OpenAPI description names exactly the routes the router serves.
    #[test]
    fn openapi_matches_the_routes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut documented = BTreeSet::new();
        for (p, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.clone(), p.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(served, documented);
        assert_eq!(served.len(), ROUTES.len(), "a route is listed twice");
    }

    /// The window is `[issued - skew, received + skew]`, both ends included.
    #[test]
    fn iat_window_bounds_are_inclusive_and_named() {
        let (issued, received) = (1_000_000, 1_000_060);
        for iat in [
            issued - MAX_CLOCK_SKEW_S,
            issued,
            received,
            received + MAX_CLOCK_SKEW_S,
        ] {
            assert!(iat_rejection(iat, issued, received).is_none(), "{iat}");
        }
        let early = iat_rejection(issued - MAX_CLOCK_SKEW_S - 1, issued, received).unwrap();
        assert_eq!(early.code, "iat_outside_challenge_window");
        assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            early
                .sentence
                .contains("301 s before the challenge was issued"),
            "{}",
            early.sentence
        );
        let late = iat_rejection(received + MAX_CLOCK_SKEW_S + 1, issued, received).unwrap();
        assert!(
            late.sentence
                .contains("301 s after the verifier received it")
                && late.sentence.contains("from 999700")
                && late.sentence.contains("to 1000360"),
            "{}",
            late.sentence
        );
        // No overflow at the extremes of i64.
        assert!(iat_rejection(i64::MIN, i64::MIN, i64::MAX).is_none());
        assert!(iat_rejection(i64::MAX, 0, 0).is_some());
    }

    #[test]
    fn rejected_records_keep_a_hash_and_a_short_escaped_prefix() {
        let r = Rejection {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "jws_malformed",
            sentence: "no".to_owned(),
        };
        let big = "a\u{0}".repeat(512 << 10);
        let rec = rejected_record(&big, None, 7, &r);
        assert!(
            rec.token.len() <= REJECTED_PREFIX_BYTES + 16,
            "{}",
            rec.token.len()
        );
        assert!(rec.token.starts_with("a\\0a\\0") && rec.token.ends_with("(truncated)"));
        assert_eq!(
            rec.token_sha256.as_deref(),
            Some(crate::store::sha256_hex(big.as_bytes()).as_str())
        );
        assert_eq!(
            (rec.reason.as_str(), rec.outcome),
            ("jws_malformed", Outcome::Rejected)
        );
        let small = rejected_record("eyJ.e30.sig", None, 7, &r);
        assert_eq!(small.token, "eyJ.e30.sig", "a short JWS is kept as sent");
    }

    #[test]
    fn hex_bytes_reads_lower_case_hex() {
        assert_eq!(hex_bytes("00ff10"), [0, 255, 16]);
    }
}
