//! `tppguard-verifier`: parses the command line and runs it; errors print as
//! `tppguard-verifier: <thing>: <reason>` with a hint, and exit with code 2; a command that
//! ran but reports findings exits with code 1.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tppguard_verifier::cli::Cli;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tppguard-verifier: {err}");
            if let Some(hint) = err
                .downcast_ref::<tppguard_verifier::Error>()
                .and_then(tppguard_verifier::Error::hint)
            {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let outcome = tppguard_verifier::run(&cli, &mut stdout.lock())?;
    Ok(ExitCode::from(outcome.exit_code()))
}
