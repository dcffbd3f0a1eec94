//! Unit tests of attestation checking, on chains built with rcgen inside the tests and tokens
//! signed with proto's JWS. The builders are `pub(crate)` for the licence tests.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tppguard_proto::claims::{ClaimsError, EAT_PROFILE};
use tppguard_proto::jws::{Header, MAX_JWS_BYTES, SigningKey};

use super::*;

pub(crate) const NOW: i64 = 1_750_000_000;
pub(crate) const DAY: i64 = 86_400;
pub(crate) const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Unix seconds as rcgen's time type.
macro_rules! dt {
    ($unix:expr) => {
        x509_parser::time::ASN1Time::from_timestamp($unix)
            .unwrap()
            .to_datetime()
    };
}

/// A CA: its parameters, key and certificate.
pub(crate) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub(crate) der: Vec<u8>,
}

impl Ca {
    pub(crate) fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.der.clone())
    }
}

/// A self-signed P-384 root, valid a year either side of NOW.
pub(crate) fn root(name: &str) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = CertificateParams::default();
    params.not_before = dt!(NOW - 365 * DAY);
    params.not_after = dt!(NOW + 365 * DAY);
    params.serial_number = Some(SerialNumber::from(1));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { params, key, der }
}

/// A node leaf profile: CA:false, digitalSignature, EKU clientAuth, valid NOW-1d..NOW+30d.
pub(crate) fn node_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = dt!(NOW - DAY);
    p.not_after = dt!(NOW + 30 * DAY);
    p.serial_number = Some(SerialNumber::from(77));
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "gpu-node-01");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// A licence-signer profile: the node profile with EKU tppguard licence signing.
pub(crate) fn signer_params() -> CertificateParams {
    let mut p = node_params();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "tppguard licence signer");
    p.extended_key_usages = vec![];
    let oid = crate::chain::LICENCE_SIGNING_EKU;
    let mut content = vec![0x30, u8::try_from(oid.len() + 2).unwrap(), 0x06];
    content.push(u8::try_from(oid.len()).unwrap());
    content.extend_from_slice(oid);
    p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 37], content)];
    p
}

/// A leaf with a fresh `alg` key issued by `ca`: the chain (leaf, CA) and the signing key.
pub(crate) fn issue(
    alg: &'static SignatureAlgorithm,
    params: &CertificateParams,
    ca: &Ca,
) -> (Vec<Vec<u8>>, SigningKey) {
    let key = KeyPair::generate_for(alg).unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    (vec![der, ca.der.clone()], jws_key(&key))
}

/// proto's signing key for an rcgen key pair.
pub(crate) fn jws_key(key: &KeyPair) -> SigningKey {
    SigningKey::from_pkcs8_any(&key.serialize_der()).unwrap()
}

/// A valid claim set (one H100) answering NONCE, made at `iat`.
fn claims(iat: i64, nonce: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "iss": "gpu-node-01",
        "iat": iat,
        "eat_nonce": nonce,
        "eat_profile": EAT_PROFILE,
        "submods": {
            "gpu0": {
                "index": 0,
                "status": "ok",
                "uuid": "GPU-9fa5439d-6347-8c64-bff6-eeb625ed8eed",
                "serial": "1654922007636",
                "name": "NVIDIA H100 80GB HBM3",
                "pci": {"bus_id": "00000000:20:00.0", "vendor_id": "0x10de",
                        "device_id": "0x2330", "subsystem_id": null},
                "multiprocessor_count": 132,
                "memory_total_bytes": 85_899_345_920_u64,
                "max_sm_clock_mhz": 1980,
                "mig": null,
                "absent": {},
                "classification": {"tpp": 15831.2, "tpp_basis": "fp8",
                                   "performance_density": 19.45, "eccn": "3A090.a"}
            }
        },
        "tppguard.host": {"cpu_arch": "x86_64", "cpu_count": 2, "memory_bytes": 25_276_063_744_u64},
        "tppguard.evidence_tier": "declared",
        "tppguard.driver": {"driver_version": "550.90.07", "absent": {}}
    }))
    .unwrap()
}

/// A node under an operator root, and anchors pinning that root.
struct Node {
    root: Ca,
    chain: Vec<Vec<u8>>,
    key: SigningKey,
    trust: TrustAnchors,
}

fn node() -> Node {
    let root = root("operator");
    let (chain, key) = issue(&PKCS_ED25519, &node_params(), &root);
    let trust = TrustAnchors::from_der_roots(&[root.cert()], &[]).unwrap();
    Node {
        root,
        chain,
        key,
        trust,
    }
}

impl Node {
    fn header(&self) -> Header {
        Header::new(self.key.alg())
            .with_typ(ATTESTATION_TYP)
            .with_x5c(self.chain.clone())
    }

    fn token(&self, payload: &[u8]) -> String {
        jws::sign(&self.header(), payload, &self.key).unwrap()
    }

    fn check(&self, token: &str) -> Result<VerifiedAttestation, AttestationError> {
        verify_attestation(token, &self.trust, NOW, Some(&Nonce::parse(NONCE).unwrap()))
    }
}

/// The code of a rejection (the check must fail).
fn code(result: Result<VerifiedAttestation, AttestationError>) -> &'static str {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            assert!(!e.sentence().is_empty());
            e.code()
        }
    }
}

/// A token from raw header JSON, payload and signature bytes.
fn raw_token(header: &Value, payload: &[u8], signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn x5c_json(chain: &[Vec<u8>]) -> Value {
    json!(chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>())
}

#[test]
fn valid_attestation_for_each_key_algorithm() {
    let root = root("operator");
    let trust = TrustAnchors::from_der_roots(&[root.cert()], &[]).unwrap();
    for alg in [
        &PKCS_ED25519,
        &PKCS_ECDSA_P256_SHA256,
        &PKCS_ECDSA_P384_SHA384,
    ] {
        let (chain, key) = issue(alg, &node_params(), &root);
        let header = Header::new(key.alg())
            .with_typ(ATTESTATION_TYP)
            .with_x5c(chain);
        let token = jws::sign(&header, &claims(NOW, NONCE), &key).unwrap();
        let nonce = Nonce::parse(NONCE).unwrap();
        verify_attestation(&token, &trust, NOW, Some(&nonce)).unwrap();
        // Without an expected nonce (replay checks done elsewhere).
        verify_attestation(&token, &trust, NOW, None).unwrap();
    }
}

#[test]
fn token_hash_is_sha256_of_the_token() {
    // The hash handed to the policy is of the exact compact text.
    let n = node();
    let token = n.token(&claims(NOW, NONCE));
    let hash = digest::digest(&digest::SHA256, token.as_bytes());
    let v = n.check(&token).unwrap();
    assert_eq!(v.token_sha256().as_slice(), hash.as_ref());
    assert_eq!(v.node_subject(), "CN=gpu-node-01");
    assert_eq!(v.claims().iat, NOW);
}

#[test]
fn bad_signature() {
    let n = node();
    let token = n.token(&claims(NOW, NONCE));
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{signed}.{}", String::from_utf8(sig).unwrap());
    assert_eq!(code(n.check(&tampered)), "jws_bad_signature");
}

#[test]
fn payload_swapped_between_two_attestations() {
    let n = node();
    let a = n.token(&claims(NOW, NONCE));
    let b = n.token(&claims(NOW - 60, NONCE));
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let swapped = format!("{}.{}.{}", a[0], b[1], a[2]);
    assert_eq!(code(n.check(&swapped)), "jws_bad_signature");
}

#[test]
fn alg_none_is_rejected() {
    let n = node();
    let header = json!({"alg": "none", "typ": ATTESTATION_TYP, "x5c": x5c_json(&n.chain)});
    let payload = claims(NOW, NONCE);
    assert_eq!(
        code(n.check(&raw_token(&header, &payload, b""))),
        "jws_empty_signature"
    );
    assert_eq!(
        code(n.check(&raw_token(&header, &payload, &[0; 64]))),
        "jws_unsupported_alg"
    );
}

#[test]
fn hs256_keyed_with_the_certificate_is_rejected() {
    let n = node();
    let header = json!({"alg": "HS256", "typ": ATTESTATION_TYP, "x5c": x5c_json(&n.chain)});
    let payload = claims(NOW, NONCE);
    let unsigned = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(&payload)
    );
    // The classic confusion: the public certificate (or its key) as the HMAC secret.
    for secret in [
        n.chain[0].as_slice(),
        n.key.public_key_spki_der().as_slice(),
    ] {
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            unsigned.as_bytes(),
        );
        let token = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(code(n.check(&token)), "jws_unsupported_alg");
    }
}

#[test]
fn key_not_matching_x5c() {
    let n = node();
    // Another Ed25519 key, the node's chain: the signature fails under the leaf key.
    let other = jws_key(&KeyPair::generate_for(&PKCS_ED25519).unwrap());
    let token = jws::sign(&n.header(), &claims(NOW, NONCE), &other).unwrap();
    assert_eq!(code(n.check(&token)), "jws_bad_signature");
    // A P-256 key (ES256) with the Ed25519 node's chain: the header's alg is not the leaf's.
    let p256 = jws_key(&KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap());
    let header = Header::new(p256.alg())
        .with_typ(ATTESTATION_TYP)
        .with_x5c(n.chain.clone());
    let token = jws::sign(&header, &claims(NOW, NONCE), &p256).unwrap();
    let e = n.check(&token).unwrap_err();
    assert!(matches!(
        e,
        AttestationError::KeyDoesNotMatchX5c {
            header: Alg::ES256,
            key: KeyAlgorithm::Ed25519
        }
    ));
    assert_eq!(e.code(), "key_does_not_match_x5c");
}

#[test]
fn chain_to_an_unknown_root() {
    let n = node();
    let token = n.token(&claims(NOW, NONCE));
    let other = root("another operator");
    let trust = TrustAnchors::from_der_roots(&[other.cert()], &[n.root.cert()]).unwrap();
    let e = verify_attestation(&token, &trust, NOW, None).unwrap_err();
    assert_eq!(e.code(), "unknown_issuer");
    assert!(e.sentence().contains("chain"), "{}", e.sentence());
}

#[test]
fn certificate_outside_its_validity() {
    let n = node();
    let token = n.token(&claims(NOW, NONCE));
    let at_late = NOW + 31 * DAY;
    let e = verify_attestation(&token, &n.trust, at_late, None).unwrap_err();
    assert_eq!(e.code(), "cert_expired");
    let e = verify_attestation(&token, &n.trust, NOW - 2 * DAY, None).unwrap_err();
    assert_eq!(e.code(), "cert_not_yet_valid");
}

#[test]
fn leaf_used_as_a_ca() {
    let root = root("operator");
    let mut params = node_params();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let (chain, key) = issue(&PKCS_ED25519, &params, &root);
    let header = Header::new(key.alg())
        .with_typ(ATTESTATION_TYP)
        .with_x5c(chain);
    let token = jws::sign(&header, &claims(NOW, NONCE), &key).unwrap();
    let trust = TrustAnchors::from_der_roots(&[root.cert()], &[]).unwrap();
    let e = verify_attestation(&token, &trust, NOW, None).unwrap_err();
    assert_eq!(e.code(), "leaf_is_ca");
}

#[test]
fn nonce_mismatch_and_bad_claims() {
    let n = node();
    let token = n.token(&claims(NOW, NONCE));
    let other = Nonce::parse(&"ab".repeat(32)).unwrap();
    let e = verify_attestation(&token, &n.trust, NOW, Some(&other)).unwrap_err();
    assert!(matches!(e, AttestationError::NonceMismatch));
    assert_eq!(e.code(), "nonce_mismatch");
    // A signed claim set that is itself invalid keeps the claims code.
    let short = n.token(&claims(NOW, "0011"));
    let e = n.check(&short).unwrap_err();
    assert!(matches!(
        e,
        AttestationError::Claims(ClaimsError::ShortNonce { .. })
    ));
    assert_eq!(e.code(), "claims_short_nonce");
    assert_eq!(code(n.check(&n.token(b"[]"))), "claims_not_an_object");
}

#[test]
fn wrong_or_missing_typ() {
    let n = node();
    let payload = claims(NOW, NONCE);
    for typ in [Some("JWT"), Some("tppguard-licence+jwt"), None] {
        let mut header = Header::new(n.key.alg()).with_x5c(n.chain.clone());
        if let Some(typ) = typ {
            header = header.with_typ(typ);
        }
        let e = n
            .check(&jws::sign(&header, &payload, &n.key).unwrap())
            .unwrap_err();
        assert!(
            matches!(&e, AttestationError::WrongTyp { typ: t } if t.as_deref() == typ),
            "{e:?}"
        );
        assert_eq!(e.code(), "wrong_typ");
    }
}

#[test]
fn missing_x5c() {
    let n = node();
    let header = Header::new(n.key.alg()).with_typ(ATTESTATION_TYP);
    let token = jws::sign(&header, &claims(NOW, NONCE), &n.key).unwrap();
    assert_eq!(code(n.check(&token)), "missing_x5c");
    // An empty array is refused by the decoder.
    let header = json!({"alg": "EdDSA", "typ": ATTESTATION_TYP, "x5c": []});
    let token = raw_token(&header, &claims(NOW, NONCE), &[0; 64]);
    assert_eq!(code(n.check(&token)), "jws_x5c_empty");
}

#[test]
fn truncated_tokens() {
    let n = node();
    let token = n.token(&claims(NOW, NONCE));
    let (two_parts, _) = token.rsplit_once('.').unwrap();
    assert_eq!(code(n.check(two_parts)), "jws_part_count");
    assert_eq!(
        code(n.check(&format!("{two_parts}."))),
        "jws_empty_signature"
    );
    // The signature cut short by a few bytes (still valid base64url).
    let (_, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let short = format!("{two_parts}.{}", URL_SAFE_NO_PAD.encode(&sig[..60]));
    assert_eq!(code(n.check(&short)), "jws_signature_length");
    // Cut by characters, the last one is usually not canonical base64url.
    assert!(matches!(
        code(n.check(&token[..token.len() - 7])),
        "jws_malformed" | "jws_signature_length"
    ));
    // Cut inside the payload: no longer three parts.
    let first_dot = token.find('.').unwrap();
    assert_eq!(code(n.check(&token[..first_dot + 20])), "jws_part_count");
    assert_eq!(code(n.check("")), "jws_part_count");
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let n = node();
    let huge = "A".repeat(MAX_JWS_BYTES + 1);
    assert_eq!(code(n.check(&huge)), "jws_too_large");
    let token = n.token(&claims(NOW, NONCE));
    let padded = format!("{token}{}", "A".repeat(MAX_JWS_BYTES));
    assert_eq!(code(n.check(&padded)), "jws_too_large");
}

#[test]
fn codes_are_unique_snake_case_and_distinct_from_wrapped_codes() {
    let mut seen = HashSet::new();
    for c in AttestationError::CODES {
        assert!(seen.insert(c), "duplicate {c}");
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{c}"
        );
    }
    for c in JwsError::CODES
        .iter()
        .chain(ChainError::CODES)
        .chain(ClaimsError::CODES.iter())
    {
        assert!(seen.insert(c), "{c} is defined twice");
    }
    let own = [
        AttestationError::WrongTyp { typ: None },
        AttestationError::MissingX5c,
        AttestationError::KeyDoesNotMatchX5c {
            header: Alg::EdDSA,
            key: KeyAlgorithm::P256,
        },
        AttestationError::NonceMismatch,
    ];
    let codes: Vec<&str> = own.iter().map(AttestationError::code).collect();
    assert_eq!(codes, AttestationError::CODES);
    assert_eq!(
        AttestationError::from(ChainError::UnknownIssuer).code(),
        "unknown_issuer"
    );
    assert_eq!(
        AttestationError::from(JwsError::BadSignature).code(),
        "jws_bad_signature"
    );
}
