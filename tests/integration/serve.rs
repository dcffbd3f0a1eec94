//! `tppguard-verifier serve`, spoken to over real HTTP on loopback: the built-in PKI, a node
//! with an issued certificate, the example licences signed into the licences folder, SQLite in
//! a temporary folder. A node fetches a challenge, attests with the agent and posts the token;
//! the read APIs, health, readiness and metrics are then checked, and the server is stopped
//! with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::support::{
    attest_to, base64url, bearer, bin, issue_token, jws_payload, node_with_chain, run, s,
    sign_licence, workspace_root,
};

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// `max_body_bytes` in the tests' configuration: small, so an oversized body is cheap to send.
const MAX_BODY: usize = 65_536;

/// A running server with its PKI and node.
struct Server {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    node: PathBuf,
    pki: PathBuf,
    child: Child,
    base: String,
    http: ureq::Agent,
    /// `Authorization` values: an operator token's (reads) and a node token's (challenges,
    /// attestations).
    operator: String,
    node_auth: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
    content_type: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// The example licence `toml` (`examples/`), signed by `pki`.
fn sign_example(pki: &Path, toml: &str, out: &Path) {
    sign_licence(pki, &workspace_root().join("examples").join(toml), out);
}

impl Server {
    /// Starts a server whose licences folder holds the example licence `licence` (none:
    /// empty), with an admin token.
    fn start(licence: Option<&str>) -> Self {
        Self::start_with(licence, "")
    }

    /// [`Self::start`] with `extra` lines added to the configuration.
    fn start_with(licence: Option<&str>, extra: &str) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let (node, pki) = node_with_chain(&dir, "gpu-node-01");
        let licences = dir.join("licences");
        std::fs::create_dir(&licences).expect("licences dir");
        if let Some(toml) = licence {
            sign_example(&pki, toml, &licences.join("licence.jws"));
        }
        std::fs::write(dir.join("admin.token"), format!("{ADMIN_TOKEN}\n")).expect("token");
        let config = dir.join("verifier.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ntrust = \"pki/verifier/trust.toml\"\nlicences_dir = \
                 \"licences\"\nmax_body_bytes = {MAX_BODY}\nadmin_token_file = \
                 \"admin.token\"\n{extra}"
            ),
        )
        .expect("config");
        let operator = bearer(&issue_token(&config, "operator", "test-operator"));
        let node_auth = bearer(&issue_token(&config, "node", "test-nodes"));
        let mut child = bin("tppguard-verifier")
            .args(["serve", "--config", s(&config)])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_owned();
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            _tmp: tmp,
            dir,
            node,
            pki,
            child,
            base,
            http,
            operator,
            node_auth,
        }
    }

    fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Answer {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .expect("body");
        Answer {
            status,
            body,
            content_type,
        }
    }

    fn get(&self, path: &str) -> Answer {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.operator)
            .call()
            .expect("GET");
        Self::answer(resp)
    }

    fn post(&self, path: &str, content_type: &str, body: &str) -> Answer {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.node_auth)
            .header("Content-Type", content_type)
            .send(body)
            .expect("POST");
        Self::answer(resp)
    }

    fn challenge(&self) -> String {
        let resp = self
            .http
            .post(format!("{}/v1/challenge", self.base))
            .header("Authorization", &self.node_auth)
            .send_empty()
            .expect("POST challenge");
        let a = Self::answer(resp);
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        assert!(v["expires_at"].as_i64().is_some(), "{v}");
        v["nonce"].as_str().expect("nonce").to_owned()
    }

    /// `tppguard-agent attest --simulate` answering `nonce`: the token.
    fn attest(&self, nonce: &str) -> String {
        let out = self.dir.join(format!("{}.jws", &nonce[..8]));
        attest_to(&self.node, None, nonce, "fra-1", &out)
    }

    /// Sends SIGTERM and waits: the exit status and what it printed after the first line.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        ok_cmd("kill", &["-TERM", &pid]);
        let mut rest = String::new();
        if let Some(out) = self.child.stdout.as_mut() {
            std::io::Read::read_to_string(out, &mut rest).expect("stdout");
        }
        let status = self.child.wait().expect("wait");
        (status.code(), rest)
    }
}

fn ok_cmd(cmd: &str, args: &[&str]) {
    let status = std::process::Command::new(cmd)
        .args(args)
        .status()
        .expect("runs");
    assert!(status.success(), "{cmd} {args:?}");
}

/// Percent-encodes a path segment.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn serve_challenge_attest_and_read_the_fleet_back() {
    let server = Server::start(Some("licence.toml"));
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);

    let nonce = server.challenge();
    assert_eq!(nonce.len(), 64, "32 random bytes as hex");
    let token = server.attest(&nonce);
    assert!(token.len() < MAX_BODY, "the test's body limit fits a token");
    let a = server.post("/v1/attestations", "application/jose", &token);
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    // The node is its key (64 hex digits); its certificate subject is for display.
    let node = v["node"].as_str().expect("node").to_owned();
    assert!(
        node.len() == 64 && node.bytes().all(|b| b.is_ascii_hexdigit()),
        "a node is its key id: {v}"
    );
    assert!(
        v["subject"]
            .as_str()
            .is_some_and(|s| s.contains("gpu-node-01")),
        "{v}"
    );
    // Simulated evidence: compliant but not hardware-backed, so a warning.
    assert_eq!(v["status"], "warning", "{v}");
    assert!(
        v["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{v}"
    );
    assert!(
        v["findings"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["severity"] != "violation")),
        "{v}"
    );
    let ear = v["ear"].as_str().expect("ear");
    let claims = jws_payload(ear);
    assert_eq!(claims["eat_nonce"], nonce.as_str());
    assert_eq!(claims["submods"][&node]["ear.status"], "warning");
    assert_eq!(claims["submods"].as_object().map(|m| m.len()), Some(1));
    // The EAR names the token it appraises.
    let sha = tppguard_verifier::store::sha256_hex(token.as_bytes());
    assert_eq!(
        claims["submods"][&node]["tppguard.token-sha256"],
        sha.as_str()
    );
    assert_eq!(v["token_sha256"], sha.as_str());
    // The EAR verifies under the result key pki init wrote (its header names EdDSA or ES*).
    let header: Value =
        serde_json::from_slice(&base64url(ear.split('.').next().expect("header"))).expect("json");
    assert_eq!(header["typ"], "JWT");

    // The same token again: the nonce is spent.
    let a = server.post("/v1/attestations", "application/jose", &token);
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["code"], "nonce_replayed");

    let fleet = server.get("/v1/fleet?view=full").json();
    assert_eq!(fleet["rule_set"], "us-eccn-3a090");
    assert_eq!(fleet["nodes"][0]["node"], node.as_str());
    assert!(fleet["at"].as_i64().is_some());

    let nodes = server.get("/v1/nodes").json();
    assert_eq!(nodes["nodes"][0]["node"], node.as_str());
    assert_eq!(nodes["nodes"][0]["gpus"], 8);
    assert_eq!(nodes["nodes"][0]["licence"], "EXAMPLE-DE-2026-0142");

    let one = server.get(&format!("/v1/nodes/{}", segment(&node)));
    assert_eq!(one.status, 200, "{}", one.body);
    let one = one.json();
    assert_eq!(one["node"]["gpus"].as_array().map(Vec::len), Some(8));
    assert_eq!(one["node"]["gpus"][0]["model"], "H100 SXM5 80GB");
    // A subject only one node has names it too.
    let by_subject = server.get(&format!("/v1/nodes/{}", segment("CN=gpu-node-01")));
    assert_eq!(by_subject.status, 200, "{}", by_subject.body);
    assert_eq!(by_subject.json()["node"]["node"], node.as_str());
    let missing = server.get("/v1/nodes/CN%3Dnobody");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "node_unknown");

    let history = server
        .get(&format!("/v1/nodes/{}/history", segment(&node)))
        .json();
    let entries = history["attestations"].as_array().expect("history");
    assert_eq!(entries.len(), 1, "{history}");
    assert_eq!(entries[0]["outcome"], "accepted");

    let licences = server.get("/v1/licences").json();
    let l = &licences["licences"][0];
    assert_eq!(l["licence"], "EXAMPLE-DE-2026-0142");
    assert_eq!(l["devices"]["used"], 8);
    assert_eq!(
        l["tpp"]["used"].to_string(),
        "126649.6",
        "exact, as check shows it"
    );
    assert!(
        l["tpp"]["cap"].is_number() && l["tpp"]["headroom"].is_number(),
        "{l}"
    );
    assert_eq!(nodes["nodes"][0]["tpp_counted"].to_string(), "126649.6");

    let countries = server.get("/v1/countries").json();
    assert_eq!(countries["countries"][0]["country"], "DE");
    assert_eq!(countries["countries"][0]["devices"], 8);

    let findings = server.get("/v1/findings?severity=violation").json();
    assert_eq!(findings["findings"].as_array().map(Vec::len), Some(0));
    let by_node = server
        .get(&format!("/v1/findings?node={}", segment(&node)))
        .json();
    assert!(
        by_node["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty() && f.iter().all(|f| f["node"] == node.as_str())),
        "{by_node}"
    );
    let bad = server.get("/v1/findings?severity=awful");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["code"], "bad_query");
    let bad = server.get("/v1/findings?colour=red");
    assert_eq!(bad.status, 400);

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .content_type
            .starts_with("application/openmetrics-text")
    );
    for needle in [
        "tppguard_verifier_attestations_total{outcome=\"accepted\",code=\"accepted\"} 1",
        "tppguard_verifier_attestations_total{outcome=\"rejected\",code=\"nonce_replayed\"} 1",
        "tppguard_verifier_verification_seconds_count 2",
        "tppguard_verifier_licence_tpp_used{licence=\"EXAMPLE-DE-2026-0142\"",
        "tppguard_verifier_stale_nodes 0",
    ] {
        assert!(metrics.body.contains(needle), "{needle}\n{}", metrics.body);
    }

    let (code, rest) = server.terminate();
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn serve_a_licence_too_small_answers_the_cap_finding() {
    let server = Server::start(Some("licence-too-small.toml"));
    let token = server.attest(&server.challenge());
    let a = server.post("/v1/attestations", "application/jose", &token);
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["status"], "contraindicated", "{v}");
    let cap = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["code"] == "aggregate_tpp_above_cap"))
        .unwrap_or_else(|| panic!("no aggregate_tpp_above_cap: {v}"));
    assert_eq!(cap["severity"], "violation");
    let over = server.get("/v1/findings?code=aggregate_tpp_above_cap&licence=EXAMPLE-DE-2026-0143");
    assert_eq!(over.json()["findings"].as_array().map(Vec::len), Some(1));
    let fleet = server.get("/v1/fleet").json();
    assert_eq!(fleet["verdict"], "not_compliant");
}

#[test]
fn serve_refuses_bad_requests_with_codes() {
    let server = Server::start(Some("licence.toml"));
    let nonce = server.challenge();
    let token = server.attest(&nonce);

    let a = server.post("/v1/attestations", "application/json", &token);
    assert_eq!(a.status, 415, "{}", a.body);
    assert_eq!(a.json()["code"], "unsupported_media_type");

    let big = "a".repeat(MAX_BODY + 1024);
    let a = server.post("/v1/attestations", "application/jose", &big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.json()["code"], "body_too_large");

    let a = server.post("/v1/attestations", "application/jose", "not.a.jws");
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.json()["code"].is_string());

    // A nonce the verifier never issued.
    let other = server.attest(&"ab".repeat(32));
    let a = server.post("/v1/attestations", "application/jose", &other);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["code"], "nonce_unknown");

    // The issued nonce is still unspent: the real token is accepted after all that.
    let a = server.post("/v1/attestations", "application/jose", &token);
    assert_eq!(a.status, 200, "{}", a.body);
    let node = a.json()["node"].as_str().expect("node").to_owned();
    // Rejections are recorded with their reason.
    let history = server
        .get(&format!("/v1/nodes/{}/history", segment(&node)))
        .json();
    let reasons: Vec<&str> = history["attestations"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["accepted", "nonce_unknown"], "{history}");

    let a = server.get("/v1/nowhere");
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["code"], "not_found");
}

#[test]
fn serve_admin_adds_a_signed_licence() {
    let server = Server::start(None);
    assert_eq!(
        server.get("/v1/licences").json()["licences"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let file = server.dir.join("l.jws");
    sign_example(&server.pki, "licence.toml", &file);
    let licence = std::fs::read_to_string(&file).expect("licence");
    let post = |auth: Option<&str>, body: &str| {
        let mut req = server
            .http
            .post(format!("{}/v1/licences", server.base))
            .header("Content-Type", "application/jose");
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        Server::answer(req.send(body).expect("POST"))
    };
    let a = post(None, &licence);
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["code"], "unauthenticated");
    let a = post(Some("Bearer wrong-token-wrong-token"), &licence);
    assert_eq!(a.status, 401);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let a = post(Some(&bearer), "e30.e30.e30");
    assert_eq!(a.status, 422, "{}", a.body);
    let a = post(Some(&bearer), &licence);
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["licence"], "EXAMPLE-DE-2026-0142");
    let a = post(Some(&bearer), &licence);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["added"], false);
    let licences = server.get("/v1/licences").json();
    assert_eq!(licences["licences"][0]["licence"], "EXAMPLE-DE-2026-0142");
}

#[test]
fn serve_bad_config_names_the_key_and_exits_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("verifier.toml");
    std::fs::write(&config, "trust = \"t.toml\"\nlisten_on = \"x\"\n").expect("config");
    let out = run("tppguard-verifier", &["serve", "--config", s(&config)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_on") && err.contains("hint:"), "{err}");
}

#[test]
fn serve_limits_attestations_per_node() {
    let server = Server::start_with(Some("licence.toml"), "node_rate_per_minute = 1\n");
    let tokens: Vec<String> = (0..3).map(|_| server.attest(&server.challenge())).collect();
    let statuses: Vec<(u16, Value)> = tokens
        .iter()
        .map(|t| {
            let a = server.post("/v1/attestations", "application/jose", t);
            (a.status, a.json())
        })
        .collect();
    assert_eq!(statuses[0].0, 200, "{:?}", statuses[0].1);
    // One a minute: of the next two, at least one lands in the same minute as another.
    let limited: Vec<&Value> = statuses[1..]
        .iter()
        .filter(|(code, _)| *code == 429)
        .map(|(_, v)| v)
        .collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    assert_eq!(limited[0]["code"], "rate_limited");
}
