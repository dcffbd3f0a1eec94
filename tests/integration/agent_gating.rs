//! Gating on the node, end to end through the real agent binary and the fake NVML: leases
//! signed here with a generated Ed25519 key pinned as the verifier's result key, the exact
//! sequence of set calls read from the fake's calls record (`TPPGUARD_FAKE_NVML_CALLS`).
//! `gate --at` is a dry run (nothing set, nothing written): where time must really pass, the
//! leases are issued at the real time with lifetimes of seconds.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{self, Alg, Header, SigningKey};
use tppguard_proto::lease::{
    GpuRef, LEASE_PROFILE, LEASE_TYP, LeaseClaims, LeaseExclusion, LeaseGpu, LeaseReason,
    LeaseVerdict, OnExpiry,
};

use crate::support::{
    FakeDriver, bin, fixtures_dir, free_port, jws_payload, node_with_chain, pem_certs, s, terminate,
};

const CALLS_ENV: &str = "TPPGUARD_FAKE_NVML_CALLS";

/// One test's node: a certified node folder, a fake driver serving `dgx-h100` (possibly
/// edited), a calls record and a result key pinned in `result.pub.pem`.
struct Node {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    id: NodeId,
    driver: FakeDriver,
    key: SigningKey,
    uuids: Vec<String>,
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Sleeps until the clock reads `t` (Unix seconds) or later.
fn wait_until(t: i64) {
    while now() < t {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `node.claims(t, ..)` living `lifetime` seconds with `grace` seconds of grace.
fn short(
    node: &Node,
    t: i64,
    excluded: &[u32],
    on_expiry: OnExpiry,
    lifetime: i64,
    grace: u64,
) -> LeaseClaims {
    let mut claims = node.claims(t, excluded, on_expiry);
    claims.exp = t + lifetime;
    claims.renew_at = t;
    claims.grace_s = grace;
    claims
}

fn new_key() -> SigningKey {
    SigningKey::from_pkcs8(Alg::EdDSA, &SigningKey::generate_pkcs8(Alg::EdDSA).unwrap()).unwrap()
}

impl Node {
    fn new(edit: impl FnOnce(&mut Value)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _pki) = node_with_chain(tmp.path(), "gpu-node-gate");
        let leaf = pem_certs(&dir.join("node-chain.pem")).remove(0);
        let (id, _) = tppguard_verifier::chain::stored_leaf_facts(&leaf).expect("node leaf");
        let mut fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json")).unwrap(),
        )
        .unwrap();
        edit(&mut fixture);
        let uuids = fixture["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["uuid"].as_str().unwrap().to_owned())
            .collect();
        let driver = FakeDriver::with_fixture_json(&fixture.to_string());
        let key = new_key();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(key.public_key_spki_der())
        );
        std::fs::write(tmp.path().join("result.pub.pem"), pem).unwrap();
        Self {
            tmp,
            dir,
            id,
            driver,
            key,
            uuids,
        }
    }

    fn calls_file(&self) -> PathBuf {
        self.tmp.path().join("calls.jsonl")
    }

    /// The set calls so far: (symbol, index, mode or ready, result).
    fn calls(&self) -> Vec<(String, Option<u64>, String, String)> {
        std::fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["call"].as_str().unwrap().to_owned(),
                    v["index"].as_u64(),
                    v.get("mode")
                        .map(|m| m.as_str().unwrap().to_owned())
                        .or_else(|| v.get("ready").map(|r| r.to_string()))
                        .unwrap(),
                    v["result"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn gpu(&self, index: u32) -> GpuRef {
        GpuRef {
            index,
            uuid: Some(self.uuids[index as usize].clone()),
            serial: None,
            hardware_id: None,
        }
    }

    /// A lease for this node, valid `[iat - 10, iat + 3600)`, allowing every GPU but
    /// `excluded`, with `on_expiry` and a grace of 600 s.
    fn claims(&self, iat: i64, excluded: &[u32], on_expiry: OnExpiry) -> LeaseClaims {
        LeaseClaims {
            iss: "verifier.test".into(),
            sub: self.id.to_string(),
            iat,
            nbf: iat - 10,
            exp: iat + 3600,
            eat_profile: LEASE_PROFILE.into(),
            token_sha256: "ab".repeat(32),
            verdict: if excluded.is_empty() {
                LeaseVerdict::Compliant
            } else {
                LeaseVerdict::NotCompliant
            },
            renew_at: iat + 2700,
            grace_s: 600,
            on_expiry,
            gpus: (0..8)
                .filter(|i| !excluded.contains(i))
                .map(|i| LeaseGpu {
                    gpu: self.gpu(i),
                    licence: Some("LIC-EXAMPLE-1".into()),
                })
                .collect(),
            excluded: excluded
                .iter()
                .map(|i| LeaseExclusion {
                    gpu: self.gpu(*i),
                    reasons: vec![LeaseReason {
                        code: "licence_cap_exceeded".into(),
                        sentence: "The licence's cap is reached.".into(),
                    }],
                })
                .collect(),
        }
    }

    /// `claims` signed by `key` into a lease file; its path.
    fn lease_file(&self, name: &str, claims: &LeaseClaims, key: &SigningKey) -> PathBuf {
        let jws = jws::sign(
            &Header::new(Alg::EdDSA).with_typ(LEASE_TYP),
            &claims.to_json().unwrap(),
            key,
        )
        .unwrap();
        let path = self.tmp.path().join(name);
        std::fs::write(&path, jws).unwrap();
        path
    }

    fn lease(&self, name: &str, claims: &LeaseClaims) -> PathBuf {
        self.lease_file(name, claims, &self.key)
    }

    /// `gate --json` in `mode` with `extra` arguments.
    fn gate(&self, mode: &str, extra: &[&str]) -> (Output, Value) {
        let key = self.tmp.path().join("result.pub.pem");
        let lib = self.driver.lib_path();
        let mut args = vec![
            "gate",
            "--dir",
            s(&self.dir),
            "--nvml-lib",
            s(&lib),
            "--mode",
            mode,
            "--verifier-result-key",
            s(&key),
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = bin("tppguard-agent")
            .args(&args)
            .env(CALLS_ENV, self.calls_file())
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "gate --json ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, json)
    }
}

fn set(index: u64, mode: &str) -> (String, Option<u64>, String, String) {
    (
        "nvmlDeviceSetComputeMode".into(),
        Some(index),
        mode.into(),
        "SUCCESS".into(),
    )
}

fn gpu_report(json: &Value, index: usize) -> &Value {
    &json["report"]["gpus"][index]
}

#[test]
fn a_lease_gates_exactly_what_it_leaves_out_and_a_new_one_restores_it() {
    let node = Node::new(|_| {});
    let t = now();
    let first = node.lease("first.jws", &node.claims(t, &[3], OnExpiry::FailOpen));
    let (out, json) = node.gate("enforce", &["--lease", s(&first)]);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(node.calls(), [set(3, "PROHIBITED")]);
    assert_eq!(json["report"]["state"], "leased");
    assert_eq!(json["report"]["mode"], "enforce");
    let g3 = gpu_report(&json, 3);
    assert_eq!(
        (&g3["gate"], &g3["compute_mode"], &g3["held"]),
        (
            &Value::Bool(true),
            &Value::from("prohibited"),
            &Value::Bool(true)
        )
    );
    assert_eq!(gpu_report(&json, 2)["gate"], false);
    assert_eq!(json["next_change"], t + 2700, "the renewal");

    // Again, with nothing new: the state is kept (lease.jws) and nothing is set.
    let (_, json) = node.gate("enforce", &[]);
    assert_eq!(json["report"]["state"], "leased");
    assert_eq!(node.calls().len(), 1);

    // The gating report goes into the next attestation.
    let out_file = node.tmp.path().join("attestation.jws");
    let lib = node.driver.lib_path();
    let out = bin("tppguard-agent")
        .args([
            "attest",
            "--dir",
            s(&node.dir),
            "--nvml-lib",
            s(&lib),
            "--nonce",
            &"a0".repeat(32),
            "--out",
            s(&out_file),
        ])
        .env(CALLS_ENV, node.calls_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims = jws_payload(&std::fs::read_to_string(&out_file).unwrap());
    let gating = &claims["tppguard.gating"];
    assert_eq!(gating["state"], "leased");
    assert_eq!(
        gating["lease"].as_str().unwrap(),
        std::fs::read_to_string(&first).unwrap()
    );
    assert_eq!(gating["gpus"][3]["compute_mode"], "prohibited");

    // A newer lease allowing GPU 3: restored to DEFAULT, the one new call.
    let second = node.lease("second.jws", &node.claims(t + 1, &[], OnExpiry::FailOpen));
    let (out, json) = node.gate("enforce", &["--lease", s(&second)]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(node.calls(), [set(3, "PROHIBITED"), set(3, "DEFAULT")]);
    assert!(
        json["report"]["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["gate"] == false && g["held"] == true)
    );
}

#[test]
fn forged_expired_older_and_other_node_leases_change_nothing() {
    let node = Node::new(|_| {});
    let t = now();
    // A fresh node offered a forged lease: refused, nothing set.
    let forged = node.lease_file(
        "forged.jws",
        &node.claims(t, &[0, 1, 2, 3, 4, 5, 6, 7], OnExpiry::FailClosed),
        &new_key(),
    );
    let (out, json) = node.gate("enforce", &["--lease", s(&forged)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["lease_refused"]["code"], "lease_signature_invalid");
    assert_eq!(json["report"]["state"], "no_lease_yet");
    assert!(node.calls().is_empty());

    // GPU 3 gated under a valid lease; then leases that would un-gate it.
    let held = node.lease("held.jws", &node.claims(t, &[3], OnExpiry::FailClosed));
    node.gate("enforce", &["--lease", s(&held)]);
    assert_eq!(node.calls(), [set(3, "PROHIBITED")]);

    let all = |iat| node.claims(iat, &[], OnExpiry::FailOpen);
    let forged = node.lease_file("forged-all.jws", &all(t + 5), &new_key());
    let mut expired = all(t - 7200);
    expired.exp = t - 3600;
    expired.renew_at = t - 3700;
    let mut other = all(t + 5);
    other.sub = "00".repeat(32);
    let older = all(t - 5);
    let cases = [
        (forged, "lease_signature_invalid"),
        (node.lease("expired.jws", &expired), "lease_expired"),
        (node.lease("other.jws", &other), "lease_for_another_node"),
        (node.lease("older.jws", &older), "lease_older_than_held"),
    ];
    for (file, code) in cases {
        let (out, json) = node.gate("enforce", &["--lease", s(&file)]);
        assert_eq!(out.status.code(), Some(1), "{code}");
        assert_eq!(json["lease_refused"]["code"], code);
        assert_eq!(gpu_report(&json, 3)["gate"], true, "{code}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("lease refused"),
            "{code}: logged"
        );
    }
    // Hostile bytes in a lease file: refused, and nothing of it reaches the terminal raw.
    let hostile = node.tmp.path().join("hostile.jws");
    std::fs::write(&hostile, "\u{1b}[2J.\u{9b}31m.x").unwrap();
    let lib = node.driver.lib_path();
    let key = node.tmp.path().join("result.pub.pem");
    let out = bin("tppguard-agent")
        .args([
            "gate",
            "--dir",
            s(&node.dir),
            "--nvml-lib",
            s(&lib),
            "--mode",
            "enforce",
            "--verifier-result-key",
            s(&key),
            "--lease",
            s(&hostile),
        ])
        .env(CALLS_ENV, node.calls_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lease refused (lease_malformed)"), "{text}");
    assert!(text.contains("GATED"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{9b}'),
        "{text:?}"
    );
    assert_eq!(node.calls(), [set(3, "PROHIBITED")], "no set call at all");

    // The stored lease itself replaced by a forged one allowing everything: set aside, never
    // acted on; the last lease held was fail-closed, so without it every GPU is gated.
    std::fs::copy(
        node.tmp.path().join("forged-all.jws"),
        node.dir.join("lease.jws"),
    )
    .unwrap();
    let (_, json) = node.gate("enforce", &[]);
    assert_eq!(json["report"]["lease"], Value::Null);
    assert_eq!(json["report"]["state"], "lapsed_fail_closed");
    let mut expected = vec![set(3, "PROHIBITED")];
    expected.extend([0, 1, 2, 4, 5, 6, 7].map(|i| set(i, "PROHIBITED")));
    assert_eq!(node.calls(), expected);
}

#[test]
fn after_the_grace_fail_closed_gates_every_gpu_and_fail_open_keeps_the_left_out_gated() {
    // No lease ever, fail-closed without one: nothing until the first-lease grace is over.
    let node = Node::new(|f| {
        f["conf_compute"]["cc_feature"] = true.into();
        f["conf_compute"]["gpus_ready"] = true.into();
    });
    let t = now();
    let extra = [
        "--without-lease",
        "fail_closed",
        "--first-lease-grace-s",
        "2",
    ];
    let (_, json) = node.gate("enforce", &extra);
    assert_eq!(json["report"]["state"], "no_lease_yet");
    assert_eq!(json["report"]["cc_ready"]["ready"], true);
    assert!(node.calls().is_empty());
    let state = std::fs::read(node.dir.join("gate-state.json")).unwrap();
    let report = std::fs::read(node.dir.join("gate-report.json")).unwrap();
    // `--at` is a dry run: it says what would be, and sets and writes nothing.
    let at = (t + 601).to_string();
    let mut later = extra.to_vec();
    later.extend(["--at", &at]);
    let (_, json) = node.gate("enforce", &later);
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["report"]["state"], "lapsed_fail_closed");
    assert!(
        json["report"]["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["gate"] == true)
    );
    assert!(node.calls().is_empty());
    assert_eq!(
        std::fs::read(node.dir.join("gate-state.json")).unwrap(),
        state
    );
    assert_eq!(
        std::fs::read(node.dir.join("gate-report.json")).unwrap(),
        report
    );
    // The grace really over: every GPU gated.
    let started: Value = serde_json::from_slice(&state).unwrap();
    wait_until(started["started_at"].as_i64().unwrap() + 2);
    let (_, json) = node.gate("enforce", &extra);
    assert_eq!(json["report"]["state"], "lapsed_fail_closed");
    let mut expected: Vec<_> = (0..8).map(|i| set(i, "PROHIBITED")).collect();
    // Every GPU gated: the CC GPUs-ready state goes not-ready too.
    expected.push((
        "nvmlSystemSetConfComputeGpusReadyState".into(),
        None,
        "false".into(),
        "SUCCESS".into(),
    ));
    assert_eq!(node.calls(), expected);
    assert_eq!(json["report"]["cc_ready"]["held"], true);

    // A fail-closed lease past exp + grace gates all; in grace it keeps the lease's state.
    // A fail-open one keeps what it left out gated (GPU 3) and nothing more.
    let closed = Node::new(|_| {});
    let open = Node::new(|_| {});
    let t = now();
    let lease = closed.lease(
        "closed.jws",
        &short(&closed, t, &[3], OnExpiry::FailClosed, 1, 3),
    );
    closed.gate("enforce", &["--lease", s(&lease)]);
    let lease = open.lease("open.jws", &short(&open, t, &[3], OnExpiry::FailOpen, 1, 3));
    open.gate("enforce", &["--lease", s(&lease)]);
    assert_eq!(closed.calls(), [set(3, "PROHIBITED")]);
    assert_eq!(open.calls(), [set(3, "PROHIBITED")]);
    wait_until(t + 1);
    let (_, json) = closed.gate("enforce", &[]);
    assert_eq!(json["report"]["state"], "grace");
    assert_eq!(closed.calls(), [set(3, "PROHIBITED")]);
    wait_until(t + 4);
    let (_, json) = closed.gate("enforce", &[]);
    assert_eq!(json["report"]["state"], "lapsed_fail_closed");
    let mut expected = vec![set(3, "PROHIBITED")];
    expected.extend([0, 1, 2, 4, 5, 6, 7].map(|i| set(i, "PROHIBITED")));
    assert_eq!(closed.calls(), expected);
    let (_, json) = open.gate("enforce", &[]);
    assert_eq!(json["report"]["state"], "lapsed_fail_open");
    assert_eq!(gpu_report(&json, 3)["gate"], true);
    assert_eq!(open.calls(), [set(3, "PROHIBITED")]);
}

#[test]
fn observe_sets_nothing_but_names_the_gpu_it_would_gate() {
    let node = Node::new(|_| {});
    let lease = node.lease("lease.jws", &node.claims(now(), &[3], OnExpiry::FailClosed));
    let (out, json) = node.gate("observe", &["--lease", s(&lease), "--log", "info"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing is expected to hold in observe"
    );
    assert!(node.calls().is_empty());
    assert_eq!(json["report"]["mode"], "observe");
    let g3 = gpu_report(&json, 3);
    assert_eq!(
        (&g3["gate"], &g3["held"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(g3["compute_mode"], "default");
    assert_eq!(g3["uuid"], node.uuids[3].as_str());
    let would: Vec<_> = json["report"]["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["gate"] == true)
        .collect();
    assert_eq!(would.len(), 1);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("would be gated"), "{log}");
}

#[test]
fn a_gate_that_does_not_hold_is_reported_as_not_held() {
    let node = Node::new(|f| {
        f["devices"][3]["compute_mode_sticks"] = false.into();
        f["devices"][4]["errors"] =
            serde_json::json!({ "nvmlDeviceSetComputeMode": "NO_PERMISSION" });
    });
    let lease = node.lease(
        "lease.jws",
        &node.claims(now(), &[3, 4], OnExpiry::FailOpen),
    );
    let (out, json) = node.gate("enforce", &["--lease", s(&lease)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        node.calls(),
        [
            set(3, "PROHIBITED"),
            (
                "nvmlDeviceSetComputeMode".into(),
                Some(4),
                "PROHIBITED".into(),
                "NO_PERMISSION".into()
            )
        ]
    );
    let g3 = gpu_report(&json, 3);
    assert_eq!(
        (&g3["held"], &g3["compute_mode"]),
        (&Value::Bool(false), &Value::from("default"))
    );
    let g4 = gpu_report(&json, 4);
    assert_eq!(
        (&g4["held"], &g4["error"]),
        (&Value::Bool(false), &Value::from("no_permission"))
    );
    // Read back from the node folder for the next attestation.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(node.dir.join("gate-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["gpus"][3]["held"], false);
}

#[test]
fn enforce_without_a_result_key_is_a_configuration_error() {
    let node = Node::new(|_| {});
    let lib = node.driver.lib_path();
    let out = bin("tppguard-agent")
        .args([
            "gate",
            "--dir",
            s(&node.dir),
            "--nvml-lib",
            s(&lib),
            "--mode",
            "enforce",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs verifier_result_key"), "{err}");
    let config = node.tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "verifier = \"http://127.0.0.1:9\"\ndir = \"{}\"\nnvml_lib = \"{}\"\n\n[gating]\nmode = \"enforce\"\n",
            node.dir.display(),
            lib.display()
        ),
    )
    .unwrap();
    let out = bin("tppguard-agent")
        .args(["run", "--config", s(&config)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verifier-result.pub.pem"));
}

#[test]
fn run_gates_on_expiry_with_the_verifier_down() {
    // A fail-closed lease living a second, lapsing two seconds later; the verifier
    // unreachable: run wakes up at the lapse by itself and gates every GPU.
    let node = Node::new(|_| {});
    let t = now();
    let lease = node.lease(
        "short.jws",
        &short(&node, t, &[], OnExpiry::FailClosed, 1, 2),
    );
    let (_, json) = node.gate("enforce", &["--lease", s(&lease)]);
    assert_ne!(json["report"]["state"], "lapsed_fail_closed");
    assert!(node.calls().is_empty());
    let config = node.tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "verifier = \"http://127.0.0.1:{}\"\ndir = \"{}\"\nnvml_lib = \"{}\"\nverifier_result_key = \"result.pub.pem\"\nmeasure = false\n\n[gating]\nmode = \"enforce\"\n",
            free_port(),
            node.dir.display(),
            node.driver.lib_path().display()
        ),
    )
    .unwrap();
    let mut child = bin("tppguard-agent")
        .args(["run", "--config", s(&config)])
        .env(CALLS_ENV, node.calls_file())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while node.calls().len() < 8 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&mut child);
    let stderr = {
        use std::io::Read as _;
        let mut text = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    assert_eq!(
        node.calls(),
        (0..8).map(|i| set(i, "PROHIBITED")).collect::<Vec<_>>(),
        "{stderr}"
    );
    assert!(stderr.contains("GPU gated"), "{stderr}");
    assert!(stderr.contains("verifier unavailable"), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(node.dir.join("gate-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["state"], "lapsed_fail_closed");
}

#[test]
fn gate_help_teaches() {
    let out = bin("tppguard-agent")
        .args(["gate", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--lease",
        "--at",
        "observe",
        "enforce",
        "gate-report.json",
        "Exit codes",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
