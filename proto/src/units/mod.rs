//! Exact fixed-point figures: throughput ([`Tops`]), [`Tpp`], [`DieArea`], [`Bandwidth`],
//! [`PerformanceDensity`] and [`H100Equivalents`].
//!
//! Every figure is an integer count of a small decimal unit, parsed from decimal text without
//! floating point, so thresholds such as 5.92, 3.2 and 1.6 land on the right side. Ratios
//! (performance density, H100-equivalents) keep numerator and denominator and compare by
//! cross-multiplication. Floats appear only in [`as_f64`](Tpp::as_f64) for JSON output.

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

pub(crate) mod decimal;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

pub use decimal::DecimalError;

/// The nearest `f64` to an exact decimal string (output only; never compared).
fn decimal_to_f64(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

macro_rules! fixed_point {
    (
        $(#[$doc:meta])*
        $name:ident, scale = $scale:expr, min = $min:expr, max = $max:expr, raw = $raw:ident,
        unit = $unit:literal
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// Number of decimal places the unit holds.
            pub const DECIMALS: u32 = $scale;
            /// Smallest accepted value, in units of `10^-DECIMALS`.
            pub const MIN_RAW: u64 = $min;
            /// Largest accepted value, in units of `10^-DECIMALS`.
            pub const MAX_RAW: u64 = $max;
            /// The unit, for messages.
            pub const UNIT: &'static str = $unit;

            /// The value from a count of `10^-DECIMALS` units; `None` outside
            /// [`Self::MIN_RAW`]..=[`Self::MAX_RAW`].
            pub const fn $raw(raw: u64) -> Option<Self> {
                if raw < Self::MIN_RAW || raw > Self::MAX_RAW { None } else { Some(Self(raw)) }
            }

            /// A spec-table value; `build.rs` has checked the range (a unit test re-checks it).
            pub(crate) const fn from_table_raw(raw: u64) -> Self {
                Self(raw)
            }

            /// The value as a count of `10^-DECIMALS` units.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// The nearest `f64`, for JSON output only; never compare it.
            pub fn as_f64(self) -> f64 {
                decimal_to_f64(&self.to_string())
            }
        }

        impl FromStr for $name {
            type Err = DecimalError;

            /// Parses a plain non-negative decimal exactly (no rounding, no exponent).
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                decimal::parse_scaled(text, Self::DECIMALS, Self::MIN_RAW, Self::MAX_RAW).map(Self)
            }
        }

        impl fmt::Display for $name {
            /// The shortest exact decimal: `15831.2`, `4800`, `0.641`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&decimal::format_scaled(self.0, Self::DECIMALS))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_f64(self.as_f64())
            }
        }
    };
}

fixed_point! {
    /// Dense peak throughput of one precision, in ten-thousandths of a TOPS (or TFLOPS).
    ///
    /// Ten-thousandths, not thousandths, because the spec table has FP64 rates with four
    /// decimals (Quadro P2000: 0.0947 TFLOPS).
    Tops, scale = 4, min = 0, max = 1_000_000_000_000, raw = from_ten_thousandths, unit = "TOPS"
}

fixed_point! {
    /// Total Processing Performance (TOPS x bit length), in ten-thousandths.
    ///
    /// Same scale as [`Tops`], so TOPS x bit length is exact.
    Tpp, scale = 4, min = 0, max = 100_000_000_000_000_000, raw = from_ten_thousandths, unit = "TPP"
}

fixed_point! {
    /// Die area in hundredths of a mm². Never zero (a zero area has no density).
    DieArea, scale = 2, min = 1, max = 100_000_000, raw = from_hundredths, unit = "mm²"
}

fixed_point! {
    /// Bandwidth in thousandths of a GB/s (10^9 bytes per second).
    Bandwidth, scale = 3, min = 0, max = 1_000_000_000_000_000, raw = from_thousandths, unit = "GB/s"
}

impl Tops {
    /// TOPS x `bits`: the TPP this rate gives at that bit length.
    ///
    /// Cannot saturate: a `Tops` is at most 10^12 units and a bit length at most 64.
    pub fn tpp_at(self, bits: u32) -> Tpp {
        Tpp(self.0.saturating_mul(u64::from(bits)))
    }

    /// A measured rate as exact TOPS, truncated (never rounded up) to the four decimals of
    /// [`Tops`]: the shortest decimal that reads back as the same `f64` (what the JSON said),
    /// cut after four places, so `1320.4` is exactly 1320.4 (multiplying by 10^4 in floating
    /// point would give 1320.3999). `None` when negative, not finite or out of range.
    pub fn from_measured(rate: f64) -> Option<Self> {
        if rate == 0.0 {
            return Some(Self::default());
        }
        if !rate.is_finite() || rate < 0.0 {
            return None;
        }
        // `Display` for `f64` never uses an exponent.
        let text = rate.to_string();
        let cut = match text.split_once('.') {
            Some((int, frac)) => format!("{int}.{}", frac.get(..4).unwrap_or(frac)),
            None => text,
        };
        cut.parse().ok()
    }
}

impl Tpp {
    /// The sum, saturating at [`Tpp::MAX_RAW`] (aggregating devices of a node or fleet).
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0).min(Self::MAX_RAW))
    }

    /// The sum of several TPPs (devices of a node or fleet), saturating at [`Tpp::MAX_RAW`].
    pub fn sum(tpps: impl IntoIterator<Item = Self>) -> Self {
        tpps.into_iter().fold(Self::default(), Self::saturating_add)
    }
}

impl DieArea {
    /// The area times a number of dies (per-die area to package area); `None` on zero dies or
    /// above the maximum.
    pub fn times(self, dies: u32) -> Option<Self> {
        self.0
            .checked_mul(u64::from(dies))
            .and_then(Self::from_hundredths)
    }
}

impl Bandwidth {
    /// The sum, saturating at [`Bandwidth::MAX_RAW`].
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0).min(Self::MAX_RAW))
    }
}

/// `a * b` in 128 bits; never saturates, since both factors are `u64`.
fn wide_mul(a: u64, b: u64) -> u128 {
    u128::from(a).saturating_mul(u128::from(b))
}

/// `numerator / denominator` rounded half up to `decimals` places, as a count of
/// `10^-decimals`; `None` when the denominator is zero.
fn round_half_up(numerator: u128, denominator: u128, decimals: u32) -> Option<u128> {
    let scaled = numerator.checked_mul(10u128.checked_pow(decimals)?)?;
    scaled
        .checked_mul(2)?
        .checked_add(denominator)?
        .checked_div(denominator.checked_mul(2)?)
}

/// Writes a count of hundredths with exactly two decimals (`8.00`).
fn fmt_hundredths(f: &mut fmt::Formatter<'_>, hundredths: Option<u128>) -> fmt::Result {
    match hundredths {
        Some(h) => {
            let (int, frac) = (h.checked_div(100), h.checked_rem(100));
            match (int, frac) {
                (Some(int), Some(frac)) => f.pad(&format!("{int}.{frac:02}")),
                _ => f.pad("undefined"),
            }
        }
        None => f.pad("undefined"),
    }
}

/// Performance density: TPP per mm² of applicable die area, kept as the exact ratio.
///
/// Two densities (or a density and a threshold) compare by cross-multiplication, never by
/// division. Parse a threshold with `"5.92".parse()` (up to four decimals); it becomes
/// 5.92 TPP over 1 mm².
#[derive(Debug, Clone, Copy)]
pub struct PerformanceDensity {
    tpp: Tpp,
    area: DieArea,
}

impl PerformanceDensity {
    /// TPP / area. The area is never zero by construction of [`DieArea`].
    pub fn new(tpp: Tpp, area: DieArea) -> Option<Self> {
        (area.0 != 0).then_some(Self { tpp, area })
    }

    /// The TPP of the ratio.
    pub fn tpp(self) -> Tpp {
        self.tpp
    }

    /// The applicable die area of the ratio.
    pub fn die_area(self) -> DieArea {
        self.area
    }

    /// The nearest `f64`, for JSON output only; never compare it.
    pub fn as_f64(self) -> f64 {
        self.tpp.as_f64() / self.area.as_f64()
    }

    /// The exact decimal when the denominator is 1 mm² (a parsed threshold: `5.92`, `5.925`),
    /// else the rounded `Display` form.
    pub fn threshold_text(self) -> String {
        if self.area.0 == 100 {
            self.tpp.to_string()
        } else {
            self.to_string()
        }
    }

    /// The density rounded half up to hundredths (`19.45` is 1945).
    pub fn hundredths(self) -> Option<u128> {
        // TPP units are 10^-4, area units 10^-2: density = tpp / (area * 100).
        round_half_up(u128::from(self.tpp.0), wide_mul(self.area.0, 100), 2)
    }
}

impl PartialEq for PerformanceDensity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PerformanceDensity {}

impl PartialOrd for PerformanceDensity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PerformanceDensity {
    /// a/b against c/d as a*d against c*b, in 128 bits.
    fn cmp(&self, other: &Self) -> Ordering {
        wide_mul(self.tpp.0, other.area.0).cmp(&wide_mul(other.tpp.0, self.area.0))
    }
}

impl FromStr for PerformanceDensity {
    type Err = DecimalError;

    /// Parses a density threshold (TPP per mm², up to four decimals) exactly.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self {
            tpp: text.parse()?,
            area: DieArea(100),
        })
    }
}

impl fmt::Display for PerformanceDensity {
    /// Rounded half up to two decimals (`19.45`, `2.20`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hundredths(f, self.hundredths())
    }
}

impl Serialize for PerformanceDensity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

/// A TPP expressed in H100-equivalents: the exact ratio to the reference H100 SXM5's TPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H100Equivalents {
    tpp: Tpp,
    reference: Tpp,
}

impl H100Equivalents {
    /// `tpp / reference`.
    pub(crate) fn new(tpp: Tpp, reference: Tpp) -> Self {
        Self { tpp, reference }
    }

    /// The nearest `f64`, for JSON output only; never compare it.
    pub fn as_f64(self) -> f64 {
        self.tpp.as_f64() / self.reference.as_f64()
    }

    /// The ratio rounded half up to hundredths (`8.00` is 800).
    pub fn hundredths(self) -> Option<u128> {
        round_half_up(u128::from(self.tpp.0), u128::from(self.reference.0), 2)
    }
}

impl fmt::Display for H100Equivalents {
    /// Rounded half up to two decimals (`8.00`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hundredths(f, self.hundredths())
    }
}

impl Serialize for H100Equivalents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

#[cfg(test)]
mod tests;
