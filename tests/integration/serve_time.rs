//! Time is the verifier's, and a node is its key: attacks by a node's root user and by cloned
//! machines, over real HTTP on loopback against `tppguard-verifier serve`.
//!
//! Root on a node controls `iat`, the subject in its CSR, and can replay or reorder its own
//! tokens. Each test below is one such attack and what the verifier now answers:
//! - an `iat` dated ahead no longer pins the node's record: the last token received is the
//!   node's current one, and each EAR appraises (and names by SHA-256) the token it answers;
//! - an `iat` after receipt + skew, or before the challenge's issue − skew, is refused
//!   (`iat_outside_challenge_window`, recorded in the node's history);
//! - two machines whose certificates share a subject but not a key are two nodes (both
//!   counted), and a subject shared by two nodes is ambiguous in the API (409);
//! - one key on two machines is one node, whose current attestation is the last received.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    attest_to, bearer, challenge, free_port, http, issue_node, issue_token, jws_payload, ok,
    path_segment, post_attestation, resigned, s, sign_licence, workspace_root,
};

/// The verifier's clock skew allowance (`MAX_CLOCK_SKEW_S`).
const SKEW_S: i64 = 300;

fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

/// `GET path` at `base` with the operator token `operator`: the status and the JSON answer.
fn get(base: &str, operator: &str, path: &str) -> (u16, Value) {
    let mut resp = http()
        .get(format!("{base}{path}"))
        .header("Authorization", bearer(operator))
        .call()
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// `tppguard-agent attest --simulate FIXTURE --site fra-1` from `node` answering `nonce`.
fn attest(node: &Path, fixture: &str, nonce: &str) -> String {
    attest_to(
        node,
        Some(fixture),
        nonce,
        "fra-1",
        &node.join("attestation.jws"),
    )
}

/// SHA-256 of `token`, lower-case hex.
fn sha256(token: &str) -> String {
    tppguard_verifier::store::sha256_hex(token.as_bytes())
}

/// The EAR's appraisal of `node` in an accepted answer.
fn appraisal<'a>(ear: &'a Value, node: &str) -> &'a Value {
    &ear["submods"][node]
}

/// A verifier set up as an operator would, with nodes issued from copies of one PKI: each
/// copy is made before any issuance, so every node certificate chains to the one operator
/// root whatever issuance records `pki issue-node` keeps.
struct Fleet {
    tmp: tempfile::TempDir,
    child: std::process::Child,
    base: String,
    /// An operator token (reads) and a node token (challenges, attestations).
    operator: String,
    node: String,
}

impl Fleet {
    /// `names`: each node's `init --name`; `pki_of[i]`: which PKI copy issues node `i`.
    fn start(names: &[&str], pki_of: &[usize]) -> (Self, Vec<PathBuf>) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let pki = dir.join("pki");
        ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
        let copies = pki_of.iter().copied().max().unwrap_or(0);
        let mut pkis = vec![pki.clone()];
        for c in 1..=copies {
            let copy = dir.join(format!("pki-{c}"));
            let status = std::process::Command::new("cp")
                .args(["-a", s(&pki), s(&copy)])
                .status()
                .expect("cp runs");
            assert!(status.success(), "cp -a pki");
            pkis.push(copy);
        }
        let mut nodes = Vec::new();
        for (i, (name, &p)) in names.iter().zip(pki_of).enumerate() {
            let node = dir.join(format!("node-{i}"));
            issue_node(&pkis[p], &node, name, None);
            nodes.push(node);
        }
        let licences = dir.join("licences");
        std::fs::create_dir(&licences).expect("licences dir");
        sign_licence(
            &pki,
            &workspace_root().join("examples").join("licence.toml"),
            &licences.join("licence.jws"),
        );
        let config = dir.join("verifier.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{}\"\ntrust = \"pki/verifier/trust.toml\"\n\
                 licences_dir = \"licences\"\n",
                free_port()
            ),
        )
        .expect("config");
        let operator = issue_token(&config, "operator", "test-operator");
        let node = issue_token(&config, "node", "test-nodes");
        let mut child = crate::support::bin("tppguard-verifier")
            .args(["serve", "--config", s(&config)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
            &mut line,
        )
        .expect("listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_owned();
        (
            Self {
                tmp,
                child,
                base,
                operator,
                node,
            },
            nodes,
        )
    }

    /// A copy of the bundled DGX H100 fixture with its own eight GPU identities (`tag`
    /// makes them distinct from the bundled ones and from other tags).
    fn fixture(&self, tag: u8) -> String {
        let bundled = workspace_root().join("tests/fixtures/nvml/dgx-h100.json");
        let mut fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(bundled).expect("fixture"))
                .expect("fixture JSON");
        for (i, device) in fixture["devices"]
            .as_array_mut()
            .expect("devices")
            .iter_mut()
            .enumerate()
        {
            device["uuid"] = format!("GPU-{tag:02x}{i:06x}-0000-4000-8000-000000000000").into();
            device["serial"] = format!("SIM-TWIN-{tag}-{i}").into();
        }
        let path = self.tmp.path().join(format!("fixture-{tag}.json"));
        std::fs::write(&path, fixture.to_string()).expect("write fixture");
        s(&path).to_owned()
    }

    /// One full exchange from `node`: challenge, attest with `fixture`, post. The answer.
    fn push(&self, node: &Path, fixture: &str) -> (String, Value) {
        let token = attest(node, fixture, &challenge(&self.base, &self.node));
        let (status, answer) = post_attestation(&self.base, &self.node, &token);
        assert_eq!(status, 200, "{answer}");
        (token, answer)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The issue's attack: one attestation dated ahead (within the skew, so still accepted)
/// used to pin the node's record (greatest `iat`), and the EAR for a later request appraised
/// the pinned token. Now the token received last is the node's, and every EAR names and
/// appraises the token it answers.
#[test]
fn serve_time_a_token_dated_ahead_does_not_pin_the_node() {
    let (fleet, nodes) = Fleet::start(&["gpu-node-01"], &[0]);
    let node = &nodes[0];
    let base = &fleet.base;

    let (first, answer) = fleet.push(node, "dgx-h100");
    let id = answer["node"].as_str().expect("node id").to_owned();
    assert_eq!(id.len(), 64, "the node is named by its key: {answer}");
    assert_eq!(answer["subject"], "CN=gpu-node-01", "{answer}");
    assert_eq!(answer["token_sha256"], sha256(&first), "{answer}");

    // Dated 250 s ahead: inside [issued - 300, received + 300], accepted.
    let ahead = resigned(
        node,
        &attest(node, "dgx-h100", &challenge(base, &fleet.node)),
        |c| {
            c["iat"] = (now() + 250).into();
        },
    );
    let (status, answer) = post_attestation(base, &fleet.node, &ahead);
    assert_eq!(status, 200, "{answer}");
    let ear = jws_payload(answer["ear"].as_str().expect("ear"));
    assert_eq!(
        appraisal(&ear, &id)["tppguard.token-sha256"],
        sha256(&ahead)
    );

    // The next token, honestly dated, is received later: it is the node's current one, and
    // its EAR appraises it, not the token dated ahead.
    let later = attest(node, "dgx-h100", &challenge(base, &fleet.node));
    let (status, answer) = post_attestation(base, &fleet.node, &later);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_sha256"], sha256(&later), "{answer}");
    let ear = jws_payload(answer["ear"].as_str().expect("ear"));
    assert_eq!(
        appraisal(&ear, &id)["tppguard.token-sha256"],
        sha256(&later),
        "{ear}"
    );
    assert_eq!(appraisal(&ear, &id)["ear.status"], answer["status"]);
    let (status, current) = fleet_get(&fleet, &format!("/v1/nodes/{id}"));
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["node"]["token_sha256"], sha256(&later), "{current}");
    let (_, list) = fleet_get(&fleet, "/v1/nodes");
    assert_eq!(list["nodes"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["nodes"][0]["token_sha256"], sha256(&later), "{list}");

    // The history lists all three, most recent receipt first.
    let (_, history) = fleet_get(&fleet, &format!("/v1/nodes/{id}/history"));
    let shas: Vec<&str> = history["attestations"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|a| a["token_sha256"].as_str())
        .collect();
    assert_eq!(shas, [sha256(&later), sha256(&ahead), sha256(&first)]);
}

/// `iat` after receipt + skew (a year ahead, or just past the skew) and `iat` before the
/// challenge was issued − skew are refused with a stable code and the figures, recorded in
/// the node's history; the node's record stays on its last accepted token.
#[test]
fn serve_time_refuses_an_iat_outside_the_challenge_window() {
    let (fleet, nodes) = Fleet::start(&["gpu-node-01"], &[0]);
    let node = &nodes[0];
    let base = &fleet.base;
    let (good, answer) = fleet.push(node, "dgx-h100");
    let id = answer["node"].as_str().expect("node id").to_owned();

    let cases: [(&str, i64, &str); 3] = [
        (
            "a year ahead",
            now() + 365 * 86_400,
            "after the verifier received it",
        ),
        (
            "just past the skew",
            now() + SKEW_S + 120,
            "after the verifier received it",
        ),
        (
            "before the challenge",
            now() - SKEW_S - 120,
            "before the challenge was issued",
        ),
    ];
    let mut refused = Vec::new();
    for (what, iat, why) in cases {
        let token = resigned(
            node,
            &attest(node, "dgx-h100", &challenge(base, &fleet.node)),
            |c| {
                c["iat"] = iat.into();
            },
        );
        let (status, answer) = post_attestation(base, &fleet.node, &token);
        assert_eq!(status, 422, "{what}: {answer}");
        assert_eq!(answer["code"], "iat_outside_challenge_window", "{what}");
        let sentence = answer["sentence"].as_str().expect("sentence");
        assert!(
            sentence.contains(&format!("iat {iat}")) && sentence.contains(why),
            "{what}: {sentence}"
        );
        assert!(
            sentence.contains("NTP"),
            "the sentence names the fix: {sentence}"
        );
        refused.push(sha256(&token));
    }

    // The node's record is still its one accepted token; the refusals are in its history.
    let (_, current) = fleet_get(&fleet, &format!("/v1/nodes/{id}"));
    assert_eq!(current["node"]["token_sha256"], sha256(&good), "{current}");
    let (_, history) = fleet_get(&fleet, &format!("/v1/nodes/{id}/history"));
    let rows = history["attestations"].as_array().expect("history");
    assert_eq!(rows.len(), 4, "{history}");
    for (row, sha) in rows.iter().zip(refused.iter().rev()) {
        assert_eq!(row["token_sha256"], sha.as_str());
        assert_eq!(row["outcome"], "rejected");
        assert_eq!(row["reason"], "iat_outside_challenge_window");
    }
}

/// Two tokens of one node, sent one after the other and then several at once (so that the
/// verifier may commit them in one batch): each EAR names the SHA-256 of the token it
/// answers and appraises it.
#[test]
fn serve_time_each_ear_appraises_its_own_token() {
    let (fleet, nodes) = Fleet::start(&["gpu-node-01"], &[0]);
    let node = &nodes[0];
    let base = fleet.base.clone();
    let (one, a) = fleet.push(node, "dgx-h100");
    let (two, b) = fleet.push(node, "dgx-h100");
    let id = a["node"].as_str().expect("node id").to_owned();
    assert_eq!(b["node"], id.as_str());
    for (token, answer) in [(&one, &a), (&two, &b)] {
        let ear = jws_payload(answer["ear"].as_str().expect("ear"));
        assert_eq!(appraisal(&ear, &id)["tppguard.token-sha256"], sha256(token));
    }

    // Four at once, each signed by its own (copied) node folder so the agent runs in parallel.
    let tokens: Vec<String> = (0..4)
        .map(|i| {
            let copy = fleet.tmp.path().join(format!("copy-{i}"));
            let status = std::process::Command::new("cp")
                .args(["-a", s(node), s(&copy)])
                .status()
                .expect("cp runs");
            assert!(status.success());
            attest(&copy, "dgx-h100", &challenge(&base, &fleet.node))
        })
        .collect();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (base, node_token) = (base.clone(), &fleet.node);
                scope.spawn(move || post_attestation(&base, node_token, t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("poster"))
            .collect()
    });
    for (token, (status, answer)) in tokens.iter().zip(&answers) {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["token_sha256"], sha256(token));
        let ear = jws_payload(answer["ear"].as_str().expect("ear"));
        assert_eq!(
            appraisal(&ear, &id)["tppguard.token-sha256"],
            sha256(token),
            "{ear}"
        );
    }
    // The node's record is one of the four: the one recorded last.
    let (_, current) = fleet_get(&fleet, &format!("/v1/nodes/{id}"));
    let current = current["node"]["token_sha256"].as_str().expect("sha");
    assert!(tokens.iter().any(|t| sha256(t) == current), "{current}");
    let (_, history) = fleet_get(&fleet, &format!("/v1/nodes/{id}/history?limit=1"));
    assert_eq!(history["attestations"][0]["token_sha256"], current);
}

/// Two machines whose certificates share a subject (cloned images, a host name reused) but
/// not a key are two nodes: both are listed and both count against the licence (16 GPUs,
/// twice the TPP); the shared subject names neither in the API (409 with both ids).
#[test]
fn serve_time_two_keys_sharing_a_subject_are_two_nodes() {
    let (fleet, nodes) = Fleet::start(&["gpu-node-01", "gpu-node-01"], &[0, 1]);
    let twin = fleet.fixture(1);
    let (_, a) = fleet.push(&nodes[0], "dgx-h100");
    let (_, b) = fleet.push(&nodes[1], &twin);
    assert_eq!(a["subject"], b["subject"]);
    assert_ne!(a["node"], b["node"], "two keys, two nodes");

    let (_, list) = fleet_get(&fleet, "/v1/nodes");
    let listed = list["nodes"].as_array().expect("nodes");
    assert_eq!(listed.len(), 2, "{list}");
    assert!(listed.iter().all(|n| n["subject"] == "CN=gpu-node-01"));
    let (_, licences) = fleet_get(&fleet, "/v1/licences");
    let usage = &licences["licences"][0];
    assert_eq!(usage["nodes"], 2, "{usage}");
    assert_eq!(usage["devices"]["used"], 16, "{usage}");
    let tpp = usage["tpp"]["used"].to_string();
    assert_eq!(tpp.trim_matches('"'), "253299.2", "2 x 126649.6: {usage}");

    // Named by its id, each node answers; by the shared subject, neither does.
    for answer in [&a, &b] {
        let id = answer["node"].as_str().expect("id");
        let (status, one) = fleet_get(&fleet, &format!("/v1/nodes/{id}"));
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["node"]["node"], id);
    }
    let (status, ambiguous) = fleet_get(
        &fleet,
        &format!("/v1/nodes/{}", path_segment("CN=gpu-node-01")),
    );
    assert_eq!(status, 409, "{ambiguous}");
    assert_eq!(ambiguous["code"], "node_ambiguous");
    let sentence = ambiguous["sentence"].as_str().expect("sentence");
    for answer in [&a, &b] {
        assert!(
            sentence.contains(answer["node"].as_str().expect("id")),
            "{sentence}"
        );
    }
    let (status, _) = fleet_get(
        &fleet,
        &format!("/v1/nodes/{}/history", path_segment("CN=gpu-node-01")),
    );
    assert_eq!(status, 409);
}

/// One key on two machines (a node folder copied to a second host) is one node: whichever
/// machine the verifier heard from last is the node's current attestation, whatever `iat`
/// either writes.
#[test]
fn serve_time_one_key_on_two_machines_is_one_node() {
    let (fleet, nodes) = Fleet::start(&["gpu-node-01"], &[0]);
    let first_machine = &nodes[0];
    let second_machine = fleet.tmp.path().join("copied-node");
    let status = std::process::Command::new("cp")
        .args(["-a", s(first_machine), s(&second_machine)])
        .status()
        .expect("cp runs");
    assert!(status.success());
    let other_gpus = fleet.fixture(2);

    // The first machine dates its token ahead (within the skew); the second is received
    // later with an honest iat, and is the node's current attestation.
    let ahead = resigned(
        first_machine,
        &attest(
            first_machine,
            "dgx-h100",
            &challenge(&fleet.base, &fleet.node),
        ),
        |c| c["iat"] = (now() + 200).into(),
    );
    let (status, a) = post_attestation(&fleet.base, &fleet.node, &ahead);
    assert_eq!(status, 200, "{a}");
    let (later, b) = fleet.push(&second_machine, &other_gpus);
    assert_eq!(a["node"], b["node"], "one key, one node");
    let id = a["node"].as_str().expect("id");

    let (_, list) = fleet_get(&fleet, "/v1/nodes");
    assert_eq!(list["nodes"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["nodes"][0]["token_sha256"], sha256(&later), "{list}");
    let (_, one) = fleet_get(&fleet, &format!("/v1/nodes/{id}"));
    let uuids: Vec<&str> = one["node"]["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .filter_map(|g| g["uuid"].as_str())
        .collect();
    assert!(
        !uuids.is_empty() && uuids.iter().all(|u| u.starts_with("GPU-02")),
        "the second machine's GPUs: {uuids:?}"
    );
    let (_, licences) = fleet_get(&fleet, "/v1/licences");
    assert_eq!(licences["licences"][0]["devices"]["used"], 8, "{licences}");

    // The first machine again: now it is the current one.
    let (again, _) = fleet.push(first_machine, "dgx-h100");
    let (_, list) = fleet_get(&fleet, "/v1/nodes");
    assert_eq!(list["nodes"][0]["token_sha256"], sha256(&again), "{list}");
}

fn fleet_get(fleet: &Fleet, path: &str) -> (u16, Value) {
    get(&fleet.base, &fleet.operator, path)
}
