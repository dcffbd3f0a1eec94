//! The fixture format written by the generator: the fields of
//! `tests/fixtures/nvml/SCHEMA.md`, in its order. Absent values are left out, never filled.

use std::collections::BTreeMap;

use serde::Serialize;

/// The `schema` value.
pub const SCHEMA: &str = "tppguard-fake-nvml/v1";

/// A whole fixture.
#[derive(Debug, Clone, Serialize)]
pub struct Fixture {
    pub schema: &'static str,
    pub description: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvml_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf_compute: Option<ConfCompute>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
    pub devices: Vec<Device>,
}

/// `conf_compute`.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfCompute {
    pub cc_feature: bool,
    pub dev_tools_mode: bool,
    pub multi_gpu_mode: bool,
    pub gpus_ready: bool,
}

/// One GPU.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Device {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board_part_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci: Option<Pci>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_compute_capability: Option<[i32; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiprocessor_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clocks_mhz: Option<MaxClocks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_limit_mw: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vbios_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig_mode: Option<MigMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_mig_devices: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mig_devices: Vec<MigDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_processes: Option<Vec<Process>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<Benchmark>,
    /// `NVML_COMPUTEMODE_*` suffix (captures: `<compute_mode>`; absent in the fake: DEFAULT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_mode: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

/// `pci`.
#[derive(Debug, Clone, Serialize)]
pub struct Pci {
    pub bus_id: String,
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_subsystem_id: Option<String>,
}

/// `memory`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_bytes: Option<u64>,
    pub used_bytes: u64,
}

/// `max_clocks_mhz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MaxClocks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
}

/// `mig_mode`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

/// `telemetry`: the current-state readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Telemetry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_clock_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_usage_mw: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<u64>,
}

impl Telemetry {
    /// Whether no reading is present (the section is then left out).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One entry of `compute_processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_gpu_memory_bytes: Option<u64>,
}

/// `benchmark`: the simulated GEMM benchmark's median dense TOPS per precision code, in
/// tenths (serialised as numbers with one decimal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Benchmark {
    #[serde(serialize_with = "tenths_map")]
    pub dense_tops: BTreeMap<String, u64>,
}

/// Tenths as JSON numbers: 7124 -> 712.4 (the nearest `f64`, printed shortest, so exactly one
/// decimal).
fn tenths_map<S: serde::Serializer>(
    map: &BTreeMap<String, u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error as _, SerializeMap};
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (precision, tenths) in map {
        let whole = u32::try_from(*tenths)
            .map_err(|_| S::Error::custom(format!("{precision}: {tenths} tenths is too large")))?;
        out.serialize_entry(precision, &(f64::from(whole) / 10.0))?;
    }
    out.end()
}

/// One MIG device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_instance_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_instance_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiprocessor_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// `cuda_version` text ("12.2") in NVML's integer form (12020).
pub fn cuda_version_int(text: &str) -> Option<i32> {
    let (major, minor) = text.split_once('.')?;
    let major: i32 = major.parse().ok()?;
    let minor: i32 = minor.parse().ok()?;
    major.checked_mul(1000)?.checked_add(minor.checked_mul(10)?)
}

/// NVML's `nvmlSystemGetNVMLVersion` form: `<CUDA major>.<driver version>`.
pub fn nvml_version(cuda: &str, driver: &str) -> Option<String> {
    let (major, _) = cuda.split_once('.')?;
    Some(format!("{major}.{driver}"))
}

/// Serialises a fixture as the committed files are: 2-space JSON and a final newline.
pub fn to_json(fixture: &Fixture) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(fixture)?;
    s.push('\n');
    Ok(s)
}
