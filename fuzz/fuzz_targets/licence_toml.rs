//! `Licence::from_toml_str` on arbitrary text; a parsed licence must round-trip through its
//! JSON form unchanged (`tppguard_proto_fuzz::check_licence_toml`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tppguard_proto_fuzz::check_licence_toml(text);
    }
});
