//! `tppguard-verifier check --shipment`: shipment files beside the licences. A shipment that
//! does not verify under the `[vendor]` roots (here: a licence token passed as a shipment, and
//! bytes that are no JWS) is REJECTED with its code and makes the result not compliant; an
//! unreadable one stops the run; without `--shipment` the report is as before.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::support::{
    attest_to, jws_payload, node_with_chain, run, s, sign_licence, stderr, workspace_root,
};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Fleet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    trust: PathBuf,
    attestation: PathBuf,
    licence: PathBuf,
    at: String,
}

impl Fleet {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let (node, pki) = node_with_chain(&dir, "gpu-node-01");
        let attestation = dir.join("A.jws");
        attest_to(&node, None, NONCE, "fra-1", &attestation);
        let licence = dir.join("l.jws");
        sign_licence(
            &pki,
            &workspace_root().join("examples/licence.toml"),
            &licence,
        );
        let token = std::fs::read_to_string(&attestation).expect("attestation");
        let iat = jws_payload(&token)["iat"].as_i64().expect("iat");
        Self {
            _tmp: tmp,
            trust: pki.join("verifier/trust.toml"),
            dir,
            attestation,
            licence,
            at: (iat + 60).to_string(),
        }
    }

    /// `check --trust T --at AT --licence L [--shipment S]... [--json] A`.
    fn check(&self, shipments: &[&PathBuf], json: bool) -> Output {
        let mut args = vec![
            "check",
            "--trust",
            s(&self.trust),
            "--at",
            &self.at,
            "--licence",
            s(&self.licence),
        ];
        for shipment in shipments {
            args.extend(["--shipment", s(shipment)]);
        }
        if json {
            args.push("--json");
        }
        args.push(s(&self.attestation));
        run("tppguard-verifier", &args)
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

#[test]
fn a_shipment_that_does_not_verify_is_rejected_and_the_result_not_compliant() {
    let f = Fleet::new();
    // A licence token is signed under another root for another purpose: never a shipment.
    let garbage = f.dir.join("garbage.jws");
    std::fs::write(&garbage, "not.a.jws\n").expect("write");
    let out = f.check(&[&f.licence, &garbage], true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["verdict"], "not_compliant");
    let shipments = report["shipments"].as_array().expect("shipments listed");
    assert_eq!(shipments.len(), 2);
    for entry in shipments {
        assert_eq!(entry["accepted"], false, "{entry}");
        assert!(
            entry["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{entry}"
        );
        assert!(entry["sentence"].as_str().is_some(), "{entry}");
        assert!(entry.get("id").is_none(), "{entry}");
    }
    let files: Vec<&str> = shipments
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert!(files.contains(&s(&garbage)) && files.contains(&s(&f.licence)));
    // The text report names each file and says why the result is not compliant.
    let out = f.check(&[&garbage], false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("shipments:"), "{text}");
    assert!(
        text.contains(&format!("REJECTED  {}", s(&garbage))),
        "{text}"
    );
    assert!(text.contains("1 input(s) rejected"), "{text}");
}

#[test]
fn an_unreadable_shipment_file_stops_the_run_with_exit_2() {
    let f = Fleet::new();
    let missing = f.dir.join("no-such-shipment.jws");
    let out = f.check(&[&missing], false);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing printed before the error");
    assert!(
        stderr(&out).contains("no-such-shipment.jws"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_shipments_the_report_is_unchanged() {
    let f = Fleet::new();
    let report = json(&f.check(&[], true));
    assert!(report.get("shipments").is_none(), "{report}");
    let usage = &report["verdicts"][0]["licences"][0];
    assert!(usage.get("shipments").is_none(), "{usage}");
}
