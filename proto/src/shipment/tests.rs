use super::*;

const EXAMPLE: &str = include_str!("../../../examples/shipment.toml");
const DGX_H100_FIXTURE: &str = include_str!("../../../tests/fixtures/nvml/dgx-h100.json");

/// A minimal valid shipment with `devices` as the device tables.
fn with_devices(devices: &str) -> String {
    format!(
        "id = \"S-1\"\nvendor = \"V\"\nlicence = \"L-1\"\ndelivered_at = \
         2026-03-02T09:00:00Z\n[delivery]\nsite = \"fra-1\"\ncountry = \"DE\"\n{devices}"
    )
}

/// A minimal valid shipment with one top-level line replaced.
fn with_line(key: &str, line: &str) -> String {
    with_devices("[[devices]]\nserial = \"A\"\n")
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn code(text: &str) -> &'static str {
    Shipment::from_toml_str(text).unwrap_err().code()
}

#[test]
fn the_example_ships_the_simulated_dgx_h100_nodes_gpus_to_fra_1() {
    let s = Shipment::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(s.licence(), "EXAMPLE-DE-2026-0142");
    assert_eq!(s.delivery().site, "fra-1");
    assert_eq!(s.delivery().country.as_str(), "DE");
    assert_eq!(s.delivered_at(), 1_772_442_000);
    // The identities are the fixture's, in order, so the example cannot drift from what the
    // simulated agent reports.
    let fixture: serde_json::Value = serde_json::from_str(DGX_H100_FIXTURE).unwrap();
    let gpus = fixture["devices"].as_array().unwrap();
    assert_eq!(gpus.len(), 8);
    assert_eq!(s.devices().len(), gpus.len());
    for (device, gpu) in s.devices().iter().zip(gpus) {
        assert_eq!(device.uuid.as_deref(), gpu["uuid"].as_str());
        assert_eq!(device.serial.as_deref(), gpu["serial"].as_str());
        assert_eq!(device.model.as_deref(), Some("H100 SXM5 80GB"));
        let nvml_name = gpu["name"].as_str().unwrap();
        assert_eq!(
            spec::by_model(nvml_name).map(|r| r.model),
            Some("H100 SXM5 80GB")
        );
    }
    // The licence it names has the site, in the same country.
    let licence =
        crate::licence::Licence::from_toml_str(include_str!("../../../examples/licence.toml"))
            .unwrap();
    assert_eq!(licence.id(), s.licence());
    let site = licence.site(&s.delivery().site).unwrap();
    assert_eq!(site.country, s.delivery().country);
    assert!(licence.valid_from() <= s.delivered_at() && s.delivered_at() < licence.valid_until());
}

#[test]
fn json_round_trips_with_stable_keys() {
    let s = Shipment::from_toml_str(EXAMPLE).unwrap();
    let json = s.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    // Keys in file order (the signed bytes are stable).
    let text = String::from_utf8(json.clone()).unwrap();
    let at: Vec<usize> = [
        "id",
        "vendor",
        "licence",
        "delivered_at",
        "delivery",
        "devices",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\":")).unwrap())
    .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(value.as_object().unwrap().len(), 6);
    assert_eq!(value["delivered_at"], "2026-03-02T09:00:00Z");
    assert_eq!(value["delivery"]["country"], "DE");
    assert_eq!(
        value["devices"][0],
        serde_json::json!({
            "uuid": "GPU-2c12e0be-7e98-8b03-be1d-de49df724223",
            "serial": "SIM-H100-4209601",
            "model": "H100 SXM5 80GB"
        })
    );
    let back = Shipment::from_json(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.to_json().unwrap(), json);
}

#[test]
fn identities_are_trimmed_models_canonical_and_hardware_ids_lower_case() {
    let s = Shipment::from_toml_str(&with_devices(
        "[[devices]]\nuuid = \"  GPU-1 \"\nmodel = \"NVIDIA H100 80GB HBM3\"\n\
         [[devices]]\nhardware_id = \"ABCDEF0123456789\"\n",
    ))
    .unwrap();
    assert_eq!(s.devices()[0].uuid.as_deref(), Some("GPU-1"));
    assert_eq!(s.devices()[0].model.as_deref(), Some("H100 SXM5 80GB"));
    assert_eq!(
        s.devices()[1].hardware_id.as_deref(),
        Some("abcdef0123456789")
    );
    assert_eq!(s.devices()[1].uuid, None);
}

#[test]
fn every_code_is_listed_once() {
    let mut codes = ShipmentError::CODES.to_vec();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), ShipmentError::CODES.len());
}

#[test]
fn oversize_input_is_refused_before_parsing() {
    let huge = format!("{}#{}", with_devices(""), "x".repeat(MAX_SHIPMENT_BYTES));
    let e = Shipment::from_toml_str(&huge).unwrap_err();
    assert!(matches!(e, ShipmentError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("split the delivery"), "{e}");
    let e = Shipment::from_json(huge.as_bytes()).unwrap_err();
    assert_eq!(e.code(), "too_large");
}

#[test]
fn syntax_unknown_and_missing_keys_are_refused_naming_the_key() {
    assert_eq!(code("id = "), "invalid_toml");
    let e = Shipment::from_toml_str(&format!("{}\nextra = 1", with_devices(""))).unwrap_err();
    assert_eq!(e.code(), "invalid_toml");
    let unknown = Shipment::from_toml_str(&with_devices(
        "[[devices]]\nserial = \"A\"\ncolour = \"red\"\n",
    ))
    .unwrap_err();
    assert!(unknown.to_string().contains("colour"), "{unknown}");
    let missing = Shipment::from_toml_str(&with_line("licence", "")).unwrap_err();
    assert!(missing.to_string().contains("licence"), "{missing}");
    assert_eq!(
        Shipment::from_json(b"[]").unwrap_err().code(),
        "invalid_json"
    );
    assert_eq!(
        Shipment::from_json(br#"{"id":"S","id":"T"}"#)
            .unwrap_err()
            .code(),
        "invalid_json"
    );
    // A number where text belongs.
    assert_eq!(code(&with_line("vendor", "vendor = 7")), "invalid_toml");
}

#[test]
fn ids_must_be_in_the_licence_id_alphabet() {
    for (key, bad) in [
        ("id", "id = \"a b\""),
        ("id", "id = \"S\\u001b[2J\""),
        ("licence", "licence = \"L\\u202e1\""),
        ("licence", &format!("licence = \"{}\"", "L".repeat(65))),
    ] {
        let e = Shipment::from_toml_str(&with_line(key, bad)).unwrap_err();
        assert_eq!(e.code(), "bad_id", "{bad}");
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
        assert!(e.to_string().contains("ASCII letters"), "{e}");
    }
    assert_eq!(code(&with_line("id", "id = \"  \"")), "empty_field");
    let site = with_devices("[[devices]]\nserial = \"A\"\n").replace("fra-1", "fra 1");
    let e = Shipment::from_toml_str(&site).unwrap_err();
    assert_eq!(e.code(), "bad_id");
    assert!(e.to_string().contains("`delivery.site`"), "{e}");
}

#[test]
fn the_vendor_name_is_one_printable_line_of_bounded_length() {
    assert_eq!(code(&with_line("vendor", "vendor = \" \"")), "empty_field");
    for bad in [
        "vendor = \"V\\nCOMPLIANT\"",
        "vendor = \"V\\u001b[2J\"",
        "vendor = \"V\\u009b31m\"",
    ] {
        let e = Shipment::from_toml_str(&with_line("vendor", bad)).unwrap_err();
        assert_eq!(e.code(), "bad_vendor", "{bad}");
        assert!(e.to_string().contains("one line"), "{e}");
    }
    let long = format!("vendor = \"{}\"", "é".repeat(MAX_VENDOR_CHARS + 1));
    assert_eq!(code(&with_line("vendor", &long)), "bad_vendor");
    let fits = format!("vendor = \"{}\"", "é".repeat(MAX_VENDOR_CHARS));
    Shipment::from_toml_str(&with_line("vendor", &fits)).unwrap();
}

#[test]
fn delivered_at_is_strict_rfc_3339() {
    for bad in [
        "delivered_at = 2026-03-02",
        "delivered_at = 2026-03-02T09:00:00",
        "delivered_at = \"yesterday\"",
        "delivered_at = \"2026-02-30T00:00:00Z\"",
        "delivered_at = \"1969-12-31T23:59:59Z\"",
    ] {
        let e = Shipment::from_toml_str(&with_line("delivered_at", bad)).unwrap_err();
        assert_eq!(e.code(), "bad_timestamp", "{bad}: {e}");
        assert!(e.to_string().starts_with("`delivered_at`"), "{e}");
    }
    let s = Shipment::from_toml_str(&with_line(
        "delivered_at",
        "delivered_at = \"2026-03-02T10:00:00+01:00\"",
    ))
    .unwrap();
    assert_eq!(s.delivered_at(), 1_772_442_000);
    assert_eq!(
        code(&with_line("delivered_at", "delivered_at = 5")),
        "invalid_toml"
    );
}

#[test]
fn the_country_is_an_assigned_iso_code() {
    for bad in ["de", "DEU", "UK", "EU", "", "D1"] {
        let text = with_devices("[[devices]]\nserial = \"A\"\n")
            .replace("country = \"DE\"", &format!("country = {bad:?}"));
        let e = Shipment::from_toml_str(&text).unwrap_err();
        assert_eq!(e.code(), "bad_country", "{bad:?}");
        assert!(e.to_string().contains("`delivery.country`"), "{e}");
    }
}

#[test]
fn devices_are_one_to_4096() {
    let e = Shipment::from_toml_str(&with_devices("")).unwrap_err();
    assert_eq!(e.code(), "no_devices");
    assert!(e.to_string().contains("[[devices]]"), "{e}");
    assert_eq!(code(&with_devices("devices = []")), "invalid_toml");
    let many: String = (0..=MAX_DEVICES)
        .map(|i| format!("[[devices]]\nserial = \"S{i}\"\n"))
        .collect();
    let e = Shipment::from_toml_str(&with_devices(&many)).unwrap_err();
    assert!(
        matches!(
            e,
            ShipmentError::TooManyDevices {
                count: 4097,
                max: 4096
            }
        ),
        "{e}"
    );
    let max: String = (0..MAX_DEVICES)
        .map(|i| format!("[[devices]]\nserial = \"S{i}\"\n"))
        .collect();
    assert_eq!(
        Shipment::from_toml_str(&with_devices(&max))
            .unwrap()
            .devices()
            .len(),
        MAX_DEVICES
    );
}

#[test]
fn a_device_names_an_identity() {
    let e = Shipment::from_toml_str(&with_devices(
        "[[devices]]\nserial = \"A\"\n[[devices]]\nmodel = \"H100 SXM5 80GB\"\n",
    ))
    .unwrap_err();
    assert!(matches!(e, ShipmentError::NoIdentity { index: 1 }), "{e}");
    assert!(e.to_string().contains("`devices[1]`"), "{e}");
    // An empty table is no identity either (JSON too).
    assert_eq!(code(&with_devices("[[devices]]\n")), "no_identity");
}

#[test]
fn identities_are_bounded_printable_ascii_and_hardware_ids_hex() {
    for (key, value) in [
        ("uuid", "\"\""),
        ("uuid", "\"   \""),
        ("uuid", "\"GPU-1\\u001b[2J\""),
        ("uuid", "\"GPU-\\u202e1\""),
        ("uuid", "\"GPÜ-1\""),
        ("serial", "\"A\\u0000B\""),
        ("serial", "\"A\\nB\""),
        (
            "serial",
            &format!("{:?}", "9".repeat(MAX_IDENTITY_CHARS + 1)),
        ),
        ("hardware_id", "\"xyz0123456789abcdef\""),
        ("hardware_id", "\"0123456789abcde\""),
        (
            "hardware_id",
            &format!("{:?}", "a".repeat(MAX_HARDWARE_ID_CHARS + 1)),
        ),
        ("hardware_id", "\"0123 4567 89ab cdef\""),
    ] {
        let text = with_devices(&format!("[[devices]]\n{key} = {value}\n"));
        let e = Shipment::from_toml_str(&text).unwrap_err();
        assert_eq!(e.code(), "bad_identity", "{key} = {value}: {e}");
        assert!(
            e.to_string().contains(&format!("`devices[0].{key}`")),
            "{e}"
        );
    }
    let fits = format!(
        "[[devices]]\nserial = {:?}\n",
        "9".repeat(MAX_IDENTITY_CHARS)
    );
    Shipment::from_toml_str(&with_devices(&fits)).unwrap();
    // A long refused value is quoted short.
    let long = format!("[[devices]]\nserial = {:?}\n", "9".repeat(10_000));
    let e = Shipment::from_toml_str(&with_devices(&long)).unwrap_err();
    assert!(e.to_string().len() < 300, "{e}");
}

#[test]
fn no_identity_is_listed_twice_ignoring_case_and_spaces() {
    for devices in [
        "[[devices]]\nuuid = \"GPU-ab\"\n[[devices]]\nuuid = \" gpu-AB \"\n",
        "[[devices]]\nserial = \"S1\"\n[[devices]]\nserial = \"s1\"\n",
        "[[devices]]\nhardware_id = \"00112233445566ff\"\n\
         [[devices]]\nhardware_id = \"00112233445566FF\"\n",
    ] {
        let e = Shipment::from_toml_str(&with_devices(devices)).unwrap_err();
        assert!(
            matches!(
                e,
                ShipmentError::DuplicateIdentity {
                    first: 0,
                    second: 1,
                    ..
                }
            ),
            "{devices}: {e}"
        );
        assert!(e.to_string().contains("listed once"), "{e}");
    }
    // The same text under two keys is two identities (a serial that looks like a UUID).
    Shipment::from_toml_str(&with_devices(
        "[[devices]]\nuuid = \"X1\"\n[[devices]]\nserial = \"X1\"\n",
    ))
    .unwrap();
}

#[test]
fn models_must_be_in_the_spec_table() {
    let e = Shipment::from_toml_str(&with_devices(
        "[[devices]]\nserial = \"A\"\nmodel = \"H100 SXM5 80GB\\u001b\"\n",
    ))
    .unwrap_err();
    assert_eq!(e.code(), "unknown_model");
    assert!(e.to_string().contains("`devices[0].model`"), "{e}");
    assert_eq!(
        code(&with_devices(
            "[[devices]]\nserial = \"A\"\nmodel = \"GeForce 9000\"\n"
        )),
        "unknown_model"
    );
}

#[test]
fn json_is_held_to_the_same_checks() {
    let good = Shipment::from_toml_str(EXAMPLE).unwrap().to_json().unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&good).unwrap();
    value["devices"][1]["uuid"] = value["devices"][0]["uuid"].clone();
    let e = Shipment::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert_eq!(e.code(), "duplicate_identity");
    value["devices"] = serde_json::json!([]);
    let e = Shipment::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert_eq!(e.code(), "no_devices");
    value["devices"] = serde_json::json!([{"serial": "A", "tampered": true}]);
    let e = Shipment::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert_eq!(e.code(), "invalid_json");
    value["devices"] = serde_json::json!([{"serial": "A"}]);
    value["delivered_at"] = serde_json::json!(1_772_442_000);
    let e = Shipment::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert_eq!(e.code(), "invalid_json");
}
