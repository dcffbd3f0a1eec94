//! The simulated benchmark backend: a simulated node's fixture says, per GPU, the dense rate
//! its GEMMs reach (`benchmark.dense_tops`, `tests/fixtures/nvml/SCHEMA.md`); this backend
//! answers [`Benchmark::time_gemms`] with the time that rate gives, plus a launch overhead and
//! deterministic noise seeded by the GPU's UUID. Everything above the kernel launch (batch
//! sizing, repeats, statistics, TPP, the attestation and the verifier's checks) then runs
//! for real in tests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tppguard_proto::claims::measurement::MeasurementMethod;
use tppguard_proto::tpp::Precision;

use super::{BenchError, Benchmark, gemm_flop};

/// Relative noise amplitude of one batch's time (±0.5 %).
const NOISE: f64 = 0.005;
/// Fixed cost of launching a batch and recording its events.
const LAUNCH_OVERHEAD: Duration = Duration::from_micros(15);

/// A GPU of a simulated node.
#[derive(Debug)]
pub struct SimulatedBenchmark {
    dense_tops: BTreeMap<Precision, f64>,
    prepared: Option<(Precision, u32)>,
    rng: SplitMix64,
}

/// Why a simulated GPU has no benchmark figures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The fixture is not the JSON the fake library reads.
    #[error("the fixture is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No GPU in the fixture has this UUID.
    #[error("the fixture has no GPU with UUID {0}")]
    NoSuchGpu(String),
}

#[derive(Deserialize)]
struct Fixture {
    #[serde(default)]
    devices: Vec<FixtureGpu>,
}

#[derive(Deserialize)]
struct FixtureGpu {
    uuid: Option<String>,
    #[serde(default)]
    benchmark: Option<FixtureBenchmark>,
}

#[derive(Deserialize)]
struct FixtureBenchmark {
    #[serde(default)]
    dense_tops: BTreeMap<Precision, f64>,
}

impl SimulatedBenchmark {
    /// The GPU with `uuid` in the fixture `json`. A GPU without a `benchmark` section supports
    /// no precision.
    pub fn from_fixture(json: &str, uuid: &str) -> Result<Self, FixtureError> {
        let fixture: Fixture = serde_json::from_str(json)?;
        let gpu = fixture
            .devices
            .into_iter()
            .find(|g| g.uuid.as_deref() == Some(uuid))
            .ok_or_else(|| FixtureError::NoSuchGpu(uuid.to_owned()))?;
        let dense_tops = gpu
            .benchmark
            .map(|b| b.dense_tops)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, tops)| tops.is_finite() && *tops > 0.0)
            .collect();
        Ok(Self::new(dense_tops, uuid))
    }

    /// A GPU reaching `dense_tops`, its noise seeded by `seed_text`.
    pub fn new(dense_tops: BTreeMap<Precision, f64>, seed_text: &str) -> Self {
        // FNV-1a: a stable seed from the UUID, so each GPU's noise differs but never changes.
        let seed = seed_text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Self {
            dense_tops,
            prepared: None,
            rng: SplitMix64(seed),
        }
    }
}

impl Benchmark for SimulatedBenchmark {
    fn method(&self) -> MeasurementMethod {
        MeasurementMethod::Simulated
    }

    fn describe(&self) -> String {
        "simulated GEMMs (fixture figures, deterministic noise); no real GPU was used".to_owned()
    }

    fn supports(&self, precision: Precision) -> bool {
        self.dense_tops.contains_key(&precision)
    }

    fn prepare(&mut self, precision: Precision, n: u32) -> Result<u32, BenchError> {
        if !self.supports(precision) {
            return Err(BenchError::Unsupported { precision });
        }
        self.prepared = Some((precision, n));
        Ok(n)
    }

    fn time_gemms(&mut self, count: u32) -> Result<Duration, BenchError> {
        let (precision, n) = self.prepared.ok_or(BenchError::NotPrepared)?;
        let tops = self
            .dense_tops
            .get(&precision)
            .copied()
            .ok_or(BenchError::Unsupported { precision })?;
        let secs = gemm_flop(n) * f64::from(count) / (tops * 1e12);
        let noise = 1.0 + NOISE * (2.0 * self.rng.unit() - 1.0);
        Ok(LAUNCH_OVERHEAD + Duration::from_secs_f64(secs * noise))
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): eight lines for reproducible noise, where a random
/// number crate would add a dependency for nothing else.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Params, measure_precision};

    const FIXTURE: &str = r#"{"devices": [
        {"uuid": "GPU-a", "benchmark": {"dense_tops": {"fp16": 712.5, "fp8": 1320.0}}},
        {"uuid": "GPU-b"}
    ]}"#;

    #[test]
    fn figures_come_back_within_the_noise_and_repeat_exactly() {
        let run = || {
            let mut b = SimulatedBenchmark::from_fixture(FIXTURE, "GPU-a").unwrap();
            measure_precision(&mut b, Precision::Fp8, &Params::default(), &mut |_| {}).unwrap()
        };
        let r = run();
        assert!(
            (r.tops_median / 1320.0 - 1.0).abs() < 0.006,
            "{}",
            r.tops_median
        );
        assert!(r.tops_min < r.tops_max, "noise gives a spread");
        assert_eq!(run(), r, "the same GPU gives the same figures");
        assert_eq!(r.matrix_size, 8192);
    }

    #[test]
    fn gpus_without_figures_and_unknown_gpus() {
        let b = SimulatedBenchmark::from_fixture(FIXTURE, "GPU-b").unwrap();
        assert!(Precision::ALL.iter().all(|p| !b.supports(*p)));
        assert!(matches!(
            SimulatedBenchmark::from_fixture(FIXTURE, "GPU-z"),
            Err(FixtureError::NoSuchGpu(_))
        ));
        assert!(SimulatedBenchmark::from_fixture("{", "GPU-a").is_err());
        let mut b = SimulatedBenchmark::from_fixture(FIXTURE, "GPU-a").unwrap();
        assert!(matches!(b.time_gemms(1), Err(BenchError::NotPrepared)));
    }

    #[test]
    fn noise_is_uniform_in_the_unit_interval() {
        let mut rng = SplitMix64(7);
        let xs: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
