//! The fleet over real HTTP on loopback: one GPU reported by two nodes, a node that falls
//! silent (stale, still counted), and two verifier replicas sharing one PostgreSQL database
//! (a nonce issued by one is answered at the other, each sees the other's nodes, a replay is
//! refused by both).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    RunningVerifier, VerifierSetup, agent_push, attest_to, bearer, challenge, http, path_segment,
    post_attestation, sign_licence, workspace_root,
};

/// `tppguard-agent push --simulate --json` from `node` to `v` (with the node token): its
/// verdict (exit 0 or 1).
fn push(v: &RunningVerifier, node: &Path) -> Value {
    let out = agent_push(&v.base, &v.credentials.node_file, node);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "push exits {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("push --json prints a verdict")
}

/// The codes of a list of findings.
fn codes(findings: &Value) -> Vec<&str> {
    findings
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect()
}

/// `tppguard-agent attest --simulate` from `node` answering `nonce`: the token.
fn attest(node: &Path, nonce: &str) -> String {
    attest_to(node, None, nonce, "fra-1", &node.join("attestation.jws"))
}

#[test]
fn serve_flags_one_gpu_reported_by_two_nodes() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    // Both nodes run the simulated DGX H100: the same eight GPU identities.
    let second = setup.add_node("gpu-node-02");
    let verifier = setup.start();

    let first = push(&verifier, &setup.node);
    assert!(
        !codes(&first["findings"]).contains(&"duplicate_device"),
        "{first}"
    );
    let again = push(&verifier, &second);
    assert!(
        codes(&again["findings"]).contains(&"duplicate_device"),
        "the second node is told: {again}"
    );

    let (status, dups) = verifier.get_json("/v1/findings?code=duplicate_device");
    assert_eq!(status, 200);
    let dups = dups["findings"].as_array().expect("findings");
    assert!(!dups.is_empty());
    // One finding per GPU identity, naming both places.
    assert_eq!(dups.len(), 8, "{dups:?}");
    for node in [&first["node"], &again["node"]] {
        let node = node.as_str().expect("node");
        assert!(
            dups.iter().all(|f| f["figures"]["seen_in"]
                .as_array()
                .is_some_and(|places| places.iter().any(|p| p
                    .as_str()
                    .is_some_and(|p| p.contains(&format!("[{}]/", &node[..12])))))),
            "every duplicate_device finding names {node}: {dups:?}"
        );
    }
    // Each GPU counts once: eight devices under the licence, not sixteen.
    let (_, licences) = verifier.get_json("/v1/licences");
    assert_eq!(licences["licences"][0]["devices"]["used"], 8, "{licences}");
    assert_eq!(
        licences["licences"][0]["tpp"]["used"].to_string(),
        "126649.6"
    );
}

#[test]
fn serve_marks_a_silent_node_stale_and_still_counts_it() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    // The example licence with a two-second attestation age, signed over the shipped one.
    let example = std::fs::read_to_string(workspace_root().join("examples/licence.toml"))
        .expect("example licence");
    let short = example.replace(
        "max_attestation_age = \"24h\"",
        "max_attestation_age = \"2s\"",
    );
    assert_ne!(short, example, "the example names its max_attestation_age");
    let dir = setup.tmp.path();
    let toml = dir.join("short-age.toml");
    std::fs::write(&toml, short).expect("licence");
    sign_licence(&dir.join("pki"), &toml, &dir.join("licences/licence.jws"));
    let verifier = setup.start();

    let answer = push(&verifier, &setup.node);
    // The verifier ages a node from its receipt time, in whole seconds, which is no later than
    // the second the push returned in.
    let received_by = unix_seconds();
    let node = answer["node"].as_str().expect("node").to_owned();
    assert!(
        !codes(&answer["findings"]).contains(&"stale_node"),
        "{answer}"
    );

    // Past the licence's two seconds: an age of three whole seconds from the receipt.
    while unix_seconds() < received_by + 3 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, nodes) = verifier.get_json("/v1/nodes");
    assert_eq!(nodes["nodes"][0]["node"], node.as_str());
    assert_eq!(nodes["nodes"][0]["stale"], true, "{nodes}");
    assert_eq!(
        nodes["nodes"][0]["devices_counted"], 8,
        "a stale node still counts"
    );
    let (_, findings) = verifier.get_json(&format!("/v1/findings?node={}", path_segment(&node)));
    assert!(
        codes(&findings["findings"]).contains(&"stale_node"),
        "{findings}"
    );
    let (_, licences) = verifier.get_json("/v1/licences");
    let usage = &licences["licences"][0];
    assert_eq!(usage["devices"]["used"], 8, "{usage}");
    assert_eq!(usage["tpp"]["used"].to_string(), "126649.6");
    let metrics = run_metrics(&verifier);
    assert!(
        metrics.contains("tppguard_verifier_stale_nodes 1"),
        "{metrics}"
    );

    // A fresh attestation makes it current again.
    let answer = push(&verifier, &setup.node);
    assert!(
        !codes(&answer["findings"]).contains(&"stale_node"),
        "{answer}"
    );
    let (_, nodes) = verifier.get_json("/v1/nodes");
    assert_eq!(nodes["nodes"][0]["stale"], false, "{nodes}");
}

fn run_metrics(v: &RunningVerifier) -> String {
    let mut resp = http()
        .get(format!("{}/metrics", v.base))
        .header("Authorization", bearer(&v.credentials.operator))
        .call()
        .expect("GET /metrics");
    resp.body_mut().read_to_string().expect("metrics")
}

#[test]
fn serve_replicas_on_postgres_share_nonces_and_the_fleet() {
    use tppguard_verifier::store::pg_harness;
    let cluster = pg_harness::cluster().unwrap_or_else(|e| panic!("PostgreSQL test cluster: {e}"));
    let url = cluster
        .create_database()
        .unwrap_or_else(|e| panic!("PostgreSQL test database: {e}"));
    let setup = VerifierSetup::new("127.0.0.1:0");
    let second = setup.add_node("gpu-node-02");
    setup.configure(&format!("database = \"{url}\""));
    let a = setup.start();
    let b = setup.start();
    assert_ne!(a.base, b.base);

    // A challenge from replica A, answered at replica B.
    let node_token = &a.credentials.node;
    let nonce = challenge(&a.base, node_token);
    let token = attest(&setup.node, &nonce);
    let (status, answer) = post_attestation(&b.base, node_token, &token);
    assert_eq!(status, 200, "{answer}");
    let first = answer["node"].as_str().expect("node").to_owned();
    // The same token again, at either replica: the nonce is spent for both.
    for base in [&a.base, &b.base] {
        let (status, answer) = post_attestation(base, node_token, &token);
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["code"], "nonce_replayed");
    }

    // The second node pushes to A and is told about the GPUs B recorded for the first.
    let answer = push(&a, &second);
    assert!(
        codes(&answer["findings"]).contains(&"duplicate_device"),
        "{answer}"
    );
    let other = answer["node"].as_str().expect("node").to_owned();

    // Both replicas hold both nodes, whichever one recorded them.
    for v in [&a, &b] {
        let (status, nodes) = v.get_json("/v1/nodes");
        assert_eq!(status, 200);
        let names: Vec<&str> = nodes["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| n["node"].as_str())
            .collect();
        assert_eq!(names.len(), 2, "{nodes}");
        assert!(names.contains(&first.as_str()) && names.contains(&other.as_str()));
        let (_, history) = v.get_json(&format!("/v1/nodes/{}/history", path_segment(&first)));
        let reasons: Vec<&str> = history["attestations"]
            .as_array()
            .expect("history")
            .iter()
            .filter_map(|e| e["reason"].as_str())
            .collect();
        // The replays were of a token already recorded (its SHA-256 is the key): no new row.
        assert_eq!(reasons, ["accepted"], "{history}");
    }
}

#[test]
fn serve_accepts_a_token_sent_many_times_at_once_exactly_once() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let verifier = setup.start();
    let node_token = &verifier.credentials.node;
    let token = attest(&setup.node, &challenge(&verifier.base, node_token));
    // Eight copies at the same moment: whichever batches they land in, one is accepted and
    // every other is a replay of its nonce.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let sent: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| post_attestation(&verifier.base, node_token, &token)))
            .collect();
        sent.into_iter()
            .map(|h| h.join().expect("poster"))
            .collect()
    });
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(accepted, 1, "{answers:?}");
    for (status, answer) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 409, "{answer}");
        assert_eq!(answer["code"], "nonce_replayed", "{answer}");
    }
    let node = answers
        .iter()
        .find_map(|(_, a)| a["node"].as_str())
        .expect("the accepted answer names the node");
    let (_, history) = verifier.get_json(&format!("/v1/nodes/{}/history", path_segment(node)));
    assert_eq!(
        history["attestations"][0]["outcome"], "accepted",
        "{history}"
    );
}

#[test]
fn serve_replicas_see_each_other_under_concurrent_pushes() {
    use tppguard_verifier::store::pg_harness;
    let cluster = pg_harness::cluster().unwrap_or_else(|e| panic!("PostgreSQL test cluster: {e}"));
    let url = cluster
        .create_database()
        .unwrap_or_else(|e| panic!("PostgreSQL test database: {e}"));
    let setup = VerifierSetup::new("127.0.0.1:0");
    let mut nodes = vec![setup.node.clone()];
    for n in 2..=4 {
        nodes.push(setup.add_node(&format!("gpu-node-{n:02}")));
    }
    setup.configure(&format!("database = \"{url}\""));
    let replicas = [setup.start(), setup.start()];

    // Four nodes with the same eight GPUs push at once, alternately to the two replicas, while
    // a hostile body (NUL is not storable as PostgreSQL text) arrives beside them.
    let (answers, hostile) = std::thread::scope(|scope| {
        let pushes: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let v = &replicas[i % 2];
                scope.spawn(move || push(v, node))
            })
            .collect();
        let hostile = scope.spawn(|| {
            let r = &replicas[0];
            post_attestation(&r.base, &r.credentials.node, "eyJh\0.e30.e30")
        });
        let answers: Vec<Value> = pushes
            .into_iter()
            .map(|h| h.join().expect("push"))
            .collect();
        (answers, hostile.join().expect("hostile post"))
    });
    assert_eq!(hostile.0, 422, "{}", hostile.1);
    // Batches take turns across replicas: every answer but the first committed one sees an
    // earlier node's GPUs.
    let unaware = answers
        .iter()
        .filter(|a| !codes(&a["findings"]).contains(&"duplicate_device"))
        .count();
    assert!(unaware <= 1, "{answers:?}");
    for v in &replicas {
        let (_, licences) = v.get_json("/v1/licences");
        assert_eq!(licences["licences"][0]["devices"]["used"], 8, "{licences}");
        let (_, list) = v.get_json("/v1/nodes");
        assert_eq!(list["nodes"].as_array().map(Vec::len), Some(4), "{list}");
    }
}

/// The wall clock in whole seconds since the Unix epoch, as the verifier reads it.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}
