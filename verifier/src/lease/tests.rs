use super::*;

use serde_json::{Value, json};
use tppguard_proto::claims::AttestationClaims;
use tppguard_proto::lease::{LeaseTime, OnExpiry};
use tppguard_proto::licence::Licence;
use tppguard_proto::ruleset::shipped_rule_set;
use tppguard_proto::site::SiteId;

use crate::policy::bench_support::{AT, licence_toml};
use crate::policy::{VerifiedAttestation, VerifiedLicence, evaluate};

const H100: (&str, &str) = ("NVIDIA H100 80GB HBM3", "0x2330");
const A100: (&str, &str) = ("NVIDIA A100-SXM4-80GB", "0x20b2");
/// A consumer card the rule set does not control.
const GTX: (&str, &str) = ("GeForce GTX 1070 Ti", "0x1b82");

fn claims(node: &str, iat: i64, gpus: &[(&str, &str)]) -> AttestationClaims {
    let submods: serde_json::Map<String, Value> = gpus
        .iter()
        .enumerate()
        .map(|(i, (name, device_id))| {
            let submod = json!({
                "index": i, "status": "ok",
                "uuid": format!("GPU-{node}-{i}"), "serial": format!("165{i:04}"),
                "name": name, "brand": "NVIDIA", "board_part_number": null,
                "pci": {"bus_id": format!("00000000:{:02x}:00.0", i + 0x18),
                        "vendor_id": "0x10de", "device_id": device_id, "subsystem_id": null},
                "architecture": "Hopper", "cuda_compute_capability": "9.0",
                "multiprocessor_count": 132, "memory_total_bytes": 85_899_345_920_u64,
                "max_sm_clock_mhz": 1980, "max_memory_clock_mhz": 2619,
                "power_limit_mw": 700_000, "vbios_version": "96.00.9F.00.01",
                "mig": null, "absent": {},
                "classification": {"tpp": null, "tpp_basis": null,
                                   "performance_density": null, "eccn": null}
            });
            (format!("gpu{i}"), submod)
        })
        .collect();
    let text = json!({
        "iss": node, "iat": iat,
        "eat_nonce": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "eat_profile": "tag:tppguard.dev,2026:attestation/v1",
        "submods": submods,
        "tppguard.host": {"hostname": node, "machine_id": null, "os": "Linux",
            "kernel": "6.8.0", "cpu_arch": "x86_64", "cpu_model": null, "cpu_count": 224,
            "physical_cores": 112, "memory_bytes": 2_199_023_255_552_u64},
        "tppguard.evidence_tier": "declared",
        "tppguard.driver": {"driver_version": "550.90.07", "nvml_version": "12.550.90.07",
            "cuda_driver_version": "12.4", "confidential_computing": null, "absent": {}}
    })
    .to_string();
    AttestationClaims::from_json(text.as_bytes()).unwrap()
}

/// Node `name` at `site` (certified), received at `received_at`.
fn node(name: &str, site: &str, received_at: i64, gpus: &[(&str, &str)]) -> VerifiedAttestation {
    let mut hash = [0u8; 32];
    for (h, b) in hash.iter_mut().zip(name.bytes()) {
        *h = b;
    }
    VerifiedAttestation::from_stored(
        claims(name, received_at - 5, gpus),
        NodeId::from_spki_der(name.as_bytes()),
        name.to_owned(),
        Some(SiteId::parse(site).unwrap()),
        Some(received_at),
        hash,
    )
}

fn licence(text: &str) -> VerifiedLicence {
    VerifiedLicence::new(Licence::from_toml_str(text).unwrap(), "CN=LA".to_owned())
}

fn id(name: &str) -> NodeId {
    NodeId::from_spki_der(name.as_bytes())
}

fn lease_of(lics: &[VerifiedLicence], nodes: &[VerifiedAttestation], who: &str) -> LeaseClaims {
    let v = evaluate(
        lics,
        &[],
        &shipped_rule_set("us-eccn-3a090").unwrap(),
        nodes,
        AT,
    );
    let index = v.finding_index();
    let lease = build(&v, &index, id(who), AT, "tppguard-verifier:test").unwrap();
    // Whatever the verifier writes, the agent's parser takes.
    let json = lease.to_json().unwrap();
    assert_eq!(LeaseClaims::from_json(&json).unwrap(), lease);
    lease
}

fn indexes(lease: &LeaseClaims) -> (Vec<u32>, Vec<u32>) {
    (
        lease.gpus.iter().map(|g| g.gpu.index).collect(),
        lease.excluded.iter().map(|e| e.gpu.index).collect(),
    )
}

fn codes(e: &LeaseExclusion) -> Vec<&str> {
    e.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn an_over_cap_licence_leaves_out_the_excess_in_an_order_that_never_changes() {
    let lic = licence(&licence_toml(0, 10, 1_000_000));
    // The walk goes by node id: whichever of the two comes first keeps its eight GPUs.
    let (ahead, behind) = if id("node-a") < id("node-b") {
        ("node-a", "node-b")
    } else {
        ("node-b", "node-a")
    };
    let nodes = [
        node(behind, "site-0", AT - 200, &[H100; 8]),
        node(ahead, "site-0", AT - 100, &[H100; 8]),
    ];
    let a = lease_of(std::slice::from_ref(&lic), &nodes, ahead);
    assert_eq!(indexes(&a), ((0..8).collect(), vec![]));
    assert!(
        a.gpus
            .iter()
            .all(|g| g.licence.as_deref() == Some("SYN-DE-0000"))
    );
    assert_eq!(
        a.verdict,
        LeaseVerdict::NotCompliant,
        "the licence is over its cap"
    );
    let b = lease_of(std::slice::from_ref(&lic), &nodes, behind);
    assert_eq!(indexes(&b), (vec![0, 1], (2..8).collect()));
    for e in &b.excluded {
        assert_eq!(codes(e), ["device_count_above_cap"]);
        assert!(e.reasons[0].sentence.contains("allows 10 devices"), "{e:?}");
    }
    // Receipt order changes nothing: each node re-attesting (and so received last) gets the
    // same lease, so the leases in force allow exactly the cap, never less.
    for (who, want) in [(ahead, 8), (behind, 2)] {
        let again = [
            node(behind, "site-0", AT - 50, &[H100; 8]),
            node(ahead, "site-0", AT - 60, &[H100; 8]),
        ];
        let swapped = [
            node(behind, "site-0", AT - 60, &[H100; 8]),
            node(ahead, "site-0", AT - 50, &[H100; 8]),
        ];
        for fleet in [&again, &swapped] {
            let l = lease_of(std::slice::from_ref(&lic), fleet, who);
            assert_eq!(l.gpus.len(), want, "{who}");
        }
    }
}

#[test]
fn the_aggregate_tpp_cap_leaves_out_the_gpu_that_would_pass_it() {
    // Room for 2.5 H100 (15,831.2 TPP each).
    let lic = licence(&licence_toml(0, 100, 40_000));
    let lease = lease_of(
        &[lic],
        &[node("node-a", "site-0", AT - 10, &[H100; 4])],
        "node-a",
    );
    assert_eq!(indexes(&lease), (vec![0, 1], vec![2, 3]));
    let r = &lease.excluded[0].reasons[0];
    assert_eq!(r.code, "aggregate_tpp_above_cap");
    assert!(
        r.sentence.contains("40000") && r.sentence.contains("31662.4"),
        "{r:?}"
    );
}

#[test]
fn a_gpu_in_violation_is_left_out_with_its_finding_and_still_takes_room() {
    // The licence allows H100 only, and 8 devices: the A100 is left out for itself, and it
    // counts in the licence's usage, so it takes room too (a node that keeps using it must
    // not have freed room for more): seven H100 fit beside it.
    let lic = licence(&licence_toml(0, 8, 1_000_000));
    let mut gpus = vec![A100];
    gpus.extend([H100; 8]);
    let lease = lease_of(
        &[lic],
        &[node("node-a", "site-0", AT - 10, &gpus)],
        "node-a",
    );
    assert_eq!(indexes(&lease), ((1..8).collect(), vec![0, 8]));
    assert_eq!(codes(&lease.excluded[0]), ["model_not_allowed"]);
    assert_eq!(codes(&lease.excluded[1]), ["device_count_above_cap"]);
    assert!(lease.excluded[0].reasons[0].sentence.contains("A100"));
    assert_eq!(lease.excluded[0].gpu.uuid.as_deref(), Some("GPU-node-a-0"));
}

#[test]
fn a_gpu_no_licence_controls_is_allowed_under_no_licence() {
    let lic = licence(&licence_toml(0, 8, 1_000_000));
    let lease = lease_of(
        &[lic],
        &[node("node-a", "site-0", AT - 10, &[H100, GTX])],
        "node-a",
    );
    assert_eq!(indexes(&lease), (vec![0, 1], vec![]));
    assert_eq!(lease.gpus[0].licence.as_deref(), Some("SYN-DE-0000"));
    assert_eq!(lease.gpus[1].licence, None);
    // At a site no licence covers, the controlled GPU is left out and the consumer card
    // still allowed; the default terms apply.
    let lease = lease_of(
        &[],
        &[node("node-a", "site-9", AT - 10, &[H100, GTX])],
        "node-a",
    );
    assert_eq!(indexes(&lease), (vec![1], vec![0]));
    assert_eq!(codes(&lease.excluded[0]), ["node_unassigned"]);
    assert_eq!(lease.exp - lease.nbf, 3600);
    assert_eq!(lease.on_expiry, OnExpiry::FailOpen);
}

#[test]
fn node_wide_violations_leave_out_every_controlled_gpu() {
    let expired = licence_toml(0, 8, 1_000_000).replace(
        "valid_until = 2028-01-01T00:00:00Z",
        "valid_until = 2026-02-01T00:00:00Z",
    );
    let lease = lease_of(
        &[licence(&expired)],
        &[node("node-a", "site-0", AT - 10, &[H100, H100, GTX])],
        "node-a",
    );
    assert_eq!(indexes(&lease), (vec![2], vec![0, 1]));
    assert_eq!(codes(&lease.excluded[0]), ["licence_expired"]);
    assert_eq!(NODE_WIDE.len(), 5);
    for code in NODE_WIDE {
        assert!(crate::policy::Reason::CODES.contains(&code), "{code}");
    }
}

#[test]
fn a_site_claim_mismatch_leaves_out_every_controlled_gpu_of_the_node_only() {
    let lic = licence(&licence_toml(0, 8, 1_000_000));
    // The node says it stands at site-1; its certificate certifies site-0.
    let liar = node("node-a", "site-0", AT - 10, &[H100, GTX]);
    let claims = {
        let mut c = liar.claims().clone();
        c.site = Some("site-1".to_owned());
        c
    };
    let liar = VerifiedAttestation::from_stored(
        claims,
        id("node-a"),
        "node-a".to_owned(),
        Some(SiteId::parse("site-0").unwrap()),
        Some(AT - 10),
        [1u8; 32],
    );
    let honest = node("node-b", "site-0", AT - 20, &[H100]);
    let nodes = [liar, honest];
    let lease = lease_of(std::slice::from_ref(&lic), &nodes, "node-a");
    assert_eq!(indexes(&lease), (vec![1], vec![0]));
    assert_eq!(codes(&lease.excluded[0]), ["site_claim_mismatch"]);
    let lease = lease_of(&[lic], &nodes, "node-b");
    assert_eq!(indexes(&lease), (vec![0], vec![]));
}

#[test]
fn the_copy_not_counted_of_a_duplicate_across_licences_is_left_out() {
    // Two nodes at two licences' sites report the same two GPUs (the same UUIDs): each
    // counts once, at the stricter licence; the other copy is left out.
    let lics = [
        licence(&licence_toml(0, 8, 1_000_000)),
        licence(&licence_toml(1, 8, 2_000_000)),
    ];
    let at = |name: &str, site: &str, received_at: i64| {
        VerifiedAttestation::from_stored(
            claims("shared", received_at - 5, &[H100, H100]),
            id(name),
            name.to_owned(),
            Some(SiteId::parse(site).unwrap()),
            Some(received_at),
            [u8::try_from(name.len()).unwrap(); 32],
        )
    };
    let nodes = [
        at("node-a", "site-0", AT - 20),
        at("node-bb", "site-1", AT - 10),
    ];
    let a = lease_of(&lics, &nodes, "node-a");
    let b = lease_of(&lics, &nodes, "node-bb");
    // The stricter licence (smaller aggregate cap) is site-0's: node-a keeps them.
    assert_eq!(indexes(&a), (vec![0, 1], vec![]));
    assert_eq!(indexes(&b), (vec![], vec![0, 1]));
    assert_eq!(codes(&b.excluded[0]), ["duplicate_device"]);
}

#[test]
fn a_stale_node_keeps_its_gpus_and_the_lease_says_unproven() {
    let lic = licence(&licence_toml(0, 8, 1_000_000));
    let old = node("node-a", "site-0", AT - 3 * 86_400, &[H100; 2]);
    let lease = lease_of(&[lic], &[old], "node-a");
    assert_eq!(indexes(&lease), (vec![0, 1], vec![]));
    assert_eq!(lease.verdict, LeaseVerdict::Unproven);
}

#[test]
fn the_licence_lease_terms_set_the_instants() {
    let text = format!(
        "{}\n[lease]\nlifetime = \"2h\"\nrenew_before = \"30m\"\ngrace = \"10m\"\non_expiry = \"fail_closed\"\n",
        licence_toml(0, 8, 1_000_000)
    );
    let lease = lease_of(
        &[licence(&text)],
        &[node("node-a", "site-0", AT - 10, &[H100])],
        "node-a",
    );
    assert_eq!((lease.iat, lease.nbf, lease.exp), (AT, AT, AT + 7200));
    assert_eq!(lease.renew_at, AT + 7200 - 1800);
    assert_eq!(
        (lease.grace_s, lease.on_expiry),
        (600, OnExpiry::FailClosed)
    );
    assert_eq!(lease.sub, id("node-a").to_string());
    assert_eq!(lease.eat_profile, LEASE_PROFILE);
    assert_eq!(lease.time_at(AT + 7200 + 599), LeaseTime::Grace);
    assert_eq!(lease.verdict, LeaseVerdict::Compliant);
}

#[test]
fn a_node_the_verdict_lacks_has_no_lease() {
    let v = evaluate(
        &[],
        &[],
        &shipped_rule_set("us-eccn-3a090").unwrap(),
        &[],
        AT,
    );
    let index = v.finding_index();
    assert!(build(&v, &index, id("nobody"), AT, "x").is_none());
}

#[test]
fn a_signed_lease_verifies_under_the_result_key_only() {
    let key = SigningKey::from_ed25519_seed(&[7u8; 32]).unwrap();
    let other = SigningKey::from_ed25519_seed(&[8u8; 32]).unwrap();
    let lic = licence(&licence_toml(0, 8, 1_000_000));
    let lease = lease_of(
        &[lic],
        &[node("node-a", "site-0", AT - 10, &[H100])],
        "node-a",
    );
    let token = sign(&lease, &key).unwrap();
    let decoded = jws::decode(&token).unwrap();
    assert_eq!(decoded.header().typ.as_deref(), Some(LEASE_TYP));
    let verified = decoded.verify(&key.verifying_key()).unwrap();
    assert_eq!(LeaseClaims::from_json(verified.payload()).unwrap(), lease);
    assert!(decoded.verify(&other.verifying_key()).is_err());
    assert!(issuer(&key).starts_with("tppguard-verifier:"));
    assert_ne!(issuer(&key), issuer(&other));
}
