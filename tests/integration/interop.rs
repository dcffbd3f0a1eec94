//! Interoperability with an independent JOSE implementation: jwcrypto (PyPI), driven through
//! `tests/interop/jose_check.py`. jwcrypto verifies what `tppguard-agent attest` signs, and
//! tppguard's verification path (`verify_attestation`, the library function every verifier
//! command uses) accepts a token that jwcrypto signed with the node key.
//!
//! Python and jwcrypto are prerequisites, installed by `.ci/run`; when they are missing these
//! tests fail and say how to install them, never skip.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tppguard_proto::claims::{AttestationClaims, Nonce};
use tppguard_verifier::attestation::verify_attestation;
use tppguard_verifier::chain::TrustAnchors;

use crate::support::{attest_to, bin, node_with_chain, s, sign_licence, workspace_root};

const NONCE: &str = "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677";

/// `python3 tests/interop/jose_check.py`, after checking once that jwcrypto imports.
fn jose_check() -> Command {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let probe = Command::new("python3")
            .args(["-c", "import jwcrypto"])
            .output();
        match probe {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            Err(e) => Err(format!("python3 does not run: {e}")),
        }
    });
    if let Err(why) = ready {
        panic!(
            "the interoperability tests need python3 with jwcrypto, which is missing ({}). \
             Run .ci/run, or: python3 -m pip install -r tests/interop/requirements.txt",
            why.trim()
        );
    }
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_root().join("tests/interop/jose_check.py"));
    cmd
}

fn python_ok(args: &[&str]) -> Output {
    let out = jose_check().args(args).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "jose_check.py {args:?} exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh PKI and node, and an attestation of the simulated node answering `NONCE`.
struct Node {
    _tmp: tempfile::TempDir,
    pki: PathBuf,
    node: PathBuf,
    token: PathBuf,
}

impl Node {
    fn attested() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (node, pki) = node_with_chain(tmp.path(), "gpu-node-07");
        let token = tmp.path().join("A.jws");
        attest_to(&node, None, NONCE, "fra-1", &token);
        Self {
            _tmp: tmp,
            pki,
            node,
            token,
        }
    }

    fn chain(&self) -> PathBuf {
        self.node.join("node-chain.pem")
    }

    fn token(&self) -> String {
        std::fs::read_to_string(&self.token).expect("attestation written")
    }

    /// The attestation's payload, decoded by hand (not verified).
    fn payload(&self) -> Vec<u8> {
        let token = self.token();
        let payload = token.trim_end().split('.').nth(1).expect("compact JWS");
        URL_SAFE_NO_PAD.decode(payload).expect("base64url payload")
    }

    fn trust(&self) -> TrustAnchors {
        TrustAnchors::from_trust_toml(&self.pki.join("verifier/trust.toml"))
            .expect("trust.toml loads")
    }
}

fn now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits")
}

#[test]
fn jwcrypto_verifies_the_agents_attestation_with_the_leaf_key() {
    let node = Node::attested();
    let out = python_ok(&["verify-attestation", s(&node.token), s(&node.chain())]);
    let claims: Value = serde_json::from_slice(&out.stdout).expect("payload JSON");
    assert_eq!(claims["eat_nonce"], NONCE);
    assert_eq!(claims["iss"], "gpu-node-07");
    assert_eq!(claims["submods"].as_object().expect("submods").len(), 8);
    // jwcrypto and tppguard read the same payload.
    let ours: Value = serde_json::from_slice(&node.payload()).expect("payload JSON");
    assert_eq!(claims, ours);
}

#[test]
fn jwcrypto_rejects_a_tampered_attestation() {
    // The other test's success means something only if jwcrypto can say no.
    let node = Node::attested();
    let token = node.token();
    let mut parts: Vec<String> = token.trim_end().split('.').map(str::to_owned).collect();
    let mut claims: Value = serde_json::from_slice(&node.payload()).expect("payload JSON");
    claims["tppguard.site"] = Value::from("elsewhere");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("JSON"));
    std::fs::write(&node.token, parts.join(".")).expect("write tampered token");

    let out = jose_check()
        .args(["verify-attestation", s(&node.token), s(&node.chain())])
        .output()
        .expect("python3 runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn tppguard_accepts_a_jwcrypto_signed_attestation() {
    let node = Node::attested();
    let dir = node.token.parent().expect("token folder");
    let claims_path = dir.join("claims.json");
    std::fs::write(&claims_path, node.payload()).expect("write claims");
    let signed = dir.join("B.jws");
    python_ok(&[
        "sign",
        s(&node.node.join("node.key")),
        s(&node.chain()),
        s(&claims_path),
        s(&signed),
    ]);
    let token = std::fs::read_to_string(&signed).expect("python wrote the token");
    assert_ne!(
        token.trim_end(),
        node.token().trim_end(),
        "jwcrypto's own token"
    );

    let nonce = Nonce::parse(NONCE).expect("nonce");
    let verified = verify_attestation(&token, &node.trust(), now(), Some(&nonce))
        .unwrap_or_else(|e| panic!("tppguard rejects jwcrypto's token: {}", e.sentence()));
    let expected = AttestationClaims::from_json(&node.payload()).expect("agent claims");
    assert_eq!(verified.claims(), &expected);
    assert_eq!(verified.node_subject(), "CN=gpu-node-07");

    // And it still rejects that token when it answers another challenge.
    let other = Nonce::parse(&"ab".repeat(32)).expect("nonce");
    let err =
        verify_attestation(&token, &node.trust(), now(), Some(&other)).expect_err("nonce mismatch");
    assert_eq!(err.code(), "nonce_mismatch");
}

/// Whether this build's `tppguard-verifier check` writes EARs (`--ear`).
fn check_writes_ears() -> bool {
    let out = bin("tppguard-verifier")
        .args(["check", "--help"])
        .output()
        .expect("binary runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--ear")
}

#[test]
fn jwcrypto_verifies_the_verifiers_ear_with_the_result_key() {
    if !check_writes_ears() {
        // `check --ear` is being built; until it lands there is no EAR to check.
        eprintln!("tppguard-verifier check has no --ear yet: EAR interoperability not checked");
        return;
    }
    let node = Node::attested();
    let dir = node.token.parent().expect("token folder");
    let licence = dir.join("l.jws");
    sign_licence(
        &node.pki,
        &workspace_root().join("examples/licence.toml"),
        &licence,
    );
    let ear = dir.join("result.jwt");
    let out = bin("tppguard-verifier")
        .args([
            "check",
            "--trust",
            s(&node.pki.join("verifier/trust.toml")),
            "--licence",
            s(&licence),
            "--nonce",
            NONCE,
            "--ear",
            s(&ear),
            s(&node.token),
        ])
        .output()
        .expect("binary runs");
    // 0 compliant, 1 not, 3 unproven (the simulated node is never compliant): in every case
    // the EAR is written.
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 3)),
        "check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = python_ok(&[
        "verify-ear",
        s(&ear),
        s(&node.pki.join("verifier/verifier-result.pub.pem")),
        "JWT",
    ]);
    let claims: Value = serde_json::from_slice(&result.stdout).expect("EAR JSON");
    assert_eq!(claims["eat_profile"], "tag:github.com,2023:veraison/ear");
    assert_eq!(claims["eat_nonce"], NONCE);
    assert!(claims["submods"].is_object(), "{claims}");
}
