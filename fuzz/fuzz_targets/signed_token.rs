//! The verifier's whole path for a signed token from outside: `verify_attestation` and
//! `verify_licence` against the fixed anchors in `fuzz/pki/` (`src/verifier_checks.rs`).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tppguard_verifier::chain::TrustAnchors;

#[path = "../src/verifier_checks.rs"]
mod checks;

fn trust() -> &'static TrustAnchors {
    static TRUST: OnceLock<TrustAnchors> = OnceLock::new();
    TRUST.get_or_init(|| {
        checks::load_trust(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pki"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        checks::check_signed_token(trust(), text);
    }
});
