//! `tppguard-fixtures generate|check [--root DIR]`: regenerates the fake-NVML fixtures in
//! `tests/fixtures/nvml/`, or checks the committed ones are up to date.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: tppguard-fixtures <generate|check> [--root WORKSPACE]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let mut root = tppguard_tests::default_root();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--root", Some(dir)) => root = PathBuf::from(dir),
            _ => {
                eprintln!("tppguard-fixtures: unexpected argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match command.as_deref() {
        Some("generate") => match tppguard_tests::write(&root) {
            Ok(written) => {
                for name in &written {
                    println!("wrote {name}");
                }
                if written.is_empty() {
                    println!("all fixtures up to date");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tppguard-fixtures: {e}");
                ExitCode::from(2)
            }
        },
        Some("check") => match tppguard_tests::stale(&root) {
            Ok(stale) if stale.is_empty() => {
                println!("all fixtures up to date");
                ExitCode::SUCCESS
            }
            Ok(stale) => {
                for s in &stale {
                    eprintln!("stale: {s}");
                }
                eprintln!("run `cargo run -p tppguard-tests --bin tppguard-fixtures -- generate`");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("tppguard-fixtures: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
