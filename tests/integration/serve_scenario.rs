//! What-if scenarios over real HTTP on loopback (issue 14): `GET /v1/scenario` answers the
//! baseline and the scenario side by side for an operator, keeps a regulator's redactions,
//! refuses the roles it does not admit, a file as `rule-set=`, too many and malformed changes
//! with their codes, and leaves the fleet's verdict as it was.

use serde_json::Value;

use crate::support::{
    RunningVerifier, VerifierSetup, agent_push, bearer, http, issue_token, ok, path_segment, s,
};

const LICENCE: &str = "EXAMPLE-DE-2026-0142";

/// `GET /v1/scenario` with `changes` (URL-encoded here) as `token`: status and JSON answer.
fn ask(v: &RunningVerifier, token: &str, changes: &[&str]) -> (u16, Value) {
    let query: Vec<String> = changes
        .iter()
        .map(|c| format!("change={}", path_segment(c)))
        .collect();
    let mut resp = http()
        .get(format!("{}/v1/scenario?{}", v.base, query.join("&")))
        .header("Authorization", bearer(token))
        .call()
        .expect("GET /v1/scenario");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// The fleet summary's parts that a scenario must leave alone.
fn fleet_state(v: &RunningVerifier) -> Value {
    let (status, fleet) = v.get_json("/v1/fleet?view=full");
    assert_eq!(status, 200, "{fleet}");
    serde_json::json!({
        "at": fleet["at"],
        "rule_set": fleet["rule_set"],
        "posture": fleet["posture"],
        "verdict": fleet["verdict"],
        "licences": fleet["licences"],
        "countries": fleet["countries"],
        "findings": fleet["findings"],
    })
}

/// The comparison's row of country `code`.
fn country<'a>(answer: &'a Value, code: &str) -> &'a Value {
    answer["comparison"]["countries"]
        .as_array()
        .expect("countries")
        .iter()
        .find(|c| c["country"] == code)
        .unwrap_or_else(|| panic!("no row for {code}: {answer}"))
}

#[test]
fn serve_answers_a_scenario_without_changing_the_fleet() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    // Rules with country tiers; a regulator that sees no certificate subject.
    setup.configure(
        "rule_sets = [\"us-ai-diffusion-2025\"]\n[regulator]\nredact = [\"subjects\", \"serials\", \"uuids\"]",
    );
    let config = setup.config.clone();
    let regulator = issue_token(&config, "regulator", "test-regulator");
    let admin = issue_token(&config, "admin", "test-admin");
    let vendor = ok(
        "tppguard-verifier",
        &[
            "token",
            "issue",
            "--config",
            s(&config),
            "--role",
            "vendor",
            "--name",
            "vendor-a",
            "--licence",
            LICENCE,
        ],
    );
    let vendor = String::from_utf8(vendor.stdout)
        .expect("token")
        .trim()
        .to_owned();
    let verifier = setup.start();
    let operator = verifier.credentials.operator.clone();
    let pushed = agent_push(&verifier.base, &verifier.credentials.node_file, &setup.node);
    assert!(matches!(pushed.status.code(), Some(0 | 1)), "push answered");
    let before = fleet_state(&verifier);

    // Germany moved to Tier 2, and the licence's device cap cut below the fleet's 8 GPUs.
    let cap = format!("licence:{LICENCE}:max_devices=4");
    let (status, answer) = ask(&verifier, &operator, &["DE=tier_2", &cap]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["changes"], serde_json::json!(["DE=tier_2", cap]));
    assert_eq!(
        answer["baseline"]["posture"]["rule_set"],
        "us-ai-diffusion-2025"
    );
    assert_eq!(answer["baseline"]["posture"]["origin"], "shipped");
    assert_eq!(
        answer["scenario"]["posture"]["origin"], "scenario",
        "{answer}"
    );
    assert_eq!(
        answer["scenario"]["posture"]["variant_of"],
        "us-ai-diffusion-2025"
    );
    assert_eq!(
        answer["scenario"]["posture"]["modifications"],
        serde_json::json!([
            "DE moved from tier_1 to tier_2",
            "licence EXAMPLE-DE-2026-0142 max_devices set to 4"
        ])
    );
    assert_eq!(answer["scenario"]["verdict"], "not_compliant", "{answer}");
    assert_eq!(answer["baseline"]["verdict"], before["verdict"]);
    let de = country(&answer, "DE");
    assert_eq!(de["baseline"]["tier"], "tier_1", "{de}");
    assert_eq!(de["scenario"]["tier"], "tier_2", "{de}");
    assert!(
        de["scenario"]["allocation"].is_object(),
        "Tier 2 has an allocation: {de}"
    );
    assert_eq!(de["changed"], true);
    let licence = &answer["comparison"]["licences"][0];
    assert_eq!(licence["licence"], LICENCE);
    assert_eq!(licence["scenario"]["devices"]["cap"], 4, "{licence}");
    assert_eq!(licence["scenario"]["verdict"], "not_compliant", "{licence}");

    // A bill's rule set: every H100 changes class, listed by node with its subject for the
    // operator; the regulator sees the same rows with the subject redacted.
    let (status, bill) = ask(&verifier, &operator, &["rule-set=us-gain-ai-act-s3150"]);
    assert_eq!(status, 200, "{bill}");
    assert_eq!(
        bill["scenario"]["posture"]["rule_set"],
        "us-gain-ai-act-s3150"
    );
    assert_eq!(
        bill["scenario"]["posture"]["origin"], "shipped",
        "a replacement alone"
    );
    let devices = bill["comparison"]["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 8, "{bill}");
    assert!(
        devices[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("gpu-node-01"))
    );
    let (status, seen) = ask(&verifier, &regulator, &["rule-set=us-gain-ai-act-s3150"]);
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["comparison"]["devices"].as_array().map(Vec::len),
        Some(8)
    );
    assert!(
        seen["comparison"]["devices"][0]["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("redacted-")),
        "{seen}"
    );
    assert!(!seen.to_string().contains("gpu-node-01"), "{seen}");
    assert_eq!(seen["comparison"]["verdict"], bill["comparison"]["verdict"]);
    let (status, _) = ask(&verifier, &admin, &["DE=tier_2"]);
    assert_eq!(status, 200, "an admin may ask");

    // Roles the route does not admit.
    for (who, token) in [("node", &verifier.credentials.node), ("vendor", &vendor)] {
        let (status, body) = ask(&verifier, token, &["DE=tier_2"]);
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(body["code"], "forbidden");
    }

    // Refusals, each with its code and a sentence that says what to do.
    let many: Vec<String> = (0..33)
        .map(|i| format!("licence:L{i}:max_devices=1"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused: [(&[&str], &str, &str); 6] = [
        (
            &["rule-set=/etc/passwd"],
            "scenario_rule_set_unavailable",
            "check --scenario",
        ),
        (
            &["rule-set=rules/x.toml"],
            "scenario_rule_set_unavailable",
            "us-gain-ai-act-s3150",
        ),
        (&many, "scenario_too_many_changes", "33 changes"),
        (
            &["France=tier_2"],
            "scenario_change_malformed",
            "`CC=GROUP`",
        ),
        (
            &["DE=tier_9"],
            "scenario_unknown_group",
            "tier_1, tier_2, tier_3",
        ),
        (
            &["licence:NOPE:max_devices=1"],
            "scenario_unknown_licence",
            LICENCE,
        ),
    ];
    for (changes, code, needle) in refused {
        let (status, body) = ask(&verifier, &operator, changes);
        assert_eq!(status, 400, "{changes:?}: {body}");
        assert_eq!(body["code"], code, "{body}");
        let sentence = body["sentence"].as_str().expect("sentence");
        assert!(sentence.contains(needle), "{code}: {sentence}");
    }
    let (status, body) = ask(&verifier, &operator, &[]);
    assert_eq!(status, 400, "no change: {body}");

    // Nothing changed for the fleet's readers.
    assert_eq!(fleet_state(&verifier), before);
}
