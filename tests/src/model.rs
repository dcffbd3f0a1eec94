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
