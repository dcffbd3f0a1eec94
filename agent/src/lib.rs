//! The tppguard node agent.
//!
//! Reads this node's GPUs through NVML ([`inventory`]) and its host through the OS ([`host`]),
//! classifies each GPU with `tppguard-proto` ([`report`]), and prints the result or signs it
//! as an attestation for a verifier ([`sign`]). The binary (`main.rs`) only parses the command
//! line and calls [`run`].
//!
//! `unsafe` is denied crate-wide; the one exception is [`nvml::raw`], the two NVML calls that
//! nvml-wrapper does not wrap.
#![deny(unsafe_code)]

pub mod cli;
pub mod host;
pub mod identity;
pub mod inventory;
pub mod nvml;
pub mod report;
pub mod sign;
pub mod simulate;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{AttestArgs, Cli, Command, InitArgs, InventoryArgs, OutputArgs, SourceArgs};
use crate::nvml::{LibrarySource, OpenError, Session};
use crate::report::Report;
use crate::simulate::SimulatedDriver;

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

/// Sets up `tracing` on stderr: the `--log` filter, else `RUST_LOG`, else warnings only.
pub fn init_logging(filter: Option<&str>) {
    let filter = filter
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}

/// The exit code for an error that ended the command.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<OpenError>() {
        Some(OpenError::NoDriver { .. }) => EXIT_NO_DRIVER,
        Some(_) => EXIT_DRIVER_UNUSABLE,
        None if err.is::<inventory::CountError>() => EXIT_DRIVER_UNUSABLE,
        None => EXIT_ERROR,
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inventory(args) => inventory_command(&args),
        Command::Demo(output) => demo_command(&output),
        Command::Init(args) => init_command(&args),
        Command::Attest(args) => attest_command(&args),
    }
}

fn init_command(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let host = host::Host::read();
    let result = match args.name.as_deref().or(host.hostname.as_deref()) {
        Some(name) => identity::init(
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
             certificate signing request: {} (subject CN={}{})\n\
             next: send the CSR to your CA; with tppguard's built-in PKI, on the verifier:\n  {}",
            if report.replaced {
                "replaced the"
            } else {
                "new"
            },
            report.key.display(),
            report.csr.display(),
            report.name,
            report
                .node_uri
                .as_deref()
                .map(|u| format!(", SAN {u}"))
                .unwrap_or_default(),
            report.next
        )?;
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn inventory_command(args: &InventoryArgs) -> anyhow::Result<ExitCode> {
    if args.source.simulate.as_deref() == Some("list") {
        return list_fixtures(&args.output);
    }
    let report = take_inventory(open_session(&args.source)?)?;
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
    print_inventory(&take_inventory(session)?, output)
}

/// Opens NVML where `--simulate` / `--nvml-lib` say: a bundled or file fixture, a library
/// file, or the installed driver.
fn open_session(source: &SourceArgs) -> anyhow::Result<Session> {
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
fn take_inventory(session: Session) -> anyhow::Result<Report> {
    let gpus = inventory::collect(&session.nvml)?;
    let host = host::Host::read();
    Report::new(&session, host, gpus).context("classifying the GPUs")
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

fn attest_command(args: &AttestArgs) -> anyhow::Result<ExitCode> {
    // The hint goes on its own line after the causes, so the message is rendered here.
    let rendered = |e: sign::SignError| anyhow::anyhow!(e.render());
    // Arguments and credentials first: nothing touches the driver until they are good.
    let nonce = sign::parse_nonce(&args.nonce).map_err(rendered)?;
    let site = args
        .site
        .as_deref()
        .map(sign::parse_site)
        .transpose()
        .map_err(rendered)?;
    let credentials = sign::NodeCredentials::load(&args.dir).map_err(rendered)?;
    let iat = sign::now().map_err(rendered)?;

    let report = take_inventory(open_session(&args.source)?)?;
    let iss = match credentials.common_name() {
        Some(cn) => cn.to_owned(),
        None => report
            .host
            .hostname
            .clone()
            .ok_or_else(|| rendered(sign::SignError::NoIssuer))?,
    };
    let claims = sign::claims_from_report(
        &report,
        sign::ClaimsContext {
            iss,
            iat,
            nonce,
            site,
        },
    );
    let token = credentials.sign(&claims).map_err(rendered)?;
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
                "SIMULATED NODE: fixture {}. No real GPU was read; the attestation says so \
                 (tppguard.simulated) and a verifier will flag it.",
                summary.fixture.as_deref().unwrap_or("?"),
            )?;
        }
        writeln!(
            out,
            "attestation signed: {}\n  node      {} ({}, {} certificate(s) in x5c)\n  \
             GPUs      {}\n  node TPP  {} = {} H100-equivalents, {}\n  nonce     {}\n  \
             site      {}\n  evidence  {}{}",
            summary.out.display(),
            summary.node,
            summary.alg,
            summary.x5c_certificates,
            summary.gpus,
            report.node.tpp,
            report.node.h100_equivalents,
            summary.eccn.as_deref().unwrap_or("ECCN unknown"),
            summary.nonce,
            summary.site.as_deref().unwrap_or("-"),
            summary.evidence_tier,
            if summary.simulated {
                " (simulated)"
            } else {
                ""
            },
        )?;
    }
    Ok(ExitCode::from(if report.complete() {
        EXIT_OK
    } else {
        EXIT_DEGRADED
    }))
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
