//! `check --scenario`: what-if changes evaluated beside the baseline in one command, on a mixed
//! fleet (8 H100s in France, 8 H100s and an HGX H20 in Germany; licences to FR and DE)
//! with the built-in PKI and certified sites. The comparison reads without jq, the JSON has
//! both sides, and the exit code is always the baseline's.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::support::{attest_to, issue_node, jws_payload, ok, run, s, sign_licence, stderr};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A licence TOML: `id` to `country` at site `site`, H100 and H20, 100 devices, 2,000,000 TPP.
fn licence_toml(id: &str, country: &str, site: &str) -> String {
    format!(
        r#"id = "{id}"
issuer = "Test licence authority"
destination_country = "{country}"
end_user = "Test Cloud"
end_use = "Training and inference of AI models"
models = ["H100 SXM5 80GB", "H20"]
max_devices = 100
max_aggregate_tpp = "2000000"
max_tpp_per_device = "15831.2"
min_evidence_tier = "declared"
max_attestation_age = "24h"
valid_from = 2026-01-01T00:00:00Z
valid_until = 2028-01-01T00:00:00Z
rule_set = "us-eccn-3a090"

[licensee]
name = "Test Cloud"
headquarters_country = "{country}"
ultimate_parent_country = "{country}"

[[sites]]
id = "{site}"
name = "Data centre {site}"
country = "{country}"
"#
    )
}

/// The mixed fleet: its trust file, licences, attestations and a fixed `--at`.
struct Fleet {
    _tmp: tempfile::TempDir,
    trust: PathBuf,
    licences: Vec<PathBuf>,
    attestations: Vec<PathBuf>,
    at: String,
}

impl Fleet {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let pki = dir.join("pki");
        ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
        let mut attestations = Vec::new();
        for (name, fixture, site) in [
            ("gpu-node-fr", Some("busy-h100"), "par-1"),
            ("gpu-node-de", None, "fra-1"),
            ("h20-node-de", Some("hgx-h20"), "fra-1"),
        ] {
            let node = dir.join(name);
            issue_node(&pki, &node, name, Some(site));
            let out = dir.join(format!("{name}.jws"));
            attest_to(&node, fixture, NONCE, site, &out);
            attestations.push(out);
        }
        let mut licences = Vec::new();
        // Two licences to France share its national allocation; the second has no node.
        for (id, country, site) in [
            ("LIC-FR-1", "FR", "par-1"),
            ("LIC-FR-2", "FR", "lyo-1"),
            ("LIC-DE-1", "DE", "fra-1"),
        ] {
            let toml = dir.join(format!("{id}.toml"));
            std::fs::write(&toml, licence_toml(id, country, site)).expect("licence toml");
            let jws = dir.join(format!("{id}.jws"));
            sign_licence(&pki, &toml, &jws);
            licences.push(jws);
        }
        let token = std::fs::read_to_string(&attestations[0]).expect("attestation");
        let iat = jws_payload(&token)["iat"].as_i64().expect("iat");
        Self {
            _tmp: tmp,
            trust: pki.join("verifier/trust.toml"),
            licences,
            attestations,
            at: (iat + 60).to_string(),
        }
    }

    /// `check --trust T --at AT --licence L... EXTRA... ATTESTATIONS...`.
    fn check(&self, extra: &[&str]) -> Output {
        let mut args = vec!["check", "--trust", s(&self.trust), "--at", &self.at];
        for l in &self.licences {
            args.extend(["--licence", s(l)]);
        }
        args.extend_from_slice(extra);
        args.extend(self.attestations.iter().map(|p| s(p)));
        run("tppguard-verifier", &args)
    }

    fn json(&self, extra: &[&str]) -> (i32, Value) {
        let mut extra = extra.to_vec();
        extra.push("--json");
        let out = self.check(&extra);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out), stderr(&out)));
        (out.status.code().expect("exit code"), json)
    }

    /// The exit code of the same check without a scenario.
    fn baseline_code(&self, extra: &[&str]) -> i32 {
        self.check(extra).status.code().expect("exit code")
    }
}

fn country<'a>(comparison: &'a Value, code: &str) -> &'a Value {
    comparison["countries"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["country"] == code))
        .unwrap_or_else(|| panic!("no {code} in {comparison}"))
}

fn licence<'a>(comparison: &'a Value, id: &str) -> &'a Value {
    comparison["licences"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["licence"] == id))
        .unwrap_or_else(|| panic!("no {id} in {comparison}"))
}

#[test]
fn france_moves_to_tier_2_in_one_command() {
    let f = Fleet::new();
    let base = ["--rule-set", "us-ai-diffusion-2025"];
    let what_if = [
        "--rule-set",
        "us-ai-diffusion-2025",
        "--scenario",
        "FR=tier_2",
    ];
    let out = f.check(&what_if);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(f.baseline_code(&base)),
        "{t}{}",
        stderr(&out)
    );
    // The baseline block shows each country's tier, now in text too.
    assert!(t.contains("rule set us-ai-diffusion-2025 v"), "{t}");
    assert!(t.contains("  country FR (tier_1): 8 devices"), "{t}");
    assert!(t.contains("  country DE (tier_1): "), "{t}");
    // The what-if section: the posture says MODIFIED, the tier and allocation side by side.
    assert!(
        t.contains("WHAT IF FR=tier_2 (hypothetical: the exit code is the baseline's)"),
        "{t}"
    );
    assert!(
        t.contains("MODIFIED from us-ai-diffusion-2025: FR moved from tier_1 to tier_2]"),
        "{t}"
    );
    assert!(
        t.contains("  country FR (licences LIC-FR-1, LIC-FR-2)\n    tier                 tier_1 -> tier_2\n"),
        "{t}"
    );
    assert!(t.contains("    allocation           none\n"), "{t}");
    assert!(
        t.contains(
            "-> 790,000,000 TPP (2025-2027), used 126,649.6, headroom 789,873,350.4, shared by 2 \
             licences"
        ),
        "{t}"
    );
    assert!(
        t.contains("the national allocation is shared by 2 licences: LIC-FR-1, LIC-FR-2"),
        "{t}"
    );
    assert!(t.contains("  licence LIC-FR-1 (FR)"), "{t}");
    assert!(t.contains("baseline"), "{t}");
    assert!(
        t.contains("    TPP used / cap       126,649.6 / 2,000,000        same\n"),
        "{t}"
    );
    assert!(t.contains("  unchanged: 1 licence (LIC-DE-1)"), "{t}");
    assert!(t.contains("what if: us-ai-diffusion-2025 v"), "{t}");

    let (code, json) = f.json(&what_if);
    assert_eq!(code, f.baseline_code(&base));
    assert_eq!(json["posture"][0]["rule_set"], "us-ai-diffusion-2025");
    assert!(
        json["posture"][0].get("variant_of").is_none(),
        "{}",
        json["posture"]
    );
    let scenario = &json["scenario"];
    assert_eq!(scenario["changes"], serde_json::json!(["FR=tier_2"]));
    assert_eq!(scenario["posture"][0]["origin"], "scenario");
    assert_eq!(scenario["posture"][0]["variant_of"], "us-ai-diffusion-2025");
    let comparison = &scenario["comparisons"][0];
    let fr = country(comparison, "FR");
    assert_eq!(fr["changed"], true);
    assert_eq!(fr["licences"], serde_json::json!(["LIC-FR-1", "LIC-FR-2"]));
    assert_eq!(fr["baseline"]["tier"], "tier_1");
    assert_eq!(fr["baseline"]["allocation"], Value::Null);
    assert_eq!(fr["scenario"]["tier"], "tier_2");
    assert_eq!(
        fr["scenario"]["allocation"]["cap"].as_f64(),
        Some(790_000_000.0)
    );
    assert_eq!(fr["scenario"]["allocation"]["used"].to_string(), "126649.6");
    assert_eq!(fr["scenario"]["allocation_period"], "2025-2027");
    assert_eq!(country(comparison, "DE")["changed"], false);
    let lic = licence(comparison, "LIC-FR-1");
    assert_eq!(lic["baseline"]["tpp"]["used"].to_string(), "126649.6");
    assert_eq!(lic["scenario"]["tpp"]["used"].to_string(), "126649.6");
}

#[test]
fn the_gain_bill_as_a_scenario_shows_the_h20_changing_class() {
    let f = Fleet::new();
    let what_if = ["--scenario", "rule-set=us-gain-ai-act-s3150"];
    let out = f.check(&what_if);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(f.baseline_code(&[])),
        "{t}{}",
        stderr(&out)
    );
    assert!(t.contains("  scenario: us-gain-ai-act-s3150 v"), "{t}");
    assert!(t.contains("[bill (not law)]"), "{t}");
    assert!(
        t.contains(
            "    H20 (8 devices on 1 node): not_3a090, not controlled, not counted -> covered, \
             controlled, counted\n"
        ),
        "{t}"
    );
    // The H20s, which start counting, are listed before the H100s, which only change name.
    let h20 = t.find("      node CN=h20-node-de").expect("an H20 listed");
    let h100 = t.find("      node CN=gpu-node-de").unwrap_or(usize::MAX);
    assert!(h20 < h100, "{t}");

    let (_, json) = f.json(&what_if);
    let scenario = &json["scenario"];
    assert_eq!(scenario["posture"][0]["rule_set"], "us-gain-ai-act-s3150");
    assert_eq!(scenario["posture"][0]["status"], "bill");
    let classes = scenario["comparisons"][0]["class_changes"]
        .as_array()
        .expect("class changes");
    let h20 = classes
        .iter()
        .find(|c| c["model"] == "H20")
        .unwrap_or_else(|| panic!("{classes:?}"));
    assert_eq!(h20["baseline"]["outcome"], "not_3a090");
    assert_eq!(h20["scenario"]["outcome"], "covered");
    assert_eq!(
        (h20["devices"].as_u64(), h20["nodes"].as_u64()),
        (Some(8), Some(1))
    );
    let devices = scenario["comparisons"][0]["devices"]
        .as_array()
        .expect("devices");
    assert!(
        devices
            .iter()
            .any(|d| d["gpu"] == "gpu0" && d["model"] == "H20")
    );
    assert_eq!(scenario["comparisons"][0]["devices_omitted"], 0);
}

#[test]
fn a_cap_change_makes_the_scenario_licence_not_compliant_and_keeps_the_exit_code() {
    let f = Fleet::new();
    let what_if = ["--scenario", "licence:LIC-DE-1:max_devices=1"];
    let (code, json) = f.json(&what_if);
    assert_eq!(code, f.baseline_code(&[]));
    assert_ne!(json["verdict"], "not_compliant", "{}", json["verdicts"]);
    let lic = licence(&json["scenario"]["comparisons"][0], "LIC-DE-1");
    assert_eq!(lic["changed"], true);
    assert_eq!(lic["baseline"]["devices"]["cap"], 100);
    assert_eq!(lic["scenario"]["devices"]["cap"], 1);
    assert_eq!(lic["scenario"]["verdict"], "not_compliant");
    assert_eq!(json["scenario"]["verdicts"][0]["verdict"], "not_compliant");
    let out = f.check(&what_if);
    let t = text(&out);
    assert!(t.contains("WHAT IF licence:LIC-DE-1:max_devices=1"), "{t}");
    assert!(
        t.contains("    devices used / cap   8 / 100                      8 / 1\n"),
        "{t}"
    );
    assert!(
        t.contains("    devices headroom     92                           OVER by 7\n"),
        "{t}"
    );
    assert!(t.contains(": NOT COMPLIANT\n"), "{t}");
}

#[test]
fn scenario_errors_exit_2_with_the_reason() {
    let f = Fleet::new();
    // A group the rule set does not have: its groups and `--rule-set` are named.
    let out = f.check(&["--rule-set", "us-eccn-3a090", "--scenario", "FR=tier_9"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("tier_9"), "{e}");
    assert!(e.contains("united_states"), "{e}");
    assert!(e.contains("--rule-set"), "{e}");
    assert!(text(&out).is_empty(), "{}", text(&out));
    // A malformed change shows the forms.
    let out = f.check(&["--scenario", "France-to-tier-2"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("FR=tier_2"), "{e}");
    assert!(e.contains("rule-set="), "{e}");
    assert!(e.contains("licence:"), "{e}");
    assert!(e.contains("check --help"), "{e}");
    // A hostile change is printed escaped.
    let out = f.check(&["--scenario", "FR=\u{1b}[2J\u{9b}31m"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(!e.contains(['\u{1b}', '\u{9b}']), "{e:?}");
    assert!(e.contains("u{1b}"), "{e}");
    // A licence the fleet does not have.
    let out = f.check(&["--scenario", "licence:LIC-XX-9:max_devices=1"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("LIC-DE-1"), "{e}");
}

#[test]
fn the_scenario_json_is_the_same_bytes_on_every_run() {
    let f = Fleet::new();
    let what_if = [
        "--rule-set",
        "us-ai-diffusion-2025",
        "--scenario",
        "FR=tier_2",
        "--scenario",
        "licence:LIC-FR-1:max_aggregate_tpp=100000",
        "--json",
    ];
    let one = f.check(&what_if);
    let two = f.check(&what_if);
    assert!(!one.stdout.is_empty());
    assert_eq!(one.stdout, two.stdout);
    let json: Value = serde_json::from_slice(&one.stdout).expect("json");
    let lic = licence(&json["scenario"]["comparisons"][0], "LIC-FR-1");
    assert_eq!(lic["scenario"]["tpp"]["over_by"].to_string(), "26649.6");

    // Two rule sets: one comparison per (baseline, scenario) pair, in order.
    let (_, json) = f.json(&[
        "--rule-set",
        "us-eccn-3a090",
        "--rule-set",
        "us-ai-diffusion-2025",
        "--scenario",
        "licence:LIC-FR-1:max_aggregate_tpp=100000",
    ]);
    let comparisons = json["scenario"]["comparisons"]
        .as_array()
        .expect("comparisons");
    assert_eq!(comparisons.len(), 2);
    for (c, id) in comparisons
        .iter()
        .zip(["us-eccn-3a090", "us-ai-diffusion-2025"])
    {
        assert_eq!(c["baseline"]["rule_set"], id);
        assert_eq!(c["scenario"]["rule_set"], id);
        assert_eq!(
            licence(c, "LIC-FR-1")["scenario"]["verdict"],
            "not_compliant"
        );
    }
}

#[test]
fn without_a_scenario_the_report_has_no_scenario_and_shows_the_posture() {
    let f = Fleet::new();
    let (_, json) = f.json(&[]);
    assert!(json.get("scenario").is_none(), "{json}");
    assert_eq!(json["posture"][0]["rule_set"], "us-eccn-3a090");
    assert_eq!(json["posture"][0]["origin"], "shipped");
    let t = text(&f.check(&[]));
    assert!(!t.contains("WHAT IF"), "{t}");
    assert!(t.contains("rule set us-eccn-3a090 v2 [in force]\n"), "{t}");
}

#[test]
fn the_help_teaches_the_three_forms_and_the_exit_code_rule() {
    let out = run("tppguard-verifier", &["check", "--help"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for needle in [
        "--scenario <CHANGE>",
        "--scenario FR=tier_2",
        "--scenario rule-set=us-gain-ai-act-s3150",
        "--scenario licence:LIC-1:max_aggregate_tpp=500000",
        "the exit code is the baseline's",
    ] {
        assert!(t.contains(needle), "{needle}: {t}");
    }
}
