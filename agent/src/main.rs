//! `tppguard-agent`: see `tppguard-agent --help`.

use std::process::ExitCode;

use clap::Parser;
use tppguard_agent::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service logs what it does; one-shot commands only warnings.
    let default = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    tppguard_agent::init_logging_with_default(cli.log.as_deref(), default);
    match tppguard_agent::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Escaped: errors quote outside text (see `error_text`).
            eprintln!("tppguard-agent: {}", tppguard_agent::error_text(&err));
            ExitCode::from(tppguard_agent::exit_code_for(&err))
        }
    }
}
