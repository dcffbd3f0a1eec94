//! A lease's payload and a gating report on arbitrary bytes (`src/lease_checks.rs`): the
//! agent parses leases from a verifier's answer, the verifier from a node's report.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/lease_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_lease_json(data);
});
