use super::*;
use crate::ruleset::shipped_rule_set;
use crate::spec::by_model;
use crate::units::{DieArea, Tops};

const ECCN: &str = "us-eccn-3a090";
const GAIN: &str = "us-gain-ai-act-s3150";
const CHINA: &str = "us-china-review-2026-01";

/// Figures with a given TPP (set through FP4, whose x4 keeps every TPP with four decimals
/// that is a multiple of 0.0004 exact).
#[derive(Clone, Default)]
struct F {
    tpp: Option<&'static str>,
    area: Option<&'static str>,
    not_datacenter: bool,
    dram: Option<&'static str>,
    interconnect: Option<&'static str>,
}

impl F {
    fn tpp(tpp: &'static str) -> Self {
        Self {
            tpp: Some(tpp),
            ..Self::default()
        }
    }
    fn area(self, area: &'static str) -> Self {
        Self {
            area: Some(area),
            ..self
        }
    }
    fn non_datacenter(self) -> Self {
        Self {
            not_datacenter: true,
            ..self
        }
    }
    fn dram(self, dram: &'static str) -> Self {
        Self {
            dram: Some(dram),
            ..self
        }
    }
    fn interconnect(self, bw: &'static str) -> Self {
        Self {
            interconnect: Some(bw),
            ..self
        }
    }
    fn figures(&self) -> ComputeFigures {
        let mut figures = ComputeFigures {
            datacenter: !self.not_datacenter,
            die_area: self.area.map(|a| a.parse::<DieArea>().unwrap()),
            dram_bandwidth: self.dram.map(|b| b.parse().unwrap()),
            interconnect_bandwidth: self.interconnect.map(|b| b.parse().unwrap()),
            ..ComputeFigures::default()
        };
        if let Some(tpp) = self.tpp {
            let raw = tpp.parse::<Tpp>().unwrap().raw();
            assert_eq!(raw % 4, 0, "TPP {tpp} is not FP4-exact");
            let tops = Tops::from_ten_thousandths(raw / 4).unwrap();
            figures.dense_tops.insert(Precision::Fp4, tops);
            assert_eq!(tpp::tpp(&figures).unwrap().tpp.to_string(), tpp);
        }
        figures
    }
}

fn classify(rule_set: &str, f: &F) -> Classification {
    classify_device(&f.figures(), &shipped_rule_set(rule_set).unwrap())
}

#[track_caller]
fn check(rule_set: &str, f: F, outcome: &str, clause: Option<&str>) {
    let c = classify(rule_set, &f);
    assert_eq!(
        (c.outcome.as_str(), c.clause.as_deref()),
        (outcome, clause),
        "{rule_set}: {}",
        c.sentence
    );
}

#[track_caller]
fn check_indeterminate(rule_set: &str, f: F, clause: &str, reason: IndeterminateReason) {
    let c = classify(rule_set, &f);
    assert_eq!(c.outcome, INDETERMINATE, "{}", c.sentence);
    assert_eq!(c.decided_by, DecidedBy::Indeterminate);
    assert_eq!(c.clause.as_deref(), Some(clause), "{}", c.sentence);
    assert_eq!(c.reason, Some(reason), "{}", c.sentence);
}

// ---- 3A090 ----

#[test]
fn eccn_a1_tpp_4800() {
    check(ECCN, F::tpp("4800"), "3A090.a", Some("3A090.a.1"));
    // Just below: a.2 needs PD, which is unknown without a die area.
    check_indeterminate(
        ECCN,
        F::tpp("4799.9996"),
        "3A090.a.2",
        IndeterminateReason::DieAreaUnknown,
    );
    // Just below with a large die: PD 0.048, nothing applies.
    check(ECCN, F::tpp("4799.9996").area("100000"), "not_3a090", None);
}

#[test]
fn eccn_a2_pd_5_92() {
    // 2960 / 500 = 5.92 exactly.
    check(
        ECCN,
        F::tpp("2960").area("500"),
        "3A090.a",
        Some("3A090.a.2"),
    );
    // 5.9199992: not .a, and .b.1 (2400 <= TPP < 4800, 1.6 <= PD < 5.92) holds.
    check(
        ECCN,
        F::tpp("2959.9996").area("500"),
        "3A090.b",
        Some("3A090.b.1"),
    );
    // The same density through the area: 2960 / 500.01 = 5.91988.
    check(
        ECCN,
        F::tpp("2960").area("500.01"),
        "3A090.b",
        Some("3A090.b.1"),
    );
}

#[test]
fn eccn_a2_tpp_1600() {
    check(
        ECCN,
        F::tpp("1600").area("200"),
        "3A090.a",
        Some("3A090.a.2"),
    );
    check(ECCN, F::tpp("1599.9996").area("200"), "not_3a090", None);
}

#[test]
fn eccn_b1_tpp_2400() {
    // PD 2.4: .b.1 needs TPP >= 2400; .b.2 needs PD >= 3.2.
    check(
        ECCN,
        F::tpp("2400").area("1000"),
        "3A090.b",
        Some("3A090.b.1"),
    );
    check(ECCN, F::tpp("2399.9996").area("1000"), "not_3a090", None);
}

#[test]
fn eccn_b1_pd_1_6() {
    check(
        ECCN,
        F::tpp("3200").area("2000"),
        "3A090.b",
        Some("3A090.b.1"),
    );
    check(ECCN, F::tpp("3199.9996").area("2000"), "not_3a090", None);
}

#[test]
fn eccn_b2_pd_3_2() {
    // TPP 1920 < 2400, so only .b.2 can apply.
    check(
        ECCN,
        F::tpp("1920").area("600"),
        "3A090.b",
        Some("3A090.b.2"),
    );
    check(ECCN, F::tpp("1920").area("600.01"), "not_3a090", None);
    check(ECCN, F::tpp("1599.9996").area("400"), "not_3a090", None);
}

#[test]
fn eccn_b_upper_bounds_belong_to_a() {
    // PD exactly 5.92 is .a, never .b (the .b ranges are max-exclusive).
    check(
        ECCN,
        F::tpp("1776").area("300"),
        "3A090.a",
        Some("3A090.a.2"),
    );
}

#[test]
fn eccn_non_datacenter_carve_out() {
    check(
        ECCN,
        F::tpp("4799.9996").area("200").non_datacenter(),
        "not_3a090",
        Some("3A090.note.non_datacenter"),
    );
    // Decided without a die area.
    check(
        ECCN,
        F::tpp("4799.9996").non_datacenter(),
        "not_3a090",
        Some("3A090.note.non_datacenter"),
    );
    check(
        ECCN,
        F::tpp("4800").non_datacenter(),
        "3A090.a",
        Some("3A090.a.1"),
    );
    // The same figures in a datacenter part are .a.
    check(
        ECCN,
        F::tpp("4799.9996").area("200"),
        "3A090.a",
        Some("3A090.a.2"),
    );
}

#[test]
fn eccn_without_throughput_is_indeterminate() {
    check_indeterminate(
        ECCN,
        F::default(),
        "3A090.a.1",
        IndeterminateReason::NoThroughputFigures,
    );
    check_indeterminate(
        ECCN,
        F::default().non_datacenter(),
        "3A090.note.non_datacenter",
        IndeterminateReason::NoThroughputFigures,
    );
}

fn part(model: &str, rule_set: &str) -> Classification {
    let spec = by_model(model).unwrap();
    classify_device(&spec.figures(), &shipped_rule_set(rule_set).unwrap())
}

#[test]
fn eccn_known_parts() {
    let h100 = part("H100 SXM5 80GB", ECCN);
    assert_eq!(h100.outcome, "3A090.a");
    assert_eq!(h100.tpp.unwrap().to_string(), "15831.2");
    assert_eq!(h100.tpp_basis, Some(Precision::Fp8));
    assert_eq!(h100.sentence, "TPP 15831.2 >= 4800 (3A090.a.1)");
    assert_eq!(h100.rule_set_status, RuleSetStatus::InForce);

    // A100: TPP 4992 >= 4800 already decides (.a.1); its PD 6.04 would also meet .a.2.
    let a100 = part("A100 SXM4 80GB", ECCN);
    assert_eq!(
        (a100.outcome.as_str(), a100.clause.as_deref()),
        ("3A090.a", Some("3A090.a.1"))
    );
    assert_eq!(a100.tpp.unwrap().to_string(), "4992");
    assert_eq!(
        a100.tpp_basis,
        Some(Precision::Fp16),
        "ties: higher bit length, TF32 last"
    );
    assert_eq!(part("L20", ECCN).tpp_basis, Some(Precision::Tf32));
    assert_eq!(a100.performance_density.unwrap().to_string(), "6.04");
    assert_eq!(a100.sentence, "TPP 4992 >= 4800 (3A090.a.1)");

    // H20: TPP 2368 < 2400 rules out .b.1; PD 2.91 < 3.2 rules out .b.2.
    let h20 = part("H20", ECCN);
    assert_eq!(
        (h20.outcome.as_str(), h20.clause.as_deref()),
        ("not_3a090", None)
    );
    assert_eq!(h20.performance_density.unwrap().to_string(), "2.91");
    assert_eq!(h20.decided_by, DecidedBy::Default);

    let rtx4090 = part("GeForce RTX 4090", ECCN);
    assert_eq!(
        (rtx4090.outcome.as_str(), rtx4090.clause.as_deref()),
        ("3A090.a", Some("3A090.a.1"))
    );
    assert!(!rtx4090.datacenter);
    assert_eq!(rtx4090.tpp.unwrap().to_string(), "5284.8");

    let rtx4090d = part("GeForce RTX 4090 D", ECCN);
    assert_eq!(
        (rtx4090d.outcome.as_str(), rtx4090d.clause.as_deref()),
        ("not_3a090", Some("3A090.note.non_datacenter"))
    );
    assert_eq!(rtx4090d.tpp.unwrap().to_string(), "4706.88");

    let l40s = part("L40S", ECCN);
    assert_eq!(
        (l40s.outcome.as_str(), l40s.clause.as_deref()),
        ("3A090.a", Some("3A090.a.1"))
    );

    let b200 = part("B200 (HGX, per GPU)", ECCN);
    assert_eq!(
        (b200.outcome.as_str(), b200.clause.as_deref()),
        ("3A090.a", Some("3A090.a.1"))
    );
    assert_eq!(b200.performance_density, None);
    assert_eq!(b200.tpp.unwrap().to_string(), "36000");

    // L4: TPP 1940 with PD 6.6 is .a through density.
    let l4 = part("L4", ECCN);
    assert_eq!(
        (l4.outcome.as_str(), l4.clause.as_deref()),
        ("3A090.a", Some("3A090.a.2"))
    );
    assert_eq!(
        l4.sentence,
        "TPP 1940 >= 1600 and performance density 6.60 >= 5.92 (3A090.a.2)"
    );
    // A30: 2640 / 826 = 3.196 (the CSV rounds it to 3.2): .b.1, not .b.2.
    assert_eq!(part("A30", ECCN).clause.as_deref(), Some("3A090.b.1"));
    // A10G: tensor rates unpublished.
    assert_eq!(
        part("A10G", ECCN).reason,
        Some(IndeterminateReason::NoThroughputFigures)
    );
}

#[test]
fn density_shown_with_more_decimals_when_it_would_read_as_the_threshold() {
    // 2959.9996 / 500 = 5.9199992, which rounds to 5.92 but is below it.
    let c = classify(ECCN, &F::tpp("2959.9996").area("500"));
    assert!(
        c.sentence.contains("(exactly 2959.9996/500) < 5.92"),
        "{}",
        c.sentence
    );
}

// ---- GAIN AI Act ----

#[test]
fn gain_tpp_4800() {
    check(GAIN, F::tpp("4800"), "covered", Some("s3150.aic.tpp"));
    check(
        GAIN,
        F::tpp("4799.9996")
            .area("100000")
            .dram("100")
            .interconnect("100"),
        "not_covered",
        None,
    );
}

#[test]
fn gain_tpp_2400_pd_1_6() {
    let bw = |f: F| f.dram("100").interconnect("100");
    check(
        GAIN,
        bw(F::tpp("2400").area("1500")),
        "covered",
        Some("s3150.aic.tpp_pd_1.6"),
    );
    check(
        GAIN,
        bw(F::tpp("2400").area("1500.01")),
        "not_covered",
        None,
    );
    check(
        GAIN,
        bw(F::tpp("2399.9996").area("1000")),
        "not_covered",
        None,
    );
}

#[test]
fn gain_tpp_1600_pd_3_2() {
    let bw = |f: F| f.dram("100").interconnect("100");
    check(
        GAIN,
        bw(F::tpp("1600").area("500")),
        "covered",
        Some("s3150.aic.tpp_pd_3.2"),
    );
    check(GAIN, bw(F::tpp("1600").area("500.01")), "not_covered", None);
    check(
        GAIN,
        bw(F::tpp("1599.9996").area("100")),
        "not_covered",
        None,
    );
}

#[test]
fn gain_bandwidth_alone_decides() {
    // No throughput figures at all: DRAM bandwidth decides.
    check(
        GAIN,
        F::default().dram("1400"),
        "covered",
        Some("s3150.aic.dram_bandwidth"),
    );
    check(
        GAIN,
        F::tpp("100")
            .area("1000")
            .dram("1399.999")
            .interconnect("0"),
        "not_covered",
        None,
    );
    check(
        GAIN,
        F::default().interconnect("1100"),
        "covered",
        Some("s3150.aic.interconnect_bandwidth"),
    );
    check(
        GAIN,
        F::tpp("100")
            .area("1000")
            .dram("0")
            .interconnect("1099.999"),
        "not_covered",
        None,
    );
    check(
        GAIN,
        F::tpp("100").area("1000").dram("1000").interconnect("700"),
        "covered",
        Some("s3150.aic.combined_bandwidth"),
    );
    check(
        GAIN,
        F::tpp("100")
            .area("1000")
            .dram("1000")
            .interconnect("699.999"),
        "not_covered",
        None,
    );
    let c = classify(GAIN, &F::default().dram("1400"));
    assert_eq!(
        c.sentence,
        "DRAM bandwidth 1400 GB/s >= 1400 GB/s (s3150.aic.dram_bandwidth)"
    );
    assert_eq!(c.rule_set_status, RuleSetStatus::Bill);
}

#[test]
fn gain_has_no_datacenter_carve_out() {
    check(
        GAIN,
        F::tpp("4800").non_datacenter(),
        "covered",
        Some("s3150.aic.tpp"),
    );
    let c = part("GeForce RTX 4090 D", GAIN);
    assert_eq!(
        (c.outcome.as_str(), c.clause.as_deref()),
        ("covered", Some("s3150.aic.tpp_pd_1.6"))
    );
}

#[test]
fn gain_unknowns() {
    check_indeterminate(
        GAIN,
        F::tpp("1000").area("1000").interconnect("100"),
        "s3150.aic.dram_bandwidth",
        IndeterminateReason::DramBandwidthUnknown,
    );
    check_indeterminate(
        GAIN,
        F::tpp("1000").area("1000").dram("100"),
        "s3150.aic.interconnect_bandwidth",
        IndeterminateReason::InterconnectBandwidthUnknown,
    );
    check_indeterminate(
        GAIN,
        F::tpp("2000").dram("100").interconnect("100"),
        "s3150.aic.tpp_pd_3.2",
        IndeterminateReason::DieAreaUnknown,
    );
    // H20 by its figures: DRAM 4000 GB/s.
    let h20 = part("H20", GAIN);
    assert_eq!(h20.clause.as_deref(), Some("s3150.aic.dram_bandwidth"));
}

// ---- China review policy ----

#[test]
fn china_thresholds() {
    check(
        CHINA,
        F::tpp("20999.9996").dram("6499.999"),
        "case_by_case",
        Some("cn-2026-01.case_by_case"),
    );
    check(
        CHINA,
        F::tpp("21000").dram("100"),
        "presumption_of_denial",
        None,
    );
    check(
        CHINA,
        F::tpp("100").dram("6500"),
        "presumption_of_denial",
        None,
    );
    check_indeterminate(
        CHINA,
        F::tpp("100"),
        "cn-2026-01.case_by_case",
        IndeterminateReason::DramBandwidthUnknown,
    );
    // TPP alone already rules case-by-case out.
    check(CHINA, F::tpp("21000"), "presumption_of_denial", None);
    assert_eq!(part("H20", CHINA).outcome, "case_by_case");
    assert_eq!(part("Instinct MI300X", CHINA).outcome, "case_by_case");
    assert_eq!(
        part("B200 (HGX, per GPU)", CHINA).outcome,
        "presumption_of_denial"
    );
    assert_eq!(part("H20", CHINA).rule_set_status, RuleSetStatus::Policy);
}

#[test]
fn unknown_that_cannot_change_the_outcome_is_decided() {
    let rule_set = crate::ruleset::RuleSet::from_toml_str(
        r#"
id = "same-either-way"
version = "1"
title = "t"
status = "policy"
source = "test"
default_outcome = "low"
[[classes]]
outcome = "low"
[[classes.clauses]]
id = "low.dram"
text = "DRAM >= 1000"
when = { dram_bandwidth = { min = 1000 } }
[node]
rank = ["low"]
"#,
    )
    .unwrap();
    let c = classify_device(&F::tpp("100").figures(), &rule_set);
    assert_eq!(
        (c.outcome.as_str(), c.decided_by),
        ("low", DecidedBy::Default)
    );
}

// ---- nodes ----

#[test]
fn node_takes_the_most_severe_device() {
    let rs = shipped_rule_set(ECCN).unwrap();
    let h100 = part("H100 SXM5 80GB", ECCN);
    let h20 = part("H20", ECCN);
    let unknown = classify_device(&F::default().figures(), &rs);
    let b = classify(ECCN, &F::tpp("2400").area("1000"));

    let node = classify_node(&[h20.clone(), h100.clone(), h100.clone()], &rs);
    assert_eq!(node.outcome, "4A090.a");
    assert_eq!(node.device_outcome.as_deref(), Some("3A090.a"));
    assert_eq!(node.device, Some(1));
    assert_eq!(node.tpp.to_string(), "34030.4");

    assert_eq!(
        classify_node(&[h20.clone(), b.clone()], &rs).outcome,
        "4A090.b"
    );
    assert_eq!(
        classify_node(std::slice::from_ref(&h20), &rs).outcome,
        "not_4a090"
    );
    assert_eq!(classify_node(&[], &rs).outcome, "not_4a090");

    let node = classify_node(&[h20.clone(), unknown.clone()], &rs);
    assert_eq!(node.outcome, INDETERMINATE);
    assert_eq!(node.reason, Some(IndeterminateReason::DeviceIndeterminate));
    assert_eq!(node.device, Some(1));
    // An indeterminate device cannot raise a node that is already at the top.
    assert_eq!(classify_node(&[unknown, h100], &rs).outcome, "4A090.a");

    let gain = part("H20", GAIN);
    let node = classify_node(&[h20, gain], &rs);
    assert_eq!(node.reason, Some(IndeterminateReason::RuleSetMismatch));
}

#[test]
fn node_rank_for_policy() {
    let rs = shipped_rule_set(CHINA).unwrap();
    let node = classify_node(
        &[part("H20", CHINA), part("B200 (HGX, per GPU)", CHINA)],
        &rs,
    );
    assert_eq!(node.outcome, "presumption_of_denial");
}

// ---- reasons and JSON ----

#[test]
fn reason_codes_are_unique_snake_case_and_documented() {
    let mut seen = std::collections::BTreeSet::new();
    for reason in IndeterminateReason::ALL {
        assert!(seen.insert(reason.code()), "{} repeated", reason.code());
        assert!(
            reason
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
        assert!(!reason.sentence().is_empty());
    }
}

#[test]
fn classification_json_field_names() {
    let json = serde_json::to_value(part("A100 SXM4 80GB", ECCN)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "rule_set": "us-eccn-3a090",
            "rule_set_version": json["rule_set_version"],
            "rule_set_status": "in_force",
            "outcome": "3A090.a",
            "decided_by": "clause",
            "clause": "3A090.a.1",
            "reason": null,
            "sentence": "TPP 4992 >= 4800 (3A090.a.1)",
            "tpp": 4992.0,
            "tpp_basis": "fp16",
            "performance_density": json["performance_density"],
            "dram_bandwidth": 2039.0,
            "interconnect_bandwidth": 600.0,
            "datacenter": true,
        })
    );
    let pd = json["performance_density"].as_f64().unwrap();
    assert!((pd - 4992.0 / 826.0).abs() < 1e-9);
    let json = serde_json::to_value(classify(ECCN, &F::default())).unwrap();
    assert_eq!(json["outcome"], "indeterminate");
    assert_eq!(json["reason"], "no_throughput_figures");
}

// ---- AI OVERWATCH Act (bill): confirmed and unconfirmed prongs ----

const OVERWATCH: &str = "us-ai-overwatch-act-hr6875";

#[test]
fn overwatch_confirmed_prongs_match_gain_figures() {
    check(OVERWATCH, F::tpp("4800"), "covered", Some("hr6875.cic.tpp"));
    check(
        OVERWATCH,
        F::tpp("4799.9996")
            .area("10000")
            .dram("100")
            .interconnect("64"),
        "not_covered",
        None,
    );
    // 2400 / 1500 mm2 = PD 1.6 exactly.
    check(
        OVERWATCH,
        F::tpp("2400").area("1500").dram("100").interconnect("64"),
        "covered",
        Some("hr6875.cic.tpp_pd_1.6"),
    );
    // 1600 / 500 mm2 = PD 3.2 exactly.
    check(
        OVERWATCH,
        F::tpp("1600").area("500").dram("100").interconnect("64"),
        "covered",
        Some("hr6875.cic.tpp_pd_3.2"),
    );
    // Like GAIN, no datacenter carve-out: a consumer RTX 4090 D (TPP 4706.8 < 4800, PD 7.74)
    // is covered by a confirmed prong although 3A090 leaves it out.
    let d = part("GeForce RTX 4090 D", OVERWATCH);
    assert_eq!(d.outcome, "covered");
    assert!(!d.unconfirmed, "{}", d.sentence);
    assert_eq!(part("GeForce RTX 4090 D", ECCN).outcome, "not_3a090");
    assert_eq!(d.rule_set_status, RuleSetStatus::Bill);
}

#[test]
fn overwatch_outcome_resting_on_an_unconfirmed_prong_says_so() {
    // The H20 (TPP 2368, PD 2.91) meets no confirmed prong; only the DRAM bandwidth prong,
    // carried over from GAIN and not confirmed from the bill's text, covers it.
    let h20 = part("H20", OVERWATCH);
    assert_eq!(
        (h20.outcome.as_str(), h20.clause.as_deref()),
        ("covered", Some("hr6875.cic.dram_bandwidth"))
    );
    assert!(h20.unconfirmed);
    assert!(
        h20.sentence
            .ends_with("this clause is not confirmed from the legal text"),
        "{}",
        h20.sentence
    );
    let json = serde_json::to_value(&h20).unwrap();
    assert_eq!(json["unconfirmed"], true);
    // A confirmed prong: no flag, and the JSON leaves the key out.
    let h100 = part("H100 SXM5 80GB", OVERWATCH);
    assert!(!h100.unconfirmed);
    assert!(
        serde_json::to_value(&h100)
            .unwrap()
            .get("unconfirmed")
            .is_none()
    );
    // Under 3A090 the H20 is outside: the bill would bring it in, on an unconfirmed reading.
    assert_eq!(part("H20", ECCN).outcome, "not_3a090");
}

// ---- 91 FR 1684 (China review policy, effective 2026-01-15) ----

#[test]
fn china_rule_of_january_2026_is_91_fr_1684() {
    let rs = shipped_rule_set(CHINA).unwrap();
    assert!(rs.source.contains("91 FR 1684"), "{}", rs.source);
    assert_eq!(
        rs.effective.map(|d| d.to_string()).as_deref(),
        Some("2026-01-15")
    );
    let notes = rs.notes.as_deref().unwrap();
    for condition in [
        "reexports",
        "third-party testing",
        "volume",
        "know-your-customer",
    ] {
        assert!(notes.contains(condition), "{condition}: {notes}");
    }
    // H200: TPP 15832 < 21000 and 4800 GB/s < 6500: case by case.
    assert_eq!(part("H200 SXM 141GB", CHINA).outcome, "case_by_case");
}

// ---- Licence need: destination and party (15 CFR 742.6(a)(6)(iii)) ----

fn cc(text: &str) -> crate::licence::CountryCode {
    text.parse().unwrap()
}

fn party(headquarters: &str, ultimate_parent: &str) -> Party {
    Party {
        headquarters: cc(headquarters),
        ultimate_parent: cc(ultimate_parent),
    }
}

#[track_caller]
fn need_of(
    rule_set: &crate::ruleset::RuleSet,
    model: &str,
    destination: &str,
    p: Party,
) -> NeedDetermination {
    let spec = by_model(model).unwrap();
    let c = classify_device(&spec.figures(), rule_set);
    licence_need(rule_set, Some(&c.outcome), cc(destination), &p)
}

#[test]
fn held_party_cases_under_the_rule_in_force() {
    use crate::ruleset::LicenceNeed::{NotRequired, Required, Undetermined};
    let eccn = shipped_rule_set(ECCN).unwrap();
    let hq = Some("742.6(a)(6)(iii)(A)");
    // (model, destination, headquarters, ultimate parent, need, rule, by party)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        crate::ruleset::LicenceNeed,
        Option<&'static str>,
        bool,
    );
    let cases: [Case; 13] = [
        // A German operator whose ultimate parent is in D:5: its H100s need a licence.
        ("H100 SXM5 80GB", "DE", "DE", "CN", Required, hq, true),
        // The same operator with a German parent: A:5, no licence.
        (
            "H100 SXM5 80GB",
            "DE",
            "DE",
            "DE",
            NotRequired,
            Some("742.6(a)(6)(iii).destination_a5"),
            false,
        ),
        // An H20 fleet in Germany: not 3A090, no licence, whoever owns it.
        ("H20", "DE", "DE", "CN", NotRequired, None, false),
        ("H20", "DE", "DE", "DE", NotRequired, None, false),
        // Headquartered in Macau, parent in the US: the headquarters prong alone bites.
        ("H100 SXM5 80GB", "FR", "MO", "US", Required, hq, true),
        // A parent in Russia (D:5) bites in Japan too.
        ("A100 SXM4 80GB", "JP", "JP", "RU", Required, hq, true),
        // Destination in D:5: needed whoever the party is.
        (
            "H100 SXM5 80GB",
            "CN",
            "US",
            "US",
            Required,
            Some("742.6(a)(6)(iii).destination_d5"),
            false,
        ),
        // Inside the United States: not an export.
        (
            "H100 SXM5 80GB",
            "US",
            "US",
            "US",
            NotRequired,
            Some("742.6(a)(6)(iii).united_states"),
            false,
        ),
        // Not even for a party with a D:5 parent: the headquarters test governs exports,
        // reexports and in-country transfers abroad, and a sale in the US is none of those.
        (
            "H100 SXM5 80GB",
            "US",
            "US",
            "HK",
            NotRequired,
            Some("742.6(a)(6)(iii).united_states"),
            false,
        ),
        // Neither A:5 nor D:5 (D:1/D:4 not encoded): undetermined, never "no licence".
        (
            "H100 SXM5 80GB",
            "AE",
            "AE",
            "AE",
            Undetermined,
            None,
            false,
        ),
        (
            "H100 SXM5 80GB",
            "SG",
            "SG",
            "SG",
            Undetermined,
            None,
            false,
        ),
        // A consumer part outside 3A090 needs none even with a D:5 parent.
        (
            "GeForce RTX 4090 D",
            "DE",
            "CN",
            "CN",
            NotRequired,
            None,
            false,
        ),
        // The RTX 4090 (TPP 5284.8 >= 4800) is 3A090.a: a D:5 parent needs a licence.
        ("GeForce RTX 4090", "NL", "NL", "CN", Required, hq, true),
    ];
    for (model, destination, h, p, need, rule, by_party) in cases {
        let d = need_of(&eccn, model, destination, party(h, p));
        assert_eq!(
            (d.need, d.rule.as_deref(), d.by_party),
            (need, rule, by_party),
            "{model} to {destination} (party {h}/{p}): {}",
            d.sentence
        );
        assert_eq!(d.rule_set_status, RuleSetStatus::InForce);
    }
    let d = need_of(&eccn, "H100 SXM5 80GB", "DE", party("DE", "CN"));
    assert_eq!(
        d.sentence,
        "licence required for 3A090.a by 742.6(a)(6)(iii)(A) (a party whose ultimate parent is \
         headquartered in CN (party group d5_macau)): a licence is needed to export, reexport or \
         transfer (in-country) 3A090.a/.b and 4A090.a/.b items to any destination when the \
         party is headquartered in, or has an ultimate parent headquartered in, Macau or \
         Country Group D:5"
    );
}

#[test]
fn licence_need_of_unknown_and_indeterminate_devices_is_undetermined() {
    use crate::ruleset::LicenceNeed;
    let eccn = shipped_rule_set(ECCN).unwrap();
    let p = party("DE", "DE");
    let unknown = licence_need(&eccn, None, cc("DE"), &p);
    assert_eq!(unknown.need, LicenceNeed::Undetermined);
    let indeterminate = licence_need(&eccn, Some(INDETERMINATE), cc("DE"), &p);
    assert_eq!(indeterminate.need, LicenceNeed::Undetermined);
    // A rule set without `[licensing]` classifies but does not say where a licence is needed.
    let gain = shipped_rule_set(GAIN).unwrap();
    let d = need_of(&gain, "H100 SXM5 80GB", "DE", party("DE", "CN"));
    assert_eq!(d.need, LicenceNeed::Undetermined);
    assert!(
        d.sentence
            .contains("does not state where a licence is needed"),
        "{}",
        d.sentence
    );
    assert_eq!(
        need_of(&gain, "Tesla T4", "DE", p).need,
        LicenceNeed::NotRequired
    );
}

#[test]
fn ai_diffusion_tiers_decide_the_need_and_a_scenario_moves_them() {
    use crate::ruleset::LicenceNeed::{NotRequired, Required};
    let diffusion = shipped_rule_set("us-ai-diffusion-2025").unwrap();
    let fr = party("FR", "FR");
    let d = need_of(&diffusion, "H100 SXM5 80GB", "FR", fr);
    assert_eq!(
        (d.need, d.rule.as_deref()),
        (NotRequired, Some("90fr4544.tier_1_aia"))
    );
    assert_eq!(
        need_of(&diffusion, "H100 SXM5 80GB", "PL", party("PL", "PL")).need,
        Required
    );
    // The headquarters test outranks the Tier 1 exception.
    let d = need_of(&diffusion, "H100 SXM5 80GB", "FR", party("FR", "CN"));
    assert_eq!((d.need, d.by_party), (Required, true));
    // France moved to Tier 2: the same fleet now needs a licence, and counts against the
    // per-country allocation.
    let moved = diffusion.with_country_in_group(cc("FR"), "tier_2").unwrap();
    let d = need_of(&moved, "H100 SXM5 80GB", "FR", fr);
    assert_eq!((d.need, d.rule), (Required, None));
    // Moving a destination never moves a party: China out of Tier 3 as a destination still
    // leaves a party with a Chinese parent under the headquarters test.
    let cn_moved = diffusion.with_country_in_group(cc("CN"), "tier_2").unwrap();
    let d = need_of(&cn_moved, "H100 SXM5 80GB", "DE", party("DE", "CN"));
    assert_eq!((d.need, d.by_party), (Required, true), "{}", d.sentence);
    let eccn = shipped_rule_set(ECCN).unwrap();
    let cn_a5 = eccn.with_country_in_group(cc("CN"), "a5").unwrap();
    let d = need_of(&cn_a5, "H100 SXM5 80GB", "DE", party("DE", "CN"));
    assert_eq!(d.rule.as_deref(), Some("742.6(a)(6)(iii)(A)"));
    assert_eq!(
        moved
            .country_allocation(cc("FR"))
            .map(|a| a.tpp.to_string())
            .as_deref(),
        Some("790000000")
    );
}
