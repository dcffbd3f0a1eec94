//! The attacks issue 11 found, each run again through the binaries as the attacker would run
//! it (a root user on a node re-signing its own claims, an operator choosing sites and names),
//! and the acceptance fleet: H100, H20, L40S and RTX 4090 D under a 3A090 licence.
//!
//! The verifier cannot tell claims a root user re-signed from claims the real agent signed on
//! real hardware (docs/trust-model.md): [`real`] makes exactly the bytes a real node's agent
//! signs, the simulated inventory without its simulated mark, so the acceptance fleet can be
//! checked as real evidence.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    attest_to, issue_node, jws_payload, ok, pki_issuer, resigned, run, s, sign_licence,
    workspace_root,
};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// An operator's PKI, licences and nodes in one temporary folder.
struct Operator {
    tmp: tempfile::TempDir,
    pki: PathBuf,
    /// A copy of the PKI taken before any issuance: a second CA with the same root, whose
    /// issuance record knows nothing of the first's (two operators' tools, or a restored
    /// backup).
    pki_copy: PathBuf,
}

impl Operator {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let pki = tmp.path().join("pki");
        ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
        let pki_copy = tmp.path().join("pki-copy");
        copy_dir(&pki, &pki_copy);
        Self { tmp, pki, pki_copy }
    }

    /// A node folder `dir`, named `name`, issued by `pki`, its certificate certifying `site`.
    fn node(&self, dir: &str, name: &str, site: Option<&str>, pki: &Path) -> PathBuf {
        let node = self.tmp.path().join(dir);
        issue_node(pki, &node, name, site);
        node
    }

    /// The simulated `fixture` attested by `node`, claiming `site`.
    fn attest(&self, node: &Path, fixture: &str, site: &str) -> String {
        let out = node.join(format!("{fixture}-{site}.jws"));
        attest_to(node, Some(fixture), NONCE, site, &out)
    }

    /// `examples/NAME` with `edits` (old, new) applied, signed by the licence authority.
    fn licence(&self, name: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(workspace_root().join("examples").join(name))
            .expect("example licence");
        for (old, new) in edits {
            assert!(text.contains(old), "{old}");
            text = text.replacen(old, new, 1);
        }
        let toml = self.tmp.path().join(format!("{name}.{}.toml", edits.len()));
        std::fs::write(&toml, text).expect("write licence");
        let out = toml.with_extension("jws");
        sign_licence(&self.pki, &toml, &out);
        out
    }

    /// `check --json` of `tokens` under `licences` at `at`, with `extra` flags: (exit, JSON).
    fn check(&self, licences: &[&Path], tokens: &[&str], at: i64, extra: &[&str]) -> (i32, Value) {
        let mut args: Vec<String> = vec![
            "check".into(),
            "--json".into(),
            "--trust".into(),
            s(&self.pki.join("verifier/trust.toml")).into(),
            "--at".into(),
            at.to_string(),
            "--nonce".into(),
            NONCE.into(),
        ];
        for l in licences {
            args.extend(["--licence".into(), s(l).into()]);
        }
        args.extend(extra.iter().map(|e| (*e).to_owned()));
        for (i, t) in tokens.iter().enumerate() {
            let path = self.tmp.path().join(format!("token-{i}.jws"));
            std::fs::write(&path, t).expect("write token");
            args.push(s(&path).into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run("tppguard-verifier", &args);
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        (out.status.code().expect("exit code"), json)
    }
}

/// Copies the folder `from` to `to`, with its party folders.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// A token's `iat`.
fn iat(token: &str) -> i64 {
    jws_payload(token)["iat"].as_i64().expect("iat")
}

/// The codes of the first verdict's findings.
fn codes(json: &Value) -> Vec<String> {
    codes_of(&json["verdicts"][0])
}

/// The codes of a verdict's findings, less `no_licence_required`: the one info finding every
/// licence of the example's German licensee carries under `us-eccn-3a090` (the policy's
/// `licence_need` tests hold it), which says nothing about the attack at hand.
fn codes_of(verdict: &Value) -> Vec<String> {
    verdict["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["code"].as_str().expect("code").to_owned())
        .filter(|c| c != "no_licence_required")
        .collect()
}

/// `token` as a real node's agent signs the same inventory: without the simulated mark and
/// without the simulated measurements (so `declared`).
fn real(node: &Path, token: &str) -> String {
    resigned(node, token, |c| {
        let claims = c.as_object_mut().expect("claims object");
        claims.remove("tppguard.simulated");
        claims.insert("tppguard.evidence_tier".into(), "declared".into());
        for gpu in claims["submods"]
            .as_object_mut()
            .expect("submods")
            .values_mut()
        {
            gpu.as_object_mut().expect("submod").remove("measurement");
        }
    })
}

/// Acceptance: H100, H20, L40S and RTX 4090 D under a 3A090 licence are compliant on real
/// evidence, the H20 and RTX 4090 D listed as not controlled; under the GAIN bill they are
/// judged, and the same licence does not cover them.
#[test]
fn a_mixed_fleet_is_compliant_under_3a090_and_judged_under_the_gain_bill() {
    let op = Operator::new();
    let node = op.node("node", "mixed-1", Some("fra-1"), &op.pki);
    let token = real(&node, &op.attest(&node, "mixed", "fra-1"));
    let licence = op.licence(
        "licence.toml",
        &[(
            r#"models = ["H100 SXM5 80GB", "H200 SXM 141GB"]"#,
            r#"models = ["H100 SXM5 80GB", "L40S"]"#,
        )],
    );
    let at = iat(&token) + 60;
    let (code, json) = op.check(&[&licence], &[&token], at, &[]);
    assert_eq!(code, 0, "{:?}", codes(&json));
    assert_eq!(json["verdict"], "compliant");
    let usage = &json["verdicts"][0]["licences"][0];
    assert_eq!(usage["verdict"], "compliant");
    assert_eq!(usage["devices"]["used"], 4, "two H100 and two L40S");
    assert_eq!(
        usage["devices_not_controlled"], 4,
        "two H20 and two RTX 4090 D"
    );
    let gpus = json["verdicts"][0]["nodes"][0]["gpus"]
        .as_array()
        .expect("gpus");
    for gpu in gpus {
        let controlled = gpu["outcome"] == "3A090.a";
        assert_eq!(gpu["controlled"], controlled, "{gpu}");
        assert_eq!(gpu["counted"], controlled, "{gpu}");
    }

    let (code, json) = op.check(
        &[&licence],
        &[&token],
        at,
        &[
            "--rule-set",
            "us-eccn-3a090",
            "--rule-set",
            "us-gain-ai-act-s3150",
        ],
    );
    assert_eq!(code, 1, "the GAIN scenario breaks the licence");
    assert_eq!(json["verdicts"][0]["verdict"], "compliant");
    let gain = &json["verdicts"][1];
    assert_eq!(gain["rule_set"], "us-gain-ai-act-s3150");
    assert_eq!(gain["verdict"], "not_compliant");
    assert_eq!(
        gain["licences"][0]["devices_not_controlled"], 0,
        "GAIN covers them all"
    );
    assert_eq!(gain["licences"][0]["devices"]["used"], 8);
    assert!(codes_of(gain).contains(&"model_not_allowed".to_owned()));
}

/// The same fleet as the agent signs it on the simulated driver is never compliant.
#[test]
fn simulated_evidence_is_unproven_even_within_every_cap() {
    let op = Operator::new();
    let node = op.node("node", "mixed-1", Some("fra-1"), &op.pki);
    let token = op.attest(&node, "dgx-h100", "fra-1");
    assert_eq!(jws_payload(&token)["tppguard.simulated"], true);
    let licence = op.licence("licence.toml", &[]);
    let (code, json) = op.check(&[&licence], &[&token], iat(&token) + 60, &[]);
    assert_eq!(code, 3);
    assert_eq!(json["verdict"], "unproven");
    assert_eq!(codes(&json), ["simulated_inventory"]);
}

/// A re-signed `tppguard.evidence_tier = "hardware"` does not meet a licence that needs it.
#[test]
fn a_claimed_hardware_tier_is_only_a_request() {
    let op = Operator::new();
    let node = op.node("node", "n1", Some("fra-1"), &op.pki);
    let token = resigned(
        &node,
        &real(&node, &op.attest(&node, "dgx-h100", "fra-1")),
        |c| {
            c["tppguard.evidence_tier"] = "hardware".into();
        },
    );
    let licence = op.licence(
        "licence.toml",
        &[(
            r#"min_evidence_tier = "declared""#,
            r#"min_evidence_tier = "hardware""#,
        )],
    );
    let (code, json) = op.check(&[&licence], &[&token], iat(&token) + 60, &[]);
    assert_eq!(code, 3, "{:?}", codes(&json));
    assert_eq!(
        codes(&json),
        ["evidence_tier_too_low", "hardware_tier_unverified"]
    );
    let node = &json["verdicts"][0]["nodes"][0];
    assert_eq!(node["evidence_tier"], "hardware");
    assert_eq!(node["effective_evidence_tier"], "declared");
}

/// Two machines whose certificates share a subject (a cloned image, a second CA tool) are two
/// nodes: 16 GPUs, not 8, and the cap breach stays visible.
#[test]
fn two_keys_under_one_subject_are_two_nodes() {
    let op = Operator::new();
    let a = op.node("a", "gpu-node", Some("fra-1"), &op.pki);
    let b = op.node("b", "gpu-node", Some("fra-1"), &op.pki_copy);
    let ta = real(&a, &op.attest(&a, "dgx-h100", "fra-1"));
    let mut tb = real(&b, &op.attest(&b, "dgx-h100", "fra-1"));
    // Distinct GPUs on the second machine.
    tb = resigned(&b, &tb, |c| {
        for gpu in c["submods"].as_object_mut().expect("submods").values_mut() {
            let uuid = gpu["uuid"].as_str().expect("uuid").replace("GPU-", "GPU-b");
            gpu["uuid"] = uuid.into();
        }
    });
    let licence = op.licence(
        "licence.toml",
        &[(
            r#"max_aggregate_tpp = "32500000""#,
            r#"max_aggregate_tpp = "200000""#,
        )],
    );
    let (code, json) = op.check(&[&licence], &[&ta, &tb], iat(&tb) + 60, &[]);
    assert_eq!(code, 1);
    let v = &json["verdicts"][0];
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["licences"][0]["devices"]["used"], 16);
    let found = codes(&json);
    assert!(
        found.contains(&"aggregate_tpp_above_cap".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"subject_with_several_keys".to_owned()),
        "{found:?}"
    );
}

/// Switching the claimed site does not move GPUs from an over-cap licence to another: the
/// certified site counts, and the claim is a violation.
#[test]
fn a_claimed_site_cannot_move_gpus_between_licences() {
    let op = Operator::new();
    let node = op.node("node", "n1", Some("muc-1"), &op.pki);
    let small = op.licence(
        "licence-too-small.toml",
        &[
            ("id = \"fra-1\"", "id = \"muc-1\""),
            ("id = \"ber-1\"", "id = \"ham-1\""),
        ],
    );
    let big = op.licence("licence.toml", &[]);
    let token = real(&node, &op.attest(&node, "dgx-h100", "fra-1"));
    let (code, json) = op.check(&[&big, &small], &[&token], iat(&token) + 60, &[]);
    assert_eq!(code, 1);
    let found = codes(&json);
    assert!(
        found.contains(&"site_claim_mismatch".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"aggregate_tpp_above_cap".to_owned()),
        "{found:?}"
    );
    let node = &json["verdicts"][0]["nodes"][0];
    assert_eq!(node["site"], "muc-1");
    assert_eq!(node["site_certified"], true);
    assert_eq!(node["licence"], "EXAMPLE-DE-2026-0143");
}

/// A node whose certificate certifies no site stands where it says: unproven.
#[test]
fn an_uncertified_site_is_unproven() {
    let op = Operator::new();
    let node = op.node("node", "n1", None, &op.pki);
    let token = real(&node, &op.attest(&node, "dgx-h100", "fra-1"));
    let licence = op.licence("licence.toml", &[]);
    let (code, json) = op.check(&[&licence], &[&token], iat(&token) + 60, &[]);
    assert_eq!(code, 3);
    assert_eq!(codes(&json), ["site_not_certified"]);
}

/// One attestation dated ahead does not pin the node's record in `check`: the honest one is
/// current, and the node is unproven.
#[test]
fn a_future_dated_attestation_does_not_pin_the_node() {
    let op = Operator::new();
    let node = op.node("node", "n1", Some("fra-1"), &op.pki);
    let honest = real(&node, &op.attest(&node, "dgx-h100", "fra-1"));
    let at = iat(&honest) + 60;
    let ahead = resigned(&node, &honest, |c| {
        c["iat"] = (at + 3 * 365 * 86_400).into();
        let submods = c["submods"].as_object_mut().expect("submods");
        let keep: Vec<String> = submods.keys().take(4).cloned().collect();
        submods.retain(|k, _| keep.contains(k));
    });
    let licence = op.licence("licence.toml", &[]);
    let (code, json) = op.check(&[&licence], &[&ahead, &honest], at, &[]);
    assert_eq!(code, 3);
    assert_eq!(codes(&json), ["attestation_from_future"]);
    let v = &json["verdicts"][0];
    assert_eq!(v["nodes"][0]["iat"], iat(&honest));
    assert_eq!(v["licences"][0]["devices"]["used"], 8);
}

/// Upper-casing a copied UUID and nulling its serial does not hide it; at another site it is
/// a violation.
#[test]
fn a_disguised_duplicate_at_another_site_is_a_violation() {
    let op = Operator::new();
    let a = op.node("a", "node-a", Some("fra-1"), &op.pki);
    let b = op.node("b", "node-b", Some("ber-1"), &op.pki);
    let ta = real(&a, &op.attest(&a, "dgx-h100", "fra-1"));
    let tb = resigned(&b, &real(&b, &op.attest(&b, "dgx-h100", "ber-1")), |c| {
        for gpu in c["submods"].as_object_mut().expect("submods").values_mut() {
            let uuid = gpu["uuid"].as_str().expect("uuid").to_uppercase();
            gpu["uuid"] = format!(" {uuid}").into();
            gpu["serial"] = Value::Null;
        }
    });
    let licence = op.licence("licence.toml", &[]);
    let (code, json) = op.check(&[&licence], &[&ta, &tb], iat(&tb) + 60, &[]);
    assert_eq!(code, 1);
    let found = codes(&json);
    assert_eq!(
        found.iter().filter(|c| *c == "duplicate_device").count(),
        8,
        "{found:?}"
    );
    assert_eq!(json["verdicts"][0]["licences"][0]["devices"]["used"], 8);

    // A GPU whose UUID is nulled has no identity: unproven.
    let tb = resigned(&b, &tb, |c| {
        for gpu in c["submods"].as_object_mut().expect("submods").values_mut() {
            gpu["uuid"] = Value::Null;
        }
    });
    let (code, json) = op.check(&[&licence], &[&tb], iat(&tb) + 60, &[]);
    assert_eq!(code, 3);
    assert_eq!(codes(&json), ["gpu_without_identity"]);
}

/// A node silent for longer than the licence's `max_attestation_age` leaves it unproven.
#[test]
fn a_stale_node_is_unproven() {
    let op = Operator::new();
    let node = op.node("node", "n1", Some("fra-1"), &op.pki);
    let token = real(&node, &op.attest(&node, "dgx-h100", "fra-1"));
    let licence = op.licence("licence.toml", &[]);
    let (code, json) = op.check(&[&licence], &[&token], iat(&token) + 2 * 86_400, &[]);
    assert_eq!(code, 3);
    assert_eq!(codes(&json), ["stale_node"]);
    assert_eq!(json["verdicts"][0]["licences"][0]["verdict"], "unproven");
    assert_eq!(json["verdicts"][0]["countries"][0]["verdict"], "unproven");
}

/// A certificate subject with terminal escapes (a hostile or careless CA) reaches the
/// auditor's terminal escaped: it cannot paint "COMPLIANT" over an exit code of 3.
#[test]
fn a_hostile_subject_is_escaped_in_the_text_report() {
    let op = Operator::new();
    let node = op.node("node", "n1", Some("fra-1"), &op.pki);
    // Re-issue the node's certificate with a hostile subject, from the operator CA's key.
    let (issuer, ca_der) = pki_issuer(
        &op.pki,
        "operator/operator-ca.pem",
        "operator/operator-ca.key",
    );
    let node_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(node.join("node.key")).expect("key"))
            .expect("node key");
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "tag:tppguard.dev,2026:site/fra-1".try_into().expect("URI"),
    )];
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "n1\u{1b}[2J\u{1b}[HCOMPLIANT\u{9b}31m\u{202e}",
    );
    let cert = params.signed_by(&node_key, &issuer).expect("hostile leaf");
    let pem = |der: &[u8]| {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    std::fs::write(
        node.join("node-chain.pem"),
        format!("{}{}", pem(cert.der()), pem(&ca_der)),
    )
    .expect("write chain");
    let token = op.attest(&node, "dgx-h100", "fra-1");
    let licence = op.licence("licence.toml", &[]);
    let path = node.join("hostile.jws");
    std::fs::write(&path, &token).expect("write token");
    let at = (iat(&token) + 60).to_string();
    let out = run(
        "tppguard-verifier",
        &[
            "check",
            "--trust",
            s(&op.pki.join("verifier/trust.toml")),
            "--at",
            &at,
            "--licence",
            s(&licence),
            "--nonce",
            NONCE,
            s(&path),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("n1\\u{1b}[2J\\u{1b}[HCOMPLIANT\\u{9b}31m\\u{202e}"),
        "{text}"
    );
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{text:?}"
    );
}
