//! Unit tests of chain validation, on chains built with rcgen inside the tests (webpki's way).

use std::collections::HashSet;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    RevocationReason, RevokedCertParams, SerialNumber, SignatureAlgorithm,
};

use super::*;

const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

/// Unix seconds as rcgen's time type.
macro_rules! dt {
    ($unix:expr) => {
        x509_parser::time::ASN1Time::from_timestamp($unix)
            .unwrap()
            .to_datetime()
    };
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
    fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.der.clone())
    }
}

fn ca_params(name: &str, serial: u64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = dt!(NOW - 365 * DAY);
    p.not_after = dt!(NOW + 365 * DAY);
    p.serial_number = Some(SerialNumber::from(serial));
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn root(alg: &'static SignatureAlgorithm, name: &str) -> Ca {
    let key = KeyPair::generate_for(alg).unwrap();
    let params = ca_params(name, 1);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { params, key, der }
}

fn intermediate(alg: &'static SignatureAlgorithm, parent: &Ca, name: &str, serial: u64) -> Ca {
    let key = KeyPair::generate_for(alg).unwrap();
    let params = ca_params(name, serial);
    let der = params
        .signed_by(&key, &parent.issuer())
        .unwrap()
        .der()
        .to_vec();
    Ca { params, key, der }
}

/// A good node leaf profile: CA:false, digitalSignature, EKU clientAuth, 30 days.
fn leaf_params(serial: u64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = dt!(NOW - DAY);
    p.not_after = dt!(NOW + 30 * DAY);
    p.serial_number = Some(SerialNumber::from(serial));
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "gpu-node-01");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

fn leaf(alg: &'static SignatureAlgorithm, params: &CertificateParams, ca: &Ca) -> Vec<u8> {
    let key = KeyPair::generate_for(alg).unwrap();
    params.signed_by(&key, &ca.issuer()).unwrap().der().to_vec()
}

fn operator_trust(root: &Ca) -> TrustAnchors {
    TrustAnchors::from_der_roots(&[root.cert()], &[]).unwrap()
}

/// Root (P-384) -> leaf with `params` (Ed25519), verified at NOW.
fn check(params: &CertificateParams) -> Result<VerifiedNodeChain, ChainError> {
    let root = root(&PKCS_ECDSA_P384_SHA384, "root");
    let leaf = leaf(&PKCS_ED25519, params, &root);
    verify_node_chain(&[leaf, root.der.clone()], &operator_trust(&root), NOW, &[])
}

#[test]
fn valid_chains_for_each_algorithm() {
    let algs: [(&'static SignatureAlgorithm, KeyAlgorithm); 3] = [
        (&PKCS_ED25519, KeyAlgorithm::Ed25519),
        (&PKCS_ECDSA_P256_SHA256, KeyAlgorithm::P256),
        (&PKCS_ECDSA_P384_SHA384, KeyAlgorithm::P384),
    ];
    for (root_alg, _) in &algs {
        for (leaf_alg, expected) in &algs {
            let root = root(root_alg, "root");
            let mid = intermediate(&PKCS_ECDSA_P256_SHA256, &root, "intermediate", 2);
            let leaf = leaf(leaf_alg, &leaf_params(77), &mid);
            let chain = [leaf.clone(), mid.der.clone(), root.der.clone()];
            let v = verify_node_chain(&chain, &operator_trust(&root), NOW, &[]).unwrap();
            let l = v.leaf();
            assert_eq!(l.key_algorithm(), *expected);
            assert_eq!(l.subject(), "CN=gpu-node-01");
            assert_eq!(l.serial(), "4d");
            assert_eq!(l.not_after(), NOW + 30 * DAY);
            assert_eq!(l.not_before(), NOW - DAY);
            assert_eq!(l.chain_len(), 3);
            let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
            assert_eq!(l.spki_der(), cert.public_key().raw);
            // The root may be left out of x5c.
            verify_node_chain(&chain[..2], &operator_trust(&root), NOW, &[]).unwrap();
        }
    }
}

#[test]
fn standard_ekus_and_none_are_accepted() {
    let mut p = leaf_params(5);
    p.extended_key_usages = vec![];
    check(&p).unwrap();
    p.custom_extensions = vec![eku(&[NODE_ATTESTATION_EKU])];
    check(&p).unwrap();
    p.custom_extensions = vec![eku(&[CLIENT_AUTH_EKU, NODE_ATTESTATION_EKU])];
    check(&p).unwrap();
}

/// An EKU extension with these OIDs (DER value bytes).
fn eku(oids: &[&[u8]]) -> CustomExtension {
    let mut body = Vec::new();
    for oid in oids {
        body.extend([0x06, u8::try_from(oid.len()).unwrap()]);
        body.extend_from_slice(oid);
    }
    let mut content = vec![0x30, u8::try_from(body.len()).unwrap()];
    content.extend(body);
    CustomExtension::from_oid_content(&[2, 5, 29, 37], content)
}

#[test]
fn chain_to_an_unknown_root() {
    let root_a = root(&PKCS_ED25519, "root A");
    let root_b = root(&PKCS_ED25519, "root B");
    let leaf = leaf(&PKCS_ED25519, &leaf_params(3), &root_a);
    let e = verify_node_chain(&[leaf], &operator_trust(&root_b), NOW, &[]).unwrap_err();
    assert_eq!(e, ChainError::UnknownIssuer);
    assert_eq!(e.code(), "unknown_issuer");
}

#[test]
fn expired_and_not_yet_valid() {
    let root = root(&PKCS_ED25519, "root");
    let leaf = leaf(&PKCS_ED25519, &leaf_params(3), &root);
    let chain = [leaf];
    let trust = operator_trust(&root);
    let late = NOW + 31 * DAY;
    assert_eq!(
        verify_node_chain(&chain, &trust, late, &[]).unwrap_err(),
        ChainError::Expired {
            at: late,
            not_after: NOW + 30 * DAY
        }
    );
    let early = NOW - 2 * DAY;
    assert_eq!(
        verify_node_chain(&chain, &trust, early, &[]).unwrap_err(),
        ChainError::NotYetValid {
            at: early,
            not_before: NOW - DAY
        }
    );
    assert_eq!(
        verify_node_chain(&chain, &trust, -1, &[]).unwrap_err(),
        ChainError::InvalidTime { at: -1 }
    );
}

#[test]
fn leaf_that_is_a_ca() {
    let mut p = leaf_params(3);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    assert_eq!(check(&p).unwrap_err(), ChainError::LeafIsCa);
}

#[test]
fn leaf_without_digital_signature() {
    let mut p = leaf_params(3);
    p.key_usages = vec![KeyUsagePurpose::ContentCommitment];
    assert_eq!(check(&p).unwrap_err(), ChainError::MissingDigitalSignature);
    p.key_usages = vec![];
    assert_eq!(check(&p).unwrap_err(), ChainError::MissingDigitalSignature);
}

#[test]
fn unknown_critical_extension_on_the_leaf() {
    let mut p = leaf_params(3);
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0]);
    ext.set_criticality(true);
    p.custom_extensions = vec![ext];
    assert_eq!(
        check(&p).unwrap_err(),
        ChainError::UnknownCriticalExtension {
            oid: "1.3.6.1.4.1.99999.1".to_owned()
        }
    );
    // The same extension, non-critical, is ignored.
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0]);
    ext.set_criticality(false);
    p.custom_extensions = vec![ext];
    check(&p).unwrap();
}

#[test]
fn eku_present_but_wrong() {
    let mut p = leaf_params(3);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let e = check(&p).unwrap_err();
    assert!(matches!(e, ChainError::WrongEku { .. }), "{e:?}");
    assert_eq!(e.code(), "wrong_eku");
    // The leaf check alone, as for an issuer-less EKU policy, says the same.
    let root = root(&PKCS_ED25519, "root");
    let der = leaf(&PKCS_ED25519, &p, &root);
    assert!(matches!(
        check_leaf(&der, Role::Node, 1),
        Err(ChainError::WrongEku { .. })
    ));
}

#[test]
fn node_and_licence_roles_are_separate() {
    let op_root = root(&PKCS_ED25519, "operator");
    let lic_root = root(&PKCS_ECDSA_P384_SHA384, "licence authority");
    let trust = TrustAnchors::from_der_roots(&[op_root.cert()], &[lic_root.cert()]).unwrap();
    let mut signer = leaf_params(9);
    signer.extended_key_usages = vec![];
    signer.custom_extensions = vec![eku(&[LICENCE_SIGNING_EKU])];
    let signer = [
        leaf(&PKCS_ED25519, &signer, &lic_root),
        lic_root.der.clone(),
    ];
    verify_licence_signer_chain(&signer, &trust, NOW, &[]).unwrap();
    // A licence signer is not a node (webpki checks the leaf's EKU before the path)...
    assert!(matches!(
        verify_node_chain(&signer, &trust, NOW, &[]),
        Err(ChainError::WrongEku { .. })
    ));
    // ...and the licence root does not issue nodes.
    let mut plain = leaf_params(11);
    plain.extended_key_usages = vec![];
    let plain = [leaf(&PKCS_ED25519, &plain, &lic_root)];
    assert_eq!(
        verify_node_chain(&plain, &trust, NOW, &[]).unwrap_err(),
        ChainError::UnknownIssuer
    );
    verify_licence_signer_chain(&plain, &trust, NOW, &[]).unwrap();
    // A node certificate (clientAuth) from the licence root is not a licence signer.
    let node = [leaf(&PKCS_ED25519, &leaf_params(10), &lic_root)];
    assert!(matches!(
        verify_licence_signer_chain(&node, &trust, NOW, &[]),
        Err(ChainError::WrongEku { .. })
    ));
}

#[test]
fn chain_too_long_and_cert_too_large_before_parsing() {
    let junk = vec![vec![0u8; 10]; MAX_CHAIN_CERTS + 1];
    let trust = TrustAnchors::default();
    assert_eq!(
        verify_node_chain(&junk, &trust, NOW, &[]).unwrap_err(),
        ChainError::ChainTooLong {
            len: 9,
            max: MAX_CHAIN_CERTS
        }
    );
    let big = vec![vec![0u8; 10], vec![0u8; MAX_CERT_BYTES + 1]];
    assert_eq!(
        verify_node_chain(&big, &trust, NOW, &[]).unwrap_err(),
        ChainError::CertTooLarge {
            index: 1,
            len: MAX_CERT_BYTES + 1,
            max: MAX_CERT_BYTES
        }
    );
    assert_eq!(
        verify_node_chain(&[], &trust, NOW, &[]).unwrap_err(),
        ChainError::Empty
    );
    assert!(matches!(
        verify_node_chain(&[vec![0x30, 0x03, 1, 2, 3]], &trust, NOW, &[]),
        Err(ChainError::Malformed { .. })
    ));
}

#[test]
fn a_long_real_chain_is_rejected_by_length() {
    let root = root(&PKCS_ED25519, "root");
    let mut cas = vec![root];
    for i in 0..8u64 {
        let next = intermediate(
            &PKCS_ED25519,
            cas.last().unwrap(),
            &format!("ca {i}"),
            i + 2,
        );
        cas.push(next);
    }
    let leaf = leaf(&PKCS_ED25519, &leaf_params(99), cas.last().unwrap());
    let mut chain = vec![leaf];
    chain.extend(cas.iter().rev().map(|c| c.der.clone()));
    let e = verify_node_chain(&chain, &operator_trust(&cas[0]), NOW, &[]).unwrap_err();
    assert_eq!(e, ChainError::ChainTooLong { len: 10, max: 8 });
}

fn crl(ca: &Ca, revoked: &[u64], next_update: i64) -> CrlDer {
    CertificateRevocationListParams {
        this_update: dt!(NOW - DAY),
        next_update: dt!(next_update),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: dt!(NOW - DAY),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer())
    .unwrap()
    .der()
    .clone()
}

#[test]
fn revoked_set_finds_a_revoked_certificate_of_a_chain() {
    let root = root(&PKCS_ECDSA_P384_SHA384, "root");
    let inter = intermediate(&PKCS_ED25519, &root, "intermediate", 7);
    let chain = [
        leaf(&PKCS_ED25519, &leaf_params(42), &inter),
        inter.der.clone(),
    ];
    assert_eq!(RevokedSet::from_crls(&[]).revoked_in(&chain), None);
    // The same serial under another issuer is another certificate.
    let by_root = RevokedSet::from_crls(&[crl(&root, &[42], NOW + DAY)]);
    assert_eq!(by_root.len(), 1);
    assert_eq!(by_root.revoked_in(&chain), None);
    let leaf_revoked = RevokedSet::from_crls(&[crl(&inter, &[41, 42], NOW + DAY)]);
    let found = leaf_revoked.revoked_in(&chain).unwrap();
    assert_eq!(found.subject, "CN=gpu-node-01");
    assert_eq!(found.serial, "2a");
    // A revoked intermediate revokes every node under it.
    let inter_revoked = RevokedSet::from_crls(&[crl(&root, &[7], NOW + DAY)]);
    assert_eq!(
        inter_revoked.revoked_in(&chain).unwrap().subject,
        "CN=intermediate"
    );
    // Junk in place of a CRL or a certificate contributes nothing.
    assert!(RevokedSet::from_crls(&[CrlDer::from(vec![0x30, 0x00])]).is_empty());
    assert_eq!(leaf_revoked.revoked_in(&[vec![0x30, 0x00]]), None);
}

#[test]
fn revoked_via_crl() {
    let root = root(&PKCS_ECDSA_P384_SHA384, "root");
    let trust = operator_trust(&root);
    let chain = [leaf(&PKCS_ED25519, &leaf_params(42), &root)];
    let revoking = crl(&root, &[41, 42], NOW + 7 * DAY);
    assert_eq!(
        verify_node_chain(&chain, &trust, NOW, std::slice::from_ref(&revoking)).unwrap_err(),
        ChainError::Revoked
    );
    // A CRL not listing it: valid.
    let other = crl(&root, &[41], NOW + 7 * DAY);
    verify_node_chain(&chain, &trust, NOW, &[other]).unwrap();
    // An expired CRL is an error, not a pass.
    let stale = crl(&root, &[41], NOW - 1);
    assert_eq!(
        verify_node_chain(&chain, &trust, NOW, &[stale]).unwrap_err(),
        ChainError::CrlExpired {
            at: NOW,
            next_update: NOW - 1
        }
    );
    // Garbage instead of a CRL.
    let junk = CrlDer::from(vec![0x30, 0x00]);
    assert_eq!(
        verify_node_chain(&chain, &trust, NOW, &[junk]).unwrap_err(),
        ChainError::BadCrl
    );
}

#[test]
fn codes_are_unique_snake_case_and_complete() {
    let mut seen = HashSet::new();
    for code in ChainError::CODES {
        assert!(seen.insert(code), "duplicate code {code}");
        assert!(
            !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !code.starts_with('_')
                && !code.ends_with('_'),
            "{code} is not snake_case"
        );
    }
    let samples = [
        ChainError::Empty,
        ChainError::ChainTooLong { len: 0, max: 0 },
        ChainError::CertTooLarge {
            index: 0,
            len: 0,
            max: 0,
        },
        ChainError::InvalidTime { at: 0 },
        ChainError::Expired {
            at: 0,
            not_after: 0,
        },
        ChainError::NotYetValid {
            at: 0,
            not_before: 0,
        },
        ChainError::UnknownIssuer,
        ChainError::BadSignature,
        ChainError::UnsupportedAlgorithm,
        ChainError::LeafIsCa,
        ChainError::BadIssuer,
        ChainError::UnknownCriticalExtension { oid: String::new() },
        ChainError::MissingDigitalSignature,
        ChainError::WrongEku { expected: "" },
        ChainError::Revoked,
        ChainError::CrlExpired {
            at: 0,
            next_update: 0,
        },
        ChainError::BadCrl,
        ChainError::UnsupportedKeyAlgorithm { oid: String::new() },
        ChainError::Malformed { detail: "" },
        ChainError::BudgetExceeded,
        ChainError::BadCertifiedSite {
            detail: String::new(),
        },
        ChainError::WeakPublicKey {
            index: 0,
            problem: Ed25519KeyProblem::SmallOrder,
        },
        ChainError::RootExpired {
            at: 0,
            not_after: 0,
        },
        ChainError::RootNotYetValid {
            at: 0,
            not_before: 0,
        },
        ChainError::RootNotCa,
        ChainError::RootPathLenExceeded {
            intermediates: 1,
            max: 0,
        },
    ];
    let codes: HashSet<_> = samples.iter().map(ChainError::code).collect();
    assert_eq!(codes.len(), samples.len(), "every variant has its own code");
    assert_eq!(codes, ChainError::CODES.iter().copied().collect());
}

#[test]
fn trust_toml_loads_roots_and_crls_relative_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let op = root(&PKCS_ECDSA_P384_SHA384, "operator");
    let lic = root(&PKCS_ED25519, "licence");
    std::fs::write(
        dir.path().join("op.pem"),
        op.params.self_signed(&op.key).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lic.pem"),
        lic.params.self_signed(&lic.key).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("op.crl"), crl(&op, &[7], NOW + DAY)).unwrap();
    let path = dir.path().join("trust.toml");
    std::fs::write(
        &path,
        "[operator]\nroots = [\"op.pem\"]\ncrls = [\"op.crl\"]\n\
         [licence_authority]\nroots = [\"lic.pem\"]\n[vendor]\nroots = []\n",
    )
    .unwrap();
    let trust = TrustAnchors::from_trust_toml(&path).unwrap();
    assert_eq!(trust.counts(), (1, 1, 0));
    assert_eq!(trust.operator_crls().len(), 1);
    let chain = [leaf(&PKCS_ED25519, &leaf_params(7), &op)];
    assert_eq!(
        verify_node_chain(&chain, &trust, NOW, trust.operator_crls()).unwrap_err(),
        ChainError::Revoked
    );
}

#[test]
fn trust_toml_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.toml");
    std::fs::write(
        &path,
        "[operator]\nroots = []\nroot = []\n[licence_authority]\nroots = []\n",
    )
    .unwrap();
    let e = TrustAnchors::from_trust_toml(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("trust.toml") && e.contains("root"), "{e}");

    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    std::fs::write(
        &path,
        "[operator]\nroots = [\"bad.pem\"]\n[licence_authority]\nroots = []\n",
    )
    .unwrap();
    let e = TrustAnchors::from_trust_toml(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("trust.toml") && e.contains("operator.roots") && e.contains("bad.pem"),
        "{e}"
    );

    std::fs::write(
        &path,
        "[operator]\nroots = [\"missing.pem\"]\n[licence_authority]\nroots = []\n",
    )
    .unwrap();
    let e = TrustAnchors::from_trust_toml(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pem"), "{e}");
}

#[test]
fn remembered_chains_are_rechecked_outside_their_window() {
    let root = root(&PKCS_ECDSA_P384_SHA384, "root");
    // The intermediate expires 10 days from NOW, before the leaf does.
    let mid_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut mid_params = ca_params("intermediate", 2);
    mid_params.not_after = dt!(NOW + 10 * DAY);
    let mid = Ca {
        der: mid_params
            .signed_by(&mid_key, &root.issuer())
            .unwrap()
            .der()
            .to_vec(),
        params: mid_params,
        key: mid_key,
    };
    let chain = [leaf(&PKCS_ED25519, &leaf_params(9), &mid), mid.der.clone()];
    let trust = TrustAnchors {
        operator_crls: vec![crl(&root, &[41], NOW + 7 * DAY)],
        ..operator_trust(&root)
    };

    let first = trust.verify_node(&chain, NOW).unwrap();
    assert_eq!(trust.remembered_chains(), 1);
    assert_eq!(
        first,
        verify_node_chain(&chain, &trust, NOW, trust.operator_crls()).unwrap()
    );
    // A clone shares what was remembered, and a hit gives the same facts.
    let clone = trust.clone();
    assert_eq!(clone.verify_node(&chain, NOW + DAY).unwrap(), first);
    assert_eq!(trust.remembered_chains(), 1);

    // Before the leaf's notBefore, after the CRL's nextUpdate, after the intermediate's
    // notAfter: each is checked again and fails as an uncached check does.
    let early = NOW - 2 * DAY;
    assert_eq!(
        trust.verify_node(&chain, early).unwrap_err(),
        ChainError::NotYetValid {
            at: early,
            not_before: NOW - DAY
        }
    );
    assert_eq!(
        trust.verify_node(&chain, NOW + 7 * DAY).unwrap_err(),
        ChainError::CrlExpired {
            at: NOW + 7 * DAY,
            next_update: NOW + 7 * DAY
        }
    );
    let late = TrustAnchors {
        operator_crls: Vec::new(),
        ..operator_trust(&root)
    };
    late.verify_node(&chain, NOW).unwrap();
    assert_eq!(
        late.verify_node(&chain, NOW + 11 * DAY).unwrap_err().code(),
        "cert_expired"
    );
}

#[test]
fn only_the_same_bytes_and_role_hit_and_failures_are_not_remembered() {
    let ours = root(&PKCS_ED25519, "root");
    let trust = TrustAnchors::from_der_roots(&[ours.cert()], &[ours.cert()]).unwrap();
    let good = leaf(&PKCS_ED25519, &leaf_params(5), &ours);
    trust.verify_node(std::slice::from_ref(&good), NOW).unwrap();
    assert_eq!(trust.remembered_chains(), 1);

    // One byte changed in the signature: a different key, checked, rejected.
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        trust.verify_node(&[forged], NOW).unwrap_err().code(),
        "bad_signature"
    );
    // The same bytes for the other role are checked for that role (clientAuth is not a
    // licence-signing purpose).
    assert_eq!(
        trust
            .verify_licence_signer(std::slice::from_ref(&good), NOW)
            .unwrap_err()
            .code(),
        "wrong_eku"
    );
    // A chain to an unknown root.
    let stranger = root(&PKCS_ED25519, "stranger");
    let unknown = leaf(&PKCS_ED25519, &leaf_params(6), &stranger);
    assert_eq!(
        trust.verify_node(&[unknown], NOW).unwrap_err().code(),
        "unknown_issuer"
    );
    assert_eq!(trust.remembered_chains(), 1);
}

/// The identity point as an Ed25519 SubjectPublicKeyInfo: with it, the fixed signature
/// R = identity, S = 0 verifies (in ring) for every message.
fn identity_point_spki() -> rcgen::SubjectPublicKeyInfo {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.push(1);
    der.extend([0u8; 31]);
    rcgen::SubjectPublicKeyInfo::from_der(&der).unwrap()
}

#[test]
fn a_weak_ed25519_key_anywhere_in_the_chain_is_refused() {
    let root = root(&PKCS_ECDSA_P384_SHA384, "root");
    let trust = operator_trust(&root);
    // The leaf: the operator CA certified the identity point.
    let weak_leaf = leaf_params(9)
        .signed_by(&identity_point_spki(), &root.issuer())
        .unwrap()
        .der()
        .to_vec();
    let e = verify_node_chain(std::slice::from_ref(&weak_leaf), &trust, NOW, &[]).unwrap_err();
    assert_eq!(
        e,
        ChainError::WeakPublicKey {
            index: 0,
            problem: Ed25519KeyProblem::SmallOrder
        }
    );
    assert_eq!(e.code(), "weak_public_key");
    assert!(e.to_string().contains("certificate 0"), "{e}");
    // An intermediate with that key: refused before webpki could trust its signatures.
    let mut mid_params = ca_params("weak intermediate", 7);
    mid_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let weak_mid = mid_params
        .signed_by(&identity_point_spki(), &root.issuer())
        .unwrap()
        .der()
        .to_vec();
    let good_leaf = leaf(&PKCS_ED25519, &leaf_params(10), &root);
    assert!(matches!(
        verify_node_chain(&[good_leaf, weak_mid], &trust, NOW, &[]),
        Err(ChainError::WeakPublicKey { index: 1, .. })
    ));
    // The licence role refuses it the same way.
    let lic = TrustAnchors::from_der_roots(&[], &[root.cert()]).unwrap();
    assert!(matches!(
        verify_licence_signer_chain(&[weak_leaf], &lic, NOW, &[]),
        Err(ChainError::WeakPublicKey { index: 0, .. })
    ));
}

/// A root with these validity bounds and basic constraints.
fn root_with(not_before: i64, not_after: i64, is_ca: IsCa) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = ca_params("bounded root", 1);
    params.not_before = dt!(not_before);
    params.not_after = dt!(not_after);
    params.is_ca = is_ca;
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { params, key, der }
}

#[test]
fn a_pinned_root_outside_its_validity_is_refused() {
    let unconstrained = || IsCa::Ca(BasicConstraints::Unconstrained);
    let expired = root_with(NOW - 400 * DAY, NOW - 2 * DAY, unconstrained());
    let chain = [leaf(&PKCS_ED25519, &leaf_params(3), &expired)];
    assert_eq!(
        verify_node_chain(&chain, &operator_trust(&expired), NOW, &[]).unwrap_err(),
        ChainError::RootExpired {
            at: NOW,
            not_after: NOW - 2 * DAY
        }
    );
    let future = root_with(NOW + DAY, NOW + 400 * DAY, unconstrained());
    let chain = [leaf(&PKCS_ED25519, &leaf_params(3), &future)];
    let e = verify_node_chain(&chain, &operator_trust(&future), NOW, &[]).unwrap_err();
    assert_eq!(
        e,
        ChainError::RootNotYetValid {
            at: NOW,
            not_before: NOW + DAY
        }
    );
    assert_eq!(e.code(), "root_not_yet_valid");
    // Inside the root's validity the same chain passes.
    verify_node_chain(&chain, &operator_trust(&future), NOW + 2 * DAY, &[]).unwrap();
}

#[test]
fn a_renewed_root_with_the_same_name_and_key_still_validates() {
    // The old and the renewed root share subject and key: webpki tries both, and the one
    // valid at the validation time is used.
    let old = root_with(
        NOW - 400 * DAY,
        NOW - DAY,
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let mut renewed_params = old.params.clone();
    renewed_params.not_after = dt!(NOW + 400 * DAY);
    let renewed = renewed_params.self_signed(&old.key).unwrap().der().to_vec();
    let chain = [leaf(&PKCS_ED25519, &leaf_params(3), &old)];
    let trust =
        TrustAnchors::from_der_roots(&[old.cert(), CertificateDer::from(renewed)], &[]).unwrap();
    verify_node_chain(&chain, &trust, NOW, &[]).unwrap();
}

#[test]
fn a_pinned_root_must_be_a_ca() {
    for is_ca in [IsCa::ExplicitNoCa, IsCa::NoCa] {
        let not_ca = root_with(NOW - DAY, NOW + DAY, is_ca);
        let e = TrustAnchors::from_der_roots(&[not_ca.cert()], &[]).unwrap_err();
        assert_eq!(e, ChainError::RootNotCa);
        assert_eq!(e.code(), "root_not_ca");
        // And from trust.toml, naming the file, key and code.
        let dir = tempfile::tempdir().unwrap();
        let pem_text = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &not_ca.der)
        );
        std::fs::write(dir.path().join("leaf.pem"), pem_text).unwrap();
        let trust = dir.path().join("trust.toml");
        std::fs::write(
            &trust,
            "[operator]\nroots = [\"leaf.pem\"]\n[licence_authority]\nroots = []\n",
        )
        .unwrap();
        let e = TrustAnchors::from_trust_toml(&trust)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("operator.roots") && e.contains("leaf.pem") && e.contains("root_not_ca"),
            "{e}"
        );
    }
}

#[test]
fn a_pinned_roots_path_length_limits_the_intermediates() {
    let window = (NOW - 365 * DAY, NOW + 365 * DAY);
    let constrained = |n| {
        root_with(
            window.0,
            window.1,
            IsCa::Ca(BasicConstraints::Constrained(n)),
        )
    };
    // pathlen 0: a leaf straight below passes, an intermediate is refused.
    let root0 = constrained(0);
    let direct = leaf(&PKCS_ED25519, &leaf_params(3), &root0);
    verify_node_chain(&[direct], &operator_trust(&root0), NOW, &[]).unwrap();
    let mid = intermediate(&PKCS_ED25519, &root0, "intermediate", 2);
    let below = leaf(&PKCS_ED25519, &leaf_params(4), &mid);
    let e = verify_node_chain(&[below, mid.der.clone()], &operator_trust(&root0), NOW, &[])
        .unwrap_err();
    assert_eq!(
        e,
        ChainError::RootPathLenExceeded {
            intermediates: 1,
            max: 0
        }
    );
    assert_eq!(e.code(), "root_path_len_exceeded");
    // More certificates than pathlen 0 can use (leaf and root): refused before parsing.
    let junk = vec![vec![0u8; 10]; 3];
    assert_eq!(
        verify_node_chain(&junk, &operator_trust(&root0), NOW, &[]).unwrap_err(),
        ChainError::ChainTooLong { len: 3, max: 2 }
    );
    // pathlen 1: one intermediate passes.
    let root1 = constrained(1);
    let mid = intermediate(&PKCS_ED25519, &root1, "intermediate", 2);
    let below = leaf(&PKCS_ED25519, &leaf_params(4), &mid);
    verify_node_chain(&[below, mid.der.clone()], &operator_trust(&root1), NOW, &[]).unwrap();
}

#[test]
fn a_remembered_chain_is_not_reused_past_its_roots_expiry() {
    let root = root_with(
        NOW - DAY,
        NOW + 10 * DAY,
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let chain = [leaf(&PKCS_ED25519, &leaf_params(3), &root)];
    let trust = operator_trust(&root);
    trust.verify_node(&chain, NOW).unwrap();
    assert_eq!(trust.remembered_chains(), 1);
    assert!(matches!(
        trust.verify_node(&chain, NOW + 11 * DAY),
        Err(ChainError::RootExpired { .. })
    ));
}

/// The x5c an attacker crafts to buy path-building work: a leaf and seven CAs that all carry
/// the pinned root's name, each key signing the next CA, so at every step webpki checks the
/// signature of every candidate that bears the name (the pinned root and each CA not yet on
/// the path). Against a pathlen-0 root (what `pki init` makes) it is refused by its length,
/// before any parsing or signature check; an unconstrained root still admits the longest
/// chain. Run with `--nocapture` for the cost of each (issue 12).
#[test]
fn a_crafted_x5c_is_refused_before_path_building() {
    let window = (NOW - 365 * DAY, NOW + 365 * DAY);
    let crafted = |pinned: &Ca| {
        let keys: Vec<KeyPair> = (0..MAX_CHAIN_CERTS)
            .map(|_| KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap())
            .collect();
        let named = ca_params("bounded root", 1);
        let issuer = |i: usize| Issuer::from_params(&named, &keys[i % keys.len()]);
        let mut chain = vec![leaf_params(9).signed_by(&keys[0], &issuer(1)).unwrap()];
        for (i, key) in keys.iter().enumerate().skip(1) {
            let ca = ca_params("bounded root", i as u64 + 1);
            chain.push(ca.signed_by(key, &issuer(i + 1)).unwrap());
        }
        let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.der().to_vec()).collect();
        (chain, operator_trust(pinned))
    };
    let timed = |chain: &[Vec<u8>], trust: &TrustAnchors| {
        let started = std::time::Instant::now();
        let mut last = None;
        for _ in 0..5 {
            last = Some(verify_node_chain(chain, trust, NOW, &[]).unwrap_err());
        }
        (last.unwrap(), started.elapsed() / 5)
    };

    let constrained = root_with(
        window.0,
        window.1,
        IsCa::Ca(BasicConstraints::Constrained(0)),
    );
    let (chain, trust) = crafted(&constrained);
    let (refused, after) = timed(&chain, &trust);
    assert_eq!(
        refused,
        ChainError::ChainTooLong {
            len: MAX_CHAIN_CERTS,
            max: 2
        }
    );
    assert_eq!(refused.code(), "chain_too_long");

    let open = root_with(
        window.0,
        window.1,
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let (chain, trust) = crafted(&open);
    let (searched, before) = timed(&chain, &trust);
    assert_ne!(searched.code(), "chain_too_long", "{searched:?}");
    eprintln!(
        "crafted x5c of {MAX_CHAIN_CERTS} certificates: {before:?} per check when the roots \
         admit it ({}), {after:?} refused by length",
        searched.code()
    );
}

/// Every domain pinned once: operator, licence authority, vendor (shipment signers) and GPU
/// device roots, each its own root.
struct Domains {
    op: Ca,
    lic: Ca,
    vendor: Ca,
    gpu: Ca,
    trust: TrustAnchors,
}

fn domains() -> Domains {
    let op = root(&PKCS_ED25519, "operator");
    let lic = root(&PKCS_ECDSA_P384_SHA384, "licence authority");
    let vendor = root(&PKCS_ECDSA_P384_SHA384, "vendor");
    let gpu = root(&PKCS_ECDSA_P384_SHA384, "gpu device identity");
    let trust = TrustAnchors::from_der_roots(&[op.cert()], &[lic.cert()])
        .unwrap()
        .with_vendor_roots(&[vendor.cert()])
        .unwrap()
        .with_device_roots(&[gpu.cert()])
        .unwrap();
    Domains {
        op,
        lic,
        vendor,
        gpu,
        trust,
    }
}

/// A signer leaf whose EKU lists exactly `oids` (none: no EKU extension).
fn signer_params(serial: u64, oids: &[&[u8]]) -> CertificateParams {
    let mut p = leaf_params(serial);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "Example GPU Vendor shipment signer");
    p.extended_key_usages = vec![];
    if !oids.is_empty() {
        p.custom_extensions = vec![eku(oids)];
    }
    p
}

#[test]
fn a_shipment_signer_verifies_under_a_vendor_root_and_nothing_else_does() {
    let d = domains();
    assert_eq!(d.trust.counts(), (1, 1, 1));
    let signer = [
        leaf(
            &PKCS_ED25519,
            &signer_params(20, &[SHIPMENT_SIGNING_EKU]),
            &d.vendor,
        ),
        d.vendor.der.clone(),
    ];
    let v = d.trust.verify_shipment_signer(&signer, NOW).unwrap();
    assert_eq!(v.leaf().subject(), "CN=Example GPU Vendor shipment signer");
    // codeSigning, and no EKU at all, are the standard forms a vendor PKI may use.
    for oids in [&[CODE_SIGNING_EKU][..], &[]] {
        let chain = [leaf(&PKCS_ED25519, &signer_params(21, oids), &d.vendor)];
        d.trust.verify_shipment_signer(&chain, NOW).unwrap();
    }
    // Remembered as a shipment signer, it is still nothing else: no other domain's roots,
    // and its EKU names no other purpose.
    assert!(d.trust.verify_licence_signer(&signer, NOW).is_err());
    assert!(d.trust.verify_node(&signer, NOW).is_err());
    assert!(d.trust.verify_gpu_device(&signer, NOW).is_err());
    let plain = [leaf(&PKCS_ED25519, &signer_params(22, &[]), &d.vendor)];
    d.trust.verify_shipment_signer(&plain, NOW).unwrap();
    assert_eq!(
        d.trust.verify_licence_signer(&plain, NOW).unwrap_err(),
        ChainError::UnknownIssuer
    );
    assert_eq!(
        d.trust.verify_node(&plain, NOW).unwrap_err(),
        ChainError::UnknownIssuer
    );
    let p384 = [leaf(
        &PKCS_ECDSA_P384_SHA384,
        &signer_params(23, &[]),
        &d.vendor,
    )];
    d.trust.verify_shipment_signer(&p384, NOW).unwrap();
    assert_eq!(
        d.trust.verify_gpu_device(&p384, NOW).unwrap_err(),
        ChainError::UnknownIssuer
    );
}

#[test]
fn no_other_domains_signer_verifies_as_a_shipment_signer() {
    let d = domains();
    // The licence authority's signer, with its EKU, or none: its root is not a vendor root.
    for oids in [&[LICENCE_SIGNING_EKU][..], &[SHIPMENT_SIGNING_EKU], &[]] {
        let chain = [
            leaf(&PKCS_ED25519, &signer_params(30, oids), &d.lic),
            d.lic.der.clone(),
        ];
        assert!(
            d.trust.verify_shipment_signer(&chain, NOW).is_err(),
            "{oids:?}"
        );
    }
    let licence_signer = [leaf(&PKCS_ED25519, &signer_params(31, &[]), &d.lic)];
    d.trust.verify_licence_signer(&licence_signer, NOW).unwrap();
    assert_eq!(
        d.trust
            .verify_shipment_signer(&licence_signer, NOW)
            .unwrap_err(),
        ChainError::UnknownIssuer
    );
    // A node certificate, and a GPU's device leaf.
    let node = [leaf(&PKCS_ED25519, &leaf_params(32), &d.op)];
    d.trust.verify_node(&node, NOW).unwrap();
    assert!(d.trust.verify_shipment_signer(&node, NOW).is_err());
    let gpu = [leaf(
        &PKCS_ECDSA_P384_SHA384,
        &signer_params(33, &[]),
        &d.gpu,
    )];
    d.trust.verify_gpu_device(&gpu, NOW).unwrap();
    assert_eq!(
        d.trust.verify_shipment_signer(&gpu, NOW).unwrap_err(),
        ChainError::UnknownIssuer
    );
}

#[test]
fn a_vendor_root_does_not_make_another_purposes_signer_a_shipment_signer() {
    let d = domains();
    // Even under the vendor's own root, a leaf issued for another tppguard purpose is not a
    // shipment signer: a root pinned for one purpose never validates another's signer.
    for oids in [&[LICENCE_SIGNING_EKU][..], &[NODE_ATTESTATION_EKU]] {
        let chain = [leaf(&PKCS_ED25519, &signer_params(40, oids), &d.vendor)];
        assert!(matches!(
            d.trust.verify_shipment_signer(&chain, NOW),
            Err(ChainError::WrongEku { .. })
        ));
    }
    let mut client = leaf_params(41);
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let chain = [leaf(&PKCS_ED25519, &client, &d.vendor)];
    assert!(matches!(
        d.trust.verify_shipment_signer(&chain, NOW),
        Err(ChainError::WrongEku { .. })
    ));
    // No vendor root pinned: nothing is a shipment signer.
    let bare = TrustAnchors::from_der_roots(&[d.op.cert()], &[d.lic.cert()]).unwrap();
    let good = [leaf(
        &PKCS_ED25519,
        &signer_params(42, &[SHIPMENT_SIGNING_EKU]),
        &d.vendor,
    )];
    assert_eq!(
        bare.verify_shipment_signer(&good, NOW).unwrap_err(),
        ChainError::UnknownIssuer
    );
}

#[test]
fn vendor_crls_from_trust_toml_revoke_shipment_signers() {
    let dir = tempfile::tempdir().unwrap();
    let op = root(&PKCS_ECDSA_P384_SHA384, "operator");
    let vendor = root(&PKCS_ECDSA_P384_SHA384, "vendor");
    for (name, ca) in [("op.pem", &op), ("vendor.pem", &vendor)] {
        std::fs::write(
            dir.path().join(name),
            ca.params.self_signed(&ca.key).unwrap().pem(),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("vendor.crl"),
        crl(&vendor, &[51], NOW + DAY),
    )
    .unwrap();
    let path = dir.path().join("trust.toml");
    std::fs::write(
        &path,
        "[operator]\nroots = [\"op.pem\"]\n[licence_authority]\nroots = []\n\
         [vendor]\nroots = [\"vendor.pem\"]\ncrls = [\"vendor.crl\"]\n",
    )
    .unwrap();
    let trust = TrustAnchors::from_trust_toml(&path).unwrap();
    assert_eq!(trust.counts(), (1, 0, 1));
    assert_eq!(trust.vendor_crls().len(), 1);
    let revoked = [leaf(
        &PKCS_ED25519,
        &signer_params(51, &[SHIPMENT_SIGNING_EKU]),
        &vendor,
    )];
    assert_eq!(
        trust.verify_shipment_signer(&revoked, NOW).unwrap_err(),
        ChainError::Revoked
    );
    let good = [leaf(
        &PKCS_ED25519,
        &signer_params(52, &[SHIPMENT_SIGNING_EKU]),
        &vendor,
    )];
    trust.verify_shipment_signer(&good, NOW).unwrap();
    // The operator root is not a vendor root, even in one file.
    let node = [leaf(&PKCS_ED25519, &signer_params(53, &[]), &op)];
    assert_eq!(
        trust.verify_shipment_signer(&node, NOW).unwrap_err(),
        ChainError::UnknownIssuer
    );
    // A vendor CRL that is not a CRL is named with its key.
    std::fs::write(dir.path().join("vendor.crl"), b"junk").unwrap();
    let e = TrustAnchors::from_trust_toml(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("vendor.crls"), "{e}");
}
