//! A stored leaf certificate on arbitrary bytes: `chain::stored_leaf_facts` reads its node id
//! and its certified site (X.509 DER, SAN URIs) (`src/leaf_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/leaf_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_leaf_facts(data);
});
