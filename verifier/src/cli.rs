//! The command line of `tppguard-verifier` (clap derive): doc comments here are the `--help`
//! text.

use clap::{Args, Parser, Subcommand};
use tppguard_proto::tpp::Precision;
use tppguard_proto::units::{Bandwidth, DieArea, Tops};

/// Exit codes, shown at the end of `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  2  usage or input error (bad flag or value, unknown model, unreadable or invalid rule set)";

/// tppguard verifier: classifies accelerators under export-control rule sets and checks
/// tppguard evidence.
#[derive(Debug, Parser)]
#[command(name = "tppguard-verifier", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify one accelerator (TPP, performance density, H100-equivalents) under rule sets.
    ///
    /// Figures come from the spec table (--model) or from flags (--tops and the others).
    /// Each rule set's outcome is shown with its legal status (in force, bill, policy,
    /// historical), the clause that decided it and the figures compared. A figure a clause
    /// needs but that is unknown (no die area, no bandwidth) gives `indeterminate`, never a
    /// guess.
    #[command(after_help = EXIT_CODES)]
    Classify(ClassifyArgs),
}

/// Flags of `classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Take every figure from the spec table's row for this model (its model name, case
    /// insensitive, or its exact NVML name). See --list-models.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = [
            "tops",
            "die_area",
            "not_datacenter",
            "dram_bandwidth",
            "interconnect_bandwidth",
        ]
    )]
    pub model: Option<String>,

    /// Print the spec table's models with their TPP and exit.
    #[arg(long, conflicts_with_all = ["model", "tops", "rule_set"])]
    pub list_models: bool,

    /// Dense (not sparse) peak rate of one precision, in TOPS or TFLOPS; repeat for several.
    /// PRECISION is one of FP64 FP32 TF32 FP16 BF16 FP8 INT8 INT4 FP4 (any case). TPP is the
    /// maximum over precisions of rate x bit length.
    #[arg(long, value_name = "PRECISION=TOPS", value_parser = parse_tops)]
    pub tops: Vec<(Precision, Tops)>,

    /// Applicable die area in mm²: every non-planar logic die of the package, summed.
    /// Without it, performance density is unknown.
    #[arg(long, value_name = "MM2", value_parser = parse_die_area)]
    pub die_area: Option<DieArea>,

    /// The part is not designed or marketed for datacenters (default: it is).
    #[arg(long)]
    pub not_datacenter: bool,

    /// Peak DRAM/HBM bandwidth in GB/s (10^9 bytes/s).
    #[arg(long, value_name = "GBS", value_parser = parse_bandwidth)]
    pub dram_bandwidth: Option<Bandwidth>,

    /// Total bidirectional chip-to-chip bandwidth in GB/s (NVLink, Infinity Fabric).
    #[arg(long, value_name = "GBS", value_parser = parse_bandwidth)]
    pub interconnect_bandwidth: Option<Bandwidth>,

    /// A shipped rule set's id or the path of a rule-set TOML file (format: rules/README.md);
    /// repeat for several. Default: every shipped rule set.
    #[arg(long, value_name = "ID|FILE")]
    pub rule_set: Vec<String>,

    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Parses `PRECISION=TOPS` (`FP8=1978.9`).
fn parse_tops(text: &str) -> Result<(Precision, Tops), String> {
    let (precision, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not PRECISION=TOPS (for example FP8=1978.9)"))?;
    let precision: Precision = precision.trim().parse().map_err(|e| format!("{e}"))?;
    let tops = value
        .trim()
        .parse()
        .map_err(|e| format!("{precision} rate: {e}"))?;
    Ok((precision, tops))
}

fn parse_die_area(text: &str) -> Result<DieArea, String> {
    text.parse().map_err(|e| format!("die area in mm²: {e}"))
}

fn parse_bandwidth(text: &str) -> Result<Bandwidth, String> {
    text.parse().map_err(|e| format!("bandwidth in GB/s: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, error::ErrorKind};

    use super::*;

    fn classify(args: &[&str]) -> Result<ClassifyArgs, clap::Error> {
        let argv = ["tppguard-verifier", "classify"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Classify(args) => args,
        })
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tops_is_repeatable_and_exact() {
        let args = classify(&["--tops", "fp8=1978.9", "--tops", "FP16=989.4"]).unwrap();
        assert_eq!(
            args.tops,
            [
                (Precision::Fp8, "1978.9".parse().unwrap()),
                (Precision::Fp16, "989.4".parse().unwrap())
            ]
        );
    }

    #[test]
    fn tops_rejects_bad_values() {
        for bad in ["FP8", "FP7=1", "FP8=-1", "FP8=1e3", "FP8=0.00001"] {
            let e = classify(&["--tops", bad]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
        }
        let e = classify(&["--tops", "FP7=1"]).unwrap_err().to_string();
        assert!(e.contains("unknown precision \"FP7\""), "{e}");
    }

    #[test]
    fn die_area_and_bandwidths() {
        let args = classify(&[
            "--die-area",
            "814",
            "--dram-bandwidth",
            "3350",
            "--interconnect-bandwidth",
            "900",
            "--not-datacenter",
        ])
        .unwrap();
        assert_eq!(args.die_area, Some("814".parse().unwrap()));
        assert_eq!(args.dram_bandwidth, Some("3350".parse().unwrap()));
        assert_eq!(args.interconnect_bandwidth, Some("900".parse().unwrap()));
        assert!(args.not_datacenter);
        assert!(classify(&["--die-area", "0"]).is_err());
        assert!(classify(&["--dram-bandwidth", "fast"]).is_err());
    }

    #[test]
    fn model_conflicts_with_raw_figures() {
        let e = classify(&["--model", "H100 SXM5 80GB", "--tops", "FP8=1"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = classify(&["--model", "H20", "--not-datacenter"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn rule_set_and_json() {
        let args = classify(&[
            "--rule-set",
            "us-eccn-3a090",
            "--rule-set",
            "x.toml",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.rule_set, ["us-eccn-3a090", "x.toml"]);
        assert!(args.json);
        assert!(classify(&["--list-models"]).unwrap().list_models);
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
    }
}
