//! Replays the verifier-level fuzz corpora on stable through the fuzz targets' own checks
//! (included as source), so CI runs the seeds without nightly: `signed_token`
//! (`fuzz/src/verifier_checks.rs`), `issued_record` (`fuzz/src/issued_checks.rs`),
//! `leaf_facts` (`fuzz/src/leaf_checks.rs`) and `site_and_text` (`fuzz/src/site_checks.rs`).
//! The proto targets' corpora are replayed by `proto/tests/corpus.rs`.
//!
//! The seeds of `issued_record`, `leaf_facts` and `site_and_text` are generated here
//! ([`generated`]), and [`generated_corpora_are_current`] holds the committed files to the
//! generator. After changing it, write them again with [`REGENERATE`] and commit the result.
//! A fuzzer's reproduction of a fixed crash is kept beside them as found, named `crash-*`.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

#[path = "../../fuzz/src/verifier_checks.rs"]
mod checks;
#[path = "../../fuzz/src/issued_checks.rs"]
mod issued_checks;
#[path = "../../fuzz/src/leaf_checks.rs"]
mod leaf_checks;
#[path = "../../fuzz/src/site_checks.rs"]
mod site_checks;
// Lifecycle (issue 12): the licence revocation payload.
#[path = "../../fuzz/src/revocation_checks.rs"]
mod revocation_checks;
// GPU evidence (issue 13): NVIDIA's SPDM attestation report.
#[path = "../../fuzz/src/spdm_checks.rs"]
mod spdm_checks;

/// Writes the generated corpora again.
const REGENERATE: &str = "TPPGUARD_UPDATE_CORPUS=1 cargo test -p tppguard-tests --test integration \
                          fuzz_corpus::generated_corpora_are_current";

/// The targets whose seeds [`generated`] makes.
const GENERATED: [&str; 7] = [
    "issued_record",
    "leaf_facts",
    "site_and_text",
    "licence_revocation",
    "spdm_report",
    "scenario_change",
    "shipment_toml",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of `fuzz/corpus/<target>/`, sorted by name, with its bytes.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    files
}

#[test]
fn signed_token_corpus() {
    let trust = checks::load_trust(&fuzz_dir().join("pki"));
    let mut outcomes = Vec::new();
    for (name, bytes) in corpus("signed_token") {
        let text = String::from_utf8(bytes).unwrap();
        outcomes.push((name, checks::check_signed_token(&trust, &text)));
    }
    // The good seeds reach the end of the path (so the fuzzer starts from tokens that verify),
    // and the broken ones are rejected.
    let accepted = |name: &str| outcomes.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
    assert_eq!(accepted("attestation-ed25519.jws"), Some((true, false)));
    assert_eq!(accepted("attestation-p256.jws"), Some((true, false)));
    assert_eq!(accepted("licence.jws"), Some((false, true)));
    for broken in [
        "alg-none.jws",
        "tampered-payload.jws",
        "x5c-from-licence.jws",
        "x5c-root-only.jws",
    ] {
        assert_eq!(accepted(broken), Some((false, false)), "{broken}");
    }
}

#[test]
fn issued_record_corpus() {
    let files = corpus("issued_record");
    assert!(files.len() >= 10);
    for (name, bytes) in &files {
        let entries = issued_checks::check_issued_record(bytes);
        // The fuzzer starts from records `issue-node` accepts, and from each way to break one.
        if name.starts_with("broken-") {
            assert_eq!(entries, None, "{name} is accepted");
        } else if !name.starts_with("crash-") {
            assert!(entries.is_some(), "{name} is rejected");
        }
    }
    let count = |name: &str| {
        let (_, bytes) = files.iter().find(|(n, _)| n == name).unwrap();
        issued_checks::check_issued_record(bytes)
    };
    assert_eq!(count("rotation.jsonl"), Some(4));
    assert_eq!(count("blank-lines-crlf.jsonl"), Some(2));
    assert_eq!(count("empty.jsonl"), Some(0));
}

#[test]
fn leaf_facts_corpus() {
    let files = corpus("leaf_facts");
    assert!(files.len() >= 10);
    let mut sites = Vec::new();
    for (name, der) in &files {
        let facts = leaf_checks::check_leaf_facts(der);
        if name.starts_with("broken-") {
            assert_eq!(facts, None, "{name} is accepted");
        } else if !name.starts_with("crash-") {
            let (_, site) = facts.unwrap_or_else(|| panic!("{name} is rejected"));
            sites.push((name.as_str(), site.map(|s| s.as_str().to_owned())));
        }
    }
    let site = |name: &str| {
        sites
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
    };
    assert_eq!(site("site-fra-1.der"), Some(Some("fra-1".to_owned())));
    assert_eq!(
        site("other-names.der"),
        Some(Some("dc/eu:west_2.a".to_owned()))
    );
    assert_eq!(site("no-site.der"), Some(None));
    assert_eq!(site("site-prefix-other-case.der"), Some(None));
    assert_eq!(site("signed-token-ed25519-leaf.der"), Some(None));
}

#[test]
fn site_and_text_corpus() {
    let files = corpus("site_and_text");
    assert!(files.len() >= 10);
    for (name, bytes) in &files {
        // As the target: text only.
        if let Ok(text) = std::str::from_utf8(bytes) {
            let outcome = std::panic::catch_unwind(|| site_checks::check_site_and_text(text));
            assert!(outcome.is_ok(), "site_and_text: {name} fails");
        }
    }
}

/// The committed seeds of [`GENERATED`] are the generator's, byte for byte; besides them, only
/// a fuzzer's `crash-*` reproductions. With `TPPGUARD_UPDATE_CORPUS` set, writes them instead.
#[test]
fn generated_corpora_are_current() {
    let update = std::env::var_os("TPPGUARD_UPDATE_CORPUS").is_some();
    for target in GENERATED {
        let dir = fuzz_dir().join("corpus").join(target);
        let seeds = generated(target);
        if update {
            if dir.exists() {
                for entry in fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    if !name.starts_with("crash-") {
                        fs::remove_file(&path).unwrap();
                    }
                }
            }
            fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                fs::write(dir.join(name), bytes).unwrap();
            }
            continue;
        }
        for (name, bytes) in &seeds {
            assert!(
                fs::read(dir.join(name)).ok().as_ref() == Some(bytes),
                "fuzz/corpus/{target}/{name} is not the generated seed; write the seeds again \
                 with `{REGENERATE}` and commit the result"
            );
        }
        for (name, _) in corpus(target) {
            assert!(
                name.starts_with("crash-") || seeds.iter().any(|(n, _)| *n == name),
                "fuzz/corpus/{target}/{name} is not generated: add it to the generator in \
                 tests/integration/fuzz_corpus.rs (or, for a fuzzer's reproduction, name it \
                 crash-*)"
            );
        }
    }
}

/// The seeds of one of [`GENERATED`]: file name, bytes.
fn generated(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "issued_record" => issued_record_seeds(),
        "leaf_facts" => leaf_facts_seeds(),
        "site_and_text" => site_and_text_seeds(),
        "licence_revocation" => licence_revocation_seeds(),
        "spdm_report" => spdm_report_seeds(),
        "scenario_change" => scenario_change_seeds(),
        "shipment_toml" => shipment_toml_seeds(),
        other => panic!("no generator for {other}"),
    }
}

/// A node id in hex, distinct per `key`.
fn node_id_hex(key: u8) -> String {
    (0u8..32)
        .map(|i| {
            format!(
                "{:02x}",
                key.wrapping_mul(37).wrapping_add(i.wrapping_mul(11))
            )
        })
        .collect()
}

/// One `issued.jsonl` line as `pki issue-node` writes it.
fn issued_line(subject: &str, key: u8, site: Option<&str>, action: &str) -> String {
    let mut entry = json!({
        "subject": subject,
        "node_id": node_id_hex(key),
        "serial": format!("{:02x}", key).repeat(16),
        "not_after": 2_079_388_800_i64,
        "issued_at": 1_764_028_800_i64,
        "action": action,
    });
    if let Some(site) = site {
        entry["site"] = json!(site);
    }
    entry.to_string()
}

/// Records `issue-node` accepts (a first issue, renewals and a rotation, blank lines and CRLF,
/// a hostile subject, which the record keeps as is and escapes when shown), and `broken-*`
/// ones, each wrong in one way.
fn issued_record_seeds() -> Vec<(String, Vec<u8>)> {
    let one = issued_line("CN=gpu-node-01", 1, Some("fra-1"), "issue");
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut entry: serde_json::Value = serde_json::from_str(&one).unwrap();
        change(&mut entry);
        format!("{entry}\n")
    };
    let mut not_utf8 = one.clone().into_bytes();
    let at = not_utf8.len() / 2;
    not_utf8.insert(at, 0xff);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("one-entry.jsonl", format!("{one}\n").into_bytes()),
        (
            "rotation.jsonl",
            [
                issued_line("CN=gpu-node-01", 1, Some("fra-1"), "issue"),
                issued_line("CN=gpu-node-01", 1, Some("fra-1"), "renew"),
                issued_line("CN=gpu-node-02", 2, None, "issue"),
                issued_line("CN=gpu-node-01", 3, Some("ber-1"), "replace"),
            ]
            .map(|line| format!("{line}\n"))
            .concat()
            .into_bytes(),
        ),
        (
            "blank-lines-crlf.jsonl",
            format!(
                "\n{one}\r\n\r\n   \n{}",
                issued_line("O=lab, CN=gpu-node-02", 2, None, "issue")
            )
            .into_bytes(),
        ),
        (
            "site-null.jsonl",
            with(&|e| e["site"] = serde_json::Value::Null).into_bytes(),
        ),
        (
            "upper-case-node-id.jsonl",
            with(&|e| e["node_id"] = json!(node_id_hex(1).to_uppercase())).into_bytes(),
        ),
        (
            "hostile-subject.jsonl",
            with(&|e| e["subject"] = json!("CN=n1\u{1b}[2J\u{1b}[HCOMPLIANT\u{9b}31m\u{202e}"))
                .into_bytes(),
        ),
        ("empty.jsonl", Vec::new()),
        (
            "broken-unknown-field.jsonl",
            with(&|e| e["revoked"] = json!(false)).into_bytes(),
        ),
        (
            "broken-hostile-field-name.jsonl",
            with(&|e| e["\u{1b}[2J\u{202e}x"] = json!(1)).into_bytes(),
        ),
        (
            "broken-missing-field.jsonl",
            with(&|e| {
                e.as_object_mut().unwrap().remove("serial");
            })
            .into_bytes(),
        ),
        (
            "broken-node-id-short.jsonl",
            with(&|e| e["node_id"] = json!(&node_id_hex(1)[1..])).into_bytes(),
        ),
        (
            "broken-node-id-not-hex.jsonl",
            with(&|e| e["node_id"] = json!(format!("g{}", &node_id_hex(1)[1..]))).into_bytes(),
        ),
        (
            "broken-site-outside-alphabet.jsonl",
            with(&|e| e["site"] = json!("fra 1\u{1b}[2J")).into_bytes(),
        ),
        (
            "broken-action.jsonl",
            with(&|e| e["action"] = json!("steal")).into_bytes(),
        ),
        (
            "broken-float-time.jsonl",
            with(&|e| e["not_after"] = json!(2.0e9)).into_bytes(),
        ),
        (
            "broken-duplicate-field.jsonl",
            format!(
                "{},\"subject\":\"CN=other\"}}\n",
                one.strip_suffix('}').unwrap()
            )
            .into_bytes(),
        ),
        ("broken-not-utf8.jsonl", not_utf8),
        (
            "broken-truncated.jsonl",
            one.as_bytes()[..one.len() / 2].to_vec(),
        ),
        (
            "broken-second-line.jsonl",
            format!("{one}\n{{}}\n").into_bytes(),
        ),
        ("broken-not-an-object.jsonl", b"[]\n".to_vec()),
    ];
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

/// An Ed25519 key from a fixed seed (RFC 8410 PKCS#8 v1): Ed25519 signatures are
/// deterministic, so the certificates it signs are the same on every run.
fn fixed_ed25519_key(seed: u8) -> rcgen::KeyPair {
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend([seed; 32]);
    rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap()
}

/// The leaf certificate (DER) of a signed token's `x5c`.
fn token_leaf(token: &str) -> Vec<u8> {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap()
}

/// Leaf certificates as the operator CA issues them (Ed25519, digitalSignature, clientAuth,
/// the site as a SAN URI), with sites and other names, the leaves of the `signed_token` seeds
/// (real `issue-node` output), and `broken-*` ones: bad sites, bad DER.
fn leaf_facts_seeds() -> Vec<(String, Vec<u8>)> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
    };

    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tppguard fuzz seed operator CA");
    let ca = CertifiedIssuer::self_signed(ca_params, fixed_ed25519_key(1)).unwrap();
    let uri = |text: &str| SanType::URI(text.try_into().unwrap());
    let site = |id: &str| uri(&format!("{}{id}", tppguard_proto::site::SITE_URI_PREFIX));
    let leaf = |key: u8, sans: Vec<SanType>| {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("gpu-node-{key:02}"));
        params.subject_alt_names = sans;
        params
            .signed_by(&fixed_ed25519_key(key), &ca)
            .unwrap()
            .der()
            .to_vec()
    };
    let fra = leaf(2, vec![site("fra-1")]);
    let token = |name: &str| {
        token_leaf(&fs::read_to_string(fuzz_dir().join("corpus/signed_token").join(name)).unwrap())
    };
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("ca.der", ca.der().to_vec()),
        ("site-fra-1.der", fra.clone()),
        ("no-site.der", leaf(3, vec![])),
        (
            "other-names.der",
            leaf(
                4,
                vec![
                    SanType::DnsName("gpu-node-04.example".try_into().unwrap()),
                    uri("https://example.com/nodes/4"),
                    site("dc/eu:west_2.a"),
                    SanType::IpAddress([192, 0, 2, 4].into()),
                ],
            ),
        ),
        (
            "site-prefix-other-case.der",
            leaf(5, vec![uri("TAG:TPPGUARD.DEV,2026:SITE/fra-1")]),
        ),
        (
            "signed-token-ed25519-leaf.der",
            token("attestation-ed25519.jws"),
        ),
        ("signed-token-p256-leaf.der", token("attestation-p256.jws")),
        (
            "broken-two-sites.der",
            leaf(6, vec![site("fra-1"), site("ber-1")]),
        ),
        (
            "broken-site-outside-alphabet.der",
            leaf(7, vec![site("fra 1\u{1b}[2J\u{7f}")]),
        ),
        (
            "broken-site-too-long.der",
            leaf(8, vec![site(&"a".repeat(65))]),
        ),
        ("broken-site-empty.der", leaf(9, vec![site("")])),
        ("broken-truncated.der", fra[..fra.len() / 2].to_vec()),
        ("broken-trailing-data.der", [&fra[..], &[0]].concat()),
        ("broken-empty.der", Vec::new()),
    ];
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

/// Site ids and SAN URIs in and out of the alphabet (length limits, case, Unicode), and text
/// for the escaper: every kind of character it escapes, and look-alikes it must pass through.
fn site_and_text_seeds() -> Vec<(String, Vec<u8>)> {
    let prefix = tppguard_proto::site::SITE_URI_PREFIX;
    let texts: Vec<String> = vec![
        "fra-1".to_owned(),
        "dc/eu:west_2.a".to_owned(),
        "a".repeat(64),
        "a".repeat(65),
        String::new(),
        "fra 1".to_owned(),
        "fra-1\n".to_owned(),
        "é".repeat(40),
        "é".repeat(70),
        "東京-1".to_owned(),
        "ｆｒａ-1".to_owned(),
        format!("{prefix}fra-1"),
        format!("{prefix}a b"),
        prefix.to_owned(),
        prefix.trim_end_matches('/').to_owned(),
        prefix.to_uppercase() + "fra-1",
        "https://example.com/".to_owned(),
        "back\\slash".to_owned(),
        "\\u{1b} already looks escaped".to_owned(),
        "x\ny\rz\t".to_owned(),
        "\u{0}".to_owned(),
        "\u{7f}\u{80}\u{85}\u{9b}31m".to_owned(),
        "n1\u{1b}[2J\u{1b}[HCOMPLIANT\u{9b}31m\u{202e}".to_owned(),
        "a\u{202a}b\u{202b}c\u{202c}d\u{202d}e\u{202e}f".to_owned(),
        "\u{2066}isolate\u{2067}\u{2068}\u{2069}".to_owned(),
        "\u{200e}\u{200f}\u{61c}".to_owned(),
        "line\u{2028}paragraph\u{2029}".to_owned(),
        "\u{feff}zero\u{200b}width\u{200d}joiner".to_owned(),
        "ü 東京 \u{1f600} CN=gpu-node-01".to_owned(),
    ];
    texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| (format!("{i:02}"), text.into_bytes()))
        .collect()
}

#[test]
fn licence_revocation_corpus() {
    for (name, bytes) in corpus("licence_revocation") {
        let accepted = revocation_checks::check_licence_revocation(&bytes);
        if name.starts_with("ok-") {
            assert!(accepted, "{name} is rejected");
        } else if name.starts_with("broken-") {
            assert!(!accepted, "{name} is accepted");
        }
    }
}

/// Revocation payloads `licence revoke` signs, and each way to break one.
fn licence_revocation_seeds() -> Vec<(String, Vec<u8>)> {
    let ok = |id: &str, reason: &str, at: i64| {
        json!({"licence_id": id, "reason": reason, "revoked_at": at}).to_string()
    };
    let seeds: Vec<(&str, String)> = vec![
        (
            "ok-plain",
            ok(
                "EXAMPLE-DE-2026-0142",
                "export terms breached",
                1_767_225_600,
            ),
        ),
        ("ok-id-alphabet", ok("a-b_c.d:e/f", "r", 0)),
        ("ok-max-time", ok("L", "r", 253_402_300_799)),
        ("ok-unicode-reason", ok("L", &"é".repeat(1024), 1)),
        ("ok-bidi-reason", ok("L", "terms \u{202e}desrever", 1)),
        ("ok-padded-reason", ok("L", "  spaced  ", 1)),
        ("broken-empty", String::new()),
        ("broken-array", "[]".to_owned()),
        (
            "broken-missing-reason",
            json!({"licence_id": "L", "revoked_at": 1}).to_string(),
        ),
        (
            "broken-extra-key",
            json!({"licence_id": "L", "reason": "r", "revoked_at": 1, "x": 1}).to_string(),
        ),
        (
            "broken-duplicate-key",
            r#"{"licence_id":"L","reason":"r","reason":"s","revoked_at":1}"#.to_owned(),
        ),
        ("broken-id-space", ok("a b", "r", 1)),
        ("broken-id-long", ok(&"x".repeat(65), "r", 1)),
        ("broken-reason-blank", ok("L", "   ", 1)),
        ("broken-reason-escape", ok("L", "a\u{1b}[2Jb", 1)),
        ("broken-reason-newline", ok("L", "a\nb", 1)),
        ("broken-reason-long", ok("L", &"e".repeat(1025), 1)),
        ("broken-time-negative", ok("L", "r", -1)),
        ("broken-time-after-9999", ok("L", "r", 253_402_300_800)),
        (
            "broken-time-float",
            r#"{"licence_id":"L","reason":"r","revoked_at":1.5}"#.to_owned(),
        ),
        ("broken-too-large", " ".repeat(8 * 1024 + 1)),
    ];
    seeds
        .into_iter()
        .map(|(name, text)| (format!("{name}.json"), text.into_bytes()))
        .collect()
}

#[test]
fn spdm_report_corpus() {
    let files = corpus("spdm_report");
    assert!(files.len() >= 10);
    for (name, bytes) in &files {
        let accepted = spdm_checks::check_spdm_report(bytes);
        if name.starts_with("ok-") {
            assert!(accepted, "{name} is rejected");
        } else if name.starts_with("broken-") {
            assert!(!accepted, "{name} is accepted");
        }
    }
}

/// GPU attestation reports: the real H100 sample, reports the writer makes (Hopper-like, with
/// Blackwell's extra opaque fields, an unknown opaque id, SPDM 1.2, no blocks), and each way to
/// break one. Signatures are fixed bytes: the parser reads their length only, and the seeds
/// must be the same on every run.
fn spdm_report_seeds() -> Vec<(String, Vec<u8>)> {
    use tppguard_proto::gpu_evidence::encode::ReportBuilder;
    use tppguard_proto::gpu_evidence::opaque::OpaqueField;

    let hex = include_str!("../fixtures/nvidia-cc/hopperAttestationReport.txt").trim();
    let sample: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let signed = |builder: &ReportBuilder| {
        let mut bytes = builder.unsigned_bytes();
        bytes.extend((0u8..96).map(|i| i.wrapping_mul(7)));
        bytes
    };
    let mut hopper = ReportBuilder::hopper_like("570.133.20", "96.00.AB.00.02", &[0x5a; 48]);
    hopper.request_nonce = [0x11; 32];
    hopper.responder_nonce = [0x22; 32];
    let field = |id: u16, value: &[u8]| OpaqueField {
        id,
        value: value.to_vec(),
    };
    let with = |change: &dyn Fn(&mut ReportBuilder)| {
        let mut builder = hopper.clone();
        change(&mut builder);
        signed(&builder)
    };
    let patched = |bytes: &[u8], at: usize, value: u8| {
        let mut bytes = bytes.to_vec();
        bytes[at] = value;
        bytes
    };
    let hopper_bytes = signed(&hopper);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("ok-hopper-sample", sample.clone()),
        ("ok-hopper-like", hopper_bytes.clone()),
        (
            "ok-blackwell-fields",
            with(&|b| {
                b.opaque.push(field(34, &1u32.to_le_bytes()));
                b.opaque.push(field(35, b"GB100\0"));
                b.opaque.push(field(36, &2u32.to_le_bytes()));
            }),
        ),
        (
            "ok-unknown-opaque-id",
            with(&|b| b.opaque.insert(3, field(0x1234, &[1, 2, 3]))),
        ),
        ("ok-spdm-1-2", with(&|b| b.version = 0x12)),
        (
            "ok-no-blocks-no-opaque",
            with(&|b| {
                b.blocks.clear();
                b.opaque.clear();
            }),
        ),
        ("broken-empty", Vec::new()),
        ("broken-truncated", sample[..sample.len() / 2].to_vec()),
        (
            "broken-short-signature",
            sample[..sample.len() - 1].to_vec(),
        ),
        ("broken-trailing-byte", [&sample[..], &[0]].concat()),
        ("broken-wrong-version", patched(&sample, 0, 0x10)),
        ("broken-version-mismatch", patched(&sample, 37, 0x12)),
        ("broken-wrong-code", patched(&sample, 38, 0x61)),
        ("broken-unsigned-request", patched(&sample, 2, 0x00)),
        ("broken-block-count", patched(&sample, 41, 65)),
        ("broken-record-length", patched(&sample, 42, 0xc1)),
        ("broken-dmtf-size", patched(&sample, 45 + 5, 0x2f)),
        (
            "broken-opaque-overrun",
            patched(&sample, 45 + 3520 + 32, 0xff),
        ),
        (
            "broken-duplicate-opaque-id",
            with(&|b| b.opaque.push(field(21, &[0xaa]))),
        ),
        ("broken-vbios-length", with(&|b| b.opaque[0].value.push(0))),
        ("broken-counts-length", with(&|b| b.opaque[9].value.push(0))),
        (
            "broken-driver-not-ascii",
            with(&|b| b.opaque[7].value[0] = 0xff),
        ),
        (
            "broken-duplicate-block-index",
            with(&|b| b.blocks[1].index = 1),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, bytes)| (format!("{name}.bin"), bytes))
        .collect()
}

// What-if scenarios (issue 14): the changes of `check --scenario` and the API.
#[path = "../../fuzz/src/scenario_checks.rs"]
mod scenario_checks;

#[test]
fn scenario_change_corpus() {
    let files = corpus("scenario_change");
    assert!(files.len() >= 20);
    for (name, bytes) in &files {
        let text = std::str::from_utf8(bytes).unwrap();
        let accepted = scenario_checks::check_scenario_change(text);
        if name.starts_with("ok-") {
            assert!(accepted, "{name} is rejected");
        } else if name.starts_with("broken-") {
            assert!(!accepted, "{name} is accepted");
        }
    }
}

/// Scenario changes, one per line: every form, non-canonical figures, several at once, and
/// each way to break one (shape, country, group, cap, bounds, conflicts, hostile text).
fn scenario_change_seeds() -> Vec<(String, Vec<u8>)> {
    let moves: Vec<String> = ["FR", "DE", "IT", "ES", "NL", "BE", "SE", "DK"]
        .iter()
        .map(|c| format!("{c}=tier_2"))
        .collect();
    let at_max: Vec<String> = moves
        .iter()
        .cloned()
        .chain((0..24).map(|i| format!("licence:l{i}:max_devices={}", i + 1)))
        .collect();
    let seeds: Vec<(&str, String)> = vec![
        ("ok-move", "FR=tier_2".to_owned()),
        ("ok-move-unknown-group", "FR=tier_9".to_owned()),
        ("ok-rule-set", "rule-set=us-gain-ai-act-s3150".to_owned()),
        (
            "ok-rule-set-file",
            "rule-set=./my-rules/variant.toml".to_owned(),
        ),
        (
            "ok-max-devices",
            "licence:EXAMPLE-DE-2026-0142:max_devices=64".to_owned(),
        ),
        (
            "ok-aggregate",
            "licence:a-b_c.d:e/f:max_aggregate_tpp=0032500000.50".to_owned(),
        ),
        (
            "ok-per-device",
            "licence:x:max_tpp_per_device=15831.2".to_owned(),
        ),
        (
            "ok-several",
            "rule-set=us-ai-diffusion-2025\nFR=tier_2\nDE=tier_3\nlicence:x:max_devices=1"
                .to_owned(),
        ),
        ("ok-at-max-count", at_max.join("\n")),
        (
            "ok-at-max-chars",
            "rule-set=".to_owned() + &"a".repeat(256 - 9),
        ),
        ("broken-empty", String::new()),
        ("broken-equals", "=".to_owned()),
        ("broken-equals-equals", "==".to_owned()),
        ("broken-no-group", "FR=".to_owned()),
        ("broken-lower-country", "fr=tier_2".to_owned()),
        ("broken-uk", "UK=tier_2".to_owned()),
        ("broken-group-case", "FR=Tier_2".to_owned()),
        ("broken-space", "FR = tier_2".to_owned()),
        ("broken-unicode", "FR=tiér_2".to_owned()),
        ("broken-cyrillic", "ФР=tier_2".to_owned()),
        ("broken-escape", "FR=tier_2\u{1b}[2J".to_owned()),
        ("broken-bidi-rule-set", "rule-set=a\u{202e}b".to_owned()),
        ("broken-nul", "rule-set=a\u{0}b".to_owned()),
        ("broken-backslash", "rule-set=a\\b".to_owned()),
        ("broken-trailing-newline", "FR=tier_2\n".to_owned()),
        ("broken-empty-rule-set", "rule-set=".to_owned()),
        ("broken-negative", "licence::x:max_devices=-1".to_owned()),
        (
            "broken-overflow",
            "licence:x:max_devices=99999999999".to_owned(),
        ),
        ("broken-zero", "licence:x:max_devices=0".to_owned()),
        ("broken-float", "licence:x:max_aggregate_tpp=1e9".to_owned()),
        (
            "broken-decimals",
            "licence:x:max_tpp_per_device=0.00001".to_owned(),
        ),
        ("broken-key", "licence:x:max_watts=5".to_owned()),
        ("broken-no-key", "licence:x=5".to_owned()),
        ("broken-too-long", "FR=".to_owned() + &"a".repeat(10_000)),
        (
            "broken-too-many",
            format!("{}\nGB=tier_2", at_max.join("\n")),
        ),
        ("broken-duplicate-move", "FR=tier_2\nFR=tier_3".to_owned()),
        ("broken-two-rule-sets", "rule-set=a\nrule-set=b".to_owned()),
        (
            "broken-duplicate-cap",
            "licence:x:max_devices=1\nlicence:x:max_devices=2".to_owned(),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, text)| (format!("{name}.txt"), text.into_bytes()))
        .collect()
}

// Shipments (issue 15): the shipment record's TOML and its signed JSON payload.
#[path = "../../fuzz/src/shipment_checks.rs"]
mod shipment_checks;

#[test]
fn shipment_toml_corpus() {
    let files = corpus("shipment_toml");
    assert!(files.len() >= 20);
    for (name, bytes) in &files {
        let text = std::str::from_utf8(bytes).unwrap();
        let accepted = shipment_checks::check_shipment_toml(text)
            || tppguard_proto::shipment::Shipment::from_json(bytes).is_ok();
        if name.starts_with("ok-") {
            assert!(accepted, "{name} is rejected");
        } else if name.starts_with("broken-") {
            assert!(!accepted, "{name} is accepted");
        }
    }
}

/// Shipment records: the example (TOML and its JSON), each form a key may take, and each way
/// to break one (syntax, ids, country, time, devices, identities, models, size, hostile text).
fn shipment_toml_seeds() -> Vec<(String, Vec<u8>)> {
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/shipment.toml"))
            .unwrap();
    let example_json = tppguard_proto::shipment::Shipment::from_toml_str(&example)
        .unwrap()
        .to_json()
        .unwrap();
    let head = "id = \"S-1\"\nvendor = \"V\"\nlicence = \"L-1\"\n\
                delivered_at = 2026-03-02T09:00:00Z\n[delivery]\nsite = \"fra-1\"\ncountry = \"DE\"\n";
    let with = |devices: &str| format!("{head}{devices}");
    let one = "[[devices]]\nserial = \"A\"\n";
    let seeds: Vec<(&str, String)> = vec![
        ("ok-example.toml", example.clone()),
        (
            "ok-example.json",
            String::from_utf8(example_json.clone()).unwrap(),
        ),
        ("ok-minimal.toml", with(one)),
        (
            "ok-hardware-id.toml",
            with(
                "[[devices]]\nuuid = \" GPU-x \"\nhardware_id = \"ABCDEF0123456789\"\nmodel = \"NVIDIA H100 80GB HBM3\"\n",
            ),
        ),
        (
            "ok-string-date.toml",
            with(one).replace(
                "delivered_at = 2026-03-02T09:00:00Z",
                "delivered_at = \"2026-03-02T10:00:00+01:00\"",
            ),
        ),
        (
            "ok-same-text-two-keys.toml",
            with("[[devices]]\nuuid = \"X1\"\n[[devices]]\nserial = \"X1\"\n"),
        ),
        ("broken-empty.toml", String::new()),
        ("broken-no-devices.toml", head.to_owned()),
        (
            "broken-device-without-identity.toml",
            with("[[devices]]\nmodel = \"H100 SXM5 80GB\"\n"),
        ),
        (
            "broken-duplicate-uuid-case.toml",
            with("[[devices]]\nuuid = \"GPU-ab\"\n[[devices]]\nuuid = \"gpu-AB\"\n"),
        ),
        ("broken-country.toml", with(one).replace("\"DE\"", "\"UK\"")),
        (
            "broken-local-time.toml",
            with(one).replace("09:00:00Z", "09:00:00"),
        ),
        ("broken-date-only.toml", with(one).replace("T09:00:00Z", "")),
        (
            "broken-vendor-escape.toml",
            with(one).replace("\"V\"", "\"V\\u001b[2J\""),
        ),
        (
            "broken-id-bidi.toml",
            with(one).replace("\"S-1\"", "\"S\u{202e}1\""),
        ),
        (
            "broken-unknown-key.toml",
            with("[[devices]]\nserial = \"A\"\ncolour = \"red\"\n"),
        ),
        (
            "broken-serial-bell.toml",
            with("[[devices]]\nserial = \"A\\u0007\"\n"),
        ),
        (
            "broken-serial-long.toml",
            with(&format!("[[devices]]\nserial = \"{}\"\n", "9".repeat(65))),
        ),
        (
            "broken-hardware-id-not-hex.toml",
            with("[[devices]]\nhardware_id = \"xyz0123456789abcdef\"\n"),
        ),
        (
            "broken-unknown-model.toml",
            with("[[devices]]\nserial = \"A\"\nmodel = \"GeForce 9000\"\n"),
        ),
        (
            "broken-too-large.toml",
            format!("{}#{}", with(one), "x".repeat(512 * 1024)),
        ),
        (
            "broken-json-extra-key.json",
            String::from_utf8(example_json.clone()).unwrap().replacen(
                "{",
                "{\"compliant\":true,",
                1,
            ),
        ),
        (
            "broken-json-unix-date.json",
            String::from_utf8(example_json)
                .unwrap()
                .replace("\"2026-03-02T09:00:00Z\"", "1772442000"),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.into_bytes()))
        .collect()
}
