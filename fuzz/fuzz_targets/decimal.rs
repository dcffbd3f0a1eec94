//! `FromStr` for `Tops`, `Tpp`, `DieArea` and `Bandwidth` on arbitrary text, against an
//! independent reading of the grammar (`tppguard_proto_fuzz::check_decimal`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tppguard_proto_fuzz::check_decimal(text);
    }
});
