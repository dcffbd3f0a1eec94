#![cfg(test)]
//! Hostile input to the parsers of outside input: rule-set TOML (`RuleSet::from_toml_str`) and
//! the exact decimal `FromStr`s. Complements the unit tests in `proto/src/{ruleset,units}/
//! tests.rs`, which cover the ordinary errors.

use tppguard_proto::ruleset::{MAX_RULE_SET_BYTES, RuleSet, RuleSetError};
use tppguard_proto::units::{Bandwidth, DecimalError, DieArea, Tops, Tpp};

const MINIMAL: &str = include_str!("data/minimal-rule-set.toml");

const SHIPPED: [&str; 3] = [
    include_str!("../../rules/us-eccn-3a090.toml"),
    include_str!("../../rules/us-gain-ai-act-s3150.toml"),
    include_str!("../../rules/us-china-review-2026-01.toml"),
];

fn parse(text: &str) -> Result<RuleSet, RuleSetError> {
    RuleSet::from_toml_str(text)
}

/// The TOML-level error message (unknown key, syntax, bad threshold).
fn toml_err(text: &str) -> String {
    match parse(text) {
        Err(RuleSetError::Toml(e)) => e.to_string(),
        other => panic!("expected a TOML error, got {other:?}"),
    }
}

/// MINIMAL with the clause's `when` replaced.
fn with_when(when: &str) -> String {
    MINIMAL.replace(
        r#"when = { tpp = { min = "4800" } }"#,
        &format!("when = {when}"),
    )
}

/// MINIMAL with the TPP threshold `"4800"` replaced by a TOML value.
fn with_threshold(value: &str) -> String {
    MINIMAL.replace(r#""4800""#, value)
}

// ---- Size and shape ----

#[test]
fn over_the_size_limit_is_rejected_before_parsing() {
    // A valid rule set padded with a comment to one byte over the limit.
    let mut text = MINIMAL.to_owned();
    text.push('#');
    text.push_str(&"x".repeat(MAX_RULE_SET_BYTES - text.len()));
    assert_eq!(text.len(), MAX_RULE_SET_BYTES);
    parse(&text).expect("exactly at the limit is accepted");
    text.push('x');
    assert!(matches!(
        parse(&text),
        Err(RuleSetError::TooLarge { len, max }) if len == MAX_RULE_SET_BYTES + 1 && max == MAX_RULE_SET_BYTES
    ));
    // Far over the limit: also rejected by size, whatever the content.
    let huge = "[".repeat(16 * MAX_RULE_SET_BYTES);
    assert!(matches!(parse(&huge), Err(RuleSetError::TooLarge { len, .. }) if len == huge.len()));
    // The limit counts bytes, not characters.
    let wide = "é".repeat(MAX_RULE_SET_BYTES / 2 + 1);
    assert!(matches!(parse(&wide), Err(RuleSetError::TooLarge { .. })));
}

#[test]
fn deep_nesting_within_the_limit_is_an_error_not_a_stack_overflow() {
    let depth = MAX_RULE_SET_BYTES / 2 - 16;
    let cases = [
        format!("id = {}{}", "[".repeat(depth), "]".repeat(depth)),
        format!("id = {}1{}", "{a=".repeat(depth / 3), "}".repeat(depth / 3)),
        format!("id = {}", "[".repeat(MAX_RULE_SET_BYTES - 8)),
        format!("[{}]\n", vec!["a"; depth].join(".")),
        format!("{} = 1\n", vec!["a"; depth].join(".")),
        format!("[[{}]]\n", vec!["a"; depth].join(".")),
        format!(
            "{MINIMAL}\n[node.extra]\nx = {}{}\n",
            "[".repeat(depth - MINIMAL.len()),
            "]".repeat(depth - MINIMAL.len())
        ),
    ];
    for text in &cases {
        assert!(text.len() <= MAX_RULE_SET_BYTES);
        let e = toml_err(text);
        assert!(!e.is_empty());
    }
}

#[test]
fn huge_but_valid_rule_sets_parse() {
    // As many clauses as fit under the limit.
    let mut text = MINIMAL.replace("[node]\nrank = [\"yes\", \"no\"]\n", "");
    let mut n = 0;
    loop {
        let clause = format!(
            "[[classes.clauses]]\nid = \"yes.c{n}\"\ntext = \"t\"\nwhen = {{ tpp = {{ min = \"{n}\" }} }}\n"
        );
        if text.len() + clause.len() + 40 > MAX_RULE_SET_BYTES {
            break;
        }
        text.push_str(&clause);
        n += 1;
    }
    text.push_str("[node]\nrank = [\"yes\", \"no\"]\n");
    let rule_set = parse(&text).unwrap();
    assert_eq!(rule_set.classes[0].clauses.len(), n + 1);
    assert!(n > 500, "{n}");

    // One very long string value.
    let long = MINIMAL.replace(
        "title = \"Example\"",
        &format!(
            "title = \"{}\"",
            "t".repeat(MAX_RULE_SET_BYTES - MINIMAL.len())
        ),
    );
    assert_eq!(
        parse(&long).unwrap().title.len(),
        MAX_RULE_SET_BYTES - MINIMAL.len()
    );
}

#[test]
fn every_prefix_of_a_shipped_rule_set_parses_or_errs() {
    for shipped in SHIPPED {
        let mut parsed = Vec::new();
        for end in (0..=shipped.len()).filter(|&i| shipped.is_char_boundary(i)) {
            // Never panics; the message is always printable.
            match parse(&shipped[..end]) {
                Ok(_) => parsed.push(&shipped[..end]),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        // The whole file parses, and a shorter prefix only where a line ends (the optional
        // trailing `node.map` cut off whole), never mid-value.
        assert_eq!(parsed.last(), Some(&shipped));
        for prefix in parsed {
            assert!(
                prefix.ends_with([']', '}', '\n']),
                "{:?}",
                &prefix[prefix.len().saturating_sub(40)..]
            );
        }
    }
}

// ---- Keys ----

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let cases = [
        ("top level", MINIMAL.replace("version = \"1\"", "version = \"1\"\nfoo = 1")),
        ("class", MINIMAL.replace("outcome = \"yes\"", "outcome = \"yes\"\nfoo = 1")),
        ("clause", MINIMAL.replace("text = \"TPP >= 4800\"", "text = \"x\"\nfoo = 1")),
        ("range", with_when(r#"{ tpp = { min = "4800", foo = "1" } }"#)),
        ("node", format!("{MINIMAL}foo = 1\n")),
        (
            "exclusion",
            MINIMAL.replace(
                "[[classes]]",
                "[[exclusions]]\nid = \"e\"\ntext = \"t\"\noutcome = \"no\"\nfoo = 1\nwhen = { datacenter = false }\n[[classes]]",
            ),
        ),
    ];
    for (place, text) in cases {
        let e = toml_err(&text);
        assert!(e.contains("unknown field `foo`"), "{place}: {e}");
    }
}

#[test]
fn duplicate_toml_keys_are_rejected() {
    let e = toml_err(&MINIMAL.replace("version = \"1\"", "version = \"1\"\nid = \"other\""));
    assert!(e.contains("duplicate key"), "{e}");
    let e = toml_err(&with_when(r#"{ tpp = { min = "4800", min = "1600" } }"#));
    assert!(e.contains("duplicate key"), "{e}");
}

// ---- Thresholds ----

#[test]
fn a_threshold_with_40_decimals_is_rejected_unless_the_extra_are_zeros() {
    let forty = format!("\"4800.{}1\"", "0".repeat(39));
    let e = toml_err(&with_threshold(&forty));
    assert!(
        e.contains("invalid threshold") && e.contains("more than 4 decimal places"),
        "{e}"
    );
    let zeros = format!("\"4800.{}\"", "0".repeat(40));
    assert_eq!(
        parse(&with_threshold(&zeros)).unwrap(),
        parse(MINIMAL).unwrap()
    );
}

#[test]
fn hostile_thresholds_name_the_problem() {
    let cases = [
        (r#""-4800""#, "negative"),
        ("-4800", "negative"),
        (r#""-5.92""#, "negative"),
        (r#""""#, "empty value"),
        (r#""NaN""#, "not a plain decimal"),
        (r#""1e9""#, "not a plain decimal"),
        (r#""٤٨٠٠""#, "not a plain decimal"),
        (r#""４８００""#, "not a plain decimal"),
        (r#"" 4800""#, "not a plain decimal"),
        (r#""4_800""#, "not a plain decimal"),
        (
            r#""99999999999999999999999999""#,
            "above the largest accepted value",
        ),
    ];
    for (value, expected) in cases {
        let e = toml_err(&with_threshold(value));
        assert!(
            e.contains("invalid threshold") && e.contains(expected),
            "{value}: {e}"
        );
    }
    // TOML floats, finite or not, are refused before any parsing: they are not exact.
    for float in [
        "-0.0", "-5.92", "nan", "inf", "-inf", "1e300", "1e-9", "4800.0",
    ] {
        let e = toml_err(&with_threshold(float));
        assert!(
            e.contains("is a TOML float, which is not exact"),
            "{float}: {e}"
        );
    }
    // An exponent is a float in TOML, even when its value is an integer.
    let e = toml_err(&with_threshold("4.8e3"));
    assert!(e.contains("is a TOML float"), "{e}");
    // Wrong TOML types.
    for value in ["true", "[1]", "{ a = 1 }", "2024-01-01"] {
        let e = toml_err(&with_threshold(value));
        assert!(
            e.contains("a non-negative decimal as a string"),
            "{value}: {e}"
        );
    }
}

#[test]
fn a_zero_density_threshold_is_valid() {
    // Performance density thresholds are TPP per 1 mm²; zero is a valid lower bound.
    let rule_set = parse(&with_when(r#"{ performance_density = { min = "0" } }"#)).unwrap();
    let pd = rule_set.classes[0].clauses[0]
        .when
        .performance_density
        .unwrap();
    assert_eq!(pd.min.unwrap().threshold_text(), "0");
}

#[test]
fn min_above_max_names_the_figure_and_both_bounds() {
    let cases = [
        (
            r#"{ tpp = { min = "4800", max = "1600" } }"#,
            "tpp",
            "4800",
            "1600",
        ),
        (
            r#"{ performance_density = { min = "5.92", max = "1.6" } }"#,
            "performance_density",
            "5.92",
            "1.6",
        ),
        (
            r#"{ dram_bandwidth = { min = "1700.5", max = "1700.499" } }"#,
            "dram_bandwidth",
            "1700.5",
            "1700.499",
        ),
        (
            r#"{ datacenter = true, dram_plus_interconnect_bandwidth = { min = 2, max = 1 } }"#,
            "dram_plus_interconnect_bandwidth",
            "2",
            "1",
        ),
    ];
    for (when, figure, lo, hi) in cases {
        match parse(&with_when(when)) {
            Err(RuleSetError::EmptyRange { id, key, min, max }) => {
                assert_eq!(
                    (id.as_str(), key, min.as_str(), max.as_str()),
                    ("yes.1", figure, lo, hi)
                );
            }
            other => panic!("{when}: {other:?}"),
        }
    }
}

// ---- Outcomes, ids and ranks ----

#[test]
fn duplicate_and_empty_clause_ids_are_rejected() {
    let second_class = "\n[[classes]]\noutcome = \"other\"\n[[classes.clauses]]\nid = \"yes.1\"\ntext = \"t\"\nwhen = { datacenter = true }\n";
    let text = format!("{MINIMAL}{second_class}").replace(
        "rank = [\"yes\", \"no\"]",
        "rank = [\"yes\", \"other\", \"no\"]",
    );
    // The second class comes after [node] in the file; TOML allows that.
    assert!(matches!(parse(&text), Err(RuleSetError::DuplicateClauseId { id }) if id == "yes.1"));

    // An exclusion and a clause sharing an id.
    let text = MINIMAL.replace(
        "[[classes]]",
        "[[exclusions]]\nid = \"yes.1\"\ntext = \"t\"\noutcome = \"no\"\nwhen = { datacenter = false }\n[[classes]]",
    );
    assert!(matches!(parse(&text), Err(RuleSetError::DuplicateClauseId { id }) if id == "yes.1"));

    let text = MINIMAL.replace("id = \"yes.1\"", "id = \"\"");
    assert!(matches!(parse(&text), Err(RuleSetError::DuplicateClauseId { id }) if id.is_empty()));
}

#[test]
fn a_class_without_clauses_is_rejected() {
    let text = MINIMAL.replace(
        "[node]",
        "[[classes]]\noutcome = \"empty\"\nclauses = []\n[node]",
    );
    assert!(
        matches!(parse(&text), Err(RuleSetError::EmptyClass { outcome }) if outcome == "empty")
    );
}

#[test]
fn empty_blank_and_reserved_outcomes_are_rejected_everywhere() {
    for name in ["", "   ", "indeterminate", "INDETERMINATE", "Indeterminate"] {
        let quoted = format!("{name:?}");
        let class = MINIMAL
            .replace("outcome = \"yes\"", &format!("outcome = {quoted}"))
            .replace("rank = [\"yes\"", &format!("rank = [{quoted}"));
        assert!(
            matches!(parse(&class), Err(RuleSetError::BadOutcome { key, outcome }) if key == "classes.outcome" && outcome == name),
            "class {name:?}"
        );
        let exclusion = MINIMAL
            .replace(
                "[[classes]]",
                &format!("[[exclusions]]\nid = \"e\"\ntext = \"t\"\noutcome = {quoted}\nwhen = {{ datacenter = false }}\n[[classes]]"),
            )
            .replace("rank = [\"yes\", \"no\"", &format!("rank = [\"yes\", \"no\", {quoted}"));
        assert!(
            matches!(parse(&exclusion), Err(RuleSetError::BadOutcome { key, .. }) if key == "exclusions.outcome"),
            "exclusion {name:?}"
        );
        // A node outcome is reported like a device outcome, so the same names are refused.
        let mapped = MINIMAL.replace(
            "rank = [\"yes\", \"no\"]",
            &format!("rank = [\"yes\", \"no\"]\nmap = {{ yes = {quoted} }}"),
        );
        assert!(
            matches!(parse(&mapped), Err(RuleSetError::BadOutcome { key, outcome }) if key == "node.map" && outcome == name),
            "node.map value {name:?}: {:?}",
            parse(&mapped)
        );
    }
}

#[test]
fn rank_problems_name_the_outcome() {
    let bad_rank =
        |rank: &str| parse(&MINIMAL.replace("rank = [\"yes\", \"no\"]", &format!("rank = {rank}")));
    // Outcome names are case-sensitive: "YES" is not "yes".
    assert!(matches!(
        bad_rank(r#"["YES", "no"]"#),
        Err(RuleSetError::BadRank { problem: "unknown", outcome }) if outcome == "YES"
    ));
    assert!(matches!(
        bad_rank("[]"),
        Err(RuleSetError::BadRank { problem: "missing", outcome }) if outcome == "no"
    ));
    // An exclusion's outcome must be ranked too.
    let text = MINIMAL.replace(
        "[[classes]]",
        "[[exclusions]]\nid = \"e\"\ntext = \"t\"\noutcome = \"carved_out\"\nwhen = { datacenter = false }\n[[classes]]",
    );
    assert!(matches!(
        parse(&text),
        Err(RuleSetError::BadRank { problem: "missing", outcome }) if outcome == "carved_out"
    ));
    let e = toml_err(&MINIMAL.replace("rank = [\"yes\", \"no\"]", "rank = \"yes\""));
    assert!(e.contains("rank"), "{e}");
}

// ---- Decimals ----

fn all_types(text: &str) -> [Result<(), DecimalError>; 4] {
    [
        text.parse::<Tops>().map(drop),
        text.parse::<Tpp>().map(drop),
        text.parse::<DieArea>().map(drop),
        text.parse::<Bandwidth>().map(drop),
    ]
}

#[test]
fn decimals_reject_signs_exponents_and_unicode_digits_in_every_unit() {
    let not_decimal = [
        "1e9",
        "1E9",
        "1e-3",
        "inf",
        "infinity",
        "nan",
        "0x10",
        "٤٨٠٠",
        "４８００",
        "¹",
        "1 000",
        "1\u{a0}000",
        "1\n",
        "\t1",
        "1.\u{0}",
        "−1",
        "+0",
        "1..2",
        "..",
        ".",
    ];
    for text in not_decimal {
        for result in all_types(text) {
            assert_eq!(
                result,
                Err(DecimalError::NotADecimal { text: text.into() }),
                "{text:?}"
            );
        }
    }
    for text in ["-", "-0", "--1", "-abc", "-1e9"] {
        assert_eq!(
            all_types(text),
            [const { Err(DecimalError::Negative) }; 4],
            "{text:?}"
        );
    }
    assert_eq!(all_types(""), [const { Err(DecimalError::Empty) }; 4]);
}

#[test]
fn decimals_with_40_places() {
    let text = format!("1.{}1", "0".repeat(39));
    assert_eq!(
        text.parse::<Tpp>(),
        Err(DecimalError::TooManyDecimals {
            text: text.clone(),
            max_decimals: 4
        })
    );
    assert_eq!(
        text.parse::<DieArea>(),
        Err(DecimalError::TooManyDecimals {
            text: text.clone(),
            max_decimals: 2
        })
    );
    let zeros = format!("1.{}", "0".repeat(40));
    assert_eq!(zeros.parse::<Bandwidth>().unwrap().raw(), 1000);
    // Too many places wins over too large: the error names the real problem first.
    let both = format!("{}.{}1", "9".repeat(40), "0".repeat(39));
    assert!(matches!(
        both.parse::<Tops>(),
        Err(DecimalError::TooManyDecimals { .. })
    ));
}

#[test]
fn decimals_at_and_past_every_bound() {
    fn bounds<T>(max: &str, past: &str, past_u64: &str)
    where
        T: std::str::FromStr<Err = DecimalError> + std::fmt::Display,
    {
        assert_eq!(max.parse::<T>().map(|v| v.to_string()), Ok(max.to_owned()));
        for text in [past, past_u64, &"9".repeat(1000)] {
            assert!(
                matches!(text.parse::<T>(), Err(DecimalError::TooLarge { max: m, .. }) if m == max),
                "{text}"
            );
        }
    }
    // u64::MAX + 1 = 18446744073709551616.
    bounds::<Tops>("100000000", "100000000.0001", "18446744073709551616");
    bounds::<Tpp>(
        "10000000000000",
        "10000000000000.0001",
        "18446744073709551616",
    );
    bounds::<DieArea>("1000000", "1000000.01", "18446744073709551616");
    bounds::<Bandwidth>("1000000000000", "1000000000000.001", "18446744073709551616");
    // The smallest die area, and below it.
    assert_eq!("0.01".parse::<DieArea>().unwrap().raw(), 1);
    assert!(matches!(
        "0.00".parse::<DieArea>(),
        Err(DecimalError::TooSmall { min, .. }) if min == "0.01"
    ));
}

#[test]
fn decimals_with_long_runs_of_zeros_are_exact() {
    let long_int = format!("{}1", "0".repeat(100_000));
    assert_eq!(long_int.parse::<Tpp>().unwrap().raw(), 10_000);
    let long_frac = format!("1.{}", "0".repeat(100_000));
    assert_eq!(long_frac.parse::<Tpp>().unwrap().raw(), 10_000);
    let tiny = format!("0.{}1", "0".repeat(100_000));
    assert!(matches!(
        tiny.parse::<Tpp>(),
        Err(DecimalError::TooManyDecimals { .. })
    ));
}
