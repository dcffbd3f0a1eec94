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
            ("us-china-review-2026-01", RuleSetStatus::Policy),
        ]
    );
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
