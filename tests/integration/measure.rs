//! `tppguard-agent measure`, run as an operator would, on simulated nodes (the fake NVML
//! library for identity and telemetry, the simulated GEMM backend for the rates), then the
//! measurement carried through `attest` into the verifier's `check`. On this machine there
//! is no CUDA: the real backend must say so with exit code 5.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{FakeDriver, jws_payload, node_with_chain, ok, run, s, stderr};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `measure --json` on a bundled fixture, with a small matrix so runs stay quick (the rates
/// are the fixture's whatever the size; the batch sizing still runs).
fn measure(fixture: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["measure", "--simulate", fixture, "--json"];
    args.extend_from_slice(extra);
    let out = run("tppguard-agent", &args);
    let err = stderr(&out);
    (out.status.code(), json(&out), err)
}

fn result<'a>(gpu: &'a Value, precision: &str) -> &'a Value {
    gpu["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["precision"] == precision)
        .unwrap_or_else(|| panic!("no {precision} in {gpu}"))
}

#[test]
fn a_simulated_dgx_h100_is_measured_below_its_spec_and_repeats_exactly() {
    let (code, report, err) = measure("dgx-h100", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["schema"], "tppguard-measure/v1");
    assert_eq!(report["simulated_fixture"], "dgx-h100");
    let gpus = report["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8);
    for gpu in gpus {
        assert_eq!(gpu["status"], "measured", "{gpu}");
        assert_eq!(gpu["model"], "H100 SXM5 80GB");
        let fp8 = result(gpu, "fp8");
        assert_eq!(fp8["spec_tops"].as_f64(), Some(1978.9));
        let ratio = fp8["ratio_to_spec"].as_f64().unwrap();
        assert!((0.5..0.9).contains(&ratio), "FP8 at {ratio} of spec");
        assert!(fp8["tops_min"].as_f64() <= fp8["tops_median"].as_f64());
        assert!(fp8["tops_median"].as_f64() <= fp8["tops_max"].as_f64());
        assert_eq!(fp8["matrix_size"], 8192);
        // The measured TPP is a lower bound under the spec TPP.
        assert!(
            gpu["measured_tpp"].as_f64() < gpu["spec_tpp"].as_f64(),
            "{gpu}"
        );
        let m = &gpu["measurement"];
        assert_eq!(m["method"], "simulated");
        assert_eq!(m["repeats"], 5);
        assert!(m["telemetry"]["samples"].as_u64() >= Some(2), "{m}");
    }
    // Same fixture, same figures (only the wall-clock fields differ).
    let (_, again, _) = measure("dgx-h100", &[]);
    assert_eq!(
        report["gpus"][3]["results"], again["gpus"][3]["results"],
        "deterministic"
    );
}

#[test]
fn a_busy_gpu_is_refused_unless_forced() {
    let (code, report, _) = measure("busy-h100", &["--precision", "fp16"]);
    assert_eq!(code, Some(1), "one GPU not measured");
    let gpu0 = &report["gpus"][0];
    assert_eq!(gpu0["status"], "busy");
    assert_eq!(gpu0["compute_processes"], serde_json::json!([4242, 4243]));
    assert!(gpu0["measurement"].is_null());
    assert_eq!(report["gpus"][1]["status"], "measured");

    let out = run(
        "tppguard-agent",
        &[
            "measure",
            "--simulate",
            "busy-h100",
            "--gpu",
            "0",
            "--precision",
            "fp16",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refused") && text.contains("--force"),
        "{text}"
    );

    let (code, report, err) = measure(
        "busy-h100",
        &["--gpu", "0", "--force", "--precision", "fp16"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["gpus"].as_array().unwrap().len(), 1);
    assert_eq!(report["gpus"][0]["status"], "measured");
    assert_eq!(
        report["gpus"][0]["compute_processes"],
        serde_json::json!([4242, 4243])
    );
}

#[test]
fn a_derated_gpu_shows_its_clocks_and_throttle_reasons() {
    let (code, report, err) = measure("derated-h100", &["--precision", "fp16"]);
    assert_eq!(code, Some(0), "{err}");
    let gpu = &report["gpus"][0];
    let ratio = result(gpu, "fp16")["ratio_to_spec"].as_f64().unwrap();
    assert!(ratio < 0.5, "derated: {ratio}");
    let reasons = gpu["measurement"]["telemetry"]["throttle_reasons"]
        .as_array()
        .unwrap();
    assert!(
        reasons.contains(&Value::from("sw_power_cap")),
        "{reasons:?}"
    );
}

#[test]
fn no_cuda_on_this_machine_exits_5_without_a_panic() {
    let driver = FakeDriver::with_fixture_file("dgx-h100");
    let out = run(
        "tppguard-agent",
        &["measure", "--nvml-lib", s(&driver.lib_path()), "--gpu", "0"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("CUDA"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unknown_gpu_index_is_a_usage_error() {
    let out = run("tppguard-agent", &["measure", "--simulate", "--gpu", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no GPU at NVML index 99"),
        "{}",
        stderr(&out)
    );
}

/// Node key, the built-in PKI, a certificate, `measure --dir`, `attest`: the attestation path.
fn attested(fixture: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let (node, _) = node_with_chain(dir, "gpu-node-01");
    ok(
        "tppguard-agent",
        &["measure", "--simulate", fixture, "--dir", s(&node)],
    );
    assert!(node.join("measurements.json").is_file());
    let token = dir.join("node.jws");
    ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--simulate",
            fixture,
            "--nonce",
            NONCE,
            "--out",
            s(&token),
        ],
    );
    (tmp, token)
}

fn claims(token: &Path) -> Value {
    jws_payload(&std::fs::read_to_string(token).unwrap())
}

#[test]
fn measurements_travel_into_the_attestation_as_evidence_tier_measured() {
    let (_tmp, token) = attested("dgx-h100");
    let c = claims(&token);
    assert_eq!(c["tppguard.evidence_tier"], "measured");
    let gpu0 = &c["submods"]["gpu0"]["measurement"];
    assert_eq!(gpu0["method"], "simulated");
    assert!(gpu0["results"].as_array().unwrap().len() >= 4, "{gpu0}");
}

#[test]
fn a_relabelled_part_is_attested_as_declared() {
    // Its FP16 rate is an H100's, far above an H20's spec: the agent does not call that
    // consistent, and says `declared` while still carrying the measurement.
    let (_tmp, token) = attested("relabelled-h20");
    let c = claims(&token);
    assert_eq!(c["tppguard.evidence_tier"], "declared");
    assert!(c["submods"]["gpu0"]["measurement"].is_object());
}

/// `check --json` of `token` under the sample licence, signed with the PKI beside the node.
fn check(tmp: &Path, token: &Path) -> (Option<i32>, Value) {
    let pki = tmp.join("pki");
    let licence = tmp.join("licence.jws");
    let example = crate::support::workspace_root().join("examples/licence.toml");
    let out = run(
        "tppguard-verifier",
        &[
            "licence",
            "sign",
            "--dir",
            s(&pki.join("licence-authority")),
            s(&example),
            "--out",
            s(&licence),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        "tppguard-verifier",
        &[
            "check",
            "--trust",
            s(&pki.join("verifier/trust.toml")),
            "--licence",
            s(&licence),
            "--nonce",
            NONCE,
            "--json",
            s(token),
        ],
    );
    (out.status.code(), json(&out))
}

fn finding_codes(verdict: &Value) -> Vec<String> {
    verdict["verdicts"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_verifier_keeps_a_consistent_measurement_and_catches_a_relabelled_part() {
    let (tmp, token) = attested("dgx-h100");
    let (code, verdict) = check(tmp.path(), &token);
    let codes = finding_codes(&verdict);
    // The measurement is simulated: it never backs compliance (exit 3, unproven).
    assert_eq!(code, Some(3), "{codes:?}");
    assert!(
        !codes
            .iter()
            .any(|c| c == "exceeds_spec" || c == "below_spec"),
        "{codes:?}"
    );
    let node = &verdict["verdicts"][0]["nodes"][0];
    // A simulated measurement never backs the measured tier.
    assert_eq!(node["effective_evidence_tier"], "declared", "{node}");

    let (tmp, token) = attested("relabelled-h20");
    let (code, verdict) = check(tmp.path(), &token);
    let codes = finding_codes(&verdict);
    assert_eq!(code, Some(1), "{codes:?}");
    assert!(codes.iter().any(|c| c == "exceeds_spec"), "{codes:?}");
}

#[test]
fn a_measurement_older_than_thirty_days_is_carried_but_not_claimed_as_measured() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    ok(
        "tppguard-agent",
        &[
            "measure",
            "--simulate",
            "--dir",
            s(&node),
            "--precision",
            "fp8",
        ],
    );
    let cache_path = node.join("measurements.json");
    let mut cache: Value = serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    for m in cache["gpus"].as_object_mut().unwrap().values_mut() {
        let started = m["started_at"].as_i64().unwrap();
        m["started_at"] = Value::from(started - 31 * 86_400);
    }
    std::fs::write(&cache_path, serde_json::to_vec(&cache).unwrap()).unwrap();
    let token = tmp.path().join("node.jws");
    ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--simulate",
            "--nonce",
            NONCE,
            "--out",
            s(&token),
        ],
    );
    let c = claims(&token);
    assert_eq!(c["tppguard.evidence_tier"], "declared");
    assert!(c["submods"]["gpu0"]["measurement"].is_object());
}

#[test]
fn check_reports_a_derated_part_and_an_unlisted_one() {
    // Derated: below spec is a warning with the clocks and throttle reasons; still compliant.
    let (tmp, token) = attested("derated-h100");
    let (code, verdict) = check(tmp.path(), &token);
    let codes = finding_codes(&verdict);
    assert!(codes.iter().any(|c| c == "below_spec"), "{codes:?}");
    let below = verdict["verdicts"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "below_spec")
        .unwrap();
    assert_eq!(below["severity"], "warning");
    let reasons = below["figures"]["throttle_reasons"].as_array().unwrap();
    assert!(reasons.contains(&Value::from("sw_power_cap")), "{below}");
    assert!(
        below["figures"]["sm_clock_mhz_max"].as_u64().is_some(),
        "{below}"
    );
    assert_eq!(code, Some(3), "simulated: unproven, {codes:?}");

    // Unlisted: classified by its measured figures, a lower-bound TPP that counts.
    let (tmp, token) = attested("unlisted-gpu");
    let (_, verdict) = check(tmp.path(), &token);
    let codes = finding_codes(&verdict);
    assert!(codes.iter().any(|c| c == "unlisted_device"), "{codes:?}");
    assert!(!codes.iter().any(|c| c == "unknown_device"), "{codes:?}");
    let used = verdict["verdicts"][0]["licences"][0]["tpp"]["used"]
        .as_f64()
        .unwrap();
    assert!(used > 7000.0, "the measured lower bound counts: {used}");
}
