//! The invariants of the `issued_record` fuzz target: any bytes as the issuance record
//! `issued.jsonl` that `pki issue-node` reads before it issues
//! (`tppguard_verifier::pki::fuzz_issuance_record`, the record's one parser).
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/issued_record/` on stable. Each function panics when an invariant is broken.

use std::borrow::Cow;

use tppguard_proto::text::escape;
use tppguard_verifier::error::Error;
use tppguard_verifier::pki::{PkiError, fuzz_issuance_record};

/// Reads `bytes` as an issuance record: rejected as `bad_issuance_record` with a sentence
/// that is safe on a terminal, or accepted with one entry per non-blank line, and the entries
/// written back (one JSON line each, as `issue-node` appends them) read back to the same
/// entries. Gives the number of entries accepted.
pub fn check_issued_record(bytes: &[u8]) -> Option<usize> {
    match fuzz_issuance_record(bytes) {
        Err(e) => {
            assert!(
                matches!(e, Error::Pki(PkiError::BadRecord { .. })),
                "rejected with {e:?}"
            );
            let shown = e.to_string();
            assert!(!shown.is_empty());
            // Outside text in it is escaped: past its backslashes, nothing is left to escape.
            assert!(
                matches!(escape(&shown.replace('\\', "")), Cow::Borrowed(_)),
                "{shown:?} is not escaped"
            );
            None
        }
        Ok(entries) => {
            let text = std::str::from_utf8(bytes)
                .unwrap_or_else(|e| panic!("a record that is not UTF-8 was accepted: {e}"));
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(entries.len(), lines, "one entry per non-blank line");
            let mut written = String::new();
            for (_, line) in &entries {
                assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
                written.push_str(line);
                written.push('\n');
            }
            let again = fuzz_issuance_record(written.as_bytes())
                .unwrap_or_else(|e| panic!("the record written back is rejected: {e}"));
            assert_eq!(again, entries, "the record written back reads differently");
            Some(entries.len())
        }
    }
}
