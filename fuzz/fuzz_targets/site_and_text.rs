//! `SiteId::parse`, `SiteId::from_uri` and `text::escape` on arbitrary text, against an
//! independent reading of the site alphabet and of the characters that steer a terminal
//! (`src/site_checks.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/site_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        checks::check_site_and_text(text);
    }
});
