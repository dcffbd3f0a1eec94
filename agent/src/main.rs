//! `tppguard-agent`: see `tppguard-agent --help`.

use std::process::ExitCode;

use clap::Parser;
use tppguard_agent::cli::{Cli, Command};
use tppguard_proto::text::escape;

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
            // Errors quote outside text (paths, NVML's and the verifier's words); each line is
            // escaped so none of it can steer the terminal. The line breaks are the agent's own
            // (a hint on its own line).
            let text = format!("{err:#}");
            let lines: Vec<_> = text.lines().map(escape).collect();
            eprintln!("tppguard-agent: {}", lines.join("\n"));
            ExitCode::from(tppguard_agent::exit_code_for(&err))
        }
    }
}
