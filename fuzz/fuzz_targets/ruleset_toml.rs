//! `RuleSet::from_toml_str` on arbitrary text; a parsed rule set must classify devices and
//! nodes to its own outcomes (`tppguard_proto_fuzz::check_ruleset_toml`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tppguard_proto_fuzz::check_ruleset_toml(text);
    }
});
