//! tppguard verifier: the library behind the `tppguard-verifier` binary. [`cli`] defines the
//! command line, [`run`] dispatches it; [`classify`] is the `classify` command, [`pki`] the
//! `pki` commands, and [`chain`] certificate-chain validation.

#![forbid(unsafe_code)]

pub mod chain;
pub mod classify;
pub mod cli;
pub mod error;
pub mod pki;

use std::io::Write;

pub use error::Error;

/// Runs a parsed command line, writing its output to `out`.
pub fn run(cli: &cli::Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        cli::Command::Classify(args) => classify::run(args, out),
        cli::Command::Pki(args) => pki::run(args, out, unix_now()?),
    }
}

/// The clock, read once per command at this boundary: library functions take time as an
/// argument.
fn unix_now() -> Result<i64, Error> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or(Error::Clock { unix: -1 })
}
