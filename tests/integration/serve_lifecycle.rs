//! Lifecycle of `tppguard-verifier serve` (issue 12): licence revocation signed by the
//! licence authority, licence and node retirement, CRLs reloaded while serving, a licence
//! naming an unknown rule set refused, and a bad stored row that does not stop the start.
//! Real loopback HTTP: each test restarts the verifier over its database, and the CRL reload is
//! triggered by a signal to the process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde_json::{Value, json};
use tppguard_verifier::pki::{OPERATOR_CA_CERT, OPERATOR_CA_KEY};

use crate::support::{
    attest_to, bearer, bin, challenge, http, issue_token, node_with_chain, ok, pem_certs,
    pki_issuer, s, sign_licence, workspace_root,
};

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef";
const LICENCE: &str = "EXAMPLE-DE-2026-0142";

/// A verifier's folder: PKI, one node, the example licence in `licences/`, an admin token.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    node: PathBuf,
    pki: PathBuf,
    config: PathBuf,
    /// An operator token (reads) and a node token (challenges and attestations).
    operator: String,
    node_token: String,
}

/// A running verifier (killed when dropped).
struct Running {
    child: Child,
    base: String,
    operator: String,
    node: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let (node, pki) = node_with_chain(&dir, "gpu-node-01");
        std::fs::create_dir(dir.join("licences")).expect("licences dir");
        let example = workspace_root().join("examples").join("licence.toml");
        sign_licence(&pki, &example, &dir.join("licences").join("licence.jws"));
        std::fs::write(dir.join("admin.token"), format!("{ADMIN_TOKEN}\n")).expect("token");
        let config = dir.join("verifier.toml");
        std::fs::write(
            &config,
            "listen = \"127.0.0.1:0\"\ntrust = \"pki/verifier/trust.toml\"\nlicences_dir = \"licences\"\n\
             admin_token_file = \"admin.token\"\ncrl_reload_s = 0\n",
        )
        .expect("config");
        let operator = issue_token(&config, "operator", "lifecycle-operator");
        let node_token = issue_token(&config, "node", "lifecycle-nodes");
        Self {
            _tmp: tmp,
            dir,
            node,
            pki,
            config,
            operator,
            node_token,
        }
    }

    /// Starts serve; its stderr goes to `stderr.log` in the folder.
    fn start(&self) -> Running {
        let log = std::fs::File::create(self.dir.join("stderr.log")).expect("log");
        let mut child = bin("tppguard-verifier")
            .args(["serve", "--config", s(&self.config)])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no listening line: {line:?}; stderr: {}",
                    std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
                )
            })
            .to_owned();
        Running {
            child,
            base,
            operator: self.operator.clone(),
            node: self.node_token.clone(),
        }
    }

    /// The node's attestation answering a fresh challenge of `r`, posted: status and answer.
    fn attest(&self, r: &Running) -> (u16, Value) {
        let nonce = challenge(&r.base, &r.node);
        let out = self.dir.join(format!("{}.jws", &nonce[..8]));
        let token = attest_to(&self.node, None, &nonce, "fra-1", &out);
        r.post("/v1/attestations", "application/jose", &token, false)
    }

    /// `licence revoke` signed by the licence authority of the `pki init` folder `pki`: the
    /// token.
    fn revoke(&self, pki: &Path, licence: &str, reason: &str) -> String {
        let authority = pki.join("licence-authority");
        let out = self.dir.join(format!("{licence}.revocation.jws"));
        ok(
            "tppguard-verifier",
            &[
                "licence",
                "revoke",
                "--dir",
                s(&authority),
                "--licence",
                licence,
                "--reason",
                reason,
                "--out",
                s(&out),
            ],
        );
        std::fs::read_to_string(&out)
            .expect("revocation")
            .trim()
            .to_owned()
    }
}

impl Running {
    fn get(&self, path: &str) -> (u16, Value) {
        let mut resp = http()
            .get(format!("{}{path}", self.base))
            .header("Authorization", &bearer(&self.operator))
            .call()
            .expect("GET");
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .expect("body");
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    fn post(&self, path: &str, content_type: &str, body: &str, admin: bool) -> (u16, Value) {
        let mut req = http()
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        // The admin's credential, or else the node's (attestations).
        let token = if admin {
            ADMIN_TOKEN
        } else {
            self.node.as_str()
        };
        req = req.header("Authorization", &bearer(token));
        let mut resp = req.send(body).expect("POST");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    fn fleet(&self) -> Value {
        let (status, fleet) = self.get("/v1/fleet?view=full");
        assert_eq!(status, 200, "{fleet}");
        fleet
    }

    /// Sends `signal` (`-HUP`, `-TERM`) to the process.
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// Stops it with SIGTERM and waits.
    fn stop(mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
    }
}

/// The findings of `fleet` with code `code`.
fn findings<'a>(fleet: &'a Value, code: &str) -> Vec<&'a Value> {
    fleet["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == code)
        .collect()
}

/// Devices counted against the example licence (0 when it is not listed).
fn devices_used(fleet: &Value) -> u64 {
    fleet["licences"]
        .as_array()
        .expect("licences")
        .iter()
        .find(|l| l["licence"] == LICENCE)
        .map_or(0, |l| l["devices"]["used"].as_u64().expect("devices used"))
}

/// Polls `fleet` until `done` holds (a signal's effect is asynchronous): at most 20 s.
fn wait_for(r: &Running, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fleet = r.fleet();
        if done(&fleet) {
            return fleet;
        }
        assert!(Instant::now() < deadline, "{what}: {fleet:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CRL of the operator CA revoking `serials`, written beside trust.toml and named in it.
fn publish_operator_crl(pki: &Path, serials: &[Vec<u8>]) {
    let (issuer, _) = pki_issuer(
        pki,
        &format!("operator/{OPERATOR_CA_CERT}"),
        &format!("operator/{OPERATOR_CA_KEY}"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = |unix: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix);
    let crl = CertificateRevocationListParams {
        this_update: at(now - 60),
        next_update: at(now + 86_400),
        crl_number: SerialNumber::from(now),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: at(now - 60),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .expect("CRL");
    std::fs::write(pki.join("verifier/operator.crl"), crl.der()).expect("write CRL");
    let trust = pki.join("verifier/trust.toml");
    let text = std::fs::read_to_string(&trust).expect("trust.toml");
    if !text.contains("operator.crl") {
        let text = text.replacen("crls = []", "crls = [\"operator.crl\"]", 1);
        std::fs::write(&trust, text).expect("trust.toml");
    }
}

/// The serial number (the INTEGER's content bytes) of the node's certificate: the DER walked
/// as far as `tbsCertificate.serialNumber`.
fn node_serial(node: &Path) -> Vec<u8> {
    let der = pem_certs(&node.join("node-chain.pem")).remove(0);
    // (tag, header length, content length) of the element at `at`.
    let element = |at: usize| -> (u8, usize, usize) {
        let first = der[at + 1];
        if first < 0x80 {
            return (der[at], 2, usize::from(first));
        }
        let n = usize::from(first & 0x7f);
        let len = der[at + 2..at + 2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (der[at], 2 + n, len)
    };
    let (_, outer, _) = element(0);
    let (_, tbs, _) = element(outer);
    let mut at = outer + tbs;
    let (tag, header, len) = element(at);
    if tag == 0xa0 {
        at += header + len;
    }
    let (tag, header, len) = element(at);
    assert_eq!(tag, 0x02, "serialNumber is an INTEGER");
    der[at + header..at + header + len].to_vec()
}

#[test]
fn serve_a_revoked_node_stops_counting_without_a_restart() {
    let setup = Setup::new();
    let r = setup.start();
    let (status, answer) = setup.attest(&r);
    assert_eq!(status, 200, "{answer}");
    let node = answer["node"].as_str().expect("node").to_owned();
    assert_eq!(devices_used(&r.fleet()), 8);

    // The operator CA revokes the node's certificate; the verifier is told to reload (SIGHUP).
    publish_operator_crl(&setup.pki, &[node_serial(&setup.node)]);
    r.signal("-HUP");
    let fleet = wait_for(&r, "the revoked node stops counting", |f| {
        !findings(f, "node_certificate_revoked").is_empty()
    });
    let revoked = findings(&fleet, "node_certificate_revoked");
    assert_eq!(revoked[0]["node"], node.as_str());
    assert_eq!(revoked[0]["severity"], "unproven");
    assert!(
        revoked[0]["sentence"]
            .as_str()
            .unwrap()
            .contains("CN=gpu-node-01"),
        "{fleet:#}"
    );
    assert_eq!(devices_used(&fleet), 0, "its GPUs left the counts");
    assert!(fleet["nodes"].as_array().unwrap().is_empty(), "{fleet:#}");
    let (_, lifecycle) = r.get("/v1/lifecycle");
    assert_eq!(lifecycle["revoked_nodes"][0]["node"], node.as_str());
    // Its next attestation is refused by the chain check, against the reloaded CRL.
    let (status, answer) = setup.attest(&r);
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("cert_revoked"))
    );

    // After a restart, its stored attestation still does not count.
    r.stop();
    let r = setup.start();
    let fleet = r.fleet();
    assert_eq!(
        findings(&fleet, "node_certificate_revoked").len(),
        1,
        "{fleet:#}"
    );
    assert_eq!(devices_used(&fleet), 0);
}

#[test]
fn serve_a_revoked_licence_stops_counting_at_once_and_for_good() {
    let setup = Setup::new();
    let r = setup.start();
    assert_eq!(setup.attest(&r).0, 200);
    assert_eq!(devices_used(&r.fleet()), 8);
    let path = format!("/v1/licences/{LICENCE}/revocation");

    // Signed by another licence authority (another `pki init`: same names, other keys):
    // refused, nothing recorded.
    let other = setup.dir.join("other-pki");
    ok("tppguard-verifier", &["pki", "init", "--dir", s(&other)]);
    let forged = setup.revoke(&other, LICENCE, "forged");
    let (status, answer) = r.post(&path, "application/jose", &forged, true);
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("bad_signature")),
        "{answer}"
    );
    // With a node's credential instead of an admin's: refused.
    let token = setup.revoke(
        &setup.pki,
        LICENCE,
        "export terms breached \u{202e}desrever",
    );
    let (status, _) = r.post(&path, "application/jose", &token, false);
    assert_eq!(status, 403);
    // Posted under another licence's path: refused.
    let (status, answer) = r.post(
        "/v1/licences/OTHER-1/revocation",
        "application/jose",
        &token,
        true,
    );
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("revocation_licence_mismatch"))
    );
    assert_eq!(
        devices_used(&r.fleet()),
        8,
        "refused revocations change nothing"
    );

    // The authority's own revocation: recorded, effective at once.
    let (status, answer) = r.post(&path, "application/jose", &token, true);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["recorded_by"], "admin_token_file");
    let fleet = r.fleet();
    assert_eq!(devices_used(&fleet), 0, "{fleet:#}");
    let revoked = findings(&fleet, "licence_revoked");
    assert_eq!(revoked.len(), 1, "{fleet:#}");
    let sentence = revoked[0]["sentence"].as_str().unwrap();
    assert!(
        sentence.contains("export terms breached \\u{202e}desrever")
            && !sentence.contains('\u{202e}'),
        "the reason is escaped: {sentence}"
    );
    assert!(!findings(&fleet, "node_unassigned").is_empty(), "{fleet:#}");
    // Sent again: already recorded.
    assert_eq!(r.post(&path, "application/jose", &token, true).0, 200);

    // A revocation of a licence the verifier does not hold is stored: it may arrive first.
    let early = setup.revoke(&setup.pki, "LATER-1", "withdrawn before delivery");
    let (status, _) = r.post(
        "/v1/licences/LATER-1/revocation",
        "application/jose",
        &early,
        true,
    );
    assert_eq!(status, 201);

    // Uploading the licence again does not revive it.
    let licence =
        std::fs::read_to_string(setup.dir.join("licences").join("licence.jws")).expect("licence");
    let (status, _) = r.post("/v1/licences", "application/jose", licence.trim(), true);
    assert_eq!(status, 200);
    assert_eq!(devices_used(&r.fleet()), 0);

    // Nor does a restart that imports the licence file again; a revocation file in
    // licences_dir is imported too.
    r.stop();
    let dropped = setup.revoke(&setup.pki, "DROPPED-2", "dropped in licences_dir");
    std::fs::write(
        setup.dir.join("licences").join("DROPPED-2.revocation.jws"),
        dropped,
    )
    .expect("write");
    let r = setup.start();
    let fleet = r.fleet();
    assert_eq!(devices_used(&fleet), 0);
    assert_eq!(findings(&fleet, "licence_revoked").len(), 3, "{fleet:#}");
    let (_, lifecycle) = r.get("/v1/lifecycle");
    let by: Vec<(&str, &str)> = lifecycle["licence_revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["licence"].as_str().unwrap(),
                v["recorded_by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("DROPPED-2", "licences_dir"),
            (LICENCE, "admin_token_file"),
            ("LATER-1", "admin_token_file")
        ]
    );
}

#[test]
fn serve_licence_and_node_retirement_are_recorded_and_take_effect() {
    let setup = Setup::new();
    let r = setup.start();
    let (status, answer) = setup.attest(&r);
    assert_eq!(status, 200, "{answer}");
    let node = answer["node"].as_str().expect("node").to_owned();
    let retire = |path: &str, body: &Value, admin: bool| {
        r.post(path, "application/json", &body.to_string(), admin)
    };
    let node_path = format!("/v1/nodes/{node}/retirement");

    // Refused: a node's credential, no reason, an unknown node.
    assert_eq!(retire(&node_path, &json!({"reason": "x"}), false).0, 403);
    let (status, answer) = retire(&node_path, &json!({"reason": " "}), true);
    assert_eq!((status, answer["code"].as_str()), (422, Some("bad_reason")));
    let (status, answer) = retire(&node_path, &json!({"why": "x"}), true);
    assert_eq!((status, answer["code"].as_str()), (400, Some("bad_body")));
    let unknown = format!("/v1/nodes/{}/retirement", "ab".repeat(32));
    let (status, answer) = retire(&unknown, &json!({"reason": "x"}), true);
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("node_unknown"))
    );
    assert_eq!(devices_used(&r.fleet()), 8);

    // Retired by its subject: its GPUs leave the counts, with a record.
    let (status, answer) = retire(
        "/v1/nodes/CN=gpu-node-01/retirement",
        &json!({"reason": "decommissioned"}),
        true,
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["node"], node.as_str());
    let fleet = r.fleet();
    assert_eq!(devices_used(&fleet), 0, "{fleet:#}");
    let retired = findings(&fleet, "node_retired");
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0]["severity"], "info");
    assert_eq!(retired[0]["node"], node.as_str());
    let (_, lifecycle) = r.get("/v1/lifecycle");
    let record = &lifecycle["node_retirements"][0];
    assert_eq!(
        (&record["node"], &record["reason"], &record["retired_by"]),
        (
            &json!(node),
            &json!("decommissioned"),
            &json!("admin_token_file")
        )
    );
    assert!(record["retired_at"].as_i64().is_some());
    // Its history stays readable; its key's next attestation is refused, and recorded.
    let (status, history) = r.get(&format!("/v1/nodes/{node}/history"));
    assert_eq!(status, 200);
    assert_eq!(history["attestations"].as_array().unwrap().len(), 1);
    let (status, answer) = setup.attest(&r);
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("node_retired"))
    );
    let (_, history) = r.get(&format!("/v1/nodes/{node}/history"));
    assert_eq!(history["attestations"][0]["reason"], "node_retired");

    // A licence retirement: only of a licence held, then it stops counting.
    let (status, answer) = retire(
        "/v1/licences/NOT-HELD/retirement",
        &json!({"reason": "x"}),
        true,
    );
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("licence_unknown"))
    );
    let (status, _) = retire(
        &format!("/v1/licences/{LICENCE}/retirement"),
        &json!({"reason": "superseded by LIC-2"}),
        true,
    );
    assert_eq!(status, 201);
    let (_, licences) = r.get("/v1/licences");
    assert!(
        licences["licences"].as_array().unwrap().is_empty(),
        "{licences}"
    );

    // Deleting the licence file changes nothing: the records stand after a restart.
    r.stop();
    std::fs::remove_file(setup.dir.join("licences").join("licence.jws")).expect("rm");
    let r = setup.start();
    let fleet = r.fleet();
    assert_eq!(findings(&fleet, "licence_retired").len(), 1, "{fleet:#}");
    assert_eq!(findings(&fleet, "node_retired").len(), 1, "{fleet:#}");
    assert_eq!(devices_used(&fleet), 0);
}

#[test]
fn serve_refuses_a_licence_naming_an_unknown_rule_set_and_starts_again() {
    let setup = Setup::new();
    let example = std::fs::read_to_string(workspace_root().join("examples").join("licence.toml"))
        .expect("example");
    let toml = setup.dir.join("unknown-rule-set.toml");
    std::fs::write(
        &toml,
        example
            .replace(
                "rule_set = \"us-eccn-3a090\"",
                "rule_set = \"no-such-rules\"",
            )
            .replace(LICENCE, "UNKNOWN-RULES-1"),
    )
    .expect("toml");
    let signed = setup.dir.join("unknown-rule-set.jws");
    sign_licence(&setup.pki, &toml, &signed);
    let token = std::fs::read_to_string(&signed).expect("token");

    let r = setup.start();
    let (status, answer) = r.post("/v1/licences", "application/jose", token.trim(), true);
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("licence_rule_set_unknown")),
        "{answer}"
    );
    assert!(
        answer["sentence"]
            .as_str()
            .unwrap()
            .contains("no-such-rules")
    );
    let (status, licences) = r.get("/v1/licences");
    assert_eq!(status, 200, "the service still answers");
    assert_eq!(licences["licences"].as_array().unwrap().len(), 1);
    r.stop();
    // Nothing was stored: the service starts again and answers.
    let r = setup.start();
    assert_eq!(r.get("/v1/fleet").0, 200);
    r.stop();

    // The same licence dropped in licences_dir is refused at import, naming the file.
    std::fs::copy(&signed, setup.dir.join("licences").join("unknown.jws")).expect("copy");
    let out = crate::support::run(
        "tppguard-verifier",
        &["serve", "--config", s(&setup.config)],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown.jws") && stderr.contains("no-such-rules"),
        "{stderr}"
    );
}

#[test]
fn serve_starts_over_bad_stored_rows_and_reports_them() {
    let setup = Setup::new();
    let r = setup.start();
    assert_eq!(setup.attest(&r).0, 200);
    r.stop();

    // Rows the verifier would never write, put straight into its database: a licence naming
    // a rule set it cannot load, and an accepted attestation whose claims do not read back.
    let example = std::fs::read_to_string(workspace_root().join("examples").join("licence.toml"))
        .expect("example");
    let toml = setup.dir.join("bad.toml");
    std::fs::write(
        &toml,
        example
            .replace(
                "rule_set = \"us-eccn-3a090\"",
                "rule_set = \"no-such-rules\"",
            )
            .replace(LICENCE, "BAD-ROW-1"),
    )
    .expect("toml");
    let signed = setup.dir.join("bad.jws");
    sign_licence(&setup.pki, &toml, &signed);
    let token = std::fs::read_to_string(&signed).expect("token");
    let url = format!(
        "sqlite://{}",
        setup.dir.join("tppguard-verifier.db").display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use tppguard_verifier::store::{NewAttestation, Outcome, Store};
        let store = Store::open(&url).await.expect("open");
        store
            .add_licence("BAD-ROW-1", token.trim(), 1)
            .await
            .expect("licence row");
        store
            .record_attestation(&NewAttestation {
                node_id: Some(tppguard_proto::identity::NodeId::from_bytes([9; 32])),
                subject: "CN=corrupt".to_owned(),
                certified_site: None,
                iat: 1,
                received_at: 1,
                token: "corrupt.token.row".to_owned(),
                token_sha256: None,
                claims_json: "{\"not\": \"claims\"}".to_owned(),
                outcome: Outcome::Accepted,
                reason: "ok".to_owned(),
                sentence: "accepted".to_owned(),
                ear: None,
                gpu_evidence_json: None,
            })
            .await
            .expect("attestation row");
        store.close().await;
    });

    let r = setup.start();
    let fleet = r.fleet();
    let unusable = findings(&fleet, "stored_record_unusable");
    let sentences: Vec<&str> = unusable
        .iter()
        .map(|f| f["sentence"].as_str().unwrap())
        .collect();
    assert_eq!(unusable.len(), 2, "{sentences:?}");
    assert!(
        sentences
            .iter()
            .any(|s| s.contains("licence BAD-ROW-1") && s.contains("no-such-rules")),
        "{sentences:?}"
    );
    assert!(
        sentences.iter().any(|s| s.contains("stored attestation")),
        "{sentences:?}"
    );
    // The good licence and node still count.
    assert_eq!(devices_used(&fleet), 8, "{fleet:#}");
    let log = std::fs::read_to_string(setup.dir.join("stderr.log")).expect("log");
    assert!(log.contains("left out of the evaluation"), "{log}");
}
