//! Attestation checking: a compact JWS from a node, whose `x5c` chain must lead to a pinned
//! operator root, whose signature must verify under that chain's leaf key, and whose payload
//! must be a valid claim set (DESIGN.md "Formats").
//!
//! [`verify_attestation`] is the only way to make a [`VerifiedAttestation`]. The order of the
//! checks is fixed: size and shape ([`jws::decode`], bounded), `typ`, `x5c` present, the chain
//! ([`TrustAnchors::verify_node`], with the operator CRLs, remembering verified chains), the
//! header's `alg` against the leaf's key (no algorithm confusion: the key decides, never the
//! header), the signature, the claims, and the nonce; then each GPU's own evidence is checked
//! against the derived GPU nonce (never a rejection: a fact for the policy). Every rejection is an [`AttestationError`] value with a stable code; nothing here
//! panics on outside input or reads the clock. Freshness (the age of `iat` against a licence's
//! `max_attestation_age`) is the policy's check, not this module's.

use std::sync::Arc;

use ring::digest;
use tppguard_proto::claims::{ATTESTATION_TYP, AttestationClaims, ClaimsError, Nonce};
use tppguard_proto::jws::{self, Alg, JwsError, Verified, VerifyingKey};
use tppguard_proto::lease::{LEASE_TYP, LeaseClaims};

use tppguard_proto::gpu_evidence::gpu_nonce;
use tppguard_proto::identity::NodeId;

use crate::chain::{ChainError, KeyAlgorithm, TrustAnchors, VerifiedLeaf};
use crate::gpu_evidence::{
    Expected, GpuEvidenceReport, InventoryRule, MAX_GPU_EVIDENCE_PER_ATTESTATION,
    verify_gpu_evidence,
};
use crate::policy::gating::{GatingFacts, LeaseCheck, VerifiedLease};
use crate::policy::{GpuEvidenceFacts, VerifiedAttestation};

#[cfg(test)]
pub(crate) mod tests;

/// Longest outside string (a wrong `typ`) quoted in an error, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// Verifies an attestation token at Unix time `at_unix` (the certificates' validity and the
/// CRLs are checked at that instant) and, when `expected_nonce` is given, checks that the
/// token answers that challenge.
pub fn verify_attestation(
    token: &str,
    trust: &TrustAnchors,
    at_unix: i64,
    expected_nonce: Option<&Nonce>,
) -> Result<VerifiedAttestation, AttestationError> {
    verify_attestation_with_leases(token, trust, at_unix, expected_nonce, None)
}

/// [`verify_attestation`], checking the lease a gating report carries (issue 15) under
/// `lease_key`, the verifier's own result key: a lease is only ever one this verifier signed
/// for this node. Without a key (`check` without a result key), the lease is
/// [`LeaseCheck::Unverifiable`]. A lease that does not check is never a rejection: it is a
/// fact for the policy (`gating_lease_foreign`).
pub fn verify_attestation_with_leases(
    token: &str,
    trust: &TrustAnchors,
    at_unix: i64,
    expected_nonce: Option<&Nonce>,
    lease_key: Option<&VerifyingKey>,
) -> Result<VerifiedAttestation, AttestationError> {
    let (verified, leaf) = verify_signed(token, ATTESTATION_TYP, |x5c| {
        trust.verify_node(x5c, at_unix).map(|v| v.leaf().clone())
    })?;
    let claims = AttestationClaims::from_json(verified.payload())?;
    if let Some(expected) = expected_nonce
        && claims.eat_nonce != *expected
    {
        return Err(AttestationError::NonceMismatch);
    }
    let mut token_sha256 = [0u8; 32];
    token_sha256.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    let facts = gpu_evidence_facts(&claims, &leaf.node_id(), trust, at_unix);
    let gating = gating_facts(&claims, &leaf.node_id(), lease_key, at_unix);
    Ok(VerifiedAttestation::new(claims, &leaf, token_sha256)
        .with_gpu_evidence(facts)
        .with_gating(gating))
}

/// What the verifier establishes from the claims' gating report, if any: the report as the
/// node gives it, and the lease it carries checked under `lease_key` for `node` at `at_unix`.
pub fn gating_facts(
    claims: &AttestationClaims,
    node: &NodeId,
    lease_key: Option<&VerifyingKey>,
    at_unix: i64,
) -> Option<GatingFacts> {
    let report = claims.gating.as_ref()?;
    let lease = match (&report.lease, lease_key) {
        (None, _) => LeaseCheck::Absent,
        (Some(_), None) => LeaseCheck::Unverifiable,
        (Some(token), Some(key)) => check_lease(token, key, node, at_unix),
    };
    Some(GatingFacts::new(report, lease))
}

/// Checks a lease from a gating report: `typ` [`LEASE_TYP`], the signature under `key` (this
/// verifier's result key; the key decides the algorithm), the claims, and `sub` = `node`.
/// An expired lease still verifies: the report is history.
pub fn check_lease(token: &str, key: &VerifyingKey, node: &NodeId, at_unix: i64) -> LeaseCheck {
    let foreign = |code: &'static str, detail: String| LeaseCheck::Foreign { code, detail };
    let unverified = match jws::decode(token) {
        Ok(u) => u,
        Err(e) => return foreign(e.code(), format!("the lease is not a signed token: {e}")),
    };
    let typ = unverified.header().typ.as_deref();
    if typ != Some(LEASE_TYP) {
        let typ: Option<String> = typ.map(|t| t.chars().take(MAX_QUOTED_CHARS).collect());
        return foreign(
            "lease_wrong_typ",
            format!("the token's typ is {typ:?}, not {LEASE_TYP:?}"),
        );
    }
    let verified = match unverified.verify(key) {
        Ok(v) => v,
        Err(e) => {
            return foreign(
                "lease_bad_signature",
                format!(
                    "it does not verify under this verifier's result key ({})",
                    e.code()
                ),
            );
        }
    };
    let claims = match LeaseClaims::from_json(verified.payload()) {
        Ok(c) => c,
        Err(e) => return foreign(e.code(), format!("its claims are refused: {e}")),
    };
    if claims.sub != node.to_string() {
        let sub: String = claims.sub.chars().take(MAX_QUOTED_CHARS).collect();
        return foreign(
            "lease_other_node",
            format!("it was issued to node {sub}, not to this node {node}"),
        );
    }
    LeaseCheck::Verified(Box::new(VerifiedLease {
        iat: claims.iat,
        exp: claims.exp,
        time: claims.time_at(at_unix),
        token_sha256: claims.token_sha256,
        excluded: claims.excluded,
    }))
}

/// Checks the evidence each GPU carries, bound to this attestation: the nonce its report must
/// answer is derived from the claims' `eat_nonce` (the verifier's challenge, once checked),
/// the node's key and the submod's index ([`gpu_nonce`]), and the signed versions must be the
/// ones the inventory states. A failed check never rejects the attestation: it is a fact the
/// policy weighs (the GPU does not back the `hardware` tier).
pub(crate) fn gpu_evidence_facts(
    claims: &AttestationClaims,
    node: &NodeId,
    trust: &TrustAnchors,
    at_unix: i64,
) -> GpuEvidenceFacts {
    claims
        .submods
        .iter()
        .filter(|(_, gpu)| gpu.gpu_evidence.is_some())
        .enumerate()
        .filter_map(|(n, (name, gpu))| {
            let evidence = gpu.gpu_evidence.as_ref()?;
            if n >= MAX_GPU_EVIDENCE_PER_ATTESTATION {
                let sentence = format!(
                    "the attestation carries evidence for more than \
                     {MAX_GPU_EVIDENCE_PER_ATTESTATION} GPUs; the verifier checks that many"
                );
                let refused = GpuEvidenceReport::refused("too_many_gpu_evidence", &sentence);
                return Some((name.clone(), Arc::new(refused)));
            }
            let expected = Expected {
                nonce: gpu_nonce(&claims.eat_nonce, node, gpu.index),
                driver_version: claims.driver.driver_version.as_deref(),
                vbios_version: gpu.vbios_version.as_deref(),
                architecture: gpu.architecture.as_deref(),
                model: gpu.name.as_deref(),
                inventory: InventoryRule::Required,
            };
            let report = verify_gpu_evidence(evidence, trust, &expected, at_unix);
            Some((name.clone(), Arc::new(report)))
        })
        .collect()
}

/// Why an attestation was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The token is not a well-formed JWS, or its signature does not verify.
    #[error("attestation token rejected ({})", .0.code())]
    Jws(#[from] JwsError),
    /// The header's `typ` is not [`ATTESTATION_TYP`].
    #[error("the header `typ` is {}, not {ATTESTATION_TYP:?}", typ.as_deref().map_or_else(|| "missing".to_owned(), |t| format!("{t:?}")))]
    WrongTyp {
        /// The `typ` given, if any (at most 64 characters of it).
        typ: Option<String>,
    },
    /// The header has no `x5c`, so no key can be trusted for it.
    #[error("the header has no `x5c` certificate chain")]
    MissingX5c,
    /// The `x5c` chain does not verify to a pinned operator root.
    #[error("the `x5c` node certificate chain is rejected ({})", .0.code())]
    Chain(#[from] ChainError),
    /// The header's `alg` is not the algorithm of the `x5c` leaf's key.
    #[error("the header says `alg` {header} but the `x5c` leaf key is {key}")]
    KeyDoesNotMatchX5c {
        /// The header's algorithm.
        header: Alg,
        /// The leaf key's algorithm.
        key: KeyAlgorithm,
    },
    /// The payload is not a valid claim set.
    #[error("the claim set is rejected ({})", .0.code())]
    Claims(#[from] ClaimsError),
    /// `eat_nonce` is not the challenge the verifier issued.
    #[error("`eat_nonce` is not the nonce the verifier issued")]
    NonceMismatch,
}

impl AttestationError {
    /// The codes this type defines itself; wrapped errors give their own
    /// ([`JwsError::CODES`], [`ChainError::CODES`], [`ClaimsError::CODES`]).
    ///
    /// - `wrong_typ`: the JWS `typ` is not `tppguard-attestation+jwt`.
    /// - `missing_x5c`: the JWS header carries no certificate chain.
    /// - `key_does_not_match_x5c`: the header's `alg` is not the `x5c` leaf key's algorithm.
    /// - `nonce_mismatch`: `eat_nonce` is not the challenge the verifier issued.
    pub const CODES: [&'static str; 4] = [
        "wrong_typ",
        "missing_x5c",
        "key_does_not_match_x5c",
        "nonce_mismatch",
    ];

    /// The stable snake_case reason code: the wrapped error's code, or this type's own.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Jws(e) => e.code(),
            Self::WrongTyp { .. } => "wrong_typ",
            Self::MissingX5c => "missing_x5c",
            Self::Chain(e) => e.code(),
            Self::KeyDoesNotMatchX5c { .. } => "key_does_not_match_x5c",
            Self::Claims(e) => e.code(),
            Self::NonceMismatch => "nonce_mismatch",
        }
    }

    /// A human sentence: what was wrong, with the wrapped error's reason.
    pub fn sentence(&self) -> String {
        match self {
            Self::Jws(e) => format!("the attestation is not a valid signed token: {e}"),
            Self::Chain(e) => format!("the node certificate chain (x5c) is rejected: {e}"),
            Self::Claims(e) => format!("the attestation's claims are rejected: {e}"),
            Self::WrongTyp { .. }
            | Self::MissingX5c
            | Self::KeyDoesNotMatchX5c { .. }
            | Self::NonceMismatch => format!("the attestation is rejected: {self}"),
        }
    }
}

/// What the shared envelope check ([`verify_signed`]) rejects; each token kind maps it to
/// its own error type.
#[derive(Debug)]
pub(crate) enum EnvelopeError {
    Jws(JwsError),
    WrongTyp(Option<String>),
    MissingX5c,
    Chain(ChainError),
    KeyDoesNotMatchX5c { header: Alg, key: KeyAlgorithm },
}

impl From<EnvelopeError> for AttestationError {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::Jws(e) => Self::Jws(e),
            EnvelopeError::WrongTyp(typ) => Self::WrongTyp { typ },
            EnvelopeError::MissingX5c => Self::MissingX5c,
            EnvelopeError::Chain(e) => Self::Chain(e),
            EnvelopeError::KeyDoesNotMatchX5c { header, key } => {
                Self::KeyDoesNotMatchX5c { header, key }
            }
        }
    }
}

/// The JWS algorithm of a leaf key.
pub(crate) fn jws_alg(key: KeyAlgorithm) -> Alg {
    match key {
        KeyAlgorithm::Ed25519 => Alg::EdDSA,
        KeyAlgorithm::P256 => Alg::ES256,
        KeyAlgorithm::P384 => Alg::ES384,
    }
}

/// Checks a compact JWS whose key comes from its `x5c`: bounded decode, `typ`, `x5c` present,
/// the chain (with `check_chain`, which picks the trust domain), the header `alg` against the
/// leaf key, then the signature under that key.
pub(crate) fn verify_signed(
    token: &str,
    typ: &str,
    check_chain: impl FnOnce(&[Vec<u8>]) -> Result<VerifiedLeaf, ChainError>,
) -> Result<(Verified, VerifiedLeaf), EnvelopeError> {
    let unverified = jws::decode(token).map_err(EnvelopeError::Jws)?;
    let header = unverified.header();
    if header.typ.as_deref() != Some(typ) {
        return Err(EnvelopeError::WrongTyp(
            header
                .typ
                .as_ref()
                .map(|t| t.chars().take(MAX_QUOTED_CHARS).collect()),
        ));
    }
    if header.x5c.is_empty() {
        return Err(EnvelopeError::MissingX5c);
    }
    let leaf = check_chain(&header.x5c).map_err(EnvelopeError::Chain)?;
    let leaf_alg = jws_alg(leaf.key_algorithm());
    if header.alg != leaf_alg {
        return Err(EnvelopeError::KeyDoesNotMatchX5c {
            header: header.alg,
            key: leaf.key_algorithm(),
        });
    }
    // The key was parsed and checked with the chain (and is remembered with it).
    let key = leaf.verifying_key();
    if key.alg() != leaf_alg {
        return Err(EnvelopeError::KeyDoesNotMatchX5c {
            header: header.alg,
            key: leaf.key_algorithm(),
        });
    }
    let verified = unverified.verify(key).map_err(EnvelopeError::Jws)?;
    Ok((verified, leaf))
}
