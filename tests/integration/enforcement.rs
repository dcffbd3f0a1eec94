//! Issue 15's acceptance, end to end on loopback: the real verifier issues leases, the real
//! agent (`run`, enforce mode) gates through the fake NVML, and the fake's calls record
//! (`TPPGUARD_FAKE_NVML_CALLS`) shows the exact gating sequence.
//!
//! One node, the simulated DGX H100 (8 GPUs), at site fra-1 under a licence capped at 6
//! devices and failing closed: the lease leaves out GPUs 6 and 7 and the agent gates them; a
//! new licence with room (the old one retired) lets them compute again on the next cycle; the
//! verifier killed, the lease expires, the grace passes and every GPU is gated; a forged lease
//! allowing everything changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tppguard_proto::jws::{self, Alg, Header, SigningKey};
use tppguard_proto::lease::{
    GpuRef, LEASE_PROFILE, LEASE_TYP, LeaseClaims, LeaseGpu, LeaseVerdict, OnExpiry,
};

use crate::support::{
    FakeDriver, VerifierSetup, bearer, bin, fixtures_dir, issue_token, pem_certs, s, sign_licence,
    terminate, workspace_root,
};

const CALLS_ENV: &str = "TPPGUARD_FAKE_NVML_CALLS";

/// The example licence with `max_devices`, another `id` when given, and lease terms that
/// make the test quick: 6 s leases renewed after 3 s, a 2 s grace, failing closed.
fn licence_toml(id: Option<&str>, max_devices: u32) -> String {
    let example =
        std::fs::read_to_string(workspace_root().join("examples/licence.toml")).expect("example");
    let mut text = example.replace(
        "max_devices = 2048",
        &format!("max_devices = {max_devices}"),
    );
    if let Some(id) = id {
        text = text.replace("id = \"EXAMPLE-DE-2026-0142\"", &format!("id = \"{id}\""));
    }
    assert_ne!(text, example);
    format!(
        "{text}\n[lease]\nlifetime = \"6s\"\nrenew_before = \"3s\"\ngrace = \"2s\"\non_expiry = \"fail_closed\"\n"
    )
}

/// The set calls so far: (GPU index, mode).
fn calls(file: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).expect("a calls line");
            (v["call"] == "nvmlDeviceSetComputeMode").then(|| {
                (
                    v["index"].as_u64().expect("index"),
                    v["mode"].as_str().expect("mode").to_owned(),
                )
            })
        })
        .collect()
}

fn sets(indexes: impl IntoIterator<Item = u64>, mode: &str) -> Vec<(u64, String)> {
    indexes.into_iter().map(|i| (i, mode.to_owned())).collect()
}

/// Waits up to `limit` for `done` over the calls record; the record at the end.
fn wait_for(
    file: &Path,
    limit: Duration,
    done: impl Fn(&[(u64, String)]) -> bool,
) -> Vec<(u64, String)> {
    let start = Instant::now();
    loop {
        let now = calls(file);
        if done(&now) || start.elapsed() > limit {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(base: &str, path: &str, token: &str, content_type: &str, body: &str) -> (u16, Value) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = http
        .post(format!("{base}{path}"))
        .header("Authorization", bearer(token))
        .header("Content-Type", content_type)
        .send(body)
        .expect("POST");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// The agent's `run` configuration: enforce mode, 2 s interval, the verifier's result key.
fn agent_config(dir: &Path, base: &str, node: &Path, token_file: &Path, lib: &Path) -> PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "verifier = \"{base}\"\ndir = \"{}\"\nsite = \"fra-1\"\ninterval_s = 2\nbackoff_max_s = 2\n\
             nvml_lib = \"{}\"\nverifier_result_key = \"{}\"\ntoken_file = \"{}\"\nmeasure = false\n\n\
             [gating]\nmode = \"enforce\"\n",
            node.display(),
            lib.display(),
            dir.join("pki/verifier/verifier-result.pub.pem").display(),
            token_file.display(),
        ),
    )
    .expect("agent config");
    config
}

fn start_agent(config: &Path, calls_file: &Path) -> Child {
    bin("tppguard-agent")
        .args(["run", "--config", s(config)])
        .env(CALLS_ENV, calls_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent run starts")
}

fn stderr_of(mut child: Child) -> String {
    use std::io::Read as _;
    terminate(&mut child);
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    text
}

/// A lease allowing all 8 GPUs of `node`, valid now, signed by a key the agent never pinned.
fn forged_lease(node_chain: &Path, uuids: &[String], path: &Path) {
    let leaf = pem_certs(node_chain).remove(0);
    let (node, _) = tppguard_verifier::chain::stored_leaf_facts(&leaf).expect("node leaf");
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("now");
    let claims = LeaseClaims {
        iss: "a forger".into(),
        sub: node.to_string(),
        iat: now,
        nbf: now - 5,
        exp: now + 3600,
        eat_profile: LEASE_PROFILE.into(),
        token_sha256: "ab".repeat(32),
        verdict: LeaseVerdict::Compliant,
        renew_at: now + 1800,
        grace_s: 3600,
        on_expiry: OnExpiry::FailOpen,
        gpus: uuids
            .iter()
            .zip(0u32..)
            .map(|(uuid, index)| LeaseGpu {
                gpu: GpuRef {
                    index,
                    uuid: Some(uuid.clone()),
                    serial: None,
                    hardware_id: None,
                },
                licence: Some("EXAMPLE-DE-2026-0142".into()),
            })
            .collect(),
        excluded: Vec::new(),
    };
    let key = SigningKey::from_pkcs8(
        Alg::EdDSA,
        &SigningKey::generate_pkcs8(Alg::EdDSA).expect("key"),
    )
    .expect("key");
    let token = jws::sign(
        &Header::new(Alg::EdDSA).with_typ(LEASE_TYP),
        &claims.to_json().expect("claims"),
        &key,
    )
    .expect("sign");
    std::fs::write(path, token).expect("forged lease");
}

#[test]
fn leases_gate_the_excess_a_new_licence_ungates_a_silent_verifier_fails_closed_and_a_forgery_changes_nothing()
 {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let dir = setup.tmp.path().to_path_buf();
    let pki = dir.join("pki");
    // The licence in licences_dir: capped at 6 devices, failing closed.
    let capped = dir.join("capped.toml");
    std::fs::write(&capped, licence_toml(None, 6)).expect("licence");
    sign_licence(&pki, &capped, &dir.join("licences/licence.jws"));
    let admin = issue_token(&setup.config, "admin", "test-admin");
    let verifier = setup.start();

    let fixture =
        std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json")).expect("fixture");
    let uuids: Vec<String> = serde_json::from_str::<Value>(&fixture).expect("fixture")["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["uuid"].as_str().expect("uuid").to_owned())
        .collect();
    let driver = FakeDriver::with_fixture_json(&fixture);
    let calls_file = dir.join("calls.jsonl");
    let config = agent_config(
        &dir,
        &verifier.base,
        &setup.node,
        &verifier.credentials.node_file,
        &driver.lib_path(),
    );

    // 1. Over the cap: the lease leaves out GPUs 6 and 7, and the agent gates exactly those.
    let agent = start_agent(&config, &calls_file);
    let gated = sets([6, 7], "PROHIBITED");
    let seen = wait_for(&calls_file, Duration::from_secs(60), |c| c.len() >= 2);
    if seen != gated {
        panic!("{seen:?}\n{}", stderr_of(agent));
    }
    let (_, nodes) = verifier.get_json("/v1/licences");
    assert_eq!(nodes["licences"][0]["devices"]["cap"], 6, "{nodes}");
    assert_eq!(
        nodes["licences"][0]["lease"]["on_expiry"], "fail_closed",
        "{nodes}"
    );

    // 2. A new licence with room, the capped one retired: the next cycle's lease allows all 8,
    //    and the agent lets GPUs 6 and 7 compute again.
    let roomy = dir.join("roomy.toml");
    std::fs::write(&roomy, licence_toml(Some("EXAMPLE-DE-2026-0143"), 2048)).expect("licence");
    sign_licence(&pki, &roomy, &dir.join("roomy.jws"));
    let token = std::fs::read_to_string(dir.join("roomy.jws")).expect("roomy");
    let (status, answer) = post(
        &verifier.base,
        "/v1/licences",
        &admin,
        "application/jose",
        token.trim(),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = post(
        &verifier.base,
        "/v1/licences/EXAMPLE-DE-2026-0142/retirement",
        &admin,
        "application/json",
        &json!({"reason": "replaced by EXAMPLE-DE-2026-0143"}).to_string(),
    );
    assert!(status == 200 || status == 201, "{status} {answer}");
    let mut expected = gated.clone();
    expected.extend(sets([6, 7], "DEFAULT"));
    let seen = wait_for(&calls_file, Duration::from_secs(60), |c| c.len() >= 4);
    if seen != expected {
        panic!("{seen:?}\n{}", stderr_of(agent));
    }

    // 3. The verifier goes away: past the lease's end and its grace, fail-closed gates all 8.
    drop(verifier);
    expected.extend(sets(0..8, "PROHIBITED"));
    let seen = wait_for(&calls_file, Duration::from_secs(60), |c| c.len() >= 12);
    let log = stderr_of(agent);
    assert_eq!(seen, expected, "{log}");
    assert!(log.contains("verifier unavailable"), "{log}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.node.join("gate-report.json")).expect("report"),
    )
    .expect("report");
    assert_eq!(report["state"], "lapsed_fail_closed", "{report}");

    // 4. A forged lease allowing every GPU changes nothing: refused, no set call.
    let forged = dir.join("forged.jws");
    forged_lease(&setup.node.join("node-chain.pem"), &uuids, &forged);
    let out = bin("tppguard-agent")
        .args([
            "gate",
            "--config",
            s(&config),
            "--lease",
            s(&forged),
            "--json",
        ])
        .env(CALLS_ENV, &calls_file)
        .output()
        .expect("gate");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{answer}");
    assert_eq!(
        answer["lease_refused"]["code"], "lease_signature_invalid",
        "{answer}"
    );
    assert_eq!(calls(&calls_file), expected, "the forgery set nothing");
    assert!(
        answer["report"]["gpus"]
            .as_array()
            .expect("gpus")
            .iter()
            .all(|g| g["gate"] == true && g["held"] == true),
        "{answer}"
    );
}
