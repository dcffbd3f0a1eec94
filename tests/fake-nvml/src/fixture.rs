//! The fixture format (`tests/fixtures/nvml/SCHEMA.md`) and the node it describes: parsing,
//! validation and every lookup the exported functions make. Nothing here touches a raw pointer,
//! so all of it is unit-tested without loading the library.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An `nvmlReturn_t`.
pub type Code = u32;

/// `NVML_SUCCESS`.
pub const SUCCESS: Code = 0;
/// `NVML_ERROR_UNINITIALIZED`.
pub const UNINITIALIZED: Code = 1;
/// `NVML_ERROR_INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: Code = 2;
/// `NVML_ERROR_NOT_SUPPORTED`.
pub const NOT_SUPPORTED: Code = 3;
/// `NVML_ERROR_NOT_FOUND`.
pub const NOT_FOUND: Code = 6;
/// `NVML_ERROR_INSUFFICIENT_SIZE`.
pub const INSUFFICIENT_SIZE: Code = 7;
/// `NVML_ERROR_GPU_IS_LOST`.
pub const GPU_IS_LOST: Code = 15;
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
pub const ARGUMENT_VERSION_MISMATCH: Code = 25;
/// `NVML_ERROR_UNKNOWN`.
pub const UNKNOWN: Code = 999;

/// The value of the fixture's `schema` field.
pub const SCHEMA: &str = "tppguard-fake-nvml/v1";

/// `NVML_ERROR_*` suffixes and their codes.
const ERRORS: &[(&str, Code)] = &[
    ("SUCCESS", 0),
    ("UNINITIALIZED", 1),
    ("INVALID_ARGUMENT", 2),
    ("NOT_SUPPORTED", 3),
    ("NO_PERMISSION", 4),
    ("ALREADY_INITIALIZED", 5),
    ("NOT_FOUND", 6),
    ("INSUFFICIENT_SIZE", 7),
    ("INSUFFICIENT_POWER", 8),
    ("DRIVER_NOT_LOADED", 9),
    ("TIMEOUT", 10),
    ("IRQ_ISSUE", 11),
    ("LIBRARY_NOT_FOUND", 12),
    ("FUNCTION_NOT_FOUND", 13),
    ("CORRUPTED_INFOROM", 14),
    ("GPU_IS_LOST", 15),
    ("RESET_REQUIRED", 16),
    ("OPERATING_SYSTEM", 17),
    ("LIB_RM_VERSION_MISMATCH", 18),
    ("IN_USE", 19),
    ("MEMORY", 20),
    ("NO_DATA", 21),
    ("INSUFFICIENT_RESOURCES", 23),
    ("ARGUMENT_VERSION_MISMATCH", 25),
    ("NOT_READY", 27),
    ("GPU_NOT_FOUND", 28),
    ("INVALID_STATE", 29),
    ("UNKNOWN", 999),
];

/// The `NVML_ERROR_*` suffix of a code (`SUCCESS` for 0), as the calls record names results.
pub fn error_name(code: Code) -> &'static str {
    ERRORS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("UNKNOWN", |(n, _)| n)
}

/// `NVML_COMPUTEMODE_*` suffixes and values (`nvmlComputeMode_t`).
const COMPUTE_MODES: &[(&str, u32)] = &[
    ("DEFAULT", 0),
    ("EXCLUSIVE_THREAD", 1),
    ("PROHIBITED", 2),
    ("EXCLUSIVE_PROCESS", 3),
];

/// The value of an `NVML_COMPUTEMODE_*` suffix.
pub fn compute_mode_value(name: &str) -> Option<u32> {
    COMPUTE_MODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// The `NVML_COMPUTEMODE_*` suffix of a value, or the number for one NVML does not define.
pub fn compute_mode_name(value: u32) -> String {
    COMPUTE_MODES
        .iter()
        .find(|(_, v)| *v == value)
        .map_or_else(|| value.to_string(), |(n, _)| (*n).to_owned())
}

/// The code of an `NVML_ERROR_*` suffix (`SUCCESS` is not an error and is refused).
pub fn error_code(name: &str) -> Option<Code> {
    ERRORS
        .iter()
        .find(|(n, c)| *n == name && *c != SUCCESS)
        .map(|(_, c)| *c)
}

/// `nvmlErrorString`'s text for a code, NUL-terminated.
pub fn error_text(code: Code) -> &'static str {
    const TEXTS: &[(Code, &str)] = &[
        (0, "Success\0"),
        (1, "Uninitialized\0"),
        (2, "Invalid Argument\0"),
        (3, "Not Supported\0"),
        (4, "Insufficient Permissions\0"),
        (5, "Already Initialized\0"),
        (6, "Not Found\0"),
        (7, "Insufficient Size\0"),
        (8, "Insufficient External Power\0"),
        (9, "Driver Not Loaded\0"),
        (10, "Timeout\0"),
        (11, "Interrupt Request Issue\0"),
        (12, "NVML Shared Library Not Found\0"),
        (13, "Function Not Found\0"),
        (14, "Corrupted infoROM\0"),
        (15, "GPU is lost\0"),
        (16, "GPU requires restart\0"),
        (17, "The operating system has blocked the request.\0"),
        (18, "RM has detected an NVML/RM version mismatch.\0"),
        (19, "In use by another client\0"),
        (20, "Insufficient Memory\0"),
        (21, "No data\0"),
        (23, "Insufficient resources\0"),
        (25, "Argument version mismatch\0"),
        (27, "Not ready\0"),
        (28, "GPU not found\0"),
        (29, "Invalid state\0"),
    ];
    TEXTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("Unknown Error\0", |(_, t)| t)
}

/// `NVML_BRAND_*` suffixes and values (`nvmlBrandType_t`).
const BRANDS: &[(&str, u32)] = &[
    ("UNKNOWN", 0),
    ("QUADRO", 1),
    ("TESLA", 2),
    ("NVS", 3),
    ("GRID", 4),
    ("GEFORCE", 5),
    ("TITAN", 6),
    ("NVIDIA_VAPPS", 7),
    ("NVIDIA_VPC", 8),
    ("NVIDIA_VCS", 9),
    ("NVIDIA_VWS", 10),
    ("NVIDIA_CLOUD_GAMING", 11),
    ("QUADRO_RTX", 12),
    ("NVIDIA_RTX", 13),
    ("NVIDIA", 14),
    ("GEFORCE_RTX", 15),
    ("TITAN_RTX", 16),
];

/// `NVML_DEVICE_ARCH_*` suffixes and values (`nvmlDeviceArchitecture_t`).
const ARCHITECTURES: &[(&str, u32)] = &[
    ("KEPLER", 2),
    ("MAXWELL", 3),
    ("PASCAL", 4),
    ("VOLTA", 5),
    ("TURING", 6),
    ("AMPERE", 7),
    ("ADA", 8),
    ("HOPPER", 9),
    ("BLACKWELL", 10),
    ("UNKNOWN", u32::MAX),
];

/// The value of an `NVML_BRAND_*` suffix.
pub fn brand_value(name: &str) -> Option<u32> {
    BRANDS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The value of an `NVML_DEVICE_ARCH_*` suffix.
pub fn architecture_value(name: &str) -> Option<u32> {
    ARCHITECTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// Symbols that take no device handle: a fixture's top-level `errors` may name them.
pub const SYSTEM_SYMBOLS: &[&str] = &[
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlSystemGetConfComputeSettings",
    "nvmlSystemGetConfComputeGpusReadyState",
    "nvmlSystemGetConfComputeState",
    "nvmlSystemSetConfComputeGpusReadyState",
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2",
];

/// Symbols that take a device handle: a device's `errors` may name them.
pub const DEVICE_SYMBOLS: &[&str] = &[
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetSerial",
    "nvmlDeviceGetBrand",
    "nvmlDeviceGetBoardPartNumber",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetArchitecture",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetAttributes_v2",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetVbiosVersion",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetConfComputeGpuCertificate",
    "nvmlDeviceGetConfComputeGpuAttestationReport",
    "nvmlDeviceGetComputeMode",
    "nvmlDeviceSetComputeMode",
];

/// Every `nvmlClocksThrottleReason*` / `nvmlClocksEventReason*` bit NVML defines: GPU idle 0x1,
/// applications clocks setting 0x2, SW power cap 0x4, HW slowdown 0x8, sync boost 0x10, SW
/// thermal slowdown 0x20, HW thermal slowdown 0x40, HW power brake slowdown 0x80, display
/// clock setting 0x100.
pub const THROTTLE_REASONS_MASK: u64 = 0x1FF;

/// The precision codes a `benchmark.dense_tops` key may be (`tppguard_proto::tpp::Precision`'s
/// lower-case codes).
pub const PRECISION_CODES: &[&str] = &[
    "fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4",
];

/// A whole fixture file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub schema: String,
    pub description: String,
    pub source: String,
    pub init_error: Option<String>,
    pub driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub cuda_driver_version: Option<i32>,
    pub conf_compute: Option<ConfCompute>,
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
    pub devices: Vec<Device>,
}

/// `conf_compute`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfCompute {
    pub cc_feature: Option<bool>,
    pub dev_tools_mode: Option<bool>,
    pub multi_gpu_mode: Option<bool>,
    pub gpus_ready: Option<bool>,
}

/// One GPU.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub serial: Option<String>,
    pub brand: Option<String>,
    pub board_part_number: Option<String>,
    pub pci: Option<Pci>,
    pub architecture: Option<String>,
    pub cuda_compute_capability: Option<[i32; 2]>,
    pub multiprocessor_count: Option<u32>,
    pub memory: Option<Memory>,
    pub max_clocks_mhz: Option<MaxClocks>,
    pub power_limit_mw: Option<u32>,
    pub vbios_version: Option<String>,
    pub mig_mode: Option<MigMode>,
    pub max_mig_devices: Option<u32>,
    #[serde(default)]
    pub mig_devices: Vec<MigDevice>,
    pub telemetry: Option<Telemetry>,
    pub compute_processes: Option<Vec<Process>>,
    /// Read by the agent's simulated benchmark backend, never by the fake: parsed and checked
    /// here only so that a fixture with a malformed one is refused at init.
    pub benchmark: Option<Benchmark>,
    /// The GPU's confidential-computing evidence: what the certificate and attestation-report
    /// calls answer (absent: NOT_SUPPORTED).
    pub conf_compute: Option<GpuConfCompute>,
    /// `nvmlDeviceGetComputeMode` at init, an `NVML_COMPUTEMODE_*` suffix (absent: `DEFAULT`,
    /// the mode every GPU starts in after a driver load).
    pub compute_mode: Option<String>,
    /// `false`: `nvmlDeviceSetComputeMode` answers `SUCCESS` but the mode read back stays
    /// what it was (someone with root set it back at once). Absent: `true`.
    pub compute_mode_sticks: Option<bool>,
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
}

/// `devices[].conf_compute`: one GPU's evidence. A forced error on either call goes in the
/// device's `errors` map, as for every other symbol.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuConfCompute {
    /// The attestation certificate chain, PEM, leaf first (`attestationCertChain`).
    pub cert_chain_pem: String,
    /// How the attestation report is made.
    pub report: ReportSource,
    /// Both calls sleep this long before answering (outside the library's lock), as a hung
    /// driver does.
    pub delay_ms: Option<u64>,
    /// Written as `attestationReportSize` instead of the report's length: a hostile or buggy
    /// driver's size, possibly past the 8192-byte buffer (the bytes written stay in it).
    pub report_size_override: Option<u32>,
}

/// `conf_compute.report`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ReportSource {
    /// These bytes (hex) whatever nonce is asked: a real report, whose nonce is fixed.
    FixedHex(String),
    /// A fresh report for the nonce asked, shaped like the real H100 sample and signed with
    /// this key.
    Signed(SignedReport),
}

/// `conf_compute.report.signed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// The device's leaf key: PKCS#8, ECDSA P-384, standard base64.
    pub key_pkcs8_b64: String,
    /// Opaque field 3 (driver version).
    pub driver_version: String,
    /// Opaque field 6, in NVML's text form ("96.00.9F.00.01").
    pub vbios_version: String,
    /// Opaque field 20 (FWID), 48 bytes as hex: the leaf certificate's.
    pub fwid_hex: String,
}

/// `NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE`.
pub const ATTESTATION_CERT_CHAIN_SIZE: usize = 5120;
/// `NVML_CC_GPU_ATTESTATION_REPORT_SIZE`.
pub const ATTESTATION_REPORT_SIZE: usize = 8192;

/// Bytes from hex (either case); `None` unless every pair is hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

impl SignedReport {
    fn key(&self) -> Result<ring::signature::EcdsaKeyPair, String> {
        use base64::Engine as _;
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(self.key_pkcs8_b64.trim())
            .map_err(|e| format!("key_pkcs8_b64 is not base64: {e}"))?;
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| format!("key_pkcs8_b64 is not a P-384 PKCS#8 key: {e}"))
    }

    fn fwid(&self) -> Result<[u8; 48], String> {
        decode_hex(&self.fwid_hex)
            .and_then(|b| <[u8; 48]>::try_from(b).ok())
            .ok_or_else(|| format!("fwid_hex {:?} is not 48 bytes of hex", self.fwid_hex))
    }
}

impl GpuConfCompute {
    fn validate(&self, at: &str) -> Result<(), String> {
        if self.cert_chain_pem.len() > ATTESTATION_CERT_CHAIN_SIZE {
            return Err(format!(
                "{at}.cert_chain_pem is {} bytes, more than NVML's {ATTESTATION_CERT_CHAIN_SIZE}",
                self.cert_chain_pem.len()
            ));
        }
        match &self.report {
            ReportSource::FixedHex(hex) => {
                let bytes =
                    decode_hex(hex).ok_or_else(|| format!("{at}.report.fixed_hex is not hex"))?;
                if bytes.len() > ATTESTATION_REPORT_SIZE {
                    return Err(format!(
                        "{at}.report.fixed_hex is {} bytes, more than NVML's \
                         {ATTESTATION_REPORT_SIZE}",
                        bytes.len()
                    ));
                }
            }
            ReportSource::Signed(signed) => {
                signed
                    .key()
                    .map_err(|e| format!("{at}.report.signed.{e}"))?;
                signed
                    .fwid()
                    .map_err(|e| format!("{at}.report.signed.{e}"))?;
                check_string(
                    &format!("{at}.report.signed.driver_version"),
                    Some(&signed.driver_version),
                    80,
                )?;
            }
        }
        Ok(())
    }

    /// The report for the caller's `nonce`: the fixed bytes, or a fresh signed one.
    pub fn report(&self, nonce: [u8; 32]) -> Result<Vec<u8>, Code> {
        match &self.report {
            ReportSource::FixedHex(hex) => decode_hex(hex).ok_or(UNKNOWN),
            ReportSource::Signed(signed) => {
                let key = signed.key().map_err(|_| UNKNOWN)?;
                let fwid = signed.fwid().map_err(|_| UNKNOWN)?;
                let mut builder = tppguard_proto::gpu_evidence::encode::ReportBuilder::hopper_like(
                    &signed.driver_version,
                    &signed.vbios_version,
                    &fwid,
                );
                builder.request_nonce = nonce;
                let rng = ring::rand::SystemRandom::new();
                let mut responder_nonce = [0u8; 32];
                ring::rand::SecureRandom::fill(&rng, &mut responder_nonce).map_err(|_| UNKNOWN)?;
                builder.responder_nonce = responder_nonce;
                tppguard_proto::gpu_evidence::encode::sign_p384(
                    &builder.unsigned_bytes(),
                    &key,
                    &rng,
                )
                .map_err(|_| UNKNOWN)
            }
        }
    }
}

/// `pci`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pci {
    pub bus_id: String,
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    pub pci_device_id: Option<String>,
    pub pci_subsystem_id: Option<String>,
}

/// `memory` (of a GPU or a MIG device).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub total_bytes: u64,
    /// Absent: 0 (NVML's v1 memory call, which old captures come from, has no reserved figure).
    #[serde(default)]
    pub reserved_bytes: u64,
    pub used_bytes: u64,
}

impl Memory {
    /// `total - reserved - used`.
    pub fn free_bytes(&self) -> u64 {
        self.total_bytes
            .saturating_sub(self.reserved_bytes)
            .saturating_sub(self.used_bytes)
    }
}

/// `max_clocks_mhz`; each clock may be absent.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxClocks {
    pub sm: Option<u32>,
    pub memory: Option<u32>,
}

/// `mig_mode`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

/// `telemetry`: what the current-state calls answer; each value may be absent.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// `nvmlDeviceGetClockInfo` SM (and GRAPHICS), MHz.
    pub sm_clock_mhz: Option<u32>,
    /// `nvmlDeviceGetClockInfo` MEM, MHz.
    pub memory_clock_mhz: Option<u32>,
    /// `nvmlDeviceGetTemperature` GPU sensor, degrees C.
    pub temperature_c: Option<u32>,
    /// `nvmlDeviceGetPowerUsage`, milliwatts.
    pub power_usage_mw: Option<u32>,
    /// `nvmlDeviceGetCurrentClocksThrottleReasons` / `...EventReasons` bitmask.
    pub throttle_reasons: Option<u64>,
}

/// One entry of `compute_processes`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    /// Absent: `NVML_VALUE_NOT_AVAILABLE`, as NVML reports when it cannot tell.
    pub used_gpu_memory_bytes: Option<u64>,
}

/// `NVML_VALUE_NOT_AVAILABLE` in an `unsigned long long` field.
pub const VALUE_NOT_AVAILABLE: u64 = u64::MAX;

impl Process {
    /// `usedGpuMemory` as NVML fills it.
    pub fn used_gpu_memory(&self) -> u64 {
        self.used_gpu_memory_bytes.unwrap_or(VALUE_NOT_AVAILABLE)
    }
}

/// `benchmark`: the simulated GEMM benchmark's median dense throughput per precision (TOPS or
/// TFLOPS), for the agent's simulated backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    pub dense_tops: BTreeMap<String, f64>,
}

/// One entry of `mig_devices`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigDevice {
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub gpu_instance_id: Option<u32>,
    pub compute_instance_id: Option<u32>,
    pub multiprocessor_count: Option<u32>,
    pub memory: Option<Memory>,
}

/// Parses a hex `0x…` field.
fn parse_hex(field: &str, value: &str) -> Result<u32, String> {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .ok_or_else(|| format!("{field} {value:?} does not start with 0x"))?;
    u32::from_str_radix(digits, 16).map_err(|e| format!("{field} {value:?}: {e}"))
}

fn check_string(field: &str, value: Option<&str>, max_len: usize) -> Result<(), String> {
    if let Some(v) = value {
        if v.contains('\0') {
            return Err(format!("{field} contains a NUL byte"));
        }
        if v.len() >= max_len {
            return Err(format!(
                "{field} {v:?} is longer than NVML's {max_len}-byte buffer allows"
            ));
        }
    }
    Ok(())
}

fn check_errors(
    field: &str,
    errors: &BTreeMap<String, String>,
    symbols: &[&str],
) -> Result<(), String> {
    for (symbol, name) in errors {
        if !symbols.contains(&symbol.as_str()) {
            return Err(format!(
                "{field}: {symbol:?} is not a symbol this field may force"
            ));
        }
        if error_code(name).is_none() {
            return Err(format!(
                "{field}.{symbol}: {name:?} is not an NVML error name"
            ));
        }
    }
    Ok(())
}

fn check_memory(field: &str, memory: Option<&Memory>) -> Result<(), String> {
    if let Some(m) = memory
        && m.reserved_bytes.saturating_add(m.used_bytes) > m.total_bytes
    {
        return Err(format!("{field}: reserved + used exceed total"));
    }
    Ok(())
}

impl Fixture {
    /// Parses and validates a fixture.
    pub fn parse(json: &str) -> Result<Self, String> {
        let fixture: Self = serde_json::from_str(json).map_err(|e| e.to_string())?;
        fixture.validate()?;
        Ok(fixture)
    }

    fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!("schema is {:?}, expected {SCHEMA:?}", self.schema));
        }
        if self.description.is_empty() || self.description.contains('\n') {
            return Err("description must be one non-empty line".into());
        }
        if self.source.is_empty() {
            return Err("source must not be empty".into());
        }
        if let Some(e) = &self.init_error
            && error_code(e).is_none()
        {
            return Err(format!("init_error {e:?} is not an NVML error name"));
        }
        check_string("driver_version", self.driver_version.as_deref(), 80)?;
        check_string("nvml_version", self.nvml_version.as_deref(), 80)?;
        check_errors("errors", &self.errors, SYSTEM_SYMBOLS)?;
        for (i, d) in self.devices.iter().enumerate() {
            d.validate(&format!("devices[{i}]"))?;
        }
        Ok(())
    }
}

impl Device {
    fn validate(&self, at: &str) -> Result<(), String> {
        check_string(&format!("{at}.name"), self.name.as_deref(), 96)?;
        check_string(&format!("{at}.uuid"), self.uuid.as_deref(), 96)?;
        check_string(&format!("{at}.serial"), self.serial.as_deref(), 30)?;
        check_string(
            &format!("{at}.board_part_number"),
            self.board_part_number.as_deref(),
            80,
        )?;
        check_string(
            &format!("{at}.vbios_version"),
            self.vbios_version.as_deref(),
            32,
        )?;
        if let Some(b) = &self.brand
            && brand_value(b).is_none()
        {
            return Err(format!("{at}.brand {b:?} is not an NVML_BRAND_* name"));
        }
        if let Some(a) = &self.architecture
            && architecture_value(a).is_none()
        {
            return Err(format!(
                "{at}.architecture {a:?} is not an NVML_DEVICE_ARCH_* name"
            ));
        }
        if let Some(p) = &self.pci {
            check_string(&format!("{at}.pci.bus_id"), Some(&p.bus_id), 32)?;
            let (domain, bus, device, _) = parse_bus_id(&p.bus_id)
                .ok_or_else(|| format!("{at}.pci.bus_id {:?} is not DOMAIN:BB:DD.F", p.bus_id))?;
            if (domain, bus, device) != (p.domain, p.bus, p.device) {
                return Err(format!(
                    "{at}.pci: domain/bus/device disagree with bus_id {:?}",
                    p.bus_id
                ));
            }
            if let Some(v) = &p.pci_device_id {
                parse_hex(&format!("{at}.pci.pci_device_id"), v)?;
            }
            if let Some(v) = &p.pci_subsystem_id {
                parse_hex(&format!("{at}.pci.pci_subsystem_id"), v)?;
            }
        }
        check_memory(&format!("{at}.memory"), self.memory.as_ref())?;
        check_errors(&format!("{at}.errors"), &self.errors, DEVICE_SYMBOLS)?;
        if let Some(mode) = &self.compute_mode
            && compute_mode_value(mode).is_none()
        {
            return Err(format!(
                "{at}.compute_mode {mode:?} is not an NVML_COMPUTEMODE_* name (DEFAULT \
                 EXCLUSIVE_THREAD PROHIBITED EXCLUSIVE_PROCESS)"
            ));
        }
        if !self.mig_devices.is_empty() && !self.mig_mode.is_some_and(|m| m.current) {
            return Err(format!("{at}.mig_devices needs mig_mode.current true"));
        }
        for (j, m) in self.mig_devices.iter().enumerate() {
            let at = format!("{at}.mig_devices[{j}]");
            check_string(&format!("{at}.name"), m.name.as_deref(), 96)?;
            check_string(&format!("{at}.uuid"), m.uuid.as_deref(), 96)?;
            check_memory(&format!("{at}.memory"), m.memory.as_ref())?;
        }
        if let Some(reasons) = self.telemetry.and_then(|t| t.throttle_reasons)
            && reasons & !THROTTLE_REASONS_MASK != 0
        {
            return Err(format!(
                "{at}.telemetry.throttle_reasons {reasons:#x} has bits NVML does not define \
                 (mask {THROTTLE_REASONS_MASK:#x})"
            ));
        }
        if let Some(list) = &self.compute_processes {
            let mut pids: Vec<u32> = list.iter().map(|p| p.pid).collect();
            pids.sort_unstable();
            if let Some(w) = pids.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("{at}.compute_processes lists pid {} twice", w[0]));
            }
        }
        if let Some(cc) = &self.conf_compute {
            cc.validate(&format!("{at}.conf_compute"))?;
        }
        if let Some(b) = &self.benchmark {
            for (precision, tops) in &b.dense_tops {
                if !PRECISION_CODES.contains(&precision.as_str()) {
                    return Err(format!(
                        "{at}.benchmark.dense_tops: {precision:?} is not a precision code \
                         ({})",
                        PRECISION_CODES.join(" ")
                    ));
                }
                if !(tops.is_finite() && *tops > 0.0) {
                    return Err(format!(
                        "{at}.benchmark.dense_tops.{precision}: {tops} is not a positive number"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `nvmlDeviceGetMaxMigDeviceCount`'s answer.
    pub fn max_mig_devices(&self) -> Result<u32, Code> {
        match (self.max_mig_devices, self.mig_mode) {
            (Some(n), _) => Ok(n),
            (None, Some(_)) => u32::try_from(self.mig_devices.len()).map_err(|_| UNKNOWN),
            (None, None) => Err(NOT_SUPPORTED),
        }
    }
}

impl Pci {
    /// `pciDeviceId` (absent: 0).
    pub fn device_id(&self) -> u32 {
        self.pci_device_id
            .as_deref()
            .and_then(|v| parse_hex("", v).ok())
            .unwrap_or(0)
    }

    /// `pciSubSystemId` (absent: 0).
    pub fn subsystem_id(&self) -> u32 {
        self.pci_subsystem_id
            .as_deref()
            .and_then(|v| parse_hex("", v).ok())
            .unwrap_or(0)
    }
}

/// The domain, bus, device and function of a `DOMAIN:BB:DD.F` bus id (hex).
pub fn parse_bus_id(bus_id: &str) -> Option<(u32, u32, u32, u32)> {
    let mut parts = bus_id.split(':');
    let (domain, bus, dev_fn) = (parts.next()?, parts.next()?, parts.next()?);
    let (dev, func) = dev_fn.split_once('.')?;
    let hex = |s: &str, max: usize| {
        (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    if parts.next().is_some() || bus.len() != 2 || dev.len() != 2 {
        return None;
    }
    Some((hex(domain, 8)?, hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?))
}

/// `busIdLegacy`: the bus id with a 4-digit domain (`0000:18:00.0`), as NVML fills it.
pub fn legacy_bus_id(bus_id: &str) -> Option<String> {
    let (domain, bus, device, function) = parse_bus_id(bus_id)?;
    Some(format!(
        "{:04X}:{bus:02X}:{device:02X}.{function:X}",
        domain & 0xFFFF
    ))
}

/// What a handle designates. The fake hands out the address of one of these as an
/// `nvmlDevice_t`; it never reads through a handle, it only compares addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `devices[index]`.
    Gpu { index: usize },
    /// `devices[parent].mig_devices[index]`.
    Mig { parent: usize, index: usize },
}

/// What a resolved handle refers to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Gpu(usize, &'a Device),
    Mig {
        parent: usize,
        index: usize,
        mig: &'a MigDevice,
    },
}

/// A loaded fixture and the handles it hands out. The slot table is boxed and never resized,
/// so the handles stay valid until the node is dropped at the last `nvmlShutdown`.
#[derive(Debug)]
pub struct Node {
    pub fixture: Fixture,
    slots: Box<[Slot]>,
    /// What the set calls changed: starts from the fixture.
    pub driver: DriverState,
}

/// The driver state the set calls change, as a real driver keeps it between processes until
/// it is unloaded: each GPU's compute mode and the CC GPUs-ready state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverState {
    /// `nvmlComputeMode_t` per GPU, in `devices` order.
    pub compute_modes: Vec<u32>,
    /// `conf_compute.gpus_ready` as last set (`None`: the fixture gives none).
    pub gpus_ready: Option<bool>,
}

/// The symbol names the calls record uses.
pub const SET_COMPUTE_MODE: &str = "nvmlDeviceSetComputeMode";
/// The CC ready-state setter.
pub const SET_GPUS_READY: &str = "nvmlSystemSetConfComputeGpusReadyState";

/// One line of the calls record (`$TPPGUARD_FAKE_NVML_CALLS`): a set call and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRecord {
    /// The NVML symbol.
    pub call: String,
    /// The GPU's UUID, for a device call on a GPU that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The GPU's index, for a device call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The compute mode asked (`NVML_COMPUTEMODE_*` suffix, or the number given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The ready state asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// `SUCCESS` or the `NVML_ERROR_*` suffix answered.
    pub result: String,
}

impl Node {
    pub fn new(fixture: Fixture) -> Self {
        let mut slots = Vec::new();
        for (i, d) in fixture.devices.iter().enumerate() {
            slots.push(Slot::Gpu { index: i });
            for j in 0..d.mig_devices.len() {
                slots.push(Slot::Mig {
                    parent: i,
                    index: j,
                });
            }
        }
        let driver = DriverState {
            compute_modes: fixture
                .devices
                .iter()
                .map(|d| {
                    d.compute_mode
                        .as_deref()
                        .and_then(compute_mode_value)
                        .unwrap_or(0)
                })
                .collect(),
            gpus_ready: fixture.conf_compute.as_ref().and_then(|c| c.gpus_ready),
        };
        Self {
            fixture,
            slots: slots.into_boxed_slice(),
            driver,
        }
    }

    /// Replays a calls record (one [`CallRecord`] per line) written by earlier processes of
    /// the same test, so that what they set holds here as on a real driver. Lines that do not
    /// read are skipped; only successful calls change anything.
    pub fn replay(&mut self, record: &str) {
        for line in record.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(call) = serde_json::from_str::<CallRecord>(line) else {
                continue;
            };
            if call.result != "SUCCESS" {
                continue;
            }
            match call.call.as_str() {
                SET_COMPUTE_MODE => {
                    let mode = call.mode.as_deref().and_then(compute_mode_value);
                    if let (Some(index), Some(mode)) = (call.index, mode)
                        && let Ok(index) = usize::try_from(index)
                    {
                        self.apply_compute_mode(index, mode);
                    }
                }
                SET_GPUS_READY => {
                    if let Some(ready) = call.ready {
                        self.driver.gpus_ready = Some(ready);
                    }
                }
                _ => {}
            }
        }
    }

    /// `nvmlDeviceGetComputeMode` of GPU `index`.
    pub fn compute_mode(&self, index: usize) -> Result<u32, Code> {
        self.driver
            .compute_modes
            .get(index)
            .copied()
            .ok_or(INVALID_ARGUMENT)
    }

    /// Records `mode` as GPU `index`'s compute mode, unless the fixture says it does not stick.
    fn apply_compute_mode(&mut self, index: usize, mode: u32) {
        let sticks = self
            .fixture
            .devices
            .get(index)
            .is_none_or(|d| d.compute_mode_sticks.unwrap_or(true));
        if sticks && let Some(slot) = self.driver.compute_modes.get_mut(index) {
            *slot = mode;
        }
    }

    /// `nvmlDeviceSetComputeMode` on a handle: the answer, and the record of the call (none
    /// for a handle that is not one of this node's GPUs).
    pub fn set_compute_mode(
        &mut self,
        slot: Option<Slot>,
        mode: u32,
    ) -> (Code, Option<CallRecord>) {
        let Some(Slot::Gpu { index }) = slot else {
            return (INVALID_ARGUMENT, None);
        };
        let result = self.resolve(slot, SET_COMPUTE_MODE).and_then(|_| {
            if COMPUTE_MODES.iter().any(|(_, v)| *v == mode) {
                Ok(())
            } else {
                Err(INVALID_ARGUMENT)
            }
        });
        let code = result.err().unwrap_or(SUCCESS);
        if code == SUCCESS {
            self.apply_compute_mode(index, mode);
        }
        let record = CallRecord {
            call: SET_COMPUTE_MODE.to_owned(),
            uuid: self.fixture.devices.get(index).and_then(|d| d.uuid.clone()),
            index: u32::try_from(index).ok(),
            mode: Some(compute_mode_name(mode)),
            ready: None,
            result: error_name(code).to_owned(),
        };
        (code, Some(record))
    }

    /// `nvmlSystemSetConfComputeGpusReadyState`: the answer and its record. The fixture must
    /// give a ready state (no CC: `NOT_SUPPORTED`); NVML takes 0 or 1.
    pub fn set_gpus_ready(&mut self, value: u32) -> (Code, CallRecord) {
        let result = self.system_call(SET_GPUS_READY).and_then(|()| {
            present(self.driver.gpus_ready)?;
            match value {
                0 | 1 => Ok(value == 1),
                _ => Err(INVALID_ARGUMENT),
            }
        });
        let code = match result {
            Ok(ready) => {
                self.driver.gpus_ready = Some(ready);
                SUCCESS
            }
            Err(code) => code,
        };
        let record = CallRecord {
            call: SET_GPUS_READY.to_owned(),
            uuid: None,
            index: None,
            mode: None,
            ready: Some(value == 1),
            result: error_name(code).to_owned(),
        };
        (code, record)
    }

    /// The error forced on a system symbol, if any.
    pub fn system_call(&self, symbol: &str) -> Result<(), Code> {
        match self.fixture.errors.get(symbol) {
            Some(name) => Err(error_code(name).unwrap_or(UNKNOWN)),
            None => Ok(()),
        }
    }

    /// The address handed out as the handle of `slot`.
    pub fn handle_of(&self, slot: Slot) -> Option<*const Slot> {
        self.slots
            .iter()
            .find(|s| **s == slot)
            .map(std::ptr::from_ref)
    }

    /// The slot at this address, if the address is one of this node's handles.
    pub fn slot_at(&self, addr: *const Slot) -> Option<Slot> {
        self.slots.iter().find(|s| std::ptr::eq(*s, addr)).copied()
    }

    /// Resolves a handle for `symbol`: unknown handle -> INVALID_ARGUMENT, lost GPU (or a MIG
    /// device of one) -> GPU_IS_LOST, then the GPU's forced error for `symbol`.
    pub fn resolve(&self, slot: Option<Slot>, symbol: &str) -> Result<Target<'_>, Code> {
        match slot {
            None => Err(INVALID_ARGUMENT),
            Some(Slot::Gpu { index }) => {
                let d = self.fixture.devices.get(index).ok_or(INVALID_ARGUMENT)?;
                if d.lost {
                    return Err(GPU_IS_LOST);
                }
                if let Some(name) = d.errors.get(symbol) {
                    return Err(error_code(name).unwrap_or(UNKNOWN));
                }
                Ok(Target::Gpu(index, d))
            }
            Some(Slot::Mig { parent, index }) => {
                let d = self.fixture.devices.get(parent).ok_or(INVALID_ARGUMENT)?;
                if d.lost {
                    return Err(GPU_IS_LOST);
                }
                let mig = d.mig_devices.get(index).ok_or(INVALID_ARGUMENT)?;
                Ok(Target::Mig { parent, index, mig })
            }
        }
    }

    /// The GPU target of a handle; a MIG handle answers NOT_SUPPORTED.
    pub fn gpu(&self, slot: Option<Slot>, symbol: &str) -> Result<&Device, Code> {
        match self.resolve(slot, symbol)? {
            Target::Gpu(_, d) => Ok(d),
            Target::Mig { .. } => Err(NOT_SUPPORTED),
        }
    }
}

/// A field the fixture leaves absent answers NOT_SUPPORTED.
pub fn present<T>(value: Option<T>) -> Result<T, Code> {
    value.ok_or(NOT_SUPPORTED)
}

/// `nvmlClockType_t`: GRAPHICS 0 and SM 1 answer `sm`, MEM 2 answers `memory`, VIDEO 3 is
/// never in a fixture, anything else is an invalid argument.
pub fn max_clock(clocks: Option<MaxClocks>, clock_type: u32) -> Result<u32, Code> {
    match clock_type {
        0 | 1 => present(present(clocks)?.sm),
        2 => present(present(clocks)?.memory),
        3 => Err(NOT_SUPPORTED),
        _ => Err(INVALID_ARGUMENT),
    }
}

/// `nvmlDeviceGetClockInfo` (current clocks), by `nvmlClockType_t` as [`max_clock`].
pub fn current_clock(telemetry: Option<Telemetry>, clock_type: u32) -> Result<u32, Code> {
    match clock_type {
        0 | 1 => present(present(telemetry)?.sm_clock_mhz),
        2 => present(present(telemetry)?.memory_clock_mhz),
        3 => Err(NOT_SUPPORTED),
        _ => Err(INVALID_ARGUMENT),
    }
}

/// `nvmlDeviceGetTemperature`: `NVML_TEMPERATURE_GPU` (0) is the only sensor NVML defines.
pub fn temperature(telemetry: Option<Telemetry>, sensor: u32) -> Result<u32, Code> {
    match sensor {
        0 => present(present(telemetry)?.temperature_c),
        _ => Err(INVALID_ARGUMENT),
    }
}

/// What a count-then-fill list call answers for a list of `len` entries and a caller's array
/// of `capacity` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAnswer {
    /// The array holds them all: write the `n` entries, set the count to `n`, `SUCCESS`.
    Fill(u32),
    /// Too small (a count query passes 0): set the count to the `n` needed and answer
    /// `INSUFFICIENT_SIZE`.
    TooSmall(u32),
}

/// The count-then-fill protocol of `nvmlDeviceGetComputeRunningProcesses_v3`.
pub fn list_answer(len: usize, capacity: u32) -> Result<ListAnswer, Code> {
    let n = u32::try_from(len).map_err(|_| UNKNOWN)?;
    Ok(if n > capacity {
        ListAnswer::TooSmall(n)
    } else {
        ListAnswer::Fill(n)
    })
}

/// Checks a buffer of `length` bytes holds `value` and its NUL.
pub fn fits(value: &str, length: u32) -> Result<(), Code> {
    let needed = value.len().saturating_add(1);
    match usize::try_from(length) {
        Ok(len) if len >= needed => Ok(()),
        _ => Err(INSUFFICIENT_SIZE),
    }
}

#[cfg(test)]
mod tests;
