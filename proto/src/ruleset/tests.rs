use super::*;

const MINIMAL: &str = include_str!("../../tests/data/minimal-rule-set.toml");

fn err(text: &str) -> String {
    RuleSet::from_toml_str(text).unwrap_err().to_string()
}

#[test]
fn shipped_rule_sets_parse_with_their_status() {
    let all = shipped_rule_sets().unwrap();
    let ids: Vec<_> = all.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        ids,
        [
            ("us-eccn-3a090", RuleSetStatus::InForce),
            ("us-gain-ai-act-s3150", RuleSetStatus::Bill),
            ("us-ai-overwatch-act-hr6875", RuleSetStatus::Bill),
            ("us-china-review-2026-01", RuleSetStatus::Policy),
        ]
    );
    // Historical rule sets are shipped but never a default.
    let every: Vec<_> = all_shipped_rule_sets()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(every.len(), 5);
    assert_eq!(every[4], "us-ai-diffusion-2025");
    let eccn = shipped_rule_set("us-eccn-3a090").unwrap();
    assert_eq!(eccn.eccn.as_deref(), Some("3A090"));
    assert_eq!(eccn.node_outcome("3A090.a"), "4A090.a");
    assert_eq!(eccn.node_outcome("3A090.b"), "4A090.b");
    assert_eq!(
        eccn.effective.map(|d| d.to_string()).as_deref(),
        Some("2023-11-17")
    );
    assert!(all.iter().all(|r| !r.source.is_empty()));
}

#[test]
fn unknown_shipped_id() {
    let e = shipped_rule_set("nope").unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("us-eccn-3a090"), "{e}");
}

#[test]
fn thresholds_are_exact_strings_or_integers_never_floats() {
    let from_string = MINIMAL.replace(
        r#"tpp = { min = "4800" }"#,
        r#"performance_density = { min = "5.92" }"#,
    );
    let a = RuleSet::from_toml_str(&from_string).unwrap();
    let pd = a.classes[0].clauses[0]
        .when
        .performance_density
        .unwrap()
        .min
        .unwrap();
    assert_eq!(pd, "5.92".parse().unwrap());
    let integer = MINIMAL.replace(r#""4800""#, "4800");
    assert_eq!(
        RuleSet::from_toml_str(&integer).unwrap(),
        RuleSet::from_toml_str(MINIMAL).unwrap()
    );
    // A TOML float is already rounded to binary by the TOML reader: 5.92 + 1e-40 would read
    // as 5.92. Refused, with the fix in the message.
    for float in ["5.92", "5.9200000000000000000000000000000000000001"] {
        let text = MINIMAL.replace(
            r#"tpp = { min = "4800" }"#,
            &format!("performance_density = {{ min = {float} }}"),
        );
        let err = RuleSet::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("is a TOML float, which is not exact"), "{err}");
        assert!(err.contains("write it as a string"), "{err}");
    }
}

#[test]
fn errors_name_the_key_and_the_fix() {
    let e = err(&MINIMAL.replace("when = { tpp", "when = { tppp"));
    assert!(
        e.contains("unknown field `tppp`") && e.contains("performance_density"),
        "{e}"
    );
    let e = err(&MINIMAL.replace(r#""4800""#, r#""48OO""#));
    assert!(
        e.contains("invalid threshold") && e.contains("48OO") && e.contains("min"),
        "{e}"
    );
    let e = err(&MINIMAL.replace(r#""4800""#, "-1"));
    assert!(e.contains("negative"), "{e}");
    let e = err(&MINIMAL.replace(r#""4800""#, r#""4800.00001""#));
    assert!(e.contains("decimal places"), "{e}");
    let e = err(&MINIMAL.replace("status = \"policy\"", "status = \"law\""));
    assert!(e.contains("status") && e.contains("in_force"), "{e}");
    let e = err(&MINIMAL.replace("source = \"test\"\n", ""));
    assert!(e.contains("missing field `source`"), "{e}");
}

#[test]
fn validation_errors() {
    let e = err(&MINIMAL.replace(r#"{ min = "4800" }"#, r#"{ min = "4800", max = "4800" }"#));
    assert!(e.contains("min 4800 not below max 4800"), "{e}");
    let e = err(&MINIMAL.replace(r#"{ tpp = { min = "4800" } }"#, "{ }"));
    assert!(e.contains("empty `when`"), "{e}");
    let e = err(&MINIMAL.replace(r#"{ tpp = { min = "4800" } }"#, "{ tpp = { } }"));
    assert!(e.contains("neither min nor max"), "{e}");
    let e = err(&MINIMAL.replace(r#"rank = ["yes", "no"]"#, r#"rank = ["yes"]"#));
    assert!(e.contains("missing \"no\""), "{e}");
    let e = err(&MINIMAL.replace(r#"rank = ["yes", "no"]"#, r#"rank = ["yes", "no", "yes"]"#));
    assert!(e.contains("repeated \"yes\""), "{e}");
    let e = err(&MINIMAL.replace(
        r#"rank = ["yes", "no"]"#,
        r#"rank = ["yes", "no", "maybe"]"#,
    ));
    assert!(e.contains("unknown \"maybe\""), "{e}");
    let e = err(&MINIMAL.replace(
        r#"default_outcome = "no""#,
        r#"default_outcome = "indeterminate""#,
    ));
    assert!(e.contains("reserved"), "{e}");
    let e = err(&MINIMAL.replace(r#"id = "example""#, r#"id = "Example 1""#));
    assert!(e.contains("`id`"), "{e}");
    let e = err(&MINIMAL.replace(
        "source = \"test\"",
        "source = \"test\"\neffective = 2023-11-17T00:00:00Z",
    ));
    assert!(e.contains("`effective`"), "{e}");
    let e = err(&MINIMAL.replace(
        "rank = [\"yes\", \"no\"]",
        "rank = [\"yes\", \"no\"]\nmap = { maybe = \"x\" }",
    ));
    assert!(e.contains("`node.map`"), "{e}");
    let e = err(&format!(
        "{MINIMAL}\n[[classes]]\noutcome = \"yes\"\nclauses = []\n"
    ));
    assert!(e.contains("two classes"), "{e}");
    let e = err(&"#".repeat(MAX_RULE_SET_BYTES + 1));
    assert!(e.contains("limit"), "{e}");
}

#[test]
fn readme_example_parses() {
    let readme = include_str!("../../../rules/README.md");
    let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let rule_set = RuleSet::from_toml_str(&readme[start..end]).unwrap();
    assert_eq!(rule_set.outcomes().len(), 3);
}

const WHAT_IF_DE: &str = include_str!("../../../rules/examples/what-if-de-tier2.toml");

fn cc(text: &str) -> CountryCode {
    text.parse().unwrap()
}

#[test]
fn ai_diffusion_tiers_and_allocation() {
    let rs = shipped_rule_set("us-ai-diffusion-2025").unwrap();
    assert_eq!(rs.status, RuleSetStatus::Historical);
    assert!(rs.source.contains("90 FR 4544") && rs.source.contains("2025-05-13"));
    // Same classification as 3A090.
    let eccn = shipped_rule_set("us-eccn-3a090").unwrap();
    assert_eq!(rs.classes, eccn.classes);
    assert_eq!(rs.exclusions, eccn.exclusions);
    assert_eq!(rs.node, eccn.node);
    // Tier 1: the US and 18 partners.
    let tier_1 = rs
        .country_groups
        .iter()
        .find(|g| g.name == "tier_1")
        .unwrap();
    assert_eq!(tier_1.countries.len(), 19);
    for c in ["US", "DE", "FR", "GB", "JP", "KR", "TW", "NZ"] {
        assert_eq!(rs.country_tier(cc(c)), Some("tier_1"), "{c}");
        assert_eq!(rs.country_allocation(cc(c)), None, "{c}");
    }
    for c in ["CN", "MO", "RU", "IR", "KP"] {
        assert_eq!(rs.country_tier(cc(c)), Some("tier_3"), "{c}");
        assert_eq!(rs.country_allocation(cc(c)), None, "{c}");
    }
    for c in ["PL", "AE", "IN", "SG", "CH", "PT"] {
        assert_eq!(rs.country_tier(cc(c)), Some("tier_2"), "{c}");
        let a = rs.country_allocation(cc(c)).unwrap();
        assert_eq!(a.tpp, "790000000".parse().unwrap());
        assert_eq!(a.period, "2025-2027");
        assert_eq!(a.basis, AllocationBasis::DestinationCountry);
        assert_eq!(a.per_consignee_tpp, Some("26900000".parse().unwrap()));
    }
    // The 3A090 rule set has the EAR's country groups, and no allocation.
    assert_eq!(eccn.country_tier(cc("DE")), Some("a5"));
    assert_eq!(eccn.country_tier(cc("MO")), Some("d5_macau"));
    assert_eq!(eccn.country_tier(cc("AE")), None);
    assert_eq!(eccn.country_allocation(cc("PL")), None);
}

#[test]
fn what_if_moves_germany_to_tier_2() {
    let rs = RuleSet::from_toml_str(WHAT_IF_DE).unwrap();
    let base = shipped_rule_set("us-ai-diffusion-2025").unwrap();
    assert_eq!(rs.country_tier(cc("DE")), Some("tier_2"));
    assert_eq!(
        rs.country_allocation(cc("DE")).unwrap().tpp,
        "790000000".parse().unwrap()
    );
    // Only Germany moved.
    assert_eq!(rs.classes, base.classes);
    for c in ["US", "FR", "CN", "PL"] {
        assert_eq!(rs.country_tier(cc(c)), base.country_tier(cc(c)), "{c}");
    }
}

#[test]
fn country_group_validation() {
    let group = |body: &str| {
        format!("{MINIMAL}\n[[country_groups]]\nname = \"t1\"\ntext = \"x\"\n{body}\n")
    };
    let ok = RuleSet::from_toml_str(&group("countries = [\"FR\", \"DE\"]")).unwrap();
    assert_eq!(ok.country_groups[0].countries, [cc("DE"), cc("FR")]);
    assert_eq!(ok.country_tier(cc("FR")), Some("t1"));
    assert_eq!(ok.country_tier(cc("PL")), None);
    for bad in ["de", "DEU", "UK", "EU"] {
        let e = err(&group(&format!("countries = [\"{bad}\"]")));
        assert!(e.contains("ISO 3166-1"), "{bad}: {e}");
    }
    let e = err(&group("countries = [\"DE\", \"DE\"]"));
    assert!(e.contains("country DE is in country groups"), "{e}");
    let two = format!(
        "{}[[country_groups]]\nname = \"t2\"\ntext = \"y\"\ncountries = [\"PL\", \"DE\"]\n",
        group("countries = [\"DE\"]")
    );
    let e = err(&two);
    assert!(e.contains("\"t1\" and \"t2\""), "{e}");
    let e = err(&group(""));
    assert!(e.contains("lists no country"), "{e}");
    let e = err(&group("countries = [\"DE\"]").replace("\"t1\"", "\"Tier 1\""));
    assert!(e.contains("country group name"), "{e}");
    let rests = format!(
        "{}[[country_groups]]\nname = \"t2\"\ntext = \"y\"\nrest = true\n",
        group("rest = true")
    );
    let e = err(&rests);
    assert!(e.contains("both have `rest = true`"), "{e}");
    // Allocations are exact: strings or integers, never floats; the period is required.
    let alloc = |a: &str| group(&format!("rest = true\nallocation = {{ {a} }}"));
    let rs = RuleSet::from_toml_str(&alloc(
        "tpp = 790000000, period = \"2025-2027\", basis = \"destination_country\"",
    ))
    .unwrap();
    assert_eq!(
        rs.country_allocation(cc("DE")).unwrap().tpp,
        "790000000".parse().unwrap()
    );
    let e = err(&alloc(
        "tpp = 7.9e8, period = \"2025-2027\", basis = \"destination_country\"",
    ));
    assert!(e.contains("TOML float"), "{e}");
    let e = err(&alloc(
        "tpp = \"790000000\", period = \" \", basis = \"destination_country\"",
    ));
    assert!(e.contains("`allocation.period` is empty"), "{e}");
    let e = err(&alloc(
        "tpp = \"1\", period = \"p\", basis = \"site_country\"",
    ));
    assert!(e.contains("destination_country"), "{e}");
    let e = err(&alloc("tpp = \"1\", period = \"p\""));
    assert!(e.contains("missing field `basis`"), "{e}");
}

#[test]
fn measurement_tolerances_default_and_are_stated_in_every_shipped_file() {
    let minimal = RuleSet::from_toml_str(MINIMAL).unwrap();
    assert_eq!(minimal.measurement, MeasurementTolerances::default());
    assert_eq!(
        (
            minimal.measurement.exceeds_spec_percent,
            minimal.measurement.below_spec_percent
        ),
        (10, 50)
    );
    for rule_set in all_shipped_rule_sets().unwrap() {
        assert_eq!(rule_set.measurement, MeasurementTolerances::default());
    }
    for text in [
        include_str!("../../../rules/us-eccn-3a090.toml"),
        include_str!("../../../rules/us-gain-ai-act-s3150.toml"),
        include_str!("../../../rules/us-china-review-2026-01.toml"),
        include_str!("../../../rules/us-ai-diffusion-2025.toml"),
        WHAT_IF_DE,
    ] {
        assert!(
            text.contains("[measurement]\nexceeds_spec_percent = 10\nbelow_spec_percent = 50\n"),
            "the shipped files state the tolerances explicitly"
        );
    }
    let readme = include_str!("../../../rules/README.md");
    let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let example = RuleSet::from_toml_str(&readme[start..end]).unwrap();
    assert_eq!(
        example.measurement,
        MeasurementTolerances {
            exceeds_spec_percent: 15,
            below_spec_percent: 100,
            max_age_days: 30
        }
    );
}

#[test]
fn measurement_tolerances_parse_and_validate() {
    let with = |table: &str| format!("{MINIMAL}\n[measurement]\n{table}\n");
    let rs = RuleSet::from_toml_str(&with("exceeds_spec_percent = 0")).unwrap();
    assert_eq!(
        rs.measurement,
        MeasurementTolerances {
            exceeds_spec_percent: 0,
            below_spec_percent: 50,
            max_age_days: 30
        }
    );
    let rs = RuleSet::from_toml_str(&with(
        "exceeds_spec_percent = 1000\nbelow_spec_percent = 100",
    ))
    .unwrap();
    assert_eq!(
        (
            rs.measurement.exceeds_spec_percent,
            rs.measurement.below_spec_percent
        ),
        (1000, 100)
    );
    let rs = RuleSet::from_toml_str(&with("")).unwrap();
    assert_eq!(rs.measurement, MeasurementTolerances::default());

    // Out of range: the key, the value, the range and the default.
    let e = err(&with("exceeds_spec_percent = 1001"));
    assert!(
        e.contains("`measurement.exceeds_spec_percent` is 1001")
            && e.contains("from 0 to 1000")
            && e.contains("default is 10"),
        "{e}"
    );
    let e = err(&with("below_spec_percent = 101"));
    assert!(
        e.contains("`measurement.below_spec_percent` is 101")
            && e.contains("from 0 to 100")
            && e.contains("default is 50"),
        "{e}"
    );
    // Whole numbers of percent only.
    let e = err(&with("exceeds_spec_percent = 10.5"));
    assert!(
        e.contains("exceeds_spec_percent") && e.contains("not a whole number"),
        "{e}"
    );
    let e = err(&with("below_spec_percent = -5"));
    assert!(
        e.contains("below_spec_percent") && e.contains("negative"),
        "{e}"
    );
    let e = err(&with(r#"below_spec_percent = "50""#));
    assert!(e.contains("bare integer"), "{e}");
    let e = err(&with("exceeds_spec_percent = 99999999999"));
    assert!(e.contains("far too large"), "{e}");
    // Unknown keys fail, naming the known ones.
    let e = err(&with("exceed_spec_percent = 10"));
    assert!(
        e.contains("unknown field `exceed_spec_percent`") && e.contains("exceeds_spec_percent"),
        "{e}"
    );
}

#[test]
fn tolerance_overrides_replace_only_what_is_given() {
    let base = MeasurementTolerances::default();
    assert_eq!(base.with_overrides(None, None, None), base);
    assert_eq!(
        base.with_overrides(Some(25), None, None),
        MeasurementTolerances {
            exceeds_spec_percent: 25,
            below_spec_percent: 50,
            max_age_days: 30
        }
    );
    assert_eq!(
        base.with_overrides(None, Some(80), None),
        MeasurementTolerances {
            exceeds_spec_percent: 10,
            below_spec_percent: 80,
            max_age_days: 30
        }
    );
}

#[test]
fn measurement_max_age_is_whole_days_in_range() {
    let with = |table: &str| format!("{MINIMAL}\n[measurement]\n{table}\n");
    let rs = RuleSet::from_toml_str(&with("max_age_days = 7")).unwrap();
    assert_eq!(rs.measurement.max_age_days, 7);
    assert_eq!(rs.measurement.max_age_s(), 7 * 86_400);
    assert_eq!(
        RuleSet::from_toml_str(MINIMAL)
            .unwrap()
            .measurement
            .max_age_days,
        30
    );
    for bad in ["max_age_days = 0", "max_age_days = 3651"] {
        let e = RuleSet::from_toml_str(&with(bad)).unwrap_err().to_string();
        assert!(
            e.contains("`measurement.max_age_days`") && e.contains("1 to 3650"),
            "{bad}: {e}"
        );
    }
    let e = RuleSet::from_toml_str(&with("max_age_days = 1.5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a whole number"), "{e}");
}

// ---- licensing, variants and scenario copies ----

/// MINIMAL with two country groups and a `[licensing]` table appended.
fn with_licensing(licensing: &str) -> String {
    format!(
        "{MINIMAL}\n[[country_groups]]\nname = \"d5\"\ntext = \"t\"\ncountries = [\"CN\"]\n\
         \n[[country_groups]]\nname = \"rest\"\ntext = \"t\"\nrest = true\n\n{licensing}"
    )
}

const GOOD_LICENSING: &str = r#"[licensing]
otherwise = "not_required"
otherwise_text = "no rule holds"

[[licensing.party_groups]]
name = "d5_party"
text = "t"
countries = ["MO", "CN"]

[[licensing.rules]]
id = "hq"
text = "party in d5"
need = "required"
outcomes = ["yes"]
when = { party = ["d5_party"] }
"#;

#[test]
fn licensing_parses_and_validates() {
    let rs = RuleSet::from_toml_str(&with_licensing(GOOD_LICENSING)).unwrap();
    let l = rs.licensing.as_ref().unwrap();
    assert_eq!(l.otherwise, LicenceNeed::NotRequired);
    assert_eq!(
        l.rules[0].when.party.as_deref(),
        Some(&["d5_party".to_owned()][..])
    );
    // Party groups are sorted, apart from the destination groups, and a country may be in
    // several.
    assert_eq!(l.party_groups[0].countries, [cc("CN"), cc("MO")]);
    let bad = |from: &str, to: &str, wanted: &str| {
        assert!(GOOD_LICENSING.contains(from), "{from}");
        let text = with_licensing(&GOOD_LICENSING.replace(from, to));
        let e = err(&text);
        assert!(e.contains(wanted), "{from} -> {to}: {e}");
    };
    let cases = [
        (
            r#"outcomes = ["yes"]"#,
            r#"outcomes = ["no"]"#,
            r#"outcome "no" is not the outcome of any class"#,
        ),
        (
            r#"outcomes = ["yes"]"#,
            "outcomes = []",
            "`outcomes` is empty",
        ),
        (
            r#"party = ["d5_party"]"#,
            r#"party = ["d5"]"#,
            r#"party group "d5" is not defined in [[licensing.party_groups]]; defined: d5_party"#,
        ),
        (
            r#"party = ["d5_party"]"#,
            r#"destination = ["d5_party"]"#,
            r#"country group "d5_party" is not defined in [[country_groups]]; defined: d5, rest"#,
        ),
        (
            r#"countries = ["MO", "CN"]"#,
            "countries = []",
            "a party group lists no country",
        ),
        (
            r#"countries = ["MO", "CN"]"#,
            r#"countries = ["CN", "CN"]"#,
            "lists a country twice",
        ),
        (
            r#"name = "d5_party""#,
            r#"name = "D5""#,
            "a party group's name is empty",
        ),
        (
            r#"countries = ["MO", "CN"]"#,
            r#"countries = ["UK"]"#,
            "GB, not UK",
        ),
        (
            r#"when = { party = ["d5_party"] }"#,
            "when = {}",
            "neither `destination` nor `party`",
        ),
        (
            r#"party = ["d5_party"]"#,
            "party = []",
            "a group list in `when` is empty",
        ),
        (
            r#"id = "hq""#,
            r#"id = "yes.1""#,
            "its id is empty or used twice",
        ),
        (
            r#"need = "required""#,
            r#"need = "maybe""#,
            "unknown variant `maybe`",
        ),
        (
            r#"otherwise_text = "no rule holds""#,
            r#"otherwise_text = " ""#,
            "otherwise_text` is empty",
        ),
        ("when = {", "colour = 1\nwhen = {", "unknown field `colour`"),
        (
            r#"party = ["d5_party"]"#,
            r#"party = ["d5_party"], site = ["x"]"#,
            "unknown field `site`",
        ),
    ];
    for (from, to, wanted) in cases {
        bad(from, to, wanted);
    }
}

#[test]
fn every_shipped_licensing_rule_names_its_source_in_the_notes_or_text() {
    for rs in all_shipped_rule_sets().unwrap() {
        let Some(l) = &rs.licensing else { continue };
        assert!(!l.rules.is_empty(), "{}", rs.id);
        for rule in &l.rules {
            assert!(!rule.text.is_empty(), "{} {}", rs.id, rule.id);
        }
    }
    let eccn = shipped_rule_set("us-eccn-3a090").unwrap();
    let notes = eccn.notes.as_deref().unwrap();
    for fact in [
        "742.6(a)(6)(iii)(A)",
        "2026-05-31",
        "until further notice",
        "D:1",
        "D:4",
    ] {
        assert!(notes.contains(fact), "{fact}: {notes}");
    }
}

#[test]
fn unconfirmed_clauses_are_read_and_default_to_confirmed() {
    let rs = RuleSet::from_toml_str(MINIMAL).unwrap();
    assert!(rs.classes[0].clauses[0].confirmed);
    let text = MINIMAL.replace(
        "when = { tpp = { min = \"4800\" } }",
        "when = { tpp = { min = \"4800\" } }\nconfirmed = false",
    );
    assert!(!RuleSet::from_toml_str(&text).unwrap().classes[0].clauses[0].confirmed);
    let text = MINIMAL.replace(
        "when = { tpp = { min = \"4800\" } }",
        "when = { tpp = { min = \"4800\" } }\nconfirmed = \"no\"",
    );
    assert!(err(&text).contains("invalid type"), "{}", err(&text));
    let overwatch = shipped_rule_set("us-ai-overwatch-act-hr6875").unwrap();
    let unconfirmed: Vec<&str> = overwatch
        .classes
        .iter()
        .flat_map(|c| &c.clauses)
        .filter(|c| !c.confirmed)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        unconfirmed,
        [
            "hr6875.cic.dram_bandwidth",
            "hr6875.cic.interconnect_bandwidth",
            "hr6875.cic.combined_bandwidth"
        ]
    );
    assert_eq!(overwatch.status, RuleSetStatus::Bill);
    assert_eq!(overwatch.effective, None);
}

#[test]
fn a_file_reusing_a_shipped_id_is_refused_even_as_a_variant() {
    let shipped = include_str!("../../../rules/us-ai-diffusion-2025.toml");
    // The shipped file itself, passed as a file: it is the shipped rule set.
    let same = RuleSet::from_file_toml_str(shipped).unwrap();
    assert_eq!(same.origin, RuleSetOrigin::Shipped);
    assert!(!same.posture().is_modified());
    // Edited under the shipped id: refused, even when it declares itself a variant, so a
    // modified rule set never carries the shipped name.
    let edited = shipped.replace("\"FR\", ", "");
    for text in [
        edited.clone(),
        edited.replace(
            "id = \"us-ai-diffusion-2025\"",
            "id = \"us-ai-diffusion-2025\"\nvariant_of = \"us-ai-diffusion-2025\"",
        ),
    ] {
        let e = RuleSet::from_file_toml_str(&text).unwrap_err();
        assert!(matches!(e, RuleSetError::ShippedIdReused { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("its own `id`") && e.contains("variant_of"),
            "{e}"
        );
    }
    // Its own id and `variant_of`: accepted, and never shown with the shipped status alone.
    let variant = edited.replace(
        "id = \"us-ai-diffusion-2025\"",
        "id = \"fr-not-tier-1\"\nvariant_of = \"us-ai-diffusion-2025\"",
    );
    let rs = RuleSet::from_file_toml_str(&variant).unwrap();
    let posture = rs.posture();
    assert!(posture.is_modified());
    assert_eq!(posture.origin, RuleSetOrigin::File);
    assert_eq!(
        posture.to_string(),
        "fr-not-tier-1 v2 [historical (not in force); from a file; MODIFIED from \
         us-ai-diffusion-2025]"
    );
    // A variant keeps its base's status: a lowered copy of a bill or of a historical rule
    // cannot call itself law.
    let e = RuleSet::from_file_toml_str(
        &variant.replace("status = \"historical\"", "status = \"in_force\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("declares status `in_force`, but us-ai-diffusion-2025 is `historical`"),
        "{e}"
    );
    // A scenario on a user's file keeps it a file, and `variant_of` names shipped ids only.
    let mut moved = rs.with_country_in_group(cc("FR"), "tier_3").unwrap();
    assert_eq!(moved.origin, RuleSetOrigin::File);
    assert_eq!(moved.variant_of.as_deref(), Some("us-ai-diffusion-2025"));
    moved = RuleSet::from_file_toml_str(MINIMAL).unwrap();
    moved.mark_modified("licence L: max_devices 1".to_owned());
    assert_eq!(moved.variant_of, None);
    assert_eq!(
        moved.posture().to_string(),
        "example v1 [policy; from a file; MODIFIED: licence L: max_devices 1]"
    );
    // variant_of must name a shipped rule set.
    let e = RuleSet::from_file_toml_str(&variant.replace(
        "variant_of = \"us-ai-diffusion-2025\"",
        "variant_of = \"us-ai-diffusion-2024\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("names no shipped rule set") && e.contains("us-eccn-3a090"),
        "{e}"
    );
    // A file of its own id is a file, said so.
    let own = RuleSet::from_file_toml_str(MINIMAL).unwrap();
    assert_eq!(own.origin, RuleSetOrigin::File);
    assert_eq!(
        own.posture().to_string(),
        "example v1 [policy; from a file]"
    );
    // The origin and modifications are never read from a file.
    for key in ["origin = \"shipped\"", "modifications = [\"x\"]"] {
        let text = MINIMAL.replace("source = \"test\"", &format!("source = \"test\"\n{key}"));
        assert!(
            err(&text).contains("unknown field"),
            "{key}: {}",
            err(&text)
        );
    }
    // The shipped what-if example declares itself a variant.
    let what_if = RuleSet::from_file_toml_str(WHAT_IF_DE).unwrap();
    assert_eq!(what_if.variant_of.as_deref(), Some("us-ai-diffusion-2025"));
}

#[test]
fn a_scenario_moves_one_country_and_marks_the_copy() {
    let base = shipped_rule_set("us-ai-diffusion-2025").unwrap();
    let moved = base.with_country_in_group(cc("FR"), "tier_2").unwrap();
    assert_eq!(moved.country_tier(cc("FR")), Some("tier_2"));
    assert_eq!(
        base.country_tier(cc("FR")),
        Some("tier_1"),
        "the base is untouched"
    );
    for c in ["US", "DE", "CN", "PL"] {
        assert_eq!(moved.country_tier(cc(c)), base.country_tier(cc(c)), "{c}");
    }
    let posture = moved.posture();
    assert_eq!(posture.origin, RuleSetOrigin::Scenario);
    assert_eq!(posture.modifications, ["FR moved from tier_1 to tier_2"]);
    assert!(
        posture
            .to_string()
            .contains("MODIFIED from us-ai-diffusion-2025: FR moved")
    );
    // Into Tier 3 and back: the country is listed in one group only, and validation agrees.
    let twice = moved
        .with_country_in_group(cc("FR"), "tier_3")
        .unwrap()
        .with_country_in_group(cc("FR"), "tier_1")
        .unwrap();
    assert_eq!(twice.country_tier(cc("FR")), Some("tier_1"));
    let listed: usize = twice
        .country_groups
        .iter()
        .filter(|g| g.countries.contains(&cc("FR")))
        .count();
    assert_eq!(listed, 1);
    assert_eq!(twice.modifications.len(), 3);
    twice.validate().unwrap();
    // A group the rule set lacks names its groups and the fix.
    let e = shipped_rule_set("us-eccn-3a090")
        .unwrap()
        .with_country_in_group(cc("FR"), "tier_2")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no country group \"tier_2\" (groups: united_states, a5, d5_macau)")
            && e.contains("--rule-set"),
        "{e}"
    );
    // A country no group lists yet, moved into a listed group.
    let ae = base.with_country_in_group(cc("AE"), "tier_3").unwrap();
    assert_eq!(ae.country_tier(cc("AE")), Some("tier_3"));
    assert_eq!(ae.modifications, ["AE moved from tier_2 to tier_3"]);
}
