//! `tppguard-verifier licence sign` and `licence show`, run as a licence authority and an
//! operator would: the built-in PKI, signing examples/licence.toml, and showing it (valid,
//! tampered, expired).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{bin, s, stderr, workspace_root};

fn run(args: &[&str]) -> Output {
    bin("tppguard-verifier")
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pki init` into TMP/pki, then `licence sign examples/licence.toml` to TMP/l.jws.
fn signed(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let pki = tmp.join("pki");
    let out = run(&["pki", "init", "--dir", s(&pki)]);
    assert!(out.status.success(), "pki init: {}", stderr(&out));
    let licence = workspace_root().join("examples").join("licence.toml");
    let jws = tmp.join("l.jws");
    let out = run(&[
        "licence",
        "sign",
        "--dir",
        s(&pki.join("licence-authority")),
        s(&licence),
        "--out",
        s(&jws),
    ]);
    assert!(out.status.success(), "licence sign: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("EXAMPLE-DE-2026-0142"), "{text}");
    assert!(text.contains("32500000"), "{text}");
    assert!(text.contains(s(&jws)), "{text}");
    (pki.join("verifier/trust.toml"), jws)
}

#[test]
fn sign_then_show_a_valid_licence() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (trust, jws) = signed(tmp.path());
    let mode = std::fs::metadata(&jws)
        .expect("written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);

    let at = "2027-06-01T00:00:00Z";
    let out = run(&["licence", "show", "--trust", s(&trust), "--at", at, s(&jws)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "EXAMPLE-DE-2026-0142",
        "signature verified",
        "CN=tppguard licence signer",
        "Example Cloud GmbH (headquarters DE, ultimate parent DE)",
        "fra-1",
        "3A090.a",
        "H100 SXM5 80GB",
        "max devices          2048",
        "max aggregate TPP    32500000",
        "H100-equivalents",
        "max TPP per device   15831.2 (1.00 H100-equivalents)",
        "licence_valid",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    let out = run(&[
        "licence",
        "show",
        "--trust",
        s(&trust),
        "--at",
        "1812000000",
        "--json",
        s(&jws),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["verified"], true);
    assert_eq!(report["validity"]["status"], "valid");
    assert_eq!(report["licence"]["id"], "EXAMPLE-DE-2026-0142");
    assert_eq!(report["caps"]["max_devices"], 2048);
    assert_eq!(report["caps"]["max_per_device_h100_equivalents"], "1.00");
    assert_eq!(report["signer"]["subject"], "CN=tppguard licence signer");
}

#[test]
fn a_tampered_licence_cannot_be_verified() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (trust, jws) = signed(tmp.path());
    let token = std::fs::read_to_string(&jws).expect("read");
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3);
    // Replace the payload with another licence's (the small example), keeping the signature.
    let other = tmp.path().join("other.jws");
    let small = workspace_root()
        .join("examples")
        .join("licence-too-small.toml");
    let pki = tmp.path().join("pki");
    let out = run(&[
        "licence",
        "sign",
        "--dir",
        s(&pki.join("licence-authority")),
        s(&small),
        "--out",
        s(&other),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let other_jws = std::fs::read_to_string(&other).expect("read");
    let other_payload = other_jws.trim().split('.').nth(1).expect("payload");
    let forged = format!("{}.{}.{}\n", parts[0], other_payload, parts[2]);
    let tampered = tmp.path().join("tampered.jws");
    std::fs::write(&tampered, forged).expect("write");
    let out = run(&["licence", "show", "--trust", s(&trust), s(&tampered)]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("licence rejected (jws_bad_signature)"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");

    // Not a JWS at all.
    std::fs::write(&tampered, "not a licence\n").expect("write");
    let out = run(&["licence", "show", "--trust", s(&trust), s(&tampered)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("(jws_part_count)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_expired_licence_verifies_with_exit_code_1() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (trust, jws) = signed(tmp.path());
    // valid_until is 2028-01-01T00:00:00Z, exclusive.
    for at in ["2028-01-01T00:00:00Z", "2028-01-01T01:00:00+01:00"] {
        let out = run(&["licence", "show", "--trust", s(&trust), "--at", at, s(&jws)]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("licence_expired"), "{text}");
        assert!(text.contains("signature verified"), "{text}");
    }
    let out = run(&[
        "licence",
        "show",
        "--trust",
        s(&trust),
        "--at",
        "2028-01-01T00:00:00Z",
        "--json",
        s(&jws),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["validity"]["status"], "expired");
    // A malformed --at is a usage error.
    let out = run(&[
        "licence",
        "show",
        "--trust",
        s(&trust),
        "--at",
        "2028-01-01",
        s(&jws),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_invalid_licence_toml_is_not_signed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    assert!(run(&["pki", "init", "--dir", s(&pki)]).status.success());
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(workspace_root().join("examples").join("licence.toml"))
        .expect("example")
        .replace("max_devices = 2048", "max_devices = 0");
    std::fs::write(&bad, text).expect("write");
    let jws = tmp.path().join("l.jws");
    let out = run(&[
        "licence",
        "sign",
        "--dir",
        s(&pki.join("licence-authority")),
        s(&bad),
        "--out",
        s(&jws),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("invalid licence (zero_cap)"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!jws.exists());
}

#[test]
fn show_names_a_licences_measurement_overrides() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    assert!(run(&["pki", "init", "--dir", s(&pki)]).status.success());
    let example = workspace_root()
        .join("examples")
        .join("licence-measured.toml");
    let jws = tmp.path().join("m.jws");
    let out = run(&[
        "licence",
        "sign",
        "--dir",
        s(&pki.join("licence-authority")),
        s(&example),
        "--out",
        s(&jws),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trust = pki.join("verifier/trust.toml");
    let out = run(&[
        "licence",
        "show",
        "--trust",
        s(&trust),
        "--at",
        "2027-06-01T00:00:00Z",
        s(&jws),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("measurement          exceeds_spec_percent 5 (replacing the rule set's)"),
        "{text}"
    );
    let out = run(&[
        "licence",
        "show",
        "--trust",
        s(&trust),
        "--at",
        "2027-06-01T00:00:00Z",
        "--json",
        s(&jws),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["licence"]["measurement"]["exceeds_spec_percent"], 5);
}
