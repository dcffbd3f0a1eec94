//! TPP and performance density (ECCN 3A090, Technical Note 2): numeric [`Precision`]s, the
//! [`ComputeFigures`] of one device, and [`tpp`] / [`performance_density`] over them.
//!
//! TPP = dense peak TOPS x the bit length of the multiply's inputs, maximised over precisions.
//! PD = TPP / applicable die area. Both are exact ([`crate::units`]).

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::units::{Bandwidth, DieArea, PerformanceDensity, Tops, Tpp};

/// A numeric format whose dense rate counts towards TPP.
///
/// Variants are ordered by descending bit length; see [`tpp`] for how ties are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    /// IEEE double precision (vector or matrix units; the higher rate counts).
    Fp64,
    /// IEEE single precision (vector units).
    Fp32,
    /// TensorFloat-32 on matrix units, counted at its 32-bit container width.
    Tf32,
    /// IEEE half precision on matrix units.
    Fp16,
    /// bfloat16 on matrix units.
    Bf16,
    /// 8-bit floating point on matrix units.
    Fp8,
    /// 8-bit integer on matrix units.
    Int8,
    /// 4-bit integer on matrix units.
    Int4,
    /// 4-bit floating point (NVFP4, MXFP4) on matrix units.
    Fp4,
}

impl Precision {
    /// Every precision, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::Fp64,
        Self::Fp32,
        Self::Tf32,
        Self::Fp16,
        Self::Bf16,
        Self::Fp8,
        Self::Int8,
        Self::Int4,
        Self::Fp4,
    ];

    /// Bit length of the multiply's inputs, as TPP counts it (TF32 at its 32-bit container).
    pub const fn bit_length(self) -> u32 {
        match self {
            Self::Fp64 => 64,
            Self::Fp32 | Self::Tf32 => 32,
            Self::Fp16 | Self::Bf16 => 16,
            Self::Fp8 | Self::Int8 => 8,
            Self::Int4 | Self::Fp4 => 4,
        }
    }

    /// Upper-case name: `FP8`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fp64 => "FP64",
            Self::Fp32 => "FP32",
            Self::Tf32 => "TF32",
            Self::Fp16 => "FP16",
            Self::Bf16 => "BF16",
            Self::Fp8 => "FP8",
            Self::Int8 => "INT8",
            Self::Int4 => "INT4",
            Self::Fp4 => "FP4",
        }
    }

    /// Lower-case name, the JSON form: `fp8`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Fp64 => "fp64",
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
            Self::Fp16 => "fp16",
            Self::Bf16 => "bf16",
            Self::Fp8 => "fp8",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
            Self::Fp4 => "fp4",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// An unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown precision {name:?}; expected one of FP64, FP32, TF32, FP16, BF16, FP8, INT8, INT4, FP4"
)]
pub struct UnknownPrecision {
    /// The name given.
    pub name: String,
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    /// Case-insensitive: `fp8`, `FP8`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownPrecision {
                name: text.to_owned(),
            })
    }
}

impl Serialize for Precision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// Exactly the lower-case [`Precision::code`] (`fp8`), as [`Serialize`] writes it: JSON from
/// outside has one spelling per precision.
impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::ALL
            .into_iter()
            .find(|p| p.code() == code)
            .ok_or_else(|| {
                serde::de::Error::custom(format_args!(
                    "unknown precision {:?}; expected one of fp64, fp32, tf32, fp16, bf16, fp8, \
                     int8, int4, fp4",
                    code.chars().take(16).collect::<String>()
                ))
            })
    }
}

/// The figures of one device that classification reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ComputeFigures {
    /// Dense (never sparse) peak rate per precision.
    pub dense_tops: BTreeMap<Precision, Tops>,
    /// Applicable die area of the whole device (every non-planar logic die); `None` when
    /// unpublished, which leaves performance density unknown.
    pub die_area: Option<DieArea>,
    /// Whether the device is designed or marketed for use in datacenters.
    pub datacenter: bool,
    /// Peak DRAM/HBM bandwidth.
    pub dram_bandwidth: Option<Bandwidth>,
    /// Total bidirectional chip-to-chip bandwidth.
    pub interconnect_bandwidth: Option<Bandwidth>,
}

/// A TPP and the precision that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TppBasis {
    /// TPP = `tops` x `precision.bit_length()`.
    pub tpp: Tpp,
    /// The precision that reaches the maximum.
    pub precision: Precision,
    /// Its dense rate.
    pub tops: Tops,
}

/// TPP: the maximum over precisions of dense TOPS x bit length; `None` without any rate.
///
/// Exact ties are common (A100: TF32 156 x 32 = FP16 312 x 16 = INT8 624 x 8 = 4992). They
/// go to the precision declared first in [`Precision`] (higher bit length first, then FP
/// before INT), except that TF32 comes last: its 32-bit count is a convention (the format has
/// 19 significant bits), so it is reported as the basis only when nothing else reaches the
/// maximum (L20).
pub fn tpp(figures: &ComputeFigures) -> Option<TppBasis> {
    figures
        .dense_tops
        .iter()
        .map(|(&precision, &tops)| TppBasis {
            tpp: tops.tpp_at(precision.bit_length()),
            precision,
            tops,
        })
        .fold(None, |best: Option<TppBasis>, next| match best {
            Some(b) if (b.tpp, tie_rank(b.precision)) >= (next.tpp, tie_rank(next.precision)) => {
                Some(b)
            }
            _ => Some(next),
        })
}

/// Preference among precisions reaching the same TPP (higher wins): declaration order, TF32
/// last.
fn tie_rank(precision: Precision) -> u8 {
    match precision {
        Precision::Fp64 => 8,
        Precision::Fp32 => 7,
        Precision::Fp16 => 6,
        Precision::Bf16 => 5,
        Precision::Fp8 => 4,
        Precision::Int8 => 3,
        Precision::Int4 => 2,
        Precision::Fp4 => 1,
        Precision::Tf32 => 0,
    }
}

/// Performance density = TPP / applicable die area (exact ratio); `None` only for a zero
/// area, which [`DieArea`]'s constructors already rule out.
pub fn performance_density(tpp: Tpp, area: DieArea) -> Option<PerformanceDensity> {
    PerformanceDensity::new(tpp, area)
}

impl ComputeFigures {
    /// DRAM plus interconnect bandwidth; `None` when either is unknown.
    pub fn dram_plus_interconnect_bandwidth(&self) -> Option<Bandwidth> {
        Some(
            self.dram_bandwidth?
                .saturating_add(self.interconnect_bandwidth?),
        )
    }
}
