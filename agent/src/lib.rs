//! The tppguard node agent.
//!
//! Reads this node's GPUs through NVML ([`inventory`]) and its host through the OS ([`host`]),
//! classifies each GPU with `tppguard-proto` ([`report`]), and prints the result or signs it
//! as an attestation for a verifier ([`sign`]). The binary (`main.rs`) only parses the command
//! line and calls [`run`].
//!
//! `unsafe` is denied crate-wide. The exceptions are the two FFI corners, each a private module
//! of safe functions with a `SAFETY` comment per call: [`nvml::raw`] (the NVML calls
//! nvml-wrapper does not wrap or wraps unsafely for a hostile driver) and `measure::cuda::ffi` (cudarc's cuBLAS, cuBLASLt and driver
//! calls, which cudarc declares `unsafe`).
#![deny(unsafe_code)]

pub mod bearer;
pub mod cli;
pub mod ear;
pub mod gate;
pub mod gpu_evidence;
pub mod host;
pub mod identity;
pub mod inventory;
pub mod kube;
pub mod measure;
pub mod nvml;
pub mod push;
pub mod report;
pub mod run;
pub mod sign;
pub mod simulate;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{
    AttestArgs, Cli, Command, InitArgs, InventoryArgs, MeasureArgs, OutputArgs, SourceArgs,
};
use crate::nvml::{LibrarySource, OpenError, Session};
use crate::report::Report;
use crate::simulate::SimulatedDriver;
use tppguard_proto::text::Escaped;

/// Exit code: inventory taken.
pub const EXIT_OK: u8 = 0;
/// Exit code: inventory taken, but a GPU is lost or unreadable.
pub const EXIT_DEGRADED: u8 = 1;
/// Exit code: the command could not run.
pub const EXIT_ERROR: u8 = 2;
/// Exit code: no NVIDIA driver installed.
pub const EXIT_NO_DRIVER: u8 = 3;
/// Exit code: the driver is installed but NVML could not start.
pub const EXIT_DRIVER_UNUSABLE: u8 = 4;
/// Exit code (`measure`): no CUDA driver or cuBLAS library could be loaded.
pub const EXIT_NO_CUDA: u8 = 5;
/// Exit code (`push`): the verifier could not be reached, or answered an error or a redirect.
pub const EXIT_VERIFIER: u8 = 6;
/// Exit code (`push`): the verifier's answer is not trusted (its EAR does not verify under
/// the pinned result key, or it is about another token, node, challenge or status).
pub const EXIT_UNTRUSTED: u8 = 7;

/// Sets up `tracing` on stderr: the `--log` filter, else `RUST_LOG`, else warnings only.
pub fn init_logging(filter: Option<&str>) {
    init_logging_with_default(filter, "warn");
}

/// [`init_logging`] with `default` as the filter when neither `--log` nor `RUST_LOG` says
/// (`run` logs at `info`). No time stamps (journald adds them) and no colours unless stderr
/// is a terminal.
pub fn init_logging_with_default(filter: Option<&str>, default: &str) {
    let filter = filter
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

/// The exit code for an error that ended the command.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<OpenError>() {
        Some(OpenError::NoDriver { .. }) => EXIT_NO_DRIVER,
        Some(_) => EXIT_DRIVER_UNUSABLE,
        None if err.is::<inventory::CountError>() => EXIT_DRIVER_UNUSABLE,
        None if matches!(
            err.downcast_ref::<push::PushError>(),
            Some(push::PushError::Untrusted { .. })
        ) =>
        {
            EXIT_UNTRUSTED
        }
        None if err.is::<push::PushError>() => EXIT_VERIFIER,
        None if matches!(
            err.downcast_ref::<measure::BenchError>(),
            Some(measure::BenchError::NoCudaDriver | measure::BenchError::MissingLibrary { .. })
        ) =>
        {
            EXIT_NO_CUDA
        }
        None => EXIT_ERROR,
    }
}

/// The text of an error that ended the command, for stderr. Errors quote outside text
/// (paths, NVML's and the verifier's words): each line is escaped so none of it can steer the
/// terminal, and the agent's own line breaks (a hint on its own line) stay. A verifier error
/// ([`push::PushError`]) has no line break of the agent's: it is escaped whole, so a verifier
/// cannot start a line of its own.
pub fn error_text(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    if err.is::<push::PushError>() {
        return tppguard_proto::text::escape(&text).into_owned();
    }
    let lines: Vec<_> = text.lines().map(tppguard_proto::text::escape).collect();
    lines.join("\n")
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inventory(args) => inventory_command(&args),
        Command::Demo(output) => demo_command(&output),
        Command::Init(args) => init_command(&args),
        Command::Attest(args) => attest_command(&args),
        Command::GpuEvidence(args) => gpu_evidence_command(&args),
        Command::Measure(args) => measure_command(&args),
        Command::Push(args) => push::push_command(&args),
        Command::Run(args) => run::run_command(&args),
        Command::Gate(args) => gate::command::gate_command(&args),
    }
}

fn measure_command(args: &MeasureArgs) -> anyhow::Result<ExitCode> {
    use measure::report::MeasureReport;
    use measure::{Params, run};

    let mut precisions: Vec<_> = if args.precisions.is_empty() {
        measure::DEFAULT_PRECISIONS.to_vec()
    } else {
        args.precisions.clone()
    };
    let mut seen = std::collections::BTreeSet::new();
    precisions.retain(|p| seen.insert(*p));
    let params = Params {
        matrix_size: args.matrix_size,
        repeats: args.repeats,
        ..Params::default()
    };
    let mut cache = match &args.dir {
        Some(dir) => Some(run::Cache::load(dir)?),
        None => None,
    };

    let session = open_session(&args.source)?;
    let fixture = simulated_fixture(&session)?;
    let gpus = inventory::collect(&session.nvml)?.gpus;
    if let Some(missing) = args
        .gpus
        .iter()
        .find(|i| !gpus.iter().any(|g| g.index == **i))
    {
        anyhow::bail!(
            "--gpu {missing}: this node has no GPU at NVML index {missing} (it has {}); \
             `tppguard-agent inventory` lists them",
            gpus.len()
        );
    }
    let chosen: Vec<_> = gpus
        .iter()
        .filter(|g| args.gpus.is_empty() || args.gpus.contains(&g.index))
        .collect();

    let plan = MeasurePlan {
        precisions: &precisions,
        params,
        force: args.force,
        fixture_json: fixture.as_ref().map(|(_, json)| json.as_str()),
        cuda_lib_dir: args.cuda_lib_dir.as_deref(),
        simulated_node: session.simulated,
    };
    let interactive = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut outcomes = Vec::with_capacity(chosen.len());
    for gpu in chosen {
        // Created at the first step, so a GPU refused as busy shows no bar.
        let mut bar = None;
        let mut on_step = |precision: tppguard_proto::tpp::Precision, step: measure::Step| {
            if !interactive {
                return;
            }
            let bar = bar.get_or_insert_with(|| progress_bar(gpu.index, precisions.len()));
            match step {
                measure::Step::Calibrating { gemms } => {
                    bar.set_message(format!("{precision}: warming up ({gemms} GEMMs)"));
                }
                measure::Step::Repeat { done, of, tops } => {
                    bar.set_message(format!("{precision}: repeat {done}/{of}, {tops:.1} TOPS"));
                    if done == of {
                        bar.inc(1);
                    }
                }
            }
        };
        let outcome = measure_one(&session.nvml, gpu, &plan, &mut on_step)?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if let (Some(cache), Some(m)) = (cache.as_mut(), &outcome.measurement) {
            cache.insert(gpu.uuid.clone().unwrap_or_default(), m.clone());
        }
        outcomes.push(outcome);
    }

    let cached_in = match (&args.dir, &cache) {
        (Some(dir), Some(cache)) => Some(cache.save(dir)?.display().to_string()),
        _ => None,
    };
    let report = MeasureReport {
        schema: measure::report::SCHEMA,
        simulated_fixture: fixture.map(|(name, _)| name),
        cached_in,
        gpus: outcomes,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        report.render(&mut out)?;
    }
    Ok(ExitCode::from(if report.complete() {
        EXIT_OK
    } else {
        EXIT_DEGRADED
    }))
}

/// A simulated session's fixture: its name and JSON (the benchmark figures the simulated
/// backend runs at); `None` for a real driver.
pub(crate) fn simulated_fixture(session: &Session) -> anyhow::Result<Option<(String, String)>> {
    match &session.source {
        LibrarySource::Simulated(driver) => Ok(Some((
            driver.fixture.clone(),
            std::fs::read_to_string(driver.fixture_json())
                .context("reading the simulated driver's fixture")?,
        ))),
        _ => Ok(None),
    }
}

/// How `measure` and `run` measure a GPU: what to run, and on which backend.
pub(crate) struct MeasurePlan<'a> {
    /// The precisions, in order.
    pub precisions: &'a [tppguard_proto::tpp::Precision],
    /// Matrix size, repeats, batch length.
    pub params: measure::Params,
    /// Measure a GPU even when other compute processes run on it (`--force`).
    pub force: bool,
    /// A simulated node's fixture (JSON), whose benchmark figures replace CUDA.
    pub fixture_json: Option<&'a str>,
    /// Where cuBLAS is when the loader does not find it (`--cuda-lib-dir`).
    pub cuda_lib_dir: Option<&'a std::path::Path>,
    /// The GPUs come from tppguard's fake NVML ([`Session::simulated`]): whatever backend
    /// runs, the measurement is of no real GPU and is recorded as `simulated`.
    pub simulated_node: bool,
}

/// Measures `gpu` as `measure` and `run` both do: refused as `busy` while other compute
/// processes run on it (unless `plan.force`), else timed on the fixture's or the CUDA backend.
/// What concerns this GPU alone is in the outcome (`busy`, `failed`); an `Err` is the node's
/// (no CUDA driver, an unreadable fixture) and would fail every GPU alike.
pub(crate) fn measure_one(
    nvml: &nvml_wrapper::Nvml,
    gpu: &inventory::Gpu,
    plan: &MeasurePlan<'_>,
    progress: &mut dyn FnMut(tppguard_proto::tpp::Precision, measure::Step),
) -> anyhow::Result<measure::report::GpuOutcome> {
    let mut outcome = measure::report::GpuOutcome::new(gpu);
    let device = match nvml.device_by_index(gpu.index) {
        Ok(d) => d,
        Err(e) => {
            outcome.error = Some(format!("NVML gives no handle for it: {e}"));
            return Ok(outcome);
        }
    };
    match measure::run::compute_processes(&device) {
        Ok(pids) if !pids.is_empty() => {
            outcome.compute_processes = pids;
            if !plan.force {
                outcome.status = "busy";
                return Ok(outcome);
            }
            tracing::warn!(gpu = gpu.index, "measuring a busy GPU (--force)");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            gpu = gpu.index,
            error = %e,
            "NVML cannot list this GPU's compute processes; measuring anyway"
        ),
    }
    let uuid = gpu.uuid.as_deref().unwrap_or_default();
    let mut bench: Box<dyn measure::Benchmark> = match plan.fixture_json {
        Some(json) => Box::new(
            measure::simulated::SimulatedBenchmark::from_fixture(json, uuid)
                .context("reading the fixture's benchmark figures")?,
        ),
        None => {
            let bus_id = gpu.pci.as_ref().map(|p| p.bus_id.as_str()).unwrap_or("");
            // No CUDA at all is the node's state, not this GPU's: stop with its exit code.
            Box::new(measure::cuda::CudaBenchmark::open(
                bus_id,
                plan.cuda_lib_dir,
            )?)
        }
    };
    match measure::run::measure_gpu(
        bench.as_mut(),
        &device,
        plan.precisions,
        &plan.params,
        progress,
    ) {
        Ok((mut measurement, skipped)) => {
            if plan.simulated_node {
                measurement.method =
                    tppguard_proto::claims::measurement::MeasurementMethod::Simulated;
            }
            outcome.measured(measurement, skipped)
        }
        Err(e) => outcome.error = Some(e.to_string()),
    }
    Ok(outcome)
}

/// A progress bar on stderr for one GPU's precisions.
fn progress_bar(gpu: u32, precisions: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(u64::try_from(precisions).unwrap_or(u64::MAX));
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("GPU {prefix} [{bar:20}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(gpu.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn init_command(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let host = host::Host::read();
    let name = match (args.name.as_deref(), host.hostname.as_deref()) {
        (Some(given), _) => Some(identity::NodeName::Given(given)),
        (None, Some(host)) => Some(identity::NodeName::Host(host)),
        (None, None) => None,
    };
    let result = match name {
        Some(name) => identity::init_named(
            &args.dir,
            args.key_type,
            name,
            host.machine_id.as_deref(),
            args.force,
        ),
        None => Err(identity::IdentityError::NoName),
    };
    // The hint goes on its own line after the causes, so the message is rendered here.
    let report = result.map_err(|e| anyhow::anyhow!(e.render()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} node key: {} (mode 0600, keep it on this node)\n\
             node id: {} (SHA-256 of the key: the identity the verifier keeps this node under)\n\
             certificate signing request: {} (subject CN={}{})\n\
             next: send the CSR to your CA; with tppguard's built-in PKI, on the verifier:\n  {}",
            if report.replaced {
                "replaced the"
            } else {
                "new"
            },
            Escaped(&report.key.display().to_string()),
            report.node_id,
            Escaped(&report.csr.display().to_string()),
            Escaped(&report.name),
            report
                .node_uri
                .as_deref()
                .map(|u| format!(", SAN {}", Escaped(u)))
                .unwrap_or_default(),
            Escaped(&report.next)
        )?;
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn inventory_command(args: &InventoryArgs) -> anyhow::Result<ExitCode> {
    if args.source.simulate.as_deref() == Some("list") {
        return list_fixtures(&args.output);
    }
    let report = take_inventory(&open_session(&args.source)?)?;
    print_inventory(&report, &args.output)
}

fn demo_command(output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let session = match Session::open(LibrarySource::Driver) {
        Ok(session) => session,
        Err(OpenError::NoDriver { .. }) => {
            let driver = SimulatedDriver::install(simulate::DEFAULT_FIXTURE)?;
            eprintln!(
                "tppguard-agent: no NVIDIA driver on this machine: showing the bundled SIMULATED \
                 node ({}) instead, through the same NVML code path.",
                driver.description
            );
            Session::open(LibrarySource::Simulated(driver))?
        }
        Err(e) => return Err(e.into()),
    };
    print_inventory(&take_inventory(&session)?, output)
}

/// Opens NVML where `--simulate` / `--nvml-lib` say: a bundled or file fixture, a library
/// file, or the installed driver.
pub(crate) fn open_session(source: &SourceArgs) -> anyhow::Result<Session> {
    let source = match (&source.simulate, &source.nvml_lib) {
        (Some(name), _) => LibrarySource::Simulated(
            SimulatedDriver::install(name).with_context(|| format!("--simulate {name}"))?,
        ),
        (None, Some(path)) => LibrarySource::Path(path.clone()),
        (None, None) => LibrarySource::Driver,
    };
    Ok(Session::open(source)?)
}

/// The inventory pipeline every command shares: NVML's GPUs, the host, classified.
fn take_inventory(session: &Session) -> anyhow::Result<Report> {
    let gpus = inventory::collect(&session.nvml)?;
    let host = host::Host::read();
    Report::new(session, host, gpus).context("classifying the GPUs")
}

fn print_inventory(report: &Report, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let written = if output.json {
        serde_json::to_writer_pretty(&mut out, report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        report.render(&mut out)
    };
    if let Err(e) = written {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing the inventory");
        }
    }
    Ok(ExitCode::from(if report.complete() {
        EXIT_OK
    } else {
        EXIT_DEGRADED
    }))
}

/// What [`attest_token`] signed: the compact JWS and what went into it.
pub struct Attested {
    /// The compact JWS.
    pub token: String,
    /// The signed claims.
    pub claims: tppguard_proto::claims::AttestationClaims,
    /// The inventory the claims were made from.
    pub report: Report,
    /// The node key and chain that signed it.
    pub credentials: sign::NodeCredentials,
}

/// Takes this node's inventory (from `source`) and signs it as an attestation answering the
/// verifier's challenge `nonce` (hex), with NODE/measurements.json's measurements and each
/// GPU's hardware evidence (NVML calls as [`gpu_evidence::CallPolicy::default`]): what
/// `attest`, `push` and `run` share. Arguments and credentials are checked before the driver
/// is touched.
pub fn attest_token(
    dir: &std::path::Path,
    source: &SourceArgs,
    nonce: &str,
    site: Option<&str>,
) -> anyhow::Result<Attested> {
    attest_token_with(
        dir,
        source,
        nonce,
        site,
        gpu_evidence::CallPolicy::default(),
    )
}

/// [`attest_token`] with the timeout and attempts of the GPU evidence calls.
pub fn attest_token_with(
    dir: &std::path::Path,
    source: &SourceArgs,
    nonce: &str,
    site: Option<&str>,
    calls: gpu_evidence::CallPolicy,
) -> anyhow::Result<Attested> {
    // The hint goes on its own line after the causes, so the message is rendered here.
    let rendered = |e: sign::SignError| anyhow::anyhow!(e.render());
    // Arguments and credentials first: nothing touches the driver until they are good.
    let nonce = sign::parse_nonce(nonce).map_err(rendered)?;
    let site = site.map(sign::parse_site).transpose().map_err(rendered)?;
    let credentials = sign::NodeCredentials::load(dir).map_err(rendered)?;
    let iat = sign::now().map_err(rendered)?;

    // Shared with the evidence calls' worker threads, which a hung driver may keep.
    let session = std::sync::Arc::new(open_session(source)?);
    let report = take_inventory(&session)?;
    let evidence = gpu_evidence::collect(
        &session,
        &report,
        &nonce,
        credentials.node_id().as_ref(),
        calls,
    );
    let iss = match credentials.common_name() {
        Some(cn) => cn.to_owned(),
        None => report
            .host
            .hostname
            .clone()
            .ok_or_else(|| rendered(sign::SignError::NoIssuer))?,
    };
    let mut claims = sign::claims_from_report(
        &report,
        sign::ClaimsContext {
            iss,
            iat,
            nonce,
            site,
            measurements: measure::run::Cache::load(dir)?.gpus,
            // The latest gating report (`run` and `gate` write it), if gating is on.
            gating: gate::load_report(dir)?,
        },
    );
    evidence.apply(&mut claims);
    let token = credentials.sign(&claims).map_err(rendered)?;
    Ok(Attested {
        token,
        claims,
        report,
        credentials,
    })
}

fn attest_command(args: &AttestArgs) -> anyhow::Result<ExitCode> {
    let rendered = |e: sign::SignError| anyhow::anyhow!(e.render());
    let Attested {
        token,
        claims,
        report,
        credentials,
    } = attest_token_with(
        &args.dir,
        &args.source,
        &args.nonce,
        args.site.as_deref(),
        gpu_evidence::CallPolicy {
            timeout: std::time::Duration::from_millis(args.nvml_call_timeout_ms),
            ..gpu_evidence::CallPolicy::default()
        },
    )?;
    let out_path = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(sign::ATTESTATION_FILE));
    sign::write_attestation(&out_path, &token).map_err(rendered)?;
    tracing::debug!(out = %out_path.display(), gpus = claims.submods.len(), "attestation written");

    let summary = sign::AttestSummary::new(out_path, &claims, &report, &credentials);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        if summary.simulated {
            writeln!(
                out,
                "{} The attestation says so (tppguard.simulated) and a verifier will not \
                 take it for real hardware.",
                report.source.simulated_line()
            )?;
        }
        writeln!(
            out,
            "attestation signed: {}\n  node      {} ({}, {} certificate(s) in x5c)\n  \
             GPUs      {}\n  node TPP  {} = {} H100-equivalents, {}\n  nonce     {}\n  \
             site      {}\n  evidence  {}{}",
            Escaped(&summary.out.display().to_string()),
            Escaped(&summary.node),
            summary.alg,
            summary.x5c_certificates,
            summary.gpus,
            report.node.tpp,
            report.node.h100_equivalents,
            Escaped(summary.eccn.as_deref().unwrap_or("ECCN unknown")),
            summary.nonce,
            Escaped(summary.site.as_deref().unwrap_or("-")),
            summary.evidence_tier,
            if summary.simulated {
                " (simulated)"
            } else {
                ""
            },
        )?;
        write_evidence_lines(&mut out, &summary.gpu_evidence)?;
    }
    Ok(ExitCode::from(if report.complete() {
        EXIT_OK
    } else {
        EXIT_DEGRADED
    }))
}

fn gpu_evidence_command(args: &cli::GpuEvidenceArgs) -> anyhow::Result<ExitCode> {
    let nonce: [u8; 32] = match &args.nonce {
        Some(hex) => tppguard_proto::claims::Nonce::parse(hex)
            .ok()
            .and_then(|n| <[u8; 32]>::try_from(n.bytes()).ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--nonce {}: not 64 hex digits (32 bytes); give 64 lower-case hex \
                     digits, or leave it out for a random one",
                    Escaped(hex)
                )
            })?,
        None => {
            let mut n = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
                .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
            n
        }
    };
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("creating --out-dir {}", Escaped(&dir.display().to_string()))
        })?;
    }
    let session = std::sync::Arc::new(open_session(&args.source)?);
    let report = take_inventory(&session)?;
    let policy = gpu_evidence::CallPolicy {
        timeout: std::time::Duration::from_millis(args.nvml_call_timeout_ms),
        ..gpu_evidence::CallPolicy::default()
    };
    let probe = gpu_evidence::probe(&session, &report, nonce, args.out_dir.as_deref(), policy)
        .context("writing the evidence files")?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &probe)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        probe.render(&mut out)
    };
    if let Err(e) = written {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing the GPU evidence");
        }
    }
    Ok(ExitCode::from(if probe.complete() {
        EXIT_OK
    } else {
        EXIT_DEGRADED
    }))
}

/// `attest`'s GPU evidence lines: the GPUs that carry evidence, then those without, grouped
/// by reason (escaped: NVML's words are outside text).
fn write_evidence_lines(
    out: &mut impl Write,
    lines: &[gpu_evidence::SummaryLine],
) -> std::io::Result<()> {
    let list = |indexes: &[u32]| {
        indexes
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let attached: Vec<u32> = lines
        .iter()
        .filter(|l| l.attached)
        .map(|l| l.index)
        .collect();
    if !attached.is_empty() {
        writeln!(out, "  GPU evidence attached: GPU {}", list(&attached))?;
    }
    let mut missing: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for l in lines.iter().filter(|l| !l.attached) {
        missing
            .entry(l.reason.as_deref().unwrap_or("no reason recorded"))
            .or_default()
            .push(l.index);
    }
    for (reason, indexes) in missing {
        writeln!(
            out,
            "  GPU evidence none: GPU {}: {}",
            list(&indexes),
            Escaped(reason)
        )?;
    }
    Ok(())
}

fn list_fixtures(output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let fixtures = simulate::bundled();
    let mut out = std::io::stdout().lock();
    if output.json {
        let list: Vec<_> = fixtures
            .iter()
            .map(|f| serde_json::json!({ "name": f.name, "description": f.description }))
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        let width = fixtures.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &fixtures {
            let default = if f.name == simulate::DEFAULT_FIXTURE {
                " (default)"
            } else {
                ""
            };
            writeln!(out, "{:width$}  {}{default}", f.name, f.description)?;
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
