//! `tppguard-agent attest`, run as an operator would: node key, the built-in PKI, a node
//! certificate, then a signed attestation of the simulated DGX H100 node.

use serde_json::Value;

use crate::support::{FakeDriver, base64url, jws_payload, node_with_chain, ok, run, s};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Runs, expects exit code 2 and nothing on stdout, and returns stderr.
fn fails(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    stderr
}

#[test]
fn attest_signs_the_simulated_node_with_the_issued_chain() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    let jws_path = tmp.path().join("A.jws");
    let out = ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--simulate",
            "--nonce",
            NONCE,
            "--site",
            "fra-1",
            "--out",
            s(&jws_path),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SIMULATED"), "{stdout}");
    assert!(stdout.contains(s(&jws_path)), "{stdout}");
    assert!(stdout.contains(NONCE), "{stdout}");

    let token = std::fs::read_to_string(&jws_path).expect("attestation written");
    let parts: Vec<&str> = token.trim_end().split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&base64url(parts[0])).expect("header JSON");
    assert_eq!(header["typ"], "tppguard-attestation+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["x5c"].as_array().expect("x5c").len(), 2);

    let claims: Value = serde_json::from_slice(&base64url(parts[1])).expect("payload JSON");
    assert_eq!(claims["eat_nonce"], NONCE);
    assert_eq!(
        claims["eat_profile"],
        "tag:tppguard.dev,2026:attestation/v1"
    );
    assert_eq!(claims["iss"], "gpu-node-01", "the certificate's CN");
    assert_eq!(claims["tppguard.evidence_tier"], "declared");
    assert_eq!(claims["tppguard.site"], "fra-1");
    assert_eq!(claims["tppguard.simulated"], true);
    let submods = claims["submods"].as_object().expect("submods");
    assert_eq!(submods.len(), 8);
    for i in 0..8 {
        let gpu = &submods[&format!("gpu{i}")];
        assert_eq!(gpu["index"], i);
        assert!(gpu["uuid"].as_str().unwrap().starts_with("GPU-"), "{gpu}");
        assert_eq!(gpu["classification"]["eccn"], "3A090.a");
    }
}

#[test]
fn attest_json_summary_and_default_output() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    let out = ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--simulate",
            "dgx-h100",
            "--nonce",
            NONCE,
            "--json",
        ],
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let default = node.join("attestation.jws");
    assert_eq!(summary["out"], s(&default));
    assert_eq!(summary["gpus"], 8);
    assert_eq!(summary["nonce"], NONCE);
    assert_eq!(summary["simulated"], true);
    assert_eq!(summary["site"], Value::Null);
    assert_eq!(summary["x5c_certificates"], 2);
    assert!(
        summary["node_tpp"].as_f64().unwrap() > 100_000.0,
        "{summary}"
    );
    assert!(default.is_file());
}

#[test]
fn attest_rejects_a_bad_nonce() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    for (nonce, says) in [
        ("abcd", "at least 32"),
        (&*NONCE.to_uppercase(), "lower-case hex"),
        ("not-hex", "lower-case hex"),
    ] {
        let stderr = fails(
            "tppguard-agent",
            &["attest", "--dir", s(&node), "--simulate", "--nonce", nonce],
        );
        assert!(stderr.starts_with("tppguard-agent: --nonce: "), "{stderr}");
        assert!(stderr.contains(says), "{nonce}: {stderr}");
        assert!(stderr.contains("hint: "), "{stderr}");
    }
    assert!(!node.join("attestation.jws").exists());
}

#[test]
fn attest_without_a_chain_names_pki_issue_node() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = tmp.path().join("node");
    ok(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "n"],
    );
    let stderr = fails(
        "tppguard-agent",
        &["attest", "--dir", s(&node), "--simulate", "--nonce", NONCE],
    );
    assert!(stderr.contains("node-chain.pem"), "{stderr}");
    assert!(
        stderr.contains("tppguard-verifier pki issue-node"),
        "{stderr}"
    );
    // No key at all: the hint is `init`.
    let empty = tmp.path().join("empty");
    let stderr = fails(
        "tppguard-agent",
        &["attest", "--dir", s(&empty), "--simulate", "--nonce", NONCE],
    );
    assert!(stderr.contains("node.key"), "{stderr}");
    assert!(stderr.contains("tppguard-agent init"), "{stderr}");
}

#[test]
fn attest_with_the_fake_named_by_nvml_lib_signs_simulated() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    let driver = FakeDriver::with_fixture_file("dgx-h100");
    let jws_path = tmp.path().join("A.jws");
    let out = ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--nvml-lib",
            s(&driver.lib_path()),
            "--nonce",
            NONCE,
            "--out",
            s(&jws_path),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("SIMULATED NODE: the NVML library ") && stdout.contains("(simulated)"),
        "{stdout}"
    );
    let claims = jws_payload(&std::fs::read_to_string(&jws_path).expect("attestation written"));
    assert_eq!(claims["tppguard.simulated"], true, "{claims}");
    assert_eq!(claims["tppguard.evidence_tier"], "declared");
}

#[test]
fn attest_refuses_a_site_outside_the_licence_id_alphabet() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    for site in ["fra 1", "fra-1\u{1b}[2J", "", &"a".repeat(65)] {
        let stderr = fails(
            "tppguard-agent",
            &[
                "attest",
                "--dir",
                s(&node),
                "--simulate",
                "--nonce",
                NONCE,
                "--site",
                site,
            ],
        );
        assert!(
            stderr.starts_with("tppguard-agent: --site \"")
                && stderr.contains("a site id must be 1 to 64 ASCII letters, digits and `-_.:/`")
                && stderr.contains("\nhint: use the site id your licences name"),
            "{site:?}: {stderr}"
        );
        assert!(!stderr.contains('\u{1b}'), "{stderr}");
    }
    assert!(!node.join("attestation.jws").exists());
}
