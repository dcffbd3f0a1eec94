//! `tppguard-agent gate`: one evaluation of gating, for operators and tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use tppguard_proto::lease::{GatingMode, GatingReport, OnExpiry};
use tppguard_proto::text::Escaped;

use super::{Gatekeeper, GatingConfig, HeldLease, gpu_key};
use crate::cli::{GateArgs, SourceArgs};
use crate::ear::ResultKey;
use crate::{EXIT_DEGRADED, EXIT_OK, sign};

/// The largest lease file read (a lease's payload is at most 128 KiB, the JWS a third more).
const MAX_LEASE_FILE_BYTES: u64 = 256 * 1024;

/// `gate --json`'s output.
#[derive(Debug, Serialize)]
struct GateOutput<'a> {
    report: &'a GatingReport,
    /// `--at`: nothing was set and nothing written.
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_refused: Option<Refused>,
    next_change: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Refused {
    code: &'static str,
    sentence: String,
}

/// What `gate` works on: from `--config` or from the flags.
struct Setup {
    dir: PathBuf,
    source: SourceArgs,
    key: Option<PathBuf>,
    gating: GatingConfig,
}

fn setup(args: &GateArgs) -> anyhow::Result<Setup> {
    if let Some(path) = &args.config {
        let config = crate::run::RunConfig::load(path)?;
        let gating = config.gating.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: has no [gating] section, so run does not gate; add [gating] mode = \
                 \"observe\" (or \"enforce\") to it, or give --dir and --mode instead",
                path.display()
            )
        })?;
        return Ok(Setup {
            source: config.source(),
            dir: config.dir,
            key: config.verifier_result_key,
            gating,
        });
    }
    let dir = args
        .dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("give --config FILE or --dir NODE"))?;
    let mode = match args.mode.as_str() {
        "enforce" => GatingMode::Enforce,
        _ => GatingMode::Observe,
    };
    let gating = GatingConfig {
        first_lease_grace_s: args.first_lease_grace_s,
        without_lease: match args.without_lease.as_str() {
            "fail_closed" => OnExpiry::FailClosed,
            _ => OnExpiry::FailOpen,
        },
        ..GatingConfig::new(mode)
    };
    crate::run::check_gating(
        Path::new("--mode"),
        &gating,
        args.verifier_result_key.is_some(),
    )?;
    Ok(Setup {
        dir,
        source: SourceArgs {
            simulate: args.source.simulate.clone(),
            nvml_lib: args.source.nvml_lib.clone(),
        },
        key: args.verifier_result_key.clone(),
        gating,
    })
}

fn read_lease(path: &Path) -> anyhow::Result<String> {
    super::read_bounded(path, MAX_LEASE_FILE_BYTES)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the lease {} does not exist; give the file the verifier's answer held",
            path.display()
        )
    })
}

/// `tppguard-agent gate`.
pub fn gate_command(args: &GateArgs) -> anyhow::Result<ExitCode> {
    let setup = setup(args)?;
    let credentials =
        sign::NodeCredentials::load(&setup.dir).map_err(|e| anyhow::anyhow!(e.render()))?;
    let node = crate::push::node_id(&credentials)?;
    let key = setup.key.as_deref().map(ResultKey::load).transpose()?;
    let now = match args.at {
        Some(at) => at,
        None => sign::now().map_err(|e| anyhow::anyhow!(e.render()))?,
    };
    let lease_text = args.lease.as_deref().map(read_lease).transpose()?;
    let mut gate = Gatekeeper::open(&setup.dir, setup.gating, key, node, now)?;
    if args.at.is_some() {
        gate.dry_run();
    }
    let refused = lease_text.and_then(|jws| {
        gate.offer(&jws, None, now).err().map(|e| Refused {
            code: e.code(),
            sentence: e.to_string(),
        })
    });
    let session = crate::open_session(&setup.source)?;
    let report = gate.evaluate(
        &mut crate::nvml::control::NvmlControl::new(&session.nvml),
        now,
    )?;
    let next_change = gate.next_change(now);
    let mut out = std::io::stdout().lock();
    if args.json {
        let output = GateOutput {
            report: &report,
            dry_run: args.at.is_some(),
            lease_refused: refused,
            next_change,
        };
        serde_json::to_writer_pretty(&mut out, &output)?;
        writeln!(out)?;
        return Ok(exit(output.lease_refused.is_some(), &report));
    }
    if session.simulated {
        writeln!(
            out,
            "SIMULATED NODE: the NVML library is tppguard's fake; no real GPU is gated."
        )?;
    }
    if let Some(at) = args.at {
        writeln!(
            out,
            "DRY RUN (--at {at}): what gating would do at that time; nothing was set and no \
             file was written."
        )?;
    }
    render(
        &mut out,
        &report,
        gate.lease(),
        refused.as_ref(),
        next_change,
    )?;
    Ok(exit(refused.is_some(), &report))
}

fn exit(refused: bool, report: &GatingReport) -> ExitCode {
    ExitCode::from(if refused || report.not_held().next().is_some() {
        EXIT_DEGRADED
    } else {
        EXIT_OK
    })
}

/// The report for a person. Everything from the lease or NVML is escaped.
fn render(
    out: &mut impl Write,
    report: &GatingReport,
    lease: Option<&HeldLease>,
    refused: Option<&Refused>,
    next_change: Option<i64>,
) -> std::io::Result<()> {
    if let Some(r) = refused {
        writeln!(
            out,
            "lease refused ({}): {}; nothing changed",
            r.code,
            Escaped(&r.sentence)
        )?;
    }
    writeln!(
        out,
        "gating: {}, state {}",
        report.mode.as_str(),
        serde_json::to_value(report.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    )?;
    match lease {
        Some(l) => writeln!(
            out,
            "  lease: from {}, issued {}, valid {} to {} (renew at {}), then {} s of grace, \
             then {}",
            Escaped(&l.claims.iss),
            l.claims.iat,
            l.claims.nbf,
            l.claims.exp,
            l.claims.renew_at,
            l.claims.grace_s,
            l.claims.on_expiry.as_str()
        )?,
        None => writeln!(out, "  lease: none held")?,
    }
    for g in &report.gpus {
        let reasons = lease
            .and_then(|l| l.claims.exclusion(&g.gpu))
            .map(|e| {
                e.reasons
                    .iter()
                    .map(|r| r.code.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        writeln!(
            out,
            "  GPU {} {}  {}  compute mode {}  {}{}{}",
            g.gpu.index,
            Escaped(&gpu_key(&g.gpu)),
            if g.gate { "GATED  " } else { "allowed" },
            g.compute_mode
                .and_then(|m| serde_json::to_value(m).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unreadable".to_owned()),
            if g.held {
                "holds"
            } else if report.mode == GatingMode::Observe {
                "(observe: not acted on)"
            } else {
                "DOES NOT HOLD"
            },
            g.error
                .as_deref()
                .map(|e| format!(" [{}]", Escaped(e)))
                .unwrap_or_default(),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", Escaped(&reasons))
            }
        )?;
    }
    if let Some(cc) = &report.cc_ready {
        writeln!(
            out,
            "  confidential computing: GPUs {} (read back {}){}",
            if cc.ready { "ready" } else { "not ready" },
            cc.read_back
                .map_or("unreadable", |r| if r { "ready" } else { "not ready" }),
            if cc.held { "" } else { ", DOES NOT HOLD" }
        )?;
    }
    if let Some(at) = next_change {
        writeln!(
            out,
            "  next change without a new lease: at {at} (Unix time)"
        )?;
    }
    Ok(())
}
