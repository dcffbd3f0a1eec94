//! tppguard verifier: the library behind the `tppguard-verifier` binary. [`cli`] defines the
//! command line, [`run`] dispatches it; [`classify`] is the `classify` command, [`pki`] the
//! `pki` commands, [`licence`] the `licence` commands and signed-licence checks, [`chain`]
//! certificate-chain validation, [`attestation`] attestation-token checks, [`check`] the
//! `check` command (verify and evaluate a fleet under rule sets), [`ear`] its EAR result,
//! [`serve`] the HTTP service over [`store`] and [`token`] the bearer tokens it takes;
//! [`gpu_evidence`] checks a GPU's own signed report (and is the `gpu-evidence` command).

#![forbid(unsafe_code)]

pub mod attestation;
pub mod chain;
pub mod check;
pub mod classify;
pub mod cli;
pub mod ear;
pub mod error;
pub mod gpu_evidence;
pub mod lease;
pub mod licence;
pub mod pki;
pub mod policy;
pub mod scenario;
pub mod serve;
pub mod shipment;
pub mod store;
pub mod token;

use std::io::Write;

pub use error::Error;

/// How a command that ran to its end came out (errors are exit code 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report: exit code 0.
    Clean,
    /// The command ran and reports findings (a licence not in force at `--at`; `check`: not
    /// compliant): exit code 1.
    Findings,
    /// `check`: no violation, but the evidence cannot establish compliance: exit code 3.
    Unproven,
}

impl Outcome {
    /// The process exit code.
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Findings => 1,
            Self::Unproven => 3,
        }
    }
}

/// Runs a parsed command line, writing its output to `out`.
pub fn run(cli: &cli::Cli, out: &mut dyn Write) -> Result<Outcome, Error> {
    match &cli.command {
        cli::Command::Classify(args) => classify::run(args, out).map(|()| Outcome::Clean),
        cli::Command::Pki(args) => pki::run(args, out, unix_now()?).map(|()| Outcome::Clean),
        cli::Command::Licence(args) => licence::run(args, out, unix_now()?),
        cli::Command::Shipment(args) => shipment::run(args, out, unix_now()?),
        cli::Command::Check(args) => check::run(args, out, unix_now()?),
        cli::Command::Serve(args) => serve::run(args, out).map(|()| Outcome::Clean),
        cli::Command::Token(args) => token::run(args, out, unix_now()?).map(|()| Outcome::Clean),
        cli::Command::GpuEvidence(args) => gpu_evidence::cli::run(args, out, unix_now()?),
    }
}

/// The clock, read once per command at this boundary: library functions take time as an
/// argument.
pub(crate) fn unix_now() -> Result<i64, Error> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or(Error::Clock { unix: -1 })
}
