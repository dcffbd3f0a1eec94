//! Safe human output (issue 11, point 10): outside text that reaches a text output of the
//! agent or the verifier (GPU names, serials and UUIDs from NVML, a fixture's description, a
//! site, licence fields, a rule set's texts) is shown escaped, never as the raw ESC, CSI, OSC or
//! bidirectional-override characters that would let it clear or rewrite the auditor's screen.
//!
//! The hostile inputs are built here from the generated fixtures and the example licence.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{
    FakeDriver, bin, fixtures_dir, node_with_chain, ok, run, s, sign_licence, workspace_root,
};

/// Clears the screen.
const CLEAR: &str = "\u{1b}[2J";
/// Sets the window title, ended by BEL.
const TITLE: &str = "\u{1b}]0;COMPLIANT\u{7}";
/// An 8-bit CSI (C1): red text.
const CSI8: &str = "\u{9b}31m";
/// Right-to-left override.
const BIDI: &str = "\u{202e}";

/// No character a terminal would obey: controls other than the line feed, and bidirectional
/// controls.
fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let raw: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(raw.is_empty(), "{what}: raw {raw:?} in:\n{text}");
}

fn assert_output_clean(what: &str, out: &Output) {
    assert_clean(&format!("{what} stdout"), &out.stdout);
    assert_clean(&format!("{what} stderr"), &out.stderr);
}

/// The `dgx-h100` fixture with GPU 0's name, serial and UUID and the description made hostile.
fn hostile_fixture() -> String {
    let text = std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json"))
        .expect("generated fixture");
    let mut fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
    fixture["description"] = Value::from(format!("DGX {CLEAR}{TITLE}"));
    let gpu = &mut fixture["devices"][0];
    gpu["name"] = Value::from(format!("NVIDIA H100 80GB HBM3{CLEAR}{TITLE}{BIDI}"));
    gpu["serial"] = Value::from(format!("SIM{CSI8}{BIDI}1"));
    let uuid = gpu["uuid"].as_str().expect("uuid").to_owned();
    gpu["uuid"] = Value::from(format!("{uuid}{CLEAR}"));
    serde_json::to_string_pretty(&fixture).expect("fixture JSON")
}

fn write_hostile_fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("hostile.json");
    std::fs::write(&path, hostile_fixture()).expect("write fixture");
    path
}

#[test]
fn gpu_strings_from_nvml_are_shown_escaped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fixture = write_hostile_fixture(tmp.path());
    let out = run("tppguard-agent", &["inventory", "--simulate", s(&fixture)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_output_clean("inventory --simulate", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "NVIDIA H100 80GB HBM3\\u{1b}[2J\\u{1b}]0;COMPLIANT\\u{7}\\u{202e}",
        "SIM\\u{9b}31m\\u{202e}1",
        "(DGX \\u{1b}[2J\\u{1b}]0;COMPLIANT\\u{7})",
    ] {
        assert!(text.contains(shown), "{shown} not in:\n{text}");
    }
    // The JSON keeps the facts exactly as NVML gave them (a JSON string escapes controls).
    let out = run(
        "tppguard-agent",
        &["inventory", "--simulate", s(&fixture), "--json"],
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["gpus"][0]["serial"], format!("SIM{CSI8}{BIDI}1"));

    // The same library named with --nvml-lib.
    let driver = FakeDriver::with_fixture_json(&hostile_fixture());
    let out = bin("tppguard-agent")
        .args(["inventory", "--nvml-lib"])
        .arg(driver.lib_path())
        .output()
        .expect("agent runs");
    assert_eq!(out.status.code(), Some(0));
    assert_output_clean("inventory --nvml-lib", &out);
}

#[test]
fn measure_and_attest_show_no_raw_escapes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fixture = write_hostile_fixture(tmp.path());
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    let out = run(
        "tppguard-agent",
        &[
            "measure",
            "--simulate",
            s(&fixture),
            "--gpu",
            "0",
            "--repeats",
            "3",
            "--precision",
            "fp8",
            "--dir",
            s(&node),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_output_clean("measure", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HBM3\\u{1b}[2J"), "{text}");

    let out = ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--simulate",
            s(&fixture),
            "--nonce",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ],
    );
    assert_output_clean("attest", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIMULATED NODE: fixture "), "{text}");
}

#[test]
fn a_hostile_site_is_refused_and_named_escaped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    let site = format!("fra-1{CLEAR}{TITLE}{CSI8}{BIDI}");
    let out = run(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--simulate",
            "--site",
            &site,
            "--nonce",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_output_clean("attest --site", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--site \"fra-1\\u{1b}[2J\\u{1b}]0;COMPLIANT\\u{7}\\u{9b}31m\\u{202e}\": a site id \
             must be 1 to 64 ASCII letters, digits and `-_.:/`"
        ),
        "{err}"
    );
}

#[test]
fn licence_text_fields_are_shown_escaped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    let example = std::fs::read_to_string(workspace_root().join("examples").join("licence.toml"))
        .expect("example licence");
    let hostile = example
        .replace(
            "end_user = \"Example Cloud GmbH, for its public AI cloud\"",
            &format!(
                "end_user = \"Example{}\"",
                toml_escape(&format!("{CLEAR}{TITLE}"))
            ),
        )
        .replace(
            "name = \"Example Cloud GmbH\"",
            &format!(
                "name = \"Example Cloud{}\"",
                toml_escape(&format!("{CSI8}{BIDI}"))
            ),
        )
        .replace(
            "name = \"Berlin data centre\"",
            &format!("name = \"Berlin{}\"", toml_escape(CLEAR)),
        );
    assert_ne!(
        hostile, example,
        "the example licence changed: update the replacements"
    );
    let toml = tmp.path().join("hostile.toml");
    std::fs::write(&toml, hostile).expect("write licence");
    let jws = tmp.path().join("l.jws");
    let out = sign_licence(&pki, &toml, &jws);
    assert_output_clean("licence sign", &out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Example Cloud\\u{9b}31m\\u{202e}"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(
        "tppguard-verifier",
        &[
            "licence",
            "show",
            "--trust",
            s(&pki.join("verifier/trust.toml")),
            s(&jws),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_output_clean("licence show", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "end user             Example\\u{1b}[2J\\u{1b}]0;COMPLIANT\\u{7}",
        "Example Cloud\\u{9b}31m\\u{202e}",
        "(Berlin\\u{1b}[2J, DE)",
    ] {
        assert!(text.contains(shown), "{shown} not in:\n{text}");
    }
}

#[test]
fn a_rule_set_files_texts_are_shown_escaped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("hostile.toml");
    std::fs::write(
        &path,
        format!(
            r#"
id = "my-line"
version = "1"
title = "My line{}"
status = "policy"
source = "internal"
default_outcome = "below"
[[classes]]
outcome = "above"
[[classes.clauses]]
id = "mine.1"
text = "TPP >= 1000{}"
when = {{ tpp = {{ min = 1000 }} }}
[node]
rank = ["above", "below"]
"#,
            toml_escape(&format!("{CLEAR}{TITLE}")),
            toml_escape(&format!("{CSI8}{BIDI}")),
        ),
    )
    .expect("write rule set");
    let out = run(
        "tppguard-verifier",
        &["classify", "--model", "L4", "--rule-set", s(&path)],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_output_clean("classify", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "my-line v1 [policy; from a file]: My line\\u{1b}[2J\\u{1b}]0;COMPLIANT\\u{7}"
        ),
        "{text}"
    );
}

/// `text` as the inside of a TOML basic string: every character outside printable ASCII as
/// `\uXXXX`, so the file carries the hostile characters only once parsed.
fn toml_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c.to_string()
            } else {
                format!("\\u{:04X}", u32::from(c))
            }
        })
        .collect()
}
