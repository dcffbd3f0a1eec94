//! The invariants of the `lease_json` fuzz target: any bytes as a lease's payload
//! (`LeaseClaims::from_json`, what the agent reads from a verifier's answer and the verifier
//! from a node's gating report) and as a gating report (`tppguard.gating`).
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/lease_json/` on stable. Each function panics when an invariant is broken.

use tppguard_proto::lease::{
    GatingReport, LeaseClaims, LeaseError, MAX_LEASE_BYTES, MAX_LEASE_GPUS, MAX_REASONS,
};

/// Reads `bytes` as a lease payload and as a gating report: a lease is refused with a listed
/// code (`lease_too_large` above the limit) or accepted holding its invariants, and its JSON
/// reads back to an equal lease; an accepted report's JSON reads back to an equal report.
/// Gives whether the lease was accepted.
pub fn check_lease_json(bytes: &[u8]) -> bool {
    if let Ok(report) = serde_json::from_slice::<GatingReport>(bytes) {
        let json = serde_json::to_vec(&report).unwrap_or_else(|e| panic!("report json: {e}"));
        let back: GatingReport =
            serde_json::from_slice(&json).unwrap_or_else(|e| panic!("report back: {e}"));
        assert_eq!(back, report);
    }
    match LeaseClaims::from_json(bytes) {
        Err(e) => {
            assert!(LeaseError::CODES.contains(&e.code()), "{e:?}");
            assert!(!e.to_string().is_empty());
            if bytes.len() > MAX_LEASE_BYTES {
                assert!(matches!(e, LeaseError::TooLarge { .. }), "{e:?}");
            }
            false
        }
        Ok(lease) => {
            assert!(bytes.len() <= MAX_LEASE_BYTES);
            assert!(lease.nbf <= lease.renew_at && lease.renew_at <= lease.exp);
            assert!(lease.gpus.len() + lease.excluded.len() <= MAX_LEASE_GPUS);
            for e in &lease.excluded {
                assert!(!e.reasons.is_empty() && e.reasons.len() <= MAX_REASONS);
                assert!(!lease.allows(&e.gpu), "an excluded GPU is never allowed");
            }
            // Whatever the instant, the lease is in exactly one period.
            for now in [i64::MIN, lease.nbf, lease.renew_at, lease.exp, i64::MAX] {
                let _ = lease.time_at(now);
            }
            let json = lease
                .to_json()
                .unwrap_or_else(|e| panic!("to_json failed: {e}"));
            let back = LeaseClaims::from_json(&json).unwrap_or_else(|e| {
                panic!("from_json({}) failed: {e}", String::from_utf8_lossy(&json))
            });
            assert_eq!(back, lease);
            true
        }
    }
}
