//! The invariants of the `shipment_toml` fuzz target: any text as a shipment record's TOML
//! (`Shipment::from_toml_str`) and any bytes as its signed JSON payload
//! (`Shipment::from_json`), the shipment's two parsers.
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/shipment_toml/` on stable. Each function panics when an invariant is broken.

use std::collections::HashSet;

use tppguard_proto::shipment::{MAX_DEVICES, MAX_SHIPMENT_BYTES, Shipment, ShipmentError};

/// Reads `text` as a shipment's TOML, and its bytes as a shipment's JSON: each is rejected
/// with a listed code and a message (`too_large` above the limit), or accepted as a shipment
/// that holds its invariants and whose JSON reads back to an equal shipment, byte for byte.
/// Gives whether the TOML was accepted.
pub fn check_shipment_toml(text: &str) -> bool {
    check_parse(text.len(), Shipment::from_json(text.as_bytes()));
    check_parse(text.len(), Shipment::from_toml_str(text))
}

fn check_parse(len: usize, parsed: Result<Shipment, ShipmentError>) -> bool {
    match parsed {
        Err(e) => {
            assert!(ShipmentError::CODES.contains(&e.code()), "{e:?}");
            assert!(!e.to_string().is_empty());
            if len > MAX_SHIPMENT_BYTES {
                assert!(matches!(e, ShipmentError::TooLarge { .. }), "{e:?}");
            }
            false
        }
        Ok(shipment) => {
            assert!(len <= MAX_SHIPMENT_BYTES);
            check_shipment(&shipment);
            let json = shipment
                .to_json()
                .unwrap_or_else(|e| panic!("to_json failed: {e}"));
            let back = Shipment::from_json(&json).unwrap_or_else(|e| {
                panic!("from_json({}) failed: {e}", String::from_utf8_lossy(&json))
            });
            assert_eq!(back, shipment);
            assert_eq!(back.to_json().ok(), Some(json));
            true
        }
    }
}

/// What every accepted shipment holds.
fn check_shipment(s: &Shipment) {
    let id_ok = |id: &str| tppguard_proto::site::is_valid_id(id);
    assert!(id_ok(s.id()) && id_ok(s.licence()) && id_ok(&s.delivery().site));
    assert!(!s.vendor().trim().is_empty() && !s.vendor().chars().any(char::is_control));
    let devices = s.devices();
    assert!((1..=MAX_DEVICES).contains(&devices.len()));
    let mut seen = HashSet::new();
    for d in devices {
        assert!(d.uuid.is_some() || d.serial.is_some() || d.hardware_id.is_some());
        for (key, value) in [
            ("uuid", &d.uuid),
            ("serial", &d.serial),
            ("hardware_id", &d.hardware_id),
        ] {
            let Some(value) = value else { continue };
            assert!(!value.is_empty() && value.len() <= 128, "{value:?}");
            assert_eq!(value.trim(), value);
            assert!(value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
            assert!(
                seen.insert((key, value.to_ascii_lowercase())),
                "{value} twice"
            );
        }
        if let Some(model) = &d.model {
            let row = tppguard_proto::spec::by_model(model).expect("a spec-table model");
            assert_eq!(row.model, model);
        }
    }
}
