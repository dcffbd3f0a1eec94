//! The invariants of the `scenario_change` fuzz target: any text as the changes of a what-if
//! scenario, one per line (`tppguard_verifier::scenario::Scenario::parse`, the one parser of
//! `check --scenario` and the API's `change` parameters).
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/scenario_change/` on stable. Each function panics when an invariant is broken.

use std::borrow::Cow;
use std::sync::OnceLock;

use tppguard_proto::ruleset::{RuleSet, shipped_rule_set};
use tppguard_proto::text::escape;
use tppguard_verifier::scenario::{Change, MAX_CHANGE_CHARS, MAX_CHANGES, Scenario, ScenarioError};

/// The rule set the changes are applied to (it has country groups), parsed once.
fn rule_set() -> &'static RuleSet {
    static RULE_SET: OnceLock<RuleSet> = OnceLock::new();
    RULE_SET.get_or_init(|| {
        shipped_rule_set("us-ai-diffusion-2025")
            .unwrap_or_else(|e| panic!("the shipped rule set does not load: {e}"))
    })
}

/// An error's invariants: a listed code and a one-line sentence with no control character
/// (outside text is escaped).
fn check_error(e: &ScenarioError) {
    assert!(ScenarioError::CODES.contains(&e.code()), "{e:?}");
    let sentence = e.to_string();
    assert!(!sentence.is_empty());
    assert!(!sentence.chars().any(char::is_control), "{sentence:?}");
}

/// One change: rejected with a listed code, or accepted, within the bounds, with a canonical
/// text that parses back to the same change (and is its own canonical text).
fn check_change(text: &str) -> bool {
    match text.parse::<Change>() {
        Err(e) => {
            check_error(&e);
            if text.chars().count() > MAX_CHANGE_CHARS {
                assert!(matches!(e, ScenarioError::TooLong { .. }), "{e:?}");
            }
            false
        }
        Ok(change) => {
            assert!(text.chars().count() <= MAX_CHANGE_CHARS);
            assert!(
                matches!(escape(text), Cow::Borrowed(_)),
                "an accepted change needs no escaping: {text:?}"
            );
            let canonical = change.to_string();
            let again: Change = canonical
                .parse()
                .unwrap_or_else(|e| panic!("{canonical:?} does not parse back: {e}"));
            assert_eq!(again, change, "{text:?}");
            assert_eq!(again.to_string(), canonical);
            true
        }
    }
}

/// The lines of `text` as one scenario: each change is checked alone; the scenario is refused
/// above [`MAX_CHANGES`] changes or when one change is; an accepted scenario's canonical texts
/// parse back to it, and its country moves apply to a rule set with groups (a copy marked
/// modified) or fail with `scenario_unknown_group`. Gives whether the scenario was accepted.
pub fn check_scenario_change(text: &str) -> bool {
    let lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let each: Vec<bool> = lines.iter().map(|l| check_change(l)).collect();
    match Scenario::parse(&lines) {
        Err(e) => {
            check_error(&e);
            if lines.len() > MAX_CHANGES {
                assert!(matches!(e, ScenarioError::TooManyChanges { .. }), "{e:?}");
            }
            false
        }
        Ok(scenario) => {
            assert!(lines.len() <= MAX_CHANGES && each.iter().all(|ok| *ok));
            assert_eq!(scenario.changes.len(), lines.len());
            let again = Scenario::parse(&scenario.texts())
                .unwrap_or_else(|e| panic!("the canonical texts do not parse back: {e}"));
            assert_eq!(again, scenario);
            // A country move or a licence cap change marks the scenario's rule set modified.
            let moves = scenario
                .changes
                .iter()
                .any(|c| matches!(c, Change::CountryGroup { .. } | Change::LicenceCap { .. }));
            let load = |_: &str| Ok(rule_set().clone());
            match scenario.rule_sets(std::slice::from_ref(rule_set()), &load) {
                Ok(sets) => {
                    assert_eq!(sets.len(), 1);
                    let posture = sets.first().map(RuleSet::posture);
                    assert_eq!(posture.map(|p| p.is_modified()), Some(moves));
                }
                Err(e) => {
                    check_error(&e);
                    assert_eq!(e.code(), "scenario_unknown_group", "{e}");
                }
            }
            true
        }
    }
}
