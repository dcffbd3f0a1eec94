//! The `gpu-evidence` command: `verify` checks one GPU's evidence on its own, as an analyst
//! holds it (the hex report and PEM chain NVIDIA's tools write), and `nonce` prints the nonce
//! tppguard derives for a GPU, so the binding of a report to a challenge can be reproduced.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rustls_pki_types::CertificateDer;
use tppguard_proto::claims::Nonce;
use tppguard_proto::gpu_evidence::{GpuEvidence, gpu_nonce};
use tppguard_proto::identity::NodeId;
use tppguard_proto::text::escape;

use super::rim::{ReferenceValues, RimError};
use super::{Expected, GpuEvidenceReport, InventoryRule, verify_gpu_evidence};
use crate::Outcome;
use crate::chain::{TrustAnchors, TrustError, certs_from_pem};

/// The NVIDIA Device Identity CA, shipped in the binary (`verifier/data/README.md`).
pub const NVIDIA_DEVICE_IDENTITY_CA_PEM: &[u8] =
    include_bytes!("../../data/nvidia-device-identity-ca.pem");

/// The largest report or chain file read (a hex report of 8,192 bytes with line breaks fits).
const MAX_INPUT_FILE_BYTES: u64 = 64 * 1024;

/// Flags of `gpu-evidence`.
#[derive(Debug, Args)]
pub struct GpuEvidenceArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: GpuEvidenceCommand,
}

/// `gpu-evidence` subcommands.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process: the size of a command line does not matter"
)]
pub enum GpuEvidenceCommand {
    /// Verify one GPU's signed measurement report and certificate chain.
    ///
    /// Runs every check the verifier runs on an attestation's GPU evidence (cert_chain,
    /// cert_validity, signature, nonce, fwid, driver_version, vbios_version, model,
    /// measurements, ocsp) and prints each with its outcome and reason, then what the signed
    /// report says and the GPU's hardware id. Without --trust or --root, the chain must lead
    /// to the NVIDIA Device Identity CA shipped in this binary. There is no inventory here:
    /// without --driver-version or --vbios-version those checks are not_checked (an
    /// attestation must state them). Example, NVIDIA's H100 sample (nvtrust):
    ///
    ///   tppguard-verifier gpu-evidence verify \
    ///     --report hopperAttestationReport.txt --chain hopperCertChain.txt \
    ///     --nonce 931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb \
    ///     --at 2024-06-01T00:00:00Z --driver-version 550.90.07 \
    ///     --vbios-version 96.00.9F.00.01 --model "NVIDIA H100 80GB HBM3"
    ///
    /// Exit code 0: verified (versions not given are reported as not compared); 1: a check
    /// failed, or a required one could not run; 2: could not run at all (an unreadable file,
    /// a text report that is not hex, a bad flag).
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),

    /// Print the nonce tppguard gives GPU --index of node --node-id for a challenge.
    ///
    /// SHA-256("tppguard gpu-evidence nonce v1" NUL || challenge bytes || node id (32 bytes)
    /// || index as 4 bytes big-endian), lower-case hex: what a GPU's report must answer in an
    /// attestation. Example:
    ///
    ///   tppguard-verifier gpu-evidence nonce --challenge "$NONCE" \
    ///     --node-id 3f0c...e1 --index 0
    #[command(verbatim_doc_comment)]
    Nonce(NonceArgs),
}

/// Flags of `gpu-evidence verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The report: request || response as NVIDIA's tools write it (hex text, whitespace
    /// allowed) or raw binary.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,

    /// The GPU's certificate chain, PEM, leaf first (as NVML returns it).
    #[arg(long, value_name = "FILE")]
    pub chain: PathBuf,

    /// The nonce the report must answer: 64 hex digits.
    #[arg(long, value_name = "HEX", value_parser = parse_nonce32)]
    pub nonce: [u8; 32],

    /// The instant to verify at: RFC 3339 with an offset or Unix seconds (default: now).
    #[arg(long, value_name = "RFC3339|UNIX", allow_negative_numbers = true,
          value_parser = parse_at)]
    pub at: Option<i64>,

    /// A trust.toml whose `[vendor] device_roots` (and `reference_values`) to use.
    #[arg(long, value_name = "TRUST.toml", conflicts_with = "root")]
    pub trust: Option<PathBuf>,

    /// A PEM file of device-identity roots to pin instead of NVIDIA's.
    #[arg(long, value_name = "PEM")]
    pub root: Option<PathBuf>,

    /// A folder of reference-value files (NVIDIA RIMs, *.xml or *.swidtag); replaces
    /// trust.toml's `reference_values`. Their XML signatures are not verified.
    #[arg(long, value_name = "DIR")]
    pub rims: Option<PathBuf>,

    /// The driver version the report must carry (default: not checked).
    #[arg(long, value_name = "V")]
    pub driver_version: Option<String>,

    /// The VBIOS version the report must carry, as NVML writes it (96.00.9F.00.01; default:
    /// not checked).
    #[arg(long, value_name = "V")]
    pub vbios_version: Option<String>,

    /// The architecture the GPU must be (Hopper, Blackwell).
    #[arg(long, value_name = "A")]
    pub architecture: Option<String>,

    /// The model name the GPU must be sold as (NVML's, e.g. "NVIDIA H100 80GB HBM3").
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,

    /// The evidence's architecture as NVIDIA's tools name it (HOPPER, BLACKWELL).
    #[arg(long, value_name = "ARCH", default_value = "HOPPER")]
    pub arch: String,

    /// Print the report (every check, facts, hardware id) as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `gpu-evidence nonce`.
#[derive(Debug, Args)]
pub struct NonceArgs {
    /// The verifier's challenge (lower-case hex, 32 to 37 bytes).
    #[arg(long, value_name = "HEX", value_parser = parse_challenge)]
    pub challenge: Nonce,

    /// The node id: SHA-256 of the node key's SubjectPublicKeyInfo, 64 hex digits.
    #[arg(long, value_name = "HEX", value_parser = parse_node_id)]
    pub node_id: NodeId,

    /// The GPU's index in the attestation's submods.
    #[arg(long, value_name = "N")]
    pub index: u32,
}

fn parse_nonce32(text: &str) -> Result<[u8; 32], String> {
    NodeId::from_hex(text)
        .map(|id| *id.as_bytes())
        .ok_or_else(|| format!("{:?}: not 64 hex digits (32 bytes)", escape(text)))
}

fn parse_node_id(text: &str) -> Result<NodeId, String> {
    NodeId::from_hex(text).ok_or_else(|| format!("{:?}: not 64 hex digits", escape(text)))
}

fn parse_challenge(text: &str) -> Result<Nonce, String> {
    Nonce::parse(text).map_err(|e| format!("{:?}: {e}", escape(text)))
}

fn parse_at(text: &str) -> Result<i64, String> {
    crate::licence::parse_at(text).map_err(|reason| format!("{:?} {reason}", escape(text)))
}

/// Why `gpu-evidence` could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuEvidenceCliError {
    /// A file could not be read, or is larger than allowed.
    #[error("{}: cannot read: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The report file is text but not hex.
    #[error("{}: the report is text but not hex ({reason})", path.display())]
    NotHex {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The --root file holds no usable root.
    #[error("{}: not a usable device root: {reason}", path.display())]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// trust.toml could not be loaded.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The --rims folder could not be read.
    #[error("--rims: {0}")]
    Rims(#[from] RimError),
}

impl GpuEvidenceCliError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Read { .. } => "check the path and its permissions",
            Self::NotHex { .. } => {
                "give the report as NVIDIA's tools write it: hex digits (whitespace allowed) \
                 or the raw bytes"
            }
            Self::BadRoot { .. } => "give a PEM file of CA certificates (the device-identity root)",
            Self::Trust(_) => "fix trust.toml or the file it names",
            Self::Rims(_) => "give a folder of NVIDIA RIM files (SWID tags)",
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, GpuEvidenceCliError> {
    crate::chain::read_bounded(path, MAX_INPUT_FILE_BYTES).map_err(|e| GpuEvidenceCliError::Read {
        path: path.to_owned(),
        reason: match e {
            TrustError::Read { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    })
}

/// The report's bytes: hex text (whitespace allowed) when the file is all printable ASCII and
/// whitespace, else the raw bytes.
pub fn report_bytes(path: &Path, file: &[u8]) -> Result<Vec<u8>, GpuEvidenceCliError> {
    let is_text = file
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if !is_text || file.is_empty() {
        return Ok(file.to_vec());
    }
    let digits: Vec<u8> = file
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let not_hex = |reason| GpuEvidenceCliError::NotHex {
        path: path.to_owned(),
        reason,
    };
    if !digits.len().is_multiple_of(2) {
        return Err(not_hex("an odd number of hex digits"));
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| not_hex("a character that is not a hex digit"))
}

/// Runs `gpu-evidence`; `now` is the default verification time.
pub fn run(args: &GpuEvidenceArgs, out: &mut dyn Write, now: i64) -> Result<Outcome, crate::Error> {
    match &args.command {
        GpuEvidenceCommand::Verify(args) => verify(args, out, now),
        GpuEvidenceCommand::Nonce(args) => {
            let nonce = gpu_nonce(&args.challenge, &args.node_id, args.index);
            writeln!(
                out,
                "{}",
                nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )?;
            Ok(Outcome::Clean)
        }
    }
}

/// The anchors `verify` uses, and a line saying where they come from.
fn anchors(args: &VerifyArgs) -> Result<(TrustAnchors, String), GpuEvidenceCliError> {
    let (trust, source) =
        if let Some(path) = &args.trust {
            let trust = TrustAnchors::from_trust_toml(path)?;
            let line = format!(
                "the {} [vendor] device_roots of {}",
                trust.device_roots_count(),
                path.display()
            );
            (trust, line)
        } else {
            let (pem, path, line) = match &args.root {
            Some(path) => (read(path)?, path.clone(), format!("the roots of {}", path.display())),
            None => (
                NVIDIA_DEVICE_IDENTITY_CA_PEM.to_vec(),
                PathBuf::from("(shipped) nvidia-device-identity-ca.pem"),
                "the NVIDIA Device Identity CA shipped in tppguard-verifier (no --trust or --root)"
                    .to_owned(),
            ),
        };
            let bad_root = |reason: String| GpuEvidenceCliError::BadRoot {
                path: path.clone(),
                reason,
            };
            let roots: Vec<CertificateDer<'static>> = certs_from_pem(&pem).map_err(bad_root)?;
            let trust = TrustAnchors::default()
                .with_device_roots(&roots)
                .map_err(|e| bad_root(format!("{} ({})", e, e.code())))?;
            (trust, line)
        };
    Ok(match &args.rims {
        Some(dir) => (
            trust.with_reference_values(ReferenceValues::load_dir(dir)?),
            source,
        ),
        None => (trust, source),
    })
}

fn verify(args: &VerifyArgs, out: &mut dyn Write, now: i64) -> Result<Outcome, crate::Error> {
    let report_file = read(&args.report)?;
    let report = report_bytes(&args.report, &report_file)?;
    let chain = read(&args.chain)?;
    let (trust, source) = anchors(args)?;
    let at = args.at.unwrap_or(now);
    let expected = Expected {
        nonce: args.nonce,
        driver_version: args.driver_version.as_deref(),
        vbios_version: args.vbios_version.as_deref(),
        architecture: args.architecture.as_deref(),
        model: args.model.as_deref(),
        inventory: InventoryRule::Optional,
    };
    let evidence = GpuEvidence::from_parts(&args.arch, &chain, &report);
    let result = verify_gpu_evidence(&evidence, &trust, &expected, at);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &result)?;
        writeln!(out)?;
    } else {
        print_text(&result, &source, at, out)?;
    }
    Ok(if verified_without_inventory(&result) {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// The analyst's verdict: [`GpuEvidenceReport::verified`], except that a version no flag
/// claimed (`no_claim`) may be not_checked: there is no inventory to compare with.
pub fn verified_without_inventory(result: &GpuEvidenceReport) -> bool {
    result.failures().next().is_none()
        && super::CheckName::REQUIRED.iter().all(|name| {
            result.check(*name).is_some_and(|c| {
                c.outcome == super::Outcome::Passed
                    || (c.outcome == super::Outcome::NotChecked && c.code == "no_claim")
            })
        })
}

fn print_text(
    result: &GpuEvidenceReport,
    source: &str,
    at: i64,
    out: &mut dyn Write,
) -> Result<(), crate::Error> {
    let verdict = if result.verified() {
        "VERIFIED"
    } else if verified_without_inventory(result) {
        "VERIFIED (driver and VBIOS versions not compared: give --driver-version and \
         --vbios-version)"
    } else {
        "NOT VERIFIED"
    };
    writeln!(out, "GPU evidence: {verdict}")?;
    writeln!(out, "trust: {}", escape(source))?;
    writeln!(out, "at: {} ({at})", crate::licence::format_rfc3339(at))?;
    writeln!(out)?;
    for check in &result.checks {
        writeln!(
            out,
            "  {:<17} {:<12} {}",
            check.name.as_str(),
            check.outcome.as_str(),
            escape(&check.sentence)
        )?;
        if check.code != "passed" {
            writeln!(out, "  {:<17} {:<12} code: {}", "", "", escape(&check.code))?;
        }
    }
    writeln!(out)?;
    let show = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(|| "-".to_owned(), |s| escape(s).into_owned())
    };
    writeln!(out, "hardware_id: {}", show(&result.hardware_id))?;
    writeln!(out, "ecid: {}", show(&result.ecid))?;
    if let Some(f) = &result.facts {
        writeln!(out, "facts (from the signed report):")?;
        let lines = [
            ("driver_version", show(&f.driver_version)),
            ("vbios_version", show(&f.vbios_version)),
            ("fwid", show(&f.fwid)),
            ("chip", show(&f.chip)),
            ("architecture", show(&f.architecture)),
            (
                "board_id",
                f.board_id.map_or("-".to_owned(), |b| format!("0x{b:x}")),
            ),
            ("chip_sku", show(&f.chip_sku)),
            ("project", show(&f.project)),
            ("project_sku", show(&f.project_sku)),
            (
                "protected_pcie_status",
                f.protected_pcie_status
                    .map_or("-".to_owned(), |b| format!("0x{b:02x}")),
            ),
            ("nvdec0_status", show(&f.nvdec0_status)),
            ("feature_flag", show(&f.feature_flag)),
            ("chip_info", show(&f.chip_info)),
            ("measurements", f.measurement_count.to_string()),
            (
                "unknown_opaque_ids",
                if f.unknown_opaque_ids.is_empty() {
                    "-".to_owned()
                } else {
                    f.unknown_opaque_ids
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
        ];
        for (name, value) in lines {
            writeln!(out, "  {name}: {value}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
