//! `cargo bench -p tppguard-verifier --bench load`: N simulated 8-GPU nodes attesting to the
//! real `tppguard-verifier serve` binary (release) on loopback, from C client threads on the
//! same machine, then the raw offline rate of the same check on the same tokens. No harness:
//! figures are printed (with `RUST_LOG=tppguard_verifier=debug`, the server also logs every
//! batch it commits: size, and time spent catching up, evaluating and committing).
//!
//! Environment (all optional):
//! - `LOAD_NODES` (1000): node identities, each with its own Ed25519 key and certificate
//!   from the one operator CA (`pki::issue_node`), its own eight H100 identities, all at the
//!   one site of one signed licence with room for every GPU.
//! - `LOAD_CONCURRENCY` (256): client threads; each loops challenge -> sign -> POST. The
//!   verifier commits what arrives together as one batch, so fewer clients means smaller
//!   batches: the rate at 64 is about two thirds of the rate at 256 on a 2-core machine.
//! - `LOAD_SECS` (20): length of the measured phase, after a warm-up in which every node
//!   attests once (so the verifier's fleet holds all N nodes while it is measured).
//! - `LOAD_BACKEND` (`sqlite`): `sqlite` (a file in the temporary folder) or `postgres` (a
//!   throwaway cluster from `initdb`/`pg_ctl` in `$(pg_config --bindir)` or on `PATH`, run as
//!   the `postgres` user via `runuser` when root, `fsync` on like SQLite's
//!   `synchronous=FULL`, so both answer 200 only for what is on disk).
//!
//! Each attestation answers a fresh challenge: the client fetches `POST /v1/challenge`, puts
//! the nonce in the node's claim set, signs it with the node's key (proto's `jws::sign`) and
//! posts it. Challenge and POST latencies are recorded separately; the attestation rate counts
//! accepted POSTs (HTTP 200) only.

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark: a failed setup step is a bug to stop on"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tppguard_proto::claims::Nonce;
use tppguard_verifier::attestation::verify_attestation;
use tppguard_verifier::chain::TrustAnchors;
use tppguard_verifier::pki;

use common::{Node, Server, bearer_token, env_or, make_node, unix_now};
use tppguard_verifier::policy::{bench_support, evaluate};

fn main() {
    let nodes_n: usize = env_or("LOAD_NODES", 1000);
    let concurrency: usize = env_or("LOAD_CONCURRENCY", 256);
    let secs: u64 = env_or("LOAD_SECS", 20);
    let backend: String = env_or("LOAD_BACKEND", "sqlite".to_owned());

    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let pki_dir = dir.path().join("pki");
    let report = pki::init(&pki_dir, now).unwrap();
    let trust = TrustAnchors::from_trust_toml(&report.trust).unwrap();

    // Each node's claims: distinct GPUs (UUIDs and serials from the node's number), at
    // `site-0`, which the one licence below covers.
    let (_, fleet, _, _) = bench_support::synthetic_fleet(nodes_n, 8, 1);
    let started = Instant::now();
    let nodes: Vec<Node> = fleet
        .iter()
        .enumerate()
        .map(|(i, a)| {
            make_node(
                dir.path(),
                &report.operator,
                format!("node-{i:07}"),
                now,
                a.claims().clone(),
            )
        })
        .collect();
    println!(
        "{nodes_n} node identities (Ed25519 keys, certificates from one operator CA) in {:.2?}",
        started.elapsed()
    );
    let licences = dir.path().join("licences");
    std::fs::create_dir(&licences).unwrap();
    let licence_toml = dir.path().join("licence.toml");
    std::fs::write(&licence_toml, licence_text(nodes_n)).unwrap();
    let signed = Command::new(env!("CARGO_BIN_EXE_tppguard-verifier"))
        .args(["licence", "sign", "--dir"])
        .arg(&report.licence_authority)
        .arg(&licence_toml)
        .arg("--out")
        .arg(licences.join("licence.jws"))
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );

    // The database.
    let mut cluster = None;
    let database = match backend.as_str() {
        "sqlite" => format!("sqlite://{}", dir.path().join("verifier.db").display()),
        "postgres" => {
            let c = PgCluster::start(dir.path());
            let url = c.url();
            cluster = Some(c);
            url
        }
        other => panic!("LOAD_BACKEND must be sqlite or postgres, not {other}"),
    };

    // The verifier: the release binary cargo built for this bench.
    let config = dir.path().join("verifier.toml");
    std::fs::write(
        &config,
        format!(
            "trust = \"{}\"\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n\
             rule_sets = [\"us-eccn-3a090\"]\nnode_rate_per_minute = 6000\n\
             challenge_rate_per_minute = 10000000\n\
             licences_dir = \"{}\"\n",
            report.trust.display(),
            licences.display()
        ),
    )
    .unwrap();
    // The nodes' credential (issue 12): one node token, sent with every request.
    let auth = bearer_token(&config, "node", "load-bench");
    let mut server = Server::start(&config);
    let base = server.base.clone();
    println!(
        "verifier: {} ({backend}) at {base}",
        env!("CARGO_BIN_EXE_tppguard-verifier")
    );

    let nodes = Arc::new(nodes);

    // Warm-up: every node attests once, so the fleet holds all of them.
    let warm = run_phase(&base, &auth, &nodes, concurrency, Stop::Count(nodes_n));
    println!(
        "warm-up: {} attestations (one per node) in {:.2?}: {:.0} /s",
        warm.ok,
        warm.elapsed,
        warm.rate()
    );
    assert_eq!(warm.failed, 0, "warm-up failures: {:?}", warm.first_error);

    // The measured phase.
    let mut run = run_phase(
        &base,
        &auth,
        &nodes,
        concurrency,
        Stop::Time(Duration::from_secs(secs)),
    );
    println!(
        "measured: {nodes_n} nodes x 8 GPUs, {concurrency} client threads, {:.1} s, backend {backend}",
        run.elapsed.as_secs_f64()
    );
    println!(
        "  accepted attestations: {} ({} failed{})",
        run.ok,
        run.failed,
        run.first_error
            .as_ref()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    println!("  attestations/s (sustained):       {:>10.1}", run.rate());
    let (c50, c99) = percentiles(&run.challenge_lat);
    let (p50, p99) = percentiles(&run.post_lat);
    let (r50, r99) = percentiles(&run.round_lat);
    println!("  POST /v1/attestations  p50 {p50:>9.2?}  p99 {p99:>9.2?}");
    println!("  POST /v1/challenge     p50 {c50:>9.2?}  p99 {c99:>9.2?}");
    println!("  challenge+sign+POST    p50 {r50:>9.2?}  p99 {r99:>9.2?}");
    println!(
        "  verifier resident memory: {:.1} MiB",
        server.rss_kib() as f64 / 1024.0
    );

    server.stop();
    drop(cluster);

    // The raw offline check on the same tokens, on one thread, with the server stopped:
    // `verify_attestation` per token (as `check` does; the nonce is not checked, as `check`
    // without --nonce), then one `evaluate` of the N-node fleet those tokens make.
    // Every token accepted in this run: the warm-up's (one per node) and the measured phase's.
    let mut tokens = warm.tokens;
    tokens.append(&mut run.tokens);
    let verify_now = unix_now();
    let verify = |tokens: &[String]| -> Vec<tppguard_verifier::policy::VerifiedAttestation> {
        tokens
            .iter()
            .map(|t| verify_attestation(t, &trust, verify_now, None).expect("token verifies"))
            .collect()
    };
    let _ = verify(&tokens[..tokens.len().min(2000)]); // warm the chain memo
    let started = Instant::now();
    let mut verified = verify(&tokens);
    let verify_elapsed = started.elapsed();
    let verify_rate = tokens.len() as f64 / verify_elapsed.as_secs_f64();
    // One latest attestation per node, as the fleet the server evaluates.
    verified.sort_by_key(|a| a.node_id());
    verified.dedup_by_key(|a| a.node_id());
    let rule_set =
        tppguard_proto::ruleset::shipped_rule_set("us-eccn-3a090").expect("shipped rule set");
    let started = Instant::now();
    let verdict = std::hint::black_box(evaluate(&[], &[], &rule_set, &verified, verify_now));
    let eval_elapsed = started.elapsed();
    println!(
        "raw check (1 thread, same {} tokens): verify_attestation {verify_rate:>10.0} /s",
        tokens.len()
    );
    println!(
        "  evaluate of the {}-node fleet: {eval_elapsed:.2?} ({} nodes in the verdict)",
        verified.len(),
        verdict.nodes.len()
    );
    println!(
        "ratio served / raw verify_attestation:  {:.4} (the raw check is {:.0}x the served rate)",
        run.rate() / verify_rate,
        verify_rate / run.rate()
    );
    println!(
        "target 4,000 attestations/s: {}",
        if run.rate() >= 4000.0 {
            "met".to_owned()
        } else {
            format!("missed ({:.1}% of it)", run.rate() / 40.0)
        }
    );
}

/// A licence covering every node at `site-0` (where `synthetic_fleet` puts them with one
/// licence): room for all their GPUs.
fn licence_text(nodes: usize) -> String {
    let devices = u32::try_from(nodes * 8).unwrap();
    bench_support::licence_toml(0, devices, u64::from(devices) * 16_000)
}

enum Stop {
    /// Stop after this many attestations in all.
    Count(usize),
    /// Stop after this long.
    Time(Duration),
}

#[derive(Default)]
struct Phase {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    elapsed: Duration,
    challenge_lat: Vec<Duration>,
    post_lat: Vec<Duration>,
    round_lat: Vec<Duration>,
    tokens: Vec<String>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

fn run_phase(
    base: &str,
    auth: &str,
    nodes: &Arc<Vec<Node>>,
    concurrency: usize,
    stop: Stop,
) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Phase::default()));
    let (limit, deadline) = match stop {
        Stop::Count(n) => (n, None),
        Stop::Time(d) => (usize::MAX, Some(d)),
    };
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (nodes, next, done, out) = (
                Arc::clone(nodes),
                Arc::clone(&next),
                Arc::clone(&done),
                Arc::clone(&out),
            );
            let (base, auth) = (base.to_owned(), auth.to_owned());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut local = Phase::default();
                loop {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    let node = &nodes[i % nodes.len()];
                    let t0 = Instant::now();
                    let mut resp = agent
                        .post(format!("{base}/v1/challenge"))
                        .header("Authorization", &auth)
                        .send_empty()
                        .expect("challenge request");
                    let body = resp.body_mut().read_to_string().expect("challenge body");
                    let t1 = Instant::now();
                    let v: serde_json::Value = serde_json::from_str(&body).expect("challenge json");
                    let nonce = Nonce::parse(v["nonce"].as_str().expect("nonce")).expect("nonce");
                    let token = node.attest(nonce);
                    let t2 = Instant::now();
                    let mut resp = agent
                        .post(format!("{base}/v1/attestations"))
                        .header("Authorization", &auth)
                        .header("Content-Type", "application/jose")
                        .send(token.as_bytes())
                        .expect("attestation request");
                    let status = resp.status().as_u16();
                    let body = resp.body_mut().read_to_string().unwrap_or_default();
                    let t3 = Instant::now();
                    if status == 200 {
                        local.ok += 1;
                        local.challenge_lat.push(t1 - t0);
                        local.post_lat.push(t3 - t2);
                        local.round_lat.push(t3 - t0);
                        local.tokens.push(token);
                    } else {
                        local.failed += 1;
                        if local.first_error.is_none() {
                            local.first_error = Some(format!("{status} {body}"));
                        }
                    }
                }
                let mut o = out.lock().unwrap();
                o.ok += local.ok;
                o.failed += local.failed;
                if o.first_error.is_none() {
                    o.first_error = local.first_error;
                }
                o.challenge_lat.append(&mut local.challenge_lat);
                o.post_lat.append(&mut local.post_lat);
                o.round_lat.append(&mut local.round_lat);
                o.tokens.append(&mut local.tokens);
            })
        })
        .collect();
    if let Some(d) = deadline {
        std::thread::sleep(d);
        done.store(true, Ordering::Relaxed);
    }
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let mut phase = std::mem::take(&mut *out.lock().unwrap());
    phase.elapsed = elapsed;
    phase
}

fn percentiles(lat: &[Duration]) -> (Duration, Duration) {
    if lat.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let mut v = lat.to_vec();
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// A throwaway PostgreSQL cluster in a folder of the temporary directory, stopped on drop.
struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
    port: u16,
}

impl PgCluster {
    fn start(tmp: &Path) -> Self {
        let bin = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|d| d.join("initdb").is_file())
            .unwrap_or_else(|| {
                // Fall back to whatever `initdb` is on PATH.
                let o = Command::new("sh")
                    .args(["-c", "dirname \"$(command -v initdb)\""])
                    .output()
                    .expect("find initdb");
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
            });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = tmp.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            // PostgreSQL refuses root: the folders must be the postgres user's.
            assert!(
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(tmp)
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Self {
            dir,
            bin,
            root,
            port,
        };
        let data = c.dir.join("data");
        c.pg("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync"])
            .env("LC_ALL", "C")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
            .then_some(())
            .expect("initdb");
        c.pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(c.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-k {} -p {port} -c listen_addresses=127.0.0.1 -c max_connections=100",
                c.dir.display()
            ))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
            .then_some(())
            .expect("pg_ctl start");
        c
    }

    fn pg(&self, tool: &str) -> Command {
        if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}
