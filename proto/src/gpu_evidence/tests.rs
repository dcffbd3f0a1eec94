//! Tests of the GPU evidence module: the real NVIDIA H100 sample's known facts and signature,
//! the writer's round trip, hostile reports, and the bounded decoding and nonce of `mod.rs`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};

use super::encode::{ReportBuilder, encode_vbios, sign_p384};
use super::opaque::{
    FeatureFlag, Nvdec0Status, OpaqueData, OpaqueError, OpaqueField, OpaqueId, format_vbios,
};
use super::spdm::{MeasurementBlock, P384_SIGNATURE_LEN, Report, SpdmError};
use super::*;

const SAMPLE_HEX: &str =
    include_str!("../../../tests/fixtures/nvidia-cc/hopperAttestationReport.txt");
const SAMPLE_CHAIN: &str = include_str!("../../../tests/fixtures/nvidia-cc/hopperCertChain.txt");

const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const SAMPLE_FWID: &str = "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d";

// Offsets in the sample (request 37 bytes, response header 8, record 3,520).
const COUNT_AT: usize = 41;
const RECORD_LEN_AT: usize = 42;
const RECORD_AT: usize = 45;
const RESPONDER_NONCE_AT: usize = RECORD_AT + 3520;
const OPAQUE_LEN_AT: usize = RESPONDER_NONCE_AT + 32;
const OPAQUE_AT: usize = OPAQUE_LEN_AT + 2;
const SIGNATURE_AT: usize = OPAQUE_AT + 422;

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    assert!(text.len().is_multiple_of(2), "odd hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn sample() -> Vec<u8> {
    unhex(SAMPLE_HEX)
}

/// The leaf's EC point: the 97-byte uncompressed point in the BIT STRING that follows the
/// first P-384 curve OID of the first certificate (its SubjectPublicKeyInfo comes before the
/// extensions, which hold another copy).
fn leaf_public_key() -> Vec<u8> {
    let pem = SAMPLE_CHAIN;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).unwrap() + begin.len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----").unwrap();
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).unwrap();
    let curve = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let at = der.windows(curve.len()).position(|w| w == curve).unwrap() + curve.len();
    // BIT STRING, length 98, no unused bits, then the point (0x04 || x || y).
    assert_eq!(&der[at..at + 4], &[0x03, 0x62, 0x00, 0x04]);
    der[at + 3..at + 3 + 97].to_vec()
}

#[test]
fn sample_known_facts() {
    let bytes = sample();
    assert_eq!(bytes.len(), 4117);
    let report = Report::parse(&bytes).unwrap();
    let request = report.request();
    assert_eq!(request.version, 0x11);
    assert_eq!(request.attributes, 0x01);
    assert_eq!(request.operation, 0xFF);
    assert_eq!(request.slot_id, 0x00);
    assert_eq!(request.nonce.to_vec(), unhex(SAMPLE_NONCE));
    let response = report.response();
    assert_eq!(response.version, 0x11);
    assert_ne!(response.responder_nonce, request.nonce);
    assert_eq!(
        response.responder_nonce.to_vec(),
        bytes[RESPONDER_NONCE_AT..OPAQUE_LEN_AT]
    );
    assert_eq!(response.blocks.len(), 64);
    for (i, block) in response.blocks.iter().enumerate() {
        assert_eq!(usize::from(block.index), i + 1);
        assert_eq!(block.spec, 1);
        assert_eq!(block.value.len(), 48, "SHA-384");
    }
    assert_eq!(report.measurement(64).unwrap().index, 64);
    assert!(report.measurement(0).is_none());
    assert!(report.measurement(65).is_none());

    let opaque = report.opaque();
    assert_eq!(opaque.driver_version().as_deref(), Some("550.90.07"));
    assert_eq!(opaque.vbios_version().as_deref(), Some("96.00.9F.00.01"));
    assert_eq!(opaque.board_id(), Some(0x3b1));
    assert_eq!(opaque.chip_sku().as_deref(), Some("882"));
    assert_eq!(opaque.chip_sku_mod().as_deref(), Some("0"));
    assert_eq!(opaque.project().as_deref(), Some("1010"));
    assert_eq!(opaque.project_sku().as_deref(), Some("0200"));
    assert_eq!(opaque.project_sku_mod().as_deref(), Some(""));
    assert_eq!(opaque.nvdec0_status(), Some(Nvdec0Status::Disabled));
    assert_eq!(opaque.protected_pcie_status(), Some(0x55));
    assert_eq!(opaque.fwid().unwrap().to_vec(), unhex(SAMPLE_FWID));
    let counts = opaque.measurement_counts().unwrap();
    assert_eq!(counts.len(), 64);
    assert_eq!(counts[11], 130);
    // Hopper's sample has no chip info, feature flag or opaque data version.
    assert_eq!(opaque.chip_info(), None);
    assert_eq!(opaque.feature_flag(), None);
    assert_eq!(opaque.opaque_data_version(), None);
    assert!(opaque.unknown_ids().is_empty());
    let ids: Vec<u16> = opaque.fields().iter().map(|f| f.id).collect();
    assert_eq!(ids, [6, 14, 15, 16, 17, 18, 19, 3, 4, 12, 13, 11, 20, 21]);

    assert_eq!(report.signature().len(), P384_SIGNATURE_LEN);
    assert_eq!(report.signed_bytes().len(), bytes.len() - 96);
    assert_eq!(report.signed_bytes().len(), SIGNATURE_AT);
    assert_eq!(report.bytes(), &bytes[..]);
}

#[test]
fn sample_signature_verifies_with_the_leaf_key() {
    let bytes = sample();
    let report = Report::parse(&bytes).unwrap();
    let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, leaf_public_key());
    key.verify(report.signed_bytes(), report.signature())
        .unwrap();

    // One flipped bit anywhere in the signed bytes, or in the signature, fails.
    for at in [
        0,
        10,
        RECORD_AT + 100,
        OPAQUE_AT + 5,
        SIGNATURE_AT - 1,
        SIGNATURE_AT,
        4116,
    ] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        // Some flips break the structure; those that parse must not verify.
        if let Ok(report) = Report::parse(&flipped) {
            assert!(
                key.verify(report.signed_bytes(), report.signature())
                    .is_err(),
                "bit at {at}"
            );
        }
    }
}

#[test]
fn builder_reproduces_the_sample_exactly() {
    let bytes = sample();
    let report = Report::parse(&bytes).unwrap();
    let response = report.response();
    let builder = ReportBuilder {
        version: response.version,
        request_nonce: report.request().nonce,
        responder_nonce: response.responder_nonce,
        blocks: response.blocks.clone(),
        opaque: response.opaque.fields().to_vec(),
    };
    assert_eq!(builder.unsigned_bytes(), report.signed_bytes());
}

#[test]
fn hopper_like_round_trips_and_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let fwid = [0x5a; 48];
    let mut builder = ReportBuilder::hopper_like("570.133.20", "96.00.AB.00.02", &fwid);
    builder.request_nonce = [7; 32];
    builder.responder_nonce = [9; 32];
    let unsigned = builder.unsigned_bytes();
    let signed = sign_p384(&unsigned, &key, &rng).unwrap();
    assert_eq!(signed.len(), unsigned.len() + 96);

    let report = Report::parse(&signed).unwrap();
    assert_eq!(report.signed_bytes(), &unsigned[..]);
    assert_eq!(report.request().nonce, [7; 32]);
    assert_eq!(report.response().responder_nonce, [9; 32]);
    assert_eq!(report.response().blocks, builder.blocks);
    assert_eq!(report.opaque().fields(), &builder.opaque[..]);
    let opaque = report.opaque();
    assert_eq!(opaque.driver_version().as_deref(), Some("570.133.20"));
    assert_eq!(opaque.vbios_version().as_deref(), Some("96.00.AB.00.02"));
    assert_eq!(opaque.fwid(), Some(&fwid[..]));
    assert_eq!(opaque.board_id(), Some(0x3b1));
    assert_eq!(opaque.chip_sku().as_deref(), Some("882"));
    assert_eq!(opaque.project().as_deref(), Some("1010"));
    assert_eq!(opaque.project_sku().as_deref(), Some("0200"));
    assert_eq!(opaque.nvdec0_status(), Some(Nvdec0Status::Disabled));
    assert_eq!(opaque.protected_pcie_status(), Some(0x55));
    assert_eq!(opaque.measurement_counts().unwrap().len(), 64);

    // Its layout is the sample's: same length, since the versions' text lengths match the
    // sample's field sizes up to the driver string.
    let sample_len = sample().len();
    assert_eq!(
        signed.len(),
        sample_len + "570.133.20".len() - "550.90.07".len()
    );

    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key.public_key().as_ref())
        .verify(report.signed_bytes(), report.signature())
        .unwrap();
}

#[test]
fn vbios_text_and_bytes() {
    assert_eq!(
        encode_vbios("96.00.9F.00.01"),
        Some([0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0])
    );
    assert_eq!(
        format_vbios(&[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0]),
        "96.00.9F.00.01"
    );
    assert_eq!(
        encode_vbios("96.00.9f.00.01"),
        encode_vbios("96.00.9F.00.01")
    );
    for bad in [
        "",
        "96.00.9F.00",
        "96.00.9F.00.01.02",
        "96.00.9G.00.01",
        "960.0.9F.00.01",
        "+6.00.9F.00.01",
        "96..9F.00.01",
    ] {
        assert_eq!(encode_vbios(bad), None, "{bad:?}");
    }
    for bytes in [
        [0u8; 8],
        [1, 2, 3, 4, 5, 0, 0, 0],
        [0xff, 0xee, 0xdd, 0xcc, 0xbb, 0, 0, 0],
    ] {
        assert_eq!(encode_vbios(&format_vbios(&bytes)), Some(bytes));
    }
}

fn code(bytes: &[u8]) -> &'static str {
    Report::parse(bytes).unwrap_err().code()
}

fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn every_truncation_fails() {
    let bytes = sample();
    for len in 0..bytes.len() {
        let err = Report::parse(&bytes[..len]).unwrap_err();
        let expected = if len >= SIGNATURE_AT {
            "spdm_signature_length"
        } else {
            "spdm_truncated"
        };
        assert_eq!(err.code(), expected, "prefix of {len} bytes: {err}");
    }
    assert!(matches!(
        Report::parse(&bytes[..SIGNATURE_AT + 95]),
        Err(SpdmError::SignatureLength {
            offset: SIGNATURE_AT,
            have: 95
        })
    ));
    assert!(matches!(
        Report::parse(&[]),
        Err(SpdmError::Truncated {
            field: "request header",
            offset: 0,
            need: 4,
            have: 0
        })
    ));
}

#[test]
fn trailing_byte_is_refused() {
    let mut bytes = sample();
    bytes.push(0);
    assert_eq!(
        Report::parse(&bytes).unwrap_err(),
        SpdmError::TrailingBytes {
            offset: 4117,
            extra: 1
        }
    );
}

#[test]
fn versions_codes_and_signature_request() {
    let bytes = sample();
    let with = |at: usize, value: u8| {
        let mut b = bytes.clone();
        b[at] = value;
        b
    };
    assert_eq!(code(&with(0, 0x10)), "spdm_wrong_version");
    assert_eq!(code(&with(0, 0x13)), "spdm_wrong_version");
    // Request and response must agree.
    let mut both = with(0, 0x12);
    both[37] = 0x12;
    assert!(Report::parse(&both).is_ok());
    assert_eq!(
        Report::parse(&with(37, 0x12)).unwrap_err(),
        SpdmError::WrongVersion {
            message: "response",
            version: 0x12,
            request: 0x11
        }
    );
    assert_eq!(
        Report::parse(&with(1, 0xE1)).unwrap_err(),
        SpdmError::WrongCode {
            message: "request",
            expected: 0xE0,
            found: 0xE1
        }
    );
    assert_eq!(code(&with(38, 0x61)), "spdm_wrong_code");
    assert_eq!(code(&with(2, 0x00)), "spdm_signature_not_requested");
    assert!(
        Report::parse(&with(2, 0x03)).is_ok(),
        "other attribute bits are allowed"
    );
}

#[test]
fn flipped_length_fields_fail() {
    let bytes = sample();
    // NumberOfBlocks.
    let mut more = bytes.clone();
    more[COUNT_AT] = 65;
    assert_eq!(
        Report::parse(&more).unwrap_err(),
        SpdmError::BlockCountMismatch {
            declared: 65,
            found: 64
        }
    );
    let mut fewer = bytes.clone();
    fewer[COUNT_AT] = 63;
    assert_eq!(
        Report::parse(&fewer).unwrap_err(),
        SpdmError::BlockCountMismatch {
            declared: 63,
            found: 64
        }
    );
    // MeasurementRecordLength, each of its three bytes.
    for at in RECORD_LEN_AT..RECORD_LEN_AT + 3 {
        for flip in [0x01, 0x10, 0x80] {
            let mut b = bytes.clone();
            b[at] ^= flip;
            let err = Report::parse(&b).unwrap_err();
            assert!(
                matches!(
                    err.code(),
                    "spdm_record_length_mismatch" | "spdm_truncated" | "spdm_bad_block"
                ),
                "record length byte {at} ^ {flip:#x}: {err}"
            );
        }
    }
    // Each block's size and each DMTF value size.
    let mut at = RECORD_AT;
    for position in 0..64 {
        for field in [at + 2, at + 5] {
            let mut b = bytes.clone();
            b[field] ^= 0x01;
            let err = Report::parse(&b).unwrap_err();
            assert!(
                matches!(err.code(), "spdm_record_length_mismatch" | "spdm_bad_block"),
                "block {position} length at {field}: {err}"
            );
        }
        at += 4 + 51;
    }
    assert_eq!(at, RESPONDER_NONCE_AT);
    // OpaqueLength.
    for flip in [0x01, 0x02, 0x80] {
        let mut b = bytes.clone();
        b[OPAQUE_LEN_AT] ^= flip;
        let err = Report::parse(&b).unwrap_err();
        assert!(
            err.code().starts_with("opaque_")
                || err.code() == "spdm_signature_length"
                || err.code() == "spdm_trailing_bytes",
            "{err}"
        );
    }
    // Each opaque TLV's size.
    let opaque = &bytes[OPAQUE_AT..SIGNATURE_AT];
    let mut at = 0;
    while at < opaque.len() {
        let size = usize::from(u16::from_le_bytes([opaque[at + 2], opaque[at + 3]]));
        let mut b = bytes.clone();
        b[OPAQUE_AT + at + 2] ^= 0x01;
        let err = Report::parse(&b).unwrap_err();
        assert!(err.code().starts_with("opaque_"), "TLV at {at}: {err}");
        at += 4 + size;
    }
}

#[test]
fn record_length_mismatch_and_bad_blocks() {
    let mut builder = ReportBuilder::hopper_like("550.90.07", "96.00.9F.00.01", &[1; 48]);
    let unsigned = builder.unsigned_bytes();
    let with_signature = |mut b: Vec<u8>| {
        b.extend_from_slice(&[0u8; 96]);
        b
    };
    // A record longer than its blocks, the extra bytes not a whole block.
    let mut longer = unsigned.clone();
    longer[RECORD_LEN_AT] = longer[RECORD_LEN_AT].wrapping_add(2);
    longer.splice(RESPONDER_NONCE_AT..RESPONDER_NONCE_AT, [0xAB, 0xCD]);
    assert_eq!(
        Report::parse(&with_signature(longer)).unwrap_err(),
        SpdmError::RecordLengthMismatch {
            declared: 3522,
            used: 3520,
            blocks: 64
        }
    );
    // A block that needs more than the record holds.
    let mut shorter = unsigned.clone();
    shorter[RECORD_LEN_AT] = shorter[RECORD_LEN_AT].wrapping_sub(1);
    let err = Report::parse(&with_signature(shorter)).unwrap_err();
    assert_eq!(
        err,
        SpdmError::RecordLengthMismatch {
            declared: 3519,
            used: 3520,
            blocks: 63
        }
    );

    // Not DMTF; duplicate index; DMTF size inconsistent.
    builder.blocks[3].spec = 2;
    assert!(matches!(
        Report::parse(&with_signature(builder.unsigned_bytes())).unwrap_err(),
        SpdmError::BadBlock {
            position: 3,
            index: 4,
            ..
        }
    ));
    builder.blocks[3].spec = 1;
    builder.blocks[5].index = 1;
    assert!(matches!(
        Report::parse(&with_signature(builder.unsigned_bytes())).unwrap_err(),
        SpdmError::BadBlock {
            position: 5,
            index: 1,
            ..
        }
    ));
    builder.blocks[5].index = 6;
    let mut b = builder.unsigned_bytes();
    b[RECORD_AT + 5] = 47;
    assert!(matches!(
        Report::parse(&with_signature(b)).unwrap_err(),
        SpdmError::BadBlock {
            position: 0,
            index: 1,
            offset: RECORD_AT,
            ..
        }
    ));
    // A block too short for the DMTF header.
    builder.blocks.truncate(1);
    let mut b = builder.unsigned_bytes();
    let short_block = [1u8, 1, 2, 0, 1, 0];
    b.splice(RECORD_AT..RECORD_AT + 55, short_block);
    b[RECORD_LEN_AT..RECORD_LEN_AT + 3].copy_from_slice(&[6, 0, 0]);
    let err = Report::parse(&with_signature(b)).unwrap_err();
    assert_eq!(err.code(), "spdm_bad_block", "{err}");
}

#[test]
fn zero_and_huge_lengths() {
    // Zero blocks, empty record, empty opaque data: structurally valid.
    let builder = ReportBuilder {
        version: 0x11,
        request_nonce: [0; 32],
        responder_nonce: [0; 32],
        blocks: Vec::new(),
        opaque: Vec::new(),
    };
    let mut b = builder.unsigned_bytes();
    assert_eq!(b.len(), 37 + 8 + 32 + 2);
    b.extend_from_slice(&[0; 96]);
    let report = Report::parse(&b).unwrap();
    assert!(report.response().blocks.is_empty());
    assert!(report.opaque().fields().is_empty());
    assert_eq!(report.opaque().driver_version(), None);
    // Zero-length opaque values of text fields read as empty; fixed fields are refused.
    let with_opaque = |fields: Vec<OpaqueField>| {
        let mut b = ReportBuilder {
            opaque: fields,
            ..builder.clone()
        }
        .unsigned_bytes();
        b.extend_from_slice(&[0; 96]);
        Report::parse(&b).map(|r| r.opaque().clone())
    };
    let empty_driver = with_opaque(vec![OpaqueField {
        id: 3,
        value: Vec::new(),
    }])
    .unwrap();
    assert_eq!(empty_driver.driver_version().as_deref(), Some(""));
    assert_eq!(
        with_opaque(vec![OpaqueField {
            id: 20,
            value: Vec::new()
        }])
        .unwrap_err()
        .code(),
        "opaque_wrong_length"
    );

    // Huge declared lengths: the record (16 MiB - 1), the opaque data, a block, a TLV.
    let sample = sample();
    let mut huge = sample.clone();
    huge[RECORD_LEN_AT..RECORD_LEN_AT + 3].copy_from_slice(&[0xff; 3]);
    assert_eq!(
        Report::parse(&huge).unwrap_err(),
        SpdmError::Truncated {
            field: "measurement record",
            offset: RECORD_AT,
            need: 0xff_ffff,
            have: sample.len() - RECORD_AT
        }
    );
    let mut huge = sample.clone();
    set_u16(&mut huge, OPAQUE_LEN_AT, 0xffff);
    assert_eq!(
        Report::parse(&huge).unwrap_err(),
        SpdmError::Truncated {
            field: "opaque data",
            offset: OPAQUE_AT,
            need: 0xffff,
            have: 422 + 96
        }
    );
    let mut huge = sample.clone();
    set_u16(&mut huge, RECORD_AT + 2, 0xffff);
    assert_eq!(code(&huge), "spdm_record_length_mismatch");
    let mut huge = sample.clone();
    set_u16(&mut huge, OPAQUE_AT + 2, 0xffff);
    assert!(matches!(
        Report::parse(&huge).unwrap_err(),
        SpdmError::Opaque {
            offset: OPAQUE_AT,
            source: OpaqueError::Truncated {
                what: "field value",
                offset: 4,
                need: 0xffff,
                have: 418
            }
        }
    ));
}

#[test]
fn opaque_hostile_values() {
    let parse = |fields: &[(u16, &[u8])]| {
        let mut bytes = Vec::new();
        for (id, value) in fields {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&u16::try_from(value.len()).unwrap().to_le_bytes());
            bytes.extend_from_slice(value);
        }
        OpaqueData::parse(&bytes)
    };
    // TLV size past the end; a header cut short.
    assert_eq!(
        OpaqueData::parse(&[3, 0, 10, 0, b'5']).unwrap_err(),
        OpaqueError::Truncated {
            what: "field value",
            offset: 4,
            need: 10,
            have: 1
        }
    );
    assert_eq!(
        OpaqueData::parse(&[3, 0, 0]).unwrap_err(),
        OpaqueError::Truncated {
            what: "field header",
            offset: 0,
            need: 4,
            have: 3
        }
    );
    assert_eq!(OpaqueData::parse(&[]).unwrap(), OpaqueData::default());
    // Duplicates of a known id.
    assert_eq!(
        parse(&[(21, &[0x55]), (11, &[0x55]), (21, &[0xAA])]).unwrap_err(),
        OpaqueError::DuplicateField {
            id: 21,
            name: "protected_pcie_status",
            offset: 10
        }
    );
    // Wrong length of each fixed-size field.
    for (id, len) in [
        (6u16, 8usize),
        (11, 1),
        (14, 4),
        (20, 48),
        (21, 1),
        (34, 4),
        (36, 4),
    ] {
        for wrong in [0, len - 1, len + 1] {
            let value = vec![0u8; wrong];
            let err = parse(&[(id, &value)]).unwrap_err();
            assert_eq!(
                err.code(),
                "opaque_wrong_length",
                "id {id} at {wrong} bytes"
            );
        }
        assert!(parse(&[(id, &vec![0u8; len])]).is_ok());
    }
    // Count lists.
    assert_eq!(
        parse(&[(12, &[1, 0, 0, 0, 2])]).unwrap_err().code(),
        "opaque_count_list_length"
    );
    assert_eq!(
        parse(&[(12, &[])]).unwrap().measurement_counts(),
        Some(Vec::new())
    );
    // Text: non-ASCII, control characters, bytes after the NUL.
    for bad in [&b"550\xff90"[..], b"550\n", b"550\x0090", b"\x7f"] {
        let err = parse(&[(3, bad)]).unwrap_err();
        assert_eq!(err.code(), "opaque_not_ascii", "{bad:?}");
    }
    assert!(matches!(
        parse(&[(35, b"GH100\xc3")]).unwrap_err(),
        OpaqueError::NotAscii {
            id: 35,
            name: "chip_info",
            position: 5,
            byte: 0xc3,
            ..
        }
    ));
    let ok = parse(&[
        (35, b"GH100\0\0"),
        (34, &[2, 0, 0, 0]),
        (36, &[2, 0, 0, 0]),
        (11, &[0xAA]),
    ])
    .unwrap();
    assert_eq!(ok.chip_info().as_deref(), Some("GH100"));
    assert_eq!(ok.opaque_data_version(), Some(2));
    assert_eq!(ok.feature_flag(), Some(FeatureFlag::Ppcie));
    assert_eq!(ok.nvdec0_status(), Some(Nvdec0Status::Enabled));
    for (value, flag) in [
        (0u32, FeatureFlag::Spt),
        (1, FeatureFlag::Mpt),
        (7, FeatureFlag::Other(7)),
    ] {
        assert_eq!(
            parse(&[(36, &value.to_le_bytes())]).unwrap().feature_flag(),
            Some(flag)
        );
    }
    assert_eq!(
        parse(&[(11, &[0x12])]).unwrap().nvdec0_status(),
        Some(Nvdec0Status::Other(0x12))
    );
}

#[test]
fn unknown_opaque_ids_are_kept_and_reported() {
    let bytes = sample();
    let report = Report::parse(&bytes).unwrap();
    let mut builder = ReportBuilder {
        version: 0x11,
        request_nonce: report.request().nonce,
        responder_nonce: report.response().responder_nonce,
        blocks: report.response().blocks.clone(),
        opaque: report.opaque().fields().to_vec(),
    };
    builder.opaque.insert(
        2,
        OpaqueField {
            id: 0x1234,
            value: vec![1, 2, 3],
        },
    );
    builder.opaque.push(OpaqueField {
        id: 26,
        value: Vec::new(),
    });
    builder.opaque.push(OpaqueField {
        id: 0x1234,
        value: vec![4],
    });
    let mut b = builder.unsigned_bytes();
    b.extend_from_slice(&[0; 96]);
    let parsed = Report::parse(&b).unwrap();
    let opaque = parsed.opaque();
    assert_eq!(opaque.unknown_ids(), [0x1234, 26]);
    assert_eq!(opaque.fields().len(), 17);
    assert_eq!(
        opaque.fields()[2],
        OpaqueField {
            id: 0x1234,
            value: vec![1, 2, 3]
        }
    );
    assert_eq!(opaque.get(0x1234), Some(&[1u8, 2, 3][..]));
    // Known facts still read.
    assert_eq!(opaque.driver_version().as_deref(), Some("550.90.07"));
}

#[test]
fn opaque_ids_round_trip_and_names_are_unique() {
    let mut names = Vec::new();
    for id in 0..=u16::from(u8::MAX) {
        if let Some(known) = OpaqueId::from_u16(id) {
            assert_eq!(known.as_u16(), id);
            let name = known.name();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            names.push(name);
        }
    }
    assert_eq!(names.len(), 31);
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 31);
    assert_eq!(OpaqueId::from_u16(3).unwrap().name(), "driver_version");
    assert_eq!(OpaqueId::from_u16(26), None);
    assert_eq!(OpaqueId::from_u16(256), None);
}

/// Exercises every accessor, so a mutation that parses is also read.
fn read_everything(bytes: &[u8]) {
    if let Ok(report) = Report::parse(bytes) {
        assert_eq!(report.signature().len(), 96);
        assert_eq!(report.signed_bytes().len() + 96, bytes.len());
        let o = report.opaque();
        let _ = (
            o.driver_version(),
            o.vbios_version(),
            o.fwid(),
            o.board_id(),
            o.chip_sku(),
        );
        let _ = (
            o.chip_sku_mod(),
            o.project(),
            o.project_sku(),
            o.project_sku_mod(),
            o.chip_info(),
        );
        let _ = (
            o.nvdec0_status(),
            o.protected_pcie_status(),
            o.feature_flag(),
        );
        let _ = (
            o.measurement_counts(),
            o.opaque_data_version(),
            o.unknown_ids(),
        );
        let _ = report.measurement(1);
    }
}

#[test]
fn no_prefix_or_single_byte_mutation_panics() {
    let bytes = sample();
    for len in 0..=bytes.len() {
        read_everything(&bytes[..len]);
    }
    let mut parsed = 0usize;
    let mut mutated = bytes.clone();
    for at in 0..bytes.len() {
        for value in [0x00, 0xff, bytes[at] ^ 0x01, bytes[at] ^ 0x80] {
            mutated[at] = value;
            read_everything(&mutated);
            parsed += usize::from(Report::parse(&mutated).is_ok());
        }
        mutated[at] = bytes[at];
    }
    // Most bytes are digests, nonces and the signature: mutating them leaves a valid structure.
    assert!(parsed > 3 * bytes.len(), "{parsed}");
}

#[test]
fn errors_have_codes_and_name_the_field() {
    let bytes = sample();
    let err = Report::parse(&bytes[..100]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("measurement record")
            && text.contains("offset 45")
            && text.contains("collect it again"),
        "{text}"
    );
    let mut b = bytes.clone();
    set_u16(&mut b, OPAQUE_AT, 21); // The VBIOS field (8 bytes) relabelled as protected PCIe status (1 byte).
    let err = Report::parse(&b).unwrap_err();
    assert_eq!(err.code(), "opaque_wrong_length");
    assert!(err.to_string().contains("protected_pcie_status"), "{err}");
    assert!(
        err.to_string().contains(&format!("offset {OPAQUE_AT}")),
        "{err}"
    );
}

#[test]
fn measurement_block_fields() {
    let block = MeasurementBlock {
        index: 2,
        spec: 1,
        value_type: 1,
        value: vec![0; 48],
    };
    let mut builder = ReportBuilder::hopper_like("1", "00.00.00.00.00", &[0; 48]);
    builder.blocks = vec![block.clone()];
    let mut b = builder.unsigned_bytes();
    b.extend_from_slice(&[0; 96]);
    let report = Report::parse(&b).unwrap();
    assert_eq!(report.measurement(2), Some(&block));
    assert_eq!(
        report.opaque().vbios_version().as_deref(),
        Some("00.00.00.00.00")
    );
}

// mod.rs: bounded decoding and the GPU nonce.

#[test]
fn decode_bounded_known_vector_and_bounds() {
    assert_eq!(decode_bounded("evidence", "aGVsbG8=", 5).unwrap(), b"hello");
    assert_eq!(decode_bounded("evidence", "", 5).unwrap(), b"");
    // One byte over the decoded bound, the encoded length within its bound.
    assert_eq!(
        decode_bounded("evidence", "aGVsbG8h", 5).unwrap_err(),
        EvidenceError::TooLarge {
            field: "evidence",
            len: 6,
            max: 5
        }
    );
    // Over the encoded bound: refused before decoding (this is not even base64).
    let long = "!".repeat(13);
    assert_eq!(
        decode_bounded("certificate", &long, 9).unwrap_err(),
        EvidenceError::TooLarge {
            field: "certificate",
            len: 13,
            max: 9
        }
    );
    for bad in ["aGVsbG8", "aGVs bG8=", "aGVsbG8_", "a==="] {
        let err = decode_bounded("certificate", bad, 100).unwrap_err();
        assert_eq!(
            err,
            EvidenceError::NotBase64 {
                field: "certificate"
            },
            "{bad:?}"
        );
        assert_eq!(err.code(), "gpu_evidence_not_base64");
    }
    let item = GpuEvidence::from_parts("HOPPER", b"-----BEGIN", &sample());
    assert_eq!(item.report_bytes().unwrap(), sample());
    assert_eq!(item.chain_pem().unwrap(), b"-----BEGIN");
    let too_big = GpuEvidence::from_parts("HOPPER", b"", &vec![0; MAX_REPORT_BYTES + 1]);
    assert_eq!(
        too_big.report_bytes().unwrap_err().code(),
        "gpu_evidence_too_large"
    );
    let at_bound = GpuEvidence::from_parts("HOPPER", b"", &vec![0; MAX_REPORT_BYTES]);
    assert_eq!(at_bound.report_bytes().unwrap().len(), MAX_REPORT_BYTES);
}

#[test]
fn gpu_nonce_known_vector_and_each_input_matters() {
    let challenge = Nonce::from_bytes(&[0x11; 32]).unwrap();
    let node = NodeId::from_bytes([0x22; 32]);
    let nonce = gpu_nonce(&challenge, &node, 3);
    // SHA-256(b"tppguard gpu-evidence nonce v1\0" || 0x11 x 32 || 0x22 x 32 || 00 00 00 03).
    assert_eq!(
        nonce.to_vec(),
        unhex("f054770685b0f092399f26811398ffb17824e4a1d5a4970b934ecb37f5753488")
    );
    let other_challenge = Nonce::from_bytes(&[0x12; 32]).unwrap();
    assert_ne!(gpu_nonce(&other_challenge, &node, 3), nonce);
    assert_ne!(
        gpu_nonce(&challenge, &NodeId::from_bytes([0x23; 32]), 3),
        nonce
    );
    assert_ne!(gpu_nonce(&challenge, &node, 2), nonce);
    assert_ne!(
        gpu_nonce(&challenge, &node, 3 << 24),
        nonce,
        "the index is big-endian in full"
    );
    assert_eq!(gpu_nonce(&challenge, &node, 3), nonce, "deterministic");
}
