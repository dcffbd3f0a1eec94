//! The limits of `tppguard-verifier serve` (docs/serve.md, Limits), each against the abuse it
//! answers, on loopback against the real process: the abuse fails and a legitimate node is
//! still served. Timeouts are configured short so the socket tests take seconds; real time is
//! used only where a socket timeout is what is tested.
//!
//! The HTTP calls go through the few helpers below (`challenge_at`, `post_token`, `get_at`),
//! so credentials are added in one place.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::support::{Credentials, RunningVerifier, VerifierSetup, attest_to, bearer, terminate};

/// An answer: status, JSON body (null when not JSON) and `Retry-After`.
struct Answer {
    status: u16,
    text: String,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Answer {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or_default(),
        text,
        retry_after,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// The credentials of the verifier serving at each base URL (tests run in parallel, each with
/// its own verifier): the helpers below send the node token or the operator token.
static CREDENTIALS: std::sync::Mutex<Vec<(String, Credentials)>> =
    std::sync::Mutex::new(Vec::new());

/// Records `running`'s credentials for the helpers.
fn register(running: &RunningVerifier) {
    CREDENTIALS
        .lock()
        .expect("credentials")
        .push((running.base.clone(), running.credentials.clone()));
}

/// The credentials of the verifier at `base`.
fn credentials(base: &str) -> Credentials {
    let all = CREDENTIALS.lock().expect("credentials");
    all.iter()
        .find(|(b, _)| b == base)
        .map(|(_, c)| c.clone())
        .expect("a registered verifier")
}

/// `POST /v1/challenge`.
fn challenge_at(base: &str) -> Answer {
    answer(
        agent()
            .post(format!("{base}/v1/challenge"))
            .header("Authorization", bearer(&credentials(base).node))
            .send_empty()
            .expect("POST challenge"),
    )
}

/// `POST /v1/attestations` with `body`.
fn post_token(base: &str, body: &str) -> Answer {
    answer(
        agent()
            .post(format!("{base}/v1/attestations"))
            .header("Authorization", bearer(&credentials(base).node))
            .header("Content-Type", "application/jose")
            .send(body)
            .expect("POST attestation"),
    )
}

/// `GET path`.
fn get_at(base: &str, path: &str) -> Answer {
    answer(
        agent()
            .get(format!("{base}{path}"))
            .header("Authorization", bearer(&credentials(base).operator))
            .call()
            .expect("GET"),
    )
}

/// A nonce, which must be granted.
fn nonce(base: &str) -> String {
    let a = challenge_at(base);
    assert_eq!(a.status, 200, "challenge: {}", a.body);
    a.body["nonce"].as_str().expect("nonce").to_owned()
}

/// The node's attestation answering `nonce`.
fn token(setup: &VerifierSetup, nonce: &str) -> String {
    let out = setup.tmp.path().join("attestation.jws");
    attest_to(&setup.node, None, nonce, "fra-1", &out)
}

/// A legitimate node's round: challenge, attest, post; the answer.
fn attest(setup: &VerifierSetup, base: &str) -> Answer {
    let nonce = nonce(base);
    post_token(base, &token(setup, &nonce))
}

/// A verifier on loopback with `lines` added to its configuration.
fn started(lines: &str) -> (VerifierSetup, RunningVerifier) {
    let setup = VerifierSetup::new("127.0.0.1:0");
    setup.configure(lines);
    let running = setup.start();
    register(&running);
    (setup, running)
}

fn addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .expect("ADDR")
}

/// Raises this process's soft open-file limit to at least `want` (up to the hard limit) with
/// util-linux `prlimit`; the verifier started afterwards inherits it.
fn raise_nofile(want: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let soft: u64 = soft.parse().unwrap_or(u64::MAX);
    if soft >= want {
        return;
    }
    let hard_n: u64 = hard.parse().unwrap_or(u64::MAX);
    let target = want.min(hard_n);
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={target}:{hard}"),
        ])
        .status()
        .expect("prlimit runs (util-linux)");
    assert!(status.success(), "prlimit --nofile={target}");
    assert!(
        target >= want,
        "the hard open-file limit {hard} is below the {want} this test needs"
    );
}

/// A connection that sent the first half of a request head.
fn half_head(to: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect");
    s.write_all(b"POST /v1/attestations HTTP/1.1\r\nHost: verifier\r\nContent-Ty")
        .expect("half a head");
    s
}

/// A connection that sent a whole head and 10 bytes of a 100,000-byte body, without a
/// credential (refused with 401 before its body is read).
fn half_body(to: SocketAddr) -> TcpStream {
    half_body_as(to, None)
}

/// [`half_body`], sending `token` as a bearer credential when given: an authenticated node
/// that stalls mid-body, holding its request in flight.
fn half_body_as(to: SocketAddr, token: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!(
            "POST /v1/attestations HTTP/1.1\r\nHost: verifier\r\n{auth}Content-Type: \
             application/jose\r\nContent-Length: 100000\r\n\r\neyJhbGciOi"
        )
        .as_bytes(),
    )
    .expect("half a body");
    s
}

/// Whether the server closed `s` within `wait` (EOF or reset; an answer followed by the
/// close counts).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// 2,000 idle connections and some half-sent requests against `max_connections = 256`: the
/// header-read and idle timeouts close them, the cap frees, and a node's challenge and
/// attestation are answered within seconds.
#[test]
fn idle_connections_and_half_sent_requests_do_not_stop_a_node() {
    raise_nofile(4096);
    let (setup, running) = started(
        "max_connections = 256\nheader_read_timeout_s = 1\nidle_timeout_s = 1\n\
         request_timeout_s = 2\nnode_rate_per_minute = 6000",
    );
    let to = addr(&running.base);
    let base = running.base.as_str();
    // The node asks in the middle of the flood, once 1,200 connections were opened and the
    // cap is full.
    let node_round = || {
        let asked = Instant::now();
        let nonce = nonce(base);
        let challenge_waited = asked.elapsed();
        let token = token(&setup, &nonce);
        let asked = Instant::now();
        let answer = post_token(base, &token);
        (challenge_waited, answer, asked.elapsed())
    };
    let (mut attackers, (challenge_waited, a, post_waited)) = std::thread::scope(|scope| {
        let mut attackers: Vec<TcpStream> = Vec::new();
        let mut node = None;
        for i in 0..2000 {
            if i == 1200 {
                node = Some(scope.spawn(node_round));
            }
            attackers.push(match i % 100 {
                0 => half_head(to),
                1 => half_body(to),
                _ => TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect"),
            });
        }
        let node = node.expect("the node ran").join().expect("node thread");
        (attackers, node)
    });
    // Seconds, not minutes: the timeouts free the cap.
    assert_eq!(a.status, 200, "{}", a.body);
    for waited in [challenge_waited, post_waited] {
        assert!(
            waited < Duration::from_secs(8),
            "the node waited {waited:?}"
        );
    }
    // The server closed the attackers' connections (sampled), idle and half-sent alike.
    for (i, s) in attackers.iter_mut().enumerate().step_by(97) {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "attacker connection {i} is still open"
        );
    }
}

/// SIGTERM while idle, half-sent-head and half-sent-body connections are open and their
/// timeouts are long: the process exits 0 within `shutdown_grace_s`.
#[test]
fn shutdown_ends_within_the_grace_while_half_sent_requests_are_open() {
    let (setup, mut running) = started(
        "shutdown_grace_s = 2\nheader_read_timeout_s = 60\nidle_timeout_s = 60\n\
         request_timeout_s = 60",
    );
    // Served before the stalls, as a node is.
    assert_eq!(attest(&setup, &running.base).status, 200);
    let to = addr(&running.base);
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(half_head(to));
        open.push(half_body(to));
        open.push(TcpStream::connect(to).expect("connect"));
    }
    // The half-sent bodies are in flight once the verifier answers anything else.
    assert_eq!(get_at(&running.base, "/healthz").status, 200);
    let asked = Instant::now();
    let code = terminate(&mut running.child);
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "exit code");
    assert!(
        took < Duration::from_millis(3500),
        "stopping took {took:?} with shutdown_grace_s = 2"
    );
}

/// Replaying a token the node signed long ago, 100 times, never counts against the node's
/// `node_rate_per_minute`: its next fresh attestation is accepted. Fresh ones still count.
#[test]
fn a_replayed_old_token_does_not_lock_out_its_node() {
    let (setup, running) = started("node_rate_per_minute = 2");
    let base = &running.base;
    let old = token(&setup, &nonce(base));
    assert_eq!(post_token(base, &old).status, 200);
    for _ in 0..100 {
        let a = post_token(base, &old);
        assert_eq!((a.status, a.code()), (409, "nonce_replayed"), "{}", a.body);
    }
    let fresh = attest(&setup, base);
    assert_eq!(fresh.status, 200, "the node is served: {}", fresh.body);
    // Fresh attestations past the limit are refused with a time to retry (within a few
    // tries: a minute may turn between two).
    let limited = (0..5)
        .map(|_| attest(&setup, base))
        .find(|a| a.status == 429)
        .expect("a fresh attestation over node_rate_per_minute is refused");
    assert_eq!(limited.code(), "rate_limited", "{}", limited.body);
    assert!(matches!(limited.retry_after, Some(1..=60)));
}

/// Current size of the SQLite database and its write-ahead log.
fn database_bytes(dir: &Path) -> u64 {
    ["tppguard-verifier.db", "tppguard-verifier.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// 64 distinct garbage bodies of almost 1 MiB each: every one is rejected and recorded (its
/// SHA-256, a 256-byte prefix and the reason), the database grows by a bounded amount (not the
/// 64 MiB sent), the metrics count the bytes, and the node is still served.
#[test]
fn a_flood_of_large_garbage_bodies_grows_the_database_by_a_bounded_amount() {
    const N: u64 = 64;
    const BODY: usize = (1 << 20) - 64;
    let (setup, running) = started("node_rate_per_minute = 6000");
    let base = &running.base;
    assert_eq!(attest(&setup, base).status, 200);
    let before = database_bytes(setup.tmp.path());
    for i in 0..N {
        let mut body = format!("garbage-{i}-");
        body.push_str(&"A".repeat(BODY - body.len()));
        let a = post_token(base, &body);
        assert_eq!(a.status, 422, "{}", a.body);
    }
    let grown = database_bytes(setup.tmp.path()).saturating_sub(before);
    // Per rejection a row of well under 1 KiB; the write-ahead log adds pages per commit
    // until its checkpoint (about 4 MiB).
    assert!(
        grown < N * 16 * 1024 + (4 << 20),
        "the database grew {grown} bytes for {N} rejected bodies"
    );
    let metrics = get_at(base, "/metrics");
    assert_eq!(metrics.status, 200);
    let counted: u64 = metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix("tppguard_verifier_rejected_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rejected_bytes_total");
    assert!(counted >= N * BODY as u64, "{counted}");
    assert_eq!(attest(&setup, base).status, 200, "the node is still served");

    // A stranger without a credential is refused before its body is read or anything is
    // recorded: the rejected rows stay as they were.
    let rows_before = rejected_rows(setup.tmp.path());
    for i in 0..N {
        let mut body = format!("stranger-{i}-");
        body.push_str(&"A".repeat(BODY - body.len()));
        let sent = agent()
            .post(format!("{base}/v1/attestations"))
            .header("Content-Type", "application/jose")
            .send(body.as_bytes());
        // The 401 is answered without reading the body, and the connection closed: the
        // client sees the answer, or a broken pipe while it is still sending.
        match sent {
            Ok(resp) => {
                let a = answer(resp);
                assert_eq!((a.status, a.code()), (401, "unauthenticated"), "{}", a.body);
            }
            Err(ureq::Error::Io(e)) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "{e}"
            ),
            Err(e) => panic!("POST without a credential: {e}"),
        }
    }
    assert_eq!(rejected_rows(setup.tmp.path()), rows_before);
    assert_eq!(attest(&setup, base).status, 200, "the node is still served");
}

/// Rejected attestation rows in the verifier's SQLite database (`sqlite3` reads it while the
/// verifier runs: WAL readers do not block).
fn rejected_rows(dir: &Path) -> u64 {
    let db = dir.join("tppguard-verifier.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             print(c.execute(\"SELECT COUNT(*) FROM attestations WHERE outcome = 'rejected'\").fetchone()[0])",
        ])
        .arg(&db)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

/// One client asking for challenges past `challenge_rate_per_minute` gets 429 with a time to
/// retry; past `max_outstanding_challenges` unanswered ones, 503. A node holding a challenge
/// from before the flood still has its attestation accepted.
#[test]
fn challenges_are_limited_per_client_and_in_total() {
    let (setup, running) = started("challenge_rate_per_minute = 4\nmax_outstanding_challenges = 3");
    let base = &running.base;
    let held = nonce(base);
    let answers: Vec<Answer> = (0..12).map(|_| challenge_at(base)).collect();
    let full = answers
        .iter()
        .find(|a| a.status == 503)
        .expect("503 once 3 challenges are outstanding");
    assert_eq!(
        full.code(),
        "too_many_outstanding_challenges",
        "{}",
        full.body
    );
    assert!(full.retry_after.is_some_and(|s| s >= 1));
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("429 past 4 challenges a minute");
    assert_eq!(limited.code(), "challenge_rate_limited", "{}", limited.body);
    assert!(
        limited.body["sentence"]
            .as_str()
            .is_some_and(|s| s.contains("challenge_rate_per_minute")),
        "{}",
        limited.body
    );
    assert!(matches!(limited.retry_after, Some(1..=60)));
    let a = post_token(base, &token(&setup, &held));
    assert_eq!(a.status, 200, "the node is served: {}", a.body);
}

/// Requests past `max_in_flight` are answered 503 `overloaded` with `Retry-After`, at once;
/// once the stalled requests go, a node is served.
#[test]
fn requests_past_max_in_flight_are_answered_overloaded() {
    let (setup, running) = started("max_in_flight = 2\nrequest_timeout_s = 60");
    let base = &running.base;
    let to = addr(base);
    // Authenticated nodes stalling mid-body: a stranger's half body is refused at once (401).
    let node = credentials(base).node;
    let stalled = [half_body_as(to, Some(&node)), half_body_as(to, Some(&node))];
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let a = get_at(base, "/healthz");
        if a.status == 503 {
            break a;
        }
        assert!(Instant::now() < deadline, "never overloaded");
    };
    assert_eq!(refused.code(), "overloaded", "{}", refused.body);
    assert_eq!(refused.retry_after, Some(1));
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_at(base, "/healthz").status != 200 {
        assert!(Instant::now() < deadline, "still overloaded");
    }
    assert_eq!(attest(&setup, base).status, 200, "the node is served");
}

/// With `max_concurrent_verifications = 1`, 8 clients posting bodies that fail verification
/// all at once are each answered (422, or 503 `overloaded` when the one slot stayed busy past
/// the short wait), and a node posting among them is accepted.
#[test]
fn verifications_are_bounded_and_a_node_is_served_among_a_flood() {
    let (setup, running) = started(
        "max_concurrent_verifications = 1
node_rate_per_minute = 6000",
    );
    let base = running.base.clone();
    let nonce = nonce(&base);
    let good = token(&setup, &nonce);
    let flood: Vec<_> = (0..8)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|i| {
                        let a = post_token(&base, &format!("eyJ{t}.{i}.{}", "x".repeat(60_000)));
                        (a.status, a.code().to_owned())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let a = post_token(&base, &good);
    assert_eq!(a.status, 200, "the node is served: {}", a.body);
    for answers in flood {
        for (status, code) in answers.join().expect("flood thread") {
            assert!(
                status == 422 || (status, code.as_str()) == (503, "overloaded"),
                "{status} {code}"
            );
        }
    }
}

/// Over HTTPS, with `handshake_timeout_s = 1`: 40 connections that never say hello are closed
/// within the timeout, and a node pushes (`tppguard-agent push --ca`) meanwhile.
#[test]
fn silent_tls_peers_are_closed_after_the_handshake_timeout() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    crate::serve_tls::server_pki(setup.tmp.path(), "tls");
    setup.configure(
        "tls_cert = \"tls-server.pem\"\ntls_key = \"tls-server.key\"\nhandshake_timeout_s = 1",
    );
    let running = setup.start();
    let token_file = running.credentials.node_file.clone();
    let to = addr(&running.base);
    let mut silent: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(to).expect("connect"))
        .collect();
    let opened = Instant::now();
    let (base, node, ca) = (
        running.base.clone(),
        setup.node.clone(),
        setup.tmp.path().join("tls-ca.pem"),
    );
    let push = std::thread::spawn(move || {
        crate::support::run(
            "tppguard-agent",
            &[
                "push",
                "--verifier",
                &base,
                "--dir",
                crate::support::s(&node),
                "--simulate",
                "--site",
                "fra-1",
                "--ca",
                crate::support::s(&ca),
                "--token-file",
                crate::support::s(&token_file),
                "--json",
            ],
        )
    });
    // Closed about a second after they opened (3 s allows for a loaded machine).
    let deadline = opened + Duration::from_secs(3);
    for (i, s) in silent.iter_mut().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        assert!(
            closed_within(s, left),
            "silent connection {i} is still open"
        );
    }
    let out = push.join().expect("push thread");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "push: {}",
        crate::support::stderr(&out)
    );
}

/// `token` with its header's `x5c` replaced by `x5c`, signed again with the node's key.
fn with_x5c(node: &Path, token: &str, x5c: Vec<Vec<u8>>) -> String {
    let pem = std::fs::read_to_string(node.join("node.key")).expect("node.key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).expect("PEM body");
    let key = tppguard_proto::jws::SigningKey::from_pkcs8_any(&der).expect("node key");
    let decoded = tppguard_proto::jws::decode(token).expect("token");
    let mut header = decoded.header().clone();
    header.x5c = x5c;
    let payload = crate::support::jws_payload(token);
    let payload = serde_json::to_vec(&payload).expect("claims JSON");
    tppguard_proto::jws::sign(&header, &payload, &key).expect("sign")
}

/// An `x5c` longer than the pinned operator root can use (`pki init` makes it pathlen 0: the
/// leaf and the root) is refused as `chain_too_long` before chain building; the node's own
/// token, answering the same challenge, is accepted.
#[test]
fn an_x5c_longer_than_the_roots_allow_is_refused_before_chain_building() {
    let (setup, running) = started("");
    let base = &running.base;
    let nonce = nonce(base);
    let good = token(&setup, &nonce);
    let mut x5c = tppguard_proto::jws::decode(&good)
        .expect("token")
        .header()
        .x5c
        .clone();
    let leaf = x5c[0].clone();
    while x5c.len() < 3 {
        x5c.push(leaf.clone());
    }
    let long = with_x5c(&setup.node, &good, x5c);
    let a = post_token(base, &long);
    assert_eq!((a.status, a.code()), (422, "chain_too_long"), "{}", a.body);
    assert!(
        a.body["sentence"]
            .as_str()
            .is_some_and(|s| s.contains("more than the 2 the pinned roots allow")),
        "{}",
        a.body
    );
    let a = post_token(base, &good);
    assert_eq!(a.status, 200, "the node is served: {}", a.body);
}

/// A node credential sending garbage at line rate: every body is answered 422, but only
/// `challenge_rate_per_minute` rejections a minute are recorded for that credential and
/// address; the rest are counted and not written. The node's own attestation still passes.
#[test]
fn rejections_recorded_per_client_are_bounded() {
    let (setup, running) = started("challenge_rate_per_minute = 4\nnode_rate_per_minute = 6000");
    let base = &running.base;
    let before = rejected_rows(setup.tmp.path());
    for i in 0..10 {
        let a = post_token(base, &format!("eyJnot.a.token-{i}"));
        assert_eq!(a.status, 422, "{}", a.body);
    }
    let recorded = rejected_rows(setup.tmp.path()) - before;
    // The minute may turn during the loop: at most two windows' worth.
    assert!(
        (4..=8).contains(&recorded),
        "{recorded} rejections recorded"
    );
    let metrics = get_at(base, "/metrics");
    assert!(
        metrics
            .text
            .contains("tppguard_verifier_refused_total{code=\"rejection_not_recorded\"}"),
        "{}",
        metrics.text
    );
    let nonce = nonce(base);
    let a = post_token(base, &token(&setup, &nonce));
    assert_eq!(a.status, 200, "the node is served: {}", a.body);
}
