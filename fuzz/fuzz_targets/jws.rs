//! `jws::decode` on arbitrary text, then `verify` against a fixed Ed25519 key, and
//! `AttestationClaims::from_json` on the verified payload and on the input itself
//! (`tppguard_proto_fuzz::check_jws`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tppguard_proto_fuzz::check_jws(text);
    }
});
