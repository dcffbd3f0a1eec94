//! Crash durability: `tppguard-verifier serve` is SIGKILLed while several nodes are pushing
//! attestations (`tppguard-agent push --simulate`); restarted on the same database, it still
//! holds every attestation it had answered 200 for. Run on SQLite and on PostgreSQL (the
//! verifier's throwaway cluster, `store::pg_harness`, behind its `pg-harness` feature).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{RunningVerifier, VerifierSetup, agent_push, path_segment, s};

/// Pushing nodes (each its own key and certificate from the setup's PKI).
const NODES: usize = 4;
/// The verifier is killed once this many attestations were answered 200.
const KILL_AFTER: usize = 16;
/// A pushing thread gives up after this many pushes (far more than the kill needs).
const MAX_PUSHES: usize = 400;

/// One acknowledged attestation: the node it was recorded for and the EAR the verifier
/// answered with (the history lists each attestation's EAR).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ack {
    node: String,
    ear: String,
}

/// `VerifierSetup` plus `NODES - 1` more node folders with chains from the same PKI, and the
/// config pointed at `database` with a rate limit no push here reaches.
fn setup(database: &str) -> (VerifierSetup, Vec<PathBuf>) {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let mut nodes = vec![setup.node.clone()];
    for n in 2..=NODES {
        nodes.push(setup.add_node(&format!("gpu-node-{n:02}")));
    }
    setup.configure(&format!(
        "database = \"{database}\"\nnode_rate_per_minute = 6000"
    ));
    (setup, nodes)
}

/// One `push --json` from `node`: the acknowledgement when the verifier answered 200 (exit 0
/// or 1 with a verdict), else the exit code and stderr.
fn push(base: &str, token_file: &std::path::Path, node: &std::path::Path) -> Result<Ack, String> {
    let out = agent_push(base, token_file, node);
    let verdict: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    match (out.status.code(), verdict) {
        (Some(0 | 1), Some(v)) => match (v["node"].as_str(), v["ear"].as_str()) {
            (Some(node), Some(ear)) if !ear.is_empty() => Ok(Ack {
                node: node.to_owned(),
                ear: ear.to_owned(),
            }),
            _ => Err(format!("a verdict without node or EAR: {v}")),
        },
        (code, _) => Err(format!(
            "exit {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The EARs `node`'s history holds.
fn stored_ears(v: &RunningVerifier, node: &str) -> BTreeSet<String> {
    let (status, body) = v.get_json(&format!(
        "/v1/nodes/{}/history?limit=1000",
        path_segment(node)
    ));
    assert_eq!(status, 200, "history of {node}: {body}");
    body["attestations"]
        .as_array()
        .expect("attestations")
        .iter()
        .filter_map(|e| e["ear"].as_str().map(str::to_owned))
        .collect()
}

fn kill_mid_stream_keeps_every_acknowledged_attestation(database: &str) {
    let (setup, nodes) = setup(database);
    let mut verifier = setup.start();
    let base = verifier.base.clone();
    let token_file = verifier.credentials.node_file.clone();

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let acked = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = nodes
        .iter()
        .cloned()
        .map(|node| {
            let (base, token_file, acks, acked, killed) = (
                base.clone(),
                token_file.clone(),
                acks.clone(),
                acked.clone(),
                killed.clone(),
            );
            std::thread::spawn(move || -> Result<(), String> {
                for _ in 0..MAX_PUSHES {
                    match push(&base, &token_file, &node) {
                        Ok(ack) => {
                            acks.lock().expect("acks").push(ack);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        // Refused once the verifier is gone: this thread was still pushing.
                        Err(_) if killed.load(Ordering::SeqCst) => return Ok(()),
                        Err(e) => {
                            return Err(format!(
                                "{}: push failed before the kill: {e}",
                                node.display()
                            ));
                        }
                    }
                }
                Err(format!(
                    "{}: {MAX_PUSHES} pushes and the verifier was not killed",
                    node.display()
                ))
            })
        })
        .collect();

    // SIGKILL (Child::kill) while the pushes run.
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} acknowledgements in 120 s",
            acked.load(Ordering::SeqCst)
        );
        if pushers.iter().all(std::thread::JoinHandle::is_finished) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    killed.store(true, Ordering::SeqCst);
    verifier.child.kill().expect("SIGKILL the verifier");
    let status = verifier.child.wait().expect("wait for the verifier");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL: {status}"
    );
    for pusher in pushers {
        pusher
            .join()
            .expect("pusher thread")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(verifier);

    let acks = std::mem::take(&mut *acks.lock().expect("acks"));
    assert!(acks.len() >= KILL_AFTER, "{} acknowledgements", acks.len());
    let ack_nodes: BTreeSet<&str> = acks.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(
        ack_nodes.len(),
        NODES,
        "every node was acknowledged: {ack_nodes:?}"
    );

    // Restarted on the same database: every acknowledged attestation is there.
    let verifier = setup.start();
    let mut missing = Vec::new();
    for node in &ack_nodes {
        let stored = stored_ears(&verifier, node);
        missing.extend(
            acks.iter()
                .filter(|a| a.node == *node && !stored.contains(&a.ear))
                .map(|a| a.node.clone()),
        );
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged attestations lost by the kill (nodes: {missing:?})",
        missing.len(),
        acks.len()
    );
    let (status, body) = verifier.get_json("/v1/nodes");
    assert_eq!(status, 200, "{body}");
    let listed: BTreeSet<&str> = body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert!(
        listed.is_superset(&ack_nodes),
        "{listed:?} vs {ack_nodes:?}"
    );
    // And it takes new attestations on the recovered database.
    let after = push(&verifier.base, &verifier.credentials.node_file, &nodes[0])
        .expect("a push after the restart");
    assert!(stored_ears(&verifier, &after.node).contains(&after.ear));
}

#[test]
fn serve_kill_sqlite_keeps_acknowledged_attestations() {
    let db = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", s(&db.path().join("verifier.db")));
    kill_mid_stream_keeps_every_acknowledged_attestation(&url);
}

#[test]
fn serve_kill_postgres_keeps_acknowledged_attestations() {
    use tppguard_verifier::store::pg_harness;
    let cluster = pg_harness::cluster().unwrap_or_else(|e| panic!("PostgreSQL test cluster: {e}"));
    let url = cluster
        .create_database()
        .unwrap_or_else(|e| panic!("PostgreSQL test database: {e}"));
    kill_mid_stream_keeps_every_acknowledged_attestation(&url);
}
