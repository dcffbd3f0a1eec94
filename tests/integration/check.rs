//! `tppguard-verifier check`, run as an operator and a regulator would: the built-in PKI, a
//! node with an issued certificate, a simulated DGX H100 attestation answering a nonce, the
//! example licences signed, then the fleet checked under one or several rule sets.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{
    attest_to, base64url, jws_payload, node_with_chain, run, s, sign_licence, stderr,
    workspace_root,
};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER_NONCE: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The set-up every test shares: PKI, node, attestation, both example licences signed.
struct Fleet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    trust: PathBuf,
    attestation: PathBuf,
    licence: PathBuf,
    too_small: PathBuf,
    /// The attestation's `iat` plus a minute: a fixed `--at` at which everything is valid.
    at: String,
}

impl Fleet {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let (node, pki) = node_with_chain(&dir, "gpu-node-01");
        let attestation = dir.join("A.jws");
        attest_to(&node, None, NONCE, "fra-1", &attestation);
        let sign = |toml: &str, out: &Path| {
            let toml = workspace_root().join("examples").join(toml);
            sign_licence(&pki, &toml, out);
        };
        let licence = dir.join("l.jws");
        let too_small = dir.join("small.jws");
        sign("licence.toml", &licence);
        sign("licence-too-small.toml", &too_small);
        let token = std::fs::read_to_string(&attestation).expect("attestation");
        let iat = jws_payload(&token)["iat"].as_i64().expect("iat");
        Self {
            _tmp: tmp,
            trust: pki.join("verifier/trust.toml"),
            dir,
            attestation,
            licence,
            too_small,
            at: (iat + 60).to_string(),
        }
    }

    /// `check --trust T --at AT --licence L EXTRA... ATTESTATIONS...`.
    fn check(&self, licence: &Path, extra: &[&str], attestations: &[&Path]) -> Output {
        let mut args = vec![
            "check",
            "--trust",
            s(&self.trust),
            "--at",
            &self.at,
            "--licence",
            s(licence),
        ];
        args.extend_from_slice(extra);
        args.extend(attestations.iter().map(|p| s(p)));
        run("tppguard-verifier", &args)
    }

    fn json(&self, licence: &Path, extra: &[&str], attestations: &[&Path]) -> (i32, Value) {
        let mut extra = extra.to_vec();
        extra.push("--json");
        let out = self.check(licence, &extra, attestations);
        let code = out.status.code().expect("exit code");
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out), stderr(&out)));
        (code, json)
    }
}

#[test]
fn a_simulated_fleet_within_its_licence_is_unproven_exit_3() {
    let f = Fleet::new();
    let out = f.check(&f.licence, &["--nonce", NONCE], &[&f.attestation]);
    let t = text(&out);
    // Simulated evidence is never compliant: within the caps, but unproven.
    assert_eq!(out.status.code(), Some(3), "{t}{}", stderr(&out));
    assert!(t.contains("simulated_inventory"), "{t}");
    assert!(t.contains("UNPROVEN"), "{t}");
    assert!(t.contains("126649.6"), "{t}");
    assert!(t.contains("32500000"), "{t}");
    assert!(t.contains("rule set us-eccn-3a090"), "{t}");
    assert!(t.contains("[in force]"), "{t}");
    assert!(t.contains("us-eccn-3a090 v2 [in force]: UNPROVEN"), "{t}");
    assert!(t.contains("EXAMPLE-DE-2026-0142"), "{t}");

    let (code, json) = f.json(&f.licence, &["--nonce", NONCE], &[&f.attestation]);
    assert_eq!(code, 3);
    assert_eq!(json["verdict"], "unproven");
    assert_eq!(json["verdicts"][0]["licences"][0]["verdict"], "unproven");
    assert_eq!(json["licences"][0]["id"], "EXAMPLE-DE-2026-0142");
    assert_eq!(json["licences"][0]["accepted"], true);
    assert_eq!(
        json["attestations"]["accepted"].as_array().unwrap().len(),
        1
    );
    assert_eq!(json["attestations"]["rejected"], Value::Array(vec![]));
    let usage = &json["verdicts"][0]["licences"][0];
    assert_eq!(usage["devices"]["used"], 8);
    assert_eq!(usage["tpp"]["used"].to_string(), "126649.6");
}

#[test]
fn a_licence_too_small_exits_1_with_the_cap_figures() {
    let f = Fleet::new();
    let out = f.check(&f.too_small, &[], &[&f.attestation]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}{}", stderr(&out));
    assert!(t.contains("aggregate_tpp_above_cap"), "{t}");
    assert!(t.contains("NOT COMPLIANT"), "{t}");

    let (code, json) = f.json(&f.too_small, &[], &[&f.attestation]);
    assert_eq!(code, 1);
    assert_eq!(json["verdict"], "not_compliant");
    let findings = json["verdicts"][0]["findings"].as_array().unwrap();
    let cap = findings
        .iter()
        .find(|x| x["code"] == "aggregate_tpp_above_cap")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(cap["severity"], "violation");
    assert_eq!(cap["figures"]["used"].to_string(), "126649.6");
    assert_eq!(cap["figures"]["cap"].as_f64(), Some(100_000.0));
    assert!(t.contains("100000"), "{t}");
    assert!(t.contains("126649.6"), "{t}");
}

#[test]
fn two_rule_sets_side_by_side() {
    let f = Fleet::new();
    let extra = [
        "--rule-set",
        "us-eccn-3a090",
        "--rule-set",
        "us-gain-ai-act-s3150",
    ];
    let (_, json) = f.json(&f.licence, &extra, &[&f.attestation]);
    let verdicts = json["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0]["rule_set"], "us-eccn-3a090");
    assert_eq!(verdicts[0]["rule_set_status"], "in_force");
    assert_eq!(verdicts[1]["rule_set"], "us-gain-ai-act-s3150");
    assert_eq!(verdicts[1]["rule_set_status"], "bill");
    let t = text(&f.check(&f.licence, &extra, &[&f.attestation]));
    assert!(t.contains("rule set us-gain-ai-act-s3150"), "{t}");
    assert!(t.contains("bill (not law)"), "{t}");
}

#[test]
fn a_wrong_nonce_rejects_the_attestation_with_exit_1() {
    let f = Fleet::new();
    let (code, json) = f.json(&f.licence, &["--nonce", OTHER_NONCE], &[&f.attestation]);
    assert_eq!(code, 1);
    assert_eq!(json["verdict"], "not_compliant");
    let rejected = &json["attestations"]["rejected"][0];
    assert_eq!(rejected["code"], "nonce_mismatch");
    assert_eq!(rejected["file"], s(&f.attestation));
    assert!(rejected["sentence"].as_str().unwrap().contains("nonce"));
    let out = f.check(&f.licence, &["--nonce", OTHER_NONCE], &[&f.attestation]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("nonce_mismatch"), "{}", text(&out));
}

#[test]
fn a_tampered_attestation_is_rejected_with_exit_1() {
    let f = Fleet::new();
    let token = std::fs::read_to_string(&f.attestation).expect("read");
    let parts: Vec<&str> = token.trim().split('.').collect();
    let mut claims = jws_payload(&token);
    claims["iss"] = Value::from("someone-else");
    let forged_payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap())
    };
    let tampered = f.dir.join("tampered.jws");
    std::fs::write(
        &tampered,
        format!("{}.{}.{}\n", parts[0], forged_payload, parts[2]),
    )
    .expect("write");
    let (code, json) = f.json(&f.licence, &[], &[&f.attestation, &tampered]);
    assert_eq!(code, 1);
    assert_eq!(
        json["attestations"]["accepted"].as_array().unwrap().len(),
        1
    );
    let rejected = &json["attestations"]["rejected"][0];
    assert_eq!(rejected["code"], "jws_bad_signature");
    assert_eq!(rejected["file"], s(&tampered));
}

#[test]
fn json_is_byte_identical_across_runs() {
    let f = Fleet::new();
    let extra = [
        "--json",
        "--rule-set",
        "us-eccn-3a090",
        "--rule-set",
        "us-gain-ai-act-s3150",
    ];
    let first = f.check(&f.licence, &extra, &[&f.attestation]);
    let second = f.check(&f.licence, &extra, &[&f.attestation]);
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn ear_status_follows_the_verdict() {
    let f = Fleet::new();
    // The fleet's node is simulated: unproven (exit 3), EAR's "warning" (the evidence proves
    // nothing about hardware), never "affirming".
    for (licence, status, code) in [
        (&f.licence, "warning", 3),
        (&f.too_small, "contraindicated", 1),
    ] {
        let ear = f.dir.join("result.jwt");
        let out = f.check(licence, &["--ear", s(&ear)], &[&f.attestation]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let token = std::fs::read_to_string(&ear).expect("EAR written");
        let header: Value =
            serde_json::from_slice(&base64url(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "EdDSA");
        let claims = jws_payload(&token);
        assert_eq!(claims["eat_profile"], "tag:github.com,2023:veraison/ear");
        assert_eq!(claims["ear.verifier-id"]["developer"], "tppguard");
        let submods = claims["submods"].as_object().unwrap();
        assert_eq!(submods.len(), 1, "{claims}");
        let (_, node) = submods.iter().next().unwrap();
        assert_eq!(node["ear.status"], status, "{claims}");
        let reasons = node["tppguard.reasons"].as_array().unwrap();
        assert!(
            reasons.contains(&Value::from("simulated_inventory")),
            "{claims}"
        );
        if status == "contraindicated" {
            assert!(
                node["tppguard.reasons"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::from("aggregate_tpp_above_cap")),
                "{claims}"
            );
        }
    }
}

#[test]
fn ear_without_a_key_is_exit_2_naming_the_flag() {
    let f = Fleet::new();
    std::fs::remove_file(f.trust.parent().unwrap().join("verifier-result.key")).unwrap();
    let ear = f.dir.join("result.jwt");
    let out = f.check(&f.licence, &["--ear", s(&ear)], &[&f.attestation]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--ear-key"), "{}", stderr(&out));
    assert!(!ear.exists());
}

#[test]
fn an_unreadable_attestation_is_exit_2() {
    let f = Fleet::new();
    let missing = f.dir.join("missing.jws");
    let out = f.check(&f.licence, &[], &[&missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("missing.jws"), "{}", stderr(&out));
}
