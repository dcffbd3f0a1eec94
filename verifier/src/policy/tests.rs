use std::collections::HashSet;

use serde_json::{Value, json};
use tppguard_proto::claims::AttestationClaims;
use tppguard_proto::identity::NodeId;
use tppguard_proto::licence::Licence;
use tppguard_proto::ruleset::{RuleSet, shipped_rule_set};
use tppguard_proto::site::SiteId;

use super::gpu::pci_combined;
use super::*;
use tppguard_proto::claims::Pci;

const EXAMPLE: &str = include_str!("../../../examples/licence.toml");
const TOO_SMALL: &str = include_str!("../../../examples/licence-too-small.toml");
const MEASURED: &str = include_str!("../../../examples/licence-measured.toml");
const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// 2026-09-21, inside both example licences' validity.
const AT: i64 = 1_790_000_000;

/// [`super::evaluate`] without shipments: most tests here are about everything else.
fn evaluate<'a>(
    licences: &[VerifiedLicence],
    rule_set: &RuleSet,
    attestations: impl IntoIterator<Item = &'a VerifiedAttestation>,
    at_unix: i64,
) -> FleetVerdict {
    super::evaluate(licences, &[], rule_set, attestations, at_unix)
}

/// One GPU of a claim set: PCI device id, NVML name, agent TPP and ECCN.
#[derive(Clone, Debug)]
pub(super) struct Gpu<'a> {
    uuid: Option<String>,
    serial: Option<&'a str>,
    device_id: &'a str,
    name: &'a str,
    agent_tpp: Option<f64>,
    agent_eccn: &'a str,
    status: &'a str,
    /// The submod's `measurement`, as JSON.
    measurement: Option<Value>,
}

fn h100(node: &str, i: usize) -> Gpu<'static> {
    Gpu {
        uuid: Some(format!("GPU-{node}-{i}")),
        serial: Some("1650123456789"),
        device_id: "0x2330",
        name: "NVIDIA H100 80GB HBM3",
        agent_tpp: Some(15831.2),
        agent_eccn: "3A090.a",
        status: "ok",
        measurement: None,
    }
}

fn a100(node: &str, i: usize) -> Gpu<'static> {
    Gpu {
        device_id: "0x20b2",
        name: "NVIDIA A100-SXM4-80GB",
        agent_tpp: None,
        agent_eccn: "3A090.a",
        ..h100(node, i)
    }
}

/// A valid claim set as JSON text, parsed by the one entry for outside bytes.
fn claims(node: &str, iat: i64, tier: &str, gpus: &[Gpu<'_>]) -> AttestationClaims {
    let submods: serde_json::Map<String, Value> = gpus
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut submod = json!({
                    "index": i,
                    "status": g.status,
                    "uuid": g.uuid,
                    "serial": g.serial,
                    "name": g.name,
                    "brand": "NVIDIA",
                    "board_part_number": null,
                    "pci": {
                        "bus_id": format!("00000000:{:02x}:00.0", i + 0x18),
                        "vendor_id": "0x10de",
                        "device_id": g.device_id,
                        "subsystem_id": null
                    },
                    "architecture": "Hopper",
                    "cuda_compute_capability": "9.0",
                    "multiprocessor_count": 132,
                    "memory_total_bytes": 85_899_345_920_u64,
                    "max_sm_clock_mhz": 1980,
                    "max_memory_clock_mhz": 2619,
                    "power_limit_mw": 700_000,
                    "vbios_version": "96.00.9F.00.01",
                    "mig": null,
                    "absent": {},
                    "classification": {
                        "tpp": g.agent_tpp,
                        "tpp_basis": "fp8",
                        "performance_density": null,
                        "eccn": g.agent_eccn
                    }
            });
            if let Some(m) = &g.measurement {
                submod["measurement"] = m.clone();
            }
            (format!("gpu{i}"), submod)
        })
        .collect();
    let text = json!({
        "iss": node,
        "iat": iat,
        "eat_nonce": NONCE,
        "eat_profile": "tag:tppguard.dev,2026:attestation/v1",
        "submods": submods,
        "tppguard.host": {
            "hostname": node,
            "machine_id": null,
            "os": "Linux",
            "kernel": "6.8.0",
            "cpu_arch": "x86_64",
            "cpu_model": null,
            "cpu_count": 224,
            "physical_cores": 112,
            "memory_bytes": 2_199_023_255_552_u64
        },
        "tppguard.evidence_tier": tier,
        "tppguard.driver": {
            "driver_version": "550.90.07",
            "nvml_version": "12.550.90.07",
            "cuda_driver_version": "12.4",
            "confidential_computing": null,
            "absent": {}
        }
    })
    .to_string();
    AttestationClaims::from_json(text.as_bytes()).unwrap()
}

pub(super) fn dgx(node: &str) -> Vec<Gpu<'static>> {
    (0..8).map(|i| h100(node, i)).collect()
}

/// A node's attestation: its key stands for `node`, received at `received_at` (`serve`) or
/// not (`check`), its certificate certifying `site`.
pub(super) fn attestation_at(
    node: &str,
    iat: i64,
    received_at: Option<i64>,
    site: Option<&str>,
    gpus: &[Gpu<'_>],
) -> VerifiedAttestation {
    let claims = claims(node, iat, "declared", gpus);
    let mut hash = [0u8; 32];
    for (h, b) in hash.iter_mut().zip(
        node.bytes()
            .chain(iat.to_be_bytes())
            .chain(received_at.unwrap_or(0).to_be_bytes()),
    ) {
        *h = b;
    }
    VerifiedAttestation::from_stored(
        claims,
        NodeId::from_spki_der(node.as_bytes()),
        node.to_owned(),
        site.map(|s| SiteId::parse(s).unwrap()),
        received_at,
        hash,
    )
}

/// A node's attestation at `iat` with a certificate certifying site `fra-1`, the example
/// licence's.
fn attestation(node: &str, iat: i64, tier: &str, gpus: &[Gpu<'_>]) -> VerifiedAttestation {
    let mut a = attestation_at(node, iat, None, Some("fra-1"), gpus);
    a.claims = claims(node, iat, tier, gpus);
    a
}

fn node(name: &str, iat: i64) -> VerifiedAttestation {
    attestation(name, iat, "declared", &dgx(name))
}

fn licence(text: &str) -> VerifiedLicence {
    VerifiedLicence::new(
        Licence::from_toml_str(text).unwrap(),
        "CN=Example licence authority".to_owned(),
    )
}

/// `examples/licence.toml` with one line replaced.
fn licence_with(old: &str, new: &str) -> VerifiedLicence {
    assert!(EXAMPLE.contains(old), "{old}");
    licence(&EXAMPLE.replacen(old, new, 1))
}

fn eccn_rules() -> RuleSet {
    shipped_rule_set("us-eccn-3a090").unwrap()
}

/// The node id of the test node `name` (its key stands for its name).
fn id(name: &str) -> String {
    NodeId::from_spki_der(name.as_bytes()).to_string()
}

/// The verdict on the node whose subject is `name`.
fn node_named<'v>(v: &'v FleetVerdict, name: &str) -> &'v NodeVerdict {
    v.nodes.iter().find(|n| n.subject == name).unwrap()
}

/// How a duplicate finding names GPU `gpu` of node `name`.
fn place(name: &str, gpu: &str) -> String {
    format!("{name} [{}]/{gpu}", &id(name)[..12])
}

/// The codes of the verdict's findings, less `no_licence_required`: every licence of an A:5
/// destination (the example licences' Germany) under `us-eccn-3a090` carries that one info
/// finding, which `mod licence_need` tests with [`all_codes`].
fn codes(v: &FleetVerdict) -> Vec<&'static str> {
    all_codes(v)
        .into_iter()
        .filter(|c| *c != "no_licence_required")
        .collect()
}

fn all_codes(v: &FleetVerdict) -> Vec<&'static str> {
    v.findings.iter().map(|f| f.code).collect()
}

fn only(v: &FleetVerdict, code: &str) -> Vec<Finding> {
    v.findings
        .iter()
        .filter(|f| f.code == code)
        .cloned()
        .collect()
}

#[test]
fn dgx_h100_is_compliant_under_the_example_licence() {
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[node("node-1", AT - 60)],
        AT,
    );
    assert!(v.verdict.is_compliant(), "{:#?}", v.findings);
    assert!(codes(&v).is_empty(), "{:#?}", v.findings);
    let usage = &v.licences[0];
    assert_eq!(usage.licence, "EXAMPLE-DE-2026-0142");
    // A German licensee with a German parent, in Germany (A:5): no licence needed.
    assert_eq!(usage.licence_need.not_required, 8);
    assert_eq!(all_codes(&v), ["no_licence_required"]);
    assert_eq!(usage.devices, DeviceCap::new(8, 2048));
    assert_eq!(usage.tpp.used.to_string(), "126649.6");
    assert_eq!(usage.tpp.headroom.to_string(), "32373350.4");
    assert_eq!(usage.tpp.over_by, Tpp::default());
    assert_eq!(usage.tpp.used_h100_equivalents.to_string(), "8.00");
    assert_eq!(usage.severity, Severity::Info);
    let n = &v.nodes[0];
    assert_eq!(n.licence.as_deref(), Some("EXAMPLE-DE-2026-0142"));
    assert_eq!((n.devices_counted, n.stale, n.age_s), (8, false, 60));
    assert!(n.gpus.iter().all(|g| g.counted
        && g.model == Some("H100 SXM5 80GB")
        && g.outcome.as_deref() == Some("3A090.a")));
    assert_eq!(v.countries.len(), 1);
    assert_eq!(v.countries[0].country.as_str(), "DE");
    assert_eq!(v.countries[0].tpp.to_string(), "126649.6");
    assert_eq!(v.countries[0].h100_equivalents.to_string(), "8.00");
    assert_eq!(v.countries[0].allocation, None);
}

#[test]
fn too_small_licence_is_over_its_aggregate_cap() {
    let v = evaluate(
        &[licence(TOO_SMALL)],
        &eccn_rules(),
        &[node("node-1", AT - 60)],
        AT,
    );
    assert!(!v.verdict.is_compliant());
    assert_eq!(codes(&v), ["aggregate_tpp_above_cap"]);
    let f = &v.findings[0];
    assert_eq!(f.severity, Severity::Violation);
    assert_eq!(f.licence.as_deref(), Some("EXAMPLE-DE-2026-0143"));
    let Reason::AggregateTppAboveCap { used, cap, over_by } = &f.figures else {
        panic!("{f:?}");
    };
    assert_eq!(
        (used.to_string(), cap.to_string(), over_by.to_string()),
        ("126649.6".into(), "100000".into(), "26649.6".into())
    );
    assert!(f.sentence.contains("126649.6") && f.sentence.contains("100000"));
    let tpp = v.licences[0].tpp;
    assert!(tpp.is_over());
    assert_eq!(tpp.headroom, Tpp::default());
    assert_eq!(v.licences[0].severity, Severity::Violation);
}

#[test]
fn stale_node_still_counts() {
    let two_days = 2 * 86_400;
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[node("node-1", AT - two_days), node("node-2", AT)],
        AT,
    );
    assert_eq!(codes(&v), ["stale_node"]);
    assert_eq!(
        v.verdict,
        Verdict::Unproven,
        "a stale node leaves the licence unproven"
    );
    assert_eq!(v.licences[0].verdict, Verdict::Unproven);
    assert_eq!(v.countries[0].verdict, Verdict::Unproven);
    let f = &v.findings[0];
    assert_eq!(f.node.as_deref(), Some(id("node-1").as_str()));
    assert_eq!(
        f.figures,
        Reason::StaleNode {
            iat: AT - two_days,
            age_s: 172_800,
            max_age_s: 86_400
        }
    );
    let stale = node_named(&v, "node-1");
    assert!(stale.stale && stale.devices_counted == 8);
    assert_eq!(v.licences[0].devices.used, 16);
    assert_eq!(v.licences[0].stale_nodes, 1);
    assert_eq!(v.licences[0].tpp.used.to_string(), "253299.2");
}

#[test]
fn a_simulated_inventory_is_flagged_and_still_counted() {
    let mut sim = node("node-sim", AT);
    let mut claims = sim.claims().clone();
    claims.simulated = true;
    sim = VerifiedAttestation::from_stored(
        claims,
        NodeId::from_spki_der(b"node-sim"),
        "node-sim".to_owned(),
        sim.certified_site().cloned(),
        None,
        *sim.token_sha256(),
    );
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[sim, node("node-2", AT)],
        AT,
    );
    assert_eq!(codes(&v), ["simulated_inventory"]);
    assert_eq!(
        v.verdict,
        Verdict::Unproven,
        "simulated evidence is never compliant"
    );
    let f = &v.findings[0];
    assert_eq!(f.node.as_deref(), Some(id("node-sim").as_str()));
    assert_eq!(f.severity, Severity::Unproven);
    assert_eq!(f.figures, Reason::SimulatedInventory { gpus: 8 });
    assert_eq!(v.licences[0].devices.used, 16);
}

#[test]
fn same_gpu_on_two_nodes_counts_once() {
    let mut gpus_b = dgx("node-b");
    gpus_b[3] = h100("node-a", 5); // node-a's gpu5, reported again by node-b
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[
            attestation("node-b", AT, "declared", &gpus_b),
            node("node-a", AT),
        ],
        AT,
    );
    assert_eq!(codes(&v), ["duplicate_device"]);
    let f = &v.findings[0];
    assert_eq!(f.severity, Severity::Warning);
    let Reason::DuplicateDevice {
        uuid,
        seen_in,
        counted_in,
        counted_against,
        ..
    } = &f.figures
    else {
        panic!("{f:?}");
    };
    assert_eq!(uuid, "gpu-node-a-5", "named normalised");
    assert_eq!(seen_in, &[place("node-a", "gpu5"), place("node-b", "gpu3")]);
    assert_eq!(counted_in, &place("node-a", "gpu5"));
    assert_eq!(counted_against.as_deref(), Some("EXAMPLE-DE-2026-0142"));
    assert_eq!(v.licences[0].devices.used, 15);
    assert_eq!(
        v.licences[0].tpp.used,
        Tpp::sum(std::iter::repeat_n("15831.2".parse().unwrap(), 15))
    );
    let b = node_named(&v, "node-b");
    assert!(!b.gpus[3].counted);
    assert_eq!(b.devices_counted, 7);
    assert_eq!(b.severity, Severity::Warning);
}

/// Upper-casing, padding or changing the serial of a copied UUID does not make a second
/// device: the identity is the normalised UUID.
#[test]
fn a_disguised_duplicate_is_still_one_device() {
    for disguise in [
        Gpu {
            serial: Some("other"),
            ..h100("node-a", 0)
        },
        Gpu {
            serial: None,
            ..h100("node-a", 0)
        },
        Gpu {
            uuid: Some(" GPU-NODE-A-0 ".to_owned()),
            ..h100("node-a", 0)
        },
    ] {
        let mut gpus_b = dgx("node-b");
        gpus_b[0] = disguise.clone();
        let v = evaluate(
            &[licence(EXAMPLE)],
            &eccn_rules(),
            &[
                node("node-a", AT),
                attestation("node-b", AT, "declared", &gpus_b),
            ],
            AT,
        );
        assert_eq!(codes(&v), ["duplicate_device"], "{disguise:?}");
        assert_eq!(v.licences[0].devices.used, 15);
    }
}

/// A GPU whose UUID is nulled or blank has no identity: its node is unproven.
#[test]
fn a_gpu_without_identity_leaves_the_node_unproven() {
    let mut gpus = dgx("node-a");
    gpus[0].uuid = None;
    gpus[1].uuid = Some("  ".to_owned());
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[attestation("node-a", AT, "declared", &gpus)],
        AT,
    );
    assert_eq!(codes(&v), ["gpu_without_identity"]);
    assert_eq!(
        v.findings[0].figures,
        Reason::GpuWithoutIdentity { gpus: 2 }
    );
    assert_eq!(v.verdict, Verdict::Unproven);
    assert_eq!(v.licences[0].devices.used, 8, "still counted");
}

#[test]
fn evidence_tier_below_the_licence_minimum() {
    let lic = licence_with(
        r#"min_evidence_tier = "declared""#,
        r#"min_evidence_tier = "measured""#,
    );
    let v = evaluate(&[lic], &eccn_rules(), &[node("node-1", AT)], AT);
    assert_eq!(codes(&v), ["evidence_tier_too_low"]);
    assert_eq!(v.verdict, Verdict::Unproven);
    assert_eq!(
        v.findings[0].figures,
        Reason::EvidenceTierTooLow {
            have: EvidenceTier::Declared,
            need: EvidenceTier::Measured,
            gpus: 8
        }
    );
    assert!(v.findings[0].sentence.contains("declared"));
    assert!(v.findings[0].sentence.contains("measured"));
}

#[test]
fn model_not_allowed() {
    let gpus = vec![h100("n", 0), a100("n", 1)];
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &gpus)],
        AT,
    );
    // The A100 is 3A090.a too, so only the model list refuses it; the agent gave no TPP.
    assert_eq!(
        codes(&v),
        ["model_not_allowed", "agent_classification_mismatch"]
    );
    let f = &v.findings[0];
    assert_eq!(
        (f.node.as_deref(), f.gpu.as_deref()),
        (Some(id("node-1").as_str()), Some("gpu1"))
    );
    assert_eq!(
        f.figures,
        Reason::ModelNotAllowed {
            model: Some("A100 SXM4 80GB".to_owned())
        }
    );
    assert!(f.sentence.contains("A100 SXM4 80GB"));
    assert_eq!(v.licences[0].devices.used, 2);
}

#[test]
fn eccn_not_allowed_names_the_eccn() {
    let lic = licence_with(r#"eccns = ["3A090.a"]"#, r#"eccns = ["3A090.b"]"#);
    let v = evaluate(&[lic], &eccn_rules(), &[node("node-1", AT)], AT);
    assert_eq!(only(&v, "eccn_not_allowed").len(), 8);
    assert_eq!(only(&v, "model_not_allowed").len(), 0);
    let f = &v.findings[0];
    assert!(f.sentence.contains("ECCN 3A090.a"), "{}", f.sentence);
}

#[test]
fn per_device_cap() {
    let lic = licence_with(
        r#"max_tpp_per_device = "15831.2""#,
        r#"max_tpp_per_device = "15000""#,
    );
    let v = evaluate(&[lic], &eccn_rules(), &[node("node-1", AT)], AT);
    let found = only(&v, "device_tpp_above_cap");
    assert_eq!(found.len(), 8);
    assert_eq!(codes(&v).len(), 8);
    assert_eq!(
        found[0].figures,
        Reason::DeviceTppAboveCap {
            tpp: "15831.2".parse().unwrap(),
            cap: "15000".parse().unwrap(),
            basis: TppSource::Spec,
        }
    );
    assert_eq!(
        serde_json::to_value(&found[0]).unwrap()["figures"]["basis"],
        "spec"
    );
    assert!(found[0].sentence.contains("15831.2") && found[0].sentence.contains("15000"));
    assert!(!v.verdict.is_compliant());
}

#[test]
fn expired_licence() {
    let after = 1_830_900_000; // 2028-01-08, after valid_until
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[node("node-1", after - 60)],
        after,
    );
    assert_eq!(codes(&v), ["licence_expired"]);
    assert_eq!(v.findings[0].severity, Severity::Violation);
    assert!(!v.verdict.is_compliant());
    // Without devices, an expired licence is a warning only.
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[], after);
    assert_eq!(codes(&v), ["licence_expired"]);
    assert!(v.verdict.is_compliant());
}

#[test]
fn licence_not_yet_valid() {
    let before = 1_700_000_000;
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[node("node-1", before)],
        before,
    );
    assert_eq!(codes(&v), ["licence_not_yet_valid"]);
    assert!(!v.verdict.is_compliant());
}

#[test]
fn latest_attestation_per_node_wins() {
    let old = attestation("node-1", AT - 100, "declared", &[a100("n", 0)]);
    let new = node("node-1", AT - 10);
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[new.clone(), old.clone()],
        AT,
    );
    assert!(codes(&v).is_empty(), "{:#?}", v.findings);
    assert_eq!(v.nodes.len(), 1);
    assert_eq!(v.nodes[0].iat, AT - 10);
    let w = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[old, new], AT);
    assert_eq!(v, w);
}

#[test]
fn without_sites_several_licences_leave_nodes_unassigned() {
    let nowhere = || attestation_at("node-1", AT, None, None, &dgx("node-1"));
    let v = evaluate(
        &[licence(EXAMPLE), small_elsewhere()],
        &eccn_rules(),
        &[nowhere()],
        AT,
    );
    assert_eq!(codes(&v), ["node_unassigned", "site_not_certified"]);
    assert_eq!(v.verdict, Verdict::NotCompliant);
    assert_eq!(v.nodes[0].licence, None);
    assert!(v.licences.iter().all(|u| u.devices.used == 0));
    assert_eq!(v.countries[0].licences.len(), 2);
    let v = evaluate(&[], &eccn_rules(), &[nowhere()], AT);
    assert_eq!(codes(&v), ["node_unassigned", "site_not_certified"]);
    // With one licence a node without a site belongs to it, but only on its word.
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[nowhere()], AT);
    assert_eq!(codes(&v), ["site_not_certified"]);
    assert_eq!(v.licences[0].devices.used, 8);
    assert_eq!(v.verdict, Verdict::Unproven);
}

#[test]
fn future_attestation_unknown_device_and_lost_gpu() {
    let unknown = Gpu {
        device_id: "0x9999",
        name: "NVIDIA Mystery",
        agent_tpp: None,
        agent_eccn: "indeterminate",
        ..h100("n", 1)
    };
    let lost = Gpu {
        status: "lost",
        ..h100("n", 2)
    };
    let gpus = vec![h100("n", 0), unknown, lost];
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[attestation("node-1", AT + 3600, "declared", &gpus)],
        AT,
    );
    let mut got = codes(&v);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "attestation_from_future",
            "eccn_not_allowed",
            "gpu_lost",
            // The unknown device's need is open; the two H100s need none (A:5).
            "licence_need_undetermined",
            "model_not_allowed",
            "unknown_device"
        ]
    );
    let unknown = &only(&v, "unknown_device")[0];
    assert!(
        unknown.sentence.contains("TPP unknown"),
        "{}",
        unknown.sentence
    );
    assert_eq!(v.licences[0].devices.used, 3);
    assert_eq!(v.licences[0].devices_tpp_unknown, 1);
    assert_eq!(
        v.licences[0].tpp.used,
        Tpp::sum(std::iter::repeat_n("15831.2".parse().unwrap(), 2))
    );
}

#[test]
fn other_rule_set_is_flagged_and_agent_figures_ignored() {
    let gain = shipped_rule_set("us-gain-ai-act-s3150").unwrap();
    let lic = licence_with(r#"eccns = ["3A090.a"]"#, "eccns = []");
    let v = evaluate(&[lic], &gain, &[node("node-1", AT)], AT);
    // The bill has no `[licensing]` table: whether the devices need a licence is open.
    assert_eq!(
        codes(&v),
        ["licence_need_undetermined", "licence_rule_set_mismatch"]
    );
    assert!(v.verdict.is_compliant());
    assert_eq!(v.rule_set, "us-gain-ai-act-s3150");
    assert_eq!(v.rule_set_status, RuleSetStatus::Bill);

    // A lying agent changes nothing but raises a warning.
    let lying = Gpu {
        agent_tpp: Some(1.0),
        agent_eccn: "not_3a090",
        ..h100("n", 0)
    };
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &[lying])],
        AT,
    );
    assert_eq!(codes(&v), ["agent_classification_mismatch"]);
    assert_eq!(v.licences[0].tpp.used.to_string(), "15831.2");
}

#[test]
fn duplicate_counts_once_at_its_first_place() {
    // Two licences and no site claims: both nodes are unassigned.
    let v = evaluate(
        &[licence(EXAMPLE), licence(TOO_SMALL)],
        &eccn_rules(),
        &[node("node-a", AT), node("node-a-copy", AT)],
        AT,
    );
    assert_eq!(v.nodes.len(), 2);
    let copy = &v.nodes[1];
    assert_eq!(copy.subject, "node-a-copy");
    // node-a-copy reports node-a-copy's GPUs: distinct uuids, so no duplicates.
    assert_eq!(only(&v, "duplicate_device").len(), 0);
    // One licence: node-z repeats two of node-a's GPUs, which count at node-a (subject order).
    let mut gpus = dgx("node-a");
    gpus.truncate(2);
    let v = evaluate(
        &[licence(TOO_SMALL)],
        &eccn_rules(),
        &[
            attestation("node-z", AT, "declared", &gpus),
            node("node-a", AT),
        ],
        AT,
    );
    assert_eq!(only(&v, "duplicate_device").len(), 2);
    assert_eq!(v.licences[0].devices.used, 8);
    assert!(v.nodes[1].gpus.iter().all(|g| !g.counted));
}

#[test]
fn verdict_is_deterministic_whatever_the_input_order() {
    let lics = [licence(EXAMPLE), licence(TOO_SMALL)];
    let mut gpus = dgx("n3");
    gpus[1] = h100("n1", 1);
    let atts = vec![
        node("n1", AT - 50),
        node("n2", AT - 200_000),
        attestation("n3", AT, "declared", &gpus),
        node("n1", AT - 500),
        attestation("n4", AT, "declared", &[a100("n4", 0)]),
    ];
    let rules = eccn_rules();
    let first = serde_json::to_string(&evaluate(&lics, &rules, &atts, AT)).unwrap();
    let again = serde_json::to_string(&evaluate(&lics, &rules, &atts, AT)).unwrap();
    assert_eq!(first, again);
    let mut rev_atts = atts.clone();
    rev_atts.reverse();
    let rev_lics = [licence(TOO_SMALL), licence(EXAMPLE)];
    let reversed = serde_json::to_string(&evaluate(&rev_lics, &rules, &rev_atts, AT)).unwrap();
    assert_eq!(first, reversed);
    let rotated: Vec<_> = atts
        .iter()
        .cycle()
        .skip(2)
        .take(atts.len())
        .cloned()
        .collect();
    let rotated = serde_json::to_string(&evaluate(&lics, &rules, &rotated, AT)).unwrap();
    assert_eq!(first, rotated);
    // Same with one licence, where nodes are assigned.
    let one = [licence(EXAMPLE)];
    let a = serde_json::to_string(&evaluate(&one, &rules, &atts, AT)).unwrap();
    let b = serde_json::to_string(&evaluate(&one, &rules, &rev_atts, AT)).unwrap();
    assert_eq!(a, b);
    let value: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(value["verdict"], "not_compliant");
    assert_eq!(value["findings"][0]["severity"], "violation");
}

fn every_reason() -> Vec<Reason> {
    let tpp: Tpp = "1".parse().unwrap();
    vec![
        Reason::ModelNotAllowed { model: None },
        Reason::EccnNotAllowed {
            eccn: None,
            outcome: None,
        },
        Reason::DeviceTppAboveCap {
            tpp,
            cap: tpp,
            basis: TppSource::Measured,
        },
        Reason::EvidenceTierTooLow {
            have: EvidenceTier::Declared,
            need: EvidenceTier::Hardware,
            gpus: 1,
        },
        Reason::UnknownDevice {
            lookup: "no_identity",
            detail: "x".to_owned(),
        },
        Reason::GpuLost {
            status: GpuStatus::Lost,
        },
        Reason::DuplicateDevice {
            uuid: "GPU-1".to_owned(),
            hardware_id: None,
            serial: None,
            seen_in: vec![],
            counted_in: "a/gpu0".to_owned(),
            counted_against: None,
            across_licences_or_sites: true,
        },
        Reason::StaleNode {
            iat: 0,
            age_s: 2,
            max_age_s: 1,
        },
        Reason::AttestationFromFuture {
            iat: 1000,
            at: 0,
            ahead_s: 1000,
            max_skew_s: 300,
        },
        Reason::LicenceNotYetValid {
            valid_from: 1,
            starts_in_s: 1,
            devices: 0,
        },
        Reason::LicenceExpired {
            valid_until: 1,
            expired_for_s: 1,
            devices: 1,
        },
        Reason::LicenceRuleSetMismatch {
            licence_rule_set: "a".to_owned(),
            rule_set: "b".to_owned(),
        },
        Reason::NodeUnassigned {
            licences: 2,
            gpus: 8,
            site: None,
        },
        Reason::AggregateTppAboveCap {
            used: tpp,
            cap: tpp,
            over_by: tpp,
        },
        Reason::DeviceCountAboveCap {
            used: 2,
            cap: 1,
            over_by: 1,
        },
        Reason::AgentClassificationMismatch {
            agent_eccn: None,
            eccn: None,
            agent_tpp: None,
            tpp: None,
        },
        Reason::SiteInSeveralLicences {
            site: "fra-1".to_owned(),
            licences: vec!["A".to_owned(), "B".to_owned()],
            counted_against: "A".to_owned(),
        },
        Reason::CountryAllocationExceeded {
            country: "DE".parse().unwrap(),
            tier: Some("tier_2".to_owned()),
            used: tpp,
            cap: tpp,
            over_by: tpp,
            period: "2025-2027".to_owned(),
        },
        Reason::SimulatedInventory { gpus: 8 },
        Reason::ExceedsSpec {
            model: "H100 SXM5 80GB".to_owned(),
            precision: Precision::Fp8,
            measured_tops: "2200".parse().unwrap(),
            spec_tops: "1978.9".parse().unwrap(),
            ratio: SpecRatio::new("2200".parse().unwrap(), "1978.9".parse().unwrap()).unwrap(),
            tolerance_percent: 10,
        },
        Reason::BelowSpec {
            model: "H100 SXM5 80GB".to_owned(),
            precision: Precision::Fp8,
            measured_tops: "900".parse().unwrap(),
            spec_tops: "1978.9".parse().unwrap(),
            ratio: SpecRatio::new("900".parse().unwrap(), "1978.9".parse().unwrap()).unwrap(),
            tolerance_percent: 50,
            sm_clock_mhz_min: None,
            sm_clock_mhz_max: None,
            max_sm_clock_mhz: None,
            temperature_c_max: None,
            power_mw_max: None,
            power_limit_mw: None,
            throttle_reasons: vec![],
        },
        Reason::UnlistedDevice {
            lookup: "pci_id_not_listed",
            detail: "x".to_owned(),
            measured_tpp: tpp,
            precision: Precision::Fp8,
            measured_tops: "0.125".parse().unwrap(),
            outcome: "not_3a090".to_owned(),
        },
        Reason::MeasuredTierDowngraded {
            claimed: EvidenceTier::Measured,
            effective: EvidenceTier::Declared,
            gpus: 8,
            unmeasured: 1,
            exceeding: 0,
            unlisted: 0,
            no_spec_figure: 0,
            stale: 0,
            simulated: 0,
        },
        Reason::HardwareTierUnverified {
            effective: EvidenceTier::Measured,
            gpus: 1,
            without_evidence: 1,
            failed: 0,
        },
        Reason::GpuEvidenceFailed {
            failed: vec!["nonce".to_owned()],
            first_code: "nonce_mismatch".to_owned(),
            detail: "x".to_owned(),
        },
        Reason::GpuEvidenceReused {
            hardware_id: "ab".to_owned(),
            submods: vec!["gpu0".to_owned(), "gpu1".to_owned()],
        },
        Reason::GpuWithoutIdentity { gpus: 1 },
        Reason::SubjectWithSeveralKeys {
            subject: "CN=a".to_owned(),
            nodes: vec!["00".to_owned(), "11".to_owned()],
        },
        Reason::NodeKeyOnSeveralMachines {
            machine_ids: vec!["m1".to_owned(), "m2".to_owned()],
        },
        Reason::SiteClaimMismatch {
            claimed: "fra-1".to_owned(),
            certified: "ber-1".to_owned(),
        },
        Reason::SiteNotCertified { claimed: None },
        Reason::NodeSiteChanged {
            from: "fra-1".to_owned(),
            to: "ber-1".to_owned(),
        },
        Reason::LicenceRevoked {
            reason: "r".to_owned(),
            revoked_at: 0,
            held: true,
        },
        Reason::LicenceRetired {
            reason: "r".to_owned(),
            retired_at: 0,
            retired_by: "a".to_owned(),
        },
        Reason::NodeRetired {
            subject: "CN=a".to_owned(),
            reason: "r".to_owned(),
            retired_at: 0,
            retired_by: "a".to_owned(),
        },
        Reason::NodeCertificateRevoked {
            certificate: "CN=a".to_owned(),
            serial: "01".to_owned(),
        },
        Reason::StoredRecordUnusable {
            record: "licence L".to_owned(),
            problem: "p".to_owned(),
        },
        Reason::GatingNotHeld {
            index: 1,
            excluded_for: None,
            lapsed_fail_closed: false,
            reported: true,
            compute_mode: None,
            error: None,
            lease_expired: false,
        },
        Reason::GatingObserveOnly {
            gpus: vec![1],
            lapsed_fail_closed: true,
        },
        Reason::GatingLeaseForeign {
            problem: "lease_other_node".to_owned(),
            detail: "d".to_owned(),
        },
        Reason::GatingNotReported {
            on_expiry: tppguard_proto::lease::OnExpiry::FailClosed,
        },
        Reason::LicenceRequiredByParty {
            headquarters: "DE".parse().unwrap(),
            headquarters_group: None,
            ultimate_parent: "CN".parse().unwrap(),
            ultimate_parent_group: None,
            prong: PartyProng::UltimateParent,
            rule: "r".to_owned(),
            rule_set: "s".to_owned(),
            outcome: None,
            devices: 1,
        },
        Reason::NoLicenceRequired {
            destination: "DE".parse().unwrap(),
            destination_group: None,
            rule: None,
            rule_set: "s".to_owned(),
            outcome: None,
            devices: 1,
        },
        Reason::LicenceNeedUndetermined {
            rule_set: "s".to_owned(),
            outcome: None,
            devices: 1,
            why: "w".to_owned(),
        },
        Reason::DivertedDevice {
            shipment: "s".to_owned(),
            vendor: "v".to_owned(),
            device: shipped_device("u"),
            node: "n".to_owned(),
            gpu: "gpu0".to_owned(),
            hardware_proven: false,
            site: None,
            site_country: None,
            licensed_sites: vec![],
            destination: "DE".parse().unwrap(),
        },
        Reason::UnaccountedDevice {
            shipment: "s".to_owned(),
            vendor: "v".to_owned(),
            device: shipped_device("u"),
            site: "x".to_owned(),
            delivered_at: 0,
            unaccounted_after_s: 1,
            overdue_s: 1,
        },
        Reason::UnshippedDevice {
            uuid: None,
            serial: None,
            simulated: false,
            shipments: 0,
        },
        Reason::ShippedDeviceDuplicated {
            shipment: "s".to_owned(),
            vendor: "v".to_owned(),
            device: shipped_device("u"),
            seen_in: vec![],
        },
        Reason::ShipmentSiteNotLicensed {
            shipment: "s".to_owned(),
            vendor: "v".to_owned(),
            site: "x".to_owned(),
            country: "DE".parse().unwrap(),
            licensed_sites: vec![],
        },
        Reason::ShipmentLicenceUnknown {
            shipment: "s".to_owned(),
            vendor: "v".to_owned(),
            licence: "l".to_owned(),
            devices: 0,
        },
    ]
}

/// A shipped device known by its UUID alone.
fn shipped_device(uuid: &str) -> ShippedDevice {
    ShippedDevice {
        uuid: Some(uuid.to_owned()),
        serial: None,
        hardware_id: None,
        model: None,
    }
}

#[test]
fn reason_codes_are_unique_snake_case_and_listed() {
    let reasons = every_reason();
    let codes: Vec<&str> = reasons.iter().map(Reason::code).collect();
    assert_eq!(
        codes,
        Reason::CODES,
        "CODES lists every code in declaration order"
    );
    let unique: HashSet<&str> = codes.iter().copied().collect();
    assert_eq!(unique.len(), codes.len());
    for code in codes {
        assert!(
            !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !code.starts_with('_')
                && !code.ends_with('_')
                && !code.contains("__"),
            "{code}"
        );
    }
    for r in &reasons {
        assert!(!r.sentence().is_empty(), "{}", r.code());
        let finding = Finding::new(r.clone(), None, None, None);
        let json = serde_json::to_value(&finding).unwrap();
        assert_eq!(json["code"], r.code());
        assert!(json["figures"].is_object(), "{}", r.code());
    }
}

#[test]
fn severity_orders_worst_last() {
    assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Violation);
    assert_eq!(
        [Severity::Warning, Severity::Violation, Severity::Info]
            .into_iter()
            .max(),
        Some(Severity::Violation)
    );
    assert_eq!(
        serde_json::to_value(Severity::Violation).unwrap(),
        "violation"
    );
    assert_eq!(Severity::Warning.code(), "warning");
}

#[test]
fn pci_ids_combine_as_nvml_does() {
    let pci = Pci {
        bus_id: "0".to_owned(),
        vendor_id: "0x10de".to_owned(),
        device_id: "0x2330".to_owned(),
        subsystem_id: None,
    };
    assert_eq!(pci_combined(&pci), Some(0x2330_10DE));
    let bad = Pci {
        device_id: "2330".to_owned(),
        ..pci
    };
    assert_eq!(pci_combined(&bad), None);
}

/// A node at `site` with eight H100s.
fn at_site(name: &str, site: &str, gpus: &[Gpu<'_>]) -> VerifiedAttestation {
    let mut a = attestation(name, AT, "declared", gpus);
    a.claims.site = Some(site.to_owned());
    a.certified_site = Some(SiteId::parse(site).unwrap());
    a
}

/// `licence-too-small.toml` at other sites (muc-1, ham-1).
fn small_elsewhere() -> VerifiedLicence {
    licence(
        &TOO_SMALL
            .replacen("id = \"fra-1\"", "id = \"muc-1\"", 1)
            .replacen("id = \"ber-1\"", "id = \"ham-1\"", 1),
    )
}

#[test]
fn nodes_find_their_licence_by_site() {
    let v = evaluate(
        &[licence(EXAMPLE), small_elsewhere()],
        &eccn_rules(),
        &[
            at_site("node-1", "fra-1", &dgx("node-1")),
            at_site("node-2", "muc-1", &dgx("node-2")),
            at_site("node-3", "ams-9", &dgx("node-3")),
            attestation_at("node-4", AT, None, None, &dgx("node-4")),
        ],
        AT,
    );
    let lic = |n: &str| node_named(&v, n).licence.as_deref();
    assert_eq!(lic("node-1"), Some("EXAMPLE-DE-2026-0142"));
    assert_eq!(lic("node-2"), Some("EXAMPLE-DE-2026-0143"));
    assert_eq!((lic("node-3"), lic("node-4")), (None, None));
    assert_eq!(v.licences[0].devices.used, 8);
    assert_eq!(v.licences[1].devices.used, 8);
    let unassigned = only(&v, "node_unassigned");
    assert_eq!(unassigned.len(), 2);
    let at = |name: &str| {
        unassigned
            .iter()
            .find(|f| f.node.as_deref() == Some(id(name).as_str()))
            .unwrap()
    };
    assert!(
        matches!(&at("node-3").figures, Reason::NodeUnassigned { site: Some(s), .. } if s == "ams-9")
    );
    assert!(
        at("node-3").sentence.contains("site ams-9"),
        "{}",
        at("node-3").sentence
    );
    assert!(matches!(
        &at("node-4").figures,
        Reason::NodeUnassigned { site: None, .. }
    ));
    // The small licence is over its cap, and node-4 stands at no certified site.
    assert_eq!(
        codes(&v),
        [
            "aggregate_tpp_above_cap",
            "node_unassigned",
            "node_unassigned",
            "site_not_certified"
        ]
    );
    // One licence: a node naming an unlisted site is still unassigned.
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[at_site("node-1", "ams-9", &dgx("node-1"))],
        AT,
    );
    assert_eq!(codes(&v), ["node_unassigned"]);
}

#[test]
fn site_in_several_licences_goes_to_the_stricter() {
    // Both examples list fra-1 and ber-1; 0143 has the smaller cap.
    let v = evaluate(
        &[licence(TOO_SMALL), licence(EXAMPLE)],
        &eccn_rules(),
        &[at_site("node-1", "fra-1", &dgx("node-1"))],
        AT,
    );
    assert_eq!(v.nodes[0].licence.as_deref(), Some("EXAMPLE-DE-2026-0143"));
    let warnings = only(&v, "site_in_several_licences");
    assert_eq!(warnings.len(), 2, "ber-1 and fra-1");
    assert_eq!(warnings[0].severity, Severity::Warning);
    assert_eq!(warnings[0].licence.as_deref(), Some("EXAMPLE-DE-2026-0143"));
    let Reason::SiteInSeveralLicences {
        site,
        licences,
        counted_against,
    } = &warnings[1].figures
    else {
        panic!("{:?}", warnings[1]);
    };
    assert_eq!(site, "fra-1");
    assert_eq!(licences, &["EXAMPLE-DE-2026-0142", "EXAMPLE-DE-2026-0143"]);
    assert_eq!(counted_against, "EXAMPLE-DE-2026-0143");
}

#[test]
fn duplicate_under_two_licences_counts_once_against_the_stricter() {
    let mut gpus_b = dgx("node-b");
    gpus_b[3] = h100("node-a", 5);
    let v = evaluate(
        &[licence(EXAMPLE), small_elsewhere()],
        &eccn_rules(),
        &[
            at_site("node-a", "fra-1", &dgx("node-a")),
            at_site("node-b", "muc-1", &gpus_b),
        ],
        AT,
    );
    let dup = only(&v, "duplicate_device");
    assert_eq!(dup.len(), 1);
    let Reason::DuplicateDevice {
        counted_in,
        counted_against,
        ..
    } = &dup[0].figures
    else {
        panic!("{dup:?}");
    };
    assert_eq!(counted_in, &place("node-b", "gpu3"));
    assert_eq!(counted_against.as_deref(), Some("EXAMPLE-DE-2026-0143"));
    assert_eq!(dup[0].severity, Severity::Violation, "across licences");
    // Counted once: 7 against the example licence, 8 against the small one.
    assert_eq!(v.licences[0].devices.used, 7);
    assert_eq!(v.licences[1].devices.used, 8);
    assert!(!node_named(&v, "node-a").gpus[5].counted);
    assert!(node_named(&v, "node-b").gpus[3].counted);
    assert_eq!(v.countries[0].devices, 15);
}

fn diffusion_rules() -> RuleSet {
    shipped_rule_set("us-ai-diffusion-2025").unwrap()
}

fn what_if_de_tier2() -> RuleSet {
    RuleSet::from_toml_str(include_str!(
        "../../../rules/examples/what-if-de-tier2.toml"
    ))
    .unwrap()
}

#[test]
fn countries_show_their_tier_and_allocation() {
    let fleet = [at_site("node-1", "fra-1", &dgx("node-1"))];
    let v = evaluate(&[licence(EXAMPLE)], &diffusion_rules(), &fleet, AT);
    let de = &v.countries[0];
    assert_eq!(de.country.as_str(), "DE");
    assert_eq!(de.tier.as_deref(), Some("tier_1"));
    assert_eq!(de.allocation, None);
    assert_eq!(de.allocation_period, None);
    assert!(only(&v, "country_allocation_exceeded").is_empty());
    // Under 3A090 alone: the EAR country group (A:5) its licensing rules name, no allocation.
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &fleet, AT);
    assert_eq!(v.countries[0].tier.as_deref(), Some("a5"));
    assert_eq!(v.countries[0].allocation, None);
    // What if Germany were Tier 2: its allocation shows, with headroom.
    let v = evaluate(&[licence(EXAMPLE)], &what_if_de_tier2(), &fleet, AT);
    let de = &v.countries[0];
    assert_eq!(de.tier.as_deref(), Some("tier_2"));
    let a = de.allocation.unwrap();
    assert_eq!(a.cap, "790000000".parse().unwrap());
    assert_eq!(a.used.to_string(), "126649.6");
    assert_eq!(a.headroom.to_string(), "789873350.4");
    assert_eq!(a.over_by, Tpp::default());
    assert_eq!(de.allocation_period.as_deref(), Some("2025-2027"));
    assert!(only(&v, "country_allocation_exceeded").is_empty());
    let json = serde_json::to_value(de).unwrap();
    assert_eq!(json["tier"], "tier_2");
    assert!(
        json["allocation"]["cap_h100_equivalents"].is_string()
            || json["allocation"]["cap_h100_equivalents"].is_number()
    );
}

#[test]
fn country_over_its_allocation_is_a_violation() {
    // 6,250 nodes x 8 H100s = 50,000 x 15,831.2 = 791,560,000 TPP > 790,000,000.
    let (lics, fleet, _, at) = bench_support::synthetic_fleet(6_250, 8, 3);
    let v = evaluate(&lics, &what_if_de_tier2(), &fleet, at);
    let over = only(&v, "country_allocation_exceeded");
    assert_eq!(over.len(), 1, "{:?}", codes(&v));
    assert_eq!(over[0].severity, Severity::Violation);
    let Reason::CountryAllocationExceeded {
        country,
        tier,
        used,
        cap,
        over_by,
        period,
    } = &over[0].figures
    else {
        panic!("{over:?}");
    };
    assert_eq!(country.as_str(), "DE");
    assert_eq!(tier.as_deref(), Some("tier_2"));
    assert_eq!(used.to_string(), "791560000");
    assert_eq!(cap.to_string(), "790000000");
    assert_eq!(over_by.to_string(), "1560000");
    assert_eq!(period, "2025-2027");
    assert!(!v.verdict.is_compliant());
    assert_eq!(v.countries[0].licences.len(), 3);
    assert!(v.countries[0].allocation.unwrap().is_over());
    // Under the rule as published (DE in Tier 1), the same fleet is within every cap.
    let v = evaluate(&lics, &diffusion_rules(), &fleet, at);
    assert!(only(&v, "country_allocation_exceeded").is_empty());
    assert!(v.verdict.is_compliant(), "{:?}", codes(&v));
}

// ---- Measurements --------------------------------------------------------------------------

/// A measurement of dense rates (`(precision code, median TOPS)`), with clean telemetry.
fn measurement(rates: &[(&str, f64)]) -> Value {
    let results: Vec<Value> = rates
        .iter()
        .map(|&(precision, tops)| {
            json!({
                "precision": precision,
                "matrix_size": 8192,
                "gemms_per_repeat": 20,
                "tops_median": tops,
                "tops_min": tops * 0.98,
                "tops_max": tops * 1.01
            })
        })
        .collect();
    json!({
        "method": "cuda_gemm",
        "backend": "CUDA driver 13.0, cuBLAS 13.0.2",
        "started_at": AT - 600,
        "duration_ms": 42_000,
        "repeats": 10,
        "results": results,
        "telemetry": {
            "samples": 40,
            "sm_clock_mhz_min": 1755,
            "sm_clock_mhz_max": 1980,
            "temperature_c_max": 71,
            "power_mw_max": 690_000,
            "throttle_reasons": []
        }
    })
}

/// An H100 of `node` carrying a measurement of `rates`.
fn measured_h100(node: &str, i: usize, rates: &[(&str, f64)]) -> Gpu<'static> {
    Gpu {
        measurement: Some(measurement(rates)),
        ..h100(node, i)
    }
}

/// A DGX of H100s measured at typical cuBLAS figures (about two thirds of peak).
fn measured_dgx(node: &str) -> Vec<Gpu<'static>> {
    (0..8)
        .map(|i| measured_h100(node, i, &[("fp8", 1320.4), ("bf16", 600.0)]))
        .collect()
}

fn tops(text: &str) -> Tops {
    text.parse().unwrap()
}

fn tpp(text: &str) -> Tpp {
    text.parse().unwrap()
}

/// `examples/licence.toml` without its model list and per-device cap.
fn open_licence() -> VerifiedLicence {
    licence(
        &EXAMPLE
            .replacen(r#"models = ["H100 SXM5 80GB", "H200 SXM 141GB"]"#, "", 1)
            .replacen(r#"max_tpp_per_device = "15831.2""#, "", 1),
    )
}

#[test]
fn consistent_measurements_back_the_measured_tier() {
    let v = evaluate(
        &[licence(MEASURED)],
        &eccn_rules(),
        &[attestation(
            "node-1",
            AT,
            "measured",
            &measured_dgx("node-1"),
        )],
        AT,
    );
    assert!(codes(&v).is_empty(), "{:#?}", v.findings);
    assert!(v.verdict.is_compliant());
    let n = &v.nodes[0];
    assert_eq!(n.evidence_tier, EvidenceTier::Measured);
    assert_eq!(n.effective_evidence_tier, EvidenceTier::Measured);
    // Spec figures still decide classification and usage.
    assert_eq!(v.licences[0].tpp.used.to_string(), "126649.6");
    let g = &n.gpus[0];
    assert_eq!(g.tpp, Some(tpp("15831.2")));
    assert_eq!(g.tpp_from, Some(TppSource::Spec));
    let m = g.measured.as_deref().unwrap();
    assert_eq!(m.status, MeasurementStatus::Consistent);
    assert_eq!(m.method, MeasurementMethod::CudaGemm);
    assert_eq!(
        m.tolerances.exceeds_spec_percent, 5,
        "the licence's override"
    );
    assert_eq!(m.tolerances.below_spec_percent, 50, "the rule set's");
    // The lower bound: FP8 1320.4 x 8, exact.
    assert_eq!(m.tpp, Some(tpp("10563.2")));
    assert_eq!(m.tpp_basis, Some(Precision::Fp8));
    assert_eq!(m.tpp_ratio.unwrap().to_string(), "0.67");
    // In precision order: BF16 before FP8.
    let rates: Vec<_> = m.rates.iter().map(|r| r.precision).collect();
    assert_eq!(rates, [Precision::Bf16, Precision::Fp8]);
    let fp8 = &m.rates[1];
    assert_eq!(fp8.tops, tops("1320.4"));
    assert_eq!(fp8.spec_tops, Some(tops("1978.9")));
    assert_eq!(fp8.ratio.unwrap().ten_thousandths(), 6672);
    assert_eq!(fp8.check, RateCheck::WithinTolerance);
    let json = serde_json::to_value(&v).unwrap();
    let first = &json["nodes"][0];
    assert_eq!(first["effective_evidence_tier"], "measured");
    assert_eq!(first["gpus"][0]["tpp_from"], "spec");
    assert_eq!(first["gpus"][0]["measured"]["status"], "consistent");
    assert_eq!(first["gpus"][0]["measured"]["tpp"], 10563.2);
    assert_eq!(first["gpus"][0]["measured"]["rates"][1]["ratio"], 0.6672);
    assert_eq!(first["gpus"][0]["measured"]["rates"][1]["precision"], "fp8");
    // Without a measurement the GPU verdict says so.
    let plain = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[node("n", AT)], AT);
    let gpu = serde_json::to_value(&plain.nodes[0].gpus[0]).unwrap();
    assert_eq!(gpu["measured"], Value::Null);
    assert_eq!(gpu["tpp_from"], "spec");
    assert_eq!(
        plain.nodes[0].effective_evidence_tier,
        EvidenceTier::Declared
    );
}

#[test]
fn exceeds_spec_is_a_violation_per_gpu_and_contraindicated_in_the_ear() {
    let mut gpus = dgx("node-1");
    // 2200 / 1978.9 = 1.1117, above the 10 % tolerance; the other seven are unmeasured.
    gpus[3] = measured_h100("node-1", 3, &[("fp8", 2200.0), ("fp16", 700.0)]);
    let v = evaluate(
        &[open_licence()],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &gpus)],
        AT,
    );
    assert_eq!(codes(&v), ["exceeds_spec"]);
    assert!(!v.verdict.is_compliant());
    let f = &v.findings[0];
    assert_eq!(f.severity, Severity::Violation);
    assert_eq!(
        f.gpu.as_deref(),
        Some("gpu3"),
        "measured figures are per GPU"
    );
    assert_eq!(
        f.figures,
        Reason::ExceedsSpec {
            model: "H100 SXM5 80GB".to_owned(),
            precision: Precision::Fp8,
            measured_tops: tops("2200"),
            spec_tops: tops("1978.9"),
            ratio: SpecRatio::new(tops("2200"), tops("1978.9")).unwrap(),
            tolerance_percent: 10,
        }
    );
    assert!(
        f.sentence
            .contains("FP8 2200.0 TOPS is 1.11 of the spec's 1978.9 TOPS")
            && f.sentence.contains("more capable than its identity claims"),
        "{}",
        f.sentence
    );
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["figures"]["ratio"], 1.1117);
    assert_eq!(json["figures"]["tolerance_percent"], 10);
    assert_eq!(json["figures"]["precision"], "fp8");
    let m = v.nodes[0].gpus[3].measured.as_deref().unwrap();
    assert_eq!(m.status, MeasurementStatus::ExceedsSpec);
    assert_eq!(v.nodes[0].gpus[2].measured, None);
    // Usage still counts the spec TPP.
    assert_eq!(v.licences[0].tpp.used.to_string(), "126649.6");

    let ear = crate::ear::EarClaims::new(&v, &[], None, AT);
    let appraisal = &ear.submods[&id("node-1")];
    assert_eq!(appraisal.status, crate::ear::EarStatus::Contraindicated);
    // The codes of every finding bearing on the node, the licence's info one included.
    assert_eq!(appraisal.reasons, ["exceeds_spec", "no_licence_required"]);
}

#[test]
fn the_tolerances_are_exact() {
    let verdict = |median: f64| {
        evaluate(
            &[open_licence()],
            &eccn_rules(),
            &[attestation(
                "node-1",
                AT,
                "declared",
                &[measured_h100("node-1", 0, &[("fp8", median)])],
            )],
            AT,
        )
    };
    // 1978.9 x 1.10 = 2176.79 exactly: not above; a ten-thousandth more is.
    assert_eq!(codes(&verdict(2176.79)), Vec::<&str>::new());
    assert_eq!(codes(&verdict(2176.7901)), ["exceeds_spec"]);
    // Digits past the fourth decimal are cut, never rounded up.
    assert_eq!(codes(&verdict(2_176.790_09)), Vec::<&str>::new());
    // 1978.9 x 0.50 = 989.45 exactly: not below; a ten-thousandth less is.
    assert_eq!(codes(&verdict(989.45)), Vec::<&str>::new());
    assert_eq!(codes(&verdict(989.4499)), ["below_spec"]);
    assert_eq!(Tops::from_measured(1320.4), Some(tops("1320.4")));
    assert_eq!(Tops::from_measured(0.123_456), Some(tops("0.1234")));
    assert_eq!(Tops::from_measured(-0.0), Some(Tops::default()));
    assert_eq!(Tops::from_measured(1e6), Some(tops("1000000")));
    assert_eq!(Tops::from_measured(f64::NAN), None);
}

#[test]
fn below_spec_warns_with_the_clocks_and_throttle_reasons() {
    let mut m = measurement(&[("fp8", 900.0), ("bf16", 600.0)]);
    m["telemetry"] = json!({
        "samples": 40,
        "sm_clock_mhz_min": 705,
        "sm_clock_mhz_max": 1200,
        "temperature_c_max": 88,
        "power_mw_max": 350_000,
        "throttle_reasons": ["hw_slowdown", "sw_power_cap"]
    });
    let throttled = Gpu {
        measurement: Some(m),
        ..h100("node-1", 0)
    };
    let mut gpus = measured_dgx("node-1");
    gpus[0] = throttled;
    let v = evaluate(
        &[licence(MEASURED)],
        &eccn_rules(),
        &[attestation("node-1", AT, "measured", &gpus)],
        AT,
    );
    // FP8 is 0.45 of spec, below half; BF16 at 0.61 is within.
    assert_eq!(codes(&v), ["below_spec"]);
    assert!(v.verdict.is_compliant(), "below spec is a warning");
    let f = &v.findings[0];
    assert_eq!(f.severity, Severity::Warning);
    let Reason::BelowSpec {
        precision,
        measured_tops,
        ratio,
        tolerance_percent,
        sm_clock_mhz_min,
        sm_clock_mhz_max,
        max_sm_clock_mhz,
        temperature_c_max,
        power_mw_max,
        power_limit_mw,
        throttle_reasons,
        ..
    } = &f.figures
    else {
        panic!("{:?}", f.figures);
    };
    assert_eq!(*precision, Precision::Fp8);
    assert_eq!(*measured_tops, tops("900"));
    assert_eq!(ratio.ten_thousandths(), 4548);
    assert_eq!(*tolerance_percent, 50);
    assert_eq!(
        (*sm_clock_mhz_min, *sm_clock_mhz_max),
        (Some(705), Some(1200))
    );
    assert_eq!(*max_sm_clock_mhz, Some(1980));
    assert_eq!(*temperature_c_max, Some(88));
    assert_eq!(
        (*power_mw_max, *power_limit_mw),
        (Some(350_000), Some(700_000))
    );
    assert_eq!(throttle_reasons, &["hw_slowdown", "sw_power_cap"]);
    assert!(
        f.sentence.contains("SM clock 705-1200 MHz of 1980 MHz max")
            && f.sentence
                .contains("throttle reasons: hw_slowdown, sw_power_cap"),
        "{}",
        f.sentence
    );
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["figures"]["sm_clock_mhz_min"], 705);
    assert_eq!(json["figures"]["throttle_reasons"][1], "sw_power_cap");
    // A part below spec is no more capable than it claims: the measured tier holds.
    let n = &v.nodes[0];
    assert_eq!(n.effective_evidence_tier, EvidenceTier::Measured);
    assert_eq!(
        n.gpus[0].measured.as_deref().unwrap().status,
        MeasurementStatus::BelowSpec
    );
}

#[test]
fn an_unlisted_device_is_classified_and_counted_by_its_measured_lower_bound() {
    let mystery = |i: usize, fp8: f64| Gpu {
        device_id: "0x9999",
        name: "NVIDIA Mystery",
        agent_tpp: None,
        agent_eccn: "indeterminate",
        measurement: Some(measurement(&[("fp8", fp8), ("fp16", 250.0)])),
        ..h100("node-1", i)
    };
    let gpus = [h100("node-1", 0), mystery(1, 600.0)];
    let v = evaluate(
        &[open_licence()],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &gpus)],
        AT,
    );
    assert_eq!(codes(&v), ["unlisted_device"], "instead of unknown_device");
    let f = &v.findings[0];
    assert_eq!(
        f.severity,
        Severity::Unproven,
        "its TPP is only a lower bound"
    );
    assert_eq!(v.licences[0].verdict, Verdict::Unproven);
    assert_eq!(
        f.figures,
        Reason::UnlistedDevice {
            lookup: "pci_id_and_name_not_listed",
            detail: "neither PCI id 0x999910DE nor name \"NVIDIA Mystery\" is in the spec table"
                .to_owned(),
            measured_tpp: tpp("4800"),
            precision: Precision::Fp8,
            measured_tops: tops("600"),
            outcome: "3A090.a".to_owned(),
        }
    );
    assert!(
        f.sentence.contains("TPP at least 4800") && f.sentence.contains("a lower bound"),
        "{}",
        f.sentence
    );
    // Counted with its measured TPP, not as TPP unknown.
    let usage = &v.licences[0];
    assert_eq!(usage.devices.used, 2);
    assert_eq!(usage.devices_tpp_unknown, 0);
    assert_eq!(usage.devices_tpp_measured, 1);
    assert_eq!(usage.tpp.used, tpp("20631.2"));
    assert_eq!(v.countries[0].tpp, tpp("20631.2"));
    assert_eq!(v.countries[0].devices_tpp_measured, 1);
    assert_eq!(v.nodes[0].tpp_counted, tpp("20631.2"));
    let g = &v.nodes[0].gpus[1];
    assert_eq!(g.model, None);
    assert_eq!(g.tpp, Some(tpp("4800")));
    assert_eq!(g.tpp_from, Some(TppSource::Measured));
    assert_eq!(g.outcome.as_deref(), Some("3A090.a"));
    assert_eq!(g.clause.as_deref(), Some("3A090.a.1"));
    assert_eq!(g.h100_equivalents.unwrap().to_string(), "0.30");
    let m = g.measured.as_deref().unwrap();
    assert_eq!(m.status, MeasurementStatus::Unlisted);
    assert!(m.rates.iter().all(|r| r.check == RateCheck::NoSpecFigure));

    // Just under 4800 with the die area unknown, 3A090 cannot be decided: the licence's
    // ECCN list cannot allow it.
    let v = evaluate(
        &[open_licence()],
        &eccn_rules(),
        &[attestation(
            "node-1",
            AT,
            "declared",
            &[mystery(0, 599.9999)],
        )],
        AT,
    );
    let mut got = codes(&v);
    got.sort_unstable();
    // Indeterminate: whether it needs a licence is too.
    assert_eq!(
        got,
        [
            "eccn_not_allowed",
            "licence_need_undetermined",
            "unlisted_device"
        ]
    );
    assert_eq!(
        only(&v, "eccn_not_allowed")[0].figures,
        Reason::EccnNotAllowed {
            eccn: None,
            outcome: Some("indeterminate".to_owned())
        }
    );
    assert_eq!(v.licences[0].tpp.used, tpp("4799.9992"));

    // With a model list, an unlisted device is a model the licence cannot allow.
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &[mystery(0, 600.0)])],
        AT,
    );
    let mut got = codes(&v);
    got.sort_unstable();
    assert_eq!(got, ["model_not_allowed", "unlisted_device"]);

    // Without a measurement it stays unknown_device, TPP unknown.
    let bare = Gpu {
        measurement: None,
        ..mystery(0, 600.0)
    };
    let v = evaluate(
        &[open_licence()],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &[bare])],
        AT,
    );
    assert_eq!(
        codes(&v),
        [
            "eccn_not_allowed",
            "unknown_device",
            "licence_need_undetermined"
        ]
    );
    assert_eq!(v.licences[0].devices_tpp_unknown, 1);
    let unknown = &v.licences[0].licence_need.determinations[0];
    assert_eq!((unknown.outcome.as_deref(), unknown.devices), (None, 1));
    assert_eq!(v.licences[0].devices_tpp_measured, 0);
    assert_eq!(v.nodes[0].gpus[0].tpp_from, None);
}

#[test]
fn measured_tpp_above_the_per_device_cap_is_a_violation_whatever_the_spec() {
    // INT8 2000 TOPS is 1.01 of spec (within tolerance), but 2000 x 8 = 16000 is above the
    // licence's 15831.2 per-device cap, which the H100's spec TPP meets exactly.
    let gpus = [measured_h100("node-1", 0, &[("int8", 2000.0)])];
    let v = evaluate(
        &[licence(EXAMPLE)],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &gpus)],
        AT,
    );
    assert_eq!(codes(&v), ["device_tpp_above_cap"]);
    let f = &v.findings[0];
    assert_eq!(
        f.figures,
        Reason::DeviceTppAboveCap {
            tpp: tpp("16000"),
            cap: tpp("15831.2"),
            basis: TppSource::Measured,
        }
    );
    assert!(
        f.sentence.starts_with("measured device TPP 16000"),
        "{}",
        f.sentence
    );
    assert_eq!(
        serde_json::to_value(f).unwrap()["figures"]["basis"],
        "measured"
    );
    assert!(!v.verdict.is_compliant());
    // An unlisted device is held to the cap by its measurement too.
    let mystery = Gpu {
        device_id: "0x9999",
        name: "NVIDIA Mystery",
        measurement: Some(measurement(&[("fp8", 2500.0)])),
        ..h100("node-1", 0)
    };
    let v = evaluate(
        &[licence(&EXAMPLE.replacen(
            r#"models = ["H100 SXM5 80GB", "H200 SXM 141GB"]"#,
            "",
            1,
        ))],
        &eccn_rules(),
        &[attestation("node-1", AT, "declared", &[mystery])],
        AT,
    );
    let caps = only(&v, "device_tpp_above_cap");
    assert_eq!(caps.len(), 1);
    assert_eq!(
        caps[0].figures,
        Reason::DeviceTppAboveCap {
            tpp: tpp("20000"),
            cap: tpp("15831.2"),
            basis: TppSource::Measured,
        }
    );
}

#[test]
fn claimed_measured_tier_falls_to_declared_when_the_measurements_do_not_back_it() {
    let run = |tier: &str, gpus: &[Gpu<'_>]| {
        evaluate(
            &[licence(MEASURED)],
            &eccn_rules(),
            &[attestation("node-1", AT, tier, gpus)],
            AT,
        )
    };
    let downgraded = |v: &FleetVerdict| match &only(v, "measured_tier_downgraded")[..] {
        [f] => f.figures.clone(),
        other => panic!("{other:#?}"),
    };

    // One GPU unmeasured.
    let mut gpus = measured_dgx("node-1");
    gpus[7] = h100("node-1", 7);
    let v = run("measured", &gpus);
    let mut got = codes(&v);
    got.sort_unstable();
    assert_eq!(got, ["evidence_tier_too_low", "measured_tier_downgraded"]);
    assert_eq!(
        downgraded(&v),
        Reason::MeasuredTierDowngraded {
            claimed: EvidenceTier::Measured,
            effective: EvidenceTier::Declared,
            gpus: 8,
            unmeasured: 1,
            exceeding: 0,
            unlisted: 0,
            no_spec_figure: 0,
            stale: 0,
            simulated: 0,
        }
    );
    let f = &only(&v, "measured_tier_downgraded")[0];
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.sentence.contains("1 carry no measurement") && f.sentence.contains("as declared"),
        "{}",
        f.sentence
    );
    assert_eq!(
        only(&v, "evidence_tier_too_low")[0].figures,
        Reason::EvidenceTierTooLow {
            have: EvidenceTier::Declared,
            need: EvidenceTier::Measured,
            gpus: 8,
        }
    );
    let n = &v.nodes[0];
    assert_eq!(
        (n.evidence_tier, n.effective_evidence_tier),
        (EvidenceTier::Measured, EvidenceTier::Declared)
    );

    // One GPU above spec (the licence's 5 %: 2100 / 1978.9 = 1.06), and one whose only
    // measured precision has no spec figure (the table has no INT4 rate for the H100).
    let mut gpus = measured_dgx("node-1");
    gpus[1] = measured_h100("node-1", 1, &[("fp8", 2100.0)]);
    gpus[2] = measured_h100("node-1", 2, &[("int4", 2600.0)]);
    let v = run("measured", &gpus);
    assert_eq!(
        downgraded(&v),
        Reason::MeasuredTierDowngraded {
            claimed: EvidenceTier::Measured,
            effective: EvidenceTier::Declared,
            gpus: 8,
            unmeasured: 0,
            exceeding: 1,
            unlisted: 0,
            no_spec_figure: 1,
            stale: 0,
            simulated: 0,
        }
    );
    let exceeds = only(&v, "exceeds_spec");
    assert_eq!(exceeds.len(), 1);
    assert!(matches!(
        exceeds[0].figures,
        Reason::ExceedsSpec {
            tolerance_percent: 5,
            ..
        }
    ));
    assert_eq!(
        v.nodes[0].gpus[2].measured.as_deref().unwrap().status,
        MeasurementStatus::NoSpecFigure
    );

    // An unlisted GPU does not back the tier either.
    let mut gpus = measured_dgx("node-1");
    gpus[0] = Gpu {
        device_id: "0x9999",
        name: "NVIDIA Mystery",
        ..gpus[0].clone()
    };
    let v = run("measured", &gpus);
    assert!(matches!(
        downgraded(&v),
        Reason::MeasuredTierDowngraded { unlisted: 1, .. }
    ));

    // The tier is the verifier's: a node claiming declared whose measurements back
    // `measured` is evaluated as measured, with no finding.
    let v = run("declared", &measured_dgx("node-1"));
    assert_eq!(codes(&v), Vec::<&str>::new());
    assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Measured);

    // A duplicate counted elsewhere does not count against the tier of the node that
    // repeats it.
    let mut gpus = measured_dgx("node-b");
    gpus.push(h100("node-a", 0));
    let v = evaluate(
        &[licence(MEASURED)],
        &eccn_rules(),
        &[
            attestation("node-a", AT, "measured", &measured_dgx("node-a")),
            attestation("node-b", AT, "measured", &gpus),
        ],
        AT,
    );
    assert_eq!(codes(&v), ["duplicate_device"]);
    assert!(
        v.nodes
            .iter()
            .all(|n| n.effective_evidence_tier == EvidenceTier::Measured)
    );
}

#[test]
fn a_licence_overrides_the_rule_set_s_tolerances() {
    let run = |lic: VerifiedLicence, rules: &RuleSet, fp8: f64| {
        evaluate(
            &[lic],
            rules,
            &[attestation(
                "node-1",
                AT,
                "declared",
                &[measured_h100("node-1", 0, &[("fp8", fp8)])],
            )],
            AT,
        )
    };
    let override_with = |table: &str| {
        licence(&format!(
            "{}\n[measurement]\n{table}\n",
            EXAMPLE.replacen(r#"max_tpp_per_device = "15831.2""#, "", 1)
        ))
    };
    // 2100 / 1978.9 = 1.06: within the rule set's 10 %, above a licence's 5 %.
    assert_eq!(
        codes(&run(open_licence(), &eccn_rules(), 2100.0)),
        Vec::<&str>::new()
    );
    let v = run(
        override_with("exceeds_spec_percent = 5"),
        &eccn_rules(),
        2100.0,
    );
    assert_eq!(codes(&v), ["exceeds_spec"]);
    // 1300 / 1978.9 = 0.66: within the rule set's 50 %, below a licence's 30 %.
    assert_eq!(
        codes(&run(open_licence(), &eccn_rules(), 1300.0)),
        Vec::<&str>::new()
    );
    let v = run(
        override_with("below_spec_percent = 30"),
        &eccn_rules(),
        1300.0,
    );
    assert_eq!(codes(&v), ["below_spec"]);
    assert!(matches!(
        v.findings[0].figures,
        Reason::BelowSpec {
            tolerance_percent: 30,
            ..
        }
    ));
    let m = v.nodes[0].gpus[0].measured.as_deref().unwrap();
    assert_eq!(
        m.tolerances,
        MeasurementTolerances {
            exceeds_spec_percent: 10,
            below_spec_percent: 30,
            max_age_days: 30,
        }
    );
    // A rule set's own tolerances apply where the licence says nothing...
    let strict = RuleSet::from_toml_str(
        &include_str!("../../../rules/us-eccn-3a090.toml")
            .replace("exceeds_spec_percent = 10", "exceeds_spec_percent = 2"),
    )
    .unwrap();
    assert_eq!(
        codes(&run(open_licence(), &strict, 2100.0)),
        ["exceeds_spec"]
    );
    // ...and the licence's override wins over them.
    let lenient = override_with("exceeds_spec_percent = 20");
    assert_eq!(codes(&run(lenient, &strict, 2100.0)), Vec::<&str>::new());
}

#[test]
fn measured_verdicts_are_deterministic() {
    let mut gpus = measured_dgx("n2");
    gpus[4] = measured_h100("n2", 4, &[("fp8", 2300.0), ("int8", 900.0)]);
    gpus[5] = Gpu {
        device_id: "0x9999",
        name: "NVIDIA Mystery",
        ..gpus[5].clone()
    };
    let atts = vec![
        attestation("n1", AT, "measured", &measured_dgx("n1")),
        attestation("n2", AT, "measured", &gpus),
        node("n3", AT),
    ];
    let lics = [licence(MEASURED)];
    let rules = eccn_rules();
    let first = serde_json::to_string(&evaluate(&lics, &rules, &atts, AT)).unwrap();
    let mut rev = atts.clone();
    rev.reverse();
    let again = serde_json::to_string(&evaluate(&lics, &rules, &rev, AT)).unwrap();
    assert_eq!(first, again);
}

#[test]
fn an_old_or_future_measurement_does_not_back_the_measured_tier() {
    let aged = |started_at: i64| -> Vec<Gpu<'static>> {
        let mut gpus = measured_dgx("node-1");
        if let Some(m) = gpus[2].measurement.as_mut() {
            m["started_at"] = json!(started_at);
        }
        gpus
    };
    let run = |gpus: &[Gpu<'_>], rules: &RuleSet| {
        evaluate(
            &[licence(MEASURED)],
            rules,
            &[attestation("node-1", AT, "measured", gpus)],
            AT,
        )
    };
    let day = 86_400;
    // 30 days (the default `max_age_days`) is still fresh; a second more is not.
    let v = run(&aged(AT - 30 * day), &eccn_rules());
    assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Measured);
    let v = run(&aged(AT - 30 * day - 1), &eccn_rules());
    assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Declared);
    let f = &only(&v, "measured_tier_downgraded")[0];
    assert!(
        matches!(
            f.figures,
            Reason::MeasuredTierDowngraded {
                stale: 1,
                simulated: 0,
                gpus: 8,
                ..
            }
        ),
        "{:?}",
        f.figures
    );
    assert!(f.sentence.contains("measure again"), "{}", f.sentence);
    let g = v.nodes[0].gpus[2].measured.as_deref().unwrap();
    assert_eq!(g.status, MeasurementStatus::Stale);
    // Dated after the attestation that carries it.
    let v = run(&aged(AT + 1), &eccn_rules());
    assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Declared);
    // A rule set may allow older measurements.
    let lenient = RuleSet::from_toml_str(
        &include_str!("../../../rules/us-eccn-3a090.toml")
            .replace("max_age_days = 30", "max_age_days = 90"),
    )
    .unwrap();
    let v = run(&aged(AT - 60 * day), &lenient);
    assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Measured);
}

/// The certified site decides; a claim that disagrees is a violation and moves nothing.
#[test]
fn a_claimed_site_that_disagrees_with_the_certificate_is_a_violation() {
    let mut a = at_site("node-1", "fra-1", &dgx("node-1"));
    a.claims.site = Some("muc-1".to_owned());
    let v = evaluate(
        &[licence(EXAMPLE), small_elsewhere()],
        &eccn_rules(),
        &[a],
        AT,
    );
    assert_eq!(codes(&v), ["site_claim_mismatch"]);
    assert_eq!(v.verdict, Verdict::NotCompliant);
    assert_eq!(v.nodes[0].licence.as_deref(), Some("EXAMPLE-DE-2026-0142"));
    assert_eq!(v.nodes[0].site.as_deref(), Some("fra-1"));
    assert!(v.nodes[0].site_certified);
}

/// A node's move between attestations is a finding; its current site counts.
#[test]
fn a_site_change_between_attestations_is_reported() {
    let before = attestation_at(
        "node-1",
        AT - 60,
        Some(AT - 60),
        Some("fra-1"),
        &dgx("node-1"),
    );
    let after = attestation_at(
        "node-1",
        AT - 30,
        Some(AT - 30),
        Some("ber-1"),
        &dgx("node-1"),
    );
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[after, before], AT);
    assert_eq!(codes(&v), ["node_site_changed"]);
    assert_eq!(
        v.findings[0].figures,
        Reason::NodeSiteChanged {
            from: "fra-1".to_owned(),
            to: "ber-1".to_owned()
        }
    );
    assert_eq!(
        v.verdict,
        Verdict::Compliant,
        "a move within the licence is no breach"
    );
}

/// Two keys under one subject are two nodes (16 GPUs, not 8); one key on two machines
/// leaves the node unproven.
#[test]
fn a_node_is_its_key_not_its_subject() {
    let a = attestation("node-a", AT, "declared", &dgx("node-a"));
    let mut b = attestation("node-b", AT, "declared", &dgx("node-b"));
    b.node_subject = "node-a".to_owned();
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[a.clone(), b], AT);
    assert_eq!(v.nodes.len(), 2);
    assert_eq!(v.licences[0].devices.used, 16);
    assert_eq!(
        codes(&v),
        ["subject_with_several_keys", "subject_with_several_keys"]
    );
    assert_eq!(v.verdict, Verdict::Compliant);

    let mut here = a.clone();
    here.claims.host.machine_id = Some("machine-1".to_owned());
    let mut there = attestation("node-a", AT - 5, "declared", &dgx("node-a"));
    there.claims.host.machine_id = Some("machine-2".to_owned());
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[here, there], AT);
    assert_eq!(codes(&v), ["node_key_on_several_machines"]);
    assert_eq!(v.verdict, Verdict::Unproven);
}

/// In `check` (no receipt time), an attestation dated ahead never becomes current.
#[test]
fn a_future_dated_attestation_does_not_pin_the_node() {
    let honest = attestation("node-1", AT - 60, "declared", &dgx("node-1"));
    let mut ahead_gpus = dgx("node-1");
    ahead_gpus.truncate(4);
    let ahead = attestation("node-1", AT + 365 * 86_400, "declared", &ahead_gpus);
    let v = evaluate(&[licence(EXAMPLE)], &eccn_rules(), &[ahead, honest], AT);
    assert_eq!(v.nodes[0].iat, AT - 60);
    assert_eq!(v.licences[0].devices.used, 8);
    assert_eq!(codes(&v), ["attestation_from_future"]);
    assert_eq!(v.verdict, Verdict::Unproven);
}

/// A claimed `hardware` tier is downgraded; a licence needing it is unproven.
#[test]
fn a_claimed_hardware_tier_is_only_a_request() {
    let lic = licence_with(
        r#"min_evidence_tier = "declared""#,
        r#"min_evidence_tier = "hardware""#,
    );
    let v = evaluate(
        &[lic],
        &eccn_rules(),
        &[attestation(
            "node-1",
            AT,
            "hardware",
            &measured_dgx("node-1"),
        )],
        AT,
    );
    assert_eq!(
        codes(&v),
        ["evidence_tier_too_low", "hardware_tier_unverified"]
    );
    assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Measured);
    assert_eq!(v.verdict, Verdict::Unproven);
}

/// Issue 13: the `hardware` tier from each GPU's own evidence, bound to the attestation.
mod hardware {
    use std::sync::Arc;

    use tppguard_proto::claims::Nonce;
    use tppguard_proto::gpu_evidence::gpu_nonce;

    use super::*;
    use crate::attestation::gpu_evidence_facts;
    use crate::chain::TrustAnchors;
    use crate::gpu_evidence::test_device::{FwidForm, TestDevice, TestRoot};

    const DRIVER: &str = "550.90.07";
    const VBIOS: &str = "96.00.9F.00.01";

    fn hardware_licence() -> VerifiedLicence {
        licence_with(
            r#"min_evidence_tier = "declared""#,
            r#"min_evidence_tier = "hardware""#,
        )
    }

    fn devices(root: &Arc<TestRoot>, n: usize) -> Vec<TestDevice> {
        (0..n)
            .map(|_| root.device(FwidForm::NvidiaLegacy))
            .collect()
    }

    fn refs(devices: &[TestDevice]) -> Vec<&TestDevice> {
        devices.iter().collect()
    }

    fn trust(root: &TestRoot) -> TrustAnchors {
        TrustAnchors::default()
            .with_device_roots(&[root.root_der().into()])
            .unwrap()
    }

    /// `node`'s attestation whose GPU `i` carries evidence signed by `devices[i]` over the
    /// nonce `nonce_of(i)` gives, checked by the attestation verifier's own binding code.
    fn attested(
        node: &str,
        gpus: &[Gpu<'_>],
        devices: &[&TestDevice],
        trust: &TrustAnchors,
        nonce_of: impl Fn(&NodeId, u32) -> [u8; 32],
    ) -> VerifiedAttestation {
        let mut a = attestation(node, AT, "hardware", gpus);
        let node_id = a.node_id();
        for (i, device) in devices.iter().enumerate() {
            let name = format!("gpu{i}");
            let index = u32::try_from(i).unwrap();
            let submod = a.claims.submods.get_mut(&name).unwrap();
            submod.gpu_evidence = Some(device.evidence(nonce_of(&node_id, index), DRIVER, VBIOS));
        }
        let facts = gpu_evidence_facts(&a.claims, &node_id, trust, AT);
        a.with_gpu_evidence(facts)
    }

    fn bound(node: &NodeId, index: u32) -> [u8; 32] {
        gpu_nonce(&Nonce::parse(NONCE).unwrap(), node, index)
    }

    /// `node` reporting `gpus`, whose first `signed` carry evidence from fresh devices under a
    /// pinned test root, each signed over the nonce `nonce_of` gives.
    fn signing(
        node: &str,
        gpus: &[Gpu<'_>],
        signed: usize,
        nonce_of: impl Fn(&NodeId, u32) -> [u8; 32],
    ) -> VerifiedAttestation {
        let root = TestRoot::new("GH100");
        let signers = devices(&root, signed);
        attested(node, gpus, &refs(&signers), &trust(&root), nonce_of)
    }

    /// A measured DGX `node` whose first `signed` GPUs carry verified evidence for it.
    fn measured_node_signing(node: &str, signed: usize) -> VerifiedAttestation {
        signing(node, &measured_dgx(node), signed, bound)
    }

    #[test]
    fn every_gpu_verified_makes_a_hardware_node_compliant() {
        let a = measured_node_signing("node-1", 8);
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
        assert_eq!(codes(&v), Vec::<&str>::new());
        assert_eq!(v.verdict, Verdict::Compliant);
        let n = &v.nodes[0];
        assert_eq!(n.effective_evidence_tier, EvidenceTier::Hardware);
        for g in &n.gpus {
            assert_eq!(g.evidence_tier, EvidenceTier::Hardware);
            let report = g.gpu_evidence.as_deref().unwrap();
            assert!(report.verified(), "{report:?}");
            assert_eq!(report.hardware_id.as_deref().map(str::len), Some(64));
        }
        // The verdict names each check of each GPU.
        let json = serde_json::to_string(&v).unwrap();
        for check in ["cert_chain", "signature", "nonce", "fwid", "driver_version"] {
            assert!(json.contains(&format!("\"{check}\"")), "{check}");
        }
    }

    #[test]
    fn one_gpu_without_evidence_leaves_a_hardware_licence_unproven() {
        let a = measured_node_signing("node-1", 7);
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
        assert_eq!(
            codes(&v),
            ["evidence_tier_too_low", "hardware_tier_unverified"]
        );
        assert_eq!(v.verdict, Verdict::Unproven);
        let n = &v.nodes[0];
        assert_eq!(n.gpus[7].evidence_tier, EvidenceTier::Measured);
        assert!(n.gpus[7].gpu_evidence.is_none());
        assert_eq!(n.gpus[0].evidence_tier, EvidenceTier::Hardware);
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "hardware_tier_unverified");
        assert!(matches!(
            f.map(|f| &f.figures),
            Some(Reason::HardwareTierUnverified {
                gpus: 8,
                without_evidence: 1,
                failed: 0,
                ..
            })
        ));
    }

    #[test]
    fn a_report_for_another_challenge_node_or_gpu_fails_its_nonce() {
        let other_node = NodeId::from_spki_der(b"node-2");
        let stale = Nonce::parse(&"ab".repeat(32)).unwrap();
        type NonceOf = Box<dyn Fn(&NodeId, u32) -> [u8; 32]>;
        let cases: [(&str, NonceOf); 3] = [
            (
                "another node's",
                Box::new(move |_, i| gpu_nonce(&Nonce::parse(NONCE).unwrap(), &other_node, i)),
            ),
            (
                "another challenge's",
                Box::new(move |n, i| gpu_nonce(&stale, n, i)),
            ),
            ("another GPU's", Box::new(|n, i| bound(n, i ^ 1))),
        ];
        for (what, nonce_of) in cases {
            let a = signing("node-1", &measured_dgx("node-1"), 8, nonce_of);
            let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
            assert_eq!(v.verdict, Verdict::Unproven, "{what}");
            let failed: Vec<&Finding> = v
                .findings
                .iter()
                .filter(|f| f.code == "gpu_evidence_failed")
                .collect();
            assert_eq!(failed.len(), 8, "{what}");
            assert!(
                matches!(&failed[0].figures, Reason::GpuEvidenceFailed { failed, first_code, .. }
                    if failed == &["nonce"] && first_code == "nonce_mismatch"),
                "{what}: {:?}",
                failed[0].figures
            );
            assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Measured);
        }
    }

    #[test]
    fn one_gpu_in_two_nodes_is_a_duplicate_by_its_hardware_identity() {
        let root = TestRoot::new("GH100");
        let trust = trust(&root);
        let shared = root.device(FwidForm::NvidiaLegacy);
        let (own_1, own_2) = (devices(&root, 7), devices(&root, 7));
        let mut one = refs(&own_1);
        one.push(&shared);
        let mut two = refs(&own_2);
        two.push(&shared);
        // Each node reports its own UUIDs: only the hardware identity is shared.
        let a = attested("node-1", &measured_dgx("node-1"), &one, &trust, bound);
        let b = attested("node-2", &measured_dgx("node-2"), &two, &trust, bound);
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a, b], AT);
        let dup: Vec<&Finding> = v
            .findings
            .iter()
            .filter(|f| f.code == "duplicate_device")
            .collect();
        assert_eq!(dup.len(), 1, "{:?}", codes(&v));
        assert!(matches!(
            &dup[0].figures,
            Reason::DuplicateDevice { hardware_id: Some(h), .. } if h.len() == 64
        ));
        assert_eq!(v.licences[0].devices.used, 15);
    }

    /// A node reporting another node's UUIDs, without evidence, cannot take its GPUs over:
    /// they count where their own evidence verified, whichever node id sorts first.
    #[test]
    fn a_node_copying_uuids_does_not_take_over_gpus_that_signed_elsewhere() {
        let root = TestRoot::new("GH100");
        let trust = trust(&root);
        for (honest, copier) in [("node-a", "node-z"), ("node-z", "node-a")] {
            let own = devices(&root, 8);
            let a = attested(honest, &measured_dgx(honest), &refs(&own), &trust, bound);
            let b = attestation(copier, AT, "hardware", &measured_dgx(honest));
            let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a, b], AT);
            let h = node_named(&v, honest);
            assert_eq!(
                h.effective_evidence_tier,
                EvidenceTier::Hardware,
                "{honest}"
            );
            assert!(h.gpus.iter().all(|g| g.counted), "{honest}");
            assert!(node_named(&v, copier).gpus.iter().all(|g| !g.counted));
            assert_eq!(v.licences[0].devices.used, 8);
        }
    }

    #[test]
    fn a_simulated_inventory_never_reaches_hardware() {
        let mut a = measured_node_signing("node-1", 8);
        a.claims.simulated = true;
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
        assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Declared);
        assert!(
            v.nodes[0]
                .gpus
                .iter()
                .all(|g| g.evidence_tier == EvidenceTier::Declared)
        );
        assert_ne!(v.verdict, Verdict::Compliant);
    }

    #[test]
    fn evidence_under_a_root_not_pinned_is_not_hardware() {
        let root = TestRoot::new("GH100");
        let pinned = TestRoot::new("GH100");
        let a = attested(
            "node-1",
            &measured_dgx("node-1"),
            &refs(&devices(&root, 8)),
            &trust(&pinned),
            bound,
        );
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
        assert_eq!(v.verdict, Verdict::Unproven);
        let report = v.nodes[0].gpus[0].gpu_evidence.as_deref().unwrap();
        assert_eq!(
            report.outcome(crate::gpu_evidence::CheckName::CertChain),
            Some(crate::gpu_evidence::Outcome::Failed)
        );
        assert!(report.hardware_id.is_none());
    }

    /// The tiers nest: verified evidence without a real measurement is not `hardware`, so a
    /// licence asking for `measured` never takes an unmeasured GPU.
    #[test]
    fn hardware_needs_the_measured_tier_too() {
        let a = signing("node-1", &dgx("node-1"), 8, bound);
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
        assert_eq!(v.nodes[0].effective_evidence_tier, EvidenceTier::Declared);
        assert!(
            v.nodes[0]
                .gpus
                .iter()
                .all(|g| g.evidence_tier == EvidenceTier::Declared)
        );
        assert!(
            v.nodes[0]
                .gpus
                .iter()
                .all(|g| g.gpu_evidence.as_ref().is_some_and(|r| r.verified()))
        );
        assert_eq!(v.verdict, Verdict::Unproven);
    }

    /// Root asks one GPU for the reports of two submods: each verifies on its own, but one
    /// hardware identity signing for two GPUs is a violation and backs nothing.
    #[test]
    fn one_gpu_signing_for_two_submods_is_a_violation() {
        let root = TestRoot::new("GH100");
        let trust = trust(&root);
        let own = devices(&root, 7);
        let mut signers = refs(&own);
        signers.push(&own[0]);
        let a = attested("node-1", &measured_dgx("node-1"), &signers, &trust, bound);
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[a], AT);
        assert_eq!(v.verdict, Verdict::NotCompliant, "{:?}", codes(&v));
        let reused: Vec<&Finding> = v
            .findings
            .iter()
            .filter(|f| f.code == "gpu_evidence_reused")
            .collect();
        assert_eq!(reused.len(), 1);
        assert!(
            matches!(&reused[0].figures, Reason::GpuEvidenceReused { submods, .. }
            if submods == &["gpu0", "gpu7"])
        );
        let n = &v.nodes[0];
        assert_ne!(n.effective_evidence_tier, EvidenceTier::Hardware);
        assert_ne!(n.gpus[0].evidence_tier, EvidenceTier::Hardware);
        assert_ne!(n.gpus[7].evidence_tier, EvidenceTier::Hardware);
        assert_eq!(n.gpus[1].evidence_tier, EvidenceTier::Hardware);
    }

    /// A GH100's verified report on a GPU whose PCI id selects another chip's part (an A100,
    /// GA100) backs nothing: the spec-table part must be of the chip the GPU's certificate
    /// names.
    #[test]
    fn a_report_of_another_chip_than_the_spec_part_backs_nothing() {
        // The name and architecture are an H100's, as the GPU's certificate says; the PCI id
        // an A100's, which the spec table looks up first.
        let gpus: Vec<Gpu<'static>> = (0..8)
            .map(|i| Gpu {
                device_id: "0x20b2",
                ..h100("node-1", i)
            })
            .collect();
        let a = signing("node-1", &gpus, 8, bound);
        let v = evaluate(&[open_licence()], &eccn_rules(), &[a], AT);
        let mismatch = v
            .findings
            .iter()
            .filter(|f| {
                matches!(&f.figures, Reason::GpuEvidenceFailed { first_code, .. }
                if first_code == "spec_chip_mismatch")
            })
            .count();
        assert_eq!(mismatch, 8, "{:?}", codes(&v));
        assert!(
            v.nodes[0]
                .gpus
                .iter()
                .all(|g| g.evidence_tier != EvidenceTier::Hardware)
        );
    }

    /// The duplicate finding of copied UUIDs is the copier's: its licence and node, never the
    /// honest node whose GPUs signed.
    #[test]
    fn a_duplicate_of_copied_uuids_is_charged_to_the_copier() {
        let root = TestRoot::new("GH100");
        let trust = trust(&root);
        let own = devices(&root, 8);
        let honest = attested(
            "node-a",
            &measured_dgx("node-a"),
            &refs(&own),
            &trust,
            bound,
        );
        let copier = attestation("node-z", AT, "hardware", &measured_dgx("node-a"));
        let v = evaluate(&[hardware_licence()], &eccn_rules(), &[honest, copier], AT);
        let dup: Vec<&Finding> = v
            .findings
            .iter()
            .filter(|f| f.code == "duplicate_device")
            .collect();
        assert_eq!(dup.len(), 8);
        assert!(
            dup.iter()
                .all(|f| f.node.as_deref() == Some(id("node-z").as_str()))
        );
        assert_eq!(node_named(&v, "node-a").severity, Severity::Info);
    }

    /// A node cannot make one attestation cost hundreds of signature checks: evidence beyond
    /// the per-attestation bound is refused, named, and backs nothing.
    #[test]
    fn evidence_beyond_the_bound_is_refused_unchecked() {
        let root = TestRoot::new("GH100");
        let trust = trust(&root);
        let device = root.device(FwidForm::NvidiaLegacy);
        let n = crate::gpu_evidence::MAX_GPU_EVIDENCE_PER_ATTESTATION + 1;
        let gpus: Vec<Gpu<'static>> = (0..n).map(|i| h100("node-1", i)).collect();
        let signers: Vec<&TestDevice> = (0..n).map(|_| &device).collect();
        let a = attested("node-1", &gpus, &signers, &trust, bound);
        let refused: Vec<&str> = a
            .gpu_evidence()
            .iter()
            .filter(|(_, r)| {
                r.check(crate::gpu_evidence::CheckName::EvidenceDecoded)
                    .is_some_and(|c| c.code == "too_many_gpu_evidence")
            })
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(a.gpu_evidence().len(), n);
    }
}

/// The example licence's TOML with its destination (and its sites) in `destination`, its
/// licensee headquartered in `hq` with its ultimate parent in `parent`; shared with the
/// licence-need stage's own tests.
pub(super) fn party_licence_toml(hq: &str, parent: &str, destination: &str) -> String {
    EXAMPLE
        .replace("\"DE\"", &format!("\"{destination}\""))
        .replacen(
            &format!("headquarters_country = \"{destination}\""),
            &format!("headquarters_country = \"{hq}\""),
            1,
        )
        .replacen(
            &format!("ultimate_parent_country = \"{destination}\""),
            &format!("ultimate_parent_country = \"{parent}\""),
            1,
        )
}

/// Whether a licence's counted devices need a licence (`licence_need`), held against the
/// shipped rule sets, the spec table and the regulation's cases (15 CFR 742.6(a)(6)(iii)).
mod licence_need {
    use super::*;
    use tppguard_proto::ruleset::{LicenceNeed, RuleSetOrigin};

    const HQ_RULE: &str = "742.6(a)(6)(iii)(A)";

    /// The example licence with its destination (and its sites) in `destination`, its
    /// licensee headquartered in `hq` with its ultimate parent in `parent`.
    fn party_licence(hq: &str, parent: &str, destination: &str) -> VerifiedLicence {
        let l = licence(&party_licence_toml(hq, parent, destination));
        assert_eq!(l.licence().destination_country().as_str(), destination);
        assert_eq!(l.licence().licensee().headquarters_country.as_str(), hq);
        assert_eq!(
            l.licence().licensee().ultimate_parent_country.as_str(),
            parent
        );
        l
    }

    fn h20(node: &str, i: usize) -> Gpu<'static> {
        Gpu {
            device_id: "0x2329",
            name: "NVIDIA H20",
            agent_tpp: Some(2368.0),
            agent_eccn: "not_3a090",
            ..h100(node, i)
        }
    }

    /// `nodes` 8-GPU nodes at site `fra-1`, each GPU made by `gpu`.
    fn fleet(nodes: usize, gpu: fn(&str, usize) -> Gpu<'static>) -> Vec<VerifiedAttestation> {
        (0..nodes)
            .map(|n| {
                let name = format!("node-{n}");
                let gpus: Vec<Gpu<'static>> = (0..8).map(|i| gpu(&name, i)).collect();
                attestation(&name, AT - 60, "declared", &gpus)
            })
            .collect()
    }

    fn one(v: &FleetVerdict) -> &LicenceNeedSummary {
        assert_eq!(v.licences.len(), 1);
        &v.licences[0].licence_need
    }

    /// The only determination of the licence, with its outcome and devices.
    fn only_determination(v: &FleetVerdict) -> &NeedCount {
        let s = one(v);
        assert_eq!(s.determinations.len(), 1, "{s:#?}");
        &s.determinations[0]
    }

    #[test]
    fn a_german_licensee_with_a_chinese_parent_needs_a_licence_for_its_h100s() {
        let v = evaluate(
            &[party_licence("DE", "CN", "DE")],
            &eccn_rules(),
            &fleet(2, h100),
            AT,
        );
        let s = one(&v);
        assert_eq!((s.required, s.undetermined, s.not_required), (16, 0, 0));
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::Required);
        assert_eq!(c.determination.rule.as_deref(), Some(HQ_RULE));
        assert!(c.determination.by_party);
        assert_eq!(c.determination.rule_set, "us-eccn-3a090");
        assert_eq!((c.outcome.as_deref(), c.devices), (Some("3A090.a"), 16));
        // One finding for the licence, not one per device or node; info keeps it compliant.
        let f = only(&v, "licence_required_by_party");
        assert_eq!(f.len(), 1, "{:#?}", v.findings);
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(f[0].licence.as_deref(), Some("EXAMPLE-DE-2026-0142"));
        assert_eq!((f[0].node.as_deref(), f[0].gpu.as_deref()), (None, None));
        assert_eq!(
            f[0].sentence,
            "the licensee's ultimate parent is headquartered in CN (party group d5_macau; the \
             licensee itself in DE): under us-eccn-3a090 rule 742.6(a)(6)(iii)(A) its 16 \
             counted 3A090.a devices need a licence at any destination abroad; this licence \
             covers them"
        );
        assert_eq!(all_codes(&v), ["licence_required_by_party"]);
        assert!(v.verdict.is_compliant());
        // The party is the signed licence's, and the JSON names it.
        let usage = serde_json::to_value(&v.licences[0]).unwrap();
        assert_eq!(usage["party"]["ultimate_parent"], "CN");
        assert_eq!(usage["licence_need"]["required"], 16);
        let d = &usage["licence_need"]["determinations"][0];
        assert_eq!(d["need"], "required");
        assert_eq!(d["rule"], HQ_RULE);
        assert_eq!(d["by_party"], true);
        assert_eq!(d["outcome"], "3A090.a");
        assert_eq!(d["devices"], 16);
    }

    #[test]
    fn a_german_licensee_with_a_german_parent_needs_none() {
        let v = evaluate(
            &[party_licence("DE", "DE", "DE")],
            &eccn_rules(),
            &fleet(1, h100),
            AT,
        );
        let s = one(&v);
        assert_eq!((s.required, s.undetermined, s.not_required), (0, 0, 8));
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::NotRequired);
        assert_eq!(
            c.determination.rule.as_deref(),
            Some("742.6(a)(6)(iii).destination_a5")
        );
        assert!(!c.determination.by_party);
        assert_eq!(all_codes(&v), ["no_licence_required"]);
        assert_eq!(
            only(&v, "no_licence_required")[0].sentence,
            "under us-eccn-3a090 rule 742.6(a)(6)(iii).destination_a5 the 8 counted 3A090.a \
             devices at destination DE (group a5) need no licence for this destination and \
             licensee; the licence's caps still apply, as its terms"
        );
        assert!(v.verdict.is_compliant());
    }

    #[test]
    fn an_h20_fleet_is_not_controlled_whatever_the_parent() {
        let v = evaluate(
            &[party_licence("DE", "CN", "DE")],
            &eccn_rules(),
            &fleet(2, h20),
            AT,
        );
        let u = &v.licences[0];
        assert!(
            v.nodes
                .iter()
                .flat_map(|n| &n.gpus)
                .all(|g| g.outcome.as_deref() == Some("not_3a090") && !g.controlled && !g.counted)
        );
        assert_eq!((u.devices.used, u.devices_not_controlled), (0, 16));
        assert_eq!(u.licence_need, LicenceNeedSummary::default());
        assert!(v.findings.is_empty(), "{:#?}", v.findings);
        assert!(v.verdict.is_compliant());
    }

    #[test]
    fn a_licensee_headquartered_in_macau_needs_a_licence_by_its_own_headquarters() {
        let v = evaluate(
            &[party_licence("MO", "US", "DE")],
            &eccn_rules(),
            &fleet(1, h100),
            AT,
        );
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::Required);
        assert_eq!(c.determination.rule.as_deref(), Some(HQ_RULE));
        assert!(c.determination.by_party);
        let f = only(&v, "licence_required_by_party");
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].figures,
            Reason::LicenceRequiredByParty {
                headquarters: "MO".parse().unwrap(),
                headquarters_group: Some("d5_macau".to_owned()),
                ultimate_parent: "US".parse().unwrap(),
                ultimate_parent_group: None,
                prong: PartyProng::Headquarters,
                rule: HQ_RULE.to_owned(),
                rule_set: "us-eccn-3a090".to_owned(),
                outcome: Some("3A090.a".to_owned()),
                devices: 8,
            }
        );
        assert!(f[0].sentence.starts_with(
            "the licensee is headquartered in MO (party group d5_macau; its ultimate parent in \
             US)"
        ));
    }

    #[test]
    fn a_destination_in_no_encoded_group_is_undetermined_with_a_warning() {
        let v = evaluate(
            &[party_licence("AE", "AE", "AE")],
            &eccn_rules(),
            &fleet(1, h100),
            AT,
        );
        let s = one(&v);
        assert_eq!((s.required, s.undetermined, s.not_required), (0, 8, 0));
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::Undetermined);
        assert_eq!(c.determination.rule, None);
        let f = only(&v, "licence_need_undetermined");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].sentence.contains("D:1 or D:4"), "{}", f[0].sentence);
        assert!(
            f[0].sentence
                .contains("treat them as needing one until then")
        );
        // A warning: still compliant.
        assert!(v.verdict.is_compliant());
        assert_eq!(v.licences[0].severity, Severity::Warning);
    }

    #[test]
    fn devices_in_the_united_states_are_not_exported() {
        let v = evaluate(
            &[party_licence("US", "US", "US")],
            &eccn_rules(),
            &fleet(1, h100),
            AT,
        );
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::NotRequired);
        assert_eq!(
            c.determination.rule.as_deref(),
            Some("742.6(a)(6)(iii).united_states")
        );
        assert_eq!(all_codes(&v), ["no_licence_required"]);
    }

    #[test]
    fn a_rule_set_without_licensing_cannot_say() {
        let gain = shipped_rule_set("us-gain-ai-act-s3150").unwrap();
        assert!(gain.licensing.is_none());
        let v = evaluate(
            &[party_licence("DE", "CN", "DE")],
            &gain,
            &fleet(1, h100),
            AT,
        );
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::Undetermined);
        assert_eq!(c.determination.rule_set, "us-gain-ai-act-s3150");
        assert!(!c.determination.by_party);
        assert_eq!(c.devices, 8);
        assert_eq!(only(&v, "licence_need_undetermined").len(), 1);
        assert!(only(&v, "licence_required_by_party").is_empty());
        assert!(
            only(&v, "licence_need_undetermined")[0]
                .sentence
                .contains("does not state where a licence is needed")
        );
    }

    #[test]
    fn under_the_diffusion_rule_france_moved_to_tier_2_needs_a_licence() {
        let l = [party_licence("FR", "FR", "FR")];
        let fleet = fleet(1, h100);
        let shipped = diffusion_rules();
        let v = evaluate(&l, &shipped, &fleet, AT);
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::NotRequired);
        assert_eq!(c.determination.rule.as_deref(), Some("90fr4544.tier_1_aia"));
        assert_eq!(v.posture, shipped.posture());
        assert!(!v.posture.is_modified());

        let moved = shipped
            .with_country_in_group("FR".parse().unwrap(), "tier_2")
            .unwrap();
        let v = evaluate(&l, &moved, &fleet, AT);
        let s = one(&v);
        assert_eq!((s.required, s.undetermined, s.not_required), (8, 0, 0));
        let c = only_determination(&v);
        assert_eq!(c.determination.need, LicenceNeed::Required);
        assert!(!c.determination.by_party);
        // Required by the destination: what the licence is for, no finding of its own.
        assert!(only(&v, "licence_required_by_party").is_empty());
        assert!(only(&v, "no_licence_required").is_empty());
        assert_eq!(v.countries[0].tier.as_deref(), Some("tier_2"));
        // The verdict says which rule set, modified how.
        assert_eq!(
            v.posture.variant_of.as_deref(),
            Some("us-ai-diffusion-2025")
        );
        assert_eq!(v.posture.origin, RuleSetOrigin::Scenario);
        assert_eq!(v.posture.modifications, ["FR moved from tier_1 to tier_2"]);
        assert_eq!(v.posture.status, shipped.status);
    }

    #[test]
    fn a_node_s_claims_never_change_the_determination() {
        // The same devices, reported by nodes that say whatever they like about themselves:
        // another name and host, the agent's own ECCN and TPP.
        fn liar(node: &str, i: usize) -> Gpu<'static> {
            Gpu {
                agent_tpp: Some(1.0),
                agent_eccn: "EAR99",
                ..h100(node, i)
            }
        }
        let rules = eccn_rules();
        let honest = fleet(1, h100);
        let lying: Vec<VerifiedAttestation> = (0..1)
            .map(|n| {
                let name = format!("owned-by-a-DE-parent-{n}");
                let gpus: Vec<Gpu<'static>> = (0..8).map(|i| liar(&name, i)).collect();
                attestation(&name, AT - 60, "hardware", &gpus)
            })
            .collect();
        for (hq, parent, need) in [
            ("DE", "CN", LicenceNeed::Required),
            ("DE", "DE", LicenceNeed::NotRequired),
        ] {
            let l = [party_licence(hq, parent, "DE")];
            let a = evaluate(&l, &rules, &honest, AT);
            let b = evaluate(&l, &rules, &lying, AT);
            assert_eq!(one(&a), one(&b), "{hq}/{parent}");
            assert_eq!(only_determination(&a).determination.need, need);
            assert_eq!(a.licences[0].party, b.licences[0].party);
        }
    }

    #[test]
    fn each_licence_gets_its_own_determination() {
        // Two licences in one fleet, one party each: the party of one never leaks into the
        // other's determination.
        let cn = party_licence("DE", "CN", "DE");
        let de = licence(
            &EXAMPLE
                .replacen("EXAMPLE-DE-2026-0142", "EXAMPLE-DE-2026-0143", 1)
                .replacen("id = \"fra-1\"", "id = \"muc-1\"", 1)
                .replacen("id = \"ber-1\"", "id = \"ham-1\"", 1),
        );
        let mut nodes = fleet(1, h100);
        nodes.push(at_site("node-m", "muc-1", &dgx("node-m")));
        let v = evaluate(&[cn, de], &eccn_rules(), &nodes, AT);
        let needs: Vec<(&str, LicenceNeed, u64)> = v
            .licences
            .iter()
            .map(|u| {
                let c = &u.licence_need.determinations[0];
                (u.licence.as_str(), c.determination.need, c.devices)
            })
            .collect();
        assert_eq!(
            needs,
            [
                ("EXAMPLE-DE-2026-0142", LicenceNeed::Required, 8),
                ("EXAMPLE-DE-2026-0143", LicenceNeed::NotRequired, 8),
            ]
        );
    }
}

/// Shipments (issue 15): the vendor's shipped devices followed through the fleet.
mod shipments_stage {
    use super::*;
    use crate::gpu_evidence::{Check, CheckName, Outcome};

    const DAY: i64 = 86_400;
    const LIC: &str = "EXAMPLE-DE-2026-0142";
    const SMALL: &str = "EXAMPLE-DE-2026-0143";

    /// A shipment under `licence` delivered to `site` a day before [`AT`], of the GPUs named
    /// (by UUID).
    fn shipment(id: &str, licence: &str, site: &str, uuids: &[String]) -> VerifiedShipment {
        VerifiedShipment {
            id: id.to_owned(),
            licence: licence.to_owned(),
            vendor: "CN=Example GPU vendor shipments".to_owned(),
            site: site.to_owned(),
            country: "DE".parse().unwrap(),
            delivered_at: AT - DAY,
            devices: uuids.iter().map(|u| shipped_device(u)).collect(),
            token_sha256: format!("{id}-sha"),
        }
    }

    /// The UUIDs of `node`'s eight H100s (as [`dgx`] names them).
    fn uuids(node: &str) -> Vec<String> {
        (0..8).map(|i| format!("GPU-{node}-{i}")).collect()
    }

    fn run(
        lics: &[VerifiedLicence],
        shipments: &[VerifiedShipment],
        nodes: &[VerifiedAttestation],
        at: i64,
    ) -> FleetVerdict {
        super::super::evaluate(lics, shipments, &eccn_rules(), nodes, at)
    }

    /// A licence requiring shipments (the example's, `[shipments] required = true`).
    fn requiring() -> VerifiedLicence {
        licence(&format!(
            "{EXAMPLE}\n[shipments]\nrequired = true\nunaccounted_after = \"14d\"\n"
        ))
    }

    #[test]
    fn shipped_gpus_at_a_licensed_site_raise_nothing_and_are_summarised() {
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(
            &[licence(EXAMPLE)],
            &[ship],
            &[at_site("node-1", "fra-1", &dgx("node-1"))],
            AT,
        );
        assert_eq!(codes(&v), Vec::<&str>::new());
        assert_eq!(v.verdict, Verdict::Compliant);
        let summary = v.licences[0].shipments.unwrap();
        assert_eq!(
            summary,
            ShipmentSummary {
                count: 1,
                devices_shipped: 8,
                devices_seen: 8,
                ..ShipmentSummary::default()
            }
        );
        let json = serde_json::to_value(&v.licences[0]).unwrap();
        assert_eq!(json["shipments"]["devices_seen"], 8);
        // Without shipments (and none required), the usage JSON is as before: no key.
        let bare = run(&[licence(EXAMPLE)], &[], &[node("node-1", AT)], AT);
        let json = serde_json::to_value(&bare.licences[0]).unwrap();
        assert!(json.get("shipments").is_none(), "{json}");
    }

    /// An operator moves a shipped GPU to an unlicensed site: `diverted_device` about the
    /// shipment's licence, the node and the GPU, whatever licence the node counts under.
    #[test]
    fn a_shipped_gpu_moved_to_an_unlicensed_site_is_diverted() {
        let mut moved = dgx("node-2");
        moved[2] = h100("node-1", 2);
        let mut left = dgx("node-1");
        left.remove(2);
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(
            &[licence(EXAMPLE), small_elsewhere()],
            &[ship],
            &[
                at_site("node-1", "fra-1", &left),
                at_site("node-2", "muc-1", &moved),
            ],
            AT,
        );
        let diverted = only(&v, "diverted_device");
        assert_eq!(diverted.len(), 1, "{:?}", codes(&v));
        let f = &diverted[0];
        assert_eq!(f.severity, Severity::Violation);
        assert_eq!(f.licence.as_deref(), Some(LIC), "the shipment's licence");
        // Matched by UUID alone (the vendor's word): about the licence, not the node.
        assert_eq!((f.node.as_deref(), f.gpu.as_deref()), (None, None));
        let node_2 = id("node-2");
        assert!(
            matches!(&f.figures, Reason::DivertedDevice { site: Some(s), site_country: Some(c), node, gpu, hardware_proven: false, .. }
                if s == "muc-1" && c.as_str() == "DE" && *node == node_2 && gpu == "gpu2"),
            "{:?}",
            f.figures
        );
        for part in [
            node_2.as_str(),
            "UUID or serial only",
            "GPU-node-1-2",
            "SHP-1",
            "muc-1",
            "fra-1, ber-1",
            "return it",
        ] {
            assert!(f.sentence.contains(part), "{part}: {}", f.sentence);
        }
        let lic = v.licences.iter().find(|l| l.licence == LIC).unwrap();
        assert_eq!(lic.verdict, Verdict::NotCompliant);
        let summary = lic.shipments.unwrap();
        assert_eq!((summary.devices_seen, summary.devices_diverted), (7, 1));
        assert_eq!(summary.devices_unaccounted, 0, "seen, though diverted");
    }

    /// A node at another site claims a licensed one; its certificate decides.
    #[test]
    fn a_claimed_licensed_site_does_not_hide_a_diversion() {
        let mut liar = at_site("node-1", "muc-1", &dgx("node-1"));
        liar.claims.site = Some("fra-1".to_owned());
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(&[licence(EXAMPLE)], &[ship], &[liar], AT);
        assert_eq!(only(&v, "diverted_device").len(), 8);
        assert!(codes(&v).contains(&"site_claim_mismatch"));
        // Without a certified site, its GPUs are not proven at a licensed site either.
        let uncertified = attestation_at("node-1", AT, None, None, &dgx("node-1"));
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(&[licence(EXAMPLE)], &[ship], &[uncertified], AT);
        let diverted = only(&v, "diverted_device");
        assert_eq!(diverted.len(), 8);
        assert!(
            diverted[0].sentence.contains("certifies no site"),
            "{}",
            diverted[0].sentence
        );
    }

    /// A node hides a shipped GPU: unaccounted once the licence's period has passed, not
    /// before; one finding per device.
    #[test]
    fn a_hidden_shipped_gpu_is_unaccounted_only_after_the_period() {
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        // The node attests afresh, with two of its eight shipped GPUs left out.
        let hiding = |at: i64| {
            [attestation_at(
                "node-1",
                at,
                None,
                Some("fra-1"),
                &dgx("node-1")[..6],
            )]
        };
        let deadline = AT - DAY + 14 * DAY;
        let before = run(
            &[licence(EXAMPLE)],
            std::slice::from_ref(&ship),
            &hiding(deadline),
            deadline,
        );
        assert!(only(&before, "unaccounted_device").is_empty());
        let after = run(
            &[licence(EXAMPLE)],
            std::slice::from_ref(&ship),
            &hiding(deadline + 1),
            deadline + 1,
        );
        let unaccounted = only(&after, "unaccounted_device");
        assert_eq!(unaccounted.len(), 2);
        assert_eq!(unaccounted[0].severity, Severity::Warning);
        assert_eq!(unaccounted[0].licence.as_deref(), Some(LIC));
        assert!(matches!(
            &unaccounted[0].figures,
            Reason::UnaccountedDevice { overdue_s: 1, unaccounted_after_s, .. }
                if *unaccounted_after_s == 14 * 86_400
        ));
        assert!(
            unaccounted
                .iter()
                .any(|f| f.sentence.contains("GPU-node-1-7"))
        );
        assert_eq!(after.licences[0].shipments.unwrap().devices_unaccounted, 2);
        // A warning: it does not change the verdict on its own.
        assert_eq!(after.verdict, Verdict::Compliant);
        // The deadline instant is the one `serve` re-evaluates at.
        assert_eq!(
            shipments::next_deadline(&[ship], &[licence(EXAMPLE)], AT),
            Some(deadline + 1)
        );
    }

    /// A simulated inventory may claim any UUID: its GPUs account for nothing.
    #[test]
    fn a_gpu_seen_only_on_a_simulated_node_is_still_unaccounted() {
        let mut fake = at_site("node-9", "fra-1", &dgx("node-1"));
        fake.claims.simulated = true;
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(&[licence(EXAMPLE)], &[ship], &[fake], AT + 30 * DAY);
        assert_eq!(only(&v, "unaccounted_device").len(), 8);
        assert_eq!(v.licences[0].shipments.unwrap().devices_seen, 0);
        // Nor do they satisfy a licence that requires shipments.
        let mut fake = at_site("node-9", "fra-1", &dgx("node-1"));
        fake.claims.simulated = true;
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(&[requiring()], &[ship], &[fake], AT);
        let unshipped = only(&v, "unshipped_device");
        assert_eq!(unshipped.len(), 8);
        assert!(matches!(
            unshipped[0].figures,
            Reason::UnshippedDevice {
                simulated: true,
                shipments: 1,
                ..
            }
        ));
    }

    /// The same shipped GPU UUID cloned onto two nodes: `shipped_device_duplicated` about
    /// the shipment's licence, beside `duplicate_device`.
    #[test]
    fn a_shipped_uuid_cloned_onto_two_nodes_is_duplicated() {
        let mut clone = dgx("node-2");
        clone[0] = h100("node-1", 4);
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(
            &[licence(EXAMPLE)],
            &[ship],
            &[
                at_site("node-1", "fra-1", &dgx("node-1")),
                at_site("node-2", "ber-1", &clone),
            ],
            AT,
        );
        assert_eq!(only(&v, "duplicate_device").len(), 1);
        let dup = only(&v, "shipped_device_duplicated");
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0].severity, Severity::Violation);
        assert_eq!(dup[0].licence.as_deref(), Some(LIC));
        let Reason::ShippedDeviceDuplicated {
            seen_in, device, ..
        } = &dup[0].figures
        else {
            panic!("{:?}", dup[0]);
        };
        // Places by node id only: a subject is the operator's, and the vendor reads this.
        let mut expected = [
            format!("{}/gpu4", id("node-1")),
            format!("{}/gpu0", id("node-2")),
        ];
        expected.sort();
        assert_eq!(seen_in, &expected);
        // Nowhere in what the vendor's view and webhook event carry (sentence, figures).
        let shown = serde_json::to_string(&dup[0]).unwrap();
        for name in ["node-1 [", "node-2 ["] {
            assert!(!shown.contains(name), "{shown}");
        }
        assert_eq!(device.uuid.as_deref(), Some("GPU-node-1-4"));
        // Matched by UUID alone: about the licence, no node.
        assert!(dup[0].node.is_none() && dup[0].gpu.is_none());
        assert!(dup[0].also_about.is_empty());
        assert_eq!(v.verdict, Verdict::NotCompliant);
    }

    /// A licence requiring shipments: a counted GPU on none of its shipments is a violation;
    /// a GPU on another licence's shipment does not satisfy it.
    #[test]
    fn a_licence_requiring_shipments_flags_an_unshipped_gpu() {
        let mut gpus = dgx("node-1");
        gpus[7] = h100("stray", 0);
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1")[..7]);
        let other = shipment("SHP-9", SMALL, "muc-1", &["GPU-stray-0".to_owned()]);
        let v = run(
            &[requiring(), small_elsewhere()],
            &[ship, other],
            &[at_site("node-1", "fra-1", &gpus)],
            AT,
        );
        let unshipped = only(&v, "unshipped_device");
        assert_eq!(unshipped.len(), 1, "{:?}", codes(&v));
        assert_eq!(unshipped[0].gpu.as_deref(), Some("gpu7"));
        assert_eq!(unshipped[0].licence.as_deref(), Some(LIC));
        assert!(unshipped[0].sentence.contains("GPU-stray-0"));
        let lic = v.licences.iter().find(|l| l.licence == LIC).unwrap();
        assert_eq!(lic.verdict, Verdict::NotCompliant);
        assert_eq!(lic.shipments.unwrap().devices_unshipped, 1);
        // The stray GPU of the other licence's shipment is diverted from it.
        assert_eq!(
            only(&v, "diverted_device")[0].licence.as_deref(),
            Some(SMALL)
        );
        // Required with no shipment at all: every counted GPU, and the summary shows it.
        let v = run(&[requiring()], &[], &[node("node-1", AT)], AT);
        assert_eq!(only(&v, "unshipped_device").len(), 8);
        let summary = v.licences[0].shipments.unwrap();
        assert_eq!((summary.count, summary.devices_unshipped), (0, 8));
    }

    /// Shipments only add findings: a fleet not compliant without them stays so with every
    /// device shipped.
    #[test]
    fn shipments_never_make_a_verdict_compliant_on_their_own() {
        let small = licence(TOO_SMALL);
        let ship = shipment("SHP-1", SMALL, "fra-1", &uuids("node-1"));
        let nodes = [at_site("node-1", "fra-1", &dgx("node-1"))];
        let without = run(std::slice::from_ref(&small), &[], &nodes, AT);
        let with = run(&[small], &[ship], &nodes, AT);
        assert_eq!(without.verdict, Verdict::NotCompliant);
        assert_eq!(with.verdict, Verdict::NotCompliant);
        assert_eq!(codes(&without), codes(&with));
        // A stale node stays unproven too.
        let stale = [attestation_at(
            "node-1",
            AT - 3 * DAY,
            None,
            Some("fra-1"),
            &dgx("node-1"),
        )];
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        assert_eq!(
            run(&[licence(EXAMPLE)], &[ship], &stale, AT).verdict,
            Verdict::Unproven
        );
    }

    /// Assignment: without shipments a node counts under the stricter licence listing its
    /// site (unchanged); with every controlled GPU on one licence's shipments, under that one.
    #[test]
    fn shipments_choose_the_licence_among_those_listing_a_site() {
        let nodes = [at_site("node-1", "fra-1", &dgx("node-1"))];
        let lics = [licence(TOO_SMALL), licence(EXAMPLE)];
        let old = run(&lics, &[], &nodes, AT);
        assert_eq!(old.nodes[0].licence.as_deref(), Some(SMALL));
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let new = run(&lics, &[ship], &nodes, AT);
        assert_eq!(new.nodes[0].licence.as_deref(), Some(LIC));
        assert!(!codes(&new).contains(&"aggregate_tpp_above_cap"));
        // Only some GPUs shipped under it: the old rule.
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1")[..4]);
        let partly = run(&lics, &[ship], &nodes, AT);
        assert_eq!(partly.nodes[0].licence.as_deref(), Some(SMALL));
        // A licence not listing the node's site is never chosen by shipments.
        let ship = shipment("SHP-1", SMALL, "muc-1", &uuids("node-1"));
        let elsewhere = run(&[licence(EXAMPLE), small_elsewhere()], &[ship], &nodes, AT);
        assert_eq!(elsewhere.nodes[0].licence.as_deref(), Some(LIC));
        // A simulated node is never moved by the UUIDs it claims.
        let mut fake = at_site("node-1", "fra-1", &dgx("node-1"));
        fake.claims.simulated = true;
        let ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let v = run(&lics, &[ship], &[fake], AT);
        assert_eq!(v.nodes[0].licence.as_deref(), Some(SMALL));
    }

    #[test]
    fn a_shipment_to_an_unlisted_site_or_under_an_unknown_licence_is_a_warning() {
        let to_muc = shipment("SHP-1", LIC, "muc-1", &uuids("node-1"));
        let unknown = shipment("SHP-2", "OTHER-1", "fra-1", &uuids("node-2"));
        let v = run(
            &[licence(EXAMPLE)],
            &[to_muc, unknown],
            &[
                at_site("node-1", "fra-1", &dgx("node-1")),
                at_site("node-2", "ams-9", &dgx("node-2")),
            ],
            AT,
        );
        let site = only(&v, "shipment_site_not_licensed");
        assert_eq!(site.len(), 1);
        assert_eq!(site[0].severity, Severity::Warning);
        assert_eq!(site[0].licence.as_deref(), Some(LIC));
        let unknown = only(&v, "shipment_licence_unknown");
        assert_eq!(unknown.len(), 1);
        assert_eq!(
            unknown[0].licence.as_deref(),
            Some("OTHER-1"),
            "its vendor sees it"
        );
        // The unknown licence's devices are not followed: no diversion at ams-9 from it.
        assert!(only(&v, "diverted_device").is_empty());
        assert_eq!(v.licences[0].shipments.unwrap().count, 1);
    }

    /// A report whose every required check passed, with hardware identity `id`.
    fn verified_report(id: &str) -> Arc<GpuEvidenceReport> {
        Arc::new(GpuEvidenceReport {
            checks: CheckName::ALL
                .iter()
                .map(|&name| Check {
                    name,
                    outcome: Outcome::Passed,
                    code: String::new(),
                    sentence: String::new(),
                })
                .collect(),
            hardware_id: Some(id.to_owned()),
            ecid: None,
            facts: None,
        })
    }

    /// Where the shipment and the GPU's verified evidence both carry a hardware identity, it
    /// alone decides: a UUID copied onto another chip is not the shipped device.
    #[test]
    fn a_hardware_identity_decides_over_a_copied_uuid() {
        let mut device = shipped_device("GPU-node-1-0");
        device.hardware_id = Some("AA11".to_owned());
        let mut ship = shipment("SHP-1", LIC, "fra-1", &[]);
        ship.devices = vec![device];
        let with_chip = |chip: &str| {
            let a = at_site("node-1", "muc-1", &dgx("node-1")[..1]);
            let facts = GpuEvidenceFacts::from([("gpu0".to_owned(), verified_report(chip))]);
            a.with_gpu_evidence(facts)
        };
        // Another chip under the shipped UUID, at an unlicensed site: not the shipped device.
        let other = run(
            &[licence(EXAMPLE), small_elsewhere()],
            &[ship.clone()],
            &[with_chip("bb22")],
            AT,
        );
        assert!(only(&other, "diverted_device").is_empty());
        // The shipped chip (identity compared case-folded), whatever UUID: diverted.
        let same = run(
            &[licence(EXAMPLE), small_elsewhere()],
            &[ship],
            &[with_chip("aa11")],
            AT,
        );
        let diverted = only(&same, "diverted_device");
        assert_eq!(diverted.len(), 1);
        // Proven by the hardware identity: about the node and its GPU too.
        assert_eq!(diverted[0].node.as_deref(), Some(id("node-1").as_str()));
        assert_eq!(diverted[0].gpu.as_deref(), Some("gpu0"));
        assert!(matches!(
            diverted[0].figures,
            Reason::DivertedDevice {
                hardware_proven: true,
                ..
            }
        ));
        let node = same
            .nodes
            .iter()
            .find(|n| n.node.to_string() == id("node-1"));
        assert_eq!(node.map(|n| n.severity), Some(Severity::Violation));
    }

    /// Another licence at muc-1 (a second operator's), as generous as the example.
    fn other_operator() -> VerifiedLicence {
        licence(
            &EXAMPLE
                .replacen("EXAMPLE-DE-2026-0142", "EXAMPLE-DE-2026-0143", 1)
                .replacen("id = \"fra-1\"", "id = \"muc-1\"", 1)
                .replacen("id = \"ber-1\"", "id = \"ham-1\"", 1),
        )
    }

    /// A vendor signs a shipment listing another operator's GPUs (by UUID and serial): it
    /// can make its own licence's verdict worse, never the other operator's node, nor gate
    /// any of its GPUs through the lease.
    #[test]
    fn a_vendor_cannot_frame_another_operators_node_by_uuid() {
        let lics = [licence(EXAMPLE), other_operator()];
        let nodes = [at_site("node-2", "muc-1", &dgx("node-2"))];
        let framing = shipment("SHP-X", LIC, "fra-1", &uuids("node-2"));
        let before = run(&lics, &[], &nodes, AT);
        let after = run(&lics, &[framing], &nodes, AT);
        let diverted = only(&after, "diverted_device");
        assert_eq!(diverted.len(), 8);
        for f in &diverted {
            assert_eq!(f.licence.as_deref(), Some(LIC));
            assert!(f.node.is_none() && f.gpu.is_none(), "{f:?}");
            let shown = serde_json::to_string(f).unwrap();
            assert!(!shown.contains("node-2 ["), "no subject: {shown}");
            assert!(f.sentence.contains(&id("node-2")), "{}", f.sentence);
        }
        assert_eq!(after.nodes[0].severity, before.nodes[0].severity);
        assert_ne!(after.nodes[0].severity, Severity::Violation);
        let theirs = |v: &FleetVerdict| {
            v.licences
                .iter()
                .find(|l| l.licence == SMALL)
                .map(|l| l.verdict)
        };
        assert_eq!(theirs(&after), theirs(&before));
        assert_ne!(theirs(&after), Some(Verdict::NotCompliant));
        // The lease of the framed node leaves none of its GPUs out and stays as before.
        let index = after.finding_index();
        let plan = crate::lease::LeasePlan::new(&after, &index);
        let lease = plan.lease(after.nodes[0].node, AT, "v").unwrap();
        assert!(lease.excluded.is_empty(), "{:?}", lease.excluded);
        assert_eq!(lease.gpus.len(), 8);
        let index = before.finding_index();
        let plan = crate::lease::LeasePlan::new(&before, &index);
        let was = plan.lease(before.nodes[0].node, AT, "v").unwrap();
        assert_eq!(lease.verdict, was.verdict);
    }

    /// A shipment records the hardware identity; a GPU without verified evidence under the
    /// shipped UUID (a clone as likely as the device) is never seen, shipped or preferred.
    #[test]
    fn a_uuid_without_the_recorded_hardware_identity_never_counts_as_the_device() {
        let mut device = shipped_device("GPU-node-1-0");
        device.hardware_id = Some("AA11".to_owned());
        let mut ship = shipment("SHP-1", LIC, "fra-1", &[]);
        ship.devices = vec![device];
        let nodes = [at_site("node-1", "fra-1", &dgx("node-1")[..1])];
        let later = AT + 30 * DAY;
        let v = run(
            &[licence(EXAMPLE)],
            std::slice::from_ref(&ship),
            &nodes,
            later,
        );
        let summary = v.licences[0].shipments.unwrap();
        assert_eq!(summary.devices_seen, 0);
        assert_eq!(only(&v, "unaccounted_device").len(), 1);
        // Not shipped either, for a licence that requires shipments.
        let v = run(&[requiring()], std::slice::from_ref(&ship), &nodes, AT);
        assert_eq!(only(&v, "unshipped_device").len(), 1);
        // Away from the licence's sites it is still diverted, about the licence only.
        let away = [at_site("node-1", "muc-1", &dgx("node-1")[..1])];
        let v = run(&[licence(EXAMPLE), other_operator()], &[ship], &away, AT);
        let diverted = only(&v, "diverted_device");
        assert_eq!(diverted.len(), 1);
        assert!(diverted[0].node.is_none());
    }

    /// The signed delivery country counts: {fra-1, CN} under a licence whose fra-1 is in DE
    /// is not a delivery to a site of the licence.
    #[test]
    fn a_shipment_signed_for_another_country_is_not_at_a_licensed_site() {
        let mut ship = shipment("SHP-1", LIC, "fra-1", &uuids("node-1"));
        let nodes = [at_site("node-1", "fra-1", &dgx("node-1"))];
        let v = run(&[licence(EXAMPLE)], std::slice::from_ref(&ship), &nodes, AT);
        assert!(only(&v, "shipment_site_not_licensed").is_empty());
        ship.country = "CN".parse().unwrap();
        let v = run(&[licence(EXAMPLE)], &[ship], &nodes, AT);
        let site = only(&v, "shipment_site_not_licensed");
        assert_eq!(site.len(), 1);
        assert!(
            site[0].sentence.contains("fra-1 in CN"),
            "{}",
            site[0].sentence
        );
        assert_eq!(site[0].licence.as_deref(), Some(LIC));
    }

    #[test]
    fn the_verdict_does_not_depend_on_the_shipments_order() {
        let a = shipment("SHP-1", LIC, "fra-1", &uuids("node-1")[..4]);
        let b = shipment("SHP-2", LIC, "fra-1", &uuids("node-1")[4..]);
        let nodes = [at_site("node-1", "muc-1", &dgx("node-1"))];
        let lics = [licence(EXAMPLE)];
        let one = serde_json::to_string(&run(&lics, &[a.clone(), b.clone()], &nodes, AT)).unwrap();
        let two = serde_json::to_string(&run(&lics, &[b, a.clone(), a], &nodes, AT)).unwrap();
        assert_eq!(one, two);
    }
}
