//! The leaf's DICE FWID extension: the real sample's legacy form and hostile extensions.

use super::super::dice::{DiceError, DiceForm, leaf_fwids};
use super::super::test_device::{MULTI_TCB_INFO_ARCS, SHA384_OID_DER, TCB_INFO_ARCS, der_tlv};
use super::{CHAIN_PEM, SAMPLE_FWID, unhex};
use crate::chain::certs_from_pem;

#[test]
fn dice_extensions_that_are_malformed_are_named() {
    // A certificate without any DICE extension.
    let certs = certs_from_pem(CHAIN_PEM.as_bytes()).unwrap();
    let (_, brom) = x509_parser::parse_x509_certificate(&certs[1]).unwrap();
    assert_eq!(leaf_fwids(&brom).unwrap_err(), DiceError::NoExtension);
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let (form, fwids) = leaf_fwids(&leaf).unwrap();
    assert_eq!(form, DiceForm::NvidiaLegacy);
    assert_eq!(fwids, vec![unhex(SAMPLE_FWID)]);
}

/// A self-signed certificate carrying `content` as its extension `arcs`.
fn cert_with_extension(arcs: &[u64], content: Vec<u8>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(arcs, content)];
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn hostile_dice_extensions_are_refused_with_their_reason() {
    let fwid = |alg: &[u8], digest: &[u8]| der_tlv(0x30, &[alg, &der_tlv(0x04, digest)].concat());
    let sha256_oid = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    ];
    let good = fwid(SHA384_OID_DER, &[7; 48]);
    let cases: Vec<(&[u64], Vec<u8>, &str)> = vec![
        (TCB_INFO_ARCS, vec![0xff, 0x00], "fwid_extension_malformed"),
        (TCB_INFO_ARCS, vec![], "fwid_extension_malformed"),
        (
            TCB_INFO_ARCS,
            [der_tlv(0x30, &[]), vec![0]].concat(),
            "fwid_extension_malformed",
        ),
        (
            TCB_INFO_ARCS,
            der_tlv(0x04, &[1, 2]),
            "fwid_extension_malformed",
        ),
        // Legacy form with two elements, and with a key that is not a SEQUENCE.
        (
            TCB_INFO_ARCS,
            der_tlv(0x30, &[der_tlv(0x02, &[1]), good.clone()].concat()),
            "fwid_extension_malformed",
        ),
        (
            TCB_INFO_ARCS,
            der_tlv(
                0x30,
                &[der_tlv(0x02, &[1]), der_tlv(0x04, &[0]), good.clone()].concat(),
            ),
            "fwid_extension_malformed",
        ),
        // TcbInfo: a field that is not context-tagged; fwids [6] primitive.
        (
            TCB_INFO_ARCS,
            der_tlv(0x30, &der_tlv(0x0c, b"x")),
            "fwid_extension_malformed",
        ),
        (
            TCB_INFO_ARCS,
            der_tlv(0x30, &der_tlv(0x86, &good)),
            "fwid_extension_malformed",
        ),
        // A SHA-384 FWID of 47 bytes; an FWID of three elements.
        (
            TCB_INFO_ARCS,
            der_tlv(0x30, &der_tlv(0xa6, &fwid(SHA384_OID_DER, &[7; 47]))),
            "fwid_extension_malformed",
        ),
        (
            TCB_INFO_ARCS,
            der_tlv(
                0x30,
                &der_tlv(
                    0xa6,
                    &der_tlv(
                        0x30,
                        &[SHA384_OID_DER, &der_tlv(0x04, &[1]), &der_tlv(0x04, &[1])].concat(),
                    ),
                ),
            ),
            "fwid_extension_malformed",
        ),
        // Only a SHA-256 FWID; no fwids at all.
        (
            TCB_INFO_ARCS,
            der_tlv(0x30, &der_tlv(0xa6, &fwid(&sha256_oid, &[7; 32]))),
            "leaf_without_sha384_fwid",
        ),
        (
            TCB_INFO_ARCS,
            der_tlv(0x30, &der_tlv(0x80, b"NVIDIA")),
            "leaf_without_sha384_fwid",
        ),
        // MultiTcbInfo whose element is not a SEQUENCE; an empty one.
        (
            MULTI_TCB_INFO_ARCS,
            der_tlv(0x30, &der_tlv(0x04, &[1])),
            "fwid_extension_malformed",
        ),
        (
            MULTI_TCB_INFO_ARCS,
            der_tlv(0x30, &[]),
            "leaf_without_sha384_fwid",
        ),
    ];
    for (i, (arcs, content, code)) in cases.into_iter().enumerate() {
        let der = cert_with_extension(arcs, content);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let e = leaf_fwids(&cert).unwrap_err();
        assert_eq!(e.code(), code, "case {i}: {e}");
    }
    // Deep nesting is bounded by the certificate's size, and a good TcbInfo reads.
    let der = cert_with_extension(TCB_INFO_ARCS, der_tlv(0x30, &der_tlv(0xa6, &good)));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        leaf_fwids(&cert).unwrap(),
        (DiceForm::TcbInfo, vec![vec![7; 48]])
    );
    let nested = (0..200).fold(good, |inner, _| der_tlv(0x30, &inner));
    let der = cert_with_extension(MULTI_TCB_INFO_ARCS, nested);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(matches!(
        leaf_fwids(&cert),
        Err(DiceError::Malformed { .. })
    ));
}
