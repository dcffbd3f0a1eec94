//! A shipment record on arbitrary input: the text as its TOML (`Shipment::from_toml_str`)
//! and the bytes as its signed JSON payload (`Shipment::from_json`); an accepted one
//! round-trips through its JSON unchanged (`src/shipment_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/shipment_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        checks::check_shipment_toml(text);
    }
});
