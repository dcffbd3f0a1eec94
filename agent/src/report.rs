//! The inventory report: NVML's facts for each GPU, joined with the spec table and classified
//! under the shipped rule sets, plus the node-level view; rendered as JSON or as tables.
//!
//! The figures come from `tppguard-proto`; this module only joins and presents them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use tppguard_proto::classify::{
    Classification, NodeClassification, classify_device, classify_node,
};
use tppguard_proto::ruleset::{RuleSet, RuleSetError, shipped_rule_sets};
use tppguard_proto::spec::{self, H100Equivalents, MatchedBy, SpecMatch};
use tppguard_proto::text::{Escaped, escape};
use tppguard_proto::tpp::{ComputeFigures, PerformanceDensity, Precision, Tpp};

use crate::host::Host;
use crate::inventory::{Absences, Driver, Gpu, GpuInventory, GpuStatus};
use crate::nvml::{LibrarySource, Session};

/// The JSON schema name of [`Report`].
pub const SCHEMA: &str = "tppguard-inventory/v1";

/// The rule set whose outcome is shown as a GPU's ECCN.
pub const ECCN_RULE_SET: &str = "us-eccn-3a090";
/// The rule set whose outcome is shown as GAIN AI Act coverage.
pub const GAIN_RULE_SET: &str = "us-gain-ai-act-s3150";

/// Where the inventory came from.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// True when the GPUs are simulated: no real GPU was read.
    pub simulated: bool,
    /// The NVML library that answered.
    pub library: String,
    /// The simulated node's fixture (bundled name or file), when `--simulate` chose it (a
    /// fake library named otherwise reads a fixture the agent does not know).
    pub fixture: Option<String>,
    /// The simulated node's description, when simulated.
    pub description: Option<String>,
}

impl Source {
    /// One line saying the GPUs are simulated and where they come from (outside text escaped).
    pub fn simulated_line(&self) -> String {
        match &self.fixture {
            Some(fixture) => format!(
                "SIMULATED NODE: fixture {} ({}). No real GPU was read.",
                Escaped(fixture),
                Escaped(self.description.as_deref().unwrap_or("no description")),
            ),
            None => format!(
                "SIMULATED NODE: the NVML library {} is tppguard's fake (tests/fake-nvml). \
                 No real GPU was read.",
                Escaped(&self.library),
            ),
        }
    }
}

/// How one GPU matched the spec table.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SpecView {
    /// Found in the table.
    Matched {
        /// The table's model name.
        model: &'static str,
        /// What matched: `pci_device_id` or `nvml_name`.
        matched_by: MatchedBy,
    },
    /// Not found, with the reason.
    Unknown {
        /// Stable reason code.
        reason: &'static str,
        /// The reason in words.
        sentence: String,
    },
}

/// One GPU's classification.
#[derive(Debug, Clone, Serialize)]
pub struct GpuClassification {
    /// The spec-table match.
    pub spec: SpecView,
    /// Spec TPP (dense, max over precisions), when the part is known.
    pub tpp: Option<Tpp>,
    /// The precision that gives the TPP.
    pub tpp_basis: Option<Precision>,
    /// Performance density, when the die area is known.
    pub performance_density: Option<PerformanceDensity>,
    /// TPP in H100-equivalents.
    pub h100_equivalents: Option<H100Equivalents>,
    /// The outcome under the in-force ECCN rule set.
    pub eccn: Option<String>,
    /// The outcome under the GAIN AI Act bill.
    pub gain_ai: Option<String>,
    /// The outcome under every shipped rule set, with the deciding clause and figures.
    pub rule_sets: Vec<Classification>,
}

/// One GPU in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportGpu {
    /// NVML's facts.
    #[serde(flatten)]
    pub gpu: Gpu,
    /// The classification.
    pub classification: GpuClassification,
}

/// The node as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    /// GPUs NVML enumerated.
    pub gpu_count: usize,
    /// GPUs whose spec TPP is known (counted in `tpp`).
    pub gpus_with_tpp: usize,
    /// Sum of the GPUs' spec TPP.
    pub tpp: Tpp,
    /// `tpp` in H100-equivalents.
    pub h100_equivalents: H100Equivalents,
    /// The node's ECCN under the in-force rule set (4A090.a when it holds 3A090.a GPUs).
    pub eccn: Option<String>,
    /// The node's outcome under every shipped rule set.
    pub rule_sets: Vec<NodeClassification>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Where the inventory came from.
    pub source: Source,
    /// The host.
    pub host: Host,
    /// The driver stack.
    pub driver: Driver,
    /// The GPUs.
    pub gpus: Vec<ReportGpu>,
    /// The node.
    pub node: NodeSummary,
}

impl Report {
    /// Classifies an inventory under the shipped rule sets.
    pub fn new(
        session: &Session,
        host: Host,
        inventory: GpuInventory,
    ) -> Result<Self, RuleSetError> {
        let rule_sets = shipped_rule_sets()?;
        // Whether the GPUs are simulated is the library's mark (`Session::simulated`), not
        // how it was chosen: `--nvml-lib` pointed at the fake is as simulated as `--simulate`.
        let (fixture, description) = match &session.source {
            LibrarySource::Simulated(driver) => (
                Some(driver.fixture.clone()),
                Some(driver.description.clone()),
            ),
            LibrarySource::Driver | LibrarySource::Path(_) => (None, None),
        };
        let source = Source {
            simulated: session.simulated,
            library: session.library.clone(),
            fixture,
            description,
        };
        let gpus: Vec<ReportGpu> = inventory
            .gpus
            .into_iter()
            .map(|gpu| {
                let classification = classify_gpu(&gpu, &rule_sets);
                ReportGpu {
                    gpu,
                    classification,
                }
            })
            .collect();
        let node = summarise(&gpus, &rule_sets);
        Ok(Self {
            schema: SCHEMA,
            source,
            host,
            driver: inventory.driver,
            gpus,
            node,
        })
    }

    /// True when every GPU could be read.
    pub fn complete(&self) -> bool {
        self.gpus.iter().all(|g| g.gpu.status == GpuStatus::Ok)
    }
}

fn classify_gpu(gpu: &Gpu, rule_sets: &[RuleSet]) -> GpuClassification {
    let pci_id = gpu.pci.as_ref().map(|p| p.combined_device_id);
    match spec::lookup(pci_id, gpu.name.as_deref()) {
        SpecMatch::Found { spec, by } => {
            let figures = spec.figures();
            let classifications: Vec<Classification> = rule_sets
                .iter()
                .map(|rs| classify_device(&figures, rs))
                .collect();
            let basis = tppguard_proto::tpp::tpp(&figures);
            let tpp = basis.as_ref().map(|b| b.tpp);
            GpuClassification {
                spec: SpecView::Matched {
                    model: spec.model,
                    matched_by: by,
                },
                tpp,
                tpp_basis: basis.as_ref().map(|b| b.precision),
                performance_density: tpp
                    .zip(figures.die_area)
                    .and_then(|(t, a)| tppguard_proto::tpp::performance_density(t, a)),
                h100_equivalents: tpp.map(spec::h100_equivalents),
                eccn: outcome(&classifications, ECCN_RULE_SET),
                gain_ai: outcome(&classifications, GAIN_RULE_SET),
                rule_sets: classifications,
            }
        }
        SpecMatch::Unknown { reason } => {
            // No figures: every rule set answers `indeterminate` (TPP unknown), which keeps
            // the GPU in the node's view instead of silently dropping it. Datacenter is
            // assumed, so no carve-out can decide anything on a guess.
            let figures = ComputeFigures {
                datacenter: true,
                ..ComputeFigures::default()
            };
            let classifications: Vec<Classification> = rule_sets
                .iter()
                .map(|rs| classify_device(&figures, rs))
                .collect();
            GpuClassification {
                spec: SpecView::Unknown {
                    reason: reason.code(),
                    sentence: reason.sentence(),
                },
                tpp: None,
                tpp_basis: None,
                performance_density: None,
                h100_equivalents: None,
                eccn: outcome(&classifications, ECCN_RULE_SET),
                gain_ai: outcome(&classifications, GAIN_RULE_SET),
                rule_sets: classifications,
            }
        }
    }
}

fn outcome(classifications: &[Classification], rule_set: &str) -> Option<String> {
    classifications
        .iter()
        .find(|c| c.rule_set == rule_set)
        .map(|c| c.outcome.clone())
}

fn summarise(gpus: &[ReportGpu], rule_sets: &[RuleSet]) -> NodeSummary {
    let known: Vec<Tpp> = gpus.iter().filter_map(|g| g.classification.tpp).collect();
    let tpp = Tpp::sum(known.iter().copied());
    let node_classes: Vec<NodeClassification> = rule_sets
        .iter()
        .map(|rs| {
            // Every GPU has one entry per rule set (unknown parts an indeterminate one), in
            // NVML index order, so the node's `device` is the GPU's index.
            let devices: Vec<Classification> = gpus
                .iter()
                .filter_map(|g| {
                    g.classification
                        .rule_sets
                        .iter()
                        .find(|c| c.rule_set == rs.id)
                })
                .cloned()
                .collect();
            classify_node(&devices, rs)
        })
        .collect();
    NodeSummary {
        gpu_count: gpus.len(),
        gpus_with_tpp: known.len(),
        tpp,
        h100_equivalents: spec::h100_equivalents(tpp),
        eccn: node_classes
            .iter()
            .find(|n| n.rule_set == ECCN_RULE_SET)
            .map(|n| n.outcome.clone()),
        rule_sets: node_classes,
    }
}

// ---------------------------------------------------------------------------------------------
// Human output

impl Report {
    /// Writes the report as tables for a terminal.
    pub fn render(&self, out: &mut impl Write) -> io::Result<()> {
        if self.source.simulated {
            writeln!(out, "{}\n", self.source.simulated_line())?;
        }
        self.render_host(out)?;
        writeln!(out)?;
        self.render_gpus(out)?;
        writeln!(out)?;
        self.render_classification(out)?;
        writeln!(out)?;
        self.render_node(out)?;
        self.render_absences(out)
    }

    fn render_host(&self, out: &mut impl Write) -> io::Result<()> {
        let h = &self.host;
        let d = &self.driver;
        writeln!(
            out,
            "Host    {} (machine id {}), {}, kernel {}",
            or_dash(h.hostname.as_deref()),
            or_dash(h.machine_id.as_deref()),
            or_dash(h.os.as_deref()),
            or_dash(h.kernel.as_deref()),
        )?;
        writeln!(
            out,
            "CPU     {} x {} ({}), memory {}",
            h.cpu_count,
            or_dash(h.cpu_model.as_deref()),
            h.cpu_arch,
            gib(h.memory_bytes),
        )?;
        let cc = match &d.confidential_computing {
            Some(cc) if cc.enabled => "on".to_owned(),
            Some(_) => "off".to_owned(),
            None => "not reported".to_owned(),
        };
        writeln!(
            out,
            "Driver  {}, NVML {}, CUDA {}, confidential computing {cc}; library {}",
            or_dash(d.driver_version.as_deref()),
            or_dash(d.nvml_version.as_deref()),
            or_dash(d.cuda_driver_version.as_deref()),
            Escaped(&self.source.library),
        )
    }

    fn render_gpus(&self, out: &mut impl Write) -> io::Result<()> {
        let mut t = Table::new(&[
            "GPU",
            "NAME",
            "UUID",
            "SERIAL",
            "BUS ID",
            "PCI ID",
            "ARCH",
            "CC",
            "SMS",
            "MEMORY",
            "MAX SM/MEM MHZ",
            "POWER",
            "VBIOS",
            "MIG",
        ]);
        for g in &self.gpus {
            let g = &g.gpu;
            let status = match g.status {
                GpuStatus::Ok => String::new(),
                GpuStatus::Lost => " (LOST)".to_owned(),
                GpuStatus::Unreadable => " (UNREADABLE)".to_owned(),
            };
            t.row(vec![
                format!("{}{status}", g.index),
                or_dash(g.name.as_deref()).into_owned(),
                or_dash(g.uuid.as_deref()).into_owned(),
                or_dash(g.serial.as_deref()).into_owned(),
                or_dash(g.pci.as_ref().map(|p| p.bus_id.as_str())).into_owned(),
                g.pci
                    .as_ref()
                    .map(|p| {
                        let hex = |id: &str| id.trim_start_matches("0x").to_owned();
                        format!("{}:{}", hex(&p.vendor_id), hex(&p.device_id))
                    })
                    .unwrap_or_else(|| "-".to_owned()),
                or_dash(g.architecture.as_deref()).into_owned(),
                or_dash(g.cuda_compute_capability.as_deref()).into_owned(),
                opt(g.multiprocessor_count),
                g.memory_total_bytes
                    .map(gib)
                    .unwrap_or_else(|| "-".to_owned()),
                format!(
                    "{}/{}",
                    opt(g.max_sm_clock_mhz),
                    opt(g.max_memory_clock_mhz)
                ),
                g.power_limit_mw
                    .map(|mw| format!("{} W", mw / 1000))
                    .unwrap_or_else(|| "-".to_owned()),
                or_dash(g.vbios_version.as_deref()).into_owned(),
                match &g.mig {
                    None => "-".to_owned(),
                    Some(m) if m.current_enabled => format!("on, {} inst.", m.instances.len()),
                    Some(m) if m.pending_enabled => "off (on after reset)".to_owned(),
                    Some(_) => "off".to_owned(),
                },
            ]);
        }
        t.write(out)?;
        for g in &self.gpus {
            let Some(mig) = g.gpu.mig.as_ref().filter(|m| !m.instances.is_empty()) else {
                continue;
            };
            writeln!(out, "\nGPU {} MIG instances:", g.gpu.index)?;
            let mut t = Table::new(&["MIG", "NAME", "UUID", "GI", "CI", "SMS", "MEMORY"]);
            for m in &mig.instances {
                t.row(vec![
                    m.index.to_string(),
                    or_dash(m.name.as_deref()).into_owned(),
                    or_dash(m.uuid.as_deref()).into_owned(),
                    opt(m.gpu_instance_id),
                    opt(m.compute_instance_id),
                    opt(m.multiprocessor_count),
                    m.memory_total_bytes
                        .map(gib)
                        .unwrap_or_else(|| "-".to_owned()),
                ]);
            }
            t.write(out)?;
        }
        Ok(())
    }

    fn render_classification(&self, out: &mut impl Write) -> io::Result<()> {
        let mut t = Table::new(&[
            "GPU",
            "MODEL MATCH",
            "TPP",
            "BASIS",
            "PD",
            "H100-EQ",
            "ECCN",
            "GAIN AI (BILL, NOT LAW)",
        ]);
        for g in &self.gpus {
            let c = &g.classification;
            let model = match &c.spec {
                SpecView::Matched { model, matched_by } => {
                    format!("{model} (by {})", matched_by.code())
                }
                SpecView::Unknown { reason, .. } => format!("unknown ({reason})"),
            };
            t.row(vec![
                g.gpu.index.to_string(),
                model,
                c.tpp
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                c.tpp_basis
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                c.performance_density
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                c.h100_equivalents
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                or_dash(c.eccn.as_deref()).into_owned(),
                or_dash(c.gain_ai.as_deref()).into_owned(),
            ]);
        }
        t.write(out)?;
        for g in &self.gpus {
            if let SpecView::Unknown { sentence, .. } = &g.classification.spec {
                writeln!(
                    out,
                    "GPU {}: not classified: {}",
                    g.gpu.index,
                    Escaped(sentence)
                )?;
            }
        }
        Ok(())
    }

    fn render_node(&self, out: &mut impl Write) -> io::Result<()> {
        let n = &self.node;
        writeln!(
            out,
            "Node: {} GPU(s), total TPP {} = {} H100-equivalents{}",
            n.gpu_count,
            n.tpp,
            n.h100_equivalents,
            if n.gpus_with_tpp < n.gpu_count {
                format!(
                    " ({} GPU(s) without a known TPP are not counted)",
                    n.gpu_count - n.gpus_with_tpp
                )
            } else {
                String::new()
            },
        )?;
        for c in &n.rule_sets {
            writeln!(
                out,
                "  {} [{}]: {}: {}",
                c.rule_set,
                c.rule_set_status.label(),
                c.outcome,
                Escaped(&c.sentence)
            )?;
        }
        Ok(())
    }

    fn render_absences(&self, out: &mut impl Write) -> io::Result<()> {
        // (owner kind, field, reason) -> owners: eight GPUs missing the same field read as one
        // line, not eight. NVML's wording of each error is in the JSON output.
        let mut groups: BTreeMap<(String, &str, &str), Vec<String>> = BTreeMap::new();
        let mut add = |kind: &str, who: String, absent: &'_ Absences| {
            for (field, a) in absent {
                groups
                    .entry((kind.to_owned(), field, a.reason.code()))
                    .or_default()
                    .push(who.clone());
            }
        };
        add("driver", String::new(), &self.driver.absent);
        for g in &self.gpus {
            let i = g.gpu.index;
            add("GPU", i.to_string(), &g.gpu.absent);
            if let Some(mig) = &g.gpu.mig {
                add("GPU MIG", i.to_string(), &mig.absent);
                for m in &mig.instances {
                    add("GPU MIG instance", format!("{i}/{}", m.index), &m.absent);
                }
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nNot reported by NVML (shown as -):")?;
        for ((kind, field, reason), who) in groups {
            let who = if who.iter().all(String::is_empty) {
                kind
            } else {
                format!("{kind} {}", who.join(", "))
            };
            writeln!(out, "  {who}: {field}: {reason}")?;
        }
        Ok(())
    }
}

/// Outside text (what NVML, the OS or a fixture said) for a terminal: escaped, or `-` when
/// there is none. Every such string in the tables goes through here.
fn or_dash(s: Option<&str>) -> Cow<'_, str> {
    s.map_or(Cow::Borrowed("-"), escape)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// Bytes as GiB with one decimal, computed in integers.
fn gib(bytes: u64) -> String {
    let tenths = bytes / (1 << 30) * 10 + bytes % (1 << 30) * 10 / (1 << 30);
    format!("{}.{} GiB", tenths / 10, tenths % 10)
}

/// A plain left-aligned text table.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()) + 2,
                ));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::{LibrarySource, Session};
    use crate::simulate::SimulatedDriver;

    #[test]
    fn host_facts_reach_the_terminal_escaped() {
        // The host name and OS strings come from the OS, which a test cannot set: they are
        // set here, on the report the real pipeline made.
        let driver = SimulatedDriver::install("dgx-h100").unwrap();
        let session = Session::open(LibrarySource::Simulated(driver)).unwrap();
        let gpus = crate::inventory::collect(&session.nvml).unwrap();
        let mut host = Host::read();
        host.hostname = Some("node\u{1b}[2J\u{1b}]0;COMPLIANT\u{7}".to_owned());
        host.os = Some("Linux\u{202e}\u{9b}31m".to_owned());
        let report = Report::new(&session, host, gpus).unwrap();
        let mut out = Vec::new();
        report.render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Host    node\\u{1b}[2J\\u{1b}]0;COMPLIANT\\u{7} (machine id"),
            "{text}"
        );
        assert!(text.contains("Linux\\u{202e}\\u{9b}31m"), "{text}");
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{text}"
        );
    }
}
