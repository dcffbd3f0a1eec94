//! `tppguard-verifier shipment sign` and `shipment show`, run as a GPU vendor and a verifier
//! would (issue 15): the built-in PKI's vendor folder, signing examples/shipment.toml, and
//! showing it verified; a shipment signed with another purpose's key, a tampered one, and
//! hostile TOML, each refused with its code.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::support::{jws_payload, run, s, stderr, workspace_root};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn example() -> PathBuf {
    workspace_root().join("examples").join("shipment.toml")
}

/// `pki init` into TMP/pki; gives the folder.
fn pki(tmp: &Path) -> PathBuf {
    let pki = tmp.join("pki");
    let out = run("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    assert!(out.status.success(), "pki init: {}", stderr(&out));
    pki
}

/// `shipment sign --dir DIR --out OUT TOML`.
fn sign(dir: &Path, toml: &Path, out: &Path) -> Output {
    run(
        "tppguard-verifier",
        &[
            "shipment",
            "sign",
            "--dir",
            s(dir),
            "--out",
            s(out),
            s(toml),
        ],
    )
}

fn show(trust: &Path, jws: &Path, json: bool) -> Output {
    let mut args = vec!["shipment", "show", "--trust", s(trust), s(jws)];
    if json {
        args.push("--json");
    }
    run("tppguard-verifier", &args)
}

/// A refusal: exit code 2, the code in the message, nothing that could steer a terminal.
fn assert_refused(out: &Output, code: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(code), "{code} in {err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!err.contains(['\u{1b}', '\u{9b}']), "{err:?}");
}

#[test]
fn a_vendor_signs_a_shipment_and_the_verifier_shows_it_verified() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(tmp.path());
    let trust = pki.join("verifier/trust.toml");
    let jws = tmp.path().join("s.jws");
    let out = sign(&pki.join("vendor"), &example(), &jws);
    assert!(out.status.success(), "sign: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "signed shipment EXAMPLE-SHIP-2026-0007 of 8 GPUs under licence EXAMPLE-DE-2026-0142"
        ),
        "{text}"
    );
    let token = std::fs::read_to_string(&jws).unwrap();
    let payload = jws_payload(&token);
    assert_eq!(payload["delivery"]["site"], "fra-1");
    assert_eq!(payload["devices"].as_array().unwrap().len(), 8);

    let out = show(&trust, &jws, false);
    assert!(out.status.success(), "show: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("signature verified"), "{text}");
    assert!(text.contains("CN=tppguard shipment signer"), "{text}");
    assert!(
        text.contains("GPU-2c12e0be-7e98-8b03-be1d-de49df724223")
            && text.contains("SIM-H100-4209608"),
        "{text}"
    );

    let out = show(&trust, &jws, true);
    assert!(out.status.success(), "show --json: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["vendor"], "CN=tppguard shipment signer");
    assert_eq!(report["shipment"]["licence"], "EXAMPLE-DE-2026-0142");
    assert_eq!(report["shipment"]["delivered_at"], "2026-03-02T09:00:00Z");
    assert_eq!(
        report["token_sha256"],
        tppguard_verifier::store::sha256_hex(token.trim().as_bytes())
    );
}

/// A folder holding `key` and `chain` from `from` under the names `as_key` and `as_chain`.
fn signer_as(tmp: &Path, from: &Path, files: [(&str, &str); 2]) -> PathBuf {
    let dir = tmp.join(format!("as-{}", files[0].1));
    std::fs::create_dir_all(&dir).unwrap();
    for (src, dst) in files {
        std::fs::copy(from.join(src), dir.join(dst)).unwrap();
    }
    dir
}

#[test]
fn a_root_for_one_purpose_never_validates_another() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(tmp.path());
    let trust = pki.join("verifier/trust.toml");

    // The licence authority's signer signs a shipment: it signs, but no verifier takes it.
    let licence_key_as_vendor = signer_as(
        tmp.path(),
        &pki.join("licence-authority"),
        [
            ("licence-signer.key", "shipment-signer.key"),
            ("licence-signer-chain.pem", "shipment-signer-chain.pem"),
        ],
    );
    let jws = tmp.path().join("by-licence-signer.jws");
    let out = sign(&licence_key_as_vendor, &example(), &jws);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = show(&trust, &jws, false);
    assert_refused(&out, "shipment_chain");
    assert!(stderr(&out).contains("[vendor] roots"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // The vendor's signer signs a licence: `licence show` refuses it with the chain code.
    let vendor_key_as_authority = signer_as(
        tmp.path(),
        &pki.join("vendor"),
        [
            ("shipment-signer.key", "licence-signer.key"),
            ("shipment-signer-chain.pem", "licence-signer-chain.pem"),
        ],
    );
    let licence_jws = tmp.path().join("by-vendor.jws");
    let out = run(
        "tppguard-verifier",
        &[
            "licence",
            "sign",
            "--dir",
            s(&vendor_key_as_authority),
            "--out",
            s(&licence_jws),
            s(&workspace_root().join("examples/licence.toml")),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        "tppguard-verifier",
        &["licence", "show", "--trust", s(&trust), s(&licence_jws)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("licence rejected (wrong_eku)") || err.contains("(unknown_issuer)"),
        "{err}"
    );

    // A signed licence is not a shipment, and a signed shipment not a licence.
    let good = tmp.path().join("good.jws");
    assert!(
        sign(&pki.join("vendor"), &example(), &good)
            .status
            .success()
    );
    let out = run(
        "tppguard-verifier",
        &["licence", "show", "--trust", s(&trust), s(&good)],
    );
    assert!(stderr(&out).contains("wrong_typ"), "{}", stderr(&out));
    let out = show(&trust, &licence_jws, false);
    assert_refused(&out, "shipment_bad_token");
    assert!(stderr(&out).contains("wrong_typ"), "{}", stderr(&out));
}

#[test]
fn a_tampered_shipment_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(tmp.path());
    let trust = pki.join("verifier/trust.toml");
    let jws = tmp.path().join("s.jws");
    assert!(sign(&pki.join("vendor"), &example(), &jws).status.success());
    let token = std::fs::read_to_string(&jws).unwrap();
    let parts: Vec<&str> = token.trim().split('.').collect();
    // The GPUs "delivered" to the other site of the licence, the signature kept.
    let mut payload = jws_payload(&token);
    payload["delivery"]["site"] = "ber-1".into();
    let moved = format!(
        "{}.{}.{}\n",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    let tampered = tmp.path().join("tampered.jws");
    std::fs::write(&tampered, moved).unwrap();
    let out = show(&trust, &tampered, false);
    assert_refused(&out, "shipment_signature");
    assert!(
        stderr(&out).contains("changed after signing"),
        "{}",
        stderr(&out)
    );

    // A truncated token, and bytes that are no token at all.
    std::fs::write(&tampered, &token[..token.len() / 2]).unwrap();
    assert_refused(&show(&trust, &tampered, false), "shipment_bad_token");
    std::fs::write(&tampered, b"\x1b[2J\xff\xfe").unwrap();
    assert_refused(&show(&trust, &tampered, false), "shipment_bad_token");
}

#[test]
fn hostile_toml_gets_a_clear_error_and_exit_code_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(tmp.path());
    let vendor = pki.join("vendor");
    let example_text = std::fs::read_to_string(example()).unwrap();
    let out_jws = tmp.path().join("never.jws");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "escape in the vendor name",
            example_text.replace(
                "vendor = \"Example GPU Vendor (not a real shipment)\"",
                "vendor = \"V\\u001b[2J\\u009b31mCOMPLIANT\"",
            ),
            "bad_vendor",
        ),
        (
            "control character in a serial",
            example_text.replace("SIM-H100-4209603", "SIM\\u0007H100"),
            "bad_identity",
        ),
        (
            "a GPU listed twice",
            example_text.replace("SIM-H100-4209602", "sim-h100-4209601"),
            "duplicate_identity",
        ),
        (
            "an unknown key",
            example_text.replace("[delivery]", "compliant = true\n[delivery]"),
            "invalid_toml",
        ),
        (
            "too many bytes",
            format!("{example_text}#{}\n", "x".repeat(600 * 1024)),
            "more than the 524288 allowed",
        ),
        (
            "a bidirectional override in the id",
            example_text.replace("EXAMPLE-SHIP-2026-0007", "SHIP\u{202e}7"),
            "bad_id",
        ),
    ];
    for (what, text, code) in cases {
        let file = tmp.path().join("hostile.toml");
        std::fs::write(&file, text).unwrap();
        let out = sign(&vendor, &file, &out_jws);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(code), "{what}: {code} in {err}");
        assert!(err.contains("hint:"), "{what}: {err}");
        assert!(
            !err.contains(['\u{1b}', '\u{9b}', '\u{7}', '\u{202e}']),
            "{what}: {err:?}"
        );
        assert!(!out_jws.exists(), "{what}: nothing is written");
    }
    // Raw bytes that are not UTF-8.
    let file = tmp.path().join("binary.toml");
    std::fs::write(&file, b"id = \"\xff\"\n").unwrap();
    let out = sign(&vendor, &file, &out_jws);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));

    // The wrong folder: the hint names the vendor's.
    let out = sign(&pki.join("licence-authority"), &example(), &out_jws);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pki init-vendor"), "{err}");
    assert!(!out_jws.exists());
}

#[test]
fn the_vendor_makes_its_own_folder_and_only_a_verifier_pinning_it_accepts_its_shipments() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp dir");
    let (op, la, vendor) = (
        tmp.path().join("op"),
        tmp.path().join("la"),
        tmp.path().join("vendor"),
    );
    for (command, dir) in [
        ("init-operator", &op),
        ("init-licence-authority", &la),
        ("init-vendor", &vendor),
    ] {
        let out = run("tppguard-verifier", &["pki", command, "--dir", s(dir)]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&vendor), 0o700);
    for key in ["vendor-ca.key", "shipment-signer.key"] {
        assert_eq!(mode(&vendor.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&vendor.join("shipment-signer-chain.pem")), 0o644);
    let jws = tmp.path().join("s.jws");
    assert!(sign(&vendor, &example(), &jws).status.success());

    // One verifier pins the vendor's CA (only its public certificate travels), one does not.
    let (op_ca, la_ca, ca) = (
        op.join("operator-ca.pem"),
        la.join("licence-ca.pem"),
        vendor.join("vendor-ca.pem"),
    );
    let init_verifier = |dir: &Path, vendor_ca: bool| {
        let mut args = vec![
            "pki",
            "init-verifier",
            "--dir",
            s(dir),
            "--operator-ca",
            s(&op_ca),
            "--licence-ca",
            s(&la_ca),
            "--json",
        ];
        if vendor_ca {
            args.extend(["--vendor-ca", s(&ca)]);
        }
        let out = run("tppguard-verifier", &args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let pinned = tmp.path().join("v1");
    let report = init_verifier(&pinned, true);
    assert_eq!(report["files"].as_array().unwrap().len(), 7, "{report}");
    let copy = std::fs::read_to_string(pinned.join("vendor-ca.pem")).unwrap();
    assert!(!copy.contains("PRIVATE KEY"));
    let out = show(&pinned.join("trust.toml"), &jws, false);
    assert!(out.status.success(), "{}", stderr(&out));

    let unpinned = tmp.path().join("v2");
    init_verifier(&unpinned, false);
    assert!(!unpinned.join("vendor-ca.pem").exists());
    let out = show(&unpinned.join("trust.toml"), &jws, false);
    assert_refused(&out, "shipment_chain");
    assert!(stderr(&out).contains("unknown_issuer"), "{}", stderr(&out));

    // A shipment signer's key is no CA: --vendor-ca refuses the chain file's leaf.
    let out = run(
        "tppguard-verifier",
        &[
            "pki",
            "init-verifier",
            "--dir",
            s(&tmp.path().join("v3")),
            "--operator-ca",
            s(&op.join("operator-ca.pem")),
            "--licence-ca",
            s(&la.join("licence-ca.pem")),
            "--vendor-ca",
            s(&vendor.join("shipment-signer-chain.pem")),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a CA"), "{}", stderr(&out));
    assert!(!tmp.path().join("v3").join("trust.toml").exists());
}
