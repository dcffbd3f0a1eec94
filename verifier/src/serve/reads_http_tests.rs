//! The read routes over HTTP on loopback, in process, as each role: a router of the read
//! handlers behind a layer that inserts a chosen [`Principal`] (what the authentication
//! middleware does for a real credential), over a real store, trust anchors and licences.
//!
//! Three nodes of two GPUs: nodes 0 and 2 at `site-0` under licence `SYN-DE-0000`, node 1 at
//! `site-1` under `SYN-DE-0001`.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use tppguard_proto::jws::{self, Header};
use tppguard_proto::licence::Licence;

use super::super::auth::{Principal, Role};
use super::super::{AppState, fleet, limits, metrics, view};
use crate::chain::{TrustAnchors, certs_from_pem};
use crate::check::load_result_key;
use crate::licence::LICENCE_TYP;
use crate::policy::bench_support;
use crate::store::{NewAttestation, Store};

/// The state of a verifier holding the three nodes, at `now`.
async fn state(dir: &std::path::Path) -> Arc<AppState> {
    let now = crate::unix_now().unwrap();
    let report = crate::pki::init(&dir.join("pki"), now).unwrap();
    let trust = TrustAnchors::from_trust_toml(&report.trust).unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.join("v.db").display()))
        .await
        .unwrap();
    let signer = load_result_key(
        &dir.join("pki")
            .join(crate::pki::LICENCE_AUTHORITY_DIR)
            .join(crate::pki::LICENCE_SIGNER_KEY),
    )
    .unwrap();
    let chain: Vec<Vec<u8>> = certs_from_pem(
        &std::fs::read(
            dir.join("pki")
                .join(crate::pki::LICENCE_AUTHORITY_DIR)
                .join(crate::pki::LICENCE_SIGNER_CHAIN),
        )
        .unwrap(),
    )
    .unwrap()
    .into_iter()
    .map(|c| c.to_vec())
    .collect();
    for i in 0..2 {
        let licence =
            Licence::from_toml_str(&bench_support::licence_toml(i, 100, 2_000_000)).unwrap();
        let header = Header::new(signer.alg())
            .with_typ(LICENCE_TYP)
            .with_x5c(chain.clone());
        let token = jws::sign(&header, &licence.to_json().unwrap(), &signer).unwrap();
        store.add_licence(licence.id(), &token, now).await.unwrap();
    }
    let (_, attestations, _, _) = bench_support::synthetic_fleet(3, 2, 2);
    let rows: Vec<NewAttestation> = attestations
        .iter()
        .map(|a| {
            let token = format!("token of {}", a.node_subject());
            // Received now, and signed now as far as the claims say.
            let mut claims = a.claims().clone();
            claims.iat = now;
            let claims = String::from_utf8(claims.to_json().unwrap()).unwrap();
            NewAttestation {
                iat: now,
                ..NewAttestation::accepted(a, token, claims, now, None)
            }
        })
        .collect();
    let mut batch = store.begin_batch().await.unwrap();
    batch.record_many(&rows).await.unwrap();
    batch.commit().await.unwrap();
    let fleet = fleet::FleetState::new(Vec::new());
    fleet.refresh(&store).await.unwrap();
    let (queue, _) = tokio::sync::mpsc::channel(1);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test redaction key");
    Arc::new(AppState {
        store,
        trust: super::super::lifecycle::TrustHolder::new(&report.trust, trust),
        fleet,
        queue,
        result_key: load_result_key(&report.trust.with_file_name(crate::pki::RESULT_KEY)).unwrap(),
        nonce_ttl_s: 300,
        rng: ring::rand::SystemRandom::new(),
        credentials: crate::serve::auth::Credentials::new(None).unwrap(),
        clock: crate::serve::system_clock(),
        metrics: metrics::Metrics::new(),
        limiter: limits::RateLimiter::new(30),
        challenges: limits::Challenges::new(120, 1000),
        rejections: limits::RateLimiter::new(120),
        verifications: Arc::new(tokio::sync::Semaphore::new(2)),
        in_flight: Arc::new(tokio::sync::Semaphore::new(64)),
        what_ifs: Arc::new(tokio::sync::Semaphore::new(1)),
        redactor: view::Redactor::new(&view::Redact::DEFAULT, key),
        webhooks: crate::serve::webhooks::Webhooks::new(&[]).unwrap(),
    })
}

/// Serves the read routes to `principal` on a loopback port: the base URL.
async fn serve_as(state: &Arc<AppState>, principal: Principal) -> String {
    let app = Router::new()
        .route("/v1/fleet", get(super::fleet))
        .route("/v1/nodes", get(super::nodes))
        .route("/v1/nodes/{node}", get(super::node))
        .route("/v1/nodes/{node}/history", get(super::node_history))
        .route("/v1/licences", get(super::licences))
        .route("/v1/findings", get(super::findings))
        .route("/v1/countries", get(super::countries))
        .layer(axum::Extension(principal))
        .with_state(Arc::clone(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// `GET base + path`: status and JSON body.
async fn get_json(base: &str, path: &str) -> (u16, Value) {
    let url = format!("{base}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(&url).call().unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), serde_json::from_str(&body).unwrap())
    })
    .await
    .unwrap()
}

fn principal(role: Role, licences: &[&str]) -> Principal {
    Principal {
        name: format!("{role:?}"),
        role,
        licences: licences.iter().map(|l| (*l).to_owned()).collect(),
    }
}

/// The node ids of nodes 0, 1 and 2.
fn ids() -> Vec<String> {
    let (_, attestations, _, _) = bench_support::synthetic_fleet(3, 2, 2);
    attestations
        .iter()
        .map(|a| a.node_id().to_string())
        .collect()
}

/// Every GPU serial of the fleet.
fn serials() -> Vec<String> {
    let (_, attestations, _, _) = bench_support::synthetic_fleet(3, 2, 2);
    attestations
        .iter()
        .flat_map(|a| a.claims().submods.values().filter_map(|g| g.serial.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reads_its_view_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;
    let ids = ids();

    // The operator: everything.
    let base = serve_as(&s, principal(Role::Operator, &[])).await;
    let (status, summary) = get_json(&base, "/v1/fleet").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["counts"]["nodes"], 3, "{summary}");
    assert_eq!(summary["licences"].as_array().map(Vec::len), Some(2));
    let (_, full) = get_json(&base, "/v1/fleet?view=full").await;
    let text = full.to_string();
    assert_eq!(serials().len(), 6);
    assert!(serials().iter().all(|s| text.contains(s.as_str())));

    // A regulator: the same fleet, serials and UUIDs replaced by stand-ins.
    let base = serve_as(&s, principal(Role::Regulator, &[])).await;
    let (_, regulated) = get_json(&base, "/v1/fleet").await;
    assert_eq!(regulated["counts"], summary["counts"]);
    for path in [
        "/v1/fleet?view=full".to_owned(),
        format!("/v1/nodes/{}", ids[0]),
        "/v1/findings".to_owned(),
    ] {
        let (status, body) = get_json(&base, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let text = body.to_string();
        for serial in serials() {
            assert!(!text.contains(&serial), "{path} shows {serial}");
        }
    }
    let (_, one) = get_json(&base, &format!("/v1/nodes/{}", ids[0])).await;
    let serial = one["node"]["gpus"][0]["serial"].as_str().unwrap();
    assert!(serial.starts_with("redacted-"), "{one}");
    assert_eq!(
        one["node"]["subject"], "node-0000000",
        "subjects are shown by default"
    );

    // A vendor of SYN-DE-0001: node 1 alone; other nodes read as unknown.
    let base = serve_as(&s, principal(Role::Vendor, &["SYN-DE-0001"])).await;
    let (_, mine) = get_json(&base, "/v1/fleet").await;
    assert_eq!(mine["counts"]["nodes"], 1, "{mine}");
    let licences: Vec<&str> = mine["licences"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["licence"].as_str())
        .collect();
    assert_eq!(licences, ["SYN-DE-0001"]);
    assert_eq!(mine["countries"], Value::Array(Vec::new()));
    let (_, nodes) = get_json(&base, "/v1/nodes").await;
    assert_eq!(nodes["total"], 1);
    assert_eq!(nodes["nodes"][0]["node"], ids[1].as_str());
    let (status, own) = get_json(&base, &format!("/v1/nodes/{}", ids[1])).await;
    assert_eq!(status, 200, "{own}");
    let unknown = "f".repeat(64);
    let (status_other, other) = get_json(&base, &format!("/v1/nodes/{}", ids[0])).await;
    let (status_none, none) = get_json(&base, &format!("/v1/nodes/{unknown}")).await;
    assert_eq!((status_other, status_none), (404, 404));
    assert_eq!(other["code"], none["code"], "no existence oracle");
    for path in [
        format!("/v1/nodes/{}/history", ids[0]),
        "/v1/nodes/node-0000000".to_owned(),
        format!("/v1/findings?node={}", ids[2]),
    ] {
        let (status, body) = get_json(&base, &path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("node_unknown")),
            "{path}"
        );
    }
    let (status, history) = get_json(&base, &format!("/v1/nodes/{}/history", ids[1])).await;
    assert_eq!(status, 200, "{history}");
    let (_, findings) = get_json(&base, "/v1/findings").await;
    assert!(
        findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["node"].is_null() || f["node"] == ids[1].as_str()),
        "{findings}"
    );
    let (_, countries) = get_json(&base, "/v1/countries").await;
    assert_eq!(countries["countries"], Value::Array(Vec::new()));
}
