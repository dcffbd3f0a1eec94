//! The accelerator spec table (the Endorser's figures): one [`AcceleratorSpec`] per product
//! variant, compiled by `build.rs` from `data/accelerators.csv` (sources in `data/SOURCES.md`),
//! and the identity look-ups over it ([`lookup`], [`by_model`]).

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::tpp::{ComputeFigures, Precision};
use crate::units::{Bandwidth, DieArea, Tops, Tpp};

pub use crate::units::H100Equivalents;

include!(concat!(env!("OUT_DIR"), "/spec_table.rs"));

/// The marketing model name of the H100-equivalent reference row.
pub const H100_REFERENCE_MODEL: &str = "H100 SXM5 80GB";

/// Public figures of one accelerator variant (one row of `accelerators.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceleratorSpec {
    /// Vendor: `NVIDIA`, `AMD`, `Intel`, `Google`.
    pub vendor: &'static str,
    /// Marketing name of the variant: `H100 SXM5 80GB`.
    pub model: &'static str,
    /// Exact names NVML reports (empty when unknown or not an NVIDIA part).
    pub nvml_names: &'static [&'static str],
    /// PCI vendor id implied by the vendor (NVIDIA 0x10DE, AMD 0x1002, Habana 0x1DA3).
    pub pci_vendor_id: Option<u16>,
    /// PCI device ids.
    pub pci_device_ids: &'static [u16],
    /// GPU architecture: `Hopper`.
    pub architecture: &'static str,
    /// Die code name: `GH100`.
    pub die: &'static str,
    /// Number of compute dies in the package.
    pub dies_per_package: u32,
    /// Area of one die; `None` when unpublished.
    pub die_area: Option<DieArea>,
    /// Nominal memory size as the vendor prints it, GiB.
    pub memory_gib: Option<u32>,
    /// Memory type: `HBM3`, `GDDR6X`.
    pub memory_type: &'static str,
    /// Maximum board or module power, W.
    pub tdp_w: Option<u32>,
    /// Dense peak rate per precision, in [`Precision`] order.
    pub dense_tops: &'static [(Precision, Tops)],
    /// The part has matrix units whose dense rates are unpublished (the CSV leaves `tpp`
    /// empty: A10G, RTX 3060). `dense_tops` then understates TPP, so [`Self::figures`]
    /// leaves the rates out and classification is indeterminate rather than low.
    pub tensor_rates_unpublished: bool,
    /// Designed or marketed for use in datacenters (the export rules' term).
    pub datacenter: bool,
    /// Peak DRAM/HBM bandwidth.
    pub memory_bandwidth: Option<Bandwidth>,
    /// Total bidirectional chip-to-chip bandwidth.
    pub interconnect_bandwidth: Option<Bandwidth>,
    /// Rated boost clock, MHz.
    pub boost_clock_mhz: Option<u32>,
    /// SM count (NVIDIA) or compute units (AMD).
    pub sm_count: Option<u32>,
    /// Where the figures come from.
    pub source_specs: &'static str,
    /// Where the die figures come from.
    pub source_die: &'static str,
    /// Caveats, disagreements and the TPP basis.
    pub notes: &'static str,
}

impl AcceleratorSpec {
    /// The figures classification reads. The applicable die area is the per-die area x
    /// `dies_per_package` (absent when the die area is unpublished); rates are left out when
    /// [`Self::tensor_rates_unpublished`].
    pub fn figures(&self) -> ComputeFigures {
        let dense_tops = if self.tensor_rates_unpublished {
            BTreeMap::new()
        } else {
            self.dense_tops.iter().copied().collect()
        };
        ComputeFigures {
            dense_tops,
            die_area: self
                .die_area
                .and_then(|area| area.times(self.dies_per_package)),
            datacenter: self.datacenter,
            dram_bandwidth: self.memory_bandwidth,
            interconnect_bandwidth: self.interconnect_bandwidth,
        }
    }
}

/// Every row of the table, in CSV order.
pub fn spec_table() -> &'static [AcceleratorSpec] {
    &SPEC_TABLE
}

/// How a [`lookup`] found its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// By PCI vendor and device id.
    PciDeviceId,
    /// By the exact NVML name (with or without the `NVIDIA ` prefix).
    NvmlName,
}

impl MatchedBy {
    /// The stable snake_case code, as serialized: `pci_device_id`, `nvml_name`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::PciDeviceId => "pci_device_id",
            Self::NvmlName => "nvml_name",
        }
    }
}

/// Why a device has no row in the table. Codes are stable; new ones are added, never renamed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownReason {
    /// Neither a PCI id nor a name was given.
    NoIdentity,
    /// The PCI id is not in the table and no name was given.
    PciIdNotListed {
        /// NVML's combined id, `(device << 16) | vendor`.
        pci_device_id: u32,
    },
    /// The name is not in the table and no PCI id was given.
    NameNotListed {
        /// The name given.
        nvml_name: String,
    },
    /// Neither the PCI id nor the name is in the table.
    PciIdAndNameNotListed {
        /// NVML's combined id, `(device << 16) | vendor`.
        pci_device_id: u32,
        /// The name given.
        nvml_name: String,
    },
    /// The name matches several rows with different figures (and the PCI id none).
    AmbiguousName {
        /// The name given.
        nvml_name: String,
        /// The models it matches.
        candidates: Vec<&'static str>,
    },
}

impl UnknownReason {
    /// Every code, for documentation and the uniqueness test.
    pub const CODES: [&'static str; 5] = [
        "no_identity",
        "pci_id_not_listed",
        "name_not_listed",
        "pci_id_and_name_not_listed",
        "ambiguous_name",
    ];

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoIdentity => "no_identity",
            Self::PciIdNotListed { .. } => "pci_id_not_listed",
            Self::NameNotListed { .. } => "name_not_listed",
            Self::PciIdAndNameNotListed { .. } => "pci_id_and_name_not_listed",
            Self::AmbiguousName { .. } => "ambiguous_name",
        }
    }

    /// A human sentence with the figures.
    pub fn sentence(&self) -> String {
        match self {
            Self::NoIdentity => "the device reported neither a PCI id nor a name".to_owned(),
            Self::PciIdNotListed { pci_device_id } => {
                format!("PCI id {pci_device_id:#010X} is not in the spec table")
            }
            Self::NameNotListed { nvml_name } => {
                format!("name {nvml_name:?} is not in the spec table")
            }
            Self::PciIdAndNameNotListed {
                pci_device_id,
                nvml_name,
            } => format!(
                "neither PCI id {pci_device_id:#010X} nor name {nvml_name:?} is in the spec table"
            ),
            Self::AmbiguousName {
                nvml_name,
                candidates,
            } => format!(
                "name {nvml_name:?} matches several parts with different figures ({}); the PCI \
                 id is needed to tell them apart",
                candidates.join(", ")
            ),
        }
    }
}

impl fmt::Display for UnknownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence())
    }
}

impl Serialize for UnknownReason {
    /// `{"code": ..., "sentence": ..., "candidates": [...]}` (candidates only when ambiguous).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("code", self.code())?;
        map.serialize_entry("sentence", &self.sentence())?;
        if let Self::AmbiguousName { candidates, .. } = self {
            map.serialize_entry("candidates", candidates)?;
        }
        map.end()
    }
}

/// The result of [`lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecMatch {
    /// The device's row.
    Found {
        /// The row.
        spec: &'static AcceleratorSpec,
        /// How it was found.
        by: MatchedBy,
    },
    /// No row, and why.
    Unknown {
        /// Why.
        reason: UnknownReason,
    },
}

impl Serialize for SpecMatch {
    /// `{"status": "found", "model": ..., "by": ...}` or `{"status": "unknown", "reason": {..}}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Self::Found { spec, by } => {
                map.serialize_entry("status", "found")?;
                map.serialize_entry("model", spec.model)?;
                map.serialize_entry("by", by)?;
            }
            Self::Unknown { reason } => {
                map.serialize_entry("status", "unknown")?;
                map.serialize_entry("reason", reason)?;
            }
        }
        map.end()
    }
}

/// The name without NVIDIA's brand prefix, which old drivers omit.
fn unprefixed(name: &str) -> &str {
    let name = name.trim();
    name.strip_prefix("NVIDIA ").unwrap_or(name)
}

/// Finds a device's row: by PCI id first, then by exact NVML name. Never guesses.
///
/// `pci_device_id` is NVML's combined form `(device << 16) | vendor` (`0x233010DE`); the
/// vendor half must be the row's vendor. A name may differ from the table's only by the
/// `NVIDIA ` prefix. A name matching rows with different figures is
/// [`UnknownReason::AmbiguousName`]; rows sharing a name and figures resolve to the first.
pub fn lookup(pci_device_id: Option<u32>, nvml_name: Option<&str>) -> SpecMatch {
    if let Some(id) = pci_device_id {
        let [device_hi, device_lo, vendor_hi, vendor_lo] = id.to_be_bytes();
        let device = u16::from_be_bytes([device_hi, device_lo]);
        let vendor = u16::from_be_bytes([vendor_hi, vendor_lo]);
        if let Some(spec) = SPEC_TABLE
            .iter()
            .find(|s| s.pci_vendor_id == Some(vendor) && s.pci_device_ids.contains(&device))
        {
            return SpecMatch::Found {
                spec,
                by: MatchedBy::PciDeviceId,
            };
        }
    }
    let reason = match (pci_device_id, nvml_name) {
        (None, None) => UnknownReason::NoIdentity,
        (Some(pci_device_id), None) => UnknownReason::PciIdNotListed { pci_device_id },
        (id, Some(name)) => match by_nvml_name(name) {
            NameMatch::One(spec) => {
                return SpecMatch::Found {
                    spec,
                    by: MatchedBy::NvmlName,
                };
            }
            NameMatch::Ambiguous(candidates) => UnknownReason::AmbiguousName {
                nvml_name: name.to_owned(),
                candidates,
            },
            NameMatch::None => match id {
                Some(pci_device_id) => UnknownReason::PciIdAndNameNotListed {
                    pci_device_id,
                    nvml_name: name.to_owned(),
                },
                None => UnknownReason::NameNotListed {
                    nvml_name: name.to_owned(),
                },
            },
        },
    };
    SpecMatch::Unknown { reason }
}

enum NameMatch {
    None,
    One(&'static AcceleratorSpec),
    Ambiguous(Vec<&'static str>),
}

fn by_nvml_name(name: &str) -> NameMatch {
    let wanted = unprefixed(name);
    if wanted.is_empty() {
        return NameMatch::None;
    }
    let rows: Vec<&'static AcceleratorSpec> = SPEC_TABLE
        .iter()
        .filter(|s| s.nvml_names.iter().any(|n| unprefixed(n) == wanted))
        .collect();
    match rows.split_first() {
        None => NameMatch::None,
        Some((first, rest)) => {
            let figures = first.figures();
            if rest.iter().all(|s| s.figures() == figures) {
                NameMatch::One(first)
            } else {
                NameMatch::Ambiguous(rows.iter().map(|s| s.model).collect())
            }
        }
    }
}

/// The row whose model name equals `name` ignoring ASCII case, or else whose NVML name equals
/// it exactly (with or without `NVIDIA `) and is unambiguous.
pub fn by_model(name: &str) -> Option<&'static AcceleratorSpec> {
    let name = name.trim();
    SPEC_TABLE
        .iter()
        .find(|s| s.model.eq_ignore_ascii_case(name))
        .or_else(|| match by_nvml_name(name) {
            NameMatch::One(spec) => Some(spec),
            NameMatch::None | NameMatch::Ambiguous(_) => None,
        })
}

/// The H100 SXM5 80GB row, the reference for H100-equivalents.
pub fn h100_reference() -> &'static AcceleratorSpec {
    H100_REFERENCE
}

/// Indexed at compile time: a missing row fails the build, not a run.
static H100_REFERENCE: &AcceleratorSpec = &SPEC_TABLE[H100_REFERENCE_INDEX];

/// The reference H100's TPP.
pub fn h100_reference_tpp() -> Tpp {
    Tpp::from_table_raw(H100_REFERENCE_TPP_RAW)
}

/// `tpp` in H100-equivalents: `tpp` / the H100 SXM5's TPP, exact.
pub fn h100_equivalents(tpp: Tpp) -> H100Equivalents {
    H100Equivalents::new(tpp, h100_reference_tpp())
}

#[cfg(test)]
mod tests;
