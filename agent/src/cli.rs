//! The command line of `tppguard-agent`. Doc comments here are the `--help` text.
#![allow(
    rustdoc::invalid_html_tags,
    reason = "these doc comments are --help text, where <placeholders> are the convention"
)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::identity::KeyType;

/// tppguard node agent: inventories this node's GPUs through NVML, classifies each one under
/// the export rules (TPP, performance density, ECCN 3A090, GAIN AI Act coverage) and signs
/// what it found for a verifier (`attest`).
///
/// With no NVIDIA driver installed, `--simulate` runs the same NVML code path against a bundled
/// simulated driver (a DGX H100 node by default), and says so in everything it prints.
#[derive(Debug, Parser)]
#[command(name = "tppguard-agent", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// Log filter for diagnostics on stderr (overrides RUST_LOG), e.g. "debug" or
    /// "tppguard_agent=trace".
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The exit codes, shown at the end of `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  inventory taken
  1  inventory taken, but a GPU is lost or could not be read
  2  the command could not run (bad arguments, unreadable fixture, I/O error)
  3  no NVIDIA driver is installed (use --simulate to try tppguard without one)
  4  the NVIDIA driver is installed but NVML could not start (module not loaded, no
     permission, driver version mismatch)";

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inventory and classify this node's GPUs.
    ///
    /// Reads every GPU through NVML (identity, PCI ids, memory, clocks, power limit, VBIOS,
    /// MIG, confidential computing) and the host through the OS, matches each GPU to the
    /// accelerator spec table, and classifies it under the shipped rule sets. A fact NVML
    /// cannot give is shown as absent with its reason, never guessed.
    #[command(after_long_help = EXIT_CODES)]
    Inventory(InventoryArgs),

    /// Sign this node's inventory as an attestation for a verifier.
    ///
    /// Takes the same inventory as `inventory`, puts it in an attestation claim set (EAT
    /// profile tag:tppguard.dev,2026:attestation/v1; one submod per GPU with its latest
    /// measurement from NODE/measurements.json (`measure --dir`) and, with confidential
    /// computing on, its own signed report and certificate chain (`gpu_evidence`, for a nonce
    /// derived from the challenge, the node key and the GPU index); evidence tier `hardware`
    /// when every readable GPU carries evidence, else `measured` when every GPU has a
    /// measurement consistent with its spec, else `declared`) with the verifier's
    /// --nonce, and signs it as a compact JWS with the node
    /// key (NODE/node.key), carrying the node's certificate chain (NODE/node-chain.pem, from
    /// `tppguard-verifier pki issue-node`) in the `x5c` header. See docs/attestation.md.
    #[command(after_long_help = ATTEST_EXIT_CODES)]
    Attest(AttestArgs),

    /// Ask each GPU for its hardware evidence, whatever the CC state, and say what NVML answers.
    ///
    /// A diagnosis, nothing is signed: shows the node's confidential-computing settings and,
    /// per GPU, what nvmlDeviceGetConfComputeGpuCertificate and
    /// nvmlDeviceGetConfComputeGpuAttestationReport answer (bytes, or NVML's error), each call
    /// with the timeout and retries `attest` uses. With --out-dir, the report (hex) and the
    /// chain (PEM) of each GPU that answered are written as NVIDIA's tools write them, for
    /// `tppguard-verifier gpu-evidence verify`. See docs/gpu-evidence.md.
    #[command(after_long_help = GPU_EVIDENCE_EXIT_CODES)]
    GpuEvidence(GpuEvidenceArgs),

    /// Measure each GPU's dense GEMM throughput, per precision, and compare it with the spec.
    ///
    /// Runs square GEMMs (8192 per side by default, less when memory is short) back to back
    /// with no synchronisation between them, timed with CUDA events after a warm-up, and
    /// reports the median and spread of the repeats in TOPS (TFLOPS for floating point), the
    /// ratio to the spec table's dense figure, and the TPP the measurement implies. SM clock,
    /// temperature, power and throttle reasons are read through NVML during the run.
    ///
    /// A GPU running other compute processes is refused (a measurement would disturb them
    /// and be disturbed by them) unless --force. With --dir NODE the results are cached in
    /// NODE/measurements.json, and `attest --dir NODE` puts each GPU's latest measurement in
    /// the attestation (evidence tier `measured` when every GPU has a consistent one).
    ///
    /// The CUDA driver and cuBLAS are loaded at run time: the agent runs on machines without
    /// CUDA, and says so. With --simulate the GEMMs are simulated from the fixture's figures
    /// (deterministic), through the same timing and statistics code.
    #[command(after_long_help = MEASURE_EXIT_CODES)]
    Measure(MeasureArgs),

    /// The quick start: inventory this node with its real driver, or, when no NVIDIA driver
    /// is installed, the bundled simulated DGX H100 node (8x H100 SXM5 80GB), saying so.
    #[command(after_long_help = EXIT_CODES)]
    Demo(OutputArgs),

    /// Create this node's signing key (NODE/node.key, mode 0600) and a certificate signing
    /// request for it (NODE/node.csr).
    ///
    /// The CSR's subject is CN=<host name>-<first 12 hex digits of the node id> (or --name).
    /// When the OS keeps a machine id, the CSR also names it as the subject alternative name
    /// urn:tppguard:node:<machine-id>, a hint for whoever reviews the request: `pki
    /// issue-node` does not copy it into the certificate, and the verifier knows a node by its
    /// key. Any CA can sign the CSR; with tppguard's built-in PKI run `tppguard-verifier pki
    /// issue-node --site ID`. An existing key is never replaced without --force. Exits 0 when
    /// written, 2 on error.
    Init(InitArgs),

    /// Attest to a verifier over HTTP, once: fetch a challenge (POST /v1/challenge), sign
    /// this node's inventory over its nonce as `attest` does, post the token (POST
    /// /v1/attestations) and print the verifier's status and this node's findings.
    #[command(after_long_help = PUSH_EXIT_CODES)]
    Push(PushArgs),

    /// Run as a service: push on a schedule from a configuration file (see docs/agent-run.md),
    /// backing off while the verifier is unreachable, and re-measure the GPUs on a schedule
    /// of their own (as `measure --dir`), until SIGTERM or SIGINT (exit 0).
    /// Logs to stderr at `info` unless --log or RUST_LOG say otherwise.
    Run(RunArgs),

    /// Show, and apply, gating on this node: the lease held, the state, and each GPU's gate
    /// and compute mode.
    ///
    /// Evaluates once what `run` evaluates on every wake-up ([gating] in its configuration;
    /// see docs/agent-run.md, "Gating"): the lease held in NODE/lease.jws (and with --lease,
    /// a new one, verified under the verifier's result key for this node first: a forged,
    /// expired, older or other node's lease is refused with its code and changes nothing),
    /// the state (no_lease_yet, leased, grace, lapsed_fail_closed, lapsed_fail_open), and per
    /// GPU whether it is gated. In enforce mode a gated GPU is set to compute mode PROHIBITED
    /// and an allowed one restored, each read back; in observe mode nothing changes. Writes
    /// NODE/gate-report.json, which the next attestation carries (tppguard.gating).
    ///
    /// Either --config agent.toml (run's file: dir, NVML source, verifier_result_key and
    /// [gating]) or --dir NODE with --mode and the other flags.
    #[command(after_long_help = GATE_EXIT_CODES)]
    Gate(GateArgs),
}

/// The exit codes of `push`, shown at the end of its `--help`.
pub const PUSH_EXIT_CODES: &str = "\
Exit codes:
  0  the verifier affirms or warns
  1  the verifier found this node contraindicated (a violation), or could make no claim
  2  the command could not run (bad arguments, node key or chain missing, bad --ca, I/O)
  3  no NVIDIA driver is installed (use --simulate to try tppguard without one)
  4  the NVIDIA driver is installed but NVML could not start
  6  the verifier could not be reached, answered an error (its sentence is printed) or a
     redirect (never followed)
  7  the verifier's answer is not trusted: its EAR does not verify under
     --verifier-result-key, or it is about another token, node, challenge or status";

/// Arguments of `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The verifier's base URL, e.g. https://verifier.example:8443 or http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub verifier: String,

    /// The node folder: node.key, node-chain.pem and measurements.json, as for `attest`.
    #[arg(long, value_name = "NODE")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub source: SourceArgs,

    /// The site this node is installed at (the `tppguard.site` claim).
    #[arg(long, value_name = "ID")]
    pub site: Option<String>,

    /// PEM file of the CA certificate(s) to trust for an https:// verifier (default: the
    /// Mozilla root store).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Write the verifier's EAR (a signed JWT) to this file.
    #[arg(long, value_name = "FILE")]
    pub ear: Option<PathBuf>,

    /// The verifier's result public key (verifier-result.pub.pem from its folder): the
    /// verdict is believed only when its EAR verifies under this key and appraises the token
    /// sent (exit 7 otherwise). Without it the verdict is unverified, with a warning.
    #[arg(long, value_name = "PEM")]
    pub verifier_result_key: Option<PathBuf>,

    /// A file holding the bearer token the verifier issued this node (`tppguard-verifier
    /// token issue --role node`), sent as `Authorization: Bearer` on every request; never
    /// printed. Over https:// the node certificate (NODE/node-chain.pem, NODE/node.key) is
    /// also presented as a TLS client certificate.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Print the verifier's answer as JSON (status, ear, node, findings).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (TOML; see deploy/agent.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// The exit codes of `gate`, shown at the end of its `--help`.
pub const GATE_EXIT_CODES: &str = "\
Exit codes:
  0  evaluated: every gate holds (and --lease, if given, was accepted)
  1  evaluated, but the --lease given was refused (its code is printed) or a gate did not
     hold (the compute mode read back is not what the lease asks; the next attestation
     reports it)
  2  the command could not run (bad arguments or configuration, node folder, result key)
  3  no NVIDIA driver is installed (use --simulate to try tppguard without one)
  4  the NVIDIA driver is installed but NVML could not start

Examples:
  tppguard-agent gate --config /etc/tppguard/agent.toml
  tppguard-agent gate --config /etc/tppguard/agent.toml --lease lease.jws --json
  tppguard-agent gate --dir node --mode observe --verifier-result-key verifier-result.pub.pem --simulate";

/// Arguments of `gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// run's configuration file: its dir, simulate/nvml_lib, verifier_result_key and
    /// [gating] (which must be there).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["dir", "mode", "verifier_result_key", "without_lease", "first_lease_grace_s", "simulate", "nvml_lib"]
    )]
    pub config: Option<PathBuf>,

    /// The node folder (node.key, node-chain.pem; lease.jws, gate-state.json and
    /// gate-report.json are kept here).
    #[arg(long, value_name = "NODE", required_unless_present = "config")]
    pub dir: Option<PathBuf>,

    /// observe: change nothing, say what would be gated; enforce: set compute modes.
    #[arg(long, value_name = "MODE", value_parser = ["observe", "enforce"], default_value = "observe")]
    pub mode: String,

    /// The verifier's result public key (verifier-result.pub.pem): leases verify under it.
    /// Required in enforce mode.
    #[arg(long, value_name = "FILE")]
    pub verifier_result_key: Option<PathBuf>,

    /// What applies when no lease was ever received and the first-lease grace is over.
    #[arg(long, value_name = "WHAT", value_parser = ["fail_open", "fail_closed"], default_value = "fail_open")]
    pub without_lease: String,

    /// Seconds after the first start during which, with no lease yet, nothing is gated.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::gate::DEFAULT_FIRST_LEASE_GRACE_S)]
    pub first_lease_grace_s: u64,

    #[command(flatten)]
    pub source: SourceArgs,

    /// A lease (compact JWS file) to verify and, if it verifies, hold and act on.
    #[arg(long, value_name = "FILE")]
    pub lease: Option<PathBuf>,

    /// Dry run: evaluate as at this Unix time instead of the clock (what happens at expiry,
    /// in grace, after the lapse). Nothing is set through NVML, no file is written (neither
    /// the lease, the state nor the report) and no Kubernetes node is marked.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub at: Option<i64>,

    /// Print the report as JSON ({"report": GatingReport, "lease_refused": {code,
    /// sentence}, "next_change": UNIX_SECONDS}).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The node folder (created if missing): receives node.key and node.csr.
    #[arg(long, value_name = "NODE")]
    pub dir: PathBuf,

    /// The key algorithm.
    #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
    pub key_type: KeyType,

    /// The node's name, the CSR's subject common name (default: <host name>-<first 12 hex
    /// digits of the node id>, so cloned hosts never share a subject).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Replace an existing node key (its certificate must then be issued again).
    #[arg(long)]
    pub force: bool,

    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `measure`.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Measure only the GPU at this NVML index (repeat for several). Default: every GPU.
    #[arg(long = "gpu", value_name = "N")]
    pub gpus: Vec<u32>,

    /// Measure only this precision (repeat for several): FP8, INT8, FP16, BF16, TF32, FP64.
    /// Default: all of them that the GPU supports.
    #[arg(long = "precision", value_name = "P")]
    pub precisions: Vec<tppguard_proto::tpp::Precision>,

    /// Measure a GPU even when other compute processes are running on it.
    #[arg(long)]
    pub force: bool,

    /// Node folder (from `init`): cache the results in NODE/measurements.json for `attest`.
    #[arg(long, value_name = "NODE")]
    pub dir: Option<PathBuf>,

    /// Side of the square matrices.
    #[arg(long, value_name = "N", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(256..=65536))]
    pub matrix_size: u32,

    /// Timed repeats per precision (the median and spread are over these).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeats: u32,

    /// A folder holding the CUDA libraries (libcublas, libcublasLt) when the loader does not
    /// find them, e.g. PyTorch's `site-packages/nvidia/cublas/lib`.
    #[arg(long, value_name = "DIR")]
    pub cuda_lib_dir: Option<PathBuf>,

    /// Print the results as JSON (schema "tppguard-measure/v1").
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub source: SourceArgs,
}

/// The exit codes of `measure`, shown at the end of its `--help`.
pub const MEASURE_EXIT_CODES: &str = "\
Exit codes:
  0  every GPU asked for was measured
  1  a GPU could not be measured (busy without --force, lost, or a CUDA error)
  2  the command could not run (bad arguments, I/O error)
  3  no NVIDIA driver is installed (use --simulate to try tppguard without one)
  4  the NVIDIA driver is installed but NVML could not start
  5  no CUDA driver or cuBLAS library could be loaded";

/// Output format.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the inventory as JSON (schema "tppguard-inventory/v1", see docs/inventory.md).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub source: SourceArgs,
}

/// Where the GPUs are read from (`inventory`, `attest`).
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Use the bundled simulated driver instead of a real one. FIXTURE is a bundled fixture
    /// name (default: dgx-h100), a path to a fixture .json file, or "list" to list the
    /// bundled fixtures.
    #[arg(
        long,
        value_name = "FIXTURE",
        num_args = 0..=1,
        default_missing_value = crate::simulate::DEFAULT_FIXTURE,
        conflicts_with = "nvml_lib"
    )]
    pub simulate: Option<String>,

    /// Load NVML from this library file instead of the installed driver's
    /// (libnvidia-ml.so.1, then libnvidia-ml.so).
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<PathBuf>,
}

/// The exit codes of `attest`, shown at the end of its `--help`.
pub const ATTEST_EXIT_CODES: &str = "\
Exit codes:
  0  attestation signed and written
  1  attestation signed and written, but a GPU is lost or could not be read (it is in the
     attestation with its status)
  2  the command could not run (bad --nonce or --site, node key or certificate chain missing
     or unusable, I/O error)
  3  no NVIDIA driver is installed (use --simulate to try tppguard without one)
  4  the NVIDIA driver is installed but NVML could not start";

/// Arguments of `attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The node folder: holds node.key (from `init`) and node-chain.pem (from
    /// `tppguard-verifier pki issue-node`).
    #[arg(long, value_name = "NODE")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub source: SourceArgs,

    /// The verifier's challenge: lower-case hex of 32 to 37 bytes (64 to 74 characters),
    /// copied into the `eat_nonce` claim.
    #[arg(long, value_name = "HEX")]
    pub nonce: String,

    /// The site this node is installed at, as named in the licences (the `tppguard.site`
    /// claim).
    #[arg(long, value_name = "ID")]
    pub site: Option<String>,

    /// Where to write the compact JWS (default: NODE/attestation.jws).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print a summary of what was signed as JSON.
    #[arg(long)]
    pub json: bool,

    /// How long each NVML confidential-computing call (a GPU's certificate chain or signed
    /// report) is waited for before it is tried again (3 attempts in all), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub nvml_call_timeout_ms: u64,
}

/// The exit codes of `gpu-evidence`, shown at the end of its `--help`.
pub const GPU_EVIDENCE_EXIT_CODES: &str = "\
Exit codes:
  0  every readable GPU gave its certificate chain and a report
  1  a GPU gave no evidence (the output says what NVML answered), or there is no GPU
  2  the command could not run
  3  no NVIDIA driver found
  4  the driver is installed but NVML could not start";

/// `gpu-evidence`'s arguments.
#[derive(Debug, Args)]
pub struct GpuEvidenceArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// The nonce given to every GPU: 64 hex digits (32 bytes). Default: random.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,

    /// Write each GPU's report (gpuN-report.hex) and chain (gpuN-chain.pem) into this folder.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// How long each call is waited for before it is tried again (3 attempts), in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub nvml_call_timeout_ms: u64,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn simulate_without_a_name_uses_the_default_fixture() {
        let cli = Cli::try_parse_from(["tppguard-agent", "inventory", "--simulate"]).unwrap();
        let Command::Inventory(args) = cli.command else {
            panic!("not inventory")
        };
        assert_eq!(args.source.simulate.as_deref(), Some("dgx-h100"));
    }

    #[test]
    fn simulate_and_nvml_lib_conflict() {
        let err = Cli::try_parse_from([
            "tppguard-agent",
            "inventory",
            "--simulate",
            "dgx-h100",
            "--nvml-lib",
            "/x.so",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn init_flags_and_defaults() {
        let cli = Cli::try_parse_from(["tppguard-agent", "init", "--dir", "n"]).unwrap();
        let Command::Init(args) = cli.command else {
            panic!("not init")
        };
        assert_eq!(args.key_type, KeyType::Ed25519);
        assert!(!args.force && !args.json && args.name.is_none());
        let cli = Cli::try_parse_from([
            "tppguard-agent",
            "init",
            "--dir",
            "n",
            "--key-type",
            "p256",
            "--name",
            "gpu-1",
            "--force",
            "--json",
        ])
        .unwrap();
        let Command::Init(args) = cli.command else {
            panic!("not init")
        };
        assert_eq!(args.key_type, KeyType::P256);
        assert_eq!(args.name.as_deref(), Some("gpu-1"));
        assert!(args.force && args.json);
        assert!(Cli::try_parse_from(["tppguard-agent", "init", "--key-type", "rsa"]).is_err());
        assert!(
            Cli::try_parse_from(["tppguard-agent", "init"]).is_err(),
            "--dir required"
        );
    }

    #[test]
    fn attest_flags_and_defaults() {
        let nonce = "ab".repeat(32);
        let cli = Cli::try_parse_from([
            "tppguard-agent",
            "attest",
            "--dir",
            "n",
            "--simulate",
            "--nonce",
            &nonce,
        ])
        .unwrap();
        let Command::Attest(args) = cli.command else {
            panic!("not attest")
        };
        assert_eq!(args.dir, PathBuf::from("n"));
        assert_eq!(args.source.simulate.as_deref(), Some("dgx-h100"));
        assert_eq!(args.nonce, nonce);
        assert!(args.site.is_none() && args.out.is_none() && !args.json);
        let cli = Cli::try_parse_from([
            "tppguard-agent",
            "attest",
            "--dir",
            "n",
            "--nvml-lib",
            "/x.so",
            "--nonce",
            &nonce,
            "--site",
            "fra-1",
            "--out",
            "a.jws",
            "--json",
        ])
        .unwrap();
        let Command::Attest(args) = cli.command else {
            panic!("not attest")
        };
        assert_eq!(args.source.nvml_lib, Some(PathBuf::from("/x.so")));
        assert_eq!(args.site.as_deref(), Some("fra-1"));
        assert_eq!(args.out, Some(PathBuf::from("a.jws")));
        assert!(args.json);
        for missing in [
            vec!["tppguard-agent", "attest", "--dir", "n"],
            vec!["tppguard-agent", "attest", "--nonce", &nonce],
        ] {
            assert!(Cli::try_parse_from(missing).is_err());
        }
    }

    #[test]
    fn push_and_run_flags() {
        let cli = Cli::try_parse_from([
            "tppguard-agent",
            "push",
            "--verifier",
            "http://127.0.0.1:8080",
            "--dir",
            "n",
            "--simulate",
            "--site",
            "fra-1",
            "--ca",
            "ca.pem",
            "--ear",
            "ear.jwt",
            "--verifier-result-key",
            "r.pem",
            "--token-file",
            "t",
            "--json",
        ])
        .unwrap();
        let Command::Push(args) = cli.command else {
            panic!("not push")
        };
        assert_eq!(args.verifier, "http://127.0.0.1:8080");
        assert_eq!(args.source.simulate.as_deref(), Some("dgx-h100"));
        assert_eq!(args.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(args.ear, Some(PathBuf::from("ear.jwt")));
        assert_eq!(args.verifier_result_key, Some(PathBuf::from("r.pem")));
        assert_eq!(args.token_file, Some(PathBuf::from("t")));
        assert!(args.json && args.site.is_some());
        assert!(Cli::try_parse_from(["tppguard-agent", "push", "--dir", "n"]).is_err());
        let cli = Cli::try_parse_from(["tppguard-agent", "run", "--config", "agent.toml"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.config, PathBuf::from("agent.toml"));
        assert!(Cli::try_parse_from(["tppguard-agent", "run"]).is_err());
    }

    #[test]
    fn json_flag_parses_on_demo() {
        let cli = Cli::try_parse_from(["tppguard-agent", "demo", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Demo(OutputArgs { json: true })
        ));
    }
}
