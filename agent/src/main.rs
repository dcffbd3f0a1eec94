//! `tppguard-agent`: see `tppguard-agent --help`.

use std::process::ExitCode;

use clap::Parser;
use tppguard_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tppguard_agent::init_logging(cli.log.as_deref());
    match tppguard_agent::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tppguard-agent: {err:#}");
            ExitCode::from(tppguard_agent::exit_code_for(&err))
        }
    }
}
