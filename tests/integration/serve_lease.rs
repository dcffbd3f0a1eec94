//! Leases over real HTTP on loopback (issue 15): the push answer's lease verifies under the
//! verifier's result key, names the node, takes its instants from the licence's `[lease]`
//! terms, and leaves out the GPUs past the licence's cap of the node that came later; a
//! gating report carrying a forged or borrowed lease is `gating_lease_foreign`.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tppguard_proto::jws::{self, VerifyingKey};
use tppguard_proto::lease::{LEASE_TYP, LeaseClaims, LeaseVerdict};

use crate::support::{
    RunningVerifier, VerifierSetup, attest_to, challenge, jws_payload, post_attestation, resigned,
    sign_licence, workspace_root,
};

/// The example licence with room for 12 devices (of 16,000 TPP at most) and its own lease
/// terms.
fn licence_toml() -> String {
    let example = std::fs::read_to_string(workspace_root().join("examples/licence.toml")).unwrap();
    assert!(example.contains("max_devices = 2048"));
    format!(
        "{}\n[lease]\nlifetime = \"2h\"\nrenew_before = \"30m\"\ngrace = \"10m\"\non_expiry = \"fail_closed\"\n",
        example
            .replacen("max_devices = 2048", "max_devices = 12", 1)
            // The H200 (15832) fits beside the H100 (15831.2).
            .replacen(
                r#"max_tpp_per_device = "15831.2""#,
                r#"max_tpp_per_device = "16000""#,
                1
            )
    )
}

/// A setup whose only licence is [`licence_toml`].
fn setup() -> VerifierSetup {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let dir = setup.tmp.path();
    let toml = dir.join("licence-12.toml");
    std::fs::write(&toml, licence_toml()).unwrap();
    sign_licence(&dir.join("pki"), &toml, &dir.join("licences/licence.jws"));
    setup
}

/// The verifier's result key, from `verifier-result.pub.pem`.
fn result_key(setup: &VerifierSetup) -> VerifyingKey {
    let pem = std::fs::read_to_string(
        setup
            .tmp
            .path()
            .join("pki/verifier/verifier-result.pub.pem"),
    )
    .unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    VerifyingKey::from_spki_der(&STANDARD.decode(body).unwrap()).unwrap()
}

/// A fresh attestation of `node` (simulated with `fixture`, `None` for the DGX H100).
fn attest(v: &RunningVerifier, node: &Path, fixture: Option<&str>) -> String {
    let nonce = challenge(&v.base, &v.credentials.node);
    attest_to(
        node,
        fixture,
        &nonce,
        "fra-1",
        &node.join("attestation.jws"),
    )
}

fn push(v: &RunningVerifier, token: &str) -> Value {
    let (status, answer) = post_attestation(&v.base, &v.credentials.node, token);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The answer's lease, verified under `key`: its claims.
fn verified_lease(answer: &Value, key: &VerifyingKey) -> LeaseClaims {
    let token = answer["lease"]
        .as_str()
        .expect("the answer carries a lease");
    let decoded = jws::decode(token).unwrap();
    assert_eq!(decoded.header().typ.as_deref(), Some(LEASE_TYP));
    let verified = decoded
        .verify(key)
        .expect("the lease verifies under the result key");
    LeaseClaims::from_json(verified.payload()).unwrap()
}

fn codes(answer: &Value) -> Vec<String> {
    answer["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn serve_answers_each_push_with_a_lease_that_leaves_out_the_excess() {
    let setup = setup();
    let second = setup.add_node("gpu-node-02");
    let key = result_key(&setup);
    let v = setup.start();

    let first = push(&v, &attest(&v, &setup.node, None));
    let lease = verified_lease(&first, &key);
    assert_eq!(Some(lease.sub.as_str()), first["node"].as_str());
    assert_eq!(lease.exp - lease.nbf, 7200, "the licence's lifetime");
    assert_eq!(lease.exp - lease.renew_at, 1800);
    assert_eq!(lease.grace_s, 600);
    assert_eq!(lease.on_expiry.as_str(), "fail_closed");
    assert_eq!(lease.gpus.len(), 8);
    assert!(lease.excluded.is_empty());
    assert!(
        lease
            .gpus
            .iter()
            .all(|g| g.licence.as_deref() == Some("EXAMPLE-DE-2026-0142"))
    );
    assert_eq!(
        lease.token_sha256,
        first["token_sha256"].as_str().unwrap(),
        "the lease answers this attestation"
    );

    // The HGX H200 joins: 16 GPUs under a cap of 12. The walk goes by node id, so one node
    // keeps its eight and the other gets four; which one is fixed, whoever attests last.
    let later = push(&v, &attest(&v, &second, Some("hgx-h200")));
    let lease = verified_lease(&later, &key);
    assert_eq!(Some(lease.sub.as_str()), later["node"].as_str());
    let second_ahead = later["node"].as_str().unwrap() < first["node"].as_str().unwrap();
    let allowed: Vec<u32> = lease.gpus.iter().map(|g| g.gpu.index).collect();
    let excluded: Vec<u32> = lease.excluded.iter().map(|e| e.gpu.index).collect();
    let want_second = if second_ahead {
        ((0..8).collect::<Vec<u32>>(), vec![])
    } else {
        (vec![0, 1, 2, 3], vec![4, 5, 6, 7])
    };
    assert_eq!((allowed, excluded), want_second, "{later}");
    for e in &lease.excluded {
        assert_eq!(e.reasons[0].code, "device_count_above_cap", "{e:?}");
    }
    assert_eq!(
        lease.verdict,
        LeaseVerdict::NotCompliant,
        "the licence is over its cap"
    );
    let second_allowed = lease.gpus.len();

    // The first node attests again, now the newest: its lease is the one the walk gives it
    // whatever the receipt order, and the leases in force allow exactly the cap together.
    let again = push(&v, &attest(&v, &setup.node, None));
    let lease = verified_lease(&again, &key);
    assert_eq!(lease.gpus.len() + lease.excluded.len(), 8);
    assert_eq!(
        lease.gpus.len(),
        if second_ahead { 4 } else { 8 },
        "{lease:?}"
    );
    assert_eq!(lease.gpus.len() + second_allowed, 12, "{lease:?}");
    assert!(
        lease
            .excluded
            .iter()
            .all(|e| e.reasons[0].code == "device_count_above_cap")
    );

    // The licence's terms show in its usage.
    let (_, licences) = v.get_json("/v1/licences");
    assert_eq!(
        licences["licences"][0]["lease"],
        json!({"lifetime_s": 7200, "renew_before_s": 1800, "grace_s": 600, "on_expiry": "fail_closed"}),
        "{licences}"
    );
}

#[test]
fn serve_finds_a_forged_or_borrowed_lease_in_a_gating_report() {
    let setup = setup();
    let second = setup.add_node("gpu-node-02");
    let v = setup.start();
    let own = push(&v, &attest(&v, &setup.node, None));
    let borrowed = push(&v, &attest(&v, &second, Some("hgx-h200")));
    let report =
        |lease: &str| json!({"mode": "enforce", "state": "leased", "lease": lease, "gpus": []});

    // Root on node 1 re-signs its attestation with a gating report carrying node 2's lease.
    let token = attest(&v, &setup.node, None);
    let lease = borrowed["lease"].as_str().unwrap().to_owned();
    let token = resigned(&setup.node, &token, |c| {
        c["tppguard.gating"] = report(&lease);
    });
    let answer = push(&v, &token);
    assert!(
        codes(&answer).contains(&"gating_lease_foreign".to_owned()),
        "{answer}"
    );
    let f = answer["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "gating_lease_foreign")
        .unwrap();
    assert_eq!(f["figures"]["problem"], "lease_other_node", "{f}");

    // Its own lease with the payload changed (every GPU allowed), the signature kept: forged.
    let own_lease = own["lease"].as_str().unwrap();
    let mut payload = jws_payload(own_lease);
    payload["tppguard.excluded"] = json!([]);
    let parts: Vec<&str> = own_lease.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    let token = attest(&v, &setup.node, None);
    let token = resigned(&setup.node, &token, |c| {
        c["tppguard.gating"] = report(&forged);
    });
    let answer = push(&v, &token);
    let f = answer["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "gating_lease_foreign")
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(f["figures"]["problem"], "lease_bad_signature", "{f}");
    assert_eq!(f["severity"], "violation");

    // A restarted verifier reads the report back from its store, checks its lease again
    // under the result key and reaches the same finding.
    let node = answer["node"].as_str().unwrap().to_owned();
    drop(v);
    let v = setup.start();
    let (_, findings) = v.get_json(&format!(
        "/v1/findings?node={}",
        crate::support::path_segment(&node)
    ));
    assert!(
        findings["findings"].as_array().unwrap().iter().any(|f| {
            f["code"] == "gating_lease_foreign" && f["figures"]["problem"] == "lease_bad_signature"
        }),
        "{findings}"
    );

    // Its own lease, untouched: no finding about it.
    let token = attest(&v, &setup.node, None);
    let token = resigned(&setup.node, &token, |c| {
        c["tppguard.gating"] = report(own_lease);
    });
    let answer = push(&v, &token);
    assert!(
        !codes(&answer).iter().any(|c| c.starts_with("gating_")),
        "{answer}"
    );
}
