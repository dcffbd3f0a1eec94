//! NVIDIA's GPU attestation report: the SPDM GET_MEASUREMENTS request (37 bytes) followed by
//! the signed MEASUREMENTS response, as NVML's `nvmlDeviceGetConfComputeGpuAttestationReport`
//! returns it. This module owns its parsing: the request's nonce, the measurement blocks, the
//! responder's nonce, the opaque data ([`super::opaque`]) and the signature, and which bytes the
//! signature covers. It checks structure only; the signature, the nonce and the facts are the
//! verifier's.
//!
//! Layout (DMTF DSP0274 1.1 and 1.2, which agree here; 1.0 lacks the request's slot id and 1.3
//! adds a requester context, so both are refused rather than misread):
//!
//! - request: version, code 0xE0, param1 (bit 0: signature requested), param2 (which
//!   measurements), 32-byte nonce, slot id;
//! - response: version, code 0x60, param1, param2, NumberOfBlocks (1 byte),
//!   MeasurementRecordLength (3 bytes LE), the record of blocks `{index, spec (1 = DMTF), size
//!   u16 LE, DMTF value type, DMTF value size u16 LE, value}`, the responder's 32-byte nonce,
//!   OpaqueLength (u16 LE), opaque data, then the ECDSA P-384 signature as raw r || s (96 bytes)
//!   over request || response less the signature.
//!
//! Every length is checked against the bytes left before it is used; nothing is allocated by
//! an unchecked length.

use crate::gpu_evidence::opaque::{OpaqueData, OpaqueError};

/// The raw r || s length of an ECDSA P-384 signature.
pub const P384_SIGNATURE_LEN: usize = 96;
/// The length of the GET_MEASUREMENTS request with a nonce and a slot id.
pub const GET_MEASUREMENTS_REQUEST_LEN: usize = 37;
/// SPDM version 1.1 (NVIDIA Hopper).
pub const SPDM_VERSION_1_1: u8 = 0x11;
/// SPDM version 1.2 (same layout of these two messages).
pub const SPDM_VERSION_1_2: u8 = 0x12;
/// The GET_MEASUREMENTS request code.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// The MEASUREMENTS response code.
pub const MEASUREMENTS: u8 = 0x60;
/// The DMTF measurement specification bit of a block's `spec`.
pub const DMTF_SPEC: u8 = 0x01;
/// The length of each nonce.
pub const NONCE_LEN: usize = 32;

const RESPONSE_HEADER_LEN: usize = 8;
const BLOCK_HEADER_LEN: usize = 4;
const DMTF_HEADER_LEN: usize = 3;

/// The GET_MEASUREMENTS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementRequest {
    /// SPDM version (0x11 for 1.1).
    pub version: u8,
    /// Param1: bit 0 set asks for a signature.
    pub attributes: u8,
    /// Param2: the measurement operation (0xFF: all measurements).
    pub operation: u8,
    /// The requester's nonce: what the GPU was given.
    pub nonce: [u8; 32],
    /// The certificate slot.
    pub slot_id: u8,
}

/// One measurement block (DMTF measurement specification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// The measurement index.
    pub index: u8,
    /// The measurement specification (1: DMTF).
    pub spec: u8,
    /// The DMTF value type.
    pub value_type: u8,
    /// The DMTF value (a SHA-384 digest on Hopper).
    pub value: Vec<u8>,
}

/// The MEASUREMENTS response, less its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementResponse {
    /// SPDM version; equals the request's.
    pub version: u8,
    /// Param1.
    pub param1: u8,
    /// Param2 (the slot id).
    pub param2: u8,
    /// The measurement blocks, in order.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce (not the request's).
    pub responder_nonce: [u8; 32],
    /// The opaque data.
    pub opaque: OpaqueData,
}

/// Why a report could not be parsed. Offsets count from the start of the report (the
/// request's first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpdmError {
    /// A field runs past the end of the report.
    #[error(
        "GPU report field `{field}` at offset {offset} needs {need} bytes but only {have} are \
         left: the report is truncated; collect it again from the GPU"
    )]
    Truncated {
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A message's SPDM version is not 1.1 or 1.2, or the two messages disagree.
    #[error(
        "GPU report {message} has SPDM version 0x{version:02x}; only 0x11 and 0x12 are read, \
         the same in request and response (request 0x{request:02x}): the report is not an \
         NVIDIA SPDM 1.1/1.2 measurement report"
    )]
    WrongVersion {
        /// `request` or `response`.
        message: &'static str,
        /// The version found.
        version: u8,
        /// The request's version.
        request: u8,
    },
    /// A message's code is not GET_MEASUREMENTS / MEASUREMENTS.
    #[error(
        "GPU report {message} has code 0x{found:02x}, not 0x{expected:02x}: the bytes are not a \
         GET_MEASUREMENTS request followed by its MEASUREMENTS response"
    )]
    WrongCode {
        /// `request` or `response`.
        message: &'static str,
        /// The code required.
        expected: u8,
        /// The code found.
        found: u8,
    },
    /// The request did not ask for a signature.
    #[error(
        "GPU report request param1 is 0x{attributes:02x}: bit 0 (signature requested) is clear, \
         so the response is unsigned; collect the report asking for a signature"
    )]
    SignatureNotRequested {
        /// The request's param1.
        attributes: u8,
    },
    /// NumberOfBlocks differs from the blocks the record holds.
    #[error(
        "GPU report NumberOfBlocks says {declared} measurement blocks but the record holds \
         {found}: the report is malformed"
    )]
    BlockCountMismatch {
        /// NumberOfBlocks.
        declared: usize,
        /// The blocks found.
        found: usize,
    },
    /// MeasurementRecordLength differs from the bytes the blocks use.
    #[error(
        "GPU report MeasurementRecordLength is {declared} bytes but its {blocks} measurement \
         blocks use {used}: the report is malformed"
    )]
    RecordLengthMismatch {
        /// MeasurementRecordLength.
        declared: usize,
        /// The bytes the blocks use (or need).
        used: usize,
        /// The blocks parsed.
        blocks: usize,
    },
    /// A measurement block is malformed.
    #[error("GPU report measurement block {position} (index {index}) at offset {offset}: {reason}")]
    BadBlock {
        /// Its position in the record, from 0.
        position: usize,
        /// Its measurement index.
        index: u8,
        /// Where it starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes follow the 96-byte signature.
    #[error(
        "GPU report has {extra} bytes after its {P384_SIGNATURE_LEN}-byte signature (which \
         ends at offset {offset}): the report is malformed or two reports were joined"
    )]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many.
        extra: usize,
    },
    /// Fewer than 96 bytes follow the opaque data.
    #[error(
        "GPU report has {have} bytes of signature at offset {offset}, not the \
         {P384_SIGNATURE_LEN} of a raw ECDSA P-384 r || s: the report is truncated"
    )]
    SignatureLength {
        /// Where the signature starts.
        offset: usize,
        /// The bytes there.
        have: usize,
    },
    /// The opaque data is malformed.
    #[error("GPU report opaque data (at offset {offset}): {source}")]
    Opaque {
        /// Where the opaque data starts.
        offset: usize,
        /// Why.
        #[source]
        source: OpaqueError,
    },
}

impl SpdmError {
    /// The stable snake_case code (an opaque-data error gives its own).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "spdm_truncated",
            Self::WrongVersion { .. } => "spdm_wrong_version",
            Self::WrongCode { .. } => "spdm_wrong_code",
            Self::SignatureNotRequested { .. } => "spdm_signature_not_requested",
            Self::BlockCountMismatch { .. } => "spdm_block_count_mismatch",
            Self::RecordLengthMismatch { .. } => "spdm_record_length_mismatch",
            Self::BadBlock { .. } => "spdm_bad_block",
            Self::TrailingBytes { .. } => "spdm_trailing_bytes",
            Self::SignatureLength { .. } => "spdm_signature_length",
            Self::Opaque { source, .. } => source.code(),
        }
    }
}

/// A parsed report, borrowing the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    bytes: &'a [u8],
    request: MeasurementRequest,
    response: MeasurementResponse,
    signed_len: usize,
}

/// Reads fields in order, each checked against the bytes left.
struct Reader<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, need: usize) -> Result<&'a [u8], SpdmError> {
        let (head, rest) = self
            .rest
            .split_at_checked(need)
            .ok_or(SpdmError::Truncated {
                field,
                offset: self.offset,
                need,
                have: self.rest.len(),
            })?;
        self.rest = rest;
        self.offset += need;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SpdmError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(SpdmError::Truncated {
                field,
                offset: self.offset,
                need: N,
                have: self.rest.len(),
            })?;
        self.rest = rest;
        self.offset += N;
        Ok(*head)
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, SpdmError> {
        let [byte] = self.array::<1>(field)?;
        Ok(byte)
    }
}

impl<'a> Report<'a> {
    /// Parses request || response || signature.
    pub fn parse(bytes: &'a [u8]) -> Result<Report<'a>, SpdmError> {
        let mut reader = Reader {
            rest: bytes,
            offset: 0,
        };
        let request = parse_request(&mut reader)?;
        let response = parse_response(&mut reader, request.version)?;
        let signed_len = reader.offset;
        let signature_offset = reader.offset;
        match reader.rest.len() {
            P384_SIGNATURE_LEN => {}
            have if have < P384_SIGNATURE_LEN => {
                return Err(SpdmError::SignatureLength {
                    offset: signature_offset,
                    have,
                });
            }
            have => {
                return Err(SpdmError::TrailingBytes {
                    offset: signature_offset + P384_SIGNATURE_LEN,
                    extra: have - P384_SIGNATURE_LEN,
                });
            }
        }
        Ok(Report {
            bytes,
            request,
            response,
            signed_len,
        })
    }

    /// The GET_MEASUREMENTS request.
    pub fn request(&self) -> &MeasurementRequest {
        &self.request
    }

    /// The MEASUREMENTS response.
    pub fn response(&self) -> &MeasurementResponse {
        &self.response
    }

    /// The bytes the signature covers: request || response less the signature (DSP0274's
    /// transcript L2). SPDM 1.1 signs these bytes directly (ECDSA P-384 with SHA-384 over
    /// them); 1.2 signs a digest of them behind its signing prefix, which a verifier of a 1.2
    /// report must add.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.bytes.get(..self.signed_len).unwrap_or_default()
    }

    /// The signature, raw r || s (96 bytes).
    pub fn signature(&self) -> &'a [u8] {
        self.bytes.get(self.signed_len..).unwrap_or_default()
    }

    /// The whole report.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The block with measurement index `index`.
    pub fn measurement(&self, index: u8) -> Option<&MeasurementBlock> {
        self.response
            .blocks
            .iter()
            .find(|block| block.index == index)
    }

    /// The opaque data.
    pub fn opaque(&self) -> &OpaqueData {
        &self.response.opaque
    }
}

fn check_version(message: &'static str, version: u8, request: u8) -> Result<(), SpdmError> {
    if matches!(version, SPDM_VERSION_1_1 | SPDM_VERSION_1_2) && version == request {
        Ok(())
    } else {
        Err(SpdmError::WrongVersion {
            message,
            version,
            request,
        })
    }
}

fn check_code(message: &'static str, expected: u8, found: u8) -> Result<(), SpdmError> {
    if found == expected {
        Ok(())
    } else {
        Err(SpdmError::WrongCode {
            message,
            expected,
            found,
        })
    }
}

fn parse_request(reader: &mut Reader<'_>) -> Result<MeasurementRequest, SpdmError> {
    let [version, code, attributes, operation] = reader.array::<4>("request header")?;
    check_version("request", version, version)?;
    check_code("request", GET_MEASUREMENTS, code)?;
    if attributes & 0x01 == 0 {
        return Err(SpdmError::SignatureNotRequested { attributes });
    }
    let nonce = reader.array::<NONCE_LEN>("request nonce")?;
    let slot_id = reader.byte("request slot id")?;
    Ok(MeasurementRequest {
        version,
        attributes,
        operation,
        nonce,
        slot_id,
    })
}

fn parse_response(
    reader: &mut Reader<'_>,
    request_version: u8,
) -> Result<MeasurementResponse, SpdmError> {
    let [version, code, param1, param2, count, l0, l1, l2] =
        reader.array::<RESPONSE_HEADER_LEN>("response header")?;
    check_version("response", version, request_version)?;
    check_code("response", MEASUREMENTS, code)?;
    let record_len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
    let record_offset = reader.offset;
    let record = reader.take("measurement record", record_len)?;
    let blocks = parse_record(record, record_offset, usize::from(count))?;
    let responder_nonce = reader.array::<NONCE_LEN>("responder nonce")?;
    let opaque_len = usize::from(u16::from_le_bytes(reader.array::<2>("opaque length")?));
    let opaque_offset = reader.offset;
    let opaque_bytes = reader.take("opaque data", opaque_len)?;
    let opaque = OpaqueData::parse(opaque_bytes).map_err(|source| SpdmError::Opaque {
        offset: opaque_offset,
        source,
    })?;
    Ok(MeasurementResponse {
        version,
        param1,
        param2,
        blocks,
        responder_nonce,
        opaque,
    })
}

/// One block's bytes as split from the record: `(index, spec, value bytes, total length)`.
fn split_block(rest: &[u8]) -> Option<(u8, u8, &[u8], usize)> {
    let ([index, spec, s0, s1], after) = rest.split_first_chunk::<BLOCK_HEADER_LEN>()?;
    let size = usize::from(u16::from_le_bytes([*s0, *s1]));
    let value = after.get(..size)?;
    Some((*index, *spec, value, BLOCK_HEADER_LEN + size))
}

/// Parses `declared` blocks from the record, which they must fill exactly.
fn parse_record(
    record: &[u8],
    record_offset: usize,
    declared: usize,
) -> Result<Vec<MeasurementBlock>, SpdmError> {
    // At most 255 blocks (NumberOfBlocks is one byte), each at least a header long.
    let mut blocks = Vec::with_capacity(declared.min(record.len() / BLOCK_HEADER_LEN));
    let mut seen = [false; 256];
    let mut used = 0usize;
    while blocks.len() < declared {
        let rest = record.get(used..).unwrap_or_default();
        if rest.is_empty() {
            return Err(SpdmError::BlockCountMismatch {
                declared,
                found: blocks.len(),
            });
        }
        let Some((index, spec, body, len)) = split_block(rest) else {
            return Err(SpdmError::RecordLengthMismatch {
                declared: record.len(),
                used: used + block_need(rest),
                blocks: blocks.len(),
            });
        };
        let bad = |reason| SpdmError::BadBlock {
            position: blocks.len(),
            index,
            offset: record_offset + used,
            reason,
        };
        let block = parse_dmtf(index, spec, body).map_err(bad)?;
        let slot = seen.get_mut(usize::from(index));
        match slot {
            Some(flag) if !*flag => *flag = true,
            _ => {
                return Err(bad(
                    "its index appears twice in the report, which a genuine report never does",
                ));
            }
        }
        blocks.push(block);
        used += len;
    }
    let rest = record.get(used..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(blocks);
    }
    // Bytes remain: if they are whole blocks, NumberOfBlocks undercounts; else the record
    // length is wrong.
    match count_whole_blocks(rest) {
        Some(more) => Err(SpdmError::BlockCountMismatch {
            declared,
            found: blocks.len() + more,
        }),
        None => Err(SpdmError::RecordLengthMismatch {
            declared: record.len(),
            used,
            blocks: blocks.len(),
        }),
    }
}

/// What the block at the start of `rest` needs, header included (its header if cut short).
fn block_need(rest: &[u8]) -> usize {
    match rest.split_first_chunk::<BLOCK_HEADER_LEN>() {
        Some(([_, _, s0, s1], _)) => BLOCK_HEADER_LEN + usize::from(u16::from_le_bytes([*s0, *s1])),
        None => BLOCK_HEADER_LEN,
    }
}

/// How many whole blocks `rest` holds, if it is exactly whole blocks.
fn count_whole_blocks(mut rest: &[u8]) -> Option<usize> {
    let mut count = 0usize;
    while !rest.is_empty() {
        let (_, _, _, len) = split_block(rest)?;
        rest = rest.get(len..)?;
        count += 1;
    }
    Some(count)
}

fn parse_dmtf(index: u8, spec: u8, body: &[u8]) -> Result<MeasurementBlock, &'static str> {
    if spec != DMTF_SPEC {
        return Err(
            "its measurement specification is not DMTF (1), the only one NVIDIA reports use",
        );
    }
    let ([value_type, v0, v1], value) = body
        .split_first_chunk::<DMTF_HEADER_LEN>()
        .ok_or("it is shorter than the 3-byte DMTF measurement header")?;
    if usize::from(u16::from_le_bytes([*v0, *v1])) != value.len() {
        return Err(
            "its DMTF value size differs from its measurement size less the 3-byte DMTF header",
        );
    }
    Ok(MeasurementBlock {
        index,
        spec,
        value_type: *value_type,
        value: value.to_vec(),
    })
}
