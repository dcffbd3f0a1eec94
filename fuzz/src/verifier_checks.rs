//! The invariants of the `signed_token` fuzz target: any text, read by the verifier as an
//! attestation and as a licence, against the fixed trust anchors in `fuzz/pki/` at
//! [`FUZZ_AT`]. Unlike the `jws` target, tokens here reach the whole verifier path: the `x5c`
//! chain (webpki, x509-parser, the leaf checks), the key's algorithm against the header's,
//! the signature, the claim set or licence, and the remembered-chain cache.
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/signed_token/` on stable. Each function panics when an invariant is broken.

use tppguard_proto::claims::{AttestationClaims, ClaimsError};
use tppguard_proto::jws::JwsError;
use tppguard_proto::licence::{Licence, LicenceError};
use tppguard_verifier::attestation::{AttestationError, verify_attestation};
use tppguard_verifier::chain::{ChainError, TrustAnchors};
use tppguard_verifier::licence::{LicenceVerifyError, verify_licence};

/// 2026-11-25T00:00:00Z: inside the validity of the fixed PKI and of the seed tokens' chains.
pub const FUZZ_AT: i64 = 1_795_564_800;
/// 2100-01-01: after every certificate of the fixed PKI has expired.
const LATE: i64 = 4_102_444_800;

/// The fixed anchors, from `trust.toml` in the folder `pki_dir`.
pub fn load_trust(pki_dir: &std::path::Path) -> TrustAnchors {
    TrustAnchors::from_trust_toml(&pki_dir.join("trust.toml"))
        .unwrap_or_else(|e| panic!("the fuzz trust anchors do not load: {e}"))
}

fn known(code: &str, lists: &[&[&str]]) -> bool {
    lists.iter().any(|list| list.contains(&code))
}

/// Reads `text` as an attestation and as a licence. Either may be rejected, each with a listed
/// code and a sentence; an accepted one verifies again (remembered chain) to the same result
/// and is rejected once its certificates have expired; no text is both.
pub fn check_signed_token(trust: &TrustAnchors, text: &str) -> (bool, bool) {
    let attestation = match verify_attestation(text, trust, FUZZ_AT, None) {
        Err(e) => {
            assert!(
                known(
                    e.code(),
                    &[
                        &AttestationError::CODES,
                        &JwsError::CODES,
                        ChainError::CODES,
                        &ClaimsError::CODES,
                    ]
                ),
                "unlisted code {}",
                e.code()
            );
            assert!(!e.sentence().is_empty());
            false
        }
        Ok(v) => {
            let json = v
                .claims()
                .to_json()
                .unwrap_or_else(|e| panic!("accepted claims do not serialize: {e}"));
            let back = AttestationClaims::from_json(&json)
                .unwrap_or_else(|e| panic!("accepted claims do not read back: {e}"));
            assert_eq!(&back, v.claims());
            let again = verify_attestation(text, trust, FUZZ_AT, None)
                .unwrap_or_else(|e| panic!("accepted once, rejected when remembered: {e}"));
            assert_eq!(again.claims(), v.claims());
            assert_eq!(again.token_sha256(), v.token_sha256());
            assert_eq!(again.node_subject(), v.node_subject());
            let late = verify_attestation(text, trust, LATE, None).err();
            assert_eq!(
                late.as_ref().map(AttestationError::code),
                Some("cert_expired")
            );
            true
        }
    };
    let licence = match verify_licence(text, trust, FUZZ_AT) {
        Err(e) => {
            assert!(
                known(
                    e.code(),
                    &[
                        &LicenceVerifyError::CODES,
                        &JwsError::CODES,
                        ChainError::CODES,
                        &LicenceError::CODES,
                    ]
                ),
                "unlisted code {}",
                e.code()
            );
            assert!(!e.sentence().is_empty());
            false
        }
        Ok(v) => {
            let json = v
                .licence()
                .to_json()
                .unwrap_or_else(|e| panic!("an accepted licence does not serialize: {e}"));
            let back = Licence::from_json(&json)
                .unwrap_or_else(|e| panic!("an accepted licence does not read back: {e}"));
            assert_eq!(&back, v.licence());
            let again = verify_licence(text, trust, FUZZ_AT)
                .unwrap_or_else(|e| panic!("accepted once, rejected when remembered: {e}"));
            assert_eq!(again.licence(), v.licence());
            let late = verify_licence(text, trust, LATE).err();
            assert_eq!(
                late.as_ref().map(LicenceVerifyError::code),
                Some("cert_expired")
            );
            true
        }
    };
    assert!(
        !(attestation && licence),
        "one token verified as both kinds"
    );
    (attestation, licence)
}
