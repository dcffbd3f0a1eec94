//! `tppguard-verifier classify`: figures from the spec table or from flags, classified under
//! shipped or user rule sets, printed as tables or one JSON object.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tppguard_proto::classify::{
    Classification, NeedDetermination, Party, classify_device, licence_need,
};
use tppguard_proto::licence::CountryCode;
use tppguard_proto::ruleset::{
    MAX_RULE_SET_BYTES, RuleSet, RuleSetError, RuleSetPosture, RuleSetStatus,
    all_shipped_rule_sets, shipped_rule_sets,
};
use tppguard_proto::spec::{AcceleratorSpec, by_model, h100_equivalents, spec_table};
use tppguard_proto::text::{Escaped, escape};
use tppguard_proto::tpp::{ComputeFigures, Precision, TppBasis, performance_density, tpp};
use tppguard_proto::units::{Bandwidth, DieArea, H100Equivalents, PerformanceDensity, Tpp};

use crate::cli::ClassifyArgs;
use crate::error::Error;

/// Most model names suggested for an unknown `--model`.
const MAX_SUGGESTIONS: usize = 5;

/// The result of `classify`, as printed with `--json`. Field names are stable.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The spec-table model the figures come from; `null` for figures given as flags.
    pub model: Option<&'static str>,
    /// TPP, if any rate is known.
    pub tpp: Option<Tpp>,
    /// The precision that set the TPP.
    pub tpp_basis: Option<Precision>,
    /// Performance density, if the die area is known.
    pub performance_density: Option<PerformanceDensity>,
    /// Applicable die area, mm².
    pub die_area: Option<DieArea>,
    /// Designed or marketed for datacenters.
    pub datacenter: bool,
    /// DRAM bandwidth, GB/s.
    pub dram_bandwidth: Option<Bandwidth>,
    /// Interconnect bandwidth, GB/s.
    pub interconnect_bandwidth: Option<Bandwidth>,
    /// TPP / the H100 SXM5's TPP.
    pub h100_equivalents: Option<H100Equivalents>,
    /// The outcome under the first in-force ECCN rule set evaluated, if any.
    pub eccn: Option<String>,
    /// One classification per rule set, in the order given.
    pub classifications: Vec<Classification>,
    /// The enforcement posture: each rule set with its status and where it came from, in the
    /// order given.
    pub posture: Vec<RuleSetPosture>,
    /// The destination asked about (`--destination`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<CountryCode>,
    /// The party asked about (`--headquarters`, `--ultimate-parent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub party: Option<Party>,
    /// With `--destination`: whether the item needs a licence, one per rule set in the order
    /// given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licence_need: Vec<NeedDetermination>,
    #[serde(skip)]
    basis: Option<TppBasis>,
    #[serde(skip)]
    titles: Vec<String>,
}

/// Runs `classify`.
pub fn run(args: &ClassifyArgs, out: &mut dyn Write) -> Result<(), Error> {
    if args.list_models {
        return list_models(args.json, out);
    }
    let (spec, figures) = figures(args)?;
    let rule_sets = load_rule_sets(&args.rule_set)?;
    let mut report = report(spec, &figures, &rule_sets);
    if let Some(destination) = args.destination {
        let headquarters = args.headquarters.unwrap_or(destination);
        let party = Party {
            headquarters,
            ultimate_parent: args.ultimate_parent.unwrap_or(headquarters),
        };
        report.with_licence_need(&rule_sets, destination, party);
    }
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_report(&report, out)?;
    }
    Ok(())
}

/// The figures to classify: a spec-table row's, or those given as flags.
pub fn figures(
    args: &ClassifyArgs,
) -> Result<(Option<&'static AcceleratorSpec>, ComputeFigures), Error> {
    if let Some(name) = &args.model {
        let spec = by_model(name).ok_or_else(|| Error::UnknownModel {
            name: name.clone(),
            suggestions: suggestions(name),
        })?;
        return Ok((Some(spec), spec.figures()));
    }
    let mut figures = ComputeFigures {
        die_area: args.die_area,
        datacenter: !args.not_datacenter,
        dram_bandwidth: args.dram_bandwidth,
        interconnect_bandwidth: args.interconnect_bandwidth,
        ..ComputeFigures::default()
    };
    for &(precision, tops) in &args.tops {
        if figures.dense_tops.insert(precision, tops).is_some() {
            return Err(Error::DuplicateTops { precision });
        }
    }
    Ok((None, figures))
}

/// Model names close to `name`: sharing a word, or containing it (case-insensitive).
fn suggestions(name: &str) -> Vec<&'static str> {
    let wanted = name.to_lowercase();
    let words: Vec<&str> = wanted.split_whitespace().filter(|w| w.len() >= 2).collect();
    spec_table()
        .iter()
        .map(|s| s.model)
        .filter(|model| {
            let model = model.to_lowercase();
            model.contains(&wanted)
                || model.split_whitespace().any(|m| {
                    words
                        .iter()
                        .any(|w| m == *w || (w.len() >= 3 && m.starts_with(w)))
                })
        })
        .take(MAX_SUGGESTIONS)
        .collect()
}

/// The rule sets named by `--rule-set` (shipped ids, historical ones included, or files), or
/// every shipped rule set that is not historical: a rule no longer enforced is asked for by
/// name, never shown by default.
pub fn load_rule_sets(args: &[String]) -> Result<Vec<RuleSet>, Error> {
    if args.is_empty() {
        return shipped_rule_sets().map_err(Error::Shipped);
    }
    let shipped = all_shipped_rule_sets().map_err(Error::Shipped)?;
    args.iter()
        .map(|arg| {
            if let Some(rule_set) = shipped.iter().find(|r| r.id == *arg) {
                return Ok(rule_set.clone());
            }
            let path = Path::new(arg);
            if path.is_file() {
                read_rule_set(path)
            } else {
                Err(Error::UnknownRuleSet {
                    arg: arg.clone(),
                    known: shipped
                        .iter()
                        .map(|r| r.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        })
        .collect()
}

/// Reads a rule-set file, reading at most one byte past the size limit; a file reusing a
/// shipped id is refused unless it is that rule set unchanged ([`RuleSet::from_file_toml_str`]).
fn read_rule_set(path: &Path) -> Result<RuleSet, Error> {
    let read_error = |source| Error::ReadRuleSet {
        path: PathBuf::from(path),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let limit = u64::try_from(MAX_RULE_SET_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut text = String::new();
    file.take(limit)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    RuleSet::from_file_toml_str(&text).map_err(|source: RuleSetError| Error::InvalidRuleSet {
        path: PathBuf::from(path),
        source,
    })
}

/// Classifies `figures` under each rule set.
pub fn report(
    spec: Option<&'static AcceleratorSpec>,
    figures: &ComputeFigures,
    rule_sets: &[RuleSet],
) -> Report {
    let basis = tpp(figures);
    let classifications: Vec<Classification> = rule_sets
        .iter()
        .map(|rule_set| classify_device(figures, rule_set))
        .collect();
    let eccn = rule_sets
        .iter()
        .zip(&classifications)
        .find(|(r, _)| r.eccn.is_some() && r.status == RuleSetStatus::InForce)
        .map(|(_, c)| c.outcome.clone());
    Report {
        model: spec.map(|s| s.model),
        tpp: basis.map(|b| b.tpp),
        tpp_basis: basis.map(|b| b.precision),
        performance_density: basis
            .zip(figures.die_area)
            .and_then(|(b, area)| performance_density(b.tpp, area)),
        die_area: figures.die_area,
        datacenter: figures.datacenter,
        dram_bandwidth: figures.dram_bandwidth,
        interconnect_bandwidth: figures.interconnect_bandwidth,
        h100_equivalents: basis.map(|b| h100_equivalents(b.tpp)),
        eccn,
        classifications,
        posture: rule_sets.iter().map(RuleSet::posture).collect(),
        destination: None,
        party: None,
        licence_need: Vec::new(),
        basis,
        titles: rule_sets.iter().map(|r| r.title.clone()).collect(),
    }
}

impl Report {
    /// Adds, per rule set, whether the classified item needs a licence to `destination` for
    /// `party` (the rule sets are those the report was made with, in the same order).
    pub fn with_licence_need(
        &mut self,
        rule_sets: &[RuleSet],
        destination: CountryCode,
        party: Party,
    ) {
        self.licence_need = rule_sets
            .iter()
            .zip(&self.classifications)
            .map(|(r, c)| licence_need(r, Some(&c.outcome), destination, &party))
            .collect();
        self.destination = Some(destination);
        self.party = Some(party);
    }
}

fn or_unknown<T: ToString>(value: Option<T>, unit: &str) -> String {
    value.map_or("unknown".to_owned(), |v| format!("{}{unit}", v.to_string()))
}

/// Human output: the figures, then one row per rule set.
fn write_report(report: &Report, out: &mut dyn Write) -> Result<(), Error> {
    match report.model {
        Some(model) => writeln!(out, "Figures of {model} (spec table)")?,
        None => writeln!(out, "Figures (as given)")?,
    }
    let tpp = match report.basis {
        Some(b) => format!(
            "{} ({} {} x {})",
            b.tpp,
            b.precision,
            b.tops,
            b.precision.bit_length()
        ),
        None => "unknown (no dense throughput figures)".to_owned(),
    };
    let density = match (report.performance_density, report.die_area) {
        (Some(pd), Some(area)) => format!("{pd} (applicable die area {area} mm²)"),
        _ => "unknown (die area unknown)".to_owned(),
    };
    let rows = [
        ("TPP", tpp),
        ("performance density", density),
        ("H100-equivalents", or_unknown(report.h100_equivalents, "")),
        (
            "datacenter",
            if report.datacenter { "yes" } else { "no" }.to_owned(),
        ),
        ("DRAM bandwidth", or_unknown(report.dram_bandwidth, " GB/s")),
        (
            "interconnect",
            or_unknown(report.interconnect_bandwidth, " GB/s"),
        ),
    ];
    for (name, value) in rows {
        writeln!(out, "  {name:<20} {value}")?;
    }
    writeln!(out)?;
    let header = ["RULE SET", "STATUS", "OUTCOME", "CLAUSE", "SENTENCE"];
    let table: Vec<[String; 5]> = report
        .classifications
        .iter()
        .map(|c| {
            // A rule set given as a file is outside text: every cell is escaped before the
            // widths are measured.
            [
                escape(&c.rule_set).into_owned(),
                c.rule_set_status.label().to_owned(),
                escape(&c.outcome).into_owned(),
                c.clause
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |clause| escape(clause).into_owned()),
                escape(&c.sentence).into_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(header))?;
    for row in &table {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    writeln!(out)?;
    write_licence_need(report, out)?;
    for (posture, title) in report.posture.iter().zip(&report.titles) {
        // The posture, not the bare status: a variant file is never shown as the shipped
        // rule set.
        writeln!(out, "{}: {}", Escaped(&posture.to_string()), Escaped(title))?;
    }
    Ok(())
}

/// With `--destination`: one line per rule set saying whether a licence is needed and why.
fn write_licence_need(report: &Report, out: &mut dyn Write) -> Result<(), Error> {
    let (Some(destination), Some(party)) = (report.destination, report.party) else {
        return Ok(());
    };
    writeln!(
        out,
        "Licence need: destination {destination}, party headquartered in {}, ultimate parent \
         in {}",
        party.headquarters, party.ultimate_parent
    )?;
    for (n, posture) in report.licence_need.iter().zip(&report.posture) {
        writeln!(
            out,
            "  {}: {}",
            Escaped(&posture.to_string()),
            Escaped(&n.sentence)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// `--list-models`: the spec table's models with their TPP.
fn list_models(json: bool, out: &mut dyn Write) -> Result<(), Error> {
    #[derive(Serialize)]
    struct Row {
        model: &'static str,
        vendor: &'static str,
        nvml_names: &'static [&'static str],
        tpp: Option<Tpp>,
        datacenter: bool,
    }
    let rows: Vec<Row> = spec_table()
        .iter()
        .map(|s| Row {
            model: s.model,
            vendor: s.vendor,
            nvml_names: s.nvml_names,
            tpp: tpp(&s.figures()).map(|b| b.tpp),
            datacenter: s.datacenter,
        })
        .collect();
    if json {
        serde_json::to_writer_pretty(&mut *out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    let width = rows.iter().map(|r| r.model.len()).max().unwrap_or(0);
    writeln!(
        out,
        "{:<width$}  {:<7}  {:>9}  DATACENTER",
        "MODEL", "VENDOR", "TPP"
    )?;
    for row in &rows {
        writeln!(
            out,
            "{:<width$}  {:<7}  {:>9}  {}",
            row.model,
            row.vendor,
            row.tpp.map_or("unknown".to_owned(), |t| t.to_string()),
            if row.datacenter { "yes" } else { "no" }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(model: Option<&str>) -> ClassifyArgs {
        ClassifyArgs {
            model: model.map(str::to_owned),
            list_models: false,
            tops: vec![],
            die_area: None,
            not_datacenter: false,
            dram_bandwidth: None,
            interconnect_bandwidth: None,
            rule_set: vec![],
            destination: None,
            headquarters: None,
            ultimate_parent: None,
            json: false,
        }
    }

    #[test]
    fn report_for_h100() {
        let (spec, figures) = figures(&args(Some("H100 SXM5 80GB"))).unwrap();
        let report = report(spec, &figures, &load_rule_sets(&[]).unwrap());
        assert_eq!(report.eccn.as_deref(), Some("3A090.a"));
        assert_eq!(report.h100_equivalents.unwrap().to_string(), "1.00");
        assert_eq!(report.classifications.len(), 4);
        let mut text = Vec::new();
        write_report(&report, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("15831.2 (FP8 1978.9 x 8)"), "{text}");
        assert!(text.contains("bill (not law)"), "{text}");
    }

    #[test]
    fn eccn_is_absent_without_the_eccn_rule_set() {
        let (spec, figures) = figures(&args(Some("H20"))).unwrap();
        let rule_sets = load_rule_sets(&["us-gain-ai-act-s3150".to_owned()]).unwrap();
        assert_eq!(report(spec, &figures, &rule_sets).eccn, None);
    }

    #[test]
    fn unknown_model_suggests_close_names() {
        let Err(Error::UnknownModel { suggestions, .. }) = figures(&args(Some("H100"))) else {
            panic!("H100 alone is not a model");
        };
        assert!(suggestions.contains(&"H100 SXM5 80GB"), "{suggestions:?}");
        assert!(suggestions.len() <= MAX_SUGGESTIONS);
    }

    #[test]
    fn duplicate_tops_is_an_error() {
        let mut a = args(None);
        a.tops = vec![
            (Precision::Fp8, "1".parse().unwrap()),
            (Precision::Fp8, "2".parse().unwrap()),
        ];
        assert!(matches!(
            figures(&a),
            Err(Error::DuplicateTops {
                precision: Precision::Fp8
            })
        ));
    }

    #[test]
    fn unknown_rule_set() {
        let e = load_rule_sets(&["nope".to_owned()]).unwrap_err();
        assert!(e.hint().unwrap().contains("us-eccn-3a090"));
    }

    #[test]
    fn list_models_prints_every_row() {
        let mut text = Vec::new();
        list_models(false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), spec_table().len() + 1);
        assert!(text.contains("H100 SXM5 80GB"));
    }
}
