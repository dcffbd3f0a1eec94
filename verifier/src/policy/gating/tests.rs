use super::*;

use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::SigningKey;
use tppguard_proto::lease::GpuRef;
use tppguard_proto::licence::Licence;
use tppguard_proto::ruleset::shipped_rule_set;

use crate::policy::tests::{attestation_at, dgx};
use crate::policy::{Finding, FleetVerdict, Severity, VerifiedAttestation, evaluate};

const EXAMPLE: &str = include_str!("../../../../examples/licence.toml");
const TOO_SMALL: &str = include_str!("../../../../examples/licence-too-small.toml");
const AT: i64 = 1_790_000_000;

fn licence(text: &str) -> VerifiedLicence {
    VerifiedLicence::new(Licence::from_toml_str(text).unwrap(), "CN=LA".to_owned())
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_ed25519_seed(&[seed; 32]).unwrap()
}

fn verifier_key() -> SigningKey {
    key(7)
}

fn plain(name: &str) -> VerifiedAttestation {
    attestation_at(name, AT - 60, Some(AT - 50), Some("fra-1"), &dgx(name))
}

fn evaluate_under(lic: &str, nodes: &[VerifiedAttestation]) -> FleetVerdict {
    evaluate(
        &[licence(lic)],
        &[],
        &shipped_rule_set("us-eccn-3a090").unwrap(),
        nodes,
        AT,
    )
}

/// The lease `signer` signs for node `for_node` under the too-small licence (GPUs 6 and 7
/// over its aggregate TPP cap), issued at `at`.
fn lease(signer: &SigningKey, for_node: &str, at: i64) -> String {
    let v = evaluate_under(TOO_SMALL, &[plain(for_node)]);
    let index = v.finding_index();
    let claims = crate::lease::build(&v, &index, id(for_node), at, "test").unwrap();
    assert_eq!(
        claims
            .excluded
            .iter()
            .map(|e| e.gpu.index)
            .collect::<Vec<_>>(),
        [6, 7]
    );
    crate::lease::sign(&claims, signer).unwrap()
}

fn id(name: &str) -> NodeId {
    NodeId::from_spki_der(name.as_bytes())
}

fn gate(node: &str, i: u32, gate: bool, mode: ComputeMode) -> GpuGate {
    GpuGate {
        gpu: GpuRef {
            index: i,
            uuid: Some(format!("GPU-{node}-{i}")),
            serial: None,
            hardware_id: None,
        },
        gate,
        compute_mode: Some(mode),
        held: (mode == ComputeMode::Prohibited) == gate,
        error: None,
    }
}

/// Node `name` (8 H100) reporting `report`, its lease checked under the verifier's key (or
/// none) at `at`.
fn reporting(
    name: &str,
    report: GatingReport,
    lease_key: Option<&SigningKey>,
    at: i64,
) -> VerifiedAttestation {
    let mut a = plain(name);
    a.claims.gating = Some(report);
    let vk = lease_key.map(SigningKey::verifying_key);
    let facts = crate::attestation::gating_facts(&a.claims, &a.node_id(), vk.as_ref(), at);
    a.with_gating(facts)
}

/// An `enforce` report in state `leased` over 8 GPUs, 6 and 7 gated and held, carrying
/// `lease`.
fn enforcing(node: &str, lease: Option<String>) -> GatingReport {
    GatingReport {
        mode: GatingMode::Enforce,
        state: GatingState::Leased,
        lease,
        gpus: (0..8)
            .map(|i| {
                let gated = i >= 6;
                let mode = if gated {
                    ComputeMode::Prohibited
                } else {
                    ComputeMode::Default
                };
                gate(node, i, gated, mode)
            })
            .collect(),
        cc_ready: None,
    }
}

fn gating_findings(v: &FleetVerdict) -> Vec<&Finding> {
    v.findings
        .iter()
        .filter(|f| f.code.starts_with("gating_"))
        .collect()
}

#[test]
fn a_held_lease_is_quiet_and_a_gpu_not_held_is_a_violation() {
    let k = verifier_key();
    let report = enforcing("node-1", Some(lease(&k, "node-1", AT - 30)));
    let a = reporting("node-1", report.clone(), Some(&k), AT);
    let facts = a.gating().unwrap();
    let LeaseCheck::Verified(l) = &facts.lease else {
        panic!("{:?}", facts.lease)
    };
    assert_eq!(l.time, LeaseTime::Valid);
    assert!(gating_findings(&evaluate_under(EXAMPLE, &[a])).is_empty());

    // The agent says it gated GPU 7, but the driver read back the default mode.
    let mut report = report;
    report.gpus[7] = GpuGate {
        held: false,
        error: Some("no_permission".to_owned()),
        ..gate("node-1", 7, true, ComputeMode::Default)
    };
    let v = evaluate_under(EXAMPLE, &[reporting("node-1", report, Some(&k), AT)]);
    let found = gating_findings(&v);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = found[0];
    assert_eq!(
        (f.code, f.severity),
        ("gating_not_held", Severity::Violation)
    );
    assert_eq!(f.gpu.as_deref(), Some("gpu7"));
    assert_eq!(f.node, Some(id("node-1").to_string()));
    assert!(
        f.sentence.contains("aggregate_tpp_above_cap"),
        "{}",
        f.sentence
    );
    assert!(f.sentence.contains("no_permission"), "{}", f.sentence);
    assert!(!v.verdict.is_compliant());
}

#[test]
fn a_gpu_the_lease_leaves_out_and_the_report_omits_is_not_held() {
    let k = verifier_key();
    let mut report = enforcing("node-1", Some(lease(&k, "node-1", AT - 30)));
    report.gpus.truncate(6);
    let v = evaluate_under(EXAMPLE, &[reporting("node-1", report, Some(&k), AT)]);
    let gpus: Vec<_> = gating_findings(&v)
        .iter()
        .map(|f| (f.code, f.gpu.clone().unwrap()))
        .collect();
    assert_eq!(
        gpus,
        [
            ("gating_not_held", "gpu6".to_owned()),
            ("gating_not_held", "gpu7".to_owned())
        ]
    );
    assert!(gating_findings(&v)[0].sentence.contains("does not name it"));
}

#[test]
fn a_forged_lease_is_foreign_and_gates_nothing_it_names() {
    let forger = key(9);
    // Signed by another key: its exclusions are not the verifier's, and the report that
    // acts on it (nothing gated) is judged by the agent's own marks only.
    let mut report = enforcing("node-1", Some(lease(&forger, "node-1", AT - 30)));
    for g in &mut report.gpus {
        *g = gate("node-1", g.gpu.index, false, ComputeMode::Default);
    }
    let a = reporting("node-1", report, Some(&verifier_key()), AT);
    assert!(matches!(
        a.gating().unwrap().lease,
        LeaseCheck::Foreign {
            code: "lease_bad_signature",
            ..
        }
    ));
    let v = evaluate_under(EXAMPLE, &[a]);
    let found = gating_findings(&v);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].code, found[0].severity),
        ("gating_lease_foreign", Severity::Violation)
    );
    assert!(found[0].sentence.contains("forged or borrowed"));
}

#[test]
fn another_nodes_lease_is_borrowed() {
    let k = verifier_key();
    let report = enforcing("node-1", Some(lease(&k, "node-2", AT - 30)));
    let a = reporting("node-1", report, Some(&k), AT);
    let LeaseCheck::Foreign { code, detail } = &a.gating().unwrap().lease else {
        panic!()
    };
    assert_eq!(*code, "lease_other_node");
    assert!(detail.contains(&id("node-2").to_string()[..16]), "{detail}");
    let v = evaluate_under(EXAMPLE, &[a]);
    assert_eq!(
        gating_findings(&v)
            .iter()
            .map(|f| f.code)
            .collect::<Vec<_>>(),
        ["gating_lease_foreign"]
    );
    // Not a lease at all is foreign too.
    let report = enforcing("node-1", Some("not.a.lease".to_owned()));
    let a = reporting("node-1", report, Some(&k), AT);
    assert!(matches!(
        a.gating().unwrap().lease,
        LeaseCheck::Foreign { .. }
    ));
}

#[test]
fn an_expired_lease_is_history_named_not_a_fault() {
    let k = verifier_key();
    // Issued two days before: past its hour and its hour of grace.
    let mut report = enforcing("node-1", Some(lease(&k, "node-1", AT - 2 * 86_400)));
    report.state = GatingState::LapsedFailOpen;
    let a = reporting("node-1", report.clone(), Some(&k), AT);
    let LeaseCheck::Verified(l) = &a.gating().unwrap().lease else {
        panic!()
    };
    assert_eq!(l.time, LeaseTime::Lapsed);
    assert!(gating_findings(&evaluate_under(EXAMPLE, &[a])).is_empty());
    report.gpus[6] = gate("node-1", 6, false, ComputeMode::Default);
    let v = evaluate_under(EXAMPLE, &[reporting("node-1", report, Some(&k), AT)]);
    let found = gating_findings(&v);
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .sentence
            .contains("had expired when the attestation arrived"),
        "{}",
        found[0].sentence
    );
}

#[test]
fn observe_mode_warns_of_what_would_be_gated() {
    let k = verifier_key();
    let mut report = enforcing("node-1", Some(lease(&k, "node-1", AT - 30)));
    report.mode = GatingMode::Observe;
    for g in &mut report.gpus {
        *g = gate(
            "node-1",
            g.gpu.index,
            g.gpu.index >= 6,
            ComputeMode::Default,
        );
    }
    let v = evaluate_under(EXAMPLE, &[reporting("node-1", report, Some(&k), AT)]);
    let found = gating_findings(&v);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].code, found[0].severity),
        ("gating_observe_only", Severity::Warning)
    );
    assert_eq!(
        found[0].figures,
        Reason::GatingObserveOnly {
            gpus: vec![6, 7],
            lapsed_fail_closed: false
        }
    );
    assert!(v.verdict.is_compliant(), "a warning only");
}

#[test]
fn lapsed_fail_closed_gates_every_gpu_and_an_unverifiable_lease_reads_no_exclusions() {
    let k = verifier_key();
    let mut report = enforcing("node-1", Some(lease(&k, "node-1", AT - 30)));
    report.state = GatingState::LapsedFailClosed;
    // Without the key (`check` without one), nothing is read from the lease; the lapsed
    // state alone asks every GPU gated, and GPUs 0 to 5 are not.
    let a = reporting("node-1", report, None, AT);
    assert_eq!(a.gating().unwrap().lease, LeaseCheck::Unverifiable);
    let v = evaluate_under(EXAMPLE, &[a]);
    let gpus: Vec<_> = gating_findings(&v)
        .iter()
        .map(|f| f.gpu.clone().unwrap())
        .collect();
    assert_eq!(gpus, (0..6).map(|i| format!("gpu{i}")).collect::<Vec<_>>());
    assert!(gating_findings(&v)[0].sentence.contains("fail_closed"));
}

#[test]
fn a_report_read_back_from_storage_is_taken_as_unverifiable() {
    let k = verifier_key();
    let mut a = plain("node-1");
    a.claims.gating = Some(enforcing("node-1", Some(lease(&k, "node-1", AT - 30))));
    assert!(a.gating().is_none());
    assert!(gating_findings(&evaluate_under(EXAMPLE, &[a])).is_empty());
}

#[test]
fn a_fail_closed_licence_without_a_gating_report_is_a_warning() {
    let closed = format!("{EXAMPLE}\n[lease]\non_expiry = \"fail_closed\"\n");
    let v = evaluate_under(&closed, &[plain("node-1")]);
    let found = gating_findings(&v);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].code, found[0].severity),
        ("gating_not_reported", Severity::Warning)
    );
    assert_eq!(found[0].licence.as_deref(), Some("EXAMPLE-DE-2026-0142"));
    assert_eq!(v.licences[0].lease.on_expiry, OnExpiry::FailClosed);
    // Failing open, no report is nothing to say.
    let v = evaluate_under(EXAMPLE, &[plain("node-1")]);
    assert!(gating_findings(&v).is_empty());
    assert_eq!(v.licences[0].lease.on_expiry, OnExpiry::FailOpen);
    let json = serde_json::to_value(&v.licences[0]).unwrap();
    assert_eq!(json["lease"]["lifetime_s"], 3600);
    assert_eq!(json["lease"]["on_expiry"], "fail_open");
}
