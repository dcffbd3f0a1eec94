//! `tppguard-agent push` and `run` against the real `tppguard-verifier serve` over HTTP on
//! loopback (setup: `support::VerifierSetup`, the same steps as the `serve` tests).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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
    agent_config_simulating(dir, verifier, node, backoff_max_s, "dgx-h100")
}

fn agent_config_simulating(
    dir: &Path,
    verifier: &str,
    node: &Path,
    backoff_max_s: u64,
    fixture: &str,
) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    // The verifier's result key pinned (relative to the file): every answer's EAR is checked.
    std::fs::write(
        &path,
        format!(
            "verifier = \"{verifier}\"\ndir = \"{}\"\nsite = \"fra-1\"\ninterval_s = 1\n\
             backoff_max_s = {backoff_max_s}\nsimulate = \"{fixture}\"\n\
             verifier_result_key = \"pki/verifier/verifier-result.pub.pem\"\ntoken_file = \"{}\"\n",
            s(node),
            // The node token `VerifierSetup::credentials` writes.
            s(&dir.join("node.token"))
        ),
    )
    .expect("agent config");
    path
}

/// Starts `run --config config`, logging to `log`.
fn start_run(config: &Path, log: &Path) -> std::process::Child {
    bin("tppguard-agent")
        .args(["run", "--config", s(config)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("run starts")
}

/// Waits for `count` accepted attestations of the (only) node; its name, or `None`.
fn accepted(v: &crate::support::RunningVerifier, count: usize) -> Option<String> {
    let mut node = String::new();
    let done = eventually(Duration::from_secs(30), || {
        if node.is_empty() {
            node = nodes(v).pop().unwrap_or_default();
        }
        !node.is_empty()
            && history(v, &node)
                .iter()
                .filter(|o| *o == "accepted")
                .count()
                >= count
    });
    done.then_some(node)
}

/// The node's current verdict (`GET /v1/nodes/{node}`).
fn verdict(v: &crate::support::RunningVerifier, node: &str) -> Value {
    let (status, body) = v.get_json(&format!("/v1/nodes/{}", path_segment(node)));
    assert_eq!(status, 200, "{body}");
    body["node"].clone()
}

/// A relay in front of the verifier that keeps every byte the agent sends, so a test can
/// read the token `push` posted off the wire instead of taking either program's word for it.
struct Tap {
    /// The URL to give the agent.
    base: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    /// A relay to `upstream` (`http://HOST:PORT`), on a free loopback port.
    fn new(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let base = format!("http://{}", listener.local_addr().expect("relay address"));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else {
                    break;
                };
                let (Ok(mut from_agent), Ok(mut to_verifier)) =
                    (client.try_clone(), server.try_clone())
                else {
                    break;
                };
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n @ 1..) = from_agent.read(&mut buf) {
                        record.lock().expect("record").extend_from_slice(&buf[..n]);
                        if to_verifier.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_verifier.shutdown(Shutdown::Write);
                });
                let (mut from_verifier, mut to_agent) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_verifier, &mut to_agent);
                    let _ = to_agent.shutdown(Shutdown::Write);
                });
            }
        });
        Self { base, sent }
    }

    /// The body of the last `POST /v1/attestations` that went through: the token sent.
    fn last_attestation(&self) -> String {
        let sent = String::from_utf8_lossy(&self.sent.lock().expect("record")).into_owned();
        let start = sent
            .rfind("POST /v1/attestations ")
            .unwrap_or_else(|| panic!("no attestation was posted: {sent}"));
        let (head, body) = sent[start..]
            .split_once("\r\n\r\n")
            .expect("a request head");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head}"));
        body[..length].to_owned()
    }
}

/// NODE/measurements.json.
fn cached_measurements(node: &Path) -> Value {
    let text = std::fs::read_to_string(node.join("measurements.json")).expect("measurements.json");
    serde_json::from_str(&text).expect("measurements.json is JSON")
}

#[test]
fn push_simulate_is_accepted_and_the_node_is_listed() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let tap = Tap::new(&verifier.base);
    let ear = setup.tmp.path().join("ear.jwt");
    let out = run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            &tap.base,
            "--dir",
            s(&setup.node),
            "--simulate",
            "--site",
            "fra-1",
            "--ear",
            s(&ear),
            "--json",
            "--token-file",
            s(&verifier.credentials.node_file),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    // Simulated evidence: compliant but not hardware-backed, so a warning.
    assert_eq!(answer["status"], "warning", "{answer}");
    // The node is its key: the SHA-256 of its SubjectPublicKeyInfo; the subject is display.
    let node = answer["node"].as_str().expect("node").to_owned();
    assert!(
        node.len() == 64 && node.bytes().all(|b| b.is_ascii_hexdigit()),
        "a node is its key id: {answer}"
    );
    assert_eq!(nodes(&verifier), std::slice::from_ref(&node));
    let (_, listed) = verifier.get_json("/v1/nodes");
    assert_eq!(listed["nodes"][0]["subject"], "CN=gpu-node-01", "{listed}");
    // `--json` keeps the whole answer: the subject, and the SHA-256 of the very token that
    // went over the wire, which the answer and its EAR appraise.
    assert_eq!(answer["subject"], "CN=gpu-node-01", "{answer}");
    let pushed = tap.last_attestation();
    assert_eq!(
        answer["token_sha256"],
        tppguard_verifier::store::sha256_hex(pushed.as_bytes()).as_str(),
        "{answer}"
    );
    assert_eq!(history(&verifier, &node), ["accepted"]);
    let ear = std::fs::read_to_string(&ear).expect("EAR written");
    assert_eq!(ear.trim(), answer["ear"].as_str().expect("ear"));

    // The text form: first that the node is simulated, then the status for the subject and
    // the short node id, then the findings.
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
            "--token-file",
            s(&verifier.credentials.node_file),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("SIMULATED NODE: fixture dgx-h100"),
        "{text}"
    );
    let status_line = format!("\nverifier: warning for CN=gpu-node-01 [{}]\n", &node[..12]);
    assert!(text.contains(&status_line), "{status_line:?} in {text}");
    assert!(text.contains("[unproven] simulated_inventory"), "{text}");
}

#[test]
fn push_believes_an_ear_only_under_the_pinned_result_key() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let pinned = setup
        .tmp
        .path()
        .join("pki/verifier/verifier-result.pub.pem");
    let push = |key: &Path| {
        run(
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
                "--verifier-result-key",
                s(key),
                "--token-file",
                s(&verifier.credentials.node_file),
            ],
        )
    };
    // The genuine key: believed, no warning about an unverified verdict. The real verifier's
    // EAR passes every check (profile, typ, this node, this token, the nonce, the time, the
    // status, the findings' codes as its reasons).
    let out = push(&pinned);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verifier: warning for CN=gpu-node-01"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stderr(&out).contains("no verifier result key"),
        "{}",
        stderr(&out)
    );
    // Another verifier's key (another `pki init`): not trusted, exit 7, the check named.
    let other = setup.tmp.path().join("other-pki");
    crate::support::ok("tppguard-verifier", &["pki", "init", "--dir", s(&other)]);
    let out = push(&other.join("verifier/verifier-result.pub.pem"));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not trusted (ear_signature_invalid)") && err.contains("jws_bad_signature"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no verdict printed");
    // Without a key the verdict is taken, with a warning that says so.
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
            "--token-file",
            s(&verifier.credentials.node_file),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no verifier result key pinned"),
        "{}",
        stderr(&out)
    );
    // A file that is no key: a usage error (2), naming it.
    let out = push(&setup.node.join("node.csr"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("node.csr"), "{}", stderr(&out));
}

#[test]
fn push_sends_the_bearer_token_and_never_prints_it() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let tap = Tap::new(&verifier.base);
    // The real node token, rewritten world-readable to draw the warning.
    let token = verifier.credentials.node_file.clone();
    let secret = verifier.credentials.node.clone();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("token file mode");
    let out = run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            &tap.base,
            "--dir",
            s(&setup.node),
            "--simulate",
            "--site",
            "fra-1",
            "--token-file",
            s(&token),
            "--log",
            "trace",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sent = String::from_utf8_lossy(&tap.sent.lock().expect("record")).into_owned();
    assert_eq!(
        sent.matches(&format!("authorization: Bearer {secret}\r\n"))
            .count()
            + sent
                .matches(&format!("Authorization: Bearer {secret}\r\n"))
                .count(),
        2,
        "the challenge and the attestation both carry it: {sent}"
    );
    // Written with mode 0644 by the test: a warning; the token itself never appears, even in
    // trace logs.
    let err = stderr(&out);
    assert!(err.contains("readable by other users"), "{err}");
    assert!(!err.contains(&secret), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret));
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
    // Each delivery names the node by subject and short id, as `push` does.
    let delivered = format!("subject=CN=gpu-node-01 node={}", &node[..12]);
    assert!(log.contains(&delivered), "{delivered:?} in {log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colours when not a terminal: {log}"
    );
    // The pinned key checked every answer: none refused, no warning about unverified ones.
    assert!(log.contains("result_key_pinned=true"), "{log}");
    assert!(
        !log.contains("not trusted") && !log.contains("no verifier result key"),
        "{log}"
    );
}

#[test]
fn run_retries_with_backoff_until_the_verifier_comes_up() {
    let port = free_port();
    let setup = VerifierSetup::new(&format!("127.0.0.1:{port}"));
    // The node token, issued before the verifier first starts.
    setup.credentials();
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

#[test]
fn run_measures_before_its_first_push_and_attests_measured() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    assert!(!setup.node.join("measurements.json").exists());
    let config = agent_config(setup.tmp.path(), &verifier.base, &setup.node, 2);
    let log = setup.tmp.path().join("agent.log");
    let mut agent = start_run(&config, &log);
    let node = accepted(&verifier, 2);
    let code = terminate(&mut agent);
    let log = std::fs::read_to_string(&log).expect("log");
    let node = node.unwrap_or_else(|| panic!("fewer than two accepted pushes: {log}"));
    assert_eq!(code, Some(0), "{log}");

    // Measured once, before the first push, as `measure --dir` would have (the measurement
    // cache's schema; `tppguard-measure/v1` is `measure --json`'s report).
    let cache = cached_measurements(&setup.node);
    assert_eq!(cache["schema"], "tppguard-measurements/v1", "{cache}");
    let gpus = cache["gpus"].as_object().expect("gpus");
    assert_eq!(gpus.len(), 8, "{cache}");
    for m in gpus.values() {
        assert_eq!(m["method"], "simulated", "{m}");
        assert!(!m["results"].as_array().expect("results").is_empty(), "{m}");
    }
    assert_eq!(log.matches("GPU measured").count(), 8, "{log}");
    assert!(log.contains("median_tops=FP8="), "{log}");
    let first_measured = log.find("GPU measured").expect("measured");
    let first_push = log.find("attestation delivered").expect("delivered");
    assert!(first_measured < first_push, "{log}");

    // The attestation asks for `measured`; a simulated measurement never backs it.
    let n = verdict(&verifier, &node);
    assert_eq!(n["evidence_tier"], "measured", "{n}");
    assert_eq!(n["effective_evidence_tier"], "declared", "{n}");
}

#[test]
fn run_keeps_pushing_when_a_gpu_is_busy_and_retries_later() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let config = agent_config_simulating(
        setup.tmp.path(),
        &verifier.base,
        &setup.node,
        2,
        "busy-h100",
    );
    let log = setup.tmp.path().join("agent.log");
    let mut agent = start_run(&config, &log);
    let node = accepted(&verifier, 3);
    let code = terminate(&mut agent);
    let log = std::fs::read_to_string(&log).expect("log");
    let node = node.unwrap_or_else(|| panic!("fewer than three accepted pushes: {log}"));
    assert_eq!(code, Some(0), "{log}");

    // GPU 0 is refused and said so, once: the retry waits measure_retry_s (15 min), not a push.
    assert_eq!(log.matches("GPU busy, not measured").count(), 1, "{log}");
    assert!(
        log.contains("attestations stay at evidence tier declared"),
        "{log}"
    );
    // The others are measured and kept.
    let cache = cached_measurements(&setup.node);
    let measured = cache["gpus"].as_object().expect("gpus").len();
    assert!(measured >= 1, "{cache}");
    assert_eq!(log.matches("GPU measured").count(), measured, "{log}");
    // One GPU without a measurement: the node attests `declared`.
    let n = verdict(&verifier, &node);
    assert_eq!(n["evidence_tier"], "declared", "{n}");
}
