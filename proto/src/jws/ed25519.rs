//! Ed25519 key hygiene: the public keys a verifier refuses, and the PKCS#8 form keys are
//! written in.
//!
//! ring verifies Ed25519 signatures cofactorless and accepts any 32 bytes that decode to a
//! point, so a small-order key (the identity point above all) makes a fixed signature
//! (`R` = the identity, `S` = 0) verify for every message. [`check_public_key`] refuses such
//! keys, with curve25519-dalek doing the point arithmetic: the bytes must decode to a point,
//! re-encode to the same bytes (canonical), not be of small order, and lie in the prime-order
//! subgroup (torsion-free), which every honestly generated key does.

use curve25519_dalek::edwards::CompressedEdwardsY;

/// Why an Ed25519 public key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ed25519KeyProblem {
    /// The 32 bytes are not the encoding of a curve point.
    NotAPoint,
    /// The point's encoding is not canonical (`y` not reduced, or the sign of `x = 0` set).
    NonCanonical,
    /// The point has small order (one of the 8 torsion points, the identity among them).
    SmallOrder,
    /// The point has a torsion component: it is outside the prime-order subgroup.
    MixedOrder,
}

impl std::fmt::Display for Ed25519KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAPoint => "not a point on the curve",
            Self::NonCanonical => "not in canonical encoding",
            Self::SmallOrder => "of small order (a torsion point such as the identity)",
            Self::MixedOrder => "outside the prime-order subgroup (it has a torsion component)",
        })
    }
}

/// Checks that `raw` is an Ed25519 public key a signature can bind to: a canonically encoded
/// point of the prime-order subgroup, not of small order.
pub fn check_public_key(raw: &[u8; 32]) -> Result<(), Ed25519KeyProblem> {
    let compressed = CompressedEdwardsY(*raw);
    let point = compressed
        .decompress()
        .ok_or(Ed25519KeyProblem::NotAPoint)?;
    if point.compress() != compressed {
        return Err(Ed25519KeyProblem::NonCanonical);
    }
    if point.is_small_order() {
        return Err(Ed25519KeyProblem::SmallOrder);
    }
    if !point.is_torsion_free() {
        return Err(Ed25519KeyProblem::MixedOrder);
    }
    Ok(())
}

/// The RFC 8410 PKCS#8 v1 (OneAsymmetricKey version 0) prefix of an Ed25519 private key:
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } },
/// followed by the 32-byte seed.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The 48-byte PKCS#8 v1 document of an Ed25519 seed (RFC 8410 §7), the form OpenSSL 3 and
/// pyca/cryptography read (ring writes v2, with the public key, which they refuse).
pub fn pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    [&PKCS8_V1_PREFIX[..], &seed[..]].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight torsion points' canonical encodings: identity, order 2, two of order 4 and
    /// four of order 8 (from the Monocypher and ed25519-dalek test vectors).
    const SMALL_ORDER: [[u8; 32]; 8] = [
        hex("0100000000000000000000000000000000000000000000000000000000000000"),
        hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex("0000000000000000000000000000000000000000000000000000000000000000"),
        hex("0000000000000000000000000000000000000000000000000000000000000080"),
        hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
        hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    ];

    const fn hex(s: &str) -> [u8; 32] {
        const fn nibble(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => panic!("not hex"),
            }
        }
        let b = s.as_bytes();
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
            i += 1;
        }
        out
    }

    #[test]
    fn refuses_every_small_order_point() {
        for (i, key) in SMALL_ORDER.iter().enumerate() {
            let problem = check_public_key(key).unwrap_err();
            // Two of the encodings (x = 0 with the sign bit set) are also non-canonical.
            assert!(
                matches!(
                    problem,
                    Ed25519KeyProblem::SmallOrder | Ed25519KeyProblem::NonCanonical
                ),
                "point {i}: {problem:?}"
            );
        }
        assert_eq!(
            check_public_key(&SMALL_ORDER[0]),
            Err(Ed25519KeyProblem::SmallOrder),
            "the identity"
        );
    }

    #[test]
    fn refuses_non_canonical_and_mixed_order_keys() {
        // y = p + 1 (not reduced) encodes the identity again.
        let mut unreduced = [0xffu8; 32];
        unreduced[0] = 0xee;
        unreduced[31] = 0x7f;
        assert_eq!(
            check_public_key(&unreduced),
            Err(Ed25519KeyProblem::NonCanonical)
        );
        // A real key plus the order-2 point.
        let good = curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
        let two = CompressedEdwardsY(SMALL_ORDER[1]).decompress().unwrap();
        let mixed = (good + two).compress().to_bytes();
        assert_eq!(check_public_key(&mixed), Err(Ed25519KeyProblem::MixedOrder));
        assert_eq!(check_public_key(&good.compress().to_bytes()), Ok(()));
    }

    #[test]
    fn pkcs8_v1_is_the_rfc_8410_example() {
        // RFC 8410 §10.3's private key.
        let seed = hex("d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842");
        let expected = "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC";
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(pkcs8_v1(&seed)),
            expected
        );
        assert_eq!(pkcs8_v1(&seed).len(), 48);
    }
}
