//! The read routes: the fleet's verdict (a summary, or in full), its nodes, licences,
//! countries and findings, a node's history, and the metrics' usage gauges.
//!
//! Every read is served from the verdict held in memory ([`super::fleet::Snapshot`]),
//! evaluated again only when the fleet changed or its next change instant passed; lists are
//! pages (`limit`, at most [`MAX_PAGE`], and the `next` cursor to pass as `after`); what a
//! caller sees is its role's view ([`super::view`]).

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tppguard_proto::identity::NodeId;

use super::AppState;
use super::api::{ApiError, ApiResult, json_response, now};
use super::auth::Principal;
use super::fleet::Snapshot;
pub(super) use super::view::node_of;
use super::view::{self, View};
use crate::policy::{Finding, FleetVerdict, NodeVerdict, Severity};
use crate::store::MAX_HISTORY;

type Shared = Arc<AppState>;

/// Items in a page when `limit` is not given.
pub(super) const DEFAULT_PAGE: usize = 100;
/// The largest `limit`.
pub(super) const MAX_PAGE: usize = 1000;
/// Default length of a node's history.
const DEFAULT_HISTORY: usize = 100;

/// A finding as the API answers it: the policy's finding and, when it names a node (by id),
/// that node's certificate subject, for display.
#[derive(Debug, Clone, Serialize)]
pub(super) struct NodeFinding {
    #[serde(flatten)]
    finding: Finding,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
}

/// `findings` with the subjects of the nodes they name, from `verdict`.
pub(super) fn with_subjects<'a>(
    verdict: &FleetVerdict,
    findings: impl IntoIterator<Item = &'a Finding>,
) -> Vec<NodeFinding> {
    findings
        .into_iter()
        .map(|f| NodeFinding {
            subject: f
                .node
                .as_deref()
                .and_then(NodeId::from_hex)
                .and_then(|id| node_of(verdict, id))
                .map(|n| n.subject.clone()),
            finding: f.clone(),
        })
        .collect()
}

/// The fleet's verdict now: the one held when it still holds, else one evaluation shared by
/// every reader waiting for it.
pub(super) async fn current(s: &Shared) -> ApiResult<Arc<Snapshot>> {
    s.fleet.refresh_for_read(&s.store).await?;
    if let Some(snapshot) = s.fleet.cached(now(s)?) {
        return Ok(snapshot);
    }
    let _one = s.fleet.computing.lock().await;
    // The time is read again: another reader may have evaluated while this one waited.
    let now = now(s)?;
    let basis = s.fleet.basis(&s.trust(), now)?;
    if let Some(snapshot) = s.fleet.cached(now) {
        return Ok(snapshot);
    }
    let state = Arc::clone(s);
    let snapshot = tokio::task::spawn_blocking(move || state.fleet.compute(&basis))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    s.metrics.usage(&snapshot.verdict);
    Ok(snapshot)
}

pub(super) fn bad_query(e: &QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_query",
        format!("the query string is not understood: {}", e.body_text()),
    )
}

fn bad(sentence: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", sentence)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetQuery {
    view: Option<String>,
}

/// `GET /v1/fleet`: the summary (verdicts, counts, licences, countries; no node), or with
/// `view=full` every node and finding as well.
pub(super) async fn fleet(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<FleetQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let full = match q.view.as_deref() {
        None | Some("summary") => false,
        Some("full") => true,
        Some(other) => return Err(bad(format!("view {other:?} is not summary or full"))),
    };
    let snapshot = current(&s).await?;
    let view = View::of(&principal, &s.redactor);
    let verdict = &snapshot.verdict;
    if full {
        return if view.is_everything() {
            json_response(StatusCode::OK, verdict)
        } else {
            json_response(StatusCode::OK, &view::full(verdict, &view))
        };
    }
    let counts = if view.is_whole_fleet() {
        snapshot.whole_fleet_counts()
    } else {
        view::counts(verdict, &view)
    };
    json_response(StatusCode::OK, &view::summary(verdict, &view, counts))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
}

/// A page's `limit`: [`DEFAULT_PAGE`] when not given, at most [`MAX_PAGE`].
fn page_limit(limit: Option<usize>) -> ApiResult<usize> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(bad(format!("limit must be 1 to {MAX_PAGE}")))
    }
}

/// A cursor: the sort key of the last item of a page and how many items before it had the
/// same key, as base64url JSON (opaque to clients).
fn encode_cursor<K: Serialize>(key: &K, ordinal: usize) -> String {
    let json = serde_json::to_vec(&(key, ordinal)).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor<K: DeserializeOwned>(text: &str) -> ApiResult<(K, usize)> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            bad(
                "after is not a cursor this list gave: pass the `next` of the page before"
                    .to_owned(),
            )
        })
}

/// One page of `items` (sorted by `key`): up to `limit` items after the cursor `after`, and
/// the cursor of the next page when there is one. A cursor names a place in the order, not an
/// item: items added or removed between pages move nothing else.
fn page<'a, T: ?Sized, K: Ord + Serialize + DeserializeOwned>(
    items: &[&'a T],
    key: impl Fn(&T) -> K,
    after: Option<&str>,
    limit: usize,
) -> ApiResult<(Vec<&'a T>, Option<String>)> {
    let start = match after {
        None => 0,
        Some(text) => {
            let (k, ordinal) = decode_cursor::<K>(text)?;
            let first = items.partition_point(|i| key(i) < k);
            let past = items.partition_point(|i| key(i) <= k);
            first.saturating_add(ordinal).saturating_add(1).min(past)
        }
    };
    let end = start.saturating_add(limit).min(items.len());
    let shown = items.get(start..end).unwrap_or_default().to_vec();
    let next = match shown.last() {
        Some(last) if end < items.len() => {
            let k = key(last);
            let first = items.partition_point(|i| key(i) < k);
            Some(encode_cursor(
                &k,
                end.saturating_sub(1).saturating_sub(first),
            ))
        }
        _ => None,
    };
    Ok((shown, next))
}

#[derive(Serialize)]
struct NodeSummary<'a> {
    node: NodeId,
    subject: Cow<'a, str>,
    token_sha256: &'a str,
    licence: Option<&'a str>,
    iat: i64,
    age_s: u64,
    stale: bool,
    severity: Severity,
    devices_counted: u64,
    tpp_counted: tppguard_proto::units::Tpp,
    gpus: usize,
}

impl<'a> NodeSummary<'a> {
    fn new(n: &'a NodeVerdict, view: &View<'_>) -> Self {
        Self {
            node: n.node,
            subject: view.subject(&n.subject),
            token_sha256: &n.token_sha256,
            licence: n.licence.as_deref(),
            iat: n.iat,
            age_s: n.age_s,
            stale: n.stale,
            severity: n.severity,
            devices_counted: n.devices_counted,
            tpp_counted: n.tpp_counted,
            gpus: n.gpus.len(),
        }
    }
}

/// `GET /v1/nodes`: a page of the nodes, by node id.
pub(super) async fn nodes(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let limit = page_limit(q.limit)?;
    let snapshot = current(&s).await?;
    let verdict = &snapshot.verdict;
    let view = View::of(&principal, &s.redactor);
    let all = view.nodes(verdict);
    let (shown, next) = page(&all, |n| n.node.to_string(), q.after.as_deref(), limit)?;
    let list: Vec<NodeSummary<'_>> = shown.iter().map(|n| NodeSummary::new(n, &view)).collect();
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "total": all.len(),
            "nodes": list,
            "next": next,
        }),
    )
}

pub(super) fn unknown_node(node: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "node_unknown",
        format!(
            "no node {:?} is known: name a node by its id (64 hex digits, GET /v1/nodes) or by a \
             certificate subject only one node has",
            node
        ),
    )
}

/// The node `text` names, as `view` may see it: its node id (64 hex digits), or a certificate
/// subject that exactly one node it sees has. A subject shared by several nodes (machines
/// whose certificates share a subject are distinct nodes) is ambiguous: 409 with their ids.
/// A node the view does not see is unknown; a view that redacts subjects names nodes by id
/// only; a view of the whole fleet may name a node id the verdict does not hold (a node with
/// only rejected attestations, for its history).
pub(super) fn resolve_node(
    verdict: &FleetVerdict,
    view: &View<'_>,
    text: &str,
) -> ApiResult<NodeId> {
    if let Some(id) = NodeId::from_hex(text) {
        let seen = view.is_whole_fleet() || node_of(verdict, id).is_some_and(|n| view.sees_node(n));
        return if seen {
            Ok(id)
        } else {
            Err(unknown_node(text))
        };
    }
    if text.is_empty() || text.len() > crate::store::MAX_SUBJECT_LEN || !view.sees_subjects() {
        return Err(unknown_node(text));
    }
    let ids: Vec<NodeId> = verdict
        .nodes
        .iter()
        .filter(|n| n.subject == text && view.sees_node(n))
        .map(|n| n.node)
        .collect();
    match ids.as_slice() {
        [] => Err(unknown_node(text)),
        [id] => Ok(*id),
        ids => Err(ApiError::new(
            StatusCode::CONFLICT,
            "node_ambiguous",
            format!(
                "{} nodes have the certificate subject {:?}: name one by its node id ({})",
                ids.len(),
                text,
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `GET /v1/nodes/{node}`: the node's verdict and the findings that bear on it.
pub(super) async fn node(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    let snapshot = current(&s).await?;
    let verdict = &snapshot.verdict;
    let view = View::of(&principal, &s.redactor);
    let id = resolve_node(verdict, &view, &node)?;
    let Some(n) = node_of(verdict, id).filter(|n| view.sees_node(n)) else {
        return Err(unknown_node(&node));
    };
    let findings: Vec<view::ShownFinding<'_>> = verdict
        .finding_index()
        .for_node(n)
        .into_iter()
        .filter(|f| view.sees_finding(verdict, f))
        .map(|f| view.finding(verdict, f, true))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "node": view.node(n),
            "findings": findings,
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct HistoryEntry<'a> {
    id: i64,
    subject: Cow<'a, str>,
    iat: i64,
    received_at: i64,
    token_sha256: &'a str,
    outcome: &'static str,
    reason: &'a str,
    sentence: Cow<'a, str>,
    ear: Option<&'a str>,
}

/// `GET /v1/nodes/{node}/history`: the node's attestations, accepted and rejected, newest
/// first (the columns answered only, never the tokens).
pub(super) async fn node_history(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(node): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(bad(format!("limit must be 1 to {MAX_HISTORY}")));
    }
    let snapshot = current(&s).await?;
    let verdict = &snapshot.verdict;
    let view = View::of(&principal, &s.redactor);
    let id = resolve_node(verdict, &view, &node)?;
    let rows = s.store.node_history(&id, limit).await?;
    if rows.is_empty() {
        return Err(unknown_node(&node));
    }
    let held = node_of(verdict, id);
    let entries: Vec<HistoryEntry<'_>> = rows
        .iter()
        .map(|a| HistoryEntry {
            id: a.id,
            subject: view.subject(&a.subject),
            iat: a.iat,
            received_at: a.received_at,
            token_sha256: &a.token_sha256,
            outcome: a.outcome.as_str(),
            reason: &a.reason,
            sentence: match held {
                Some(n) => view.text_about(&a.sentence, n),
                // A node out of the verdict (retired, revoked, only rejected): its own
                // subject is what the row's sentence may name.
                None => {
                    let shown = view.subject(&a.subject);
                    if shown.as_ref() == a.subject.as_str() || a.subject.is_empty() {
                        Cow::Borrowed(a.sentence.as_str())
                    } else {
                        Cow::Owned(a.sentence.replace(a.subject.as_str(), shown.as_ref()))
                    }
                }
            },
            ear: a.ear.as_deref(),
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"node": id, "attestations": entries}),
    )
}

/// `GET /v1/licences`: a page of the licences and their usage, by licence id.
pub(super) async fn licences(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let limit = page_limit(q.limit)?;
    let snapshot = current(&s).await?;
    let verdict = &snapshot.verdict;
    let view = View::of(&principal, &s.redactor);
    let all = view.licences(verdict);
    let (shown, next) = page(&all, |l| l.licence.clone(), q.after.as_deref(), limit)?;
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "total": all.len(),
            "licences": shown,
            "next": next,
        }),
    )
}

/// `GET /v1/countries`: usage by destination country (none for a vendor).
pub(super) async fn countries(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    let snapshot = current(&s).await?;
    let verdict = &snapshot.verdict;
    let view = View::of(&principal, &s.redactor);
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "countries": view.countries(verdict),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FindingsQuery {
    severity: Option<String>,
    code: Option<String>,
    node: Option<String>,
    licence: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// A finding's place in the verdict's order: worst first, then code, licence, node, GPU.
type FindingKey = (u8, String, Option<String>, Option<String>, Option<String>);

fn finding_key(f: &Finding) -> FindingKey {
    let rank = match f.severity {
        Severity::Violation => 0,
        Severity::Unproven => 1,
        Severity::Warning => 2,
        Severity::Info => 3,
    };
    (
        rank,
        f.code.to_owned(),
        f.licence.clone(),
        f.node.clone(),
        f.gpu.clone(),
    )
}

/// `GET /v1/findings`: a page of the findings, in the verdict's order, filtered by severity,
/// code, node and licence.
pub(super) async fn findings(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<FindingsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    if let Some(sev) = &q.severity
        && !["info", "warning", "unproven", "violation"].contains(&sev.as_str())
    {
        return Err(bad(format!(
            "severity {sev:?} is not info, warning, unproven or violation"
        )));
    }
    let limit = page_limit(q.limit)?;
    let snapshot = current(&s).await?;
    let verdict = &snapshot.verdict;
    let view = View::of(&principal, &s.redactor);
    let node = match q.node.as_deref() {
        Some(text) => Some(resolve_node(verdict, &view, text)?.to_string()),
        None => None,
    };
    let all: Vec<&Finding> = verdict
        .findings
        .iter()
        .filter(|f| q.severity.as_deref().is_none_or(|v| f.severity.code() == v))
        .filter(|f| q.code.as_deref().is_none_or(|v| f.code == v))
        .filter(|f| node.as_deref().is_none_or(|v| f.node.as_deref() == Some(v)))
        .filter(|f| {
            q.licence
                .as_deref()
                .is_none_or(|v| f.licence.as_deref() == Some(v))
        })
        .filter(|f| view.sees_finding(verdict, f))
        .collect();
    let (shown, next) = page(&all, finding_key, q.after.as_deref(), limit)?;
    let list: Vec<view::ShownFinding<'_>> = shown
        .into_iter()
        .map(|f| view.finding(verdict, f, true))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "at": verdict.at,
            "rule_set": verdict.rule_set,
            "total": all.len(),
            "findings": list,
            "next": next,
        }),
    )
}

/// `GET /metrics`: the counters, and the usage gauges of the last verdict evaluated (one is
/// evaluated only when none has been yet).
pub(super) async fn metrics(State(s): State<Shared>) -> ApiResult<Response> {
    match s.fleet.latest() {
        Some(snapshot) => s.metrics.usage(&snapshot.verdict),
        // A failing evaluation still serves the counters.
        None => drop(current(&s).await),
    }
    let text = s.metrics.encode().map_err(|e| ApiError::internal(&e))?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
#[path = "reads_http_tests.rs"]
mod http_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once_and_survive_changes_between_pages() {
        let items: Vec<String> = ["a", "b", "b", "b", "c", "d"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let refs: Vec<&String> = items.iter().collect();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (shown, next) = page(&refs, |s: &String| s.clone(), after.as_deref(), 2).unwrap();
            seen.extend(shown.iter().map(|s| s.as_str()));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "b", "b", "c", "d"]);
        // A cursor after the first "b"; the list loses "a" and a "b" meanwhile: the page goes
        // on after the first "b" still.
        let (_, next) = page(&refs, |s: &String| s.clone(), None, 2).unwrap();
        let fewer: Vec<&String> = refs.iter().skip(2).copied().collect();
        let (shown, _) = page(&fewer, |s: &String| s.clone(), next.as_deref(), 10).unwrap();
        assert_eq!(shown, ["b", "c", "d"]);
        // A last page has no next; a bad cursor is a bad query.
        let (shown, next) = page(&refs, |s: &String| s.clone(), None, 6).unwrap();
        assert_eq!((shown.len(), next), (6, None));
        let err = page(&refs, |s: &String| s.clone(), Some("!!"), 2).unwrap_err();
        assert!(err.sentence().contains("after is not a cursor"));
    }

    #[test]
    fn page_limits_are_bounded() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(MAX_PAGE + 1)).is_err());
    }
}
