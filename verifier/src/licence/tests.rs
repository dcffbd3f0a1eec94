//! Unit tests of signed-licence checks and the `--at` time parser.

use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use tppguard_proto::claims::ATTESTATION_TYP;

use super::*;
use crate::attestation::tests::{DAY, NOW, issue, node_params, root, signer_params};

const EXAMPLE: &str = include_str!("../../../examples/licence.toml");

fn example() -> Licence {
    Licence::from_toml_str(EXAMPLE).unwrap()
}

/// Signs `payload` as a licence with `key` and `x5c`.
fn sign_licence(payload: &[u8], key: &SigningKey, x5c: &[Vec<u8>], typ: &str) -> String {
    let header = Header::new(key.alg()).with_typ(typ).with_x5c(x5c.to_vec());
    jws::sign(&header, payload, key).unwrap()
}

fn code(result: Result<VerifiedLicence, LicenceVerifyError>) -> &'static str {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            assert!(!e.sentence().is_empty());
            e.code()
        }
    }
}

#[test]
fn a_signed_licence_verifies_and_round_trips() {
    let lic_root = root("licence authority");
    let trust = TrustAnchors::from_der_roots(&[], &[lic_root.cert()]).unwrap();
    for alg in [&PKCS_ED25519, &PKCS_ECDSA_P256_SHA256] {
        let (chain, key) = issue(alg, &signer_params(), &lic_root);
        let token = sign_licence(&example().to_json().unwrap(), &key, &chain, LICENCE_TYP);
        verify_licence(&token, &trust, NOW).unwrap();
        let (licence, leaf) = verify_licence_parts(&token, &trust, NOW).unwrap();
        assert_eq!(licence, example());
        assert_eq!(leaf.subject(), "CN=tppguard licence signer");
    }
}

#[test]
fn the_licence_window_is_not_a_verification_failure() {
    // NOW (2025) is before the example's valid_from (2026): it verifies, and is not in force.
    let lic_root = root("licence authority");
    let trust = TrustAnchors::from_der_roots(&[], &[lic_root.cert()]).unwrap();
    let (chain, key) = issue(&PKCS_ED25519, &signer_params(), &lic_root);
    let token = sign_licence(&example().to_json().unwrap(), &key, &chain, LICENCE_TYP);
    let (licence, _) = verify_licence_parts(&token, &trust, NOW).unwrap();
    assert_eq!(licence.is_valid_at(NOW).code(), "licence_not_yet_valid");
}

#[test]
fn a_licence_from_the_wrong_authority() {
    let op_root = root("operator");
    let lic_root = root("licence authority");
    let trust = TrustAnchors::from_der_roots(&[op_root.cert()], &[lic_root.cert()]).unwrap();
    let payload = example().to_json().unwrap();
    // A node key (clientAuth) from the operator CA signs a licence.
    let (chain, key) = issue(&PKCS_ED25519, &node_params(), &op_root);
    let token = sign_licence(&payload, &key, &chain, LICENCE_TYP);
    assert_eq!(code(verify_licence(&token, &trust, NOW)), "wrong_eku");
    // Even with a licence-signing profile, the operator root is not the licence authority.
    let (chain, key) = issue(&PKCS_ED25519, &signer_params(), &op_root);
    let token = sign_licence(&payload, &key, &chain, LICENCE_TYP);
    let e = verify_licence(&token, &trust, NOW).unwrap_err();
    assert!(matches!(
        e,
        LicenceVerifyError::Chain(ChainError::UnknownIssuer)
    ));
    assert_eq!(e.code(), "unknown_issuer");
}

#[test]
fn tampered_wrong_typ_and_invalid_payload() {
    let lic_root = root("licence authority");
    let trust = TrustAnchors::from_der_roots(&[], &[lic_root.cert()]).unwrap();
    let (chain, key) = issue(&PKCS_ED25519, &signer_params(), &lic_root);
    let payload = example().to_json().unwrap();
    let token = sign_licence(&payload, &key, &chain, LICENCE_TYP);
    // Raise the device cap in the payload, keeping the signature.
    let text = String::from_utf8(payload.clone()).unwrap();
    let raised = text.replace("\"max_devices\":2048", "\"max_devices\":4096");
    assert_ne!(raised, text);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            raised.as_bytes()
        ),
        parts[2]
    );
    assert_eq!(
        code(verify_licence(&forged, &trust, NOW)),
        "jws_bad_signature"
    );
    // An attestation is not a licence.
    let token = sign_licence(&payload, &key, &chain, ATTESTATION_TYP);
    assert_eq!(code(verify_licence(&token, &trust, NOW)), "wrong_typ");
    // A properly signed payload that is not a valid licence.
    let token = sign_licence(b"{\"id\":\"x\"}", &key, &chain, LICENCE_TYP);
    assert_eq!(code(verify_licence(&token, &trust, NOW)), "invalid_json");
    // The signer's certificate has expired at the instant asked about.
    let token = sign_licence(&payload, &key, &chain, LICENCE_TYP);
    assert_eq!(
        code(verify_licence(&token, &trust, NOW + 31 * DAY)),
        "cert_expired"
    );
}

#[test]
fn own_codes_match_the_list() {
    let own = [
        LicenceVerifyError::WrongTyp { typ: None },
        LicenceVerifyError::MissingX5c,
        LicenceVerifyError::KeyDoesNotMatchX5c {
            header: Alg::EdDSA,
            key: KeyAlgorithm::P384,
        },
    ];
    let codes: Vec<&str> = own.iter().map(LicenceVerifyError::code).collect();
    assert_eq!(codes, LicenceVerifyError::CODES);
    for c in LicenceVerifyError::CODES {
        assert!(crate::attestation::AttestationError::CODES.contains(&c));
    }
}

#[test]
fn at_parses_unix_seconds_and_rfc3339() {
    assert_eq!(parse_at("0"), Ok(0));
    assert_eq!(parse_at("1750000000"), Ok(1_750_000_000));
    assert_eq!(parse_at("-5"), Ok(-5));
    assert_eq!(parse_at("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_at("2028-01-01T00:00:00Z"), Ok(1_830_297_600));
    assert_eq!(parse_at("2028-01-01t00:00:00z"), Ok(1_830_297_600));
    assert_eq!(parse_at("2028-01-01T05:30:00+05:30"), Ok(1_830_297_600));
    assert_eq!(parse_at("2027-12-31T19:00:00-05:00"), Ok(1_830_297_600));
    assert_eq!(parse_at("2028-01-01T00:00:00.000Z"), Ok(1_830_297_600));
    assert_eq!(parse_at("2024-02-29T12:00:00Z"), Ok(1_709_208_000));
    assert_eq!(parse_at("9999-12-31T23:59:59Z"), Ok(253_402_300_799));
    for bad in [
        "",
        "-",
        "soon",
        "2028-01-01",
        "2028-01-01T00:00:00",
        "2028-01-01 00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2028-13-01T00:00:00Z",
        "2028-01-01T24:00:00Z",
        "2028-01-01T23:59:60Z",
        "2028-01-01T00:00:00.5Z",
        "2028-01-01T00:00:00+5:00",
        "2028-01-01T00:00:00+24:00",
        "1969-12-31T23:59:59Z",
        "+028-01-01T00:00:00Z",
        "99999999999999999999",
        "2028-01-01T00:00:00Zjunk",
    ] {
        assert!(parse_at(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn format_agrees_with_proto_and_round_trips() {
    // proto writes the licence's instants as RFC 3339 in its JSON form.
    let json: serde_json::Value = serde_json::to_value(example()).unwrap();
    assert_eq!(json["valid_from"], format_rfc3339(example().valid_from()));
    assert_eq!(json["valid_until"], format_rfc3339(example().valid_until()));
    for t in [
        0,
        59,
        951_782_400,
        1_709_208_000,
        1_830_297_599,
        253_402_300_799,
    ] {
        assert_eq!(parse_at(&format_rfc3339(t)), Ok(t), "{t}");
    }
    assert_eq!(format_rfc3339(-1), "1970-01-01T00:00:00Z");
}
