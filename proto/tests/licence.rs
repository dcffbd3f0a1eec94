#![cfg(test)]
//! Hostile input to `Licence::from_toml_str` and `Licence::from_json`: every rejection has a
//! stable code and a message naming the key; nothing panics.

use tppguard_proto::licence::{Licence, LicenceError, MAX_LICENCE_BYTES};

const EXAMPLE: &str = include_str!("../../examples/licence.toml");

/// The example with `old` (which must occur) replaced by `new`.
fn with(old: &str, new: &str) -> String {
    assert!(EXAMPLE.contains(old), "{old:?} not in the example");
    EXAMPLE.replace(old, new)
}

/// The error for `text`, whose code must be `code` and whose message must contain `needle`.
fn rejects(text: &str, code: &str, needle: &str) -> LicenceError {
    let e = Licence::from_toml_str(text).unwrap_err();
    let message = e.to_string();
    assert_eq!(e.code(), code, "{message}");
    assert!(message.contains(needle), "{needle:?} not in: {message}");
    e
}

#[test]
fn example_parses() {
    Licence::from_toml_str(EXAMPLE).unwrap();
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let mut big = EXAMPLE.to_owned();
    big.push_str(&format!("# {}\n", "x".repeat(MAX_LICENCE_BYTES)));
    let e = rejects(&big, "too_large", "limit");
    assert!(matches!(e, LicenceError::TooLarge { max, .. } if max == MAX_LICENCE_BYTES));
    assert_eq!(
        Licence::from_json(big.as_bytes()).unwrap_err().code(),
        "too_large"
    );
}

#[test]
fn truncated_prefixes_never_panic() {
    let json = Licence::from_toml_str(EXAMPLE).unwrap().to_json().unwrap();
    for end in 0..EXAMPLE.len() {
        if let Some(prefix) = EXAMPLE.get(..end)
            && let Err(e) = Licence::from_toml_str(prefix)
        {
            assert!(!e.to_string().is_empty());
        }
    }
    for end in 0..json.len() {
        let e = Licence::from_json(&json[..end]).unwrap_err();
        assert_eq!(e.code(), "invalid_json");
    }
}

#[test]
fn unknown_keys_are_errors() {
    rejects(
        &with("max_devices = 2048", "max_device = 2048"),
        "invalid_toml",
        "max_device",
    );
    rejects(
        &with(
            "headquarters_country = \"DE\"",
            "headquarters_country = \"DE\"\nheadquarter = \"DE\"",
        ),
        "invalid_toml",
        "headquarter",
    );
    rejects(
        &with("id = \"ber-1\"", "id = \"ber-1\"\ncity = \"Berlin\""),
        "invalid_toml",
        "city",
    );
    rejects(
        &format!("{EXAMPLE}\n[extra]\na = 1\n"),
        "invalid_toml",
        "extra",
    );
}

#[test]
fn missing_keys_are_errors() {
    rejects(
        &with("rule_set = \"us-eccn-3a090\"", ""),
        "invalid_toml",
        "rule_set",
    );
    rejects(
        &with("max_devices = 2048", ""),
        "invalid_toml",
        "max_devices",
    );
}

#[test]
fn bad_country_codes() {
    for bad in ["de", "DEU", "D1", "", "UK", "EU", "XK", "ZZ", "D"] {
        for key in [
            "destination_country",
            "headquarters_country",
            "ultimate_parent_country",
        ] {
            let text = with(&format!("{key} = \"DE\""), &format!("{key} = \"{bad}\""));
            rejects(&text, "bad_country", key);
        }
        let site = with(
            "name = \"Berlin data centre\"\ncountry = \"DE\"",
            &format!("name = \"Berlin data centre\"\ncountry = \"{bad}\""),
        );
        rejects(&site, "bad_country", "sites.country");
    }
    rejects(
        &with("destination_country = \"DE\"", "destination_country = 49"),
        "invalid_toml",
        "destination_country",
    );
}

#[test]
fn control_abroad_is_kept_and_site_must_be_in_destination() {
    let l = Licence::from_toml_str(&with(
        "ultimate_parent_country = \"DE\"",
        "ultimate_parent_country = \"US\"",
    ))
    .unwrap();
    assert_eq!(l.licensee().ultimate_parent_country.as_str(), "US");
    assert_eq!(l.licensee().headquarters_country.as_str(), "DE");
    rejects(
        &with(
            "name = \"Berlin data centre\"\ncountry = \"DE\"",
            "name = \"Paris\"\ncountry = \"FR\"",
        ),
        "site_outside_destination",
        "FR",
    );
}

#[test]
fn validity_window() {
    rejects(
        &with(
            "valid_until = 2028-01-01T00:00:00Z",
            "valid_until = 2025-12-31T23:59:59Z",
        ),
        "empty_validity",
        "valid_until",
    );
    rejects(
        &with(
            "valid_until = 2028-01-01T00:00:00Z",
            "valid_until = 2026-01-01T01:00:00+01:00",
        ),
        "empty_validity",
        "not after",
    );
    rejects(
        &with(
            "valid_from = 2026-01-01T00:00:00Z",
            "valid_from = 2026-01-01T00:00:00",
        ),
        "bad_timestamp",
        "valid_from",
    );
    rejects(
        &with(
            "valid_until = 2028-01-01T00:00:00Z",
            "valid_until = \"2028-01-01T00:00:00\"",
        ),
        "bad_timestamp",
        "add `Z`",
    );
    rejects(
        &with(
            "valid_from = 2026-01-01T00:00:00Z",
            "valid_from = 1969-12-31T23:59:59Z",
        ),
        "bad_timestamp",
        "1970",
    );
}

#[test]
fn float_caps_are_refused() {
    for (old, new) in [
        (
            "max_aggregate_tpp = \"32500000\"",
            "max_aggregate_tpp = 32500000.0",
        ),
        (
            "max_tpp_per_device = \"15831.2\"",
            "max_tpp_per_device = 15831.2",
        ),
        (
            "max_tpp_per_device = \"15831.2\"",
            "max_tpp_per_device = 1.58312e4",
        ),
        ("max_devices = 2048", "max_devices = 2048.0"),
    ] {
        let e = Licence::from_toml_str(&with(old, new)).unwrap_err();
        assert_eq!(e.code(), "invalid_toml", "{e}");
    }
    rejects(
        &with(
            "max_tpp_per_device = \"15831.2\"",
            "max_tpp_per_device = 15831.2",
        ),
        "invalid_toml",
        "not exact",
    );
}

#[test]
fn negative_and_malformed_caps() {
    rejects(
        &with("max_aggregate_tpp = \"32500000\"", "max_aggregate_tpp = -5"),
        "bad_cap",
        "negative",
    );
    rejects(
        &with(
            "max_aggregate_tpp = \"32500000\"",
            "max_aggregate_tpp = \"-5\"",
        ),
        "bad_cap",
        "max_aggregate_tpp",
    );
    for bad in [
        "\"1e6\"",
        "\"1,000\"",
        "\" 100\"",
        "\"\"",
        "\"0x10\"",
        "\"12.34567\"",
    ] {
        rejects(
            &with(
                "max_aggregate_tpp = \"32500000\"",
                &format!("max_aggregate_tpp = {bad}"),
            ),
            "bad_cap",
            "max_aggregate_tpp",
        );
    }
    rejects(
        &with("max_devices = 2048", "max_devices = -1"),
        "invalid_toml",
        "max_devices",
    );
    rejects(
        &with("max_devices = 2048", "max_devices = 4294967296"),
        "invalid_toml",
        "max_devices",
    );
    rejects(
        &with("max_devices = 2048", "max_devices = \"2048\""),
        "invalid_toml",
        "max_devices",
    );
}

#[test]
fn zero_caps_are_refused_with_the_reason() {
    rejects(
        &with("max_devices = 2048", "max_devices = 0"),
        "zero_cap",
        "nothing would be allowed",
    );
    rejects(
        &with("max_aggregate_tpp = \"32500000\"", "max_aggregate_tpp = 0"),
        "zero_cap",
        "max_aggregate_tpp",
    );
}

#[test]
fn unknown_model_and_nothing_allowed() {
    rejects(
        &with("\"H200 SXM 141GB\"", "\"H100 SXM5 800GB\""),
        "unknown_model",
        "H100 SXM5 800GB",
    );
    rejects(
        &with("\"H200 SXM 141GB\"", "\"\""),
        "unknown_model",
        "models",
    );
    let neither = with("eccns = [\"3A090.a\"]\n", "")
        .replace("models = [\"H100 SXM5 80GB\", \"H200 SXM 141GB\"]\n", "");
    rejects(&neither, "nothing_allowed", "eccns");
    rejects(
        &with("eccns = [\"3A090.a\"]", "eccns = [\"3A090.a\", \"EAR99\"]"),
        "bad_eccn",
        "EAR99",
    );
}

#[test]
fn duration_garbage() {
    for (bad, needle) in [
        ("\"24\"", "no unit"),
        ("\"1y\"", "unknown unit"),
        ("\"-1h\"", "not a duration"),
        ("\"99999999999d\"", "366-day"),
        ("\"999999999999999999999999h\"", "366-day"),
        ("\"0m\"", "zero"),
        ("\"1h30m\"", "unknown unit"),
        ("\"\"", "not a duration"),
        ("-60", "negative"),
        ("0", "zero"),
        ("31622401", "366-day"),
    ] {
        rejects(
            &with(
                "max_attestation_age = \"24h\"",
                &format!("max_attestation_age = {bad}"),
            ),
            "bad_duration",
            needle,
        );
    }
    rejects(
        &with("max_attestation_age = \"24h\"", "max_attestation_age = 1.5"),
        "invalid_toml",
        "max_attestation_age",
    );
}

#[test]
fn duplicate_site_ids() {
    rejects(
        &with("id = \"ber-1\"", "id = \"fra-1\""),
        "duplicate_site",
        "fra-1",
    );
    rejects(
        &with("id = \"ber-1\"", "id = \"\""),
        "empty_field",
        "sites.id",
    );
    rejects(
        &with("id = \"ber-1\"", "id = \"ber 1\""),
        "bad_id",
        "sites.id",
    );
}

#[test]
fn ids_and_texts() {
    rejects(
        &with("id = \"EXAMPLE-DE-2026-0142\"", "id = \"\""),
        "empty_field",
        "`id`",
    );
    rejects(
        &with(
            "id = \"EXAMPLE-DE-2026-0142\"",
            &format!("id = \"{}\"", "A".repeat(65)),
        ),
        "bad_id",
        "64",
    );
    rejects(
        &with("rule_set = \"us-eccn-3a090\"", "rule_set = \"US ECCN\""),
        "bad_id",
        "rule_set",
    );
    rejects(
        &with("rule_set = \"us-eccn-3a090\"", "rule_set = \"\""),
        "empty_field",
        "rule_set",
    );
    rejects(
        &with(
            "end_use = \"Training",
            "end_use = \"\"\nold_end_use = \"Training",
        ),
        "invalid_toml",
        "old_end_use",
    );
}

#[test]
fn json_rejects_what_toml_rejects() {
    let good: serde_json::Value =
        serde_json::from_slice(&Licence::from_toml_str(EXAMPLE).unwrap().to_json().unwrap())
            .unwrap();
    for (key, value, code) in [
        ("max_devices", serde_json::json!(0), "zero_cap"),
        (
            "max_aggregate_tpp",
            serde_json::json!(32500000.5),
            "invalid_json",
        ),
        ("sites", serde_json::json!([]), "no_sites"),
        ("models", serde_json::json!(["nope"]), "unknown_model"),
        ("valid_from", serde_json::json!(0), "invalid_json"),
        (
            "max_attestation_age",
            serde_json::json!("1y"),
            "bad_duration",
        ),
        (
            "destination_country",
            serde_json::json!("D1"),
            "bad_country",
        ),
    ] {
        let mut j = good.clone();
        j[key] = value;
        let e = Licence::from_json(&serde_json::to_vec(&j).unwrap()).unwrap_err();
        assert_eq!(e.code(), code, "{key}: {e}");
    }
    for junk in [
        &b""[..],
        b"null",
        b"[]",
        b"\"licence\"",
        b"{\"id\":1}",
        b"\xff\xfe",
    ] {
        assert_eq!(Licence::from_json(junk).unwrap_err().code(), "invalid_json");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        Licence::from_json(deep.as_bytes()).unwrap_err().code(),
        "invalid_json"
    );
}

#[test]
fn deep_and_odd_toml_does_not_panic() {
    let deep = format!("a = {}1{}", "[".repeat(5_000), "]".repeat(5_000));
    assert!(Licence::from_toml_str(&deep).is_err());
    let inline = format!("a = {}1{}", "{b = ".repeat(5_000), "}".repeat(5_000));
    assert!(Licence::from_toml_str(&inline).is_err());
    for text in [
        "",
        "\0",
        "=",
        "[[sites]]",
        "id = \"\u{202e}\"",
        "\u{feff}id = 1",
    ] {
        assert!(Licence::from_toml_str(text).is_err(), "{text:?}");
    }
}
