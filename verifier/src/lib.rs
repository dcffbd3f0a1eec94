//! tppguard verifier: the library behind the `tppguard-verifier` binary. [`cli`] defines the
//! command line, [`run`] dispatches it; [`classify`] is the `classify` command.

#![forbid(unsafe_code)]

pub mod classify;
pub mod cli;
pub mod error;

use std::io::Write;

pub use error::Error;

/// Runs a parsed command line, writing its output to `out`.
pub fn run(cli: &cli::Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        cli::Command::Classify(args) => classify::run(args, out),
    }
}
