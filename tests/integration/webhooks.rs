//! Webhooks (issue 15): the real `serve` delivers signed events from its outbox to receivers
//! on loopback: once per event, retried with backoff, again with the same id after a kill
//! mid-delivery, and a receiver that always fails holds up nothing else.
//!
//! The finding subscribed to is `duplicate_device` (two nodes of the simulated DGX H100 report
//! the same eight GPUs), producible without shipments; the shipment findings go through the
//! same path.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tppguard_proto::jws::{self, VerifyingKey};

use crate::support::{RunningVerifier, VerifierSetup, agent_push, bearer, http, issue_token};

const LICENCE: &str = "EXAMPLE-DE-2026-0142";

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 after the first `n` requests, which get 500.
    FailFirst(usize),
    /// 500 to everything.
    AlwaysFail,
    /// Records the request and never answers.
    Stall,
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    content_type: String,
    body: String,
    /// Whether it was answered 2xx.
    accepted: bool,
}

/// A tiny HTTP receiver on 127.0.0.1:0 that records every request.
struct Receiver {
    url: String,
    mode: Arc<Mutex<Mode>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let mode = Arc::new(Mutex::new(mode));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (m, g) = (Arc::clone(&mode), Arc::clone(&got));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, g) = (Arc::clone(&m), Arc::clone(&g));
                std::thread::spawn(move || serve_one(stream, &m, &g));
            }
        });
        Self { url, mode, got }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The ids answered 2xx, with how many times each was.
    fn accepted(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.got().iter().filter(|r| r.accepted) {
            *out.entry(r.event_id.clone()).or_insert(0) += 1;
        }
        out
    }
}

fn serve_one(stream: TcpStream, mode: &Mutex<Mode>, got: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream);
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let current = {
        let mut m = mode.lock().unwrap();
        let current = *m;
        if let Mode::FailFirst(n) = *m
            && n > 0
        {
            *m = Mode::FailFirst(n - 1);
        }
        current
    };
    let accepted = current == Mode::FailFirst(0);
    got.lock().unwrap().push(Received {
        event_id: headers
            .get("tppguard-event-id")
            .cloned()
            .unwrap_or_default(),
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
        accepted,
    });
    let mut stream = reader.into_inner();
    match current {
        Mode::Stall => std::thread::sleep(Duration::from_secs(60)),
        _ if accepted => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
        _ => {
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope",
            );
        }
    }
}

/// `[[webhooks]]` lines for `receiver` named `name`, subscribed to duplicate_device findings
/// of the example licence, with short timeouts and backoffs.
fn webhook(name: &str, receiver: &Receiver) -> String {
    format!(
        "[[webhooks]]\nname = \"{name}\"\nurl = \"{}\"\nlicences = [\"{LICENCE}\"]\n\
         codes = [\"duplicate_device\"]\ntimeout_s = 2\nbackoff_s = 1\nbackoff_max_s = 1\n\
         max_attempts = 50\n",
        receiver.url
    )
}

fn push(v: &RunningVerifier, node: &Path) {
    let out = agent_push(&v.base, &v.credentials.node_file, node);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits up to `limit` for `done`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The verifier's result key, from `pki/verifier/verifier-result.pub.pem`.
fn result_key(setup: &VerifierSetup) -> VerifyingKey {
    let pem = std::fs::read_to_string(
        setup
            .tmp
            .path()
            .join("pki/verifier/verifier-result.pub.pem"),
    )
    .expect("result key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    VerifyingKey::from_spki_der(&STANDARD.decode(body).expect("base64")).expect("SPKI")
}

/// `GET /v1/webhooks/outbox` as `admin`.
fn outbox(v: &RunningVerifier, admin: &str) -> Vec<Value> {
    let mut resp = http()
        .get(format!("{}/v1/webhooks/outbox?limit=1000", v.base))
        .header("Authorization", bearer(admin))
        .call()
        .expect("GET outbox");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    body["events"].as_array().expect("events").clone()
}

#[test]
fn webhook_events_are_signed_delivered_once_and_retried_and_a_failing_receiver_blocks_nothing() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let second = setup.add_node("gpu-node-02");
    let good = Receiver::start(Mode::FailFirst(2));
    let broken = Receiver::start(Mode::AlwaysFail);
    setup.configure(&format!(
        "webhook_scan_s = 1\n{}{}",
        webhook("vendor-a", &good),
        webhook("broken", &broken)
    ));
    let admin = issue_token(&setup.config, "admin", "test-admin");
    let verifier = setup.start();
    push(&verifier, &setup.node);
    push(&verifier, &second);
    // The same duplicates seen again on every attestation: no new event.
    push(&verifier, &setup.node);

    wait_for(Duration::from_secs(60), "eight events delivered", || {
        good.accepted().len() == 8
    });
    // A moment more for anything duplicated to show (scans run every second).
    std::thread::sleep(Duration::from_secs(3));
    let accepted = good.accepted();
    assert_eq!(
        accepted.len(),
        8,
        "one event per duplicated GPU: {accepted:?}"
    );
    assert!(
        accepted.values().all(|n| *n == 1),
        "each delivered once: {accepted:?}"
    );
    let got = good.got();
    let ids: BTreeSet<&str> = got.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), 8, "no other event id ever sent");
    assert_eq!(
        got.iter().filter(|r| !r.accepted).count(),
        2,
        "the two failures were retried"
    );
    // Each payload is a signed event under the verifier's result key, naming its id.
    let key = result_key(&setup);
    for r in &got {
        assert_eq!(r.content_type, "application/jose");
        let verified = jws::decode(&r.body)
            .expect("JWS")
            .verify(&key)
            .expect("signed by the verifier's result key");
        assert_eq!(verified.header().typ.as_deref(), Some("tppguard-event+jwt"));
        let claims: Value = serde_json::from_slice(verified.payload()).expect("claims");
        assert_eq!(claims["jti"], r.event_id.as_str());
        assert_eq!(claims["tppguard.webhook"], "vendor-a");
        let event = &claims["tppguard.event"];
        assert_eq!(event["code"], "duplicate_device");
        assert_eq!(event["licence"], LICENCE);
        assert!(event["figures"]["seen_in"].is_array(), "{event}");
    }

    // The broken receiver's events wait with their error; the API answers meanwhile.
    let rows = outbox(&verifier, &admin);
    let broken_rows: Vec<&Value> = rows.iter().filter(|e| e["webhook"] == "broken").collect();
    assert_eq!(broken_rows.len(), 8, "{rows:?}");
    assert!(broken_rows.iter().all(|e| {
        e["delivered_at"].is_null()
            && e["last_error"]
                .as_str()
                .is_some_and(|x| x.contains("HTTP 500"))
    }));
    assert!(!broken.got().is_empty());
    let good_rows = rows.iter().filter(|e| e["webhook"] == "vendor-a");
    assert!(
        good_rows.clone().all(|e| e["delivered_at"].is_i64()),
        "{rows:?}"
    );
    let started = Instant::now();
    let (status, _) = verifier.get_json("/v1/fleet");
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The outbox is an admin's: an operator is refused.
    let (status, _) = verifier.get_json("/v1/webhooks/outbox");
    assert_eq!(status, 403);
}

#[test]
fn an_event_cut_off_by_a_kill_is_delivered_again_with_the_same_id_after_a_restart() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let second = setup.add_node("gpu-node-02");
    let receiver = Receiver::start(Mode::Stall);
    setup.configure(&webhook("vendor-a", &receiver));
    let mut verifier = setup.start();
    push(&verifier, &setup.node);
    push(&verifier, &second);
    // The receiver has the first event, the verifier has not marked it: kill it now.
    wait_for(Duration::from_secs(30), "a delivery under way", || {
        !receiver.got().is_empty()
    });
    verifier.child.kill().expect("kill");
    verifier.child.wait().expect("wait");
    let cut = receiver.got()[0].event_id.clone();
    receiver.set(Mode::FailFirst(0));

    let _restarted = setup.start();
    wait_for(Duration::from_secs(60), "eight events delivered", || {
        receiver.accepted().len() == 8
    });
    std::thread::sleep(Duration::from_secs(2));
    let got = receiver.got();
    let sent_for_cut = got.iter().filter(|r| r.event_id == cut).count();
    assert!(
        sent_for_cut >= 2,
        "the cut event was sent again: {sent_for_cut}"
    );
    // The receiver's deduplicated set: exactly the eight events, each accepted once.
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 8);
    assert_eq!(accepted.get(&cut), Some(&1));
    let ids: BTreeSet<&str> = got.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), 8, "no new id after the restart");
    // The bodies sent for one id are the same signed event.
    let bodies: BTreeSet<&str> = got
        .iter()
        .filter(|r| r.event_id == cut)
        .map(|r| r.body.as_str())
        .collect();
    assert_eq!(bodies.len(), 1);
}

/// `GET path` with `token`: status and JSON body.
fn get_with(base: &str, token: &str, path: &str) -> (u16, Value) {
    let mut resp = http()
        .get(format!("{base}{path}"))
        .header("Authorization", bearer(token))
        .call()
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// Issue 15's acceptance: a vendor ships the DGX H100's eight GPUs to site fra-1 under the
/// example licence; they turn up in a node whose certificate puts it at muc-9 (its agent
/// still claims fra-1). Each GPU is `diverted_device`, the vendor sees it, and its receiver
/// gets one event per GPU exactly once, although the verifier is killed mid-delivery and
/// restarted and the node keeps attesting. (The node is simulated, so its GPUs are also
/// `unaccounted_device`: a simulated inventory proves no shipped GPU present. The webhook
/// here subscribes to diversions only.)
#[test]
fn a_shipped_gpu_at_another_site_is_diverted_and_its_event_reaches_the_vendor_exactly_once() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let dir = setup.tmp.path();
    let pki = dir.join("pki");
    let moved = dir.join("gpu-node-muc");
    crate::support::issue_node(&pki, &moved, "gpu-node-muc", Some("muc-9"));
    let receiver = Receiver::start(Mode::Stall);
    setup.configure(&format!(
        "[[webhooks]]\nname = \"vendor-a\"\nurl = \"{}\"\nlicences = [\"{LICENCE}\"]\n\
         codes = [\"diverted_device\"]\ntimeout_s = 2\nbackoff_s = 1\nbackoff_max_s = 1\n",
        receiver.url
    ));
    let vendor = {
        let out = crate::support::ok(
            "tppguard-verifier",
            &[
                "token",
                "issue",
                "--config",
                crate::support::s(&setup.config),
                "--role",
                "vendor",
                "--name",
                "vendor-a",
                "--licence",
                LICENCE,
            ],
        );
        String::from_utf8(out.stdout)
            .expect("token")
            .trim()
            .to_owned()
    };
    let shipment = dir.join("shipment.jws");
    crate::support::ok(
        "tppguard-verifier",
        &[
            "shipment",
            "sign",
            "--dir",
            crate::support::s(&pki.join("vendor")),
            "--out",
            crate::support::s(&shipment),
            crate::support::s(&crate::support::workspace_root().join("examples/shipment.toml")),
        ],
    );
    let mut verifier = setup.start();
    // The node was attesting before the vendor filed its shipment (so no GPU of it was ever
    // unaccounted); the shipment arrives, and the next attestation shows the diversion.
    push(&verifier, &moved);
    let token = std::fs::read_to_string(&shipment).expect("shipment");
    let mut resp = http()
        .post(format!("{}/v1/shipments", verifier.base))
        .header("Authorization", bearer(&vendor))
        .header("Content-Type", "application/jose")
        .send(token.trim())
        .expect("POST");
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    push(&verifier, &moved);
    let (_, findings) = get_with(&verifier.base, &vendor, "/v1/findings");
    let diverted: Vec<&Value> = findings["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "diverted_device")
        .collect();
    assert_eq!(diverted.len(), 8, "{findings}");
    assert!(
        diverted
            .iter()
            .all(|f| f["severity"] == "violation" && f["licence"] == LICENCE)
    );
    assert!(
        diverted[0]["sentence"]
            .as_str()
            .expect("sentence")
            .contains("muc-9"),
        "{}",
        diverted[0]
    );
    // Where the vendor's GPUs are now, and where they have been.
    let (_, held) = get_with(
        &verifier.base,
        &vendor,
        "/v1/shipments/EXAMPLE-SHIP-2026-0007",
    );
    assert_eq!(held["devices"][0]["held_at"][0]["site"], "muc-9", "{held}");

    // The receiver holds the first delivery without answering: kill the verifier then.
    wait_for(Duration::from_secs(30), "a delivery under way", || {
        !receiver.got().is_empty()
    });
    verifier.child.kill().expect("kill");
    verifier.child.wait().expect("wait");
    receiver.set(Mode::FailFirst(0));
    let restarted = setup.start();
    // The node attests again: the same diversion, no new event.
    push(&restarted, &moved);
    let admin = issue_token(&setup.config, "admin", "test-admin");
    let started = Instant::now();
    while receiver.accepted().len() < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "eight events delivered: {:?}\n{:#?}",
            receiver
                .got()
                .iter()
                .map(|r| (&r.event_id, r.accepted))
                .collect::<Vec<_>>(),
            outbox(&restarted, &admin)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let accepted = receiver.accepted();
    assert_eq!(
        accepted.len(),
        8,
        "one event per diverted GPU: {accepted:?}"
    );
    assert!(
        accepted.values().all(|n| *n == 1),
        "each processed once: {accepted:?}"
    );
    let got = receiver.got();
    let ids: BTreeSet<&str> = got.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), 8, "no other event id was ever sent");
    let key = result_key(&setup);
    for r in got.iter().filter(|r| r.accepted) {
        let verified = jws::decode(&r.body)
            .expect("JWS")
            .verify(&key)
            .expect("signed by the verifier's result key");
        let claims: Value = serde_json::from_slice(verified.payload()).expect("claims");
        assert_eq!(claims["tppguard.event"]["code"], "diverted_device");
        assert_eq!(
            claims["tppguard.event"]["shipment"], "EXAMPLE-SHIP-2026-0007",
            "{claims}"
        );
    }
}
