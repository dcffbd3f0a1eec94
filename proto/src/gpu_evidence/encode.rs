//! The writer of GPU attestation reports in NVIDIA's layout ([`super::spdm`]): the fake NVML,
//! the tests, the benches and the fuzz corpus build reports with it, with fresh nonces, and
//! sign them with a test device key. It writes what it is given: a value longer than its
//! length field can say is written with that field saturated, which makes a malformed report
//! (hostile tests use this); [`ReportBuilder::hopper_like`] makes one the parser reads back
//! exactly.

use ring::digest;
use ring::rand::SecureRandom;
use ring::signature::EcdsaKeyPair;

use crate::gpu_evidence::opaque::{OpaqueField, OpaqueId, VBIOS_VERSION_LEN};
use crate::gpu_evidence::spdm::{
    DMTF_SPEC, GET_MEASUREMENTS, GET_MEASUREMENTS_REQUEST_LEN, MEASUREMENTS, MeasurementBlock,
    SPDM_VERSION_1_1,
};

/// The measurement counts of the real H100 sample (opaque id 12), one per block.
const HOPPER_MEASUREMENT_COUNTS: [u32; 64] = [
    0, 1, 4, 1, 1, 1, 1, 1, 0, 1, 0, 130, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 1, 1, 1, 0, 1, 1,
    1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
];

/// The DMTF value type of the sample's blocks.
const HOPPER_VALUE_TYPE: u8 = 0x01;

/// A report to write: request || response (signature appended by [`sign_p384`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBuilder {
    /// SPDM version of both messages.
    pub version: u8,
    /// The request's nonce (what the GPU was given).
    pub request_nonce: [u8; 32],
    /// The responder's nonce.
    pub responder_nonce: [u8; 32],
    /// The measurement blocks (DMTF; `spec` is written as given).
    pub blocks: Vec<MeasurementBlock>,
    /// The opaque-data fields, in order.
    pub opaque: Vec<OpaqueField>,
}

fn text_field(id: OpaqueId, text: &str, padded_to: usize) -> OpaqueField {
    let mut value = text.as_bytes().to_vec();
    // NUL-terminated and padded as the sample's fields are.
    value.resize(padded_to.max(value.len() + 1), 0);
    OpaqueField {
        id: id.as_u16(),
        value,
    }
}

fn field(id: OpaqueId, value: &[u8]) -> OpaqueField {
    OpaqueField {
        id: id.as_u16(),
        value: value.to_vec(),
    }
}

/// A length as its little-endian field of `N` bytes, saturated where it does not fit.
fn le_len<const N: usize>(len: usize) -> [u8; N] {
    let max = u32::try_from(8 * N)
        .ok()
        .and_then(|bits| 1usize.checked_shl(bits))
        .map_or(usize::MAX, |limit| limit - 1);
    let bytes = len.min(max).to_le_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(bytes.get(..N).unwrap_or(&[0; N]));
    out
}

impl ReportBuilder {
    /// A report shaped like the real H100 sample: SPDM 1.1, 64 DMTF SHA-384 blocks of
    /// deterministic values (indexes 1 to 64), and the sample's opaque fields in its order with
    /// these driver and VBIOS versions and FWID (board id 0x3b1, chip SKU "882", project "1010",
    /// project SKU "0200", NVDEC0 0x55, protected PCIe 0x55, the sample's measurement counts).
    /// Nonces are zero: set them. A VBIOS version that is not five dot-separated hex bytes is
    /// written as eight zero bytes.
    pub fn hopper_like(
        driver_version: &str,
        vbios_version: &str,
        fwid: &[u8; 48],
    ) -> ReportBuilder {
        let blocks = (1u8..=64)
            .map(|index| {
                let mut ctx = digest::Context::new(&digest::SHA384);
                ctx.update(b"tppguard hopper_like measurement\0");
                ctx.update(&[index]);
                MeasurementBlock {
                    index,
                    spec: DMTF_SPEC,
                    value_type: HOPPER_VALUE_TYPE,
                    value: ctx.finish().as_ref().to_vec(),
                }
            })
            .collect();
        let vbios = encode_vbios(vbios_version).unwrap_or([0; VBIOS_VERSION_LEN]);
        let counts: Vec<u8> = HOPPER_MEASUREMENT_COUNTS
            .iter()
            .flat_map(|count| count.to_le_bytes())
            .collect();
        let opaque = vec![
            field(OpaqueId::VbiosVersion, &vbios),
            field(OpaqueId::BoardId, &0x3b1u32.to_le_bytes()),
            text_field(OpaqueId::ChipSku, "882", 9),
            text_field(OpaqueId::ChipSkuMod, "0", 5),
            text_field(OpaqueId::Project, "1010", 5),
            text_field(OpaqueId::ProjectSku, "0200", 5),
            text_field(OpaqueId::ProjectSkuMod, "", 2),
            text_field(OpaqueId::DriverVersion, driver_version, 0),
            field(OpaqueId::GpuInfo, &[0x80, 0x01, 0, 0, 0, 0, 0, 0]),
            field(OpaqueId::MeasurementCounts, &counts),
            field(OpaqueId::CprInfo, &[0x00, 0xc0, 0x01, 0x00]),
            field(OpaqueId::Nvdec0Status, &[0x55]),
            field(OpaqueId::Fwid, fwid),
            field(OpaqueId::ProtectedPcieStatus, &[0x55]),
        ];
        ReportBuilder {
            version: SPDM_VERSION_1_1,
            request_nonce: [0; 32],
            responder_nonce: [0; 32],
            blocks,
            opaque,
        }
    }

    /// request || response, without the signature: the bytes to sign.
    pub fn unsigned_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GET_MEASUREMENTS_REQUEST_LEN + 4096);
        // Request: signature requested, all measurements, slot 0.
        out.extend_from_slice(&[self.version, GET_MEASUREMENTS, 0x01, 0xFF]);
        out.extend_from_slice(&self.request_nonce);
        out.push(0x00);

        let mut record = Vec::new();
        for block in &self.blocks {
            record.push(block.index);
            record.push(block.spec);
            record.extend_from_slice(&le_len::<2>(block.value.len().saturating_add(3)));
            record.push(block.value_type);
            record.extend_from_slice(&le_len::<2>(block.value.len()));
            record.extend_from_slice(&block.value);
        }
        let mut opaque = Vec::new();
        for field in &self.opaque {
            opaque.extend_from_slice(&field.id.to_le_bytes());
            opaque.extend_from_slice(&le_len::<2>(field.value.len()));
            opaque.extend_from_slice(&field.value);
        }

        out.extend_from_slice(&[self.version, MEASUREMENTS, 0x00, 0x00]);
        out.extend_from_slice(&le_len::<1>(self.blocks.len()));
        out.extend_from_slice(&le_len::<3>(record.len()));
        out.extend_from_slice(&record);
        out.extend_from_slice(&self.responder_nonce);
        out.extend_from_slice(&le_len::<2>(opaque.len()));
        out.extend_from_slice(&opaque);
        out
    }
}

/// The 8 bytes of a VBIOS version's text form ("96.00.9F.00.01" is `00 9f 00 96 01 00 00 00`),
/// the inverse of [`super::opaque::format_vbios`]; `None` unless it is five dot-separated
/// two-digit hex bytes.
pub fn encode_vbios(text: &str) -> Option<[u8; 8]> {
    let mut parts = [0u8; 5];
    let mut split = text.split('.');
    for part in &mut parts {
        let piece = split.next()?;
        if piece.len() != 2 || !piece.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *part = u8::from_str_radix(piece, 16).ok()?;
    }
    if split.next().is_some() {
        return None;
    }
    let [p0, p1, p2, p3, p4] = parts;
    Some([p3, p2, p1, p0, p4, 0, 0, 0])
}

/// `unsigned` followed by its ECDSA P-384 / SHA-384 signature as raw r || s (96 bytes); `key`
/// must be made with `ECDSA_P384_SHA384_FIXED_SIGNING`.
pub fn sign_p384(
    unsigned: &[u8],
    key: &EcdsaKeyPair,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, ring::error::Unspecified> {
    let signature = key.sign(rng, unsigned)?;
    let mut out = Vec::with_capacity(unsigned.len() + signature.as_ref().len());
    out.extend_from_slice(unsigned);
    out.extend_from_slice(signature.as_ref());
    Ok(out)
}
