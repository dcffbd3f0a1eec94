//! The invariants of the `leaf_facts` fuzz target: any bytes as a stored leaf certificate
//! whose node id and certified site the verifier reads back
//! (`tppguard_verifier::chain::stored_leaf_facts`: X.509 DER, and the site SAN URI in it).
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/leaf_facts/` on stable. Each function panics when an invariant is broken.

use std::borrow::Cow;

use tppguard_proto::identity::NodeId;
use tppguard_proto::site::SiteId;
use tppguard_proto::text::escape;
use tppguard_verifier::chain::{ChainError, stored_leaf_facts};

/// Reads `der` as a leaf certificate: rejected as malformed or for its certified site, with a
/// listed code and a sentence that is safe on a terminal; or accepted, the same way again,
/// with a site (if any) in the alphabet whose URI reads back to it. Gives what was accepted.
pub fn check_leaf_facts(der: &[u8]) -> Option<(NodeId, Option<SiteId>)> {
    match stored_leaf_facts(der) {
        Err(e) => {
            assert!(ChainError::CODES.contains(&e.code()), "{}", e.code());
            assert!(
                matches!(
                    e,
                    ChainError::Malformed { .. } | ChainError::BadCertifiedSite { .. }
                ),
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
        Ok((node_id, site)) => {
            if let Some(site) = &site {
                assert_eq!(SiteId::parse(site.as_str()).as_ref(), Ok(site));
                assert_eq!(SiteId::from_uri(&site.to_uri()), Some(Ok(site.clone())));
            }
            assert_eq!(
                stored_leaf_facts(der),
                Ok((node_id, site.clone())),
                "read twice, read differently"
            );
            Some((node_id, site))
        }
    }
}
