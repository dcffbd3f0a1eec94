//! The lifecycle routes: licence revocation (signed by the licence authority), licence and
//! node retirement (by an administrator, recorded with who, when and why), and the lifecycle
//! listing an auditor reads. Every write is a database record that moves the fleet version,
//! so every replica, and every cached verdict, sees it at once.
//!
//! The writes need the `admin` role and the listing an operator, regulator or admin credential
//! ([`super::auth::POLICY`]); each write takes the request's [`Principal`] to record who acted.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api::{self, ApiError, ApiResult};
use super::auth::Principal;
use super::lifecycle::revocation_record;
use super::reads;
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
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(LICENCE_REVOCATION, post(revoke_licence))
        .route(LICENCE_RETIREMENT, post(retire_licence))
        .route(NODE_RETIREMENT, post(retire_node))
        .route(LIFECYCLE, get(lifecycle))
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
    let now = api::now(&s)?;
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
        retired_at: api::now(&s)?,
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
    // Named as the operator names it: by id, or by a subject only one node of the fleet has.
    let snapshot = reads::current(&s).await?;
    let id = reads::resolve_node(&snapshot.verdict, &super::view::View::all(), &node)?;
    let Some(latest) = s.store.node_history(&id, 1).await?.into_iter().next() else {
        return Err(reads::unknown_node(&node));
    };
    let record = NodeRetirement {
        node_id: id,
        subject: latest.subject,
        reason,
        retired_at: api::now(&s)?,
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
async fn lifecycle(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    caught_up(&s).await?;
    // A regulator sees node subjects through its redactions; the others as recorded.
    let subject = |v: &str| match principal.role {
        super::auth::Role::Regulator => s.redactor.subject(v),
        _ => v.to_owned(),
    };
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
                "subject": subject(&v.subject),
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
            json!({"node": node, "certificate": subject(&cert.subject), "serial": cert.serial})
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;
    use tppguard_proto::jws::{self, Header};
    use tppguard_proto::licence::Licence;

    use axum::extract::Request;
    use axum::http::header;

    use super::*;
    use crate::serve::auth::Role;

    const LICENCE: &str = "EXAMPLE-DE-2026-0142";

    /// A verifier's state over a fresh `pki init` and SQLite store holding the example
    /// licence; the licence authority's folder.
    async fn state(dir: &std::path::Path) -> (Shared, std::path::PathBuf) {
        let now = crate::unix_now().unwrap();
        let pki = dir.join("pki");
        crate::pki::init(&pki, now).unwrap();
        let authority = pki.join(crate::pki::LICENCE_AUTHORITY_DIR);
        let state = super::super::test_state(dir).await;
        let signer = crate::licence::load_signer(&authority).unwrap();
        let licence =
            Licence::from_toml_str(include_str!("../../../examples/licence.toml")).unwrap();
        let header = Header::new(signer.key.alg())
            .with_typ(crate::licence::LICENCE_TYP)
            .with_x5c(signer.x5c.clone());
        let token = jws::sign(&header, &licence.to_json().unwrap(), &signer.key).unwrap();
        state.store.add_licence(LICENCE, &token, now).await.unwrap();
        (state, authority)
    }

    /// `routes` with `principal` put on every request, as an authentication layer does.
    /// (Which roles reach these routes is the authentication layer's, tested with it.)
    fn app(state: &Shared, principal: Principal) -> Router {
        routes()
            .with_state(Arc::clone(state))
            .layer(Extension(principal))
    }

    fn principal(name: &str, role: Role) -> Principal {
        Principal {
            name: name.to_owned(),
            role,
            licences: Vec::new(),
        }
    }

    async fn call(app: Router, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    use serde_json::Value;

    #[tokio::test]
    async fn an_admin_principal_acts_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (s, pki) = state(dir.path()).await;
        let retire = format!("/v1/licences/{LICENCE}/retirement");
        let body = json!({"reason": "superseded"}).to_string();
        // An admin: the revocation and the retirement are recorded under its name.
        let alice = principal("alice", Role::Admin);
        let mut out = Vec::new();
        crate::licence::run(
            &crate::cli::LicenceArgs {
                command: crate::cli::LicenceCommand::Revoke(crate::cli::LicenceRevokeArgs {
                    dir: pki,
                    licence: LICENCE.to_owned(),
                    reason: "terms breached".to_owned(),
                    at: None,
                    out: None,
                }),
            },
            &mut out,
            crate::unix_now().unwrap(),
        )
        .unwrap();
        let token = String::from_utf8(out).unwrap().trim().to_owned();
        let revoke = format!("/v1/licences/{LICENCE}/revocation");
        let (status, answer) =
            call(app(&s, alice.clone()), &revoke, "application/jose", token).await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["recorded_by"], "alice");
        let (status, _) = call(app(&s, alice.clone()), &retire, "application/json", body).await;
        assert_eq!(status, 201);
        let records = s.store.lifecycle_records().await.unwrap();
        assert_eq!(records.revocations[0].recorded_by, "alice");
        assert_eq!(records.licence_retirements[0].retired_by, "alice");

        // Effective at once: the licence no longer counts, with both findings.
        let now = crate::unix_now().unwrap();
        let basis = s.fleet.basis(&s.trust(), now).unwrap();
        assert!(basis.licences().is_empty());
        let verdict = s.fleet.evaluate(&basis, &[]);
        let codes: Vec<&str> = verdict.findings.iter().map(|f| f.code).collect();
        assert!(
            codes.contains(&"licence_revoked") && codes.contains(&"licence_retired"),
            "{codes:?}"
        );
    }
}
