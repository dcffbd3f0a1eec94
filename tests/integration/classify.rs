//! `tppguard-verifier classify`, run as a user would.

use std::process::Output;

use serde_json::Value;

use crate::support::bin;

fn classify(args: &[&str]) -> Output {
    bin("tppguard-verifier")
        .arg("classify")
        .args(args)
        .output()
        .expect("tppguard-verifier runs")
}

/// Runs with `--json`, expects success, and returns the report.
fn classify_json(args: &[&str]) -> Value {
    let output = classify(&[args, &["--json"]].concat());
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

/// Runs, expects exit code 2, and returns stderr.
fn classify_fails(args: &[&str]) -> String {
    let output = classify(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout on error");
    stderr
}

fn outcome_of<'a>(report: &'a Value, rule_set: &str) -> &'a Value {
    report["classifications"]
        .as_array()
        .expect("classifications")
        .iter()
        .find(|c| c["rule_set"] == rule_set)
        .unwrap_or_else(|| panic!("{rule_set} evaluated"))
}

#[test]
fn h100_sxm5_from_the_spec_table() {
    let report = classify_json(&["--model", "H100 SXM5 80GB"]);
    assert_eq!(report["tpp"], 15831.2);
    assert_eq!(report["tpp_basis"], "fp8");
    assert_eq!(report["eccn"], "3A090.a");
    assert_eq!(report["h100_equivalents"], 1.0);
    let eccn = outcome_of(&report, "us-eccn-3a090");
    assert_eq!(eccn["clause"], "3A090.a.1");
    assert_eq!(eccn["rule_set_status"], "in_force");
    assert_eq!(eccn["sentence"], "TPP 15831.2 >= 4800 (3A090.a.1)");
    assert_eq!(
        outcome_of(&report, "us-gain-ai-act-s3150")["rule_set_status"],
        "bill"
    );
    assert_eq!(
        outcome_of(&report, "us-ai-overwatch-act-hr6875")["rule_set_status"],
        "bill"
    );
    assert_eq!(report["classifications"].as_array().unwrap().len(), 4);
}

#[test]
fn human_output_names_rule_set_status_and_clause() {
    let output = classify(&["--model", "h20"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("TPP                  2368"), "{text}");
    assert!(text.contains("not_3a090"), "{text}");
    assert!(text.contains("bill (not law)"), "{text}");
}

#[test]
fn boundary_tpp_4800_via_tops() {
    let at = classify_json(&["--tops", "FP8=600", "--rule-set", "us-eccn-3a090"]);
    assert_eq!(at["tpp"], 4800.0);
    assert_eq!(at["eccn"], "3A090.a");
    // 599.9999 x 8 = 4799.9992: below the line, and without a die area .a.2 is undecidable.
    let below = classify_json(&["--tops", "FP8=599.9999", "--rule-set", "us-eccn-3a090"]);
    assert_eq!(below["eccn"], "indeterminate");
    let eccn = outcome_of(&below, "us-eccn-3a090");
    assert_eq!(eccn["reason"], "die_area_unknown");
    assert_eq!(eccn["clause"], "3A090.a.2");
    // With a large die it is decided: outside 3A090.
    let decided = classify_json(&["--tops", "FP8=599.9999", "--die-area", "5000"]);
    assert_eq!(decided["eccn"], "not_3a090");
}

#[test]
fn boundary_density_5_92_via_tops() {
    // 370 x 8 = 2960 TPP over 500 mm² = 5.92 exactly.
    let at = classify_json(&["--tops", "INT8=370", "--die-area", "500"]);
    assert_eq!(at["eccn"], "3A090.a");
    assert_eq!(outcome_of(&at, "us-eccn-3a090")["clause"], "3A090.a.2");
    let below = classify_json(&["--tops", "INT8=370", "--die-area", "500.01"]);
    assert_eq!(below["eccn"], "3A090.b");
}

#[test]
fn non_datacenter_carve_out_via_flags() {
    let report = classify_json(&[
        "--tops",
        "FP16=299.9999",
        "--die-area",
        "100",
        "--not-datacenter",
    ]);
    let eccn = outcome_of(&report, "us-eccn-3a090");
    assert_eq!(eccn["outcome"], "not_3a090");
    assert_eq!(eccn["clause"], "3A090.note.non_datacenter");
    // The bill has no carve-out.
    assert_eq!(
        outcome_of(&report, "us-gain-ai-act-s3150")["outcome"],
        "covered"
    );
}

#[test]
fn gain_decided_by_bandwidth_alone() {
    let report = classify_json(&[
        "--dram-bandwidth",
        "1400",
        "--rule-set",
        "us-gain-ai-act-s3150",
    ]);
    let gain = outcome_of(&report, "us-gain-ai-act-s3150");
    assert_eq!(gain["outcome"], "covered");
    assert_eq!(gain["clause"], "s3150.aic.dram_bandwidth");
    assert_eq!(report["tpp"], Value::Null);
    assert_eq!(report["eccn"], Value::Null, "3A090 not evaluated");
}

#[test]
fn user_rule_set_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(
        &path,
        r#"
id = "my-line"
version = "1"
title = "My line"
status = "policy"
source = "internal"
default_outcome = "below"
[[classes]]
outcome = "above"
[[classes.clauses]]
id = "mine.1"
text = "TPP >= 1000"
when = { tpp = { min = 1000 } }
[node]
rank = ["above", "below"]
"#,
    )
    .unwrap();
    let report = classify_json(&["--model", "L4", "--rule-set", path.to_str().unwrap()]);
    assert_eq!(outcome_of(&report, "my-line")["outcome"], "above");
}

#[test]
fn bad_tops_value_is_a_usage_error() {
    let stderr = classify_fails(&["--tops", "FP8=1e3"]);
    assert!(
        stderr.contains("--tops") && stderr.contains("not a plain decimal"),
        "{stderr}"
    );
    let stderr = classify_fails(&["--tops", "FP9=1"]);
    assert!(stderr.contains("unknown precision"), "{stderr}");
    let stderr = classify_fails(&["--tops", "FP8=1", "--tops", "FP8=2"]);
    assert!(
        stderr.contains("tppguard-verifier: --tops: FP8 given more than once"),
        "{stderr}"
    );
}

#[test]
fn unknown_model_is_an_error_with_suggestions() {
    let stderr = classify_fails(&["--model", "H100"]);
    assert!(
        stderr.starts_with("tppguard-verifier: --model: no model \"H100\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("H100 SXM5 80GB") && stderr.contains("--list-models"),
        "{stderr}"
    );
}

#[test]
fn broken_rule_set_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "id = \"x\"\nversoin = \"1\"\n").unwrap();
    let stderr = classify_fails(&["--model", "H20", "--rule-set", path.to_str().unwrap()]);
    assert!(stderr.contains("broken.toml: invalid rule set"), "{stderr}");
    assert!(stderr.contains("unknown field `versoin`"), "{stderr}");
    assert!(stderr.contains("rules/README.md"), "{stderr}");
    let stderr = classify_fails(&["--model", "H20", "--rule-set", "no-such-rule-set"]);
    assert!(
        stderr.contains("neither a shipped rule set nor a file"),
        "{stderr}"
    );
}

#[test]
fn list_models() {
    let output = classify(&["--list-models", "--json"]);
    assert!(output.status.success());
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 53);
    assert!(
        rows.iter()
            .any(|r| r["model"] == "H100 SXM5 80GB" && r["tpp"] == 15831.2)
    );
}

/// `(need, rule)` of the licence need under `rule_set` in a report made with `--destination`.
fn need_of(report: &Value, rule_set: &str) -> (String, Value) {
    let n = report["licence_need"]
        .as_array()
        .expect("licence_need")
        .iter()
        .find(|n| n["rule_set"] == rule_set)
        .unwrap_or_else(|| panic!("{rule_set} has a licence need"));
    (n["need"].as_str().unwrap().to_owned(), n["rule"].clone())
}

#[test]
fn a_german_operator_with_a_d5_parent_needs_a_licence_for_h100s_not_for_h20s() {
    let h100 = classify_json(&[
        "--model",
        "H100 SXM5 80GB",
        "--destination",
        "DE",
        "--ultimate-parent",
        "CN",
    ]);
    assert_eq!(
        need_of(&h100, "us-eccn-3a090"),
        ("required".to_owned(), Value::from("742.6(a)(6)(iii)(A)"))
    );
    assert_eq!(h100["party"]["headquarters"], "DE");
    assert_eq!(h100["party"]["ultimate_parent"], "CN");
    let n = &h100["licence_need"][0];
    assert_eq!(n["by_party"], true);
    assert_eq!(n["rule_set_status"], "in_force");
    // Bills classify; they do not say where a licence is needed.
    assert_eq!(need_of(&h100, "us-gain-ai-act-s3150").0, "undetermined");
    // The same chips with a German parent: A:5, no licence.
    let own = classify_json(&["--model", "H100 SXM5 80GB", "--destination", "DE"]);
    assert_eq!(
        need_of(&own, "us-eccn-3a090"),
        (
            "not_required".to_owned(),
            Value::from("742.6(a)(6)(iii).destination_a5")
        )
    );
    // An H20 fleet in Germany: outside 3A090, no licence whoever the parent is.
    let h20 = classify_json(&[
        "--model",
        "H20",
        "--destination",
        "DE",
        "--ultimate-parent",
        "CN",
        "--rule-set",
        "us-eccn-3a090",
    ]);
    assert_eq!(
        need_of(&h20, "us-eccn-3a090"),
        ("not_required".to_owned(), Value::Null)
    );
    // In words, without jq.
    let output = classify(&[
        "--model",
        "H100 SXM5 80GB",
        "--destination",
        "DE",
        "--ultimate-parent",
        "CN",
    ]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains(
            "Licence need: destination DE, party headquartered in DE, ultimate parent in CN\n  \
             us-eccn-3a090 v2 [in force]: licence required for 3A090.a by 742.6(a)(6)(iii)(A)"
        ),
        "{text}"
    );
    // Without a destination there is no licence need in the report.
    assert!(
        classify_json(&["--model", "H20"])
            .get("licence_need")
            .is_none()
    );
    // A party without a destination is a usage error.
    assert!(classify_fails(&["--model", "H20", "--headquarters", "DE"]).contains("--destination"));
    assert!(classify_fails(&["--model", "H20", "--destination", "UK"]).contains("GB, not UK"));
}

#[test]
fn an_edited_copy_of_a_shipped_rule_set_is_refused_unless_it_says_it_is_a_variant() {
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(crate::support::workspace_root().join("rules/us-eccn-3a090.toml"))
            .unwrap();
    // The shipped file itself is the shipped rule set.
    let same = dir.path().join("same.toml");
    std::fs::write(&same, &shipped).unwrap();
    let report = classify_json(&["--model", "H20", "--rule-set", same.to_str().unwrap()]);
    assert_eq!(report["posture"][0]["origin"], "shipped");
    // Lowered threshold under the shipped id, in force: refused, exit 2, with the fix, also
    // when it declares itself a variant (a modified rule never carries the shipped name).
    let edited = shipped.replace(
        "when = { tpp = { min = \"4800\" } }",
        "when = { tpp = { min = \"2000\" } }",
    );
    let variant_text = edited.replace(
        "id = \"us-eccn-3a090\"",
        "id = \"us-eccn-3a090\"\nvariant_of = \"us-eccn-3a090\"",
    );
    for (name, text) in [
        ("forged.toml", &edited),
        ("forged-variant.toml", &variant_text),
    ] {
        let forged = dir.path().join(name);
        std::fs::write(&forged, text).unwrap();
        let stderr = classify_fails(&["--model", "H20", "--rule-set", forged.to_str().unwrap()]);
        assert!(
            stderr.contains("is a shipped rule set's") && stderr.contains("its own `id`"),
            "{stderr}"
        );
    }
    // Its own id, declared as a variant: accepted, and every line says MODIFIED.
    let variant = dir.path().join("variant.toml");
    std::fs::write(
        &variant,
        edited.replace(
            "id = \"us-eccn-3a090\"",
            "id = \"eccn-2000\"\nvariant_of = \"us-eccn-3a090\"",
        ),
    )
    .unwrap();
    let report = classify_json(&["--model", "H20", "--rule-set", variant.to_str().unwrap()]);
    assert_eq!(report["posture"][0]["variant_of"], "us-eccn-3a090");
    assert_eq!(report["posture"][0]["origin"], "file");
    // The H20 (TPP 2368) is above the lowered line: the variant says so, marked.
    assert_eq!(outcome_of(&report, "eccn-2000")["outcome"], "3A090.a");
    let output = classify(&["--model", "H20", "--rule-set", variant.to_str().unwrap()]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("eccn-2000 v2 [in force; from a file; MODIFIED from us-eccn-3a090]:"),
        "{text}"
    );
    // A variant cannot claim more than its base: a variant of a bill is not law.
    let gain = std::fs::read_to_string(
        crate::support::workspace_root().join("rules/us-gain-ai-act-s3150.toml"),
    )
    .unwrap()
    .replace(
        "id = \"us-gain-ai-act-s3150\"",
        "id = \"gain-as-law\"\nvariant_of = \"us-gain-ai-act-s3150\"",
    )
    .replace("status = \"bill\"", "status = \"in_force\"");
    let as_law = dir.path().join("gain-as-law.toml");
    std::fs::write(&as_law, gain).unwrap();
    let stderr = classify_fails(&["--model", "H20", "--rule-set", as_law.to_str().unwrap()]);
    assert!(
        stderr.contains("a modified copy keeps its base's status"),
        "{stderr}"
    );
}
