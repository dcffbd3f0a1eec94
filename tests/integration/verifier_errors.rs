//! The verifier's errors on stderr (issue 11, point 10): outside text an error quotes (a
//! `--model`, a rule set argument, a path) is shown escaped, never as the raw ESC, C1 or
//! bidirectional-override characters that would let it clear or rewrite the terminal.

use std::process::Output;

use crate::support::run;

/// Clears the screen.
const CLEAR: &str = "\u{1b}[2J";
/// An 8-bit CSI (C1): red text.
const CSI8: &str = "\u{9b}31m";
/// Right-to-left override.
const BIDI: &str = "\u{202e}";
/// The three, as the escaper writes them.
const ESCAPED: &str = "\\u{1b}[2J\\u{9b}31m\\u{202e}";

/// The stderr of a run that failed with exit code 2, checked free of any character a
/// terminal would obey (controls other than the line feed, bidirectional controls).
fn failed_cleanly(out: &Output) -> String {
    let err = String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8");
    assert_eq!(out.status.code(), Some(2), "{err}");
    let raw: Vec<char> = err
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} on stderr:\n{err}");
    err
}

#[test]
fn a_hostile_model_is_named_escaped() {
    let model = format!("x{CLEAR}{CSI8}{BIDI}");
    let out = run("tppguard-verifier", &["classify", "--model", &model]);
    let err = failed_cleanly(&out);
    assert!(
        err.starts_with(&format!(
            "tppguard-verifier: --model: no model \"x{ESCAPED}\" in the spec table\nhint: "
        )),
        "{err}"
    );
}

#[test]
fn a_hostile_rule_set_argument_is_named_escaped() {
    let rule_set = format!("gain{CLEAR}{CSI8}{BIDI}");
    let out = run(
        "tppguard-verifier",
        &["classify", "--model", "H20", "--rule-set", &rule_set],
    );
    let err = failed_cleanly(&out);
    assert!(
        err.contains(&format!(
            "--rule-set: \"gain{ESCAPED}\" is neither a shipped rule set nor a file"
        )),
        "{err}"
    );
}

#[test]
fn a_hostile_path_is_named_escaped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trust = dir.path().join(format!("trust{CLEAR}{CSI8}{BIDI}.toml"));
    let trust = trust.to_str().expect("UTF-8 path");
    let out = run(
        "tppguard-verifier",
        &["check", "--trust", trust, "--licence", "l.jws", "a.jws"],
    );
    let err = failed_cleanly(&out);
    assert!(err.contains(&format!("trust{ESCAPED}.toml: ")), "{err}");
    assert!(err.contains("\nhint: "), "{err}");
}
