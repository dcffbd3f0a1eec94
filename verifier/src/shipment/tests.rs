//! Unit tests of signed shipments: each way a token is refused, and who may sign one.

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, PKCS_ED25519};
use tppguard_proto::jws::Alg;

use super::*;
use crate::attestation::tests::{Ca, NOW, issue, node_params, root, signer_params};
use crate::chain::{LICENCE_SIGNING_EKU, SHIPMENT_SIGNING_EKU};

const EXAMPLE: &str = include_str!("../../../examples/shipment.toml");

fn example() -> Shipment {
    Shipment::from_toml_str(EXAMPLE).unwrap()
}

/// A leaf profile whose EKU lists only `oid`, named `name`.
fn params_with_eku(name: &str, oid: &[u8]) -> CertificateParams {
    let mut p = node_params();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![];
    let mut content = vec![0x30, u8::try_from(oid.len() + 2).unwrap(), 0x06];
    content.push(u8::try_from(oid.len()).unwrap());
    content.extend_from_slice(oid);
    p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 37], content)];
    p
}

/// The four domains' roots, each pinned where it belongs.
struct Setup {
    op: Ca,
    lic: Ca,
    vendor: Ca,
    trust: TrustAnchors,
}

fn setup() -> Setup {
    let op = root("operator");
    let lic = root("licence authority");
    let vendor = root("Example GPU Vendor CA");
    let trust = TrustAnchors::from_der_roots(&[op.cert()], &[lic.cert()])
        .unwrap()
        .with_vendor_roots(&[vendor.cert()])
        .unwrap();
    Setup {
        op,
        lic,
        vendor,
        trust,
    }
}

fn vendor_signer(s: &Setup) -> (Vec<Vec<u8>>, SigningKey) {
    issue(
        &PKCS_ED25519,
        &params_with_eku("Example GPU Vendor shipment signer", SHIPMENT_SIGNING_EKU),
        &s.vendor,
    )
}

fn refused(result: Result<VerifiedShipment, ShipmentRejection>) -> ShipmentRejection {
    let e = result.unwrap_err();
    assert!(ShipmentRejection::CODES.contains(&e.code()), "{e:?}");
    assert!(e.sentence().contains(e.reason_code()), "{e:?}");
    e
}

/// `token` with its payload replaced by `payload` (the signature kept).
fn with_payload(token: &str, payload: &[u8]) -> String {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    format!("{}.{body}.{}", parts[0], parts[2])
}

#[test]
fn a_vendor_signed_shipment_verifies_into_the_policys_record() {
    let s = setup();
    let (chain, key) = vendor_signer(&s);
    let token = sign(&example(), &key, &chain).unwrap();
    let v = verify_token(&s.trust, &token, NOW).unwrap();
    assert_eq!(v.id, "EXAMPLE-SHIP-2026-0007");
    assert_eq!(v.licence, "EXAMPLE-DE-2026-0142");
    assert_eq!(v.site, "fra-1");
    assert_eq!(v.delivered_at, 1_772_442_000);
    // The vendor is the signer's subject, not the record's own `vendor` text.
    assert_eq!(v.vendor, "CN=Example GPU Vendor shipment signer");
    assert_eq!(v.devices.len(), 8);
    assert_eq!(
        v.devices[0].uuid.as_deref(),
        Some("GPU-2c12e0be-7e98-8b03-be1d-de49df724223")
    );
    assert_eq!(v.devices[0].serial.as_deref(), Some("SIM-H100-4209601"));
    assert_eq!(v.devices[0].model.as_deref(), Some("H100 SXM5 80GB"));
    assert_eq!(v.token_sha256, crate::store::sha256_hex(token.as_bytes()));
    let header = jws::decode(&token).unwrap().header().clone();
    assert_eq!(header.typ.as_deref(), Some(SHIPMENT_TYP));
    assert_eq!(header.alg, Alg::EdDSA);
    assert_eq!(header.x5c, chain);
}

#[test]
fn a_shipment_signed_by_another_domains_key_is_a_chain_refusal() {
    let s = setup();
    // The licence authority's signer, the operator's node key, and a shipment-EKU leaf from
    // the licence authority's root: none is under a [vendor] root.
    for (chain, key) in [
        issue(&PKCS_ED25519, &signer_params(), &s.lic),
        issue(&PKCS_ED25519, &node_params(), &s.op),
        issue(
            &PKCS_ED25519,
            &params_with_eku("rogue", SHIPMENT_SIGNING_EKU),
            &s.lic,
        ),
    ] {
        let token = sign(&example(), &key, &chain).unwrap();
        let e = refused(verify_token(&s.trust, &token, NOW));
        assert_eq!(e.code(), "shipment_chain", "{e:?}");
        assert!(e.sentence().contains("[vendor] roots"), "{e:?}");
    }
    // A licence-signing leaf under the vendor's own root is not a shipment signer either.
    let (chain, key) = issue(
        &PKCS_ED25519,
        &params_with_eku("confused", LICENCE_SIGNING_EKU),
        &s.vendor,
    );
    let token = sign(&example(), &key, &chain).unwrap();
    let e = refused(verify_token(&s.trust, &token, NOW));
    assert_eq!((e.code(), e.reason_code()), ("shipment_chain", "wrong_eku"));
    // No vendor root pinned: nothing verifies.
    let bare = TrustAnchors::from_der_roots(&[s.op.cert()], &[s.lic.cert()]).unwrap();
    let (chain, key) = vendor_signer(&s);
    let token = sign(&example(), &key, &chain).unwrap();
    let e = refused(verify_token(&bare, &token, NOW));
    assert_eq!(
        (e.code(), e.reason_code()),
        ("shipment_chain", "unknown_issuer")
    );
}

#[test]
fn the_signers_certificate_is_checked_at_the_instant_given() {
    let s = setup();
    let (chain, key) = vendor_signer(&s);
    let token = sign(&example(), &key, &chain).unwrap();
    verify_token(&s.trust, &token, NOW).unwrap();
    let e = refused(verify_token(&s.trust, &token, NOW + 400 * 86_400));
    assert_eq!(e.code(), "shipment_chain");
}

#[test]
fn a_changed_token_is_refused() {
    let s = setup();
    let (chain, key) = vendor_signer(&s);
    let token = sign(&example(), &key, &chain).unwrap();

    // Another delivery site, the signature kept.
    let json = String::from_utf8(example().to_json().unwrap()).unwrap();
    let moved = with_payload(&token, json.replace("fra-1", "ber-1").as_bytes());
    let e = refused(verify_token(&s.trust, &moved, NOW));
    assert_eq!(
        (e.code(), e.reason_code()),
        ("shipment_signature", "jws_bad_signature")
    );

    // A licence token (another typ) is not a shipment.
    let header = Header::new(key.alg())
        .with_typ(crate::licence::LICENCE_TYP)
        .with_x5c(chain.clone());
    let licence_typ = jws::sign(&header, json.as_bytes(), &key).unwrap();
    let e = refused(verify_token(&s.trust, &licence_typ, NOW));
    assert_eq!(
        (e.code(), e.reason_code()),
        ("shipment_bad_token", "wrong_typ")
    );

    // No x5c, garbage, an empty string, and control characters.
    let bare = jws::sign(
        &Header::new(key.alg()).with_typ(SHIPMENT_TYP),
        json.as_bytes(),
        &key,
    )
    .unwrap();
    let e = refused(verify_token(&s.trust, &bare, NOW));
    assert_eq!(
        (e.code(), e.reason_code()),
        ("shipment_bad_token", "missing_x5c")
    );
    for junk in ["", "not a token", "a.b.c", "\u{1b}[2J.\u{1b}.\u{1b}"] {
        let e = refused(verify_token(&s.trust, junk, NOW));
        assert_eq!(e.code(), "shipment_bad_token", "{junk:?}");
    }
}

#[test]
fn a_validly_signed_invalid_payload_is_a_payload_refusal() {
    let s = setup();
    let (chain, key) = vendor_signer(&s);
    let header = Header::new(key.alg())
        .with_typ(SHIPMENT_TYP)
        .with_x5c(chain);
    let mut value: serde_json::Value =
        serde_json::from_slice(&example().to_json().unwrap()).unwrap();
    value["devices"][1]["serial"] = value["devices"][0]["serial"].clone();
    let payload = serde_json::to_vec(&value).unwrap();
    let token = jws::sign(&header, &payload, &key).unwrap();
    let e = refused(verify_token(&s.trust, &token, NOW));
    assert_eq!(
        (e.code(), e.reason_code()),
        ("shipment_payload", "duplicate_identity")
    );
    let token = jws::sign(&header, b"{\"id\":1}", &key).unwrap();
    let e = refused(verify_token(&s.trust, &token, NOW));
    assert_eq!(
        (e.code(), e.reason_code()),
        ("shipment_payload", "invalid_json")
    );
}

#[test]
fn rejection_codes_are_unique() {
    let mut codes = ShipmentRejection::CODES.to_vec();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), ShipmentRejection::CODES.len());
}
