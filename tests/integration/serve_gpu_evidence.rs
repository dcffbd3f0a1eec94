//! Issue 13 end to end: a node whose GPUs sign their own evidence attests through the real agent
//! (over the fake NVML serving test devices) to the real `serve`, under a licence with
//! `min_evidence_tier = "hardware"`; the verdict, the EAR and a restarted verifier (the facts
//! read back from the store) show each GPU's tier and named checks. And the attacks: evidence
//! copied from another node's attestation, a simulated driver, a root nobody pinned.
//!
//! The fake NVML marks its inventory simulated (`tppguard.simulated`), and simulated evidence is
//! never compliant; and `hardware` nests `measured`, which needs a real (CUDA) measurement of
//! each GPU that no fake can give. A real node's agent sends both; the test makes that token as
//! root on a node would: the same claims without `tppguard.simulated` and with a CUDA
//! measurement per GPU, signed again with the node's own key (`support::resigned`). What
//! decides the tier is then what only the GPUs can make: each one's signed report for this
//! challenge, node and index.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use tppguard_tests::gpu_evidence::{CcSettings, GpuCc, with_conf_compute};
use tppguard_verifier::gpu_evidence::test_device::{FwidForm, TestRoot};

use crate::support::{
    FakeDriver, VerifierSetup, bin, challenge, fixtures_dir, issue_node, jws_payload,
    post_attestation, resigned, s, sign_licence, workspace_root,
};

/// The test device root's file, pinned beside NVIDIA's in the verifier's trust.toml.
const TEST_ROOT_FILE: &str = "test-device-root.pem";

/// A verifier whose trust.toml also pins `root` for GPU evidence and whose only licence is the
/// example licence requiring the `hardware` tier.
fn hardware_verifier(root: &TestRoot) -> VerifierSetup {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.tmp.path().join("pki").join("verifier");
    std::fs::write(verifier.join(TEST_ROOT_FILE), root.root_pem()).expect("test root");
    let trust = verifier.join("trust.toml");
    let text = std::fs::read_to_string(&trust).expect("trust.toml");
    let pinned = text.replace(
        "device_roots = [\"nvidia-device-identity-ca.pem\"]",
        &format!("device_roots = [\"nvidia-device-identity-ca.pem\", \"{TEST_ROOT_FILE}\"]"),
    );
    assert_ne!(pinned, text, "pki init pins NVIDIA's root: {text}");
    std::fs::write(&trust, pinned).expect("trust.toml");

    let example = std::fs::read_to_string(workspace_root().join("examples/licence.toml"))
        .expect("example licence");
    let hardware = example.replacen(
        "min_evidence_tier = \"declared\"",
        "min_evidence_tier = \"hardware\"",
        1,
    );
    assert_ne!(hardware, example);
    let toml = setup.tmp.path().join("hardware-licence.toml");
    std::fs::write(&toml, hardware).expect("licence toml");
    let out = sign_licence(
        &setup.tmp.path().join("pki"),
        &toml,
        &setup.tmp.path().join("licences").join("licence.jws"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    setup
}

/// A node folder `name` certified at site fra-1 by the setup's operator.
fn certified_node(setup: &VerifierSetup, name: &str) -> PathBuf {
    let node = setup.tmp.path().join(name);
    issue_node(&setup.tmp.path().join("pki"), &node, name, Some("fra-1"));
    node
}

/// A fake driver for a DGX H100 whose eight GPUs are test devices under `root`, CC on.
fn cc_driver(root: &std::sync::Arc<TestRoot>) -> FakeDriver {
    let base =
        std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json")).expect("dgx-h100");
    let gpus: Vec<Option<GpuCc>> = (0..8)
        .map(|_| {
            let d = root.device(FwidForm::NvidiaLegacy);
            Some(GpuCc::signed(
                d.chain_pem(),
                base64::engine::general_purpose::STANDARD.encode(d.leaf_key_pkcs8()),
                &d.fwid(),
            ))
        })
        .collect();
    FakeDriver::with_fixture_json(
        &with_conf_compute(&base, CcSettings::ON, &gpus).expect("fixture"),
    )
}

/// `tppguard-agent attest` from `node` over the fake `driver` for `nonce` at fra-1: the token.
fn attest(node: &Path, driver: &FakeDriver, nonce: &str) -> String {
    let out_file = node.join(format!("{}.jws", &nonce[..8]));
    let out = bin("tppguard-agent")
        .args([
            "attest",
            "--dir",
            s(node),
            "--nvml-lib",
            s(&driver.lib_path()),
            "--nonce",
            nonce,
            "--site",
            "fra-1",
            "--out",
            s(&out_file),
        ])
        .output()
        .expect("agent runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(out_file)
        .expect("token")
        .trim()
        .to_owned()
}

/// `token` as a real node's agent would sign it after measuring its GPUs: without the
/// simulated mark, each GPU with a CUDA measurement below its spec (an H100 SXM5's FP8 and
/// BF16), taken ten minutes before the claims.
fn as_real_node(node: &Path, token: &str) -> String {
    resigned(node, token, |claims| {
        let iat = claims["iat"].as_i64().expect("iat");
        let claims = claims.as_object_mut().expect("claims object");
        claims.remove("tppguard.simulated");
        for gpu in claims["submods"]
            .as_object_mut()
            .expect("submods")
            .values_mut()
        {
            gpu["measurement"] = real_measurement(iat - 600);
        }
    })
}

/// A measurement as `tppguard-agent measure` writes it on a real H100.
fn real_measurement(started_at: i64) -> Value {
    let result = |precision: &str, tops: f64| {
        serde_json::json!({
            "precision": precision,
            "matrix_size": 8192,
            "gemms_per_repeat": 20,
            "tops_median": tops,
            "tops_min": tops * 0.98,
            "tops_max": tops * 1.01
        })
    };
    serde_json::json!({
        "method": "cuda_gemm",
        "backend": "CUDA driver 13.0, cuBLAS 13.0.2",
        "started_at": started_at,
        "duration_ms": 42_000,
        "repeats": 10,
        "results": [result("fp8", 1320.4), result("bf16", 600.0)],
        "telemetry": {
            "samples": 40,
            "sm_clock_mhz_min": 1755,
            "sm_clock_mhz_max": 1980,
            "temperature_c_max": 71,
            "power_mw_max": 690_000,
            "throttle_reasons": []
        }
    })
}

fn node_in<'v>(fleet: &'v Value, node_id: &str) -> &'v Value {
    fleet["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == node_id))
        .unwrap_or_else(|| panic!("node {node_id} in {fleet}"))
}

fn finding_codes(fleet: &Value) -> Vec<String> {
    fleet["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| f["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_hardware_licence_is_compliant_only_on_verified_gpu_reports_end_to_end() {
    let root = TestRoot::new("GH100");
    let setup = hardware_verifier(&root);
    let node = certified_node(&setup, "gpu-node-cc");
    let driver = cc_driver(&root);
    let server = setup.start();
    let node_token = server.credentials.node.clone();

    // The node answers a challenge; each GPU signed its own report for it.
    let nonce = challenge(&server.base, &node_token);
    let token = as_real_node(&node, &attest(&node, &driver, &nonce));
    let (status, answer) = post_attestation(&server.base, &node_token, &token);
    assert_eq!(status, 200, "{answer}");
    let node_id = answer["node"].as_str().expect("node id").to_owned();

    // The EAR shows each GPU's tier and named checks.
    let ear = jws_payload(answer["ear"].as_str().expect("ear"));
    let gpus = &ear["submods"][&node_id]["tppguard.gpus"];
    assert_eq!(gpus.as_object().map(|g| g.len()), Some(8), "{ear}");
    for (name, gpu) in gpus.as_object().expect("gpus") {
        assert_eq!(gpu["tier"], "hardware", "{name}: {gpu}");
        // A signed EAR is shown whole (histories): it names no hardware identity.
        assert!(gpu.get("hardware_id").is_none(), "{gpu}");
        let checks = &gpu["checks"];
        for required in [
            "cert_chain",
            "signature",
            "nonce",
            "fwid",
            "driver_version",
            "vbios_version",
        ] {
            assert_eq!(checks[required], "passed", "{name}: {required} in {gpu}");
        }
        // No reference values were configured: not checked, never passed, and why.
        assert_eq!(checks["measurements"], "not_checked", "{gpu}");
        assert_eq!(gpu["codes"]["measurements"], "no_reference_values", "{gpu}");
    }

    let (status, fleet) = server.get_json("/v1/fleet?view=full");
    assert_eq!(status, 200);
    assert_eq!(fleet["verdict"], "compliant", "{:?}", finding_codes(&fleet));
    let n = node_in(&fleet, &node_id);
    assert_eq!(n["effective_evidence_tier"], "hardware");
    for g in n["gpus"].as_array().expect("gpus") {
        assert_eq!(g["evidence_tier"], "hardware", "{g}");
        assert!(g["gpu_evidence"]["checks"].is_array(), "{g}");
    }

    // A restarted verifier reads the facts back from its store: the same verdict.
    drop(server);
    let server = setup.start();
    let (_, again) = server.get_json("/v1/fleet?view=full");
    assert_eq!(again["verdict"], "compliant", "{:?}", finding_codes(&again));
    assert_eq!(
        node_in(&again, &node_id)["effective_evidence_tier"],
        "hardware"
    );

    // Attack: a second node presents the first node's GPU reports as its own (signed with its
    // own key over its own challenge). Each report answers the first node's nonce: every GPU
    // fails its `nonce` check, and the licence is unproven, not compliant.
    let thief = certified_node(&setup, "gpu-node-thief");
    let stolen_claims = jws_payload(&token);
    let nonce = challenge(&server.base, &server.credentials.node);
    let thief_token = resigned(
        &thief,
        &as_real_node(&thief, &attest(&thief, &driver, &nonce)),
        |c| {
            for (name, gpu) in c["submods"].as_object_mut().expect("submods") {
                gpu["gpu_evidence"] = stolen_claims["submods"][name]["gpu_evidence"].clone();
            }
        },
    );
    let (status, answer) = post_attestation(&server.base, &server.credentials.node, &thief_token);
    assert_eq!(status, 200, "{answer}");
    let thief_id = answer["node"].as_str().expect("node id").to_owned();
    let (_, fleet) = server.get_json("/v1/fleet?view=full");
    assert_eq!(fleet["verdict"], "unproven", "{:?}", finding_codes(&fleet));
    let t = node_in(&fleet, &thief_id);
    // Its GPUs (the honest node's UUIDs) count at the honest node, where they signed: none is
    // left to back a tier above declared here.
    assert_eq!(t["effective_evidence_tier"], "declared");
    for g in t["gpus"].as_array().expect("gpus") {
        let checks = g["gpu_evidence"]["checks"].as_array().expect("checks");
        let nonce_check = checks.iter().find(|c| c["name"] == "nonce").expect("nonce");
        assert_eq!(nonce_check["outcome"], "failed", "{g}");
        assert_eq!(nonce_check["code"], "nonce_mismatch", "{g}");
    }
    let thief_failures = fleet["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "gpu_evidence_failed")
        .count();
    assert_eq!(thief_failures, 8);
    // The thief also reports the honest node's UUIDs (one fixture): the GPUs count where their
    // own evidence verified, so the honest node keeps them and its hardware tier.
    assert_eq!(
        node_in(&fleet, &node_id)["effective_evidence_tier"],
        "hardware"
    );
}

#[test]
fn simulated_or_unpinned_evidence_never_makes_a_hardware_licence_compliant() {
    let root = TestRoot::new("GH100");
    let stranger = TestRoot::new("GH100");
    let setup = hardware_verifier(&root);
    let server = setup.start();
    let node_token = server.credentials.node.clone();

    // The fake driver's own mark stays: simulated evidence is unproven whatever it carries.
    let node = certified_node(&setup, "gpu-node-sim");
    let nonce = challenge(&server.base, &node_token);
    let token = attest(&node, &cc_driver(&root), &nonce);
    let (status, answer) = post_attestation(&server.base, &node_token, &token);
    assert_eq!(status, 200, "{answer}");
    let sim = answer["node"].as_str().expect("node").to_owned();

    // GPUs under a root nobody pinned (a vendor impostor): the chain fails, no hardware tier.
    let other = certified_node(&setup, "gpu-node-stranger");
    let nonce = challenge(&server.base, &node_token);
    let token = as_real_node(&other, &attest(&other, &cc_driver(&stranger), &nonce));
    let (status, answer) = post_attestation(&server.base, &node_token, &token);
    assert_eq!(status, 200, "{answer}");
    let impostor = answer["node"].as_str().expect("node").to_owned();

    let (_, fleet) = server.get_json("/v1/fleet?view=full");
    assert_ne!(fleet["verdict"], "compliant", "{fleet}");
    let codes = finding_codes(&fleet);
    assert!(
        codes.iter().any(|c| c == "simulated_inventory"),
        "{codes:?}"
    );
    assert!(
        codes.iter().any(|c| c == "evidence_tier_too_low"),
        "{codes:?}"
    );
    assert_eq!(node_in(&fleet, &sim)["effective_evidence_tier"], "declared");
    let i = node_in(&fleet, &impostor);
    assert_eq!(i["effective_evidence_tier"], "declared");
    let chain = i["gpus"][0]["gpu_evidence"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "cert_chain").cloned())
        .expect("cert_chain check");
    assert_eq!(chain["outcome"], "failed", "{chain}");
    assert!(i["gpus"][0]["gpu_evidence"]["hardware_id"].is_null());
}
