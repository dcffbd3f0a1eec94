//! Throughput measurement: dense square GEMMs per precision, timed on the device.
//!
//! A [`Benchmark`] backend runs the GEMMs ([`cuda`] on a real GPU, [`simulated`] from a
//! fixture's figures); everything else is shared and backend-blind: choosing how many
//! back-to-back GEMMs make one timed repeat, warm-up, the repeats, the statistics and the TOPS
//! they give. The simulated backend therefore tests all of it in CI; only the kernel launches
//! are the CUDA backend's own.

pub mod cuda;
pub mod report;
pub mod run;
pub mod simulated;

use std::time::Duration;

use tppguard_proto::claims::measurement::{MeasurementMethod, PrecisionResult};
use tppguard_proto::tpp::Precision;

/// The precisions `measure` runs when none is named, in the order it runs them.
pub const DEFAULT_PRECISIONS: [Precision; 6] = [
    Precision::Fp8,
    Precision::Int8,
    Precision::Fp16,
    Precision::Bf16,
    Precision::Tf32,
    Precision::Fp64,
];

/// A backend that runs dense square GEMMs (`C = A·B`, every operand `n`×`n`) on one GPU.
pub trait Benchmark {
    /// The method recorded in the measurement: `simulated` for the fixture backend and for
    /// CUDA libraries that are tppguard's fakes, `cuda_gemm` only for real ones.
    fn method(&self) -> MeasurementMethod;

    /// The libraries and versions doing the work, for the record (`CUDA driver 13.0, cuBLAS
    /// 13.0.2`).
    fn describe(&self) -> String;

    /// Whether the device can run dense GEMMs in `precision` (FP8 needs Hopper or later, FP64
    /// is reported only where the part has it at a useful rate, ...).
    fn supports(&self, precision: Precision) -> bool;

    /// Allocates and fills the operands for `precision` at `n`×`n`, or smaller when device
    /// memory is short; returns the size it will use. Replaces earlier operands.
    fn prepare(&mut self, precision: Precision, n: u32) -> Result<u32, BenchError>;

    /// Runs `count` GEMMs of the prepared operands back to back, with no synchronisation
    /// between them, and returns the time the device measured from before the first to after
    /// the last (CUDA events around the batch).
    fn time_gemms(&mut self, count: u32) -> Result<Duration, BenchError>;
}

/// Why a measurement could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// No CUDA driver library (`libcuda.so`) could be loaded.
    #[error(
        "no CUDA driver: libcuda.so could not be loaded; install the NVIDIA driver, or use --simulate"
    )]
    NoCudaDriver,
    /// A CUDA library other than the driver (cuBLAS, cuBLASLt) could not be loaded.
    #[error(
        "{library} could not be loaded (searched: {searched}); install the CUDA {library} library, or name its folder with --cuda-lib-dir"
    )]
    MissingLibrary {
        /// The library (`cuBLAS`).
        library: &'static str,
        /// The names or paths tried.
        searched: String,
    },
    /// CUDA shows no device at the GPU's PCI bus id (hidden by `CUDA_VISIBLE_DEVICES`, or a
    /// bus id NVML and CUDA disagree on).
    #[error(
        "CUDA has no device at PCI bus id {pci_bus_id} (it sees {visible}); check \
         CUDA_VISIBLE_DEVICES, which hides devices from CUDA but not from NVML"
    )]
    DeviceNotFound {
        /// The bus id NVML gave.
        pci_bus_id: String,
        /// CUDA devices visible to this process.
        visible: usize,
    },
    /// The backend has no GEMM for this precision on this device.
    #[error("{precision} GEMMs are not supported on this device")]
    Unsupported {
        /// The precision asked for.
        precision: Precision,
    },
    /// Not even the smallest operands fit in free device memory.
    #[error("not enough free device memory for {precision} operands ({free_bytes} bytes free)")]
    OutOfMemory {
        /// The precision.
        precision: Precision,
        /// Free device memory, bytes.
        free_bytes: u64,
    },
    /// A CUDA or cuBLAS call failed.
    #[error("{call} failed: {detail}")]
    Cuda {
        /// The call (`cublasGemmEx`).
        call: &'static str,
        /// The library's words.
        detail: String,
    },
    /// `time_gemms` was called before `prepare`.
    #[error("no operands prepared")]
    NotPrepared,
}

/// How a precision is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Side of the square matrices asked for (the backend may use less when memory is short).
    pub matrix_size: u32,
    /// Timed repeats; the median and spread are over these.
    pub repeats: u32,
    /// Each repeat runs enough back-to-back GEMMs to last at least this long on the device.
    pub min_repeat: Duration,
    /// Most GEMMs in one repeat.
    pub max_gemms_per_repeat: u32,
}

/// The defaults fit the default six precisions in under 3 s per GPU on an H100 (about 0.4 s
/// each: calibration and warm-up, then five repeats of at least 50 ms; CUDA events resolve
/// about half a microsecond, so 50 ms batches time to within 0.01 %).
impl Default for Params {
    fn default() -> Self {
        Self {
            matrix_size: 8192,
            repeats: 5,
            min_repeat: Duration::from_millis(50),
            max_gemms_per_repeat: 20_000,
        }
    }
}

/// Where a precision's measurement stands, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Finding how many GEMMs make one repeat; these batches warm the device up.
    Calibrating {
        /// GEMMs in the batch just timed.
        gemms: u32,
    },
    /// A timed repeat finished.
    Repeat {
        /// Repeats done.
        done: u32,
        /// Repeats in all.
        of: u32,
        /// Its rate, TOPS.
        tops: f64,
    },
}

/// Measures one precision: prepare the operands, grow the batch until one lasts
/// `params.min_repeat` (the growing batches are the warm-up), run one more batch at that size,
/// then time `params.repeats` batches. The rate of a batch is `2·n³·gemms / seconds`.
pub fn measure_precision(
    bench: &mut dyn Benchmark,
    precision: Precision,
    params: &Params,
    progress: &mut dyn FnMut(Step),
) -> Result<PrecisionResult, BenchError> {
    if !bench.supports(precision) {
        return Err(BenchError::Unsupported { precision });
    }
    let n = bench.prepare(precision, params.matrix_size)?;
    let max = params.max_gemms_per_repeat.max(1);
    let mut gemms: u32 = 1;
    loop {
        let took = bench.time_gemms(gemms)?;
        progress(Step::Calibrating { gemms });
        if took >= params.min_repeat || gemms >= max {
            break;
        }
        gemms = next_batch(gemms, took, params.min_repeat, max);
    }
    bench.time_gemms(gemms)?;
    let flop = gemm_flop(n) * f64::from(gemms);
    let repeats = params.repeats.max(1);
    let mut rates = Vec::with_capacity(repeats as usize);
    for done in 1..=repeats {
        let took = bench.time_gemms(gemms)?;
        let tops = flop / took.as_secs_f64().max(f64::MIN_POSITIVE) / 1e12;
        rates.push(tops);
        progress(Step::Repeat {
            done,
            of: repeats,
            tops,
        });
    }
    let (tops_min, tops_median, tops_max) = spread(&mut rates);
    Ok(PrecisionResult {
        precision,
        matrix_size: n,
        gemms_per_repeat: gemms,
        tops_median,
        tops_min,
        tops_max,
    })
}

/// Floating-point (or integer) operations of one `n`×`n`×`n` GEMM: a multiply and an add per
/// term.
pub fn gemm_flop(n: u32) -> f64 {
    2.0 * f64::from(n).powi(3)
}

/// The next batch size: aim 20 % past `target` from the rate just seen, grow at least by one
/// and at most sixteen-fold (a first batch can be dominated by launch overhead), never past
/// `max`.
fn next_batch(gemms: u32, took: Duration, target: Duration, max: u32) -> u32 {
    let secs = took.as_secs_f64().max(1e-9);
    let wanted = f64::from(gemms) * target.as_secs_f64() / secs * 1.2;
    let grown = if wanted.is_finite() && wanted < f64::from(u32::MAX) {
        wanted.ceil() as u32
    } else {
        u32::MAX
    };
    grown
        .clamp(gemms.saturating_add(1), gemms.saturating_mul(16))
        .min(max)
}

/// Minimum, median and maximum (the median of an even count is the mean of the middle two).
fn spread(rates: &mut [f64]) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (rates.first(), rates.last()) else {
        return (0.0, 0.0, 0.0);
    };
    let mid = rates.len() / 2;
    let median = if rates.len() % 2 == 1 {
        rates[mid]
    } else {
        (rates[mid - 1] + rates[mid]) / 2.0
    };
    (min, median, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that runs `tops` TOPS exactly, with a fixed launch overhead per batch.
    struct Steady {
        tops: f64,
        overhead: Duration,
        n: u32,
        batches: Vec<u32>,
    }

    impl Benchmark for Steady {
        fn method(&self) -> MeasurementMethod {
            MeasurementMethod::Simulated
        }
        fn describe(&self) -> String {
            "test device".to_owned()
        }
        fn supports(&self, precision: Precision) -> bool {
            precision != Precision::Fp64
        }
        fn prepare(&mut self, _: Precision, n: u32) -> Result<u32, BenchError> {
            self.n = n.min(4096);
            Ok(self.n)
        }
        fn time_gemms(&mut self, count: u32) -> Result<Duration, BenchError> {
            self.batches.push(count);
            let secs = gemm_flop(self.n) * f64::from(count) / (self.tops * 1e12);
            Ok(self.overhead + Duration::from_secs_f64(secs))
        }
    }

    #[test]
    fn calibrates_then_times_repeats_at_one_batch_size() {
        let mut dev = Steady {
            tops: 500.0,
            overhead: Duration::from_micros(20),
            n: 0,
            batches: Vec::new(),
        };
        let params = Params::default();
        let mut steps = Vec::new();
        let r =
            measure_precision(&mut dev, Precision::Fp16, &params, &mut |s| steps.push(s)).unwrap();
        // The backend cut the size; the result says what was used.
        assert_eq!(r.matrix_size, 4096);
        // A 4096³ GEMM at 500 TOPS takes 275 µs: about 182 GEMMs last 50 ms.
        assert!(
            (180..=260).contains(&r.gemms_per_repeat),
            "{}",
            r.gemms_per_repeat
        );
        // Calibration batches grow, then warm-up and the repeats use the final size.
        let tail = &dev.batches[dev.batches.len() - 6..];
        assert!(
            tail.iter().all(|&b| b == r.gemms_per_repeat),
            "{:?}",
            dev.batches
        );
        assert!(dev.batches.windows(2).take(2).all(|w| w[1] > w[0]));
        // The overhead is amortised: within 0.1 % of the device's rate.
        assert!(
            (r.tops_median / 500.0 - 1.0).abs() < 1e-3,
            "{}",
            r.tops_median
        );
        assert!(r.tops_min <= r.tops_median && r.tops_median <= r.tops_max);
        let repeats: Vec<_> = steps
            .iter()
            .filter(|s| matches!(s, Step::Repeat { .. }))
            .collect();
        assert_eq!(repeats.len(), 5);
    }

    #[test]
    fn an_unsupported_precision_is_refused_before_any_work() {
        let mut dev = Steady {
            tops: 1.0,
            overhead: Duration::ZERO,
            n: 0,
            batches: Vec::new(),
        };
        let e = measure_precision(&mut dev, Precision::Fp64, &Params::default(), &mut |_| {})
            .unwrap_err();
        assert!(matches!(
            e,
            BenchError::Unsupported {
                precision: Precision::Fp64
            }
        ));
        assert!(dev.batches.is_empty());
    }

    #[test]
    fn batch_growth_is_bounded() {
        let target = Duration::from_millis(250);
        assert_eq!(next_batch(1, Duration::from_nanos(1), target, 20_000), 16);
        assert_eq!(
            next_batch(1000, Duration::from_nanos(1), target, 20_000),
            16_000
        );
        assert_eq!(next_batch(10, Duration::from_secs(10), target, 20_000), 11);
        assert_eq!(
            next_batch(100, Duration::from_millis(100), target, 20_000),
            300
        );
        assert_eq!(next_batch(19_999, Duration::ZERO, target, 20_000), 20_000);
    }

    #[test]
    fn spread_of_odd_and_even_counts() {
        assert_eq!(spread(&mut [3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(spread(&mut [4.0, 1.0, 2.0, 3.0]), (1.0, 2.5, 4.0));
        assert_eq!(spread(&mut []), (0.0, 0.0, 0.0));
    }
}
