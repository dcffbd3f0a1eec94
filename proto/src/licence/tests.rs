use super::*;

const EXAMPLE: &str = include_str!("../../../examples/licence.toml");
const TOO_SMALL: &str = include_str!("../../../examples/licence-too-small.toml");

/// The simulated DGX H100 node: 8 x 15831.2.
fn dgx_h100_tpp() -> Tpp {
    let h100: Tpp = "15831.2".parse().unwrap();
    Tpp::sum([h100; 8])
}

#[test]
fn example_covers_the_simulated_dgx_h100_node() {
    let l = Licence::from_toml_str(EXAMPLE).unwrap();
    let node = dgx_h100_tpp();
    assert_eq!(node, "126649.6".parse().unwrap());
    assert!(l.max_aggregate_tpp() >= node);
    assert!(l.max_devices() >= 8);
    assert!(l.allows_device_tpp("15831.2".parse().unwrap()));
    assert!(!l.allows_device_tpp("15831.3".parse().unwrap()));
    assert!(l.allows(Some("3A090.a"), Some("H100 SXM5 80GB")));
    assert!(l.allows(Some("3A090.a"), Some("NVIDIA H100 80GB HBM3")));
    assert!(EvidenceTier::Declared.meets(l.min_evidence_tier()));
    assert_eq!(l.id(), "EXAMPLE-DE-2026-0142");
    assert_eq!(l.destination_country().as_str(), "DE");
    assert_eq!(l.licensee().headquarters_country.as_str(), "DE");
    assert_eq!(l.licensee().ultimate_parent_country.as_str(), "DE");
    assert_eq!(l.rule_set(), "us-eccn-3a090");
    crate::ruleset::shipped_rule_set(l.rule_set()).unwrap();
    assert_eq!(l.max_attestation_age_s(), 86_400);
    assert_eq!(l.valid_from(), 1_767_225_600);
    assert_eq!(
        l.sites().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["fra-1", "ber-1"]
    );
    assert_eq!(l.site("ber-1").unwrap().name, "Berlin data centre");
    assert!(l.site("muc-1").is_none());
    assert_eq!(l.models(), ["H100 SXM5 80GB", "H200 SXM 141GB"]);
}

#[test]
fn too_small_example_is_below_the_node_and_otherwise_the_same() {
    let small = Licence::from_toml_str(TOO_SMALL).unwrap();
    let full = Licence::from_toml_str(EXAMPLE).unwrap();
    assert!(small.max_aggregate_tpp() < dgx_h100_tpp());
    assert_eq!(small.max_aggregate_tpp(), "100000".parse().unwrap());
    // Everything but the id and the aggregate cap is the same.
    let mut a = serde_json::to_value(&small).unwrap();
    let mut b = serde_json::to_value(&full).unwrap();
    for v in [&mut a, &mut b] {
        let o = v.as_object_mut().unwrap();
        o.remove("id");
        o.remove("max_aggregate_tpp");
    }
    assert_eq!(a, b);
}

#[test]
fn json_form_has_stable_keys_and_round_trips() {
    let l = Licence::from_toml_str(EXAMPLE).unwrap();
    let json = l.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    let keys = [
        "id",
        "issuer",
        "licensee",
        "destination_country",
        "end_user",
        "end_use",
        "sites",
        "eccns",
        "models",
        "max_devices",
        "max_aggregate_tpp",
        "max_tpp_per_device",
        "min_evidence_tier",
        "max_attestation_age",
        "valid_from",
        "valid_until",
        "rule_set",
    ];
    assert_eq!(value.as_object().unwrap().len(), keys.len());
    // In this order in the bytes (file order), each at the top level.
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!(",\"{k}\":"))
                .or_else(|| text.find(&format!("{{\"{k}\":")))
                .unwrap()
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(value["max_aggregate_tpp"], "32500000");
    assert_eq!(value["max_tpp_per_device"], "15831.2");
    assert_eq!(value["max_attestation_age"], 86_400);
    assert_eq!(value["valid_from"], "2026-01-01T00:00:00Z");
    assert_eq!(value["valid_until"], "2028-01-01T00:00:00Z");
    assert_eq!(value["min_evidence_tier"], "declared");
    assert_eq!(
        value["licensee"],
        serde_json::json!({
            "name": "Example Cloud GmbH",
            "headquarters_country": "DE",
            "ultimate_parent_country": "DE",
        })
    );
    assert_eq!(
        value["sites"][0],
        serde_json::json!({"id": "fra-1", "name": "Frankfurt am Main data centre, hall 3", "country": "DE"})
    );
    let back = Licence::from_json(&json).unwrap();
    assert_eq!(back, l);
    assert_eq!(back.to_json().unwrap(), json);
}

#[test]
fn json_checks_match_toml_checks() {
    let l = Licence::from_toml_str(EXAMPLE).unwrap();
    let good: serde_json::Value = serde_json::from_slice(&l.to_json().unwrap()).unwrap();
    let with = |key: &str, v: serde_json::Value| {
        let mut j = good.clone();
        j[key] = v;
        Licence::from_json(&serde_json::to_vec(&j).unwrap())
            .unwrap_err()
            .code()
    };
    assert_eq!(with("max_aggregate_tpp", 1.5.into()), "invalid_json");
    assert_eq!(with("max_aggregate_tpp", "-1".into()), "bad_cap");
    assert_eq!(with("destination_country", "de".into()), "bad_country");
    assert_eq!(
        with("valid_until", "2025-01-01T00:00:00Z".into()),
        "empty_validity"
    );
    assert_eq!(
        with("valid_from", "2026-01-01T00:00:00".into()),
        "bad_timestamp"
    );
    assert_eq!(with("max_attestation_age", 0.into()), "bad_duration");
    assert_eq!(with("max_attestation_age", (-5).into()), "bad_duration");
    assert_eq!(with("extra", 1.into()), "invalid_json");
    let mut j = good.clone();
    j["max_tpp_per_device"] = serde_json::Value::Null;
    j["max_attestation_age"] = "30m".into();
    let l = Licence::from_json(&serde_json::to_vec(&j).unwrap()).unwrap();
    assert_eq!(l.max_tpp_per_device(), None);
    assert_eq!(l.max_attestation_age_s(), 1800);
    assert!(l.allows_device_tpp(Tpp::from_ten_thousandths(Tpp::MAX_RAW).unwrap()));
    // Trailing data and oversize input.
    let mut bytes = serde_json::to_vec(&good).unwrap();
    bytes.extend_from_slice(b" {}");
    assert_eq!(
        Licence::from_json(&bytes).unwrap_err().code(),
        "invalid_json"
    );
    let big = vec![b' '; MAX_LICENCE_BYTES + 1];
    assert_eq!(Licence::from_json(&big).unwrap_err().code(), "too_large");
}

#[test]
fn validity_window_is_half_open() {
    let l = Licence::from_toml_str(EXAMPLE).unwrap();
    let (from, until) = (l.valid_from(), l.valid_until());
    assert_eq!(
        l.is_valid_at(from - 10),
        Validity::NotYetValid {
            now: from - 10,
            valid_from: from,
            starts_in_s: 10
        }
    );
    assert_eq!(
        l.is_valid_at(from),
        Validity::Valid {
            now: from,
            valid_until: until,
            remaining_s: u64::try_from(until - from).unwrap()
        }
    );
    assert!(l.is_valid_at(until - 1).is_valid());
    assert_eq!(
        l.is_valid_at(until),
        Validity::Expired {
            now: until,
            valid_until: until,
            expired_for_s: 0
        }
    );
    for now in [i64::MIN, i64::MAX, 0, -1] {
        let v = l.is_valid_at(now);
        assert!(!v.sentence().is_empty());
        assert!(v.code().starts_with("licence_"));
    }
    assert_eq!(
        serde_json::to_value(l.is_valid_at(until + 5)).unwrap(),
        serde_json::json!({"status": "expired", "now": until + 5, "valid_until": until, "expired_for_s": 5})
    );
    assert!(
        l.is_valid_at(from)
            .sentence()
            .contains("2028-01-01T00:00:00Z")
    );
}

#[test]
fn allows_needs_every_given_list() {
    let l = Licence::from_toml_str(EXAMPLE).unwrap();
    assert!(l.allows(Some("3A090.a"), Some("H200 SXM 141GB")));
    assert!(!l.allows(Some("3A090.b"), Some("H100 SXM5 80GB")));
    assert!(!l.allows(Some("3A090"), Some("H100 SXM5 80GB")));
    assert!(!l.allows(None, Some("H100 SXM5 80GB")));
    assert!(!l.allows(Some("3A090.a"), None));
    assert!(!l.allows(Some("3A090.a"), Some("A100 SXM4 80GB")));
    assert!(!l.allows(Some("3A090.a"), Some("no such part")));
    assert!(!l.allows(None, None));

    let eccn_only = EXAMPLE
        .replace(r#"eccns = ["3A090.a"]"#, r#"eccns = ["3A090"]"#)
        .replace(r#"models = ["H100 SXM5 80GB", "H200 SXM 141GB"]"#, "");
    let l = Licence::from_toml_str(&eccn_only).unwrap();
    assert!(l.models().is_empty());
    assert!(l.allows(Some("3A090.a"), None));
    assert!(l.allows(Some("3A090.b"), Some("anything")));
    assert!(l.allows(Some("3A090"), None));
    assert!(!l.allows(Some("3A0901"), None));
    assert!(!l.allows(Some("4A090.a"), None));
    assert!(!l.allows(None, Some("H100 SXM5 80GB")));

    let model_only = EXAMPLE.replace(r#"eccns = ["3A090.a"]"#, "");
    let l = Licence::from_toml_str(&model_only).unwrap();
    assert!(l.eccns().is_empty());
    assert!(l.allows(None, Some("h100 sxm5 80gb")));
    assert!(l.allows(Some("EAR99"), Some("H100 SXM5 80GB")));
    assert!(!l.allows(Some("3A090.a"), Some("H100 PCIe 80GB")));
}

#[test]
fn lists_are_sorted_and_deduplicated_models_canonical() {
    let text = EXAMPLE
        .replace(
            r#"eccns = ["3A090.a"]"#,
            r#"eccns = ["3A090.b", "3A090.a", "3A090.b"]"#,
        )
        .replace(
            r#"models = ["H100 SXM5 80GB", "H200 SXM 141GB"]"#,
            r#"models = ["NVIDIA H100 80GB HBM3", "h100 sxm5 80gb", "H200 SXM 141GB"]"#,
        );
    let l = Licence::from_toml_str(&text).unwrap();
    assert_eq!(l.eccns(), ["3A090.a", "3A090.b"]);
    assert_eq!(l.models(), ["H100 SXM5 80GB", "H200 SXM 141GB"]);
}

#[test]
fn eccn_shapes() {
    for ok in ["3A090", "3A090.a", "4A090.b", "5A002.a.1", "3E001"] {
        assert!(is_eccn(ok), "{ok}");
    }
    for bad in [
        "", "3a090.a", "3A090.A", "3A09", "3F090", "3A090.", "3A090..a", "EAR99", "3A090 a",
        "3A090.a ", "A3090", "３A090",
    ] {
        assert!(!is_eccn(bad), "{bad}");
    }
}

#[test]
fn durations_and_timestamps_in_toml() {
    let with = |old: &str, new: &str| {
        assert!(EXAMPLE.contains(old), "{old}");
        Licence::from_toml_str(&EXAMPLE.replace(old, new))
    };
    let age = r#"max_attestation_age = "24h""#;
    assert_eq!(
        with(age, "max_attestation_age = 3600")
            .unwrap()
            .max_attestation_age_s(),
        3600
    );
    assert_eq!(
        with(age, r#"max_attestation_age = "7d""#)
            .unwrap()
            .max_attestation_age_s(),
        604_800
    );
    assert_eq!(
        with(age, "").unwrap().max_attestation_age_s(),
        DEFAULT_MAX_ATTESTATION_AGE_SECONDS
    );
    let from = "valid_from = 2026-01-01T00:00:00Z";
    for same in [
        r#"valid_from = "2026-01-01T00:00:00Z""#,
        "valid_from = 2026-01-01T01:00:00+01:00",
        "valid_from = 2026-01-01 00:00:00Z",
    ] {
        assert_eq!(
            with(from, same).unwrap().valid_from(),
            1_767_225_600,
            "{same}"
        );
    }
    for (bad, needle) in [
        ("valid_from = 2026-01-01T00:00:00", "no UTC offset"),
        ("valid_from = 2026-01-01", "without a time"),
        ("valid_from = 00:00:00", "RFC 3339 timestamp"),
        ("valid_from = 2026-01-01T00:00:00.5Z", "fractional"),
        ("valid_from = 1700000000", "RFC 3339"),
        ("valid_from = { a = 1 }", "RFC 3339"),
    ] {
        let e = with(from, bad).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
    let tier = r#"min_evidence_tier = "declared""#;
    assert_eq!(
        with(tier, r#"min_evidence_tier = "hardware""#)
            .unwrap()
            .min_evidence_tier(),
        EvidenceTier::Hardware
    );
    assert_eq!(
        with(tier, "").unwrap().min_evidence_tier(),
        EvidenceTier::Declared
    );
    assert_eq!(
        with(tier, r#"min_evidence_tier = "Hardware""#)
            .unwrap_err()
            .code(),
        "invalid_toml"
    );
}

#[test]
fn caps_are_exact() {
    let with = |old: &str, new: &str| {
        assert!(EXAMPLE.contains(old), "{old}");
        Licence::from_toml_str(&EXAMPLE.replace(old, new))
    };
    let per = r#"max_tpp_per_device = "15831.2""#;
    let l = with(per, "max_tpp_per_device = 15832").unwrap();
    assert_eq!(l.max_tpp_per_device(), Some("15832".parse().unwrap()));
    let l = with(per, "").unwrap();
    assert_eq!(l.max_tpp_per_device(), None);
    let e = with(per, "max_tpp_per_device = 15831.2").unwrap_err();
    assert_eq!(e.code(), "invalid_toml");
    assert!(e.to_string().contains("max_tpp_per_device"), "{e}");
    assert!(e.to_string().contains(r#""15831.2""#), "{e}");
    let e = with(per, r#"max_tpp_per_device = "15831.23456""#).unwrap_err();
    assert_eq!(e.code(), "bad_cap");
    assert!(e.to_string().contains("4 decimal places"), "{e}");
    let e = with(per, r#"max_tpp_per_device = "40000000""#).unwrap_err();
    assert_eq!(e.code(), "per_device_cap_above_aggregate");
    assert_eq!(
        with(per, r#"max_tpp_per_device = "0""#).unwrap_err().code(),
        "zero_cap"
    );
}

/// One input per error code; together they cover [`LicenceError::CODES`].
#[test]
fn every_code_is_reachable_unique_and_snake_case() {
    let with = |old: &str, new: &str| {
        assert!(EXAMPLE.contains(old), "{old}");
        EXAMPLE.replace(old, new)
    };
    let cases: Vec<(String, &str)> = vec![
        (" ".repeat(MAX_LICENCE_BYTES + 1), "too_large"),
        (with("rule_set =", "rule_sets ="), "invalid_toml"),
        (
            with(
                r#"issuer = "Example licence authority (not a real licence)""#,
                r#"issuer = "  ""#,
            ),
            "empty_field",
        ),
        (with(r#"id = "EXAMPLE-"#, r#"id = "EXAMPLE "#), "bad_id"),
        (
            with(
                r#"destination_country = "DE""#,
                r#"destination_country = "DEU""#,
            ),
            "bad_country",
        ),
        (
            with(
                "valid_from = 2026-01-01T00:00:00Z",
                r#"valid_from = "2026-02-30T00:00:00Z""#,
            ),
            "bad_timestamp",
        ),
        (
            with(
                "valid_until = 2028-01-01T00:00:00Z",
                "valid_until = 2026-01-01T00:00:00Z",
            ),
            "empty_validity",
        ),
        (
            with(
                r#"max_attestation_age = "24h""#,
                r#"max_attestation_age = "1y""#,
            ),
            "bad_duration",
        ),
        (
            with(
                r#"max_aggregate_tpp = "32500000""#,
                r#"max_aggregate_tpp = "-1""#,
            ),
            "bad_cap",
        ),
        (with("max_devices = 2048", "max_devices = 0"), "zero_cap"),
        (
            with(
                r#"max_aggregate_tpp = "32500000""#,
                r#"max_aggregate_tpp = "15831.1""#,
            ),
            "per_device_cap_above_aggregate",
        ),
        (
            EXAMPLE
                .split("# Where the devices")
                .next()
                .unwrap()
                .replace("[licensee]", "sites = []\n[licensee]"),
            "no_sites",
        ),
        (with(r#"id = "ber-1""#, r#"id = "fra-1""#), "duplicate_site"),
        (
            with(
                "name = \"Berlin data centre\"\ncountry = \"DE\"",
                "name = \"Paris\"\ncountry = \"FR\"",
            ),
            "site_outside_destination",
        ),
        (
            with(r#"eccns = ["3A090.a"]"#, "eccns = []").replace(
                r#"models = ["H100 SXM5 80GB", "H200 SXM 141GB"]"#,
                "models = []",
            ),
            "nothing_allowed",
        ),
        (
            with(r#"eccns = ["3A090.a"]"#, r#"eccns = ["3a090.a"]"#),
            "bad_eccn",
        ),
        (
            with(r#""H200 SXM 141GB""#, r#""H900 SXM 999GB""#),
            "unknown_model",
        ),
        (
            format!("{EXAMPLE}\n[measurement]\nbelow_spec_percent = 101\n"),
            "bad_tolerance",
        ),
        (format!("{EXAMPLE}\n[lease]\ngrace = \"30d\"\n"), "bad_term"),
    ];
    let mut seen = BTreeSet::new();
    for (text, code) in &cases {
        let e = Licence::from_toml_str(text).unwrap_err();
        assert_eq!(e.code(), *code, "{e}");
        assert!(!e.to_string().is_empty());
        seen.insert(e.code());
    }
    seen.insert(Licence::from_json(b"{").unwrap_err().code());
    let all: BTreeSet<&str> = LicenceError::CODES.into_iter().collect();
    assert_eq!(all.len(), LicenceError::CODES.len(), "codes repeat");
    assert_eq!(seen, all, "every code is reachable");
    for code in LicenceError::CODES {
        assert!(
            !code.is_empty()
                && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && !code.starts_with('_')
                && !code.ends_with('_'),
            "{code}"
        );
    }
}

/// `examples/licence.toml` with a `[measurement]` table holding `body`.
fn with_measurement(body: &str) -> String {
    format!("{EXAMPLE}\n[measurement]\n{body}\n")
}

#[test]
fn measurement_overrides_parse_and_default_to_none() {
    let plain = Licence::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(plain.measurement(), &MeasurementOverrides::default());
    assert!(plain.measurement().is_empty());
    let base = crate::ruleset::MeasurementTolerances::default();
    assert_eq!(plain.measurement().apply(base), base);

    let l = Licence::from_toml_str(&with_measurement("exceeds_spec_percent = 25")).unwrap();
    assert_eq!(
        l.measurement(),
        &MeasurementOverrides {
            exceeds_spec_percent: Some(25),
            below_spec_percent: None,
            max_age_days: None
        }
    );
    let applied = l.measurement().apply(base);
    assert_eq!(
        (applied.exceeds_spec_percent, applied.below_spec_percent),
        (25, 50)
    );
    let l = Licence::from_toml_str(&with_measurement(
        "exceeds_spec_percent = 0\nbelow_spec_percent = 100",
    ))
    .unwrap();
    let applied = l.measurement().apply(base);
    assert_eq!(
        (applied.exceeds_spec_percent, applied.below_spec_percent),
        (0, 100)
    );
    // An empty table overrides nothing: the same licence as without it.
    assert_eq!(
        Licence::from_toml_str(&with_measurement("")).unwrap(),
        plain
    );
}

#[test]
fn measurement_overrides_are_checked_like_the_rule_set_s() {
    let code = |body: &str| {
        Licence::from_toml_str(&with_measurement(body))
            .unwrap_err()
            .code()
    };
    let msg = |body: &str| {
        Licence::from_toml_str(&with_measurement(body))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(code("exceeds_spec_percent = 1001"), "bad_tolerance");
    assert_eq!(code("below_spec_percent = 101"), "bad_tolerance");
    let e = msg("exceeds_spec_percent = 1001");
    assert!(
        e.contains("`measurement.exceeds_spec_percent` is 1001")
            && e.contains("from 0 to 1000")
            && e.contains("rule set's"),
        "{e}"
    );
    for (body, needle) in [
        ("exceeds_spec_percent = 10.5", "not a whole number"),
        ("below_spec_percent = -1", "negative"),
        ("below_spec_percent = \"50\"", "bare integer"),
        (
            "exceed_spec_percent = 10",
            "unknown field `exceed_spec_percent`",
        ),
    ] {
        assert_eq!(code(body), "invalid_toml", "{body}");
        let e = msg(body);
        assert!(e.contains(needle), "{body}: {e}");
    }
}

#[test]
fn measurement_overrides_round_trip_through_json() {
    let plain = Licence::from_toml_str(EXAMPLE).unwrap();
    let plain_json: serde_json::Value = serde_json::from_slice(&plain.to_json().unwrap()).unwrap();
    assert!(
        plain_json.get("measurement").is_none(),
        "a licence without overrides has the JSON it had before they existed"
    );
    for body in [
        "exceeds_spec_percent = 25",
        "below_spec_percent = 80",
        "exceeds_spec_percent = 0\nbelow_spec_percent = 100",
    ] {
        let l = Licence::from_toml_str(&with_measurement(body)).unwrap();
        let json = l.to_json().unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        // The last key, with only the keys given.
        let tail = text.split(",\"measurement\":").nth(1).unwrap();
        assert!(tail.ends_with("}}"), "{text}");
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let m = value["measurement"].as_object().unwrap();
        assert_eq!(
            m.len(),
            usize::from(l.measurement().exceeds_spec_percent.is_some())
                + usize::from(l.measurement().below_spec_percent.is_some())
        );
        let back = Licence::from_json(&json).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.to_json().unwrap(), json);
    }
    // The signed form gets the same checks; `null` reads as absent.
    let mut j = plain_json.clone();
    j["measurement"] = serde_json::json!({"exceeds_spec_percent": 2000});
    let e = Licence::from_json(&serde_json::to_vec(&j).unwrap()).unwrap_err();
    assert_eq!(e.code(), "bad_tolerance");
    j["measurement"] = serde_json::json!({"exceeds_spec_percent": 12.5});
    let e = Licence::from_json(&serde_json::to_vec(&j).unwrap()).unwrap_err();
    assert_eq!(e.code(), "invalid_json");
    j["measurement"] = serde_json::json!({"below_spec_percent": 70, "exceeds_spec_percent": null});
    let l = Licence::from_json(&serde_json::to_vec(&j).unwrap()).unwrap();
    assert_eq!(
        l.measurement(),
        &MeasurementOverrides {
            exceeds_spec_percent: None,
            below_spec_percent: Some(70),
            max_age_days: None
        }
    );
    j["measurement"] = serde_json::Value::Null;
    let l = Licence::from_json(&serde_json::to_vec(&j).unwrap()).unwrap();
    assert_eq!(l, plain);
}

#[test]
fn measured_example_differs_only_in_tier_and_tolerances() {
    let measured =
        Licence::from_toml_str(include_str!("../../../examples/licence-measured.toml")).unwrap();
    let full = Licence::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(measured.min_evidence_tier(), EvidenceTier::Measured);
    assert_eq!(
        measured.measurement(),
        &MeasurementOverrides {
            exceeds_spec_percent: Some(5),
            below_spec_percent: None,
            max_age_days: None
        }
    );
    let mut a = serde_json::to_value(&measured).unwrap();
    let mut b = serde_json::to_value(&full).unwrap();
    for v in [&mut a, &mut b] {
        let o = v.as_object_mut().unwrap();
        for key in ["id", "min_evidence_tier", "measurement"] {
            o.remove(key);
        }
    }
    assert_eq!(a, b);
}

#[test]
fn a_licence_may_override_the_measurement_age() {
    let l = Licence::from_toml_str(&with_measurement("max_age_days = 7")).unwrap();
    assert_eq!(l.measurement().max_age_days, Some(7));
    assert_eq!(
        l.measurement()
            .apply(crate::ruleset::MeasurementTolerances::default())
            .max_age_days,
        7
    );
    let json = l.to_json().unwrap();
    assert_eq!(Licence::from_json(&json).unwrap(), l);
    let e = Licence::from_toml_str(&with_measurement("max_age_days = 0")).unwrap_err();
    assert_eq!(e.code(), "bad_tolerance");
    assert!(e.to_string().contains("1 to 3650"), "{e}");
}

#[test]
fn shipment_and_lease_terms_default_and_round_trip() {
    let plain = Licence::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(plain.shipment_terms(), ShipmentTerms::default());
    assert_eq!(plain.lease_terms(), LeaseTerms::default());
    let json = String::from_utf8(plain.to_json().unwrap()).unwrap();
    assert!(
        !json.contains("\"lease\"") && !json.contains("\"shipments\""),
        "defaults leave the signed JSON as it was: {json}"
    );

    let text = format!(
        "{EXAMPLE}\n[shipments]\nrequired = true\nunaccounted_after = \"7d\"\n\n[lease]\n\
         lifetime = \"30m\"\nrenew_before = \"10m\"\ngrace = 600\non_expiry = \"fail_closed\"\n"
    );
    let l = Licence::from_toml_str(&text).unwrap();
    assert_eq!(
        l.shipment_terms(),
        ShipmentTerms {
            required: true,
            unaccounted_after_s: 7 * 86_400
        }
    );
    assert_eq!(
        l.lease_terms(),
        LeaseTerms {
            lifetime_s: 1800,
            renew_before_s: 600,
            grace_s: 600,
            on_expiry: OnExpiry::FailClosed,
        }
    );
    let back = Licence::from_json(&l.to_json().unwrap()).unwrap();
    assert_eq!(back, l);
}

#[test]
fn lease_terms_out_of_range_are_refused_by_key() {
    let refuse = |table: &str| {
        let e = Licence::from_toml_str(&format!("{EXAMPLE}\n{table}\n")).unwrap_err();
        (e.code(), e.to_string())
    };
    let (code, msg) = refuse("[lease]\nlifetime = \"8d\"");
    assert_eq!(code, "bad_term");
    assert!(
        msg.contains("lease.lifetime") && msg.contains("7d"),
        "{msg}"
    );
    let (code, msg) = refuse("[lease]\nlifetime = \"10m\"\nrenew_before = \"10m\"");
    assert_eq!(code, "bad_term");
    assert!(msg.contains("lease.renew_before"), "{msg}");
    assert_eq!(refuse("[lease]\ngrace = -1").0, "bad_term");
    assert_eq!(
        refuse("[lease]\non_expiry = \"fail_sideways\"").0,
        "invalid_toml"
    );
    assert_eq!(
        refuse("[shipments]\nunaccounted_after = \"0s\"").0,
        "bad_term"
    );
    assert_eq!(refuse("[shipments]\nrequire = true").0, "invalid_toml");
}
