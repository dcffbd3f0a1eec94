//! `tppguard-agent init` and `tppguard-verifier pki`, run as an operator would: node key and
//! CSR, the built-in PKI, issuing a node certificate and checking the chain.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::{run, s};

/// Runs, expects success, and parses stdout as JSON.
fn ok_json(name: &str, args: &[&str]) -> Value {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Runs, expects exit code 2 and nothing on stdout, and returns stderr.
fn fails(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    stderr
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn agent_init_writes_a_0600_key_and_a_csr_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = tmp.path().join("node");
    let report = ok_json(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "gpu-node-01", "--json"],
    );
    let key = node.join("node.key");
    assert_eq!(report["key"], s(&key));
    assert_eq!(report["key_type"], "ed25519");
    assert_eq!(report["name"], "gpu-node-01");
    assert!(report["next"].as_str().unwrap().contains("pki issue-node"));
    assert_eq!(mode(&key), 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    let csr = std::fs::read_to_string(node.join("node.csr")).unwrap();
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

    let stderr = fails("tppguard-agent", &["init", "--dir", s(&node)]);
    assert!(
        stderr.starts_with("tppguard-agent: ") && stderr.contains("already exists"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint:") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem, "key untouched");

    let report = ok_json(
        "tppguard-agent",
        &[
            "init",
            "--dir",
            s(&node),
            "--key-type",
            "p256",
            "--force",
            "--json",
        ],
    );
    assert_eq!(report["replaced"], true);
    assert_eq!(report["key_type"], "p256");
    assert_ne!(std::fs::read_to_string(&key).unwrap(), pem);
    assert_eq!(mode(&key), 0o600);
}

/// `pki init`, then a node key of `key_type`, its certificate and the chain check.
fn issue_and_verify(key_type: &str, expected_alg: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    let node = tmp.path().join("node");
    let init = ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    assert_eq!(init["files"].as_array().unwrap().len(), 9);
    assert_eq!(mode(&pki), 0o700);
    for key in [
        "operator-ca.key",
        "licence-ca.key",
        "licence-signer.key",
        "verifier-result.key",
    ] {
        assert_eq!(mode(&pki.join(key)), 0o600, "{key}");
    }
    let trust_text = std::fs::read_to_string(pki.join("trust.toml")).unwrap();
    assert!(trust_text.contains("[operator]\nroots = [\"operator-ca.pem\"]"));
    assert!(trust_text.contains("[licence_authority]\nroots = [\"licence-ca.pem\"]"));
    assert!(trust_text.contains("[vendor]\nroots = []"));

    ok_json(
        "tppguard-agent",
        &[
            "init",
            "--dir",
            s(&node),
            "--key-type",
            key_type,
            "--name",
            "gpu-7",
            "--json",
        ],
    );
    let chain = node.join("node-chain.pem");
    let issued = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki),
            "--csr",
            s(&node.join("node.csr")),
            "--out",
            s(&chain),
            "--days",
            "30",
            "--json",
        ],
    );
    assert_eq!(issued["leaf"]["key_algorithm"], expected_alg);
    assert_eq!(issued["leaf"]["subject"], "CN=gpu-7");
    assert_eq!(issued["clipped_to_ca"], false);
    let pem = std::fs::read_to_string(&chain).unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf, then the CA"
    );

    let trust = pki.join("trust.toml");
    let verified = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--json",
            s(&chain),
        ],
    );
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["role"], "node");
    assert_eq!(verified["leaf"]["serial"], issued["leaf"]["serial"]);
    assert_eq!(verified["leaf"]["chain_len"], 2);
    let not_after = verified["leaf"]["not_after"].as_i64().unwrap();
    let days = (not_after - verified["at"].as_i64().unwrap()) / 86_400;
    assert!((29..=30).contains(&days), "{days} days");

    // The same chain, later than its notAfter.
    let late = (not_after + 1).to_string();
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--at",
            &late,
            s(&chain),
        ],
    );
    assert!(
        stderr.starts_with("tppguard-verifier: ") && stderr.contains("(cert_expired)"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");

    // A node chain is not a licence signer's, and the signer's chain is.
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--licence-signer",
            s(&chain),
        ],
    );
    assert!(stderr.contains("(wrong_eku)"), "{stderr}");
    let signer = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--licence-signer",
            "--json",
            s(&pki.join("licence-signer-chain.pem")),
        ],
    );
    assert_eq!(signer["role"], "licence_signer");
    assert_eq!(signer["leaf"]["key_algorithm"], "ed25519");
}

#[test]
fn pki_issues_an_ed25519_node_chain_the_verifier_accepts() {
    issue_and_verify("ed25519", "ed25519");
}

#[test]
fn pki_issues_a_p256_node_chain_the_verifier_accepts() {
    issue_and_verify("p256", "p256");
}

#[test]
fn pki_init_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    let key = std::fs::read(pki.join("operator-ca.key")).unwrap();
    let stderr = fails("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(std::fs::read(pki.join("operator-ca.key")).unwrap(), key);
}

#[test]
fn issue_node_rejects_a_tampered_or_oversized_csr() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    let node = tmp.path().join("node");
    ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    ok_json(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "n", "--json"],
    );
    let csr = std::fs::read_to_string(node.join("node.csr")).unwrap();
    // Change one character inside the signed request body.
    let body_start = csr.find('\n').unwrap() + 1;
    let mut bytes = csr.into_bytes();
    let i = body_start + 40;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = tmp.path().join("tampered.csr");
    std::fs::write(&tampered, bytes).unwrap();
    let out = tmp.path().join("chain.pem");
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki),
            "--csr",
            s(&tampered),
            "--out",
            s(&out),
        ],
    );
    assert!(
        stderr.contains("invalid certificate signing request"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");

    let big = tmp.path().join("big.csr");
    std::fs::write(&big, vec![b'A'; 70 * 1024]).unwrap();
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki),
            "--csr",
            s(&big),
            "--out",
            s(&out),
        ],
    );
    assert!(stderr.contains("more than the 65536 allowed"), "{stderr}");
}

#[test]
fn verify_chain_reports_a_bad_trust_file_by_name_and_key() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let trust = tmp.path().join("trust.toml");
    std::fs::write(
        &trust,
        "[operator]\nroots = []\n[licence_authority]\nroots = []\nextra = 1\n",
    )
    .unwrap();
    let chain = tmp.path().join("chain.pem");
    std::fs::write(&chain, "").unwrap();
    let stderr = fails(
        "tppguard-verifier",
        &["pki", "verify-chain", "--trust", s(&trust), s(&chain)],
    );
    assert!(
        stderr.contains("trust.toml") && stderr.contains("extra"),
        "{stderr}"
    );
}
