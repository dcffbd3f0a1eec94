//! `tppguard-agent push` and `run` against the real `tppguard-verifier serve` over HTTP on
//! loopback (setup: `support::VerifierSetup`, the same steps as the `serve` tests).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{VerifierSetup, bin, free_port, path_segment, run, s, stderr, terminate};

/// Polls `check` every 200 ms for up to `limit`; true once it holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The nodes `GET /v1/nodes` lists.
fn nodes(v: &crate::support::RunningVerifier) -> Vec<String> {
    let (status, body) = v.get_json("/v1/nodes");
    assert_eq!(status, 200, "{body}");
    body["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["node"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The outcomes in a node's history, newest first.
fn history(v: &crate::support::RunningVerifier, node: &str) -> Vec<String> {
    let (status, body) = v.get_json(&format!("/v1/nodes/{}/history", path_segment(node)));
    if status != 200 {
        return Vec::new();
    }
    body["attestations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["outcome"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn agent_config(dir: &Path, verifier: &str, node: &Path, backoff_max_s: u64) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "verifier = \"{verifier}\"\ndir = \"{}\"\nsite = \"fra-1\"\ninterval_s = 1\n\
             backoff_max_s = {backoff_max_s}\nsimulate = \"dgx-h100\"\n",
            s(node)
        ),
    )
    .expect("agent config");
    path
}

#[test]
fn push_simulate_is_accepted_and_the_node_is_listed() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let ear = setup.tmp.path().join("ear.jwt");
    let out = run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            &verifier.base,
            "--dir",
            s(&setup.node),
            "--simulate",
            "--site",
            "fra-1",
            "--ear",
            s(&ear),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    // Simulated evidence: compliant but not hardware-backed, so a warning.
    assert_eq!(answer["status"], "warning", "{answer}");
    let node = answer["node"].as_str().expect("node").to_owned();
    assert!(node.contains("gpu-node-01"), "{answer}");
    assert_eq!(nodes(&verifier), std::slice::from_ref(&node));
    assert_eq!(history(&verifier, &node), ["accepted"]);
    let ear = std::fs::read_to_string(&ear).expect("EAR written");
    assert_eq!(ear.trim(), answer["ear"].as_str().expect("ear"));

    // The text form names the status and the findings.
    let out = run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            &verifier.base,
            "--dir",
            s(&setup.node),
            "--simulate",
            "--site",
            "fra-1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("verifier: warning for "), "{text}");
    assert!(text.contains("[warning] "), "{text}");
}

#[test]
fn push_to_a_closed_port_exits_6_with_a_sentence() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            &url,
            "--dir",
            s(&setup.node),
            "--simulate",
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("could not be reached") && err.contains(&url),
        "{err}"
    );
    // A bad URL is a usage error.
    let out = run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            "ftp://x",
            "--dir",
            s(&setup.node),
            "--simulate",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn run_pushes_on_its_interval_and_stops_on_sigterm() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let config = agent_config(setup.tmp.path(), &verifier.base, &setup.node, 2);
    let log = setup.tmp.path().join("agent.log");
    let mut agent = bin("tppguard-agent")
        .args(["run", "--config", s(&config)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run starts");
    let mut node = String::new();
    let pushed_twice = eventually(Duration::from_secs(30), || {
        if node.is_empty() {
            node = nodes(&verifier).pop().unwrap_or_default();
        }
        !node.is_empty()
            && history(&verifier, &node)
                .iter()
                .filter(|o| *o == "accepted")
                .count()
                >= 2
    });
    let code = terminate(&mut agent);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(pushed_twice, "fewer than two accepted pushes: {log}");
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("attestation delivered"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colours when not a terminal: {log}"
    );
}

#[test]
fn run_retries_with_backoff_until_the_verifier_comes_up() {
    let port = free_port();
    let setup = VerifierSetup::new(&format!("127.0.0.1:{port}"));
    let config = agent_config(
        setup.tmp.path(),
        &format!("http://127.0.0.1:{port}"),
        &setup.node,
        2,
    );
    let log = setup.tmp.path().join("agent.log");
    let mut agent = bin("tppguard-agent")
        .args(["run", "--config", s(&config)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run starts");
    // Down: the agent keeps retrying (and keeps running).
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.try_wait().expect("try_wait").is_none(), "run exited");
    let verifier = setup.start();
    let delivered = eventually(Duration::from_secs(30), || !nodes(&verifier).is_empty());
    let code = terminate(&mut agent);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        delivered,
        "nothing delivered after the verifier came up: {log}"
    );
    assert_eq!(code, Some(0), "{log}");
    let retries = log.matches("verifier unavailable").count();
    assert!(retries >= 2, "{retries} retries: {log}");
    assert!(log.contains("retry_in_s"), "{log}");
    assert!(log.contains("attestation delivered"), "{log}");
}
