//! `cargo bench -p tppguard-verifier --bench reads`: `GET /v1/fleet` (the summary) against the
//! real `tppguard-verifier serve` binary (release) on loopback, with `READS_NODES` nodes
//! loaded, while an ingest stream of real signed attestations runs; then, in the same run, the
//! old path's cost: before issue 12 every read evaluated the whole fleet, so one evaluation of
//! the same fleet is the least such a read took. No harness: figures are printed.
//!
//! The fleet is seeded into the database directly (the rows the verifier's writer records:
//! node id, subject, certified site, claims JSON), not over HTTP: the verifier reads stored
//! claims back without verifying tokens again, so a seeded row is what an attested node
//! leaves. The licence is a real one, signed by a `pki init` licence authority.
//!
//! Environment (all optional):
//! - `READS_NODES` (125000): seeded nodes, eight H100 GPUs each, all at the one licence's site.
//! - `READS_INGEST_NODES` (64): nodes with real keys and certificates attesting during the
//!   measurement, each answering a fresh challenge, from `READS_WRITERS` (16) threads.
//! - `READS_READERS` (4): threads reading the summary in a loop.
//! - `READS_SECS` (20): length of the measured phase.

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark: a failed setup step is a bug to stop on"
)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tppguard_proto::claims::Nonce;
use tppguard_verifier::pki;

use common::{Node, Server, bearer_token, env_or, make_node, unix_now};
use tppguard_verifier::policy::{VerifiedAttestation, bench_support, evaluate};
use tppguard_verifier::store::{NewAttestation, Store};

fn main() {
    let nodes_n: usize = env_or("READS_NODES", 125_000);
    let ingest_n: usize = env_or("READS_INGEST_NODES", 64);
    let writers: usize = env_or("READS_WRITERS", 16);
    let readers: usize = env_or("READS_READERS", 4);
    let secs: u64 = env_or("READS_SECS", 20);

    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let report = pki::init(&dir.path().join("pki"), now).unwrap();
    let (licences, fleet, rule_set, _) = bench_support::synthetic_fleet(nodes_n + ingest_n, 8, 1);

    // The licence: room for every GPU at `site-0`.
    let licences_dir = dir.path().join("licences");
    std::fs::create_dir(&licences_dir).unwrap();
    let toml = dir.path().join("licence.toml");
    let devices = u32::try_from((nodes_n + ingest_n) * 8).unwrap();
    std::fs::write(
        &toml,
        bench_support::licence_toml(0, devices, u64::from(devices) * 16_000),
    )
    .unwrap();
    let signed = Command::new(env!("CARGO_BIN_EXE_tppguard-verifier"))
        .args(["licence", "sign", "--dir"])
        .arg(&report.licence_authority)
        .arg(&toml)
        .arg("--out")
        .arg(licences_dir.join("licence.jws"))
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );

    // The seeded fleet, straight into the database.
    let database = format!("sqlite://{}", dir.path().join("verifier.db").display());
    let started = Instant::now();
    seed(&database, &fleet[..nodes_n], now);
    println!(
        "seeded {nodes_n} nodes x 8 GPUs into SQLite in {:.2?}",
        started.elapsed()
    );
    let ingest: Vec<Node> = fleet[nodes_n..]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            make_node(
                dir.path(),
                &report.operator,
                format!("ingest-{i:05}"),
                now,
                a.claims().clone(),
            )
        })
        .collect();
    let ingest = Arc::new(ingest);

    let config = dir.path().join("verifier.toml");
    std::fs::write(
        &config,
        format!(
            "trust = \"{}\"\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n\
             rule_sets = [\"us-eccn-3a090\"]\nnode_rate_per_minute = 6000\n\
             challenge_rate_per_minute = 10000000\n\
             licences_dir = \"{}\"\n",
            report.trust.display(),
            licences_dir.display()
        ),
    )
    .unwrap();
    // The credentials (issue 12): the readers' operator token and the writers' node token.
    let _ = CREDENTIALS.set((
        bearer_token(&config, "operator", "reads-bench"),
        bearer_token(&config, "node", "reads-bench"),
    ));
    let mut server = Server::start(&config);
    let base = server.base.clone();
    let agent = client();
    let started = Instant::now();
    let first = get_summary(&agent, &base);
    println!(
        "first read (loads {} nodes, evaluates once): {:.2?}",
        first["counts"]["nodes"],
        started.elapsed()
    );
    assert_eq!(first["counts"]["nodes"].as_u64(), Some(nodes_n as u64));

    // The measured phase: writers attest, readers read the summary.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let writer_threads: Vec<_> = (0..writers)
        .map(|_| {
            let (stop, accepted, next, ingest, base) = (
                Arc::clone(&stop),
                Arc::clone(&accepted),
                Arc::clone(&next),
                Arc::clone(&ingest),
                base.clone(),
            );
            std::thread::spawn(move || write_loop(&base, &ingest, &next, &stop, &accepted))
        })
        .collect();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let (stop, latencies, base) = (Arc::clone(&stop), Arc::clone(&latencies), base.clone());
            std::thread::spawn(move || {
                let agent = client();
                let mut local = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let summary = get_summary(&agent, &base);
                    local.push(t.elapsed());
                    assert!(summary["counts"]["nodes"].as_u64() >= Some(nodes_n as u64));
                }
                latencies.lock().unwrap().append(&mut local);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in writer_threads.into_iter().chain(reader_threads) {
        t.join().unwrap();
    }
    let last = get_summary(&agent, &base);
    let rss = server.rss_kib();
    server.stop();

    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    let (p50, p99, max) = (at(0.50), at(0.99), at(1.0));
    println!(
        "measured: {} nodes loaded, {secs} s, {readers} reader threads, {writers} writer threads \
         over {ingest_n} attesting nodes",
        last["counts"]["nodes"]
    );
    println!(
        "  ingest during the reads: {} accepted attestations ({:.1} /s)",
        accepted.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed) as f64 / secs as f64
    );
    println!(
        "  GET /v1/fleet (summary): {} reads, p50 {p50:.2?}  p99 {p99:.2?}  max {max:.2?}",
        lat.len()
    );
    println!("  verifier resident memory: {:.1} MiB", rss as f64 / 1024.0);

    // The old path: every read evaluated the whole fleet (then serialized every node).
    let at_now = unix_now();
    let fleet_now: Vec<VerifiedAttestation> = fleet
        .into_iter()
        .map(|a| a.received_at_time(at_now))
        .collect();
    let _ = evaluate(&licences, &[], &rule_set, &fleet_now, at_now);
    let started = Instant::now();
    let verdict = std::hint::black_box(evaluate(&licences, &[], &rule_set, &fleet_now, at_now));
    let evaluation = started.elapsed();
    println!(
        "old path, one evaluation of the same {}-node fleet (server stopped): {evaluation:.2?}",
        verdict.nodes.len()
    );
    println!(
        "ratio: summary p99 / one evaluation = {:.4} (the evaluation is {:.0}x the p99)",
        p99.as_secs_f64() / evaluation.as_secs_f64(),
        evaluation.as_secs_f64() / p99.as_secs_f64()
    );
    println!(
        "target p99 under 10 ms: {}",
        if p99 < Duration::from_millis(10) {
            "met"
        } else {
            "missed"
        }
    );
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// `Authorization` values: (operator, node).
static CREDENTIALS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

fn credentials() -> &'static (String, String) {
    CREDENTIALS.get().unwrap()
}

fn get_summary(agent: &ureq::Agent, base: &str) -> serde_json::Value {
    let mut resp = agent
        .get(format!("{base}/v1/fleet"))
        .header("Authorization", &credentials().0)
        .call()
        .expect("GET /v1/fleet");
    let body = resp.body_mut().read_to_string().expect("body");
    assert_eq!(resp.status().as_u16(), 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Records one accepted attestation per node, as the verifier's writer does (received now).
fn seed(database: &str, fleet: &[VerifiedAttestation], now: i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::open(database).await.unwrap();
        for chunk in fleet.chunks(5000) {
            let rows: Vec<NewAttestation> = chunk
                .iter()
                .map(|a| {
                    let token = format!("seeded.{}.token", a.node_subject());
                    // Received now, and signed now as far as the claims say.
                    let mut claims = a.claims().clone();
                    claims.iat = now;
                    let claims = String::from_utf8(claims.to_json().unwrap()).unwrap();
                    NewAttestation {
                        iat: now,
                        ..NewAttestation::accepted(a, token, claims, now, None)
                    }
                })
                .collect();
            let mut batch = store.begin_batch().await.unwrap();
            for answer in batch.record_many(&rows).await.unwrap() {
                assert!(answer.unwrap().is_some(), "a seeded row is new");
            }
            batch.commit().await.unwrap();
        }
        store.close().await;
    });
}

/// Challenge, sign, post, until `stop`; counts the accepted.
fn write_loop(
    base: &str,
    nodes: &[Node],
    next: &AtomicUsize,
    stop: &AtomicBool,
    accepted: &AtomicUsize,
) {
    let agent = client();
    while !stop.load(Ordering::Relaxed) {
        let node = &nodes[next.fetch_add(1, Ordering::Relaxed) % nodes.len()];
        let mut resp = agent
            .post(format!("{base}/v1/challenge"))
            .header("Authorization", &credentials().1)
            .send_empty()
            .expect("challenge");
        let body = resp.body_mut().read_to_string().expect("challenge body");
        let v: serde_json::Value = serde_json::from_str(&body).expect("challenge JSON");
        let nonce = Nonce::parse(v["nonce"].as_str().expect("nonce")).expect("nonce");
        let resp = agent
            .post(format!("{base}/v1/attestations"))
            .header("Authorization", &credentials().1)
            .header("Content-Type", "application/jose")
            .send(node.attest(nonce).as_bytes())
            .expect("attestation");
        if resp.status().as_u16() == 200 {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
    }
}
