//! `spec::lookup` and `spec::by_model` on arbitrary names and PCI ids; input is
//! `[hex PCI id "\n"] name` (`tppguard_proto_fuzz::check_spec_lookup`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tppguard_proto_fuzz::check_spec_lookup(text);
    }
});
