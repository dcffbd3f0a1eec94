//! NVIDIA GPU confidential-computing evidence: the GPU's own signed SPDM measurement report and
//! its device certificate chain, as the agent carries them in a submod's `gpu_evidence` and as
//! NVIDIA's tools exchange them (the evidence item of nvtrust's remote verifier and of the
//! attestation SDK: `arch`, base64 `certificate` of the PEM chain, base64 `evidence` of the
//! report).
//!
//! This module owns the outside bytes of that evidence: decoding them (bounded), the nonce a
//! GPU is given ([`gpu_nonce`]), and the SPDM parser ([`spdm`], [`opaque`]). Checking the
//! chain, the signature and the facts is the verifier's; nothing here reads a clock or a file.

pub mod encode;
pub mod opaque;
pub mod spdm;
#[cfg(test)]
mod tests;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::claims::Nonce;
use crate::identity::NodeId;

/// The largest report accepted, in bytes: NVML's `attestationReport` buffer.
pub const MAX_REPORT_BYTES: usize = 8192;
/// The largest PEM certificate chain accepted, in bytes: NVML's `attestationCertChain`
/// buffer is 5,120; a little room for line-ending differences.
pub const MAX_CHAIN_PEM_BYTES: usize = 8192;
/// The longest `arch` accepted, in characters.
pub const MAX_ARCH_CHARS: usize = 32;

/// The domain separator of [`gpu_nonce`], version 1.
pub const GPU_NONCE_DOMAIN: &[u8] = b"tppguard gpu-evidence nonce v1\0";

/// One GPU's evidence, as NVIDIA's tools exchange it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidence {
    /// The GPU architecture as NVIDIA's tools name it: `HOPPER`, `BLACKWELL`.
    pub arch: String,
    /// Base64 (standard alphabet, padded) of the device certificate chain as PEM, leaf first,
    /// as NVML's `nvmlDeviceGetConfComputeGpuCertificate` returns it.
    pub certificate: String,
    /// Base64 (standard alphabet, padded) of the SPDM GET_MEASUREMENTS request followed by
    /// the signed MEASUREMENTS response, as `nvmlDeviceGetConfComputeGpuAttestationReport`
    /// returns it.
    pub evidence: String,
}

/// Why a [`GpuEvidence`] item could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// A field is longer than its bound (checked before decoding).
    #[error("gpu_evidence `{field}` is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// `certificate`, `evidence` or `arch`.
        field: &'static str,
        /// Its length (decoded bytes where known, else encoded).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A field is not standard padded base64.
    #[error("gpu_evidence `{field}` is not base64 (standard alphabet, padded)")]
    NotBase64 {
        /// `certificate` or `evidence`.
        field: &'static str,
    },
}

impl EvidenceError {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "gpu_evidence_too_large",
            Self::NotBase64 { .. } => "gpu_evidence_not_base64",
        }
    }
}

impl GpuEvidence {
    /// Wraps raw bytes as NVIDIA's tools exchange them.
    pub fn from_parts(arch: &str, chain_pem: &[u8], report: &[u8]) -> Self {
        Self {
            arch: arch.to_owned(),
            certificate: STANDARD.encode(chain_pem),
            evidence: STANDARD.encode(report),
        }
    }

    /// The report's bytes (request || response), at most [`MAX_REPORT_BYTES`].
    pub fn report_bytes(&self) -> Result<Vec<u8>, EvidenceError> {
        decode_bounded("evidence", &self.evidence, MAX_REPORT_BYTES)
    }

    /// The PEM chain's bytes, at most [`MAX_CHAIN_PEM_BYTES`].
    pub fn chain_pem(&self) -> Result<Vec<u8>, EvidenceError> {
        decode_bounded("certificate", &self.certificate, MAX_CHAIN_PEM_BYTES)
    }
}

fn decode_bounded(field: &'static str, text: &str, max: usize) -> Result<Vec<u8>, EvidenceError> {
    // Base64 carries 3 bytes per 4 characters: refuse by the encoded length first, so an
    // oversized field costs no decoding.
    let encoded_max = max.div_ceil(3).saturating_mul(4);
    if text.len() > encoded_max {
        return Err(EvidenceError::TooLarge {
            field,
            len: text.len(),
            max,
        });
    }
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| EvidenceError::NotBase64 { field })?;
    if bytes.len() > max {
        return Err(EvidenceError::TooLarge {
            field,
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// The 32-byte nonce the agent gives GPU `gpu_index` of node `node` when answering the
/// verifier's `challenge`:
///
/// `SHA-256(GPU_NONCE_DOMAIN || challenge bytes || node id (SHA-256 of the node key's SPKI) ||
/// gpu_index as 4 bytes big-endian)`.
///
/// A report signed over it answers this challenge, for this node key, in this submod: it
/// cannot be replayed later, borrowed from another node, or copied to another GPU of the same
/// node.
pub fn gpu_nonce(challenge: &Nonce, node: &NodeId, gpu_index: u32) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(GPU_NONCE_DOMAIN);
    ctx.update(&challenge.bytes());
    ctx.update(node.as_bytes());
    ctx.update(&gpu_index.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
