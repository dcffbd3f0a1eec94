#![cfg(test)]
//! `proto::jws` against RFC 8037's Ed25519 vector and hostile tokens: each rejection asserts
//! the specific error.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tppguard_proto::jws::{
    self, Alg, Header, JwsError, MAX_JSON_DEPTH, MAX_JWS_BYTES, MAX_X5C_CERT_BYTES, MAX_X5C_CERTS,
    Part, SigningKey, VerifyingKey,
};

/// RFC 8037 Appendix A.1: the Ed25519 private key `d` and public key `x`.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// RFC 8037 Appendix A.4: the JWS of "Example of Ed25519 signing" under `{"alg":"EdDSA"}`.
const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rfc_key() -> SigningKey {
    SigningKey::from_ed25519_seed(&URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap()).unwrap()
}

fn rfc_public() -> VerifyingKey {
    VerifyingKey::from_raw(Alg::EdDSA, &URL_SAFE_NO_PAD.decode(RFC8037_X).unwrap()).unwrap()
}

fn key(alg: Alg) -> SigningKey {
    SigningKey::from_pkcs8(alg, &SigningKey::generate_pkcs8(alg).unwrap()).unwrap()
}

/// A token with a hand-made header JSON and this payload, signed correctly with the RFC 8037
/// key (through ring, since `sign` only writes headers it builds itself).
fn rfc_signed(header_json: &str, payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header_json.as_bytes()), b64(payload));
    let seed = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()))
}

/// Whether an error is the one a case expects.
type Expect = fn(&JwsError) -> bool;

fn decode_err(token: &str) -> JwsError {
    jws::decode(token).unwrap_err()
}

#[test]
fn rfc8037_vector_verifies() {
    let verified = jws::decode(RFC8037_JWS)
        .unwrap()
        .verify(&rfc_public())
        .unwrap();
    assert_eq!(verified.payload(), b"Example of Ed25519 signing");
    assert_eq!(verified.header(), &Header::new(Alg::EdDSA));
}

#[test]
fn rfc8037_vector_signs_identically() {
    let key = rfc_key();
    assert_eq!(key.verifying_key(), rfc_public());
    let token = jws::sign(
        &Header::new(Alg::EdDSA),
        b"Example of Ed25519 signing",
        &key,
    )
    .unwrap();
    assert_eq!(token, RFC8037_JWS);
}

#[test]
fn round_trip_every_alg() {
    for alg in Alg::ALL {
        let key = key(alg);
        let header = Header::new(alg)
            .with_typ("tppguard-attestation+jwt")
            .with_kid("node-1")
            .with_x5c(vec![vec![0x30, 0x03, 0x02, 0x01, 0x01], vec![0x30, 0x00]]);
        let payload = br#"{"iss":"node-1","nested":{"a":[1,2,3]}}"#;
        let token = jws::sign(&header, payload, &key).unwrap();
        let unverified = jws::decode(&token).unwrap();
        assert_eq!(unverified.header(), &header);
        let verified = unverified.verify(&key.verifying_key()).unwrap();
        assert_eq!(verified.header(), &header);
        assert_eq!(verified.payload(), payload);
        // The SPKI path gives the same key.
        let from_spki = VerifyingKey::from_spki_der(&key.public_key_spki_der()).unwrap();
        assert_eq!(from_spki, key.verifying_key());
        assert_eq!(from_spki.alg(), alg);
        jws::decode(&token).unwrap().verify(&from_spki).unwrap();
        // Another key of the same algorithm does not verify it.
        let other = self::key(alg).verifying_key();
        assert!(matches!(
            jws::decode(&token).unwrap().verify(&other),
            Err(JwsError::BadSignature)
        ));
    }
}

#[test]
fn pkcs8_any_detects_the_algorithm() {
    for alg in Alg::ALL {
        let der = SigningKey::generate_pkcs8(alg).unwrap();
        assert_eq!(SigningKey::from_pkcs8_any(&der).unwrap().alg(), alg);
    }
    assert!(matches!(
        SigningKey::from_pkcs8_any(b"not a key"),
        Err(JwsError::PrivateKeyUnrecognised)
    ));
    let p256 = SigningKey::generate_pkcs8(Alg::ES256).unwrap();
    assert!(matches!(
        SigningKey::from_pkcs8(Alg::ES384, &p256),
        Err(JwsError::PrivateKeyRejected { alg: Alg::ES384 })
    ));
}

#[test]
fn tampering_with_any_part_fails() {
    let mut parts: Vec<String> = RFC8037_JWS.split('.').map(str::to_owned).collect();
    let original = parts.clone();
    // Header: same alg, another parameter.
    parts[0] = b64(br#"{"alg":"EdDSA","kid":"x"}"#);
    assert!(matches!(
        jws::decode(&parts.join(".")).unwrap().verify(&rfc_public()),
        Err(JwsError::BadSignature)
    ));
    // Payload.
    parts = original.clone();
    parts[1] = b64(b"Example of Ed25519 signinG");
    assert!(matches!(
        jws::decode(&parts.join(".")).unwrap().verify(&rfc_public()),
        Err(JwsError::BadSignature)
    ));
    // Signature: flip one bit of the first byte.
    parts = original.clone();
    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[0] ^= 1;
    parts[2] = b64(&sig);
    assert!(matches!(
        jws::decode(&parts.join(".")).unwrap().verify(&rfc_public()),
        Err(JwsError::BadSignature)
    ));
    // Signature truncated.
    parts[2] = b64(&sig[..63]);
    assert!(matches!(
        jws::decode(&parts.join(".")).unwrap().verify(&rfc_public()),
        Err(JwsError::SignatureLength {
            alg: Alg::EdDSA,
            len: 63,
            expected: 64
        })
    ));
}

#[test]
fn payload_swapped_between_valid_tokens_fails() {
    let key = rfc_key();
    let a = jws::sign(&Header::new(Alg::EdDSA), br#"{"n":1}"#, &key).unwrap();
    let b = jws::sign(&Header::new(Alg::EdDSA), br#"{"n":2}"#, &key).unwrap();
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let swapped = format!("{}.{}.{}", a[0], b[1], a[2]);
    assert!(matches!(
        jws::decode(&swapped).unwrap().verify(&rfc_public()),
        Err(JwsError::BadSignature)
    ));
}

#[test]
fn alg_none_is_rejected() {
    let payload = b64(b"Example of Ed25519 signing");
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
    assert!(matches!(decode_err(&none), JwsError::EmptySignature));
    // With a signature present, `none` is still unsupported.
    let none_signed = format!("{}.{payload}.AAAA", b64(br#"{"alg":"none"}"#));
    assert!(matches!(
        decode_err(&none_signed),
        JwsError::UnsupportedAlg { alg } if alg == "none"
    ));
    // An EdDSA header with no signature.
    let unsigned = format!("{}.{payload}.", b64(br#"{"alg":"EdDSA"}"#));
    assert!(matches!(decode_err(&unsigned), JwsError::EmptySignature));
}

#[test]
fn hs256_keyed_with_public_key_bytes_is_unsupported() {
    // The classic confusion: HMAC-SHA256 keyed with the verifier's public key / certificate.
    let public_spki = rfc_key().public_key_spki_der();
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"tppguard-attestation+jwt"}"#),
        b64(br#"{"iss":"attacker"}"#)
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_spki),
        input.as_bytes(),
    );
    let forged = format!("{input}.{}", b64(tag.as_ref()));
    assert!(matches!(
        decode_err(&forged),
        JwsError::UnsupportedAlg { alg } if alg == "HS256"
    ));
    for alg in ["RS256", "PS256", "ES512", "eddsa", "Ed25519", ""] {
        let token = format!(
            "{}.{}.AAAA",
            b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()),
            b64(b"{}")
        );
        assert!(
            matches!(decode_err(&token), JwsError::UnsupportedAlg { .. }),
            "{alg}"
        );
    }
}

#[test]
fn header_alg_must_match_key() {
    // ES256 header, Ed25519 signature and key.
    let token = rfc_signed(r#"{"alg":"ES256"}"#, b"{}");
    let unverified = jws::decode(&token).unwrap();
    assert!(matches!(
        unverified.verify(&rfc_public()),
        Err(JwsError::AlgKeyMismatch {
            header: Alg::ES256,
            key: Alg::EdDSA
        })
    ));
    // EdDSA header checked with an ES256 key.
    let es256 = key(Alg::ES256).verifying_key();
    assert!(matches!(
        jws::decode(RFC8037_JWS).unwrap().verify(&es256),
        Err(JwsError::AlgKeyMismatch {
            header: Alg::EdDSA,
            key: Alg::ES256
        })
    ));
    // ES384 token checked with an ES256 key.
    let es384 = key(Alg::ES384);
    let token = jws::sign(&Header::new(Alg::ES384), b"{}", &es384).unwrap();
    assert!(matches!(
        jws::decode(&token).unwrap().verify(&es256),
        Err(JwsError::AlgKeyMismatch {
            header: Alg::ES384,
            key: Alg::ES256
        })
    ));
}

#[test]
fn shape_errors() {
    let [h, p, s]: [&str; 3] = RFC8037_JWS
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let cases: Vec<(String, Expect)> = vec![
        (format!("{h}.{p}"), |e| {
            matches!(e, JwsError::PartCount { found: 2 })
        }),
        (format!("{h}.{p}.{s}.{s}"), |e| {
            matches!(e, JwsError::PartCount { found: 4 })
        }),
        (format!("{h}.{p}.{s}."), |e| {
            matches!(e, JwsError::PartCount { found: 4 })
        }),
        (String::new(), |e| {
            matches!(e, JwsError::PartCount { found: 1 })
        }),
        // Padding on the header (its base64 is 20 chars, so pad a 2-byte-remainder part).
        (format!("{h}.{p}=.{s}"), |e| {
            matches!(
                e,
                JwsError::Malformed {
                    part: Part::Payload
                }
            )
        }),
        (format!("{h}.{p}.{s}=="), |e| {
            matches!(
                e,
                JwsError::Malformed {
                    part: Part::Signature
                }
            )
        }),
        // Whitespace.
        (format!(" {h}.{p}.{s}"), |e| {
            matches!(e, JwsError::Malformed { part: Part::Header })
        }),
        (format!("{h}.{p}.{s}\n"), |e| {
            matches!(
                e,
                JwsError::Malformed {
                    part: Part::Signature
                }
            )
        }),
        (format!("{h}.{p}\t.{s}"), |e| {
            matches!(
                e,
                JwsError::Malformed {
                    part: Part::Payload
                }
            )
        }),
        // Standard-alphabet characters.
        (format!("{h}.{p}.{}", s.replace('-', "+")), |e| {
            matches!(
                e,
                JwsError::Malformed {
                    part: Part::Signature
                }
            )
        }),
        // Empty header.
        (format!(".{p}.{s}"), |e| {
            matches!(
                e,
                JwsError::Json {
                    part: Part::Header,
                    ..
                }
            )
        }),
    ];
    for (token, expected) in cases {
        let err = decode_err(&token);
        assert!(expected(&err), "{token:?}: {err:?}");
    }
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let huge = "a".repeat(MAX_JWS_BYTES + 1);
    assert!(matches!(
        decode_err(&huge),
        JwsError::TooLarge { len, max } if len == MAX_JWS_BYTES + 1 && max == MAX_JWS_BYTES
    ));
}

#[test]
fn deep_header_and_payload_are_rejected() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let header = format!(r#"{{"alg":"EdDSA","x":{}}}"#, deep(MAX_JSON_DEPTH));
    let token = format!("{}.{}.AAAA", b64(header.as_bytes()), b64(b"{}"));
    assert!(matches!(
        decode_err(&token),
        JwsError::TooDeep {
            part: Part::Header,
            max: MAX_JSON_DEPTH
        }
    ));
    let ok_header = format!(r#"{{"alg":"EdDSA","x":{}}}"#, deep(MAX_JSON_DEPTH - 1));
    let token = format!("{}.{}.AAAA", b64(ok_header.as_bytes()), b64(b"{}"));
    assert!(jws::decode(&token).is_ok());
    let payload = deep(MAX_JSON_DEPTH + 1);
    let token = format!(
        "{}.{}.AAAA",
        b64(br#"{"alg":"EdDSA"}"#),
        b64(payload.as_bytes())
    );
    assert!(matches!(
        decode_err(&token),
        JwsError::TooDeep {
            part: Part::Payload,
            max: MAX_JSON_DEPTH
        }
    ));
    // Far beyond serde_json's own recursion limit: still our error, no stack overflow.
    let header = format!(r#"{{"alg":"EdDSA","x":{}}}"#, deep(100_000));
    let token = format!("{}.{}.AAAA", b64(header.as_bytes()), b64(b"{}"));
    assert!(matches!(decode_err(&token), JwsError::TooDeep { .. }));
}

fn header_err(header: &str) -> JwsError {
    decode_err(&format!("{}.{}.AAAA", b64(header.as_bytes()), b64(b"{}")))
}

#[test]
fn crit_is_honoured() {
    assert!(matches!(
        header_err(r#"{"alg":"EdDSA","crit":["exp"],"exp":1}"#),
        JwsError::UnknownCritical { name } if name == "exp"
    ));
    assert!(matches!(
        header_err(r#"{"alg":"EdDSA","b64":false,"crit":["b64"]}"#),
        JwsError::UnknownCritical { name } if name == "b64"
    ));
    for bad in [r#"[]"#, r#""b64""#, r#"[1]"#, r#"["b64",2]"#, "null"] {
        assert!(
            matches!(
                header_err(&format!(r#"{{"alg":"EdDSA","crit":{bad}}}"#)),
                JwsError::WrongType { param: "crit", .. }
            ),
            "{bad}"
        );
    }
    // Unknown non-critical parameters are allowed.
    let token = rfc_signed(r#"{"alg":"EdDSA","zip2":"x","cty":"y"}"#, b"{}");
    jws::decode(&token).unwrap().verify(&rfc_public()).unwrap();
}

#[test]
fn x5c_limits() {
    let cert = base64::engine::general_purpose::STANDARD.encode([0x30u8, 0x00]);
    let chain = |n: usize| vec![format!("\"{cert}\""); n].join(",");
    let token = format!(
        "{}.{}.AAAA",
        b64(format!(r#"{{"alg":"EdDSA","x5c":[{}]}}"#, chain(MAX_X5C_CERTS)).as_bytes()),
        b64(b"{}")
    );
    assert_eq!(
        jws::decode(&token).unwrap().header().x5c.len(),
        MAX_X5C_CERTS
    );
    assert!(matches!(
        header_err(&format!(r#"{{"alg":"EdDSA","x5c":[{}]}}"#, chain(MAX_X5C_CERTS + 1))),
        JwsError::X5cTooLong { len, max } if len == MAX_X5C_CERTS + 1 && max == MAX_X5C_CERTS
    ));
    assert!(matches!(
        header_err(r#"{"alg":"EdDSA","x5c":[]}"#),
        JwsError::X5cEmpty
    ));
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_X5C_CERT_BYTES + 1]);
    assert!(matches!(
        header_err(&format!(r#"{{"alg":"EdDSA","x5c":["{cert}","{big}"]}}"#)),
        JwsError::X5cCertTooLarge {
            index: 1,
            max: MAX_X5C_CERT_BYTES,
            ..
        }
    ));
    // x5c is standard base64 with padding: url-safe or unpadded is rejected.
    for bad in ["MAA", "MA-_", "", "MA A="] {
        assert!(
            matches!(
                header_err(&format!(r#"{{"alg":"EdDSA","x5c":["{bad}"]}}"#)),
                JwsError::X5cNotBase64 { index: 0 }
            ),
            "{bad}"
        );
    }
}

#[test]
fn wrong_json_types() {
    let cases: [(&str, Expect); 10] = [
        (r#"{"alg":1}"#, |e| {
            matches!(e, JwsError::WrongType { param: "alg", .. })
        }),
        (r#"{"alg":["EdDSA"]}"#, |e| {
            matches!(e, JwsError::WrongType { param: "alg", .. })
        }),
        (r#"{"alg":"EdDSA","typ":7}"#, |e| {
            matches!(e, JwsError::WrongType { param: "typ", .. })
        }),
        (r#"{"alg":"EdDSA","kid":null}"#, |e| {
            matches!(e, JwsError::WrongType { param: "kid", .. })
        }),
        (r#"{"alg":"EdDSA","x5c":"MAA="}"#, |e| {
            matches!(e, JwsError::WrongType { param: "x5c", .. })
        }),
        (r#"{"alg":"EdDSA","x5c":[48]}"#, |e| {
            matches!(e, JwsError::WrongType { param: "x5c", .. })
        }),
        (r#"{"typ":"JWT"}"#, |e| matches!(e, JwsError::MissingAlg)),
        (r#"["alg","EdDSA"]"#, |e| {
            matches!(e, JwsError::NotAnObject { part: Part::Header })
        }),
        (r#"{"alg":"EdDSA","alg":"EdDSA"}"#, |e| {
            matches!(
                e,
                JwsError::Json {
                    part: Part::Header,
                    ..
                }
            )
        }),
        (r#"{"alg":"EdDSA"} {}"#, |e| {
            matches!(
                e,
                JwsError::Json {
                    part: Part::Header,
                    ..
                }
            )
        }),
    ];
    for (header, expected) in cases {
        let err = header_err(header);
        assert!(expected(&err), "{header}: {err:?}");
        assert!(err.code().starts_with("jws_"));
    }
}

#[test]
fn verifying_key_constructors_check_their_input() {
    assert!(matches!(
        VerifyingKey::from_raw(Alg::EdDSA, &[0; 31]),
        Err(JwsError::InvalidPublicKey {
            alg: Alg::EdDSA,
            len: 31
        })
    ));
    // Compressed P-256 point.
    let mut compressed = vec![0x02];
    compressed.extend_from_slice(&[1; 64]);
    assert!(matches!(
        VerifyingKey::from_raw(Alg::ES256, &compressed),
        Err(JwsError::InvalidPublicKey {
            alg: Alg::ES256,
            ..
        })
    ));
    assert!(matches!(
        VerifyingKey::from_spki_der(b"\x30\x00"),
        Err(JwsError::MalformedSpki)
    ));
    // A P-256 SPKI whose point is an Ed25519 key's length.
    let mut short = key(Alg::ES256).public_key_spki_der();
    short.truncate(40);
    assert!(matches!(
        VerifyingKey::from_spki_der(&short),
        Err(JwsError::MalformedSpki)
    ));
    // A point that is not on the curve fails verification, never panics.
    let es256 = key(Alg::ES256);
    let token = jws::sign(&Header::new(Alg::ES256), b"{}", &es256).unwrap();
    let off_curve = VerifyingKey::from_raw(Alg::ES256, &[4; 65]).unwrap();
    assert!(matches!(
        jws::decode(&token).unwrap().verify(&off_curve),
        Err(JwsError::BadSignature)
    ));
}
