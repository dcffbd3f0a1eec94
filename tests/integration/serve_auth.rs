//! Roles and credentials of `tppguard-verifier serve` (issue 12): the router driven
//! in-process (`tppguard_verifier::serve::build` with an injected clock, requests through
//! `tower::ServiceExt::oneshot`), tokens issued, listed and revoked with the real CLI, and
//! mutual TLS and the documented regulator flow over real loopback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt as _;
use tppguard_verifier::serve::auth::{Access, POLICY, Role};
use tppguard_verifier::serve::config::Config;
use tppguard_verifier::serve::{Clock, ROUTES};

use crate::support::{VerifierSetup, bearer, issue_token, run, s, stderr};

/// The example licence `VerifierSetup` signs.
const LICENCE: &str = "EXAMPLE-DE-2026-0142";

fn real_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

/// The service of a `VerifierSetup`, in this process, on a clock the test moves.
struct InProcess {
    setup: VerifierSetup,
    router: axum::Router,
    clock: Arc<AtomicI64>,
}

impl InProcess {
    /// Builds the service; tokens issued before this are known from the first request.
    async fn build(setup: VerifierSetup) -> Self {
        let clock = Arc::new(AtomicI64::new(real_now()));
        let read = Arc::clone(&clock);
        let injected: Clock = Arc::new(move || Some(read.load(Ordering::SeqCst)));
        let config = Config::load(&setup.config).expect("config");
        let app = tppguard_verifier::serve::build(&config, injected)
            .await
            .expect("the service builds");
        Self {
            setup,
            router: app.router(),
            clock,
        }
    }

    fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    /// `method path` with `token` as bearer (if any): the status and the body as JSON (or
    /// as a JSON string when it is not JSON).
    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("Authorization", bearer(token));
        }
        let request = request.body(Body::empty()).expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// The OpenMetrics text, read with a metrics token.
    async fn metrics(&self, token: &str) -> String {
        let (status, body) = self.call("GET", "/metrics", Some(token)).await;
        assert_eq!(status, 200, "{body}");
        body.as_str().expect("metrics text").to_owned()
    }
}

/// `tppguard-verifier token ARGS --config CONFIG`: the finished process.
fn token_cli(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["token", args[0], "--config", s(config)];
    all.extend(&args[1..]);
    run("tppguard-verifier", &all)
}

/// A request path for a routed path: `{node}` filled in.
fn concrete(path: &str) -> String {
    path.replace("{node}", "CN=nobody")
}

/// The value of the OpenMetrics sample `name` (0 when absent).
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The route list is the router's: every listed route is served (a credential-less request
/// is answered by the route, 401 or health, never by the fallback's 404), an unlisted one is
/// the fallback's; and every read gets 401 without a credential, counted in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_served_and_refused_without_a_credential() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let metrics = issue_token(&setup.config, "metrics", "prometheus");
    let app = InProcess::build(setup).await;
    let mut refused = 0;
    for (method, path) in ROUTES {
        let access = POLICY
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .map(|(_, _, a)| *a)
            .unwrap_or_else(|| panic!("{method} {path} has no policy row"));
        let (status, body) = app
            .call(&method.to_uppercase(), &concrete(path), None)
            .await;
        assert_ne!(body["code"], "not_found", "{method} {path} is not routed");
        match access {
            Access::Public => assert_eq!(status, 200, "{method} {path}: {body}"),
            Access::Roles(_) => {
                assert_eq!(status, 401, "{method} {path}: {body}");
                assert_eq!(body["code"], "unauthenticated", "{body}");
                assert!(
                    body["sentence"]
                        .as_str()
                        .is_some_and(|t| t.contains("Authorization: Bearer")),
                    "{body}"
                );
                refused += 1;
            }
        }
    }
    let (status, body) = app.call("GET", "/v1/unlisted", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // A bearer that is not a token is refused the same way, as an unknown token.
    let (status, body) = app.call("GET", "/v1/fleet", Some("not a token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    let text = app.metrics(&metrics).await;
    assert_eq!(
        sample(
            &text,
            "tppguard_verifier_auth_failures_total{reason=\"missing\"}"
        ),
        refused,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tppguard_verifier_auth_failures_total{reason=\"unknown_token\"}"
        ),
        1,
        "{text}"
    );
}

/// Each role reaches its routes and is refused (403 `forbidden`) the others; a node is
/// still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_reach_their_routes_only() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let config = setup.config.clone();
    let token = |role: &str| issue_token(&config, role, &format!("test-{role}"));
    let (node, operator, regulator, admin, metrics) = (
        token("node"),
        token("operator"),
        token("regulator"),
        token("admin"),
        token("metrics"),
    );
    let out = token_cli(
        &config,
        &[
            "issue",
            "--role",
            "vendor",
            "--name",
            "vendor-a",
            "--licence",
            LICENCE,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let vendor = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let app = InProcess::build(setup).await;

    let expect = [
        (&node, "POST", "/v1/challenge", 200),
        (&node, "GET", "/v1/fleet", 403),
        (&node, "GET", "/metrics", 403),
        (&operator, "GET", "/v1/fleet", 200),
        (&operator, "GET", "/metrics", 200),
        (&operator, "POST", "/v1/challenge", 403),
        (&operator, "POST", "/v1/licences", 403),
        (&regulator, "GET", "/v1/nodes", 200),
        (&regulator, "GET", "/metrics", 403),
        (&vendor, "GET", "/v1/licences", 200),
        (&vendor, "POST", "/v1/licences", 403),
        (&metrics, "GET", "/metrics", 200),
        (&metrics, "GET", "/v1/fleet", 403),
        (&metrics, "POST", "/v1/attestations", 403),
        (&admin, "GET", "/v1/fleet", 403),
        (&admin, "GET", "/metrics", 200),
    ];
    for (token, method, path, want) in expect {
        let (status, body) = app.call(method, path, Some(token)).await;
        assert_eq!(status, want, "{method} {path}: {body}");
        if want == 403 {
            assert_eq!(body["code"], "forbidden", "{body}");
        }
    }
    // An admin reaches POST /v1/licences (an empty body is the handler's 415, past auth).
    let (status, body) = app.call("POST", "/v1/licences", Some(&admin)).await;
    assert_eq!(status, 415, "{body}");
    let text = app.metrics(&metrics).await;
    assert_eq!(
        sample(
            &text,
            "tppguard_verifier_auth_failures_total{reason=\"forbidden\"}"
        ),
        9,
        "{text}"
    );
}

/// A revoked token is refused, and an expired one, without a restart; a token issued after
/// the start is accepted. Time is the injected clock's: no sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused_without_a_restart() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let config = setup.config.clone();
    let revoked = issue_token(&config, "regulator", "to-revoke");
    let out = token_cli(
        &config,
        &[
            "issue",
            "--role",
            "regulator",
            "--name",
            "short",
            "--expires-in-days",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let short = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let app = InProcess::build(setup).await;
    for t in [&revoked, &short] {
        assert_eq!(app.call("GET", "/v1/countries", Some(t)).await.0, 200);
    }

    let id = &revoked[4..20];
    let out = token_cli(&config, &["revoke", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with(&format!("revoked regulator token {id} (to-revoke) at ")),
        "{said}"
    );
    // Unknown to this process until its clock reaches the next second.
    app.advance(1);
    let (status, body) = app.call("GET", "/v1/countries", Some(&revoked)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    assert!(
        body["sentence"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // Issued while running: known from the next second.
    let late = issue_token(&config, "regulator", "late");
    app.advance(1);
    assert_eq!(app.call("GET", "/v1/countries", Some(&late)).await.0, 200);

    // A day on, the short token has expired; the others have not.
    app.advance(86_400);
    let (status, body) = app.call("GET", "/v1/countries", Some(&short)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["sentence"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let (status, _) = app.call("GET", "/metrics", Some(&late)).await;
    assert_eq!(status, 403, "the late token is a regulator's");

    // Revoking an unknown id says so, with the fix.
    let out = token_cli(&config, &["revoke", "00000000deadbeef"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("token 00000000deadbeef: no such token")
            && stderr(&out).contains("token list"),
        "{}",
        stderr(&out)
    );
}

/// A stranger spraying random token ids: every request refused, and the database read at
/// most once per second of the clock, not once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_token_ids_do_not_reach_the_database() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let metrics = issue_token(&setup.config, "metrics", "prometheus");
    let app = InProcess::build(setup).await;
    let reloads = "tppguard_verifier_credential_reloads_total";
    let spray = |round: u64| {
        (0..200u64).map(move |i| {
            format!(
                "tpg_{:016x}_{}",
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round,
                "ab".repeat(32)
            )
        })
    };
    for t in spray(1) {
        let (status, _) = app.call("GET", "/v1/fleet", Some(&t)).await;
        assert_eq!(status, 401);
    }
    assert_eq!(sample(&app.metrics(&metrics).await, reloads), 0);
    app.advance(1);
    for t in spray(2) {
        assert_eq!(app.call("POST", "/v1/challenge", Some(&t)).await.0, 401);
    }
    let text = app.metrics(&metrics).await;
    assert_eq!(sample(&text, reloads), 1, "{text}");
    assert_eq!(
        sample(
            &text,
            "tppguard_verifier_auth_failures_total{reason=\"unknown_token\"}"
        ),
        400
    );
    // A legitimate node is still served.
    let node = issue_token(&app.setup.config, "node", "n1");
    app.advance(1);
    assert_eq!(app.call("POST", "/v1/challenge", Some(&node)).await.0, 200);
}

/// The database holds the SHA-256 of a token's secret, never the token or the secret; a
/// listing shows neither, and escapes names.
#[test]
fn tokens_are_hashed_at_rest_and_listed_without_secrets() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let config = &setup.config;
    let name = "evil\u{1b}[2J\u{202e}name";
    let token = issue_token(config, "operator", name);
    let (id, secret) = (&token[4..20], &token[21..]);
    assert!(token.starts_with("tpg_") && secret.len() == 64, "{token}");

    // The database's bytes (file and WAL) hold neither the token nor its secret.
    for entry in std::fs::read_dir(setup.tmp.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("tppguard-verifier.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let url = Config::load(config).unwrap().database;
        let store = tppguard_verifier::store::Store::open(&url).await.unwrap();
        store.api_tokens().await.unwrap()
    });
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert_eq!(
        stored[0].secret_sha256,
        tppguard_verifier::store::sha256_hex(secret.as_bytes())
    );
    assert_eq!(stored[0].name, name);

    for args in [&["list"][..], &["list", "--json"][..]] {
        let out = token_cli(config, args);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(id), "{text}");
        assert!(
            !text.contains(secret) && !text.contains(&stored[0].secret_sha256),
            "{text}"
        );
        // The table escapes; JSON keeps the name exactly (as a JSON string: controls escaped).
        assert!(!text.contains('\u{1b}'), "raw control text: {text:?}");
    }
    let out = token_cli(config, &["list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("evil\\u{1b}[2J\\u{202e}name"), "{text}");
    assert!(!text.contains('\u{202e}'), "{text:?}");
    assert!(text.starts_with("ID "), "{text}");
}

/// `token issue`: vendor tokens need a licence and others refuse one; `--out` writes a
/// 0600 file and prints the id only; `--json` includes the token.
#[test]
fn token_issue_checks_the_scope_and_keeps_the_file_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let setup = VerifierSetup::new("127.0.0.1:0");
    let config = &setup.config;
    let out = token_cli(config, &["issue", "--role", "vendor", "--name", "v"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a vendor token needs at least one licence"),
        "{}",
        stderr(&out)
    );
    let out = token_cli(
        config,
        &[
            "issue",
            "--role",
            "operator",
            "--name",
            "o",
            "--licence",
            LICENCE,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hint: "), "{}", stderr(&out));
    let out = token_cli(config, &["issue", "--role", "root", "--name", "o"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a role"), "{}", stderr(&out));

    let file = setup.tmp.path().join("ops.token");
    let out = token_cli(
        config,
        &[
            "issue",
            "--role",
            "operator",
            "--name",
            "ops",
            "--out",
            s(&file),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = std::fs::read_to_string(&file).unwrap();
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(!said.contains(&token.trim()[21..]), "{said}");
    assert!(said.contains(&token[4..20]), "{said}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // An existing file is never overwritten.
    let out = token_cli(
        config,
        &[
            "issue",
            "--role",
            "operator",
            "--name",
            "ops",
            "--out",
            s(&file),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);

    let out = token_cli(
        config,
        &[
            "issue",
            "--role",
            "vendor",
            "--name",
            "v",
            "--licence",
            LICENCE,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["role"], "vendor");
    assert_eq!(v["licences"][0], LICENCE);
    assert!(
        v["token"].as_str().is_some_and(|t| t.starts_with("tpg_")),
        "{v}"
    );
}

// ---- Over real loopback: mutual TLS and the documented regulator flow ----

/// A CA and what it issues, for the HTTPS server and for a stranger's client certificate.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let cert = params.self_signed(&key).unwrap();
    Ca {
        issuer: rcgen::Issuer::new(params, key),
        pem: cert.pem(),
    }
}

/// A leaf of `ca` for `names` with `eku`: (chain PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], eku: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![eku];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem() + &ca.pem, key.serialize_pem())
}

/// An HTTPS client trusting `server_ca`, presenting `client` (chain PEM, key PEM) if given.
fn mtls_client(server_ca: &str, client: Option<(&str, &str)>) -> ureq::Agent {
    let certs = |pem: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(pem.as_bytes())
            .filter_map(|item| match item.expect("PEM") {
                ureq::tls::PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs(server_ca)));
    if let Some((chain, key)) = client {
        let key = ureq::tls::PrivateKey::from_pem(key.as_bytes()).expect("client key");
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(
            &certs(chain),
            key,
        )));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls.build())
        .build()
        .into()
}

/// `method base path` with `agent`: the status and the answer's `code` (empty when none);
/// `Err` when no HTTP answer came (the handshake refused).
fn answer(agent: &ureq::Agent, method: &str, url: &str) -> Result<(u16, String), ureq::Error> {
    let mut resp = match method {
        "POST" => agent.post(url).send_empty()?,
        _ => agent.get(url).call()?,
    };
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default())
        .unwrap_or_default();
    Ok((status, body["code"].as_str().unwrap_or("").to_owned()))
}

/// A setup serving HTTPS with `client_auth = mode`: the setup, the server CA's PEM.
fn tls_setup(mode: &str) -> (VerifierSetup, String) {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let server_ca = ca("server");
    let (chain, key) = leaf(
        &server_ca,
        &["127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    std::fs::write(setup.tmp.path().join("tls.pem"), chain).unwrap();
    std::fs::write(setup.tmp.path().join("tls.key"), key).unwrap();
    setup.configure(&format!(
        "tls_cert = \"tls.pem\"\ntls_key = \"tls.key\"\nclient_auth = \"{mode}\""
    ));
    (setup, server_ca.pem)
}

/// The node's own certificate (`node-chain.pem`, from the operator CA) and key.
fn node_identity(setup: &VerifierSetup) -> (String, String) {
    (
        std::fs::read_to_string(setup.node.join("node-chain.pem")).unwrap(),
        std::fs::read_to_string(setup.node.join("node.key")).unwrap(),
    )
}

/// `client_auth = "optional"`: a node certificate from the operator CA is a node's
/// credential (challenges, not reads); one from another CA gets 401; bearer tokens still work.
#[test]
fn a_node_certificate_authenticates_a_node_over_mutual_tls() {
    let (setup, server_ca) = tls_setup("optional");
    let verifier = setup.start();
    let url = |path: &str| format!("{}{path}", verifier.base);
    let (chain, key) = node_identity(&setup);
    let node = mtls_client(&server_ca, Some((&chain, &key)));
    assert_eq!(
        answer(&node, "POST", &url("/v1/challenge")).unwrap(),
        (200, String::new())
    );
    assert_eq!(
        answer(&node, "GET", &url("/v1/fleet")).unwrap(),
        (403, "forbidden".to_owned())
    );

    let stranger_ca = ca("stranger");
    let (chain, key) = leaf(
        &stranger_ca,
        &["gpu-node-01"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger = mtls_client(&server_ca, Some((&chain, &key)));
    for (method, path) in [("POST", "/v1/challenge"), ("GET", "/v1/fleet")] {
        assert_eq!(
            answer(&stranger, method, &url(path)).unwrap(),
            (401, "unauthenticated".to_owned()),
            "{method} {path}"
        );
    }
    let anonymous = mtls_client(&server_ca, None);
    assert_eq!(answer(&anonymous, "GET", &url("/v1/fleet")).unwrap().0, 401);
    let resp = anonymous
        .get(url("/v1/fleet"))
        .header("Authorization", bearer(&verifier.credentials.operator))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// `client_auth = "required"`: a client without a node certificate of the operator CA gets
/// no connection at all; the node does.
#[test]
fn required_client_auth_refuses_strangers_at_the_handshake() {
    let (setup, server_ca) = tls_setup("required");
    let verifier = setup.start();
    let url = format!("{}/v1/challenge", verifier.base);
    let (chain, key) = node_identity(&setup);
    let node = mtls_client(&server_ca, Some((&chain, &key)));
    assert_eq!(answer(&node, "POST", &url).unwrap().0, 200);
    let stranger_ca = ca("stranger");
    let (chain, key) = leaf(
        &stranger_ca,
        &["gpu-node-01"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger = mtls_client(&server_ca, Some((&chain, &key)));
    assert!(answer(&stranger, "POST", &url).is_err());
    assert!(answer(&mtls_client(&server_ca, None), "POST", &url).is_err());
}

/// The docs' flow (docs/serve.md, Roles and credentials): the operator issues a regulator
/// token to the running verifier's database; the regulator reads the fleet with it and
/// cannot write; once revoked it is refused. Over real HTTP, against the real binary.
#[test]
fn a_regulator_reads_the_fleet_end_to_end() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let regulator = issue_token(&setup.config, "regulator", "bafa-export-control");
    let get = |path: &str, token: &str| {
        let mut resp = crate::support::http()
            .get(format!("{}{path}", verifier.base))
            .header("Authorization", bearer(token))
            .call()
            .expect("GET");
        let status = resp.status().as_u16();
        let body: Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap_or_default();
        (status, body)
    };
    // The running verifier learns of the token within a second.
    let until = |want: u16| {
        let start = Instant::now();
        loop {
            let (status, body) = get("/v1/fleet", &regulator);
            if status == want || start.elapsed() > Duration::from_secs(5) {
                return (status, body);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (status, fleet) = until(200);
    assert_eq!(status, 200, "{fleet}");
    assert!(fleet["licences"].is_array(), "{fleet}");
    let mut resp = crate::support::http()
        .post(format!("{}/v1/challenge", verifier.base))
        .header("Authorization", bearer(&regulator))
        .send_empty()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(
        resp.body_mut()
            .read_to_string()
            .unwrap()
            .contains("forbidden")
    );

    let out = token_cli(&setup.config, &["revoke", &regulator[4..20]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = until(401);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthenticated");
}

#[test]
fn role_names_are_one_vocabulary() {
    for role in Role::ALL {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    let help = run("tppguard-verifier", &["token", "issue", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for role in Role::ALL {
        assert!(help.contains(role.as_str()), "{role} in {help}");
    }
}
