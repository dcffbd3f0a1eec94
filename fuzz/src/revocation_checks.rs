//! The invariants of the `licence_revocation` fuzz target: any bytes as the JSON payload of a
//! signed licence revocation (`tppguard_proto::licence::revocation::LicenceRevocation::from_json`,
//! the revocation's one parser).
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/licence_revocation/` on stable. Each function panics when an invariant is
//! broken.

use tppguard_proto::licence::revocation::{
    LicenceRevocation, MAX_REASON_CHARS, MAX_REVOCATION_BYTES, RevocationError,
};

/// Reads `bytes` as a revocation payload: rejected with a listed code and a message, or
/// accepted with a licence id, a one-line trimmed reason of at most [`MAX_REASON_CHARS`]
/// characters and an instant in 1970..=9999, which writes back to JSON that reads back equal.
/// Gives whether it was accepted.
pub fn check_licence_revocation(bytes: &[u8]) -> bool {
    match LicenceRevocation::from_json(bytes) {
        Err(e) => {
            assert!(RevocationError::CODES.contains(&e.code()), "{e:?}");
            assert!(!e.to_string().is_empty());
            if bytes.len() > MAX_REVOCATION_BYTES {
                assert!(matches!(e, RevocationError::TooLarge { .. }), "{e:?}");
            }
            false
        }
        Ok(r) => {
            assert!(bytes.len() <= MAX_REVOCATION_BYTES);
            let id = r.licence_id();
            assert!(!id.is_empty() && id.len() <= 64, "{id:?}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)),
                "{id:?}"
            );
            let reason = r.reason();
            assert!(!reason.is_empty() && reason.chars().count() <= MAX_REASON_CHARS);
            assert_eq!(reason, reason.trim());
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
            assert!((0..=253_402_300_799).contains(&r.revoked_at()));
            let json = r.to_json().expect("a revocation writes to JSON");
            let again = LicenceRevocation::from_json(&json).expect("its JSON reads back");
            assert_eq!(again, r);
            true
        }
    }
}
