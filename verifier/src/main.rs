//! `tppguard-verifier`: parses the command line and runs it; errors print as
//! `tppguard-verifier: <thing>: <reason>` with a hint, and exit with code 2; a command that
//! ran but reports findings exits with code 1.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tppguard_proto::text::escape;
use tppguard_verifier::cli::Cli;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", error_text(&err));
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

/// The error as printed on stderr: `tppguard-verifier: <message>`, then `hint: <hint>` when
/// there is one. Messages and hints quote outside text as given (a `--model`, a licence id, a
/// path, a rule set's words); each line is escaped here, the one place, so none of it can
/// steer the terminal. The line breaks are the verifier's own.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = format!("tppguard-verifier: {err}");
    if let Some(hint) = err
        .downcast_ref::<tppguard_verifier::Error>()
        .and_then(tppguard_verifier::Error::hint)
    {
        text.push_str("\nhint: ");
        text.push_str(&hint);
    }
    let lines: Vec<_> = text.lines().map(escape).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_escaped_and_the_hint_kept() {
        let err = anyhow::Error::new(tppguard_verifier::Error::UnknownModel {
            name: "x\u{1b}[2J\u{9b}31m\u{202e}".to_owned(),
            suggestions: Vec::new(),
        });
        let text = error_text(&err);
        assert!(
            text.starts_with(
                "tppguard-verifier: --model: no model \"x\\u{1b}[2J\\u{9b}31m\\u{202e}\" in \
                 the spec table\nhint: "
            ),
            "{text}"
        );
        assert!(!text.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{text:?}");
    }
}
