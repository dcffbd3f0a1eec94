//! The payload of a signed licence revocation on arbitrary bytes
//! (`LicenceRevocation::from_json`, its one parser); an accepted one reads back equal once
//! written back (`src/revocation_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/revocation_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_licence_revocation(data);
});
