use std::collections::HashSet;

use super::*;

fn one_of_each() -> Vec<JwsError> {
    let json_error = serde_json::from_str::<Value>("x").unwrap_err();
    vec![
        JwsError::TooLarge { len: 2, max: 1 },
        JwsError::PartCount { found: 2 },
        JwsError::Malformed { part: Part::Header },
        JwsError::EmptySignature,
        JwsError::TooDeep {
            part: Part::Payload,
            max: 1,
        },
        JwsError::Json {
            part: Part::Header,
            source: json_error,
        },
        JwsError::NotAnObject { part: Part::Header },
        JwsError::MissingAlg,
        JwsError::UnsupportedAlg { alg: "none".into() },
        JwsError::WrongType {
            param: "alg",
            expected: "a string",
        },
        JwsError::UnknownCritical { name: "b64".into() },
        JwsError::X5cTooLong { len: 9, max: 8 },
        JwsError::X5cEmpty,
        JwsError::X5cCertTooLarge {
            index: 0,
            len: 2,
            max: 1,
        },
        JwsError::X5cNotBase64 { index: 0 },
        JwsError::AlgKeyMismatch {
            header: Alg::ES256,
            key: Alg::EdDSA,
        },
        JwsError::SignatureLength {
            alg: Alg::EdDSA,
            len: 1,
            expected: 64,
        },
        JwsError::BadSignature,
        JwsError::InvalidPublicKey {
            alg: Alg::ES256,
            len: 3,
        },
        JwsError::MalformedSpki,
        JwsError::UnsupportedKey,
        JwsError::PrivateKeyRejected { alg: Alg::ES384 },
        JwsError::PrivateKeyUnrecognised,
        JwsError::SigningFailed,
        JwsError::WeakPublicKey {
            problem: Ed25519KeyProblem::SmallOrder,
        },
    ]
}

#[test]
fn codes_are_unique_snake_case_and_listed() {
    let errors = one_of_each();
    let codes: Vec<&str> = errors.iter().map(JwsError::code).collect();
    assert_eq!(codes, JwsError::CODES, "CODES lists every code in order");
    let unique: HashSet<&str> = codes.iter().copied().collect();
    assert_eq!(unique.len(), codes.len(), "codes are unique");
    for code in codes {
        assert!(code.starts_with("jws_"), "{code}");
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !code.contains("__")
                && !code.ends_with('_'),
            "{code} is not snake_case"
        );
    }
    for e in errors {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn alg_names_round_trip() {
    for alg in Alg::ALL {
        assert_eq!(Alg::from_name(alg.name()), Some(alg));
        assert_eq!(alg.to_string(), alg.name());
    }
    for other in ["none", "HS256", "RS256", "eddsa", "Ed25519", "ES512", ""] {
        assert_eq!(Alg::from_name(other), None, "{other}");
    }
}

#[test]
fn signing_key_debug_shows_no_key_material() {
    let seed = [0x42u8; 32];
    let key = SigningKey::from_ed25519_seed(&seed).unwrap();
    let shown = format!("{key:?}");
    assert_eq!(shown, "SigningKey { alg: EdDSA, .. }");
}

#[test]
fn header_json_is_minimal_and_ordered() {
    assert_eq!(
        Header::new(Alg::EdDSA).to_json().unwrap(),
        br#"{"alg":"EdDSA"}"#
    );
    let header = Header::new(Alg::ES256)
        .with_typ("t")
        .with_kid("k")
        .with_x5c(vec![vec![1, 2, 3]]);
    assert_eq!(
        header.to_json().unwrap(),
        br#"{"alg":"ES256","typ":"t","kid":"k","x5c":["AQID"]}"#
    );
    let parsed = Header::from_json(&header.to_json().unwrap()).unwrap();
    assert_eq!(parsed, header);
}

#[test]
fn sign_refuses_what_decode_would_reject() {
    let key = SigningKey::from_ed25519_seed(&[1; 32]).unwrap();
    let too_many = Header::new(Alg::EdDSA).with_x5c(vec![vec![1]; MAX_X5C_CERTS + 1]);
    assert!(matches!(
        sign(&too_many, b"{}", &key),
        Err(JwsError::X5cTooLong { len: 9, max: 8 })
    ));
    let too_big = Header::new(Alg::EdDSA).with_x5c(vec![vec![1; MAX_X5C_CERT_BYTES + 1]]);
    assert!(matches!(
        sign(&too_big, b"{}", &key),
        Err(JwsError::X5cCertTooLarge { index: 0, .. })
    ));
    assert!(matches!(
        sign(&Header::new(Alg::EdDSA), &vec![b'a'; MAX_JWS_BYTES], &key),
        Err(JwsError::TooLarge { .. })
    ));
    assert!(matches!(
        sign(&Header::new(Alg::ES384), b"{}", &key),
        Err(JwsError::AlgKeyMismatch {
            header: Alg::ES384,
            key: Alg::EdDSA
        })
    ));
}

/// The identity point as an Ed25519 public key: with it, R = identity and S = 0 is a valid
/// signature (cofactorless, as ring checks) of every message.
const IDENTITY_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    k[0] = 1;
    k
};

#[test]
fn weak_ed25519_keys_are_refused_raw_and_in_an_spki() {
    let e = VerifyingKey::from_raw(Alg::EdDSA, &IDENTITY_KEY).unwrap_err();
    assert!(
        matches!(
            e,
            JwsError::WeakPublicKey {
                problem: Ed25519KeyProblem::SmallOrder
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "jws_weak_public_key");
    assert!(e.to_string().contains("small order"), "{e}");
    let spki = [spki::prefix(Alg::EdDSA), &IDENTITY_KEY[..]].concat();
    assert!(matches!(
        VerifyingKey::from_spki_der(&spki),
        Err(JwsError::WeakPublicKey { .. })
    ));
    // Not a point at all (no square root for x): refused, not left to fail later.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert!(matches!(
        VerifyingKey::from_raw(Alg::EdDSA, &off_curve),
        Err(JwsError::WeakPublicKey {
            problem: Ed25519KeyProblem::NotAPoint
        })
    ));
}

#[test]
fn the_forged_identity_signature_would_verify_in_ring() {
    // Why the check exists: ring itself accepts the forgery for any message.
    let mut forged = [0u8; 64];
    forged[0] = 1; // R = identity, S = 0.
    let ring_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &IDENTITY_KEY[..]);
    assert!(ring_key.verify(b"any message at all", &forged).is_ok());
}

#[test]
fn generated_ed25519_keys_are_pkcs8_v1_and_both_versions_read() {
    let v1 = SigningKey::generate_pkcs8(Alg::EdDSA).unwrap();
    assert_eq!(v1.len(), 48, "RFC 8410 v1 document");
    assert_eq!(v1.get(..5), Some(&[0x30, 0x2e, 0x02, 0x01, 0x00][..]));
    let key = SigningKey::from_pkcs8(Alg::EdDSA, &v1).unwrap();
    assert!(VerifyingKey::from_raw(Alg::EdDSA, key.verifying_key().raw()).is_ok());
    let v2 = ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    assert!(SigningKey::from_pkcs8(Alg::EdDSA, v2.as_ref()).is_ok());
    assert!(SigningKey::from_pkcs8_any(&v1).is_ok());
}
