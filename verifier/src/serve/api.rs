//! The HTTP routes, their handlers and their errors.
//!
//! Every error answers `{"code": snake_case, "sentence": "..."}` with a status that says who
//! must act: 400 a malformed request, 401 no valid credential (unknown nonce, admin token),
//! 403 an expired nonce, 404 no such resource, 409 a replayed nonce, a certificate subject
//! that names several nodes or a retired node, 429 a node over
//! `node_rate_per_minute`, 413 a body over
//! `max_body_bytes`, 415 a content type other than `application/jose`, 422 a token that does
//! not verify, 500 the verifier's own fault, 503 the database unreachable, 408 a request over
//! `request_timeout_s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ring::hmac;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tppguard_proto::claims::Nonce;
use tppguard_proto::identity::NodeId;

use tokio::sync::oneshot;

use super::AppState;
use super::ingest::{self, Job, Submission};
use crate::attestation::verify_attestation;
use crate::ear::EarStatus;
use crate::licence::verify_licence;
use crate::policy::{
    Finding, FleetVerdict, MAX_CLOCK_SKEW_S, NodeVerdict, Severity, VerifiedAttestation,
};
use crate::store::{MAX_HISTORY, NewAttestation, NonceUse, Outcome, StoreError};

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
];

/// The content type of a compact JWS (RFC 7515 section 9.2.1).
const JOSE: &str = "application/jose";
/// The node recorded for an attestation whose signer could not be established.
const UNVERIFIED_NODE: &str = "unverified";
/// Default length of a node's history.
const DEFAULT_HISTORY: usize = 100;

/// The router, with the body limit and the request timeout.
pub(super) fn router(state: Shared, max_body_bytes: usize, timeout_s: u64) -> Router {
    Router::new()
        .route(CHALLENGE, post(challenge))
        .route(ATTESTATIONS, post(attest))
        .route(FLEET, get(fleet))
        .route(NODES, get(nodes))
        .route(NODE, get(node))
        .route(NODE_HISTORY, get(node_history))
        .route(LICENCES, get(licences).post(add_licence))
        .route(FINDINGS, get(findings))
        .route(COUNTRIES, get(countries))
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .route(METRICS, get(metrics))
        .merge(super::admin::routes(&state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(timeout_s),
        ))
        .with_state(state)
}

/// An error answer.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    sentence: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, sentence: impl Into<String>) -> Self {
        Self {
            status,
            code,
            sentence: sentence.into(),
        }
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
        (
            self.status,
            axum::Json(json!({"code": self.code, "sentence": self.sentence})),
        )
            .into_response()
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

fn now() -> ApiResult<i64> {
    crate::unix_now().map_err(ApiError::from)
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

async fn challenge(State(s): State<Shared>) -> ApiResult<Response> {
    let mut bytes = [0u8; 32];
    s.rng
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal(&"the system random source failed"))?;
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
}

/// A finding as the API answers it: the policy's finding and, when it names a node (by id),
/// that node's certificate subject, for display.
#[derive(Debug, Clone, Serialize)]
pub(super) struct NodeFinding {
    #[serde(flatten)]
    finding: Finding,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
}

/// `findings` with the subjects of the nodes they name, from `verdict`.
pub(super) fn with_subjects<'a>(
    verdict: &FleetVerdict,
    findings: impl IntoIterator<Item = &'a Finding>,
) -> Vec<NodeFinding> {
    findings
        .into_iter()
        .map(|f| NodeFinding {
            subject: f
                .node
                .as_deref()
                .and_then(NodeId::from_hex)
                .and_then(|id| node_of(verdict, id))
                .map(|n| n.subject.clone()),
            finding: f.clone(),
        })
        .collect()
}

/// The node `id` of `verdict` (its nodes are in node id order).
pub(super) fn node_of(verdict: &FleetVerdict, id: NodeId) -> Option<&NodeVerdict> {
    verdict
        .nodes
        .binary_search_by(|n| n.node.cmp(&id))
        .ok()
        .and_then(|i| verdict.nodes.get(i))
}

async fn attest(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let token = jose_body(&headers, body)?;
    let now = now()?;
    let started = Instant::now();
    let verified = verify_attestation(&token, &s.trust(), now, None);
    s.metrics.verification(started.elapsed());
    let verified = match verified {
        // The verifier's clock orders a node's attestations, never the node's `iat`.
        Ok(v) => v.received_at_time(now),
        Err(e) => {
            let rejection = Rejection {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: e.code(),
                sentence: e.sentence(),
            };
            return Err(reject(&s, &token, None, now, rejection).await);
        }
    };
    if !s.limiter.allow(verified.node_id(), now) {
        // Not recorded: a flood must not fill the database.
        s.metrics.attestation("rejected", "rate_limited");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "this node sent more attestations this minute than the verifier's \
             node_rate_per_minute allows: retry next minute",
        ));
    }
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
        return Err(reject(&s, &token, Some(&verified), now, rejection).await);
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

/// The record of a rejected attestation (its node when the signature verified).
pub(super) fn rejected_record(
    token: &str,
    verified: Option<&VerifiedAttestation>,
    now: i64,
    r: &Rejection,
) -> NewAttestation {
    // A compact JWS is base64url and dots; anything else is kept escaped, so what an attacker
    // sends (NUL, control characters) is recorded readably and fits every backend.
    let jws_alphabet = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let token = if jws_alphabet {
        token.to_owned()
    } else {
        // Escaping can lengthen it: keep what fits the store, marked as cut.
        const CUT: &str = "...(truncated)";
        let mut escaped = String::new();
        for c in token.escape_debug() {
            if escaped.len() + c.len_utf8() + CUT.len() > crate::store::MAX_TOKEN_LEN {
                escaped.push_str(CUT);
                break;
            }
            escaped.push(c);
        }
        escaped
    };
    NewAttestation {
        node_id: verified.map(VerifiedAttestation::node_id),
        subject: verified
            .map_or(UNVERIFIED_NODE, |v| v.node_subject())
            .to_owned(),
        certified_site: verified.and_then(|v| v.certified_site().cloned()),
        iat: verified.map_or(0, |v| v.claims().iat),
        received_at: now,
        token,
        claims_json: "{}".to_owned(),
        outcome: Outcome::Rejected,
        reason: r.code.to_owned(),
        sentence: r.sentence.clone(),
        ear: None,
    }
}

/// Records an attestation rejected before its nonce was looked at and gives the answer.
async fn reject(
    s: &AppState,
    token: &str,
    verified: Option<&VerifiedAttestation>,
    now: i64,
    r: Rejection,
) -> ApiError {
    // An empty or oversized token is not recorded (the store bounds what it keeps); the same
    // token sent again is already recorded.
    if !token.is_empty() && token.len() <= crate::store::MAX_TOKEN_LEN {
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

/// The fleet now: this replica's in-memory fleet, caught up with the database.
async fn current(s: &Shared) -> ApiResult<FleetVerdict> {
    let now = now()?;
    s.fleet.refresh(&s.store).await?;
    let basis = s.fleet.basis(&s.trust(), now)?;
    let state = Arc::clone(s);
    let verdict = tokio::task::spawn_blocking(move || state.fleet.evaluate(&basis, &[]))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    s.metrics.usage(&verdict);
    Ok(verdict)
}

async fn fleet(State(s): State<Shared>) -> ApiResult<Response> {
    json_response(StatusCode::OK, &current(&s).await?)
}

#[derive(Serialize)]
struct NodeSummary<'a> {
    node: NodeId,
    subject: &'a str,
    token_sha256: &'a str,
    licence: Option<&'a str>,
    iat: i64,
    age_s: u64,
    stale: bool,
    severity: Severity,
    devices_counted: u64,
    tpp_counted: tppguard_proto::units::Tpp,
    gpus: usize,
}

impl<'a> From<&'a NodeVerdict> for NodeSummary<'a> {
    fn from(n: &'a NodeVerdict) -> Self {
        Self {
            node: n.node,
            subject: &n.subject,
            token_sha256: &n.token_sha256,
            licence: n.licence.as_deref(),
            iat: n.iat,
            age_s: n.age_s,
            stale: n.stale,
            severity: n.severity,
            devices_counted: n.devices_counted,
            tpp_counted: n.tpp_counted,
            gpus: n.gpus.len(),
        }
    }
}

async fn nodes(State(s): State<Shared>) -> ApiResult<Response> {
    let verdict = current(&s).await?;
    let list: Vec<NodeSummary<'_>> = verdict.nodes.iter().map(NodeSummary::from).collect();
    json_response(
        StatusCode::OK,
        &json!({"at": verdict.at, "rule_set": verdict.rule_set, "nodes": list}),
    )
}

pub(super) fn unknown_node(node: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "node_unknown",
        format!(
            "no node {:?} is known: name a node by its id (64 hex digits, GET /v1/nodes) or by a \
             certificate subject only one node has",
            node
        ),
    )
}

/// The node `text` names: its node id (64 hex digits), or a certificate subject that exactly
/// one node of the fleet has. A subject shared by several nodes (machines whose certificates
/// share a subject are distinct nodes) is ambiguous: 409 with their ids.
pub(super) async fn resolve_node(s: &Shared, text: &str) -> ApiResult<NodeId> {
    if let Some(id) = NodeId::from_hex(text) {
        return Ok(id);
    }
    if text.is_empty() || text.len() > crate::store::MAX_SUBJECT_LEN {
        return Err(unknown_node(text));
    }
    s.fleet.refresh(&s.store).await?;
    match s.fleet.nodes_with_subject(text).as_slice() {
        [] => Err(unknown_node(text)),
        [id] => Ok(*id),
        ids => Err(ApiError::new(
            StatusCode::CONFLICT,
            "node_ambiguous",
            format!(
                "{} nodes have the certificate subject {:?}: name one by its node id ({})",
                ids.len(),
                text,
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

async fn node(State(s): State<Shared>, Path(node): Path<String>) -> ApiResult<Response> {
    let id = resolve_node(&s, &node).await?;
    let verdict = current(&s).await?;
    let Some(n) = node_of(&verdict, id) else {
        return Err(unknown_node(&node));
    };
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "node": n,
            "findings": with_subjects(&verdict, verdict.finding_index().for_node(n)),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct HistoryEntry<'a> {
    id: i64,
    subject: &'a str,
    iat: i64,
    received_at: i64,
    token_sha256: &'a str,
    outcome: &'static str,
    reason: &'a str,
    sentence: &'a str,
    ear: Option<&'a str>,
}

fn bad_query(e: &QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_query",
        format!("the query string is not understood: {}", e.body_text()),
    )
}

async fn node_history(
    State(s): State<Shared>,
    Path(node): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be 1 to {MAX_HISTORY}"),
        ));
    }
    let id = resolve_node(&s, &node).await?;
    let rows = s.store.node_history(&id, limit).await?;
    if rows.is_empty() {
        return Err(unknown_node(&node));
    }
    let entries: Vec<HistoryEntry<'_>> = rows
        .iter()
        .map(|a| HistoryEntry {
            id: a.id,
            subject: &a.subject,
            iat: a.iat,
            received_at: a.received_at,
            token_sha256: &a.token_sha256,
            outcome: a.outcome.as_str(),
            reason: &a.reason,
            sentence: &a.sentence,
            ear: a.ear.as_deref(),
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"node": id, "attestations": entries}),
    )
}

async fn licences(State(s): State<Shared>) -> ApiResult<Response> {
    let verdict = current(&s).await?;
    json_response(
        StatusCode::OK,
        &json!({"at": verdict.at, "rule_set": verdict.rule_set, "licences": verdict.licences}),
    )
}

async fn countries(State(s): State<Shared>) -> ApiResult<Response> {
    let verdict = current(&s).await?;
    json_response(
        StatusCode::OK,
        &json!({"at": verdict.at, "rule_set": verdict.rule_set, "countries": verdict.countries}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingsQuery {
    severity: Option<String>,
    code: Option<String>,
    node: Option<String>,
    licence: Option<String>,
}

async fn findings(
    State(s): State<Shared>,
    query: Result<Query<FindingsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    if let Some(sev) = &q.severity
        && !["info", "warning", "unproven", "violation"].contains(&sev.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("severity {sev:?} is not info, warning, unproven or violation"),
        ));
    }
    let node = match q.node.as_deref() {
        Some(text) => Some(resolve_node(&s, text).await?.to_string()),
        None => None,
    };
    let verdict = current(&s).await?;
    let list: Vec<&Finding> = verdict
        .findings
        .iter()
        .filter(|f| q.severity.as_deref().is_none_or(|v| f.severity.code() == v))
        .filter(|f| q.code.as_deref().is_none_or(|v| f.code == v))
        .filter(|f| node.as_deref().is_none_or(|v| f.node.as_deref() == Some(v)))
        .filter(|f| {
            q.licence
                .as_deref()
                .is_none_or(|v| f.licence.as_deref() == Some(v))
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "findings": with_subjects(&verdict, list),
        }),
    )
}

async fn add_licence(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Some((key, tag)) = &s.admin else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "adding licences over the API is off: set admin_token_file in the configuration",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if hmac::verify(key, presented.trim().as_bytes(), tag.as_ref()).is_err() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as Authorization: Bearer TOKEN",
        ));
    }
    let token = jose_body(&headers, body)?;
    let now = now()?;
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

async fn metrics(State(s): State<Shared>) -> ApiResult<Response> {
    // Refresh the usage gauges; a failing evaluation still serves the counters.
    let _ = current(&s).await;
    let text = s.metrics.encode().map_err(|e| ApiError::internal(&e))?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
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
    fn hex_bytes_reads_lower_case_hex() {
        assert_eq!(hex_bytes("00ff10"), [0, 255, 16]);
    }
}
