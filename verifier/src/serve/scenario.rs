//! `GET /v1/scenario?change=FR%3Dtier_2&change=...`: a what-if on the fleet held, answered and
//! forgotten. The baseline is the fleet's current verdict ([`super::reads::current`]); the
//! scenario is the same evidence, lifecycle and instant under the changed rule set and
//! licences ([`crate::scenario::Scenario`]), evaluated by [`crate::policy::evaluate_with`]
//! off the async workers. Both are compared as the caller's role sees them
//! ([`super::view`]): a regulator's redactions hold in the comparison too.
//!
//! Bounded: at most [`MAX_CHANGES`] changes; one scenario evaluates at a time in a process (a
//! second is answered 429 `scenario_busy` with `Retry-After`); `rule-set=` names a shipped
//! rule set only (a file would be read from the server's disk). Nothing is stored, nothing is
//! written to the audit log, and the fleet's verdict held for reads is not touched.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tppguard_proto::ruleset::{RuleSet, RuleSetError, RuleSetPosture, shipped_rule_set};
use tppguard_proto::text::Escaped;

use super::AppState;
use super::api::{ApiError, ApiResult, json_response, now};
use super::auth::Principal;
use super::reads::{bad_query, current};
use super::view::View;
use crate::policy::{FleetVerdict, Verdict};
use crate::scenario::{Comparison, MAX_CHANGES, Scenario, ScenarioError, compare};

/// The route.
pub(super) const SCENARIO: &str = "/v1/scenario";

/// The query parameter that carries one change.
const CHANGE: &str = "change";

/// Seconds a client waits before asking again when another scenario is evaluating.
const BUSY_RETRY_AFTER_S: u64 = 1;

/// One side of the answer: the enforcement posture and the fleet verdict as the caller sees it.
#[derive(Debug, Serialize)]
struct SideAnswer {
    posture: RuleSetPosture,
    verdict: Verdict,
}

/// The answer.
#[derive(Debug, Serialize)]
struct ScenarioAnswer {
    at: i64,
    changes: Vec<String>,
    baseline: SideAnswer,
    scenario: SideAnswer,
    comparison: Comparison,
}

fn scenario_error(e: &ScenarioError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
}

/// The changes of the query: every parameter is `change`; at least one.
fn changes(pairs: Vec<(String, String)>) -> ApiResult<Scenario> {
    let mut texts = Vec::with_capacity(pairs.len().min(MAX_CHANGES.saturating_add(1)));
    for (key, value) in pairs {
        if key != CHANGE {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!(
                    "query parameter \"{}\" is not understood; give each change as \
                     `change=` (`?change=FR%3Dtier_2`)",
                    Escaped(&key)
                ),
            ));
        }
        texts.push(value);
    }
    if texts.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "scenario_change_malformed",
            "a scenario needs at least one change: give `change=CC=GROUP`, \
             `change=rule-set=ID` or `change=licence:ID:KEY=VALUE`, URL-encoded \
             (`?change=FR%3Dtier_2`)",
        ));
    }
    Scenario::parse(&texts).map_err(|e| scenario_error(&e))
}

/// The `rule-set=` change's rule set over the API: a shipped one only.
fn load_shipped(id: &str) -> Result<RuleSet, ScenarioError> {
    shipped_rule_set(id).map_err(|e| ScenarioError::RuleSetUnavailable {
        rule_set: id.to_owned(),
        reason: match e {
            RuleSetError::UnknownId { known, .. } => format!(
                "over the API, `rule-set=` names a shipped rule set ({known}); a file would \
                 be read from the verifier's own disk: evaluate a file with `tppguard-verifier \
                 check --scenario rule-set=FILE` instead"
            ),
            other => format!("the shipped rule set does not load: {other}"),
        },
    })
}

/// `verdict` as `view` sees it, for the comparison: its nodes (redacted for a regulator),
/// licences and countries, and the fleet verdict it answers. The findings are left out: the
/// comparison does not read them, and a view shows them as JSON ([`super::view::full`]).
fn viewed(mut verdict: FleetVerdict, view: &View<'_>) -> FleetVerdict {
    if view.is_everything() {
        return verdict;
    }
    let nodes = view
        .nodes(&verdict)
        .into_iter()
        .map(|n| view.node(n).into_owned())
        .collect();
    let licences = view.licences(&verdict).into_iter().cloned().collect();
    let countries = view.countries(&verdict).to_vec();
    verdict.verdict = view.verdict(&verdict);
    verdict.nodes = nodes;
    verdict.licences = licences;
    verdict.countries = countries;
    verdict.findings.clear();
    verdict
}

/// The permit to evaluate a scenario (from the service's one-permit semaphore,
/// [`AppState::what_ifs`]: a what-if evaluates the whole fleet, twice when the held verdict is
/// out of date, and must not crowd out attestations), or 429 `scenario_busy` while another
/// holds it.
fn begin(what_ifs: &Arc<Semaphore>) -> ApiResult<OwnedSemaphorePermit> {
    Arc::clone(what_ifs).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "scenario_busy",
            format!(
                "another scenario is being evaluated; one evaluates at a time: ask again in \
                 {BUSY_RETRY_AFTER_S} s"
            ),
        )
        .with_retry_after(BUSY_RETRY_AFTER_S)
    })
}

/// `GET /v1/scenario`.
pub(super) async fn scenario(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) = query.map_err(|e| bad_query(&e))?;
    let scenario = changes(pairs)?;
    let permit = begin(&s.what_ifs)?;
    let snapshot = current(&s).await?;
    let basis = s.fleet.basis(&s.trust(), now(&s)?)?;
    let state = Arc::clone(&s);
    let what_if = scenario.clone();
    let (baseline, changed) = tokio::task::spawn_blocking(move || {
        // Held until the evaluation ends, even when the request times out before it.
        let _permit = permit;
        state
            .fleet
            .what_if(&basis, &snapshot, |licences, rule_set| {
                let rule_sets = what_if.rule_sets(std::slice::from_ref(rule_set), &load_shipped)?;
                let rule_set = rule_sets
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| rule_set.clone());
                Ok::<_, ScenarioError>((what_if.licences(licences)?, rule_set))
            })
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| scenario_error(&e))?;
    let view = View::of(&principal, &s.redactor);
    let (baseline, changed) = (viewed(baseline, &view), viewed(changed, &view));
    let answer = ScenarioAnswer {
        at: changed.at,
        changes: scenario.texts(),
        baseline: SideAnswer {
            posture: baseline.posture.clone(),
            verdict: baseline.verdict,
        },
        scenario: SideAnswer {
            posture: changed.posture.clone(),
            verdict: changed.verdict,
        },
        comparison: compare(&baseline, &changed),
    };
    json_response(StatusCode::OK, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_query_is_changes_only_and_at_least_one() {
        let s = changes(pairs(&[("change", "FR=tier_2"), ("change", "DE=tier_3")])).unwrap();
        assert_eq!(s.texts(), ["FR=tier_2", "DE=tier_3"]);
        assert_eq!(
            changes(Vec::new()).unwrap_err().code(),
            "scenario_change_malformed"
        );
        let e = changes(pairs(&[("change", "FR=tier_2"), ("view", "full")])).unwrap_err();
        assert_eq!(e.code(), "bad_query");
        let e = changes(pairs(&[("change\u{1b}", "x")])).unwrap_err();
        assert!(!e.sentence().contains('\u{1b}'), "{}", e.sentence());
        let many: Vec<(String, String)> = (0..=MAX_CHANGES)
            .map(|_| ("change".to_owned(), "FR=tier_2".to_owned()))
            .collect();
        assert_eq!(
            changes(many).unwrap_err().code(),
            "scenario_too_many_changes"
        );
        assert_eq!(
            changes(pairs(&[("change", "FR=tier_2"), ("change", "FR=tier_3")]))
                .unwrap_err()
                .code(),
            "scenario_conflict"
        );
    }

    #[test]
    fn one_scenario_evaluates_at_a_time() {
        let what_ifs = Arc::new(Semaphore::new(1));
        let held = begin(&what_ifs).unwrap();
        let e = begin(&what_ifs).unwrap_err();
        assert_eq!(e.code(), "scenario_busy");
        assert_eq!(e.retry_after_s(), Some(BUSY_RETRY_AFTER_S));
        drop(held);
        assert!(
            begin(&what_ifs).is_ok(),
            "the permit comes back when the evaluation ends"
        );
    }

    #[test]
    fn a_file_or_unknown_rule_set_is_refused_over_the_api() {
        for what in ["/etc/passwd", "./rules/x.toml", "not-shipped"] {
            let e = load_shipped(what).unwrap_err();
            assert_eq!(e.code(), "scenario_rule_set_unavailable");
            let s = e.to_string();
            assert!(
                s.contains("us-gain-ai-act-s3150") && s.contains("check --scenario"),
                "{s}"
            );
        }
        assert_eq!(
            load_shipped("us-gain-ai-act-s3150").unwrap().id,
            "us-gain-ai-act-s3150"
        );
    }
}
