//! Fake-NVML fixtures with confidential computing, made at test time: a generated fixture
//! (`tests/fixtures/nvml/*.json`) given the node's CC settings (`conf_compute`) and, per GPU,
//! the evidence the CC calls serve (`devices[].conf_compute`; `tests/fixtures/nvml/SCHEMA.md`).
//! The keys and certificates come from the caller (the verifier's test devices, made fresh
//! by each test), so nothing secret or expiring is committed.

use serde_json::{Value, json};

use crate::Error;

/// `conf_compute` of the node (`nvmlSystemGetConfComputeSettings` / `GpusReadyState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcSettings {
    /// `ccFeature`.
    pub cc_feature: bool,
    /// `devToolsMode`.
    pub dev_tools_mode: bool,
    /// `multiGpuMode` (protected PCIe).
    pub multi_gpu_mode: bool,
    /// The GPUs accept work.
    pub gpus_ready: bool,
}

impl CcSettings {
    /// CC mode on, production (no dev tools), GPUs ready.
    pub const ON: Self = Self {
        cc_feature: true,
        dev_tools_mode: false,
        multi_gpu_mode: false,
        gpus_ready: true,
    };
    /// Everything off: a node without CC set up.
    pub const OFF: Self = Self {
        cc_feature: false,
        dev_tools_mode: false,
        multi_gpu_mode: false,
        gpus_ready: false,
    };
    /// Multi-GPU protected PCIe on, CC mode off.
    pub const PROTECTED_PCIE: Self = Self {
        cc_feature: false,
        dev_tools_mode: false,
        multi_gpu_mode: true,
        gpus_ready: true,
    };
}

/// How a GPU's attestation report is made (`conf_compute.report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportSource {
    /// These bytes whatever nonce is asked (a real report).
    FixedHex(String),
    /// A fresh report for each nonce, signed with the device's leaf key.
    Signed {
        /// PKCS#8 P-384 leaf key, standard base64.
        key_pkcs8_b64: String,
        /// The FWID (48 bytes), hex.
        fwid_hex: String,
    },
}

/// One GPU's `conf_compute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuCc {
    /// The attestation certificate chain, PEM, leaf first.
    pub cert_chain_pem: String,
    /// The report.
    pub report: ReportSource,
    /// Both calls sleep this long first.
    pub delay_ms: Option<u64>,
    /// `attestationReportSize` written instead of the report's length.
    pub report_size_override: Option<u32>,
}

impl GpuCc {
    /// A GPU serving fresh signed reports.
    pub fn signed(cert_chain_pem: String, key_pkcs8_b64: String, fwid: &[u8]) -> Self {
        Self {
            cert_chain_pem,
            report: ReportSource::Signed {
                key_pkcs8_b64,
                fwid_hex: hex(fwid),
            },
            delay_ms: None,
            report_size_override: None,
        }
    }

    /// A GPU serving a fixed report (hex).
    pub fn fixed(cert_chain_pem: String, report_hex: String) -> Self {
        Self {
            cert_chain_pem,
            report: ReportSource::FixedHex(report_hex),
            delay_ms: None,
            report_size_override: None,
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str, Error> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Error(format!("the base fixture has no {field} string")))
}

/// `base` (a fixture's JSON) with the node's CC `settings` and, for each GPU `i`,
/// `gpus[i]`'s evidence (`None`, or a GPU past the list's end: no `conf_compute`, so its CC
/// calls answer NOT_SUPPORTED). A signed report carries the fixture's driver version and the
/// GPU's VBIOS version, as a real GPU's would match its inventory.
pub fn with_conf_compute(
    base: &str,
    settings: CcSettings,
    gpus: &[Option<GpuCc>],
) -> Result<String, Error> {
    let mut fixture: Value =
        serde_json::from_str(base).map_err(|e| Error(format!("base fixture: {e}")))?;
    let driver = text(&fixture, "driver_version")?.to_owned();
    fixture["conf_compute"] = json!({
        "cc_feature": settings.cc_feature,
        "dev_tools_mode": settings.dev_tools_mode,
        "multi_gpu_mode": settings.multi_gpu_mode,
        "gpus_ready": settings.gpus_ready,
    });
    let devices = fixture
        .get_mut("devices")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error("the base fixture has no devices list".into()))?;
    if gpus.len() > devices.len() {
        return Err(Error(format!(
            "{} GPUs' evidence for a fixture of {} GPUs",
            gpus.len(),
            devices.len()
        )));
    }
    for (device, cc) in devices.iter_mut().zip(gpus) {
        let Some(cc) = cc else { continue };
        let report = match &cc.report {
            ReportSource::FixedHex(h) => json!({ "fixed_hex": h }),
            ReportSource::Signed {
                key_pkcs8_b64,
                fwid_hex,
            } => json!({ "signed": {
                "key_pkcs8_b64": key_pkcs8_b64,
                "driver_version": driver,
                "vbios_version": text(device, "vbios_version")?,
                "fwid_hex": fwid_hex,
            } }),
        };
        let mut value = json!({ "cert_chain_pem": cc.cert_chain_pem, "report": report });
        if let Some(ms) = cc.delay_ms {
            value["delay_ms"] = json!(ms);
        }
        if let Some(size) = cc.report_size_override {
            value["report_size_override"] = json!(size);
        }
        device["conf_compute"] = value;
    }
    serde_json::to_string_pretty(&fixture).map_err(|e| Error(e.to_string()))
}

/// The real H100 sample in `tests/fixtures/nvidia-cc` under `root`: (report hex, PEM chain).
pub fn real_h100_sample(root: &std::path::Path) -> Result<(String, String), Error> {
    let dir = root.join("tests").join("fixtures").join("nvidia-cc");
    let report = crate::read(&dir.join("hopperAttestationReport.txt"))?;
    let chain = crate::read(&dir.join("hopperCertChain.txt"))?;
    Ok((report.trim().to_owned(), chain))
}
