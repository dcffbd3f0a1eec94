use tppguard_proto::licence::Licence;
use tppguard_proto::ruleset::{RuleSetOrigin, shipped_rule_set};

use super::*;

const EXAMPLE: &str = include_str!("../../../examples/licence.toml");
const EXAMPLE_ID: &str = "EXAMPLE-DE-2026-0142";

fn parse(text: &str) -> Result<Change, ScenarioError> {
    text.parse()
}

fn err(text: &str) -> ScenarioError {
    parse(text).expect_err(text)
}

fn scenario(texts: &[&str]) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>())
}

fn licence() -> VerifiedLicence {
    VerifiedLicence::new(
        Licence::from_toml_str(EXAMPLE).unwrap(),
        "CN=Example licence authority".to_owned(),
    )
}

fn diffusion() -> RuleSet {
    shipped_rule_set("us-ai-diffusion-2025").unwrap()
}

fn load_shipped(id: &str) -> Result<RuleSet, ScenarioError> {
    shipped_rule_set(id).map_err(|e| ScenarioError::RuleSetUnavailable {
        rule_set: id.to_owned(),
        reason: e.to_string(),
    })
}

#[test]
fn every_form_parses_and_round_trips() {
    let cases = [
        (
            "FR=tier_2",
            Change::CountryGroup {
                country: "FR".parse().unwrap(),
                group: "tier_2".to_owned(),
            },
        ),
        (
            "rule-set=us-gain-ai-act-s3150",
            Change::RuleSet("us-gain-ai-act-s3150".to_owned()),
        ),
        (
            "rule-set=./rules/my-variant.toml",
            Change::RuleSet("./rules/my-variant.toml".to_owned()),
        ),
        (
            "licence:EXAMPLE-DE-2026-0142:max_devices=64",
            Change::LicenceCap {
                licence: EXAMPLE_ID.to_owned(),
                cap: CapChange::MaxDevices(64),
            },
        ),
        (
            "licence:a:b/c.d:max_aggregate_tpp=32500000",
            Change::LicenceCap {
                licence: "a:b/c.d".to_owned(),
                cap: CapChange::MaxAggregateTpp("32500000".parse().unwrap()),
            },
        ),
        (
            "licence:x:max_tpp_per_device=15831.2",
            Change::LicenceCap {
                licence: "x".to_owned(),
                cap: CapChange::MaxTppPerDevice("15831.2".parse().unwrap()),
            },
        ),
    ];
    for (text, want) in cases {
        let got = parse(text).unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_string(), text, "canonical text of {text}");
        assert_eq!(parse(&got.to_string()).unwrap(), got);
    }
}

#[test]
fn display_is_canonical_for_a_non_canonical_decimal() {
    let c = parse("licence:x:max_aggregate_tpp=0100.50").unwrap();
    assert_eq!(c.to_string(), "licence:x:max_aggregate_tpp=100.5");
    assert_eq!(parse(&c.to_string()).unwrap(), c);
}

#[test]
fn every_error_has_its_code_and_a_sentence_with_the_fix() {
    let many: Vec<String> = (0..33).map(|_| "FR=tier_2".to_owned()).collect();
    let cases: Vec<(ScenarioError, &str, &str)> = vec![
        (err("FR"), "scenario_change_malformed", "CC=GROUP"),
        (
            err(&"x".repeat(257)),
            "scenario_change_too_long",
            "257 characters",
        ),
        (
            Scenario::parse(&many).unwrap_err(),
            "scenario_too_many_changes",
            "33 changes",
        ),
        (err("licence:x:max_devices=0"), "scenario_bad_cap", "zero"),
        (
            scenario(&["licence:nope:max_devices=1"])
                .unwrap()
                .licences(&[licence()])
                .unwrap_err(),
            "scenario_unknown_licence",
            EXAMPLE_ID,
        ),
        (
            scenario(&["FR=tier_9"])
                .unwrap()
                .rule_sets(&[diffusion()], &load_shipped)
                .unwrap_err(),
            "scenario_unknown_group",
            "tier_1, tier_2, tier_3",
        ),
        (
            scenario(&["FR=tier_2", "FR=tier_3"]).unwrap_err(),
            "scenario_conflict",
            "the group of FR",
        ),
        (
            scenario(&["rule-set=nope"])
                .unwrap()
                .rule_sets(&[diffusion()], &load_shipped)
                .unwrap_err(),
            "scenario_rule_set_unavailable",
            "us-gain-ai-act-s3150",
        ),
    ];
    let mut codes: Vec<&str> = cases.iter().map(|(e, _, _)| e.code()).collect();
    for (e, code, needle) in &cases {
        assert_eq!(e.code(), *code, "{e}");
        let sentence = e.to_string();
        assert!(sentence.contains(needle), "{code}: {sentence}");
    }
    codes.sort_unstable();
    let mut all = ScenarioError::CODES.to_vec();
    all.sort_unstable();
    assert_eq!(codes, all, "every code is exercised");
}

#[test]
fn a_malformed_change_shows_the_accepted_forms() {
    for text in [
        "",
        "=",
        "==",
        "FR=",
        "=tier_2",
        "fr=tier_2",
        "FR=Tier 2",
        "FR = tier_2",
    ] {
        let e = err(text);
        assert_eq!(e.code(), "scenario_change_malformed", "{text:?}");
        let s = e.to_string();
        assert!(
            s.contains("`CC=GROUP`") && s.contains("rule-set=ID") && s.contains("licence:ID"),
            "{s}"
        );
    }
}

#[test]
fn the_country_error_says_gb_not_uk() {
    let s = err("UK=tier_2").to_string();
    assert!(s.contains("GB, not UK"), "{s}");
    assert_eq!(err("EU=tier_2").code(), "scenario_change_malformed");
    assert_eq!(err("FRA=tier_2").code(), "scenario_change_malformed");
}

#[test]
fn hostile_inputs_are_refused_with_a_code_and_escaped() {
    let cases = [
        ("FR=tier\u{1b}[2J", "scenario_change_malformed"),
        ("rule-set=a\u{0}b", "scenario_change_malformed"),
        ("rule-set=a\u{202e}b", "scenario_change_malformed"),
        ("rule-set=a\\b", "scenario_change_malformed"),
        ("FR=tier_2\n", "scenario_change_malformed"),
        ("FR=tiér_2", "scenario_change_malformed"),
        ("ФР=tier_2", "scenario_change_malformed"),
        ("licence::x:max_devices=-1", "scenario_bad_cap"),
        ("licence::max_devices=1", "scenario_change_malformed"),
        ("licence:x:max_devices=-1", "scenario_bad_cap"),
        ("licence:x:max_devices=+1", "scenario_bad_cap"),
        ("licence:x:max_devices=01", "scenario_bad_cap"),
        ("licence:x:max_devices=99999999999", "scenario_bad_cap"),
        ("licence:x:max_devices=", "scenario_bad_cap"),
        ("licence:x:max_aggregate_tpp=1e9", "scenario_bad_cap"),
        ("licence:x:max_aggregate_tpp=-5", "scenario_bad_cap"),
        ("licence:x:max_aggregate_tpp=0.00001", "scenario_bad_cap"),
        ("licence:x:max_tpp_per_device=NaN", "scenario_bad_cap"),
        ("licence:x:max_tpp_per_device=0", "scenario_bad_cap"),
        ("licence:x:max_watts=5", "scenario_change_malformed"),
        ("licence:x=5", "scenario_change_malformed"),
        ("licence:x:max_devices", "scenario_change_malformed"),
        ("licence:é:max_devices=1", "scenario_change_malformed"),
        ("rule-set=", "scenario_change_malformed"),
    ];
    for (text, code) in cases {
        let e = err(text);
        assert_eq!(e.code(), code, "{text:?}: {e}");
        let s = e.to_string();
        assert!(!s.chars().any(char::is_control), "{s:?}");
    }
    let long = "FR=".to_owned() + &"a".repeat(10_000);
    let e = err(&long);
    assert_eq!(e.code(), "scenario_change_too_long");
    assert!(e.to_string().len() < 1_000, "the sentence stays short");
    let e = err(&"\u{1b}".repeat(300));
    assert_eq!(e.code(), "scenario_change_too_long");
    assert!(!e.to_string().contains('\u{1b}'));
    assert!(parse(&("FR=".to_owned() + &"a".repeat(64))).is_ok());
}

#[test]
fn the_bounds_are_inclusive() {
    let at_max = "rule-set=".to_owned() + &"a".repeat(MAX_CHANGE_CHARS - 9);
    assert!(parse(&at_max).is_ok());
    let mut texts: Vec<String> = Vec::new();
    for c in ["FR", "DE", "IT", "ES", "NL", "BE", "SE", "DK"] {
        texts.push(format!("{c}=tier_2"));
    }
    for i in 0..(MAX_CHANGES - texts.len()) {
        texts.push(format!("licence:l{i}:max_devices=1"));
    }
    assert_eq!(Scenario::parse(&texts).unwrap().changes.len(), MAX_CHANGES);
    texts.push("GB=tier_2".to_owned());
    assert_eq!(
        Scenario::parse(&texts).unwrap_err().code(),
        "scenario_too_many_changes"
    );
}

#[test]
fn conflicts_name_both_changes() {
    let e = scenario(&["rule-set=a", "rule-set=b"]).unwrap_err();
    assert_eq!(e.code(), "scenario_conflict");
    assert!(e.to_string().contains("rule-set=a"), "{e}");
    let e = scenario(&["licence:x:max_devices=1", "licence:x:max_devices=2"]).unwrap_err();
    assert_eq!(e.code(), "scenario_conflict");
    assert!(e.to_string().contains("`max_devices` of licence x"), "{e}");
    // Different caps of one licence, or one cap of two licences, are not conflicts.
    assert!(
        scenario(&[
            "licence:x:max_devices=1",
            "licence:x:max_aggregate_tpp=5",
            "licence:y:max_devices=1",
            "FR=tier_2",
            "DE=tier_2",
        ])
        .is_ok()
    );
}

#[test]
fn a_country_move_marks_every_scenario_rule_set_modified() {
    let s = scenario(&["FR=tier_2", "DE=tier_3"]).unwrap();
    let base = diffusion();
    let got = s
        .rule_sets(std::slice::from_ref(&base), &load_shipped)
        .unwrap();
    assert_eq!(got.len(), 1);
    let fr = CountryCode::from_str("FR").unwrap();
    let de = CountryCode::from_str("DE").unwrap();
    assert_eq!(base.country_tier(fr), Some("tier_1"));
    assert_eq!(got[0].country_tier(fr), Some("tier_2"));
    assert_eq!(got[0].country_tier(de), Some("tier_3"));
    let posture = got[0].posture();
    assert!(posture.is_modified());
    assert_eq!(posture.origin, RuleSetOrigin::Scenario);
    assert_eq!(posture.variant_of.as_deref(), Some("us-ai-diffusion-2025"));
    assert_eq!(posture.modifications.len(), 2, "{posture}");
    assert!(!base.posture().is_modified(), "the baseline is untouched");
}

#[test]
fn a_replacement_is_loaded_once_and_replaces_every_baseline_rule_set() {
    let calls = std::cell::Cell::new(0);
    let load = |id: &str| {
        calls.set(calls.get() + 1);
        load_shipped(id)
    };
    let s = scenario(&["rule-set=us-gain-ai-act-s3150"]).unwrap();
    let got = s
        .rule_sets(
            &[diffusion(), shipped_rule_set("us-eccn-3a090").unwrap()],
            &load,
        )
        .unwrap();
    assert_eq!(calls.get(), 1);
    assert!(
        got.iter()
            .all(|r| r.id == "us-gain-ai-act-s3150" && !r.posture().is_modified())
    );
    // No replacement: the loader is never called and the rule sets are the baseline's.
    let none = scenario(&[]).unwrap();
    let got = none.rule_sets(&[diffusion()], &load).unwrap();
    assert_eq!(calls.get(), 1);
    assert_eq!(got[0].posture(), diffusion().posture());
}

#[test]
fn a_move_to_a_group_the_replacement_lacks_is_an_error() {
    let s = scenario(&["rule-set=us-gain-ai-act-s3150", "FR=tier_2"]).unwrap();
    let e = s.rule_sets(&[diffusion()], &load_shipped).unwrap_err();
    assert_eq!(e.code(), "scenario_unknown_group");
    assert!(e.to_string().contains("FR=tier_2"), "{e}");
    assert!(e.to_string().contains("--rule-set"), "{e}");
}

#[test]
fn cap_changes_apply_to_copies() {
    let base = vec![licence()];
    let s = scenario(&[
        &format!("licence:{EXAMPLE_ID}:max_devices=64"),
        &format!("licence:{EXAMPLE_ID}:max_tpp_per_device=20000"),
    ])
    .unwrap();
    let got = s.licences(&base).unwrap();
    assert_eq!(got.len(), 1);
    let l = got[0].licence();
    assert_eq!(l.max_devices(), 64);
    assert_eq!(l.max_tpp_per_device(), Some("20000".parse().unwrap()));
    assert_eq!(l.max_aggregate_tpp(), base[0].licence().max_aggregate_tpp());
    assert_eq!(got[0].signer_subject(), base[0].signer_subject());
    assert_eq!(
        base[0].licence().max_devices(),
        2048,
        "the baseline is untouched"
    );
    let e = s.licences(&[]).unwrap_err();
    assert!(e.to_string().contains("licences: none"), "{e}");
}

#[test]
fn texts_and_replacement() {
    let s = scenario(&["licence:x:max_aggregate_tpp=010", "rule-set=r"]).unwrap();
    assert_eq!(s.texts(), ["licence:x:max_aggregate_tpp=10", "rule-set=r"]);
    assert_eq!(s.replacement(), Some("r"));
    assert_eq!(scenario(&["FR=tier_2"]).unwrap().replacement(), None);
}
