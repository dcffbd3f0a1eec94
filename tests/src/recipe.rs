//! Builds a synthetic node from a recipe (`tests/fixtures/nvml/recipes/<name>.toml`) and the
//! public figures in `accelerators.csv`. Identities (serials, UUIDs, PCI bus ids) are
//! synthetic and deterministic; a figure the CSV lacks stays absent.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;
use crate::model::{
    self, ConfCompute, Device, Fixture, MaxClocks, Memory, MigDevice, MigMode, Pci,
};

/// A recipe file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The fixture's one-line description.
    pub description: String,
    /// Sentences appended to the fixture's `source` (where the recipe's own values come from).
    #[serde(default)]
    pub notes: Vec<String>,
    /// NVML init fails with this error.
    pub init_error: Option<String>,
    /// The driver: its version and, when sourced, the CUDA version it reports.
    pub driver: Option<Driver>,
    pub conf_compute: Option<ConfCompute>,
    /// Groups of identical GPUs, in index order.
    #[serde(default)]
    pub gpus: Vec<Group>,
    /// Per-GPU changes: faults and MIG.
    #[serde(default)]
    pub device: Vec<Override>,
}

/// `[driver]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Driver {
    pub version: String,
    /// "12.2": gives `cuda_driver_version` and `nvml_version`.
    pub cuda: Option<String>,
}

/// `[[gpus]]`: `count` GPUs of one `accelerators.csv` row.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The CSV's `model` column, exactly.
    pub model: String,
    pub count: u32,
    /// Short tag for serials (`SIM-<tag>-…`).
    pub tag: String,
    /// `NVML_BRAND_*` name (the CSV has none; the recipe's notes say why this one).
    pub brand: Option<String>,
    pub vbios_version: Option<String>,
    /// `mig_mode` for MIG-capable parts: `false` gives MIG off (current and pending).
    pub mig_mode: Option<bool>,
}

/// `[[device]]`: changes to the GPU at `index`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub index: usize,
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
    pub mig: Option<Mig>,
}

/// `[device.mig]`: MIG enabled with `count` identical instances.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mig {
    /// Profile name, e.g. "1g.10gb".
    pub profile: String,
    pub count: u32,
    pub max_mig_devices: u32,
    /// SMs per instance.
    pub multiprocessor_count: u32,
    /// Memory per instance as a fraction of the GPU's (numerator, denominator).
    pub memory_fraction: [u64; 2],
    /// GPU instance id of the first instance; the others follow.
    pub first_gpu_instance_id: u32,
}

/// FNV-1a, 64-bit.
fn fnv1a(data: &[u8], seed: u64) -> u64 {
    data.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// splitmix64's finaliser, so that similar keys give unrelated-looking UUIDs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic UUID (RFC 9562 version 8, "custom") from a key: FNV-1a, then splitmix64's
/// finaliser.
pub fn synthetic_uuid(key: &str) -> String {
    let h = fnv1a(key.as_bytes(), 0xCBF2_9CE4_8422_2325);
    let hi = mix(h);
    let lo = mix(h ^ 0x9E37_79B9_7F4A_7C15);
    let hi = (hi & !0xF000) | 0x8000; // version 8
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

fn field<'a>(row: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    row.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(
    row: &BTreeMap<String, String>,
    name: &str,
    model: &str,
) -> Result<Option<T>, Error> {
    field(row, name)
        .map(|v| {
            v.parse()
                .map_err(|_| Error(format!("accelerators.csv {model:?}: {name} {v:?}")))
        })
        .transpose()
}

/// Builds fixture `name` from its recipe and the CSV rows.
pub fn build(
    name: &str,
    recipe: &Recipe,
    rows: &[BTreeMap<String, String>],
) -> Result<Fixture, Error> {
    let err = |m: String| Error(format!("recipes/{name}.toml: {m}"));
    // Serials: SIM-<tag>-<5 digits from the fixture name><2-digit index>, unique across fixtures.
    let node_number = fnv1a(name.as_bytes(), 0xCBF2_9CE4_8422_2325) % 100_000;
    let mut devices = Vec::new();
    let mut models = Vec::new();
    for group in &recipe.gpus {
        let row = rows
            .iter()
            .find(|r| r.get("model").map(String::as_str) == Some(group.model.as_str()))
            .ok_or_else(|| {
                err(format!(
                    "no accelerators.csv row has model {:?}",
                    group.model
                ))
            })?;
        if field(row, "vendor") != Some("NVIDIA") {
            return Err(err(format!("{:?} is not an NVIDIA part", group.model)));
        }
        models.push(format!("{}x {:?}", group.count, group.model));
        let nvml_name = field(row, "nvml_names").and_then(|n| n.split(';').next());
        let pci_id = field(row, "pci_device_ids")
            .and_then(|n| n.split(';').next())
            .map(|id| {
                id.strip_prefix("0x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .map(|dev| format!("0x{:08X}", (dev << 16) | 0x10DE))
                    .ok_or_else(|| err(format!("bad PCI id {id:?}")))
            })
            .transpose()?;
        let memory_gib: Option<u64> = number(row, "memory_gib", &group.model)?;
        let tdp_w: Option<u32> = number(row, "tdp_w", &group.model)?;
        let boost: Option<u32> = number(row, "boost_clock_mhz", &group.model)?;
        let sms: Option<u32> = number(row, "sm_count", &group.model)?;
        let architecture = field(row, "architecture")
            .map(|a| {
                crate::smi::architecture(a)
                    .map(str::to_owned)
                    .ok_or_else(|| err(format!("unknown architecture {a:?}")))
            })
            .transpose()?;
        for _ in 0..group.count {
            let index = devices.len();
            let bus = u32::try_from(index + 1)
                .ok()
                .and_then(|i| i.checked_mul(0x10))
                .filter(|b| *b <= 0xFF)
                .ok_or_else(|| err("too many GPUs for synthetic bus numbers".into()))?;
            devices.push(Device {
                name: nvml_name.map(str::to_owned),
                uuid: Some(format!(
                    "GPU-{}",
                    synthetic_uuid(&format!("{name}/gpu/{index}"))
                )),
                serial: Some(format!(
                    "SIM-{}-{node_number:05}{:02}",
                    group.tag,
                    index + 1
                )),
                brand: group.brand.clone(),
                pci: Some(Pci {
                    bus_id: format!("00000000:{bus:02X}:00.0"),
                    domain: 0,
                    bus,
                    device: 0,
                    pci_device_id: pci_id.clone(),
                    pci_subsystem_id: None,
                }),
                architecture: architecture.clone(),
                multiprocessor_count: sms,
                memory: memory_gib
                    .map(|g| {
                        g.checked_mul(1 << 30)
                            .map(|total_bytes| Memory {
                                total_bytes,
                                reserved_bytes: Some(0),
                                used_bytes: 0,
                            })
                            .ok_or_else(|| err("memory overflows".into()))
                    })
                    .transpose()?,
                max_clocks_mhz: boost.map(|b| MaxClocks {
                    sm: Some(b),
                    memory: None,
                }),
                power_limit_mw: tdp_w
                    .map(|w| {
                        w.checked_mul(1000)
                            .ok_or_else(|| err("power overflows".into()))
                    })
                    .transpose()?,
                vbios_version: group.vbios_version.clone(),
                mig_mode: group.mig_mode.map(|on| MigMode {
                    current: on,
                    pending: on,
                }),
                ..Device::default()
            });
        }
    }

    for o in &recipe.device {
        let d = devices
            .get_mut(o.index)
            .ok_or_else(|| err(format!("[[device]] index {} has no GPU", o.index)))?;
        d.lost = o.lost;
        d.errors.extend(o.errors.clone());
        if let Some(mig) = &o.mig {
            let gpu_memory = d
                .memory
                .ok_or_else(|| err("MIG on a GPU with no memory figure".into()))?;
            let [num, den] = mig.memory_fraction;
            let per_instance = gpu_memory
                .total_bytes
                .checked_mul(num)
                .and_then(|v| v.checked_div(den))
                .ok_or_else(|| err("bad memory_fraction".into()))?;
            let gpu_name = d.name.clone().unwrap_or_default();
            d.mig_mode = Some(MigMode {
                current: true,
                pending: true,
            });
            d.max_mig_devices = Some(mig.max_mig_devices);
            d.mig_devices = (0..mig.count)
                .map(|i| MigDevice {
                    uuid: Some(format!(
                        "MIG-{}",
                        synthetic_uuid(&format!("{name}/gpu/{}/mig/{i}", o.index))
                    )),
                    name: Some(format!("{gpu_name} MIG {}", mig.profile)),
                    gpu_instance_id: Some(mig.first_gpu_instance_id + i),
                    compute_instance_id: Some(0),
                    multiprocessor_count: Some(mig.multiprocessor_count),
                    memory: Some(Memory {
                        total_bytes: per_instance,
                        reserved_bytes: Some(0),
                        used_bytes: 0,
                    }),
                })
                .collect();
        }
    }

    let mut source = format!("Synthetic node from tests/fixtures/nvml/recipes/{name}.toml.");
    if !models.is_empty() {
        source.push_str(&format!(
            " GPUs: {}. Per-GPU figures are those rows of shared/data/accelerators.csv (copied \
             to tests/fixtures/nvml/recipes/accelerators.csv): name = first nvml_names entry, \
             PCI id = first pci_device_ids entry with vendor 0x10DE, architecture, \
             multiprocessor count = sm_count, memory total = memory_gib x 2^30 bytes (nominal; \
             a real driver reports slightly less) with none reserved or used, power limit = \
             tdp_w, max SM clock = boost_clock_mhz; a figure the row lacks is absent, as are \
             the max memory clock, compute capability, board part number and PCI subsystem id. \
             Serials (SIM-...), UUIDs (RFC 9562 v8, hashed from fixture name and index) and PCI \
             bus ids are synthetic.",
            models.join(", ")
        ));
    }
    for n in &recipe.notes {
        source.push(' ');
        source.push_str(n);
    }
    let driver = recipe.driver.as_ref();
    let cuda = driver.and_then(|d| d.cuda.as_deref());
    if cuda.is_some() {
        source.push_str(
            " nvml_version is derived as <CUDA major>.<driver version>, the form NVML reports.",
        );
    }
    Ok(Fixture {
        schema: model::SCHEMA,
        description: recipe.description.clone(),
        source,
        init_error: recipe.init_error.clone(),
        driver_version: driver.map(|d| d.version.clone()),
        nvml_version: match (cuda, driver) {
            (Some(c), Some(d)) => model::nvml_version(c, &d.version),
            _ => None,
        },
        cuda_driver_version: cuda
            .map(|c| model::cuda_version_int(c).ok_or_else(|| err(format!("cuda {c:?}"))))
            .transpose()?,
        conf_compute: recipe.conf_compute,
        errors: BTreeMap::new(),
        devices,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_deterministic_v8() {
        let a = super::synthetic_uuid("dgx-h100/gpu/0");
        assert_eq!(a, super::synthetic_uuid("dgx-h100/gpu/0"));
        assert_ne!(a, super::synthetic_uuid("dgx-h100/gpu/1"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
