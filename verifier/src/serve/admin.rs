//! The lifecycle routes: licence revocation (signed by the licence authority), licence and
//! node retirement (by an administrator, recorded with who, when and why), and the lifecycle
//! listing an auditor reads. Every write is a database record that moves the fleet version,
//! so every replica, and every cached verdict, sees it at once.
//!
//! The writes need the `admin` role: each handler takes the request's [`Principal`] to record
//! who acted. Until the role table admits routes, [`admin_token_principal`] makes that
//! principal from the admin bearer token (`admin_token_file`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ring::hmac;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api::{self, ApiError, ApiResult};
use super::auth::{Principal, Role};
use super::lifecycle::revocation_record;
use crate::licence::verify_licence_revocation;
use crate::store::{LicenceRetirement, NodeRetirement};

type Shared = Arc<AppState>;

/// `POST`: a signed licence revocation (`application/jose`).
pub(super) const LICENCE_REVOCATION: &str = "/v1/licences/{id}/revocation";
/// `POST`: retire a licence (`{"reason": TEXT}`).
pub(super) const LICENCE_RETIREMENT: &str = "/v1/licences/{id}/retirement";
/// `POST`: retire a node (`{"reason": TEXT}`).
pub(super) const NODE_RETIREMENT: &str = "/v1/nodes/{node}/retirement";
/// `GET`: every lifecycle record.
pub(super) const LIFECYCLE: &str = "/v1/lifecycle";

/// Longest reason, in characters (as a revocation's).
const MAX_REASON_CHARS: usize = tppguard_proto::licence::revocation::MAX_REASON_CHARS;

/// The lifecycle routes, for the router.
pub(super) fn routes(state: &Shared) -> Router<Shared> {
    let writes = Router::new()
        .route(LICENCE_REVOCATION, post(revoke_licence))
        .route(LICENCE_RETIREMENT, post(retire_licence))
        .route(NODE_RETIREMENT, post(retire_node))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            admin_token_principal,
        ));
    Router::new().route(LIFECYCLE, get(lifecycle)).merge(writes)
}

/// Admits a request that presents the admin token (`Authorization: Bearer TOKEN`) as the
/// principal `admin` of role [`Role::Admin`].
async fn admin_token_principal(
    State(s): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some((key, tag)) = &s.admin else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "administration over the API is off: set admin_token_file in the configuration",
        )
        .into_response();
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if hmac::verify(key, presented.trim().as_bytes(), tag.as_ref()).is_err() {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as Authorization: Bearer TOKEN",
        )
        .into_response();
    }
    request.extensions_mut().insert(Principal {
        name: "admin".to_owned(),
        role: Role::Admin,
        licences: Vec::new(),
    });
    next.run(request).await
}

/// The body of a retirement.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetireBody {
    reason: String,
}

/// The reason of a retirement: one line of 1 to [`MAX_REASON_CHARS`] characters.
fn reason(body: Result<axum::Json<RetireBody>, JsonRejection>) -> ApiResult<String> {
    let axum::Json(body) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!(
                "send JSON {{\"reason\": \"...\"}} with Content-Type: application/json ({})",
                e.body_text()
            ),
        )
    })?;
    let reason = body.reason.trim();
    let bad = |rule: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_reason",
            format!("the reason {rule}"),
        )
    };
    if reason.is_empty() {
        return Err(bad("is empty: say why"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(bad("is longer than 1024 characters: shorten it"));
    }
    if reason.chars().any(char::is_control) {
        return Err(bad("holds control characters: write one line"));
    }
    Ok(reason.to_owned())
}

fn now() -> ApiResult<i64> {
    crate::unix_now().map_err(ApiError::from)
}

/// Makes a write visible to this replica's next read.
async fn caught_up(s: &Shared) -> ApiResult<()> {
    s.fleet.refresh(&s.store).await
}

async fn revoke_licence(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let token = api::jose_body(&headers, body)?;
    let now = now()?;
    let verified = verify_licence_revocation(&token, &s.trust(), now).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            format!("the revocation is rejected: {}", e.sentence()),
        )
    })?;
    let revoked = verified.revocation().licence_id();
    if revoked != id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "revocation_licence_mismatch",
            format!(
                "the revocation revokes licence {:?}, not {:?}: post it to \
                 /v1/licences/{{its licence id}}/revocation",
                revoked,
                id.chars().take(80).collect::<String>()
            ),
        ));
    }
    let record = revocation_record(&verified, &token, now, &principal.name);
    let new = s.store.add_licence_revocation(&record).await?;
    caught_up(&s).await?;
    tracing::info!(
        licence = %record.licence_id,
        by = %principal.name,
        new,
        "licence revocation recorded"
    );
    api::json_response(
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &json!({
            "licence": record.licence_id,
            "revoked": true,
            "added": new,
            "reason": record.reason,
            "revoked_at": record.revoked_at,
            "recorded_by": record.recorded_by,
        }),
    )
}

async fn retire_licence(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<axum::Json<RetireBody>, JsonRejection>,
) -> ApiResult<Response> {
    let reason = reason(body)?;
    let held = s.store.licences().await?.iter().any(|l| l.id == id);
    if !held {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "licence_unknown",
            format!(
                "the verifier holds no licence {:?}: GET /v1/licences lists them",
                id.chars().take(80).collect::<String>()
            ),
        ));
    }
    let record = LicenceRetirement {
        licence_id: id,
        reason,
        retired_at: now()?,
        retired_by: principal.name.clone(),
    };
    let new = s.store.retire_licence(&record).await?;
    caught_up(&s).await?;
    tracing::info!(licence = %record.licence_id, by = %principal.name, new, "licence retired");
    api::json_response(
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &json!({
            "licence": record.licence_id,
            "retired": true,
            "added": new,
        }),
    )
}

async fn retire_node(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(node): Path<String>,
    body: Result<axum::Json<RetireBody>, JsonRejection>,
) -> ApiResult<Response> {
    let reason = reason(body)?;
    let id = api::resolve_node(&s, &node).await?;
    let Some(latest) = s.store.node_history(&id, 1).await?.into_iter().next() else {
        return Err(api::unknown_node(&node));
    };
    let record = NodeRetirement {
        node_id: id,
        subject: latest.subject,
        reason,
        retired_at: now()?,
        retired_by: principal.name.clone(),
    };
    let new = s.store.retire_node(&record).await?;
    caught_up(&s).await?;
    tracing::info!(node = %id, by = %principal.name, new, "node retired");
    api::json_response(
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &json!({
            "node": id,
            "subject": record.subject,
            "retired": true,
            "added": new,
        }),
    )
}

/// Every lifecycle record (revocations with their signed tokens, so an auditor can verify
/// them again), and the nodes the CRLs in use revoke.
async fn lifecycle(State(s): State<Shared>) -> ApiResult<Response> {
    caught_up(&s).await?;
    let r = s.fleet.lifecycle.records();
    let revocations: Vec<_> = r
        .revocations
        .iter()
        .map(|v| {
            json!({
                "licence": v.licence_id,
                "reason": v.reason,
                "revoked_at": v.revoked_at,
                "recorded_at": v.recorded_at,
                "recorded_by": v.recorded_by,
                "token": v.token,
            })
        })
        .collect();
    let licence_retirements: Vec<_> = r
        .licence_retirements
        .iter()
        .map(|v| {
            json!({
                "licence": v.licence_id,
                "reason": v.reason,
                "retired_at": v.retired_at,
                "retired_by": v.retired_by,
            })
        })
        .collect();
    let node_retirements: Vec<_> = r
        .node_retirements
        .iter()
        .map(|v| {
            json!({
                "node": v.node_id,
                "subject": v.subject,
                "reason": v.reason,
                "retired_at": v.retired_at,
                "retired_by": v.retired_by,
            })
        })
        .collect();
    let revoked_nodes: Vec<_> = s
        .fleet
        .lifecycle
        .revoked_nodes()
        .into_iter()
        .map(|(node, cert)| {
            json!({"node": node, "certificate": cert.subject, "serial": cert.serial})
        })
        .collect();
    api::json_response(
        StatusCode::OK,
        &json!({
            "licence_revocations": revocations,
            "licence_retirements": licence_retirements,
            "node_retirements": node_retirements,
            "revoked_nodes": revoked_nodes,
        }),
    )
}
