//! Reads over real HTTP on loopback (issue 12): the fleet summary and its full form, lists in
//! pages whose cursors walk every item once, histories without tokens, and reads that follow
//! the writes they come after although the verdict is held in memory between them.
//!
//! Until the authentication middleware is in, every request reads as the operator; what the
//! other roles see is tested on the views themselves (`verifier/src/serve/view.rs`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{RunningVerifier, VerifierSetup, agent_push, bearer, path_segment};

/// Pushes the simulated node at `node` and checks it was answered.
fn push(verifier: &RunningVerifier, node: &std::path::Path) -> String {
    let out = agent_push(&verifier.base, &verifier.credentials.node_file, node);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "push exits {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("push --json prints a verdict");
    answer["node"].as_str().expect("node").to_owned()
}

/// Every item of the list at `path` (which takes `limit` and `after`), a page of `limit` at a
/// time: the items, and how many pages it took.
fn walk(verifier: &RunningVerifier, path: &str, key: &str, limit: usize) -> (Vec<Value>, usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let cursor = after
            .as_deref()
            .map(|a| format!("&after={}", path_segment(a)))
            .unwrap_or_default();
        let (status, page) = verifier.get_json(&format!("{path}{sep}limit={limit}{cursor}"));
        assert_eq!(status, 200, "{page}");
        let list = page[key].as_array().expect("a list");
        assert!(list.len() <= limit, "{page}");
        items.extend(list.iter().cloned());
        pages += 1;
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => {
                assert_eq!(page["next"], Value::Null);
                assert_eq!(page["total"].as_u64(), Some(items.len() as u64), "{page}");
                return (items, pages);
            }
        }
    }
}

#[test]
fn serve_reads_a_summary_the_full_verdict_and_lists_in_pages() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let others = [setup.add_node("gpu-node-02"), setup.add_node("gpu-node-03")];
    let verifier = setup.start();
    let mut ids = vec![push(&verifier, &setup.node)];
    // A read between writes: the next read after a write sees that write.
    let (_, summary) = verifier.get_json("/v1/fleet");
    assert_eq!(summary["counts"]["nodes"], 1, "{summary}");
    for node in &others {
        ids.push(push(&verifier, node));
    }
    ids.sort();

    // The summary: verdicts and counts, no node and no finding.
    let (status, summary) = verifier.get_json("/v1/fleet");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["rule_set"], "us-eccn-3a090");
    assert_eq!(summary["counts"]["nodes"], 3, "{summary}");
    assert_eq!(summary["counts"]["gpus"], 24, "{summary}");
    assert!(summary.get("nodes").is_none() && summary.get("findings").is_none());
    assert_eq!(summary["licences"][0]["licence"], "EXAMPLE-DE-2026-0142");
    assert_eq!(summary["countries"][0]["country"], "DE");
    // The three simulated nodes report the same eight GPUs at one site: duplicates.
    assert!(
        summary["counts"]["findings"]["warning"].as_u64() > Some(0),
        "{summary}"
    );

    // The full verdict: every node and finding, the summary's figures alike.
    let (status, full) = verifier.get_json("/v1/fleet?view=full");
    assert_eq!(status, 200);
    let full_ids: Vec<&str> = full["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(full_ids, ids, "nodes by node id");
    assert_eq!(full["verdict"], summary["verdict"]);
    assert_eq!(full["licences"], summary["licences"]);
    let (status, bad) = verifier.get_json("/v1/fleet?view=everything");
    assert_eq!((status, bad["code"].as_str()), (400, Some("bad_query")));

    // Nodes a page at a time: each once, in node id order.
    let (nodes, pages) = walk(&verifier, "/v1/nodes", "nodes", 2);
    assert_eq!(pages, 2);
    let walked: Vec<&str> = nodes.iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(walked, ids);

    // Findings a page at a time: the same list as in one page.
    let (status, all) = verifier.get_json("/v1/findings?limit=1000");
    assert_eq!(status, 200);
    let all = all["findings"].as_array().expect("findings").clone();
    assert!(all.len() > 2, "duplicates give several findings");
    let (paged, pages) = walk(&verifier, "/v1/findings", "findings", 1);
    assert_eq!(pages, all.len());
    assert_eq!(paged, all);
    let (warnings, _) = walk(&verifier, "/v1/findings?severity=warning", "findings", 2);
    assert!(
        !warnings.is_empty() && warnings.iter().all(|f| f["severity"] == "warning"),
        "{warnings:?}"
    );
    let counted = summary["counts"]["findings"]["warning"].as_u64();
    assert_eq!(Some(warnings.len() as u64), counted);
    let (licences, _) = walk(&verifier, "/v1/licences", "licences", 1);
    assert_eq!(licences.len(), 1);

    // Limits and cursors are checked.
    for bad in [
        "/v1/nodes?limit=0",
        "/v1/nodes?limit=1001",
        "/v1/findings?limit=5000",
        "/v1/nodes?after=not-a-cursor",
        "/v1/licences?after=%21",
    ] {
        let (status, body) = verifier.get_json(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "bad_query", "{bad}");
    }

    // A history shows what it lists, never the token.
    let (status, history) =
        verifier.get_json(&format!("/v1/nodes/{}/history", path_segment(&ids[0])));
    assert_eq!(status, 200, "{history}");
    let entries = history["attestations"].as_array().expect("history");
    assert_eq!(entries.len(), 1);
    assert!(entries[0].get("token").is_none() && entries[0]["token_sha256"].is_string());
}

#[test]
fn serve_reads_follow_writes_and_metrics_need_no_read() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let second = setup.add_node("gpu-node-02");
    let verifier = setup.start();
    let (_, empty) = verifier.get_json("/v1/fleet");
    assert_eq!(empty["counts"]["nodes"], 0, "{empty}");
    // The same read again is the verdict held: the same instant.
    let (_, again) = verifier.get_json("/v1/fleet");
    assert_eq!(again, empty);

    let first = push(&verifier, &setup.node);
    let (_, one) = verifier.get_json("/v1/fleet");
    assert_eq!(one["counts"]["nodes"], 1, "{one}");
    let other = push(&verifier, &second);
    let (_, listed) = verifier.get_json("/v1/nodes");
    let listed: BTreeSet<&str> = listed["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(listed, BTreeSet::from([first.as_str(), other.as_str()]));

    // The usage gauges come from the verdict held.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = http
        .get(format!("{}/metrics", verifier.base))
        .header("Authorization", bearer(&verifier.credentials.operator))
        .call()
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.body_mut().read_to_string().expect("body");
    assert!(
        text.contains("licence=\"EXAMPLE-DE-2026-0142\""),
        "the usage gauges name the licence: {text}"
    );
}
