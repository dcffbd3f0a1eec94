//! What `tppguard-agent measure` prints: per GPU, each precision's measured rate next to the
//! spec table's dense figure, the TPP the measurement implies, and what was skipped and why
//! (schema `tppguard-measure/v1`, `--json`).

use std::io::{self, Write};

use serde::Serialize;
use tppguard_proto::claims::measurement::{Measurement, MeasurementMethod, PrecisionResult};
use tppguard_proto::spec::{self, SpecMatch};
use tppguard_proto::text::Escaped;
use tppguard_proto::tpp::Precision;
use tppguard_proto::units::{Tops, Tpp};

use super::run::Skipped;
use crate::inventory::Gpu;

/// The JSON schema name.
pub const SCHEMA: &str = "tppguard-measure/v1";

/// The whole output.
#[derive(Debug, Serialize)]
pub struct MeasureReport {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The fixture, when the node is simulated (then no real GPU was measured).
    pub simulated_fixture: Option<String>,
    /// Where the results were cached, with `--dir`.
    pub cached_in: Option<String>,
    /// One entry per GPU asked for.
    pub gpus: Vec<GpuOutcome>,
}

/// How one GPU's measurement went.
#[derive(Debug, Serialize)]
pub struct GpuOutcome {
    /// NVML index.
    pub index: u32,
    /// UUID.
    pub uuid: Option<String>,
    /// NVML name.
    pub name: Option<String>,
    /// The spec table's model, when the GPU is listed.
    pub model: Option<&'static str>,
    /// `measured`, `busy` (refused: other compute processes), or `failed`.
    pub status: &'static str,
    /// The other compute processes found, for `busy` (and with `--force`).
    pub compute_processes: Vec<u32>,
    /// Why it failed, for `failed`.
    pub error: Option<String>,
    /// Each precision measured, with the spec comparison.
    pub results: Vec<Compared>,
    /// Precisions not measured, and why.
    pub skipped: Vec<Skipped>,
    /// The largest TPP the measured rates give (a lower bound on the device's TPP: only the
    /// precisions measured count).
    pub measured_tpp: Option<Tpp>,
    /// The spec table's TPP.
    pub spec_tpp: Option<Tpp>,
    /// The measurement as the attestation carries it.
    pub measurement: Option<Measurement>,
}

/// One precision's result against the spec.
#[derive(Debug, Serialize)]
pub struct Compared {
    /// The precision.
    pub precision: Precision,
    /// Median over the repeats, TOPS.
    pub tops_median: f64,
    /// Slowest repeat, TOPS.
    pub tops_min: f64,
    /// Fastest repeat, TOPS.
    pub tops_max: f64,
    /// The spec table's dense rate, when listed.
    pub spec_tops: Option<Tops>,
    /// `tops_median / spec_tops`.
    pub ratio_to_spec: Option<f64>,
    /// `tops_median × bit length`, rounded down: the TPP this precision shows.
    pub tpp: Tpp,
    /// Side of the matrices.
    pub matrix_size: u32,
    /// GEMMs per timed repeat.
    pub gemms_per_repeat: u32,
}

impl GpuOutcome {
    /// A GPU not measured yet, with its identity and spec figures.
    pub fn new(gpu: &Gpu) -> Self {
        let spec = match spec::lookup(
            gpu.pci.as_ref().map(|p| p.combined_device_id),
            gpu.name.as_deref(),
        ) {
            SpecMatch::Found { spec, .. } => Some(spec),
            _ => None,
        };
        Self {
            index: gpu.index,
            uuid: gpu.uuid.clone(),
            name: gpu.name.clone(),
            model: spec.map(|s| s.model),
            status: "failed",
            compute_processes: Vec::new(),
            error: None,
            results: Vec::new(),
            skipped: Vec::new(),
            measured_tpp: None,
            spec_tpp: spec.and_then(|s| tppguard_proto::tpp::tpp(&s.figures()).map(|b| b.tpp)),
            measurement: None,
        }
    }

    /// Records a finished measurement.
    pub fn measured(&mut self, measurement: Measurement, skipped: Vec<Skipped>) {
        let spec = self.model.and_then(spec::by_model);
        self.results = measurement
            .results
            .iter()
            .map(|r| compare(r, spec.map(|s| s.dense_tops)))
            .collect();
        self.measured_tpp = self.results.iter().map(|c| c.tpp).max();
        self.skipped = skipped;
        self.measurement = Some(measurement);
        self.status = "measured";
    }
}

fn compare(r: &PrecisionResult, spec: Option<&[(Precision, Tops)]>) -> Compared {
    let spec_tops = spec.and_then(|rates| {
        rates
            .iter()
            .find(|(p, _)| *p == r.precision)
            .map(|(_, t)| *t)
    });
    Compared {
        precision: r.precision,
        tops_median: r.tops_median,
        tops_min: r.tops_min,
        tops_max: r.tops_max,
        spec_tops,
        ratio_to_spec: spec_tops
            .map(Tops::as_f64)
            .filter(|s| *s > 0.0)
            .map(|s| r.tops_median / s),
        tpp: Tops::from_measured(r.tops_median)
            .map(|t| t.tpp_at(r.precision.bit_length()))
            .unwrap_or_default(),
        matrix_size: r.matrix_size,
        gemms_per_repeat: r.gemms_per_repeat,
    }
}

impl MeasureReport {
    /// Whether every GPU asked for was measured.
    pub fn complete(&self) -> bool {
        self.gpus.iter().all(|g| g.status == "measured")
    }

    /// The human tables.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        if let Some(fixture) = &self.simulated_fixture {
            writeln!(
                out,
                "SIMULATED NODE: fixture {}. No real GPU was measured: the figures come \
                 from the fixture, with deterministic noise.",
                Escaped(fixture)
            )?;
        } else if let Some(m) = self
            .gpus
            .iter()
            .filter_map(|g| g.measurement.as_ref())
            .find(|m| m.method == MeasurementMethod::Simulated)
        {
            writeln!(
                out,
                "SIMULATED MEASUREMENT: no real GPU was measured ({}); the attestation \
                 records the method as simulated.",
                Escaped(&m.backend)
            )?;
        }
        for g in &self.gpus {
            writeln!(
                out,
                "GPU {} {} ({}){}",
                g.index,
                Escaped(g.name.as_deref().unwrap_or("(name unknown)")),
                Escaped(g.uuid.as_deref().unwrap_or("UUID unknown")),
                g.model
                    .map(|m| format!(": spec model {m}"))
                    .unwrap_or_else(|| ": not in the spec table".to_owned())
            )?;
            match g.status {
                "busy" => writeln!(
                    out,
                    "  refused: other compute processes are running on it (pids {}); \
                     measure it when it is idle, or use --force",
                    join(&g.compute_processes)
                )?,
                "failed" => writeln!(
                    out,
                    "  failed: {}",
                    Escaped(g.error.as_deref().unwrap_or("unknown error"))
                )?,
                _ => {}
            }
            if !g.results.is_empty() {
                writeln!(
                    out,
                    "  {:<9} {:>12} {:>20} {:>12} {:>8} {:>12}",
                    "precision", "TOPS median", "min .. max", "spec", "ratio", "TPP"
                )?;
            }
            for c in &g.results {
                writeln!(
                    out,
                    "  {:<9} {:>12.1} {:>20} {:>12} {:>8} {:>12}",
                    c.precision.name(),
                    c.tops_median,
                    format!("{:.1} .. {:.1}", c.tops_min, c.tops_max),
                    c.spec_tops
                        .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                    c.ratio_to_spec
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
                    c.tpp
                )?;
            }
            for s in &g.skipped {
                writeln!(
                    out,
                    "  {:<9} skipped: {}",
                    s.precision.name(),
                    Escaped(&s.reason)
                )?;
            }
            if let Some(m) = &g.measurement {
                let t = &m.telemetry;
                writeln!(
                    out,
                    "  measured TPP {} (lower bound){}; {} ms, {} samples: SM clock {} MHz, \
                     max {} °C, max {} W, throttle: {}",
                    g.measured_tpp.unwrap_or_default(),
                    g.spec_tpp
                        .map(|s| format!(", spec TPP {s}"))
                        .unwrap_or_default(),
                    m.duration_ms,
                    t.samples,
                    match (t.sm_clock_mhz_min, t.sm_clock_mhz_max) {
                        (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
                        _ => "?".to_owned(),
                    },
                    t.temperature_c_max
                        .map_or_else(|| "?".to_owned(), |c| c.to_string()),
                    t.power_mw_max.map_or_else(
                        || "?".to_owned(),
                        |p| format!("{:.0}", f64::from(p) / 1000.0)
                    ),
                    if t.throttle_reasons.is_empty() {
                        "none".to_owned()
                    } else {
                        t.throttle_reasons.join(", ")
                    }
                )?;
            }
        }
        if let Some(path) = &self.cached_in {
            writeln!(
                out,
                "cached in {}: `attest --dir` will include these measurements",
                Escaped(path)
            )?;
        }
        Ok(())
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_against_the_spec() {
        let r = PrecisionResult {
            precision: Precision::Fp8,
            matrix_size: 8192,
            gemms_per_repeat: 900,
            tops_median: 1286.3,
            tops_min: 1280.0,
            tops_max: 1290.0,
        };
        let h100 = spec::by_model("H100 SXM5 80GB").unwrap();
        let c = compare(&r, Some(h100.dense_tops));
        assert_eq!(c.spec_tops.unwrap().to_string(), "1978.9");
        assert!((c.ratio_to_spec.unwrap() - 1286.3 / 1978.9).abs() < 1e-12);
        assert_eq!(c.tpp.to_string(), "10290.4");
        let unlisted = compare(&r, None);
        assert!(unlisted.spec_tops.is_none() && unlisted.ratio_to_spec.is_none());
    }
}
