//! The agent's hardware evidence, end to end through the real binary and the fake NVML:
//! fixtures made at test time from the generated `dgx-h100` fixture, each GPU a test device
//! (`tppguard_verifier::gpu_evidence::test_device`) under one test root that signs a fresh
//! report for the nonce it is asked; the real H100 sample served as is; CC off; NVML errors, a
//! hung call, a hostile size and a driver without the CC functions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tppguard_proto::claims::Nonce;
use tppguard_proto::gpu_evidence::GpuEvidence;
use tppguard_proto::gpu_evidence::gpu_nonce;
use tppguard_proto::gpu_evidence::spdm::Report;
use tppguard_proto::identity::NodeId;
use tppguard_tests::gpu_evidence::{CcSettings, GpuCc, real_h100_sample, with_conf_compute};
use tppguard_verifier::gpu_evidence::test_device::{FwidForm, TestDevice, TestRoot};

use crate::support::{
    FakeDriver, bin, fixtures_dir, jws_payload, node_with_chain, ok, old_driver_fake_nvml_lib,
    pem_certs, s, workspace_root,
};

const NONCE_A: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
const NONCE_B: &str = "0f0e0d0c0b0a090807060504030201000f0e0d0c0b0a09080706050403020100";

/// A node folder with a certificate from a fresh built-in PKI, and its node id (the SHA-256 of
/// its certificate's key, as the verifier derives it).
fn node(dir: &Path) -> (PathBuf, NodeId) {
    let (node, _pki) = node_with_chain(dir, "gpu-node-cc");
    let leaf = pem_certs(&node.join("node-chain.pem")).remove(0);
    let (node_id, _) = tppguard_verifier::chain::stored_leaf_facts(&leaf).expect("node leaf");
    (node, node_id)
}

fn dgx_h100() -> String {
    std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json")).expect("dgx-h100")
}

/// Eight test GPUs under one test root, as `GpuCc` serving signed reports.
fn eight_devices() -> (String, Vec<(TestDevice, GpuCc)>) {
    let root = TestRoot::new("GH100");
    let devices: Vec<_> = (0..8)
        .map(|_| {
            let d = root.device(FwidForm::NvidiaLegacy);
            let cc = GpuCc::signed(
                d.chain_pem(),
                base64::engine::general_purpose::STANDARD.encode(d.leaf_key_pkcs8()),
                &d.fwid(),
            );
            (d, cc)
        })
        .collect();
    (root.root_pem(), devices)
}

/// A fake driver serving `json`, with the test root (when given) beside the fixture.
fn driver(json: &str, root_pem: Option<&str>) -> FakeDriver {
    let driver = FakeDriver::with_fixture_json(json);
    if let Some(pem) = root_pem {
        std::fs::write(driver.dir.path().join("device-root.pem"), pem).expect("root");
    }
    driver
}

/// `attest --json` against `lib` (exit 0 expected): the summary and the signed claims.
fn attest(node: &Path, lib: &Path, nonce: &str, extra: &[&str]) -> (Value, Value) {
    let out_file = node.join(format!("{nonce}.jws"));
    let mut args = vec![
        "attest",
        "--dir",
        s(node),
        "--nvml-lib",
        s(lib),
        "--nonce",
        nonce,
        "--out",
        s(&out_file),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = bin("tppguard-agent")
        .args(&args)
        .output()
        .expect("agent runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    let token = std::fs::read_to_string(&out_file).expect("attestation");
    (summary, jws_payload(&token))
}

fn submod(claims: &Value, index: u32) -> &Value {
    &claims["submods"][format!("gpu{index}")]
}

fn evidence_of(claims: &Value, index: u32) -> GpuEvidence {
    serde_json::from_value(submod(claims, index)["gpu_evidence"].clone())
        .unwrap_or_else(|e| panic!("gpu{index} carries gpu_evidence: {e}"))
}

/// `absent.gpu_evidence` of GPU `index`: (reason, detail).
fn absence(claims: &Value, index: u32) -> (String, String) {
    let a = &submod(claims, index)["absent"]["gpu_evidence"];
    assert!(
        submod(claims, index).get("gpu_evidence").is_none(),
        "gpu{index} has no evidence"
    );
    (
        a["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{a}"))
            .to_owned(),
        a["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("{a}"))
            .to_owned(),
    )
}

#[test]
fn cc_on_every_gpu_signs_its_own_nonce_bound_to_challenge_node_and_index() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, node_id) = node(tmp.path());
    let (root_pem, devices) = eight_devices();
    let gpus: Vec<_> = devices.iter().map(|(_, cc)| Some(cc.clone())).collect();
    let json = with_conf_compute(&dgx_h100(), CcSettings::ON, &gpus).expect("fixture");
    let driver = driver(&json, Some(&root_pem));

    let mut seen = Vec::new();
    for challenge in [NONCE_A, NONCE_B] {
        let (summary, claims) = attest(&node, &driver.lib_path(), challenge, &[]);
        assert_eq!(claims["tppguard.evidence_tier"], "hardware", "{summary}");
        assert_eq!(summary["evidence_tier"], "hardware");
        let challenge = Nonce::parse(challenge).expect("nonce");
        for (index, (device, _)) in (0u32..).zip(&devices) {
            let evidence = evidence_of(&claims, index);
            assert_eq!(evidence.arch, "HOPPER");
            assert_eq!(
                evidence.chain_pem().expect("chain"),
                device.chain_pem().as_bytes()
            );
            let bytes = evidence.report_bytes().expect("report");
            let report = Report::parse(&bytes).expect("the report parses");
            let expected = gpu_nonce(&challenge, &node_id, index);
            assert_eq!(report.request().nonce, expected, "gpu{index}");
            assert_eq!(report.opaque().fwid(), Some(&device.fwid()[..]));
            assert_eq!(
                report.opaque().driver_version().as_deref(),
                Some("550.90.07")
            );
            assert_eq!(summary["gpu_evidence"][index as usize]["attached"], true);
            seen.push(expected);
        }
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        16,
        "every GPU and challenge gets its own nonce"
    );

    // The verifier's analyst command, the test root pinned, takes GPU 3's evidence from the
    // last attestation (challenge B) for that challenge's nonce, and not for challenge A's.
    let (_, claims) = attest(&node, &driver.lib_path(), NONCE_B, &[]);
    let root = driver.dir.path().join("device-root.pem");
    let nonce_at = |c: &str| {
        let challenge = Nonce::parse(c).expect("nonce");
        tppguard_tests::gpu_evidence::hex(&gpu_nonce(&challenge, &node_id, 3))
    };
    let evidence = evidence_of(&claims, 3);
    let (code, out) = verify(tmp.path(), &evidence, &nonce_at(NONCE_B), &root);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = verify(tmp.path(), &evidence, &nonce_at(NONCE_A), &root);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nonce"), "{out}");
}

/// `tppguard-verifier gpu-evidence verify` on `evidence` written as NVIDIA's tools write it,
/// for `nonce_hex`, with `root` pinned and the fixture's versions: exit code and output.
fn verify(
    dir: &Path,
    evidence: &GpuEvidence,
    nonce_hex: &str,
    root: &Path,
) -> (Option<i32>, String) {
    let report = dir.join("report.hex");
    let chain = dir.join("chain.pem");
    let bytes = evidence.report_bytes().expect("report");
    std::fs::write(&report, tppguard_tests::gpu_evidence::hex(&bytes)).expect("report file");
    std::fs::write(&chain, evidence.chain_pem().expect("chain")).expect("chain file");
    let out = bin("tppguard-verifier")
        .args(["gpu-evidence", "verify", "--json", "--nonce", nonce_hex])
        .args([
            "--driver-version",
            "550.90.07",
            "--vbios-version",
            "96.00.9F.00.01",
        ])
        .arg("--report")
        .arg(&report)
        .arg("--chain")
        .arg(&chain)
        .arg("--root")
        .arg(root)
        .output()
        .expect("verifier runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn protected_pcie_mode_also_collects_evidence() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let (_, devices) = eight_devices();
    let gpus: Vec<_> = devices.iter().map(|(_, cc)| Some(cc.clone())).collect();
    let json = with_conf_compute(&dgx_h100(), CcSettings::PROTECTED_PCIE, &gpus).expect("fix");
    let driver = driver(&json, None);
    let (_, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);
    assert_eq!(claims["tppguard.evidence_tier"], "hardware");
    assert_eq!(evidence_of(&claims, 7).arch, "HOPPER");
}

#[test]
fn cc_off_attaches_nothing_and_says_why() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let (_, devices) = eight_devices();
    // The GPUs would answer; the node's settings say CC is off, so they are not asked.
    let gpus: Vec<_> = devices.iter().map(|(_, cc)| Some(cc.clone())).collect();
    let json = with_conf_compute(&dgx_h100(), CcSettings::OFF, &gpus).expect("fixture");
    let driver = driver(&json, None);
    let (summary, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);
    assert_ne!(claims["tppguard.evidence_tier"], "hardware");
    for index in 0..8 {
        let (reason, detail) = absence(&claims, index);
        assert_eq!(reason, "not_supported");
        assert!(detail.starts_with("cc_off: "), "{detail}");
        assert!(detail.contains("CC mode off"), "{detail}");
        assert_eq!(summary["gpu_evidence"][index as usize]["attached"], false);
    }

    // The text summary says it once for the eight GPUs.
    let out = ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--nvml-lib",
            s(&driver.lib_path()),
            "--nonce",
            NONCE_A,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GPU evidence none: GPU 0,1,2,3,4,5,6,7: cc_off: "),
        "{text}"
    );
}

#[test]
fn the_real_h100_sample_is_attached_as_nvml_returns_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let (report_hex, chain_pem) = real_h100_sample(&workspace_root()).expect("sample");
    // NVML pads the chain buffer with NULs: the agent trims them, nothing else.
    let gpu0 = GpuCc::fixed(format!("{chain_pem}\0\0\0"), report_hex.clone());
    let json = with_conf_compute(&dgx_h100(), CcSettings::ON, &[Some(gpu0)]).expect("fixture");
    let driver = driver(&json, None);
    let (summary, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);

    let evidence = evidence_of(&claims, 0);
    assert_eq!(evidence.chain_pem().expect("chain"), chain_pem.as_bytes());
    let bytes = evidence.report_bytes().expect("report");
    assert_eq!(
        tppguard_tests::gpu_evidence::hex(&bytes),
        report_hex.to_lowercase()
    );
    let report = Report::parse(&bytes).expect("the sample parses");
    assert_eq!(
        report.opaque().driver_version().as_deref(),
        Some("550.90.07")
    );
    // Its nonce is the sample's, not this challenge's: attached all the same, for the
    // verifier to judge.
    assert_ne!(report.request().nonce, [0u8; 32]);

    // GPUs without conf_compute: NVML says NOT_SUPPORTED, not retried.
    let (reason, detail) = absence(&claims, 1);
    assert_eq!(reason, "not_supported");
    assert!(
        detail.starts_with("not_supported: nvmlDeviceGetConfComputeGpuCertificate"),
        "{detail}"
    );
    assert_ne!(claims["tppguard.evidence_tier"], "hardware");
    assert_eq!(summary["gpu_evidence"][0]["attached"], true);
    assert_eq!(summary["gpu_evidence"][1]["attached"], false);
}

/// `dgx-h100` with CC on, GPU 0 as `edit` makes it and GPUs 1-7 signing.
fn one_odd_gpu(edit: impl FnOnce(&mut GpuCc), device_errors: Option<Value>) -> String {
    let (_, devices) = eight_devices();
    let mut gpus: Vec<_> = devices.iter().map(|(_, cc)| Some(cc.clone())).collect();
    if let Some(Some(gpu0)) = gpus.first_mut() {
        edit(gpu0);
    }
    let json = with_conf_compute(&dgx_h100(), CcSettings::ON, &gpus).expect("fixture");
    let mut fixture: Value = serde_json::from_str(&json).expect("json");
    if let Some(errors) = device_errors {
        fixture["devices"][0]["errors"] = errors;
    }
    fixture.to_string()
}

#[test]
fn an_nvml_error_is_recorded_after_the_retries_and_the_other_gpus_attest() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let json = one_odd_gpu(
        |_| {},
        Some(serde_json::json!({ "nvmlDeviceGetConfComputeGpuAttestationReport": "UNKNOWN" })),
    );
    let driver = driver(&json, None);
    let (_, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);
    let (reason, detail) = absence(&claims, 0);
    assert_eq!(reason, "error");
    assert!(
        detail.starts_with(
            "driver_error: nvmlDeviceGetConfComputeGpuAttestationReport failed after 3 attempt(s)"
        ),
        "{detail}"
    );
    assert_eq!(evidence_of(&claims, 1).arch, "HOPPER");
    assert_ne!(
        claims["tppguard.evidence_tier"], "hardware",
        "one GPU without evidence keeps the node below hardware"
    );

    let json = one_odd_gpu(
        |_| {},
        Some(serde_json::json!({ "nvmlDeviceGetConfComputeGpuCertificate": "NO_PERMISSION" })),
    );
    let driver = self::driver(&json, None);
    let (_, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);
    let (reason, detail) = absence(&claims, 0);
    assert_eq!(reason, "no_permission");
    assert!(detail.starts_with("no_permission: "), "{detail}");
}

#[test]
fn a_hung_call_times_out_after_three_attempts_and_the_agent_finishes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let json = one_odd_gpu(|gpu0| gpu0.delay_ms = Some(60_000), None);
    let driver = driver(&json, None);
    let started = Instant::now();
    let (_, claims) = attest(
        &node,
        &driver.lib_path(),
        NONCE_A,
        &["--nvml-call-timeout-ms", "200"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the agent did not wait for the hung call ({:?})",
        started.elapsed()
    );
    let (reason, detail) = absence(&claims, 0);
    assert_eq!(reason, "error");
    assert!(
        detail.starts_with(
            "timed_out: nvmlDeviceGetConfComputeGpuCertificate did not answer within 200 ms, \
             3 attempt(s)"
        ),
        "{detail}"
    );
    // The other GPUs answered while GPU 0's calls hung.
    assert_eq!(evidence_of(&claims, 7).arch, "HOPPER");
}

#[test]
fn a_report_size_past_the_buffer_is_refused_without_a_crash() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let json = one_odd_gpu(|gpu0| gpu0.report_size_override = Some(9000), None);
    let driver = driver(&json, None);
    let (_, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);
    let (reason, detail) = absence(&claims, 0);
    assert_eq!(reason, "error");
    assert!(detail.starts_with("bad_answer: "), "{detail}");
    assert!(
        detail.contains("9000 bytes of attestation report into a 8192-byte buffer"),
        "{detail}"
    );
    assert_eq!(evidence_of(&claims, 1).arch, "HOPPER");
}

#[test]
fn a_driver_without_the_cc_functions_is_too_old() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node(tmp.path());
    let json = one_odd_gpu(|_| {}, None);
    let driver = FakeDriver::with_library(&old_driver_fake_nvml_lib(), &json);
    let (summary, claims) = attest(&node, &driver.lib_path(), NONCE_A, &[]);
    for index in 0..8 {
        let (reason, detail) = absence(&claims, index);
        assert_eq!(reason, "symbol_missing");
        assert!(
            detail.starts_with("driver_too_old: ")
                && detail.contains("nvmlSystemGetConfComputeSettings"),
            "{detail}"
        );
    }
    assert_ne!(summary["evidence_tier"], "hardware");
}

#[test]
fn the_gpu_evidence_command_says_what_nvml_answers_and_writes_nvidias_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (report_hex, chain_pem) = real_h100_sample(&workspace_root()).expect("sample");
    let gpu0 = GpuCc::fixed(chain_pem.clone(), report_hex.clone());
    // CC off: `attest` would not ask, the diagnosis asks all the same.
    let json = with_conf_compute(&dgx_h100(), CcSettings::OFF, &[Some(gpu0)]).expect("fixture");
    let driver = driver(&json, None);
    let out_dir = tmp.path().join("evidence");
    let nonce = "00".repeat(32);
    let out = bin("tppguard-agent")
        .args(["gpu-evidence", "--json", "--nonce", &nonce, "--nvml-lib"])
        .arg(driver.lib_path())
        .arg("--out-dir")
        .arg(&out_dir)
        .output()
        .expect("agent runs");
    assert_eq!(out.status.code(), Some(1), "GPUs 1-7 gave nothing");
    let probe: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    assert_eq!(probe["schema"], "tppguard-gpu-evidence-probe/v1");
    assert_eq!(probe["attest_collects"], false);
    assert!(
        probe["attest_collects_not_because"]
            .as_str()
            .is_some_and(|t| t.starts_with("cc_off: "))
    );
    let gpu0 = &probe["gpus"][0];
    assert_eq!(gpu0["nonce"], nonce.as_str());
    assert_eq!(gpu0["certificate"]["ok"], true);
    assert_eq!(gpu0["report"]["bytes"], 4117);
    let written = std::fs::read_to_string(out_dir.join("gpu0-report.hex")).expect("report file");
    assert_eq!(written.trim(), report_hex.to_lowercase());
    let chain = std::fs::read_to_string(out_dir.join("gpu0-chain.pem")).expect("chain file");
    assert_eq!(chain, chain_pem);
    let gpu1 = &probe["gpus"][1];
    assert_eq!(gpu1["certificate"]["nvml_error"], "NotSupported");
    assert_eq!(gpu1["report"]["code"], "not_supported");
    assert!(!out_dir.join("gpu1-report.hex").exists());
}
