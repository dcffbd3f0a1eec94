//! A GPU attestation report on arbitrary bytes: `gpu_evidence::spdm::Report::parse` (NVIDIA's
//! SPDM GET_MEASUREMENTS request || MEASUREMENTS response) and every opaque-data accessor; an
//! accepted report writes back to its signed bytes (`src/spdm_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/spdm_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_spdm_report(data);
});
