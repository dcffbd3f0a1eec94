//! A GPU's measured dense throughput (submod `measurement`): what the agent's GEMM benchmark
//! found, per precision, with the device's clocks, temperature, power and throttle reasons
//! during the run. The verifier holds it against the spec table; these are the agent's
//! figures, bounded and sanity-checked here, never trusted as a classification.

use serde::{Deserialize, Serialize};

use crate::tpp::Precision;

/// Most precisions one measurement holds.
pub const MAX_RESULTS: usize = 16;
/// Most throttle reasons recorded.
pub const MAX_THROTTLE_REASONS: usize = 16;
/// Longest backend description or throttle-reason name, in bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Largest measured rate accepted, in TOPS (a hundred times the fastest part listed).
pub const MAX_TOPS: f64 = 1.0e6;

/// How a GPU's throughput was measured.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasurementMethod {
    /// Dense GEMMs through cuBLAS / cuBLASLt on the device, timed with CUDA events.
    CudaGemm,
    /// Figures from a simulated node's fixture, with deterministic noise: tests and demos.
    Simulated,
}

/// One GPU's measurement.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// How it was measured.
    pub method: MeasurementMethod,
    /// The libraries and versions that did the work (`CUDA driver 13.0, cuBLAS 13.0.2`).
    pub backend: String,
    /// When the measurement started, Unix seconds.
    pub started_at: i64,
    /// Wall time of the whole measurement, milliseconds.
    pub duration_ms: u64,
    /// Timed repeats per precision (the statistics are over these).
    pub repeats: u32,
    /// One entry per precision measured, in the order run.
    pub results: Vec<PrecisionResult>,
    /// What NVML reported during the run.
    pub telemetry: Telemetry,
}

/// The measured dense rate of one precision.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionResult {
    /// The precision.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub precision: Precision,
    /// Side of the square matrices (`n` in `n`×`n`).
    pub matrix_size: u32,
    /// Back-to-back GEMMs in each timed repeat.
    pub gemms_per_repeat: u32,
    /// Median over the repeats, TOPS (TFLOPS for floating point): `2·n³·gemms / seconds`.
    pub tops_median: f64,
    /// Slowest repeat.
    pub tops_min: f64,
    /// Fastest repeat.
    pub tops_max: f64,
}

/// NVML readings sampled while the GEMMs ran; a reading NVML could not give is absent.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// Samples taken.
    pub samples: u32,
    /// Lowest SM clock seen, MHz.
    pub sm_clock_mhz_min: Option<u32>,
    /// Highest SM clock seen, MHz.
    pub sm_clock_mhz_max: Option<u32>,
    /// Highest GPU temperature seen, °C.
    pub temperature_c_max: Option<u32>,
    /// Highest power draw seen, milliwatts.
    pub power_mw_max: Option<u32>,
    /// Every clock throttle reason seen (NVML's, snake_case: `sw_power_cap`), sorted.
    #[serde(default)]
    pub throttle_reasons: Vec<String>,
}

impl Measurement {
    /// The result for `precision`, if it was measured.
    pub fn result(&self, precision: Precision) -> Option<&PrecisionResult> {
        self.results.iter().find(|r| r.precision == precision)
    }

    /// What is wrong with the figures, if anything: the checks serde's types cannot express.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.results.len() > MAX_RESULTS {
            return Some("more than 16 precisions");
        }
        if self.repeats == 0 {
            return Some("zero repeats");
        }
        if self.backend.len() > MAX_TEXT_BYTES {
            return Some("backend description longer than 256 bytes");
        }
        let t = &self.telemetry;
        if t.throttle_reasons.len() > MAX_THROTTLE_REASONS
            || t.throttle_reasons.iter().any(|r| r.len() > MAX_TEXT_BYTES)
        {
            return Some("too many or too long throttle reasons");
        }
        if let (Some(lo), Some(hi)) = (t.sm_clock_mhz_min, t.sm_clock_mhz_max)
            && lo > hi
        {
            return Some("sm_clock_mhz_min above sm_clock_mhz_max");
        }
        for (i, r) in self.results.iter().enumerate() {
            if self.results[..i].iter().any(|o| o.precision == r.precision) {
                return Some("a precision measured twice");
            }
            if r.matrix_size == 0 || r.gemms_per_repeat == 0 {
                return Some("a zero matrix size or GEMM count");
            }
            let rates = [r.tops_min, r.tops_median, r.tops_max];
            if rates
                .iter()
                .any(|x| !x.is_finite() || *x < 0.0 || *x > MAX_TOPS)
            {
                return Some("a rate that is negative, not finite or beyond 1e6 TOPS");
            }
            if !(r.tops_min <= r.tops_median && r.tops_median <= r.tops_max) {
                return Some("tops_min <= tops_median <= tops_max does not hold");
            }
        }
        None
    }
}
