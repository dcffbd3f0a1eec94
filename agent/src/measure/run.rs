//! Measuring one GPU for real: the busy check, NVML telemetry sampled on a second thread
//! while the backend runs, and the [`Measurement`] that goes into the attestation; and the
//! cache (`NODE/measurements.json`) that `measure --dir` writes and `attest` reads.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nvml_wrapper::Device;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use serde::{Deserialize, Serialize};
use tppguard_proto::claims::measurement::{Measurement, Telemetry};
use tppguard_proto::tpp::Precision;

use super::{BenchError, Benchmark, Params, Step, measure_precision};

/// The cache file in a node folder.
pub const CACHE_FILE: &str = "measurements.json";
/// The cache's schema name.
pub const CACHE_SCHEMA: &str = "tppguard-measurements/v1";
/// Largest cache file read.
const MAX_CACHE_BYTES: u64 = 16 << 20;
/// How often telemetry is sampled during a run.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A precision that was not measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The precision.
    pub precision: Precision,
    /// Why (the backend's words).
    pub reason: String,
}

/// Compute processes on a GPU, by pid, as NVML lists them.
pub fn compute_processes(device: &Device<'_>) -> Result<Vec<u32>, NvmlError> {
    Ok(device
        .running_compute_processes()?
        .into_iter()
        .map(|p| p.pid)
        .collect())
}

/// Measures `precisions` on one GPU with `bench`, sampling `device`'s telemetry meanwhile.
/// A precision the backend cannot run is skipped with its reason; any other error ends the
/// GPU's measurement.
pub fn measure_gpu(
    bench: &mut dyn Benchmark,
    device: &Device<'_>,
    precisions: &[Precision],
    params: &Params,
    progress: &mut dyn FnMut(Precision, Step),
) -> Result<(Measurement, Vec<Skipped>), BenchError> {
    let started_at = unix_now();
    let clock = Instant::now();
    let stop = AtomicBool::new(false);
    let mut samples = vec![Sample::read(device)];
    let outcome = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE_EVERY);
                seen.push(Sample::read(device));
            }
            seen
        });
        let mut results = Vec::new();
        let mut skipped = Vec::new();
        let mut run = || -> Result<(), BenchError> {
            for &precision in precisions {
                if !bench.supports(precision) {
                    skipped.push(Skipped {
                        precision,
                        reason: BenchError::Unsupported { precision }.to_string(),
                    });
                    continue;
                }
                match measure_precision(bench, precision, params, &mut |s| progress(precision, s)) {
                    Ok(r) => results.push(r),
                    Err(e @ (BenchError::Unsupported { .. } | BenchError::OutOfMemory { .. })) => {
                        skipped.push(Skipped {
                            precision,
                            reason: e.to_string(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        let ran = run();
        stop.store(true, Ordering::Relaxed);
        let seen = sampler.join().unwrap_or_default();
        ran.map(|()| (results, skipped, seen))
    });
    let (results, skipped, seen) = outcome?;
    samples.extend(seen);
    samples.push(Sample::read(device));
    let measurement = Measurement {
        method: bench.method(),
        backend: bench.describe(),
        started_at,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        repeats: params.repeats.max(1),
        results,
        telemetry: telemetry(&samples),
    };
    Ok((measurement, skipped))
}

/// One reading of the device; what NVML cannot give is `None`.
#[derive(Debug, Clone, Default)]
struct Sample {
    sm_clock_mhz: Option<u32>,
    temperature_c: Option<u32>,
    power_mw: Option<u32>,
    throttle_reasons: Vec<String>,
}

impl Sample {
    fn read(device: &Device<'_>) -> Self {
        Self {
            sm_clock_mhz: device.clock_info(Clock::SM).ok(),
            temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
            power_mw: device.power_usage().ok(),
            throttle_reasons: device
                .current_throttle_reasons()
                .map(|r| {
                    r.iter_names()
                        .map(|(n, _)| n.to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn telemetry(samples: &[Sample]) -> Telemetry {
    let mut reasons: Vec<String> = samples
        .iter()
        .flat_map(|s| s.throttle_reasons.iter().cloned())
        .filter(|r| r != "none")
        .collect();
    reasons.sort();
    reasons.dedup();
    Telemetry {
        samples: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        sm_clock_mhz_min: samples.iter().filter_map(|s| s.sm_clock_mhz).min(),
        sm_clock_mhz_max: samples.iter().filter_map(|s| s.sm_clock_mhz).max(),
        temperature_c_max: samples.iter().filter_map(|s| s.temperature_c).max(),
        power_mw_max: samples.iter().filter_map(|s| s.power_mw).max(),
        throttle_reasons: reasons,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The latest measurement of each GPU of a node, by UUID.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// [`CACHE_SCHEMA`].
    pub schema: String,
    /// By GPU UUID.
    pub gpus: BTreeMap<String, Measurement>,
}

/// Why the cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a measurement cache.
    #[error(
        "{}: not a {CACHE_SCHEMA} file ({reason}); delete it and run `tppguard-agent measure --dir` again",
        path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Cache {
    /// The cache in node folder `dir`; empty when there is none yet.
    pub fn load(dir: &Path) -> Result<Self, CacheError> {
        let path = dir.join(CACHE_FILE);
        let io_err = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_err(e)),
        };
        if len > MAX_CACHE_BYTES {
            return Err(CacheError::Invalid {
                path,
                reason: format!("{len} bytes, more than {MAX_CACHE_BYTES}"),
            });
        }
        let bytes = fs::read(&path).map_err(io_err)?;
        let cache: Self = serde_json::from_slice(&bytes).map_err(|e| CacheError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if cache.schema != CACHE_SCHEMA {
            return Err(CacheError::Invalid {
                path,
                reason: format!("schema {:?}", cache.schema),
            });
        }
        Ok(cache)
    }

    /// Writes the cache into `dir` atomically (a temporary file renamed over the old one).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, CacheError> {
        let path = dir.join(CACHE_FILE);
        let io_err = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| io_err(e.into()))?;
        file.write_all(&json).map_err(io_err)?;
        file.write_all(b"\n").map_err(io_err)?;
        file.persist(&path).map_err(|e| io_err(e.error))?;
        Ok(path)
    }

    /// Records `measurement` as the latest of GPU `uuid`.
    pub fn insert(&mut self, uuid: String, measurement: Measurement) {
        CACHE_SCHEMA.clone_into(&mut self.schema);
        self.gpus.insert(uuid, measurement);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tppguard_proto::claims::measurement::MeasurementMethod;

    fn sample(clock: u32, reasons: &[&str]) -> Sample {
        Sample {
            sm_clock_mhz: Some(clock),
            temperature_c: Some(clock / 30),
            power_mw: Some(clock * 100),
            throttle_reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn telemetry_keeps_extremes_and_every_reason_once() {
        let t = telemetry(&[
            sample(1980, &["gpu_idle"]),
            sample(1410, &["sw_power_cap", "none"]),
            Sample::default(),
            sample(1755, &["sw_power_cap", "hw_slowdown"]),
        ]);
        assert_eq!(t.samples, 4);
        assert_eq!(
            (t.sm_clock_mhz_min, t.sm_clock_mhz_max),
            (Some(1410), Some(1980))
        );
        assert_eq!(t.temperature_c_max, Some(66));
        assert_eq!(t.power_mw_max, Some(198_000));
        assert_eq!(
            t.throttle_reasons,
            ["gpu_idle", "hw_slowdown", "sw_power_cap"]
        );
        assert_eq!(telemetry(&[]).sm_clock_mhz_min, None);
    }

    #[test]
    fn the_cache_round_trips_and_refuses_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cache::load(dir.path()).unwrap().gpus.is_empty());
        let mut cache = Cache::default();
        let m = Measurement {
            method: MeasurementMethod::Simulated,
            backend: "test".to_owned(),
            started_at: 1_790_000_000,
            duration_ms: 12,
            repeats: 7,
            results: Vec::new(),
            telemetry: Telemetry::default(),
        };
        cache.insert("GPU-1".to_owned(), m.clone());
        cache.save(dir.path()).unwrap();
        let back = Cache::load(dir.path()).unwrap();
        assert_eq!(back.gpus.get("GPU-1"), Some(&m));
        fs::write(
            dir.path().join(CACHE_FILE),
            r#"{"schema":"other","gpus":{}}"#,
        )
        .unwrap();
        assert!(matches!(
            Cache::load(dir.path()),
            Err(CacheError::Invalid { .. })
        ));
        fs::write(dir.path().join(CACHE_FILE), "{").unwrap();
        let e = Cache::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("measure --dir"), "{e}");
    }
}
