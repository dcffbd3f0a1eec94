//! The issuance record `issued.jsonl` on arbitrary bytes (`pki::fuzz_issuance_record`, the
//! record's one parser); an accepted record reads back equal once written back
//! (`src/issued_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/issued_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_issued_record(data);
});
