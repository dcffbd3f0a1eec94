use std::sync::Arc;

use tppguard_proto::licence::{CapChange, CountryCode};
use tppguard_proto::ruleset::shipped_rule_set;

use super::*;
use crate::policy::bench_support::synthetic_fleet;
use crate::policy::{VerifiedLicence, evaluate};

fn de() -> CountryCode {
    "DE".parse().unwrap()
}

/// Two DE licences (4 nodes of 2 H100s) under the AI Diffusion Rule: the baseline, and the
/// scenario with DE moved to tier_2 and the first licence capped at one device.
fn france_like() -> (FleetVerdict, FleetVerdict) {
    let (lics, atts, _, at) = synthetic_fleet(4, 2, 2);
    let rule_set = shipped_rule_set("us-ai-diffusion-2025").unwrap();
    let baseline = evaluate(&lics, &[], &rule_set, &atts, at);
    let moved = rule_set.with_country_in_group(de(), "tier_2").unwrap();
    let capped: Vec<VerifiedLicence> = lics
        .iter()
        .map(|v| {
            let l = if v.licence().id() == "SYN-DE-0000" {
                v.licence().with_cap(CapChange::MaxDevices(1))
            } else {
                v.licence().clone()
            };
            VerifiedLicence::new(l, v.signer_subject().to_owned())
        })
        .collect();
    let scenario = evaluate(&capped, &[], &moved, &atts, at);
    (baseline, scenario)
}

fn text(c: &Comparison) -> String {
    let mut out = Vec::new();
    write_comparison(c, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_country_move_shows_both_tiers_and_the_shared_allocation() {
    let (b, s) = france_like();
    let c = compare(&b, &s);
    assert!(c.scenario.is_modified() && !c.baseline.is_modified());
    let [country] = c.countries.as_slice() else {
        panic!("{:?}", c.countries)
    };
    assert_eq!(country.licences, ["SYN-DE-0000", "SYN-DE-0001"]);
    assert!(country.changed);
    let (cb, cs) = (
        country.baseline.as_ref().unwrap(),
        country.scenario.as_ref().unwrap(),
    );
    assert_eq!(cb.tier.as_deref(), Some("tier_1"));
    assert_eq!(cs.tier.as_deref(), Some("tier_2"));
    assert!(cb.allocation.is_none());
    let a = cs.allocation.unwrap();
    assert_eq!(a.cap, "790000000".parse().unwrap());
    // 8 H100s at 15,831.2 TPP, both licences together.
    assert_eq!(a.used, "126649.6".parse().unwrap());
    assert_eq!(cs.allocation_period.as_deref(), Some("2025-2027"));

    let t = text(&c);
    assert!(t.contains("  scenario: us-ai-diffusion-2025 v"), "{t}");
    assert!(
        t.contains("MODIFIED from us-ai-diffusion-2025: DE moved from tier_1 to tier_2"),
        "{t}"
    );
    assert!(
        t.contains("    tier                 tier_1 -> tier_2\n"),
        "{t}"
    );
    assert!(
        t.contains(
            "-> 790,000,000 TPP (2025-2027), used 126,649.6, headroom 789,873,350.4, shared by 2 \
             licences"
        ),
        "{t}"
    );
    assert!(
        t.contains("shared by 2 licences: SYN-DE-0000, SYN-DE-0001"),
        "{t}"
    );
}

#[test]
fn a_cap_change_makes_one_licence_not_compliant_and_leaves_the_other() {
    let (b, s) = france_like();
    let c = compare(&b, &s);
    assert_eq!(c.verdict.baseline, Verdict::Compliant, "{:?}", b.findings);
    assert_eq!(c.verdict.scenario, Verdict::NotCompliant);
    let [first, second] = c.licences.as_slice() else {
        panic!("{:?}", c.licences)
    };
    assert_eq!(first.licence, "SYN-DE-0000");
    assert!(first.changed);
    // The second licence keeps its caps, usage and verdict (its licence need may move with
    // the country's tier).
    let (sb, ss) = (
        second.baseline.as_ref().unwrap(),
        second.scenario.as_ref().unwrap(),
    );
    assert_eq!(
        (sb.devices, sb.tpp, sb.verdict),
        (ss.devices, ss.tpp, ss.verdict)
    );
    let (lb, ls) = (
        first.baseline.as_ref().unwrap(),
        first.scenario.as_ref().unwrap(),
    );
    assert_eq!((lb.devices.used, lb.devices.cap), (4, 4));
    assert_eq!((ls.devices.cap, ls.devices.over_by), (1, 3));
    assert_eq!(ls.verdict, Verdict::NotCompliant);
    let t = text(&c);
    assert!(t.contains("  licence SYN-DE-0000 (DE)"), "{t}");
    assert!(
        t.contains("    devices used / cap   4 / 4                        4 / 1\n"),
        "{t}"
    );
    assert!(t.contains("OVER by 3"), "{t}");
    assert!(t.contains("NOT COMPLIANT"), "{t}");
    // No device changes class here.
    assert!(c.class_changes.is_empty() && c.devices.is_empty());
    assert!(t.contains("  devices changing class: none\n"), "{t}");
}

#[test]
fn unchanged_rows_are_folded() {
    let (lics, atts, rule_set, at) = synthetic_fleet(2, 1, 2);
    let b = evaluate(&lics, &[], &rule_set, &atts, at);
    let c = compare(&b, &b);
    assert!(c.licences.iter().all(|l| !l.changed));
    let t = text(&c);
    assert!(
        t.contains("  unchanged: 2 licences (SYN-DE-0000, SYN-DE-0001)\n"),
        "{t}"
    );
    assert!(t.contains("  unchanged: 1 country (DE)\n"), "{t}");
    assert!(!t.contains("  licence "), "{t}");
}

/// The scenario's GPUs with another class, as a rule set that covers them would give.
fn reclassified(v: &FleetVerdict) -> FleetVerdict {
    let mut s = v.clone();
    for n in &mut s.nodes {
        for g in &mut n.gpus {
            g.outcome = Some(Arc::from("covered"));
        }
    }
    s
}

#[test]
fn devices_changing_class_are_aggregated_and_listed_by_node_and_gpu() {
    let (lics, atts, rule_set, at) = synthetic_fleet(3, 2, 1);
    let b = evaluate(&lics, &[], &rule_set, &atts, at);
    let c = compare(&b, &reclassified(&b));
    let [k] = c.class_changes.as_slice() else {
        panic!("{:?}", c.class_changes)
    };
    assert_eq!(k.model.as_deref(), Some("H100 SXM5 80GB"));
    assert_eq!((k.devices, k.nodes), (6, 3));
    assert_eq!(k.baseline.outcome.as_deref(), Some("3A090.a"));
    assert_eq!(k.scenario.outcome.as_deref(), Some("covered"));
    assert_eq!(c.devices.len(), 6);
    let keys: Vec<(&str, &str)> = c.devices.iter().map(|d| (&*d.node, &*d.gpu)).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert_eq!(c.devices_omitted, 0);
    let t = text(&c);
    assert!(
        t.contains(
            "    H100 SXM5 80GB (6 devices on 3 nodes): 3A090.a, controlled, counted -> covered, \
             controlled, counted\n"
        ),
        "{t}"
    );
}

#[test]
fn a_large_fleet_lists_at_most_the_cap_and_counts_the_rest() {
    let (lics, atts, rule_set, at) = synthetic_fleet(130, 8, 1);
    let b = evaluate(&lics, &[], &rule_set, &atts, at);
    let c = compare(&b, &reclassified(&b));
    assert_eq!(c.devices.len(), MAX_DEVICE_CHANGES);
    assert_eq!(c.devices_omitted, 40);
    assert_eq!(c.class_changes.first().map(|k| k.devices), Some(1040));
    let t = text(&c);
    assert!(
        t.contains("      ... and 1020 more (--json lists up to 1000)\n"),
        "{t}"
    );
}

#[test]
fn the_comparison_is_deterministic_and_escapes_outside_text() {
    let (b, s) = france_like();
    let one = serde_json::to_string(&compare(&b, &s)).unwrap();
    let two = serde_json::to_string(&compare(&b.clone(), &s.clone())).unwrap();
    assert_eq!(one, two);
    let mut hostile = s.clone();
    if let Some(l) = hostile.licences.first_mut() {
        l.licence = "LIC\u{1b}[2J".to_owned();
    }
    for c in &mut hostile.countries {
        c.licences = vec!["LIC\u{1b}[2J".to_owned()];
    }
    let t = text(&compare(&b, &hostile));
    assert!(!t.contains('\u{1b}'), "{t}");
    assert!(t.contains("LIC\\u{1b}[2J"), "{t}");
}

#[test]
fn the_licence_need_row_shows_the_counts_that_are_not_zero() {
    let (b, s) = france_like();
    let mut c = compare(&b, &s);
    if let Some(side) = c.licences.first_mut().and_then(|l| l.scenario.as_mut()) {
        side.licence_need = NeedCounts {
            required: 6,
            not_required: 0,
            undetermined: 2,
        };
    }
    if let Some(side) = c.licences.first_mut().and_then(|l| l.baseline.as_mut()) {
        side.licence_need = NeedCounts::default();
    }
    let t = text(&c);
    assert!(
        t.contains(
            "    licence need         none                         6 required, 2 undetermined\n"
        ),
        "{t}"
    );
}

#[test]
fn grouping_keeps_the_decimals() {
    assert_eq!(grouped("1266496.5"), "1,266,496.5");
    assert_eq!(grouped("790000000"), "790,000,000");
    assert_eq!(grouped("999"), "999");
    assert_eq!(grouped("0.25"), "0.25");
}
