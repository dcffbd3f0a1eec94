//! What-if scenario changes on arbitrary text, one per line (`Scenario::parse` and
//! `Change::from_str`, their one parser); an accepted change reads back equal from its
//! canonical text (`src/scenario_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/scenario_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        checks::check_scenario_change(text);
    }
});
