//! GPU inventory through NVML: what each GPU says about itself, and for every fact NVML could
//! not give, why not.
//!
//! Nothing here is invented: a field NVML answers with `NotSupported`, `NoPermission`, a
//! function the installed driver lacks, or a lost GPU is `None` in the data and explained in
//! the owner's `absent` map under the field's JSON name.

use std::collections::BTreeMap;

use nvml_wrapper::enum_wrappers::device::{Brand, Clock};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::Serialize;

use crate::nvml::raw;

/// Why a fact is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AbsentReason {
    /// The GPU or driver does not support the query.
    NotSupported,
    /// The caller may not make the query.
    NoPermission,
    /// The installed driver does not implement the function (an older driver).
    DriverLacksFunction,
    /// The NVML library does not export the function's symbol (an older driver).
    SymbolMissing,
    /// The GPU fell off the bus or is otherwise inaccessible.
    GpuLost,
    /// NVML answered with another error; `detail` names it.
    Error,
}

impl AbsentReason {
    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotSupported => "not_supported",
            Self::NoPermission => "no_permission",
            Self::DriverLacksFunction => "driver_lacks_function",
            Self::SymbolMissing => "symbol_missing",
            Self::GpuLost => "gpu_lost",
            Self::Error => "error",
        }
    }
}

/// One absent fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Absence {
    /// Why it is absent.
    pub reason: AbsentReason,
    /// NVML's own words for the error.
    pub detail: String,
}

impl Absence {
    fn from_error(err: &NvmlError) -> Self {
        let reason = match err {
            NvmlError::NotSupported => AbsentReason::NotSupported,
            NvmlError::NoPermission => AbsentReason::NoPermission,
            NvmlError::FunctionNotFound => AbsentReason::DriverLacksFunction,
            NvmlError::FailedToLoadSymbol(_) => AbsentReason::SymbolMissing,
            NvmlError::GpuLost => AbsentReason::GpuLost,
            _ => AbsentReason::Error,
        };
        Self {
            reason,
            detail: err.to_string(),
        }
    }
}

/// Absent facts by field name.
pub type Absences = BTreeMap<&'static str, Absence>;

/// Keeps the value, or records why there is none.
fn probe<T>(absent: &mut Absences, field: &'static str, result: Result<T, NvmlError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(field, error = %e, "NVML could not give a field");
            absent.insert(field, Absence::from_error(&e));
            None
        }
    }
}

/// The driver stack, node-wide.
#[derive(Debug, Clone, Serialize)]
pub struct Driver {
    /// Kernel driver version, e.g. "550.90.07".
    pub driver_version: Option<String>,
    /// NVML library version.
    pub nvml_version: Option<String>,
    /// Highest CUDA version the driver supports, "major.minor".
    pub cuda_driver_version: Option<String>,
    /// Confidential-computing settings, where the driver reports them.
    pub confidential_computing: Option<ConfidentialComputing>,
    /// Facts NVML could not give, and why.
    pub absent: Absences,
}

/// Confidential-computing state of the node (NVML reports it system-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConfidentialComputing {
    /// CC mode is on.
    pub enabled: bool,
    /// CC developer-tools mode is on (not a production setting).
    pub dev_tools_mode: bool,
    /// Multi-GPU protected PCIe mode is on.
    pub multi_gpu_protected_pcie: bool,
    /// GPUs accept client work (`None` when the driver does not say).
    pub gpus_ready: Option<bool>,
}

/// PCI identity of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pci {
    /// Bus id, "domain:bus:device.function".
    pub bus_id: String,
    /// PCI vendor id, "0x10de".
    pub vendor_id: String,
    /// PCI device id, "0x2330".
    pub device_id: String,
    /// NVML's combined form, `(device << 16) | vendor`.
    #[serde(skip)]
    pub combined_device_id: u32,
    /// Subsystem id, "0x16c110de", when reported.
    pub subsystem_id: Option<String>,
}

/// MIG state of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mig {
    /// MIG mode is on now.
    pub current_enabled: bool,
    /// MIG mode will be on after the next reset.
    pub pending_enabled: bool,
    /// The MIG devices (GPU instance x compute instance), when MIG is on.
    pub instances: Vec<MigInstance>,
    /// Facts about the instances NVML could not give.
    pub absent: Absences,
}

/// One MIG device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigInstance {
    /// Position among the parent's MIG devices.
    pub index: u32,
    /// "MIG-…" UUID.
    pub uuid: Option<String>,
    /// Name, including the profile, e.g. "NVIDIA A100-SXM4-80GB MIG 1g.10gb".
    pub name: Option<String>,
    /// GPU instance id.
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id.
    pub compute_instance_id: Option<u32>,
    /// Streaming multiprocessors in the instance.
    pub multiprocessor_count: Option<u32>,
    /// Memory of the instance, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Facts NVML could not give, and why.
    pub absent: Absences,
}

/// Whether a GPU could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuStatus {
    /// Read; some facts may still be absent.
    Ok,
    /// NVML reports the GPU lost (fallen off the bus).
    Lost,
    /// NVML gave no handle for the GPU.
    Unreadable,
}

/// One physical GPU, as NVML reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// Whether the GPU could be read.
    pub status: GpuStatus,
    /// "GPU-…" UUID.
    pub uuid: Option<String>,
    /// Board serial number.
    pub serial: Option<String>,
    /// Product name, as NVML reports it.
    pub name: Option<String>,
    /// Brand, e.g. "NVIDIA", "Tesla", "GeForce".
    pub brand: Option<String>,
    /// Board part number.
    pub board_part_number: Option<String>,
    /// PCI identity.
    pub pci: Option<Pci>,
    /// Architecture, e.g. "Hopper".
    pub architecture: Option<String>,
    /// CUDA compute capability, "major.minor".
    pub cuda_compute_capability: Option<String>,
    /// Streaming multiprocessors.
    pub multiprocessor_count: Option<u32>,
    /// Framebuffer memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Maximum SM clock, MHz.
    pub max_sm_clock_mhz: Option<u32>,
    /// Maximum memory clock, MHz.
    pub max_memory_clock_mhz: Option<u32>,
    /// Power management limit, milliwatts.
    pub power_limit_mw: Option<u32>,
    /// VBIOS version.
    pub vbios_version: Option<String>,
    /// MIG state, where the GPU supports MIG.
    pub mig: Option<Mig>,
    /// Facts NVML could not give, and why.
    pub absent: Absences,
}

/// Everything NVML says about this node's GPUs.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInventory {
    /// The driver stack.
    pub driver: Driver,
    /// The GPUs, by NVML index.
    pub gpus: Vec<Gpu>,
}

/// NVML failed at a node-wide step that leaves nothing to enumerate.
#[derive(Debug, thiserror::Error)]
#[error("NVML could not count the GPUs")]
pub struct CountError(#[source] pub NvmlError);

/// Enumerates every GPU.
pub fn collect(nvml: &Nvml) -> Result<GpuInventory, CountError> {
    let count = nvml.device_count().map_err(CountError)?;
    let gpus: Vec<Gpu> = (0..count).map(|i| read_gpu(nvml, i)).collect();
    let mut absent = Absences::new();
    let driver_version = probe(&mut absent, "driver_version", nvml.sys_driver_version());
    let nvml_version = probe(&mut absent, "nvml_version", nvml.sys_nvml_version());
    let cuda_driver_version = probe(
        &mut absent,
        "cuda_driver_version",
        nvml.sys_cuda_driver_version(),
    )
    .map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let confidential_computing = match nvml.device_by_index(0) {
        Ok(device) => confidential_computing(&device, &mut absent),
        Err(_) if count == 0 => None,
        Err(e) => {
            absent.insert("confidential_computing", Absence::from_error(&e));
            None
        }
    };
    Ok(GpuInventory {
        driver: Driver {
            driver_version,
            nvml_version,
            cuda_driver_version,
            confidential_computing,
            absent,
        },
        gpus,
    })
}

/// NVML reports CC system-wide, but nvml-wrapper asks through a device handle.
fn confidential_computing(
    device: &Device<'_>,
    absent: &mut Absences,
) -> Option<ConfidentialComputing> {
    let enabled = probe(absent, "confidential_computing", device.is_cc_enabled())?;
    let dev_tools_mode = probe(
        absent,
        "confidential_computing",
        device.is_cc_dev_mode_enabled(),
    )?;
    let multi_gpu_protected_pcie = probe(
        absent,
        "confidential_computing",
        device.is_multi_gpu_protected_pcie_enabled(),
    )?;
    let gpus_ready = probe(
        absent,
        "confidential_computing.gpus_ready",
        device.get_confidential_compute_state(),
    );
    Some(ConfidentialComputing {
        enabled,
        dev_tools_mode,
        multi_gpu_protected_pcie,
        gpus_ready,
    })
}

fn read_gpu(nvml: &Nvml, index: u32) -> Gpu {
    let mut absent = Absences::new();
    let Some(device) = probe(&mut absent, "handle", nvml.device_by_index(index)) else {
        let status = if absent.values().any(|a| a.reason == AbsentReason::GpuLost) {
            GpuStatus::Lost
        } else {
            GpuStatus::Unreadable
        };
        return Gpu {
            index,
            status,
            uuid: None,
            serial: None,
            name: None,
            brand: None,
            board_part_number: None,
            pci: None,
            architecture: None,
            cuda_compute_capability: None,
            multiprocessor_count: None,
            memory_total_bytes: None,
            max_sm_clock_mhz: None,
            max_memory_clock_mhz: None,
            power_limit_mw: None,
            vbios_version: None,
            mig: None,
            absent,
        };
    };
    let a = &mut absent;
    let uuid = probe(a, "uuid", device.uuid());
    let serial = probe(a, "serial", device.serial());
    let name = probe(a, "name", device.name());
    let brand = probe(a, "brand", device.brand()).map(|b| brand_name(&b).to_owned());
    let board_part_number = probe(a, "board_part_number", device.board_part_number());
    let pci = probe(a, "pci", device.pci_info()).map(|p| Pci {
        bus_id: p.bus_id,
        vendor_id: format!("0x{:04x}", p.pci_device_id & 0xffff),
        device_id: format!("0x{:04x}", p.pci_device_id >> 16),
        combined_device_id: p.pci_device_id,
        // NVML reports 0 when it does not know the subsystem.
        subsystem_id: p
            .pci_sub_system_id
            .filter(|&s| s != 0)
            .map(|s| format!("0x{s:08x}")),
    });
    let architecture = probe(a, "architecture", device.architecture()).map(|x| x.to_string());
    let cuda_compute_capability = probe(
        a,
        "cuda_compute_capability",
        device.cuda_compute_capability(),
    )
    .map(|c| format!("{}.{}", c.major, c.minor));
    let multiprocessor_count =
        probe(a, "multiprocessor_count", device.attributes()).map(|x| x.multiprocessor_count);
    let memory_total_bytes = probe(a, "memory_total_bytes", device.memory_info()).map(|m| m.total);
    let max_sm_clock_mhz = probe(a, "max_sm_clock_mhz", device.max_clock_info(Clock::SM));
    let max_memory_clock_mhz = probe(
        a,
        "max_memory_clock_mhz",
        device.max_clock_info(Clock::Memory),
    );
    let power_limit_mw = probe(a, "power_limit_mw", device.power_management_limit());
    let vbios_version = probe(a, "vbios_version", device.vbios_version());
    let mig = probe(a, "mig", device.mig_mode())
        .map(|mode| read_mig(nvml, &device, mode.current == 1, mode.pending == 1));
    let status = if absent.values().any(|x| x.reason == AbsentReason::GpuLost) {
        GpuStatus::Lost
    } else {
        GpuStatus::Ok
    };
    Gpu {
        index,
        status,
        uuid,
        serial,
        name,
        brand,
        board_part_number,
        pci,
        architecture,
        cuda_compute_capability,
        multiprocessor_count,
        memory_total_bytes,
        max_sm_clock_mhz,
        max_memory_clock_mhz,
        power_limit_mw,
        vbios_version,
        mig,
        absent,
    }
}

fn read_mig(nvml: &Nvml, device: &Device<'_>, current_enabled: bool, pending_enabled: bool) -> Mig {
    let mut absent = Absences::new();
    let mut instances = Vec::new();
    if current_enabled {
        let max = probe(&mut absent, "instances", device.mig_device_count()).unwrap_or(0);
        for index in 0..max {
            match device.mig_device_by_index(index) {
                Ok(mig) => instances.push(read_mig_instance(nvml, &mig, index)),
                // Slots past the configured instances answer NotFound: that is the end.
                Err(NvmlError::NotFound) => {}
                Err(e) => {
                    absent.insert("instances", Absence::from_error(&e));
                }
            }
        }
    }
    Mig {
        current_enabled,
        pending_enabled,
        instances,
        absent,
    }
}

fn read_mig_instance(nvml: &Nvml, mig: &Device<'_>, index: u32) -> MigInstance {
    let mut absent = Absences::new();
    let a = &mut absent;
    MigInstance {
        index,
        uuid: probe(a, "uuid", mig.uuid()),
        name: probe(a, "name", mig.name()),
        gpu_instance_id: probe(a, "gpu_instance_id", raw::gpu_instance_id(nvml, mig)),
        compute_instance_id: probe(
            a,
            "compute_instance_id",
            raw::compute_instance_id(nvml, mig),
        ),
        multiprocessor_count: probe(a, "multiprocessor_count", mig.attributes())
            .map(|x| x.multiprocessor_count),
        memory_total_bytes: probe(a, "memory_total_bytes", mig.memory_info()).map(|m| m.total),
        absent,
    }
}

/// nvidia-smi's words for NVML's brands.
fn brand_name(brand: &Brand) -> &'static str {
    match brand {
        Brand::Unknown => "Unknown",
        Brand::Quadro => "Quadro",
        Brand::Tesla => "Tesla",
        Brand::NVS => "NVS",
        Brand::GRID => "GRID",
        Brand::GeForce => "GeForce",
        Brand::Titan => "Titan",
        Brand::VApps => "NVIDIA Virtual Applications",
        Brand::VPC => "NVIDIA Virtual PC",
        Brand::VCS => "NVIDIA Virtual Compute Server",
        Brand::VWS => "NVIDIA RTX Virtual Workstation",
        Brand::CloudGaming => "NVIDIA Cloud Gaming",
        Brand::VGaming => "NVIDIA Virtual Gaming",
        Brand::QuadroRTX => "Quadro RTX",
        Brand::NvidiaRTX => "NVIDIA RTX",
        Brand::Nvidia => "NVIDIA",
        Brand::GeForceRTX => "GeForce RTX",
        Brand::TitanRTX => "Titan RTX",
    }
}
