//! The invariants of the `spdm_report` fuzz target: any bytes as a GPU attestation report
//! (`tppguard_proto::gpu_evidence::spdm::Report::parse`, NVIDIA's GET_MEASUREMENTS request ||
//! MEASUREMENTS response, and the opaque data it carries).
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/spdm_report/` on stable. Each function panics when an invariant is broken.

use tppguard_proto::gpu_evidence::encode::{ReportBuilder, encode_vbios};
use tppguard_proto::gpu_evidence::opaque::{FWID_LEN, OpaqueId};
use tppguard_proto::gpu_evidence::spdm::{
    GET_MEASUREMENTS_REQUEST_LEN, P384_SIGNATURE_LEN, Report,
};

/// The codes a rejected report may give.
const CODES: [&str; 14] = [
    "spdm_truncated",
    "spdm_wrong_version",
    "spdm_wrong_code",
    "spdm_signature_not_requested",
    "spdm_block_count_mismatch",
    "spdm_record_length_mismatch",
    "spdm_bad_block",
    "spdm_trailing_bytes",
    "spdm_signature_length",
    "opaque_truncated",
    "opaque_duplicate_field",
    "opaque_wrong_length",
    "opaque_count_list_length",
    "opaque_not_ascii",
];

/// Reads `bytes` as a report: rejected with a listed code and a message, or accepted with a
/// 96-byte signature ending the bytes, blocks and opaque fields that the writer
/// (`ReportBuilder`) writes back to the signed bytes exactly (the request's and response's
/// params aside, which the writer fixes), and typed opaque values that are what their ids
/// promise. Gives whether it was accepted.
pub fn check_spdm_report(bytes: &[u8]) -> bool {
    let report = match Report::parse(bytes) {
        Err(e) => {
            assert!(CODES.contains(&e.code()), "{e:?}");
            assert!(!e.to_string().is_empty());
            return false;
        }
        Ok(report) => report,
    };
    assert_eq!(report.signature().len(), P384_SIGNATURE_LEN);
    assert_eq!(
        report.signed_bytes().len() + P384_SIGNATURE_LEN,
        bytes.len()
    );
    assert_eq!([report.signed_bytes(), report.signature()].concat(), bytes);

    let request = report.request();
    let response = report.response();
    assert_eq!(request.version, response.version);
    assert_eq!(request.attributes & 1, 1);
    let rebuilt = ReportBuilder {
        version: response.version,
        request_nonce: request.nonce,
        responder_nonce: response.responder_nonce,
        blocks: response.blocks.clone(),
        opaque: response.opaque.fields().to_vec(),
    }
    .unsigned_bytes();
    let mut expected = report.signed_bytes().to_vec();
    // The params the writer fixes: request param1, param2, slot id; response param1, param2.
    let fixed = [
        (2, 0x01),
        (3, 0xFF),
        (GET_MEASUREMENTS_REQUEST_LEN - 1, 0x00),
        (GET_MEASUREMENTS_REQUEST_LEN + 2, 0x00),
        (GET_MEASUREMENTS_REQUEST_LEN + 3, 0x00),
    ];
    for (at, value) in fixed {
        expected[at] = value;
    }
    assert_eq!(rebuilt, expected);

    for block in &response.blocks {
        assert_eq!(report.measurement(block.index), Some(block));
    }
    check_opaque(&report);
    true
}

fn check_opaque(report: &Report<'_>) {
    let opaque = report.opaque();
    let printable = |text: Option<String>| {
        if let Some(text) = text {
            assert!(text.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{text:?}");
        }
    };
    printable(opaque.driver_version());
    printable(opaque.chip_sku());
    printable(opaque.chip_sku_mod());
    printable(opaque.project());
    printable(opaque.project_sku());
    printable(opaque.project_sku_mod());
    printable(opaque.chip_info());
    if let Some(text) = opaque.vbios_version() {
        let raw = opaque
            .get(OpaqueId::VbiosVersion.as_u16())
            .map(|v| v.to_vec());
        let mut encoded = encode_vbios(&text).map(|b| b.to_vec());
        // The text form carries five of the eight bytes.
        if let (Some(encoded), Some(raw)) = (encoded.as_mut(), raw.as_ref()) {
            encoded[5..].copy_from_slice(&raw[5..]);
        }
        assert_eq!(encoded, raw, "{text}");
    }
    if let Some(fwid) = opaque.fwid() {
        assert_eq!(fwid.len(), FWID_LEN);
    }
    assert_eq!(
        opaque.board_id().is_some(),
        opaque.get(OpaqueId::BoardId.as_u16()).is_some()
    );
    assert_eq!(
        opaque.nvdec0_status().is_some(),
        opaque.get(OpaqueId::Nvdec0Status.as_u16()).is_some()
    );
    let _ = (opaque.protected_pcie_status(), opaque.feature_flag());
    let _ = opaque.opaque_data_version();
    if let Some(counts) = opaque.measurement_counts() {
        let raw = opaque
            .get(OpaqueId::MeasurementCounts.as_u16())
            .map_or(0, <[u8]>::len);
        assert_eq!(counts.len() * 4, raw);
    }
    for id in opaque.unknown_ids() {
        assert!(OpaqueId::from_u16(id).is_none());
        assert!(opaque.get(id).is_some());
    }
}
