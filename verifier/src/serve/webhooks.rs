//! Webhooks (issue 15): findings delivered to the parties that subscribed to them (a vendor's
//! licences), as signed events, from a persistent outbox.
//!
//! - **Events.** For each finding of a new verdict whose code a webhook subscribes to
//!   (`codes`) and whose licence it names (`licences`), one event: a JWS signed with the
//!   verifier's result key (`typ` [`EVENT_TYP`]), claims `jti` (the event id), `iat`, `iss`,
//!   `tppguard.webhook` and `tppguard.event` {code, severity, sentence, licence, node, gpu,
//!   shipment, figures}. The event id is the hex SHA-256 of (webhook, code, licence, node,
//!   GPU and the finding's stable figures: shipment, UUID, hardware identity, serial, site),
//!   so the same ongoing condition, seen on every attestation, is ONE event; it is queued
//!   with `INSERT ... ON CONFLICT DO NOTHING`.
//! - **When.** Events are written in the transaction of the batch whose verdict produced them
//!   ([`stage_batch`], called by [`super::ingest`]): an event exists exactly when its batch
//!   committed. Findings that come by time alone (`unaccounted_device`, a node turning stale)
//!   are picked up by [`scan_loop`], which evaluates the fleet every `webhook_scan_s` and
//!   queues what it finds (the same ids, so nothing twice).
//! - **Delivery** ([`deliver_loop`], one task per webhook): a due row is claimed (an attempt
//!   counted, and held for the delivery's timeout plus [`CLAIM_MARGIN_S`]) and POSTed with
//!   `Content-Type: application/jose` and `Tppguard-Event-Id`; only a 2xx answer marks it
//!   delivered. Otherwise it is retried after an exponential backoff (`backoff_s` doubled per
//!   attempt, at most `backoff_max_s`, with jitter) until `max_attempts`, then given up and
//!   left in the outbox (`GET /v1/webhooks/outbox`, admins). A receiver that fails or stalls
//!   delays only its own webhook's events. Rows survive restarts; a row whose delivery was
//!   under way when the process died is delivered again, with the SAME id, once its claim
//!   lapses: delivery is at least once, and receivers make processing exactly once by
//!   deduplicating on `Tppguard-Event-Id` (the `jti`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tppguard_proto::jws::{self, Header, SigningKey};

use super::AppState;
use super::api::{ApiError, ApiResult, json_response};
use super::config::WebhookConfig;
use crate::error::Error;
use crate::policy::{Finding, FleetVerdict, Severity, VerifiedAttestation};
use crate::store::{
    MAX_EVENT_PAYLOAD_LEN, MAX_LICENCE_ID_LEN, MAX_OUTBOX_PAGE, NewEvent, OutboxEvent, WriteBatch,
};

/// The `typ` of an event JWS.
pub const EVENT_TYP: &str = "tppguard-event+jwt";
/// The `iss` of an event.
pub const EVENT_ISSUER: &str = "tppguard-verifier";
/// The header naming the event id on each delivery.
pub const EVENT_ID_HEADER: &str = "Tppguard-Event-Id";
/// Seconds a claim outlives the delivery's own timeout.
pub const CLAIM_MARGIN_S: i64 = 2;
/// How often a delivery task looks for due events (its own and other replicas' commits).
const POLL: Duration = Duration::from_secs(1);
/// Most events one delivery task sends before it looks at the clock and the outbox again.
const ROUND: usize = 100;
/// The figures that identify the condition a finding is about (never a changing one such as
/// an age), at the top of the figures or in the shipped `device` they name: part of the
/// event id.
const STABLE_FIGURES: [&str; 6] = [
    "shipment",
    "shipment_id",
    "uuid",
    "hardware_id",
    "serial",
    "site",
];
/// The stable figures that identify a device.
const DEVICE_FIGURES: [&str; 3] = ["uuid", "hardware_id", "serial"];
/// Most bytes of a receiver's answer read (and kept as the error).
const MAX_ANSWER_BYTES: u64 = 1024;

/// The webhooks of the configuration, ready to deliver.
pub(crate) struct Webhooks {
    hooks: Vec<Hook>,
}

struct Hook {
    config: WebhookConfig,
    http: ureq::Agent,
}

impl Webhooks {
    /// The configured webhooks; an unreadable `ca_file` stops the start.
    pub(crate) fn new(configs: &[WebhookConfig]) -> Result<Self, Error> {
        let mut hooks = Vec::with_capacity(configs.len());
        for config in configs {
            let mut tls = ureq::tls::TlsConfig::builder();
            if let Some(ca) = &config.ca_file {
                tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca(config, ca)?));
            }
            let timeout = Duration::from_secs(config.timeout_s);
            let http = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(timeout))
                .timeout_global(Some(timeout))
                .user_agent(concat!("tppguard-verifier/", env!("CARGO_PKG_VERSION")))
                .tls_config(tls.build())
                .build()
                .into();
            hooks.push(Hook {
                config: config.clone(),
                http,
            });
        }
        Ok(Self { hooks })
    }

    /// Whether any webhook is configured.
    pub(crate) fn any(&self) -> bool {
        !self.hooks.is_empty()
    }

    /// The configurations.
    pub(crate) fn configs(&self) -> impl Iterator<Item = &WebhookConfig> {
        self.hooks.iter().map(|h| &h.config)
    }
}

/// The certificates of `ca` for webhook `config`.
fn read_ca(
    config: &WebhookConfig,
    ca: &std::path::Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, Error> {
    let fail = |reason: String| Error::Serve {
        what: format!("webhook {}: ca_file {}", config.name, ca.display()),
        source: std::io::Error::other(reason),
    };
    let pem = crate::chain::read_bounded(ca, 1 << 20)?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate in it: give the receiver's CA (PEM)".to_owned(),
        ));
    }
    Ok(certs)
}

/// The event claims (the JWS payload).
#[derive(Debug, Serialize)]
struct EventClaims<'a> {
    jti: &'a str,
    iat: i64,
    iss: &'static str,
    #[serde(rename = "tppguard.webhook")]
    webhook: &'a str,
    #[serde(rename = "tppguard.event")]
    event: EventBody<'a>,
}

#[derive(Debug, Serialize)]
struct EventBody<'a> {
    code: &'a str,
    severity: Severity,
    sentence: &'a str,
    licence: &'a str,
    node: Option<&'a str>,
    gpu: Option<&'a str>,
    shipment: Option<String>,
    figures: Value,
}

/// The figure `key` of a finding: at the top, or of the shipped `device` it names.
fn stable_figure<'f>(figures: &'f Value, key: &str) -> Option<&'f str> {
    figures
        .get(key)
        .or_else(|| figures.get("device").and_then(|d| d.get(key)))
        .and_then(Value::as_str)
}

/// The deterministic id of the event of `finding` (about `licence`) for webhook `name`.
pub(crate) fn event_id(name: &str, finding: &Finding, licence: &str, figures: &Value) -> String {
    let mut input = Vec::new();
    let mut part = |text: &str| {
        input.extend_from_slice(&u64::try_from(text.len()).unwrap_or(u64::MAX).to_be_bytes());
        input.extend_from_slice(text.as_bytes());
    };
    part(name);
    part(finding.code);
    part(licence);
    // The node: the finding's, else the one its figures name (a shipment finding matched
    // by UUID or serial alone is about the licence only), so the id does not change with how
    // the device was matched.
    let node = finding
        .node
        .as_deref()
        .or_else(|| figures.get("node").and_then(Value::as_str));
    part(node.unwrap_or(""));
    // The submod name only where no device identity names the GPU: a node re-enumerating its
    // GPUs must not make the same device's condition a new event.
    let identified = DEVICE_FIGURES
        .iter()
        .any(|key| stable_figure(figures, key).is_some_and(|v| !v.is_empty()));
    part(if identified {
        ""
    } else {
        finding.gpu.as_deref().unwrap_or("")
    });
    for key in STABLE_FIGURES {
        part(key);
        part(stable_figure(figures, key).unwrap_or(""));
    }
    crate::store::sha256_hex(&input)
}

/// The candidate events of `verdict`: (webhook, finding, licence, event id, figures), for
/// each finding a webhook subscribes to.
fn candidates<'v>(
    webhooks: &'v Webhooks,
    verdict: &'v FleetVerdict,
) -> Vec<(&'v WebhookConfig, &'v Finding, &'v str, String, Value)> {
    let mut out = Vec::new();
    for config in webhooks.configs() {
        for f in &verdict.findings {
            // A licence id the outbox cannot hold is no subscriber's (licence ids are bounded
            // where they are verified); never a reason to fail the batch.
            let Some(licence) = f
                .licence
                .as_deref()
                .filter(|l| l.len() <= MAX_LICENCE_ID_LEN && !l.contains('\0'))
            else {
                continue;
            };
            if !config.codes.iter().any(|c| c == f.code)
                || !config.licences.iter().any(|l| l == licence)
            {
                continue;
            }
            let figures = serde_json::to_value(&f.figures).unwrap_or(Value::Null);
            let id = event_id(&config.name, f, licence, &figures);
            out.push((config, f, licence, id, figures));
        }
    }
    // One finding listed twice (never expected) is one event.
    let mut seen = HashSet::new();
    out.retain(|(_, _, _, id, _)| seen.insert(id.clone()));
    out
}

/// The signed event for one candidate.
fn event(
    key: &SigningKey,
    config: &WebhookConfig,
    f: &Finding,
    licence: &str,
    id: String,
    figures: Value,
    now: i64,
) -> ApiResult<NewEvent> {
    let shipment = ["shipment", "shipment_id"]
        .into_iter()
        .find_map(|k| figures.get(k).and_then(Value::as_str).map(str::to_owned));
    let claims = EventClaims {
        jti: &id,
        iat: now,
        iss: EVENT_ISSUER,
        webhook: &config.name,
        event: EventBody {
            code: f.code,
            severity: f.severity,
            sentence: &f.sentence,
            licence,
            node: f.node.as_deref(),
            gpu: f.gpu.as_deref(),
            shipment,
            figures,
        },
    };
    let sign = |claims: &EventClaims<'_>| {
        let payload = serde_json::to_vec(claims).map_err(|e| ApiError::internal(&e))?;
        jws::sign(&Header::new(key.alg()).with_typ(EVENT_TYP), &payload, key)
            .map_err(|e| ApiError::internal(&e))
    };
    let mut payload = sign(&claims)?;
    if payload.len() > MAX_EVENT_PAYLOAD_LEN {
        // A finding naming very many places (a GPU copied to a thousand nodes): the event
        // still goes, its figures left to GET /v1/findings; never a reason to fail the batch.
        let mut claims = claims;
        claims.event.figures = json!({"omitted": "the figures are larger than an event \
            carries: GET /v1/findings has them"});
        claims.event.sentence = "";
        payload = sign(&claims)?;
    }
    Ok(NewEvent {
        event_id: id,
        webhook: config.name.clone(),
        code: f.code.to_owned(),
        licence: licence.to_owned(),
        payload,
        created_at: now,
    })
}

/// The new events of `verdict` (those not in the outbox yet, by `known`), signed.
fn new_events(
    s: &AppState,
    verdict: &FleetVerdict,
    known: &HashSet<String>,
    now: i64,
) -> ApiResult<Vec<NewEvent>> {
    candidates(&s.webhooks, verdict)
        .into_iter()
        .filter(|(_, _, _, id, _)| !known.contains(id))
        .map(|(config, f, licence, id, figures)| {
            event(&s.result_key, config, f, licence, id, figures, now)
        })
        .collect()
}

/// Issue 15, in the batch's transaction ([`super::ingest`]): the site history of the batch's
/// `accepted` attestations, and the events of `verdict` (the batch's evaluation).
pub(crate) async fn stage_batch(
    s: &AppState,
    tx: &mut WriteBatch<'_>,
    accepted: &[&VerifiedAttestation],
    verdict: &FleetVerdict,
    now: i64,
) -> ApiResult<()> {
    let sightings: Vec<_> = accepted
        .iter()
        .flat_map(|a| super::shipments::sightings(a, a.received_at().unwrap_or(now)))
        .collect();
    tx.record_device_sites(&sightings).await?;
    if !s.webhooks.any() {
        return Ok(());
    }
    let ids: Vec<String> = candidates(&s.webhooks, verdict)
        .into_iter()
        .map(|c| c.3)
        .collect();
    let known = tx.known_events(&ids).await?;
    let events = new_events(s, verdict, &known, now)?;
    tx.enqueue_events(&events).await?;
    Ok(())
}

/// Every `every_s` seconds: the fleet's verdict now (shared with the reads), its events
/// queued. Findings that come by time alone are queued within `every_s`.
pub(crate) async fn scan_loop(s: Arc<AppState>, every_s: u64) {
    if every_s == 0 || !s.webhooks.any() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(every_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = scan(&s).await {
            tracing::warn!(error = e.sentence(), "webhook scan failed; will retry");
        }
    }
}

/// One scan: the verdict now, its new events queued (in a transaction of their own).
pub(crate) async fn scan(s: &Arc<AppState>) -> ApiResult<u64> {
    let snapshot = super::reads::current(s).await?;
    let now = super::api::now(s)?;
    let ids: Vec<String> = candidates(&s.webhooks, &snapshot.verdict)
        .into_iter()
        .map(|c| c.3)
        .collect();
    let known = s.store.known_events(&ids).await?;
    let events = new_events(s, &snapshot.verdict, &known, now)?;
    Ok(s.store.enqueue_events(&events).await?)
}

/// The delivery of webhook number `index`, until the process ends.
pub(crate) async fn deliver_loop(s: Arc<AppState>, index: usize) {
    loop {
        match deliver_due(&s, index).await {
            Ok(n) if n >= ROUND => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = e.sentence(), "webhook delivery paused; will retry"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Claims and delivers the due events of webhook `index`, one at a time, at most [`ROUND`];
/// how many it tried.
pub(crate) async fn deliver_due(s: &Arc<AppState>, index: usize) -> ApiResult<usize> {
    let Some(hook) = s.webhooks.hooks.get(index) else {
        return Ok(0);
    };
    let config = &hook.config;
    let timeout = i64::try_from(config.timeout_s).unwrap_or(i64::MAX);
    for tried in 0..ROUND {
        let now = super::api::now(s)?;
        let until = now.saturating_add(timeout).saturating_add(CLAIM_MARGIN_S);
        let mut claimed = s
            .store
            .claim_due_events(&[config.name.as_str()], now, until, 1)
            .await?;
        let Some(event) = claimed.pop() else {
            return Ok(tried);
        };
        let (event_id, attempts) = (event.event_id.clone(), event.attempts);
        let (http, url) = (hook.http.clone(), config.url.clone());
        let sent = tokio::task::spawn_blocking(move || post(&http, &url, &event))
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let now = super::api::now(s)?;
        match sent {
            Ok(()) => s.store.event_delivered(&event_id, now).await?,
            Err(error) => {
                let give_up = u64::try_from(attempts).unwrap_or(0) >= config.max_attempts;
                let delay = backoff(config, attempts, jitter(&s.rng));
                tracing::warn!(
                    webhook = %config.name,
                    event = %event_id,
                    attempts,
                    give_up,
                    retry_in_s = delay,
                    error = %error,
                    "webhook delivery failed"
                );
                s.store
                    .event_failed(&event_id, now, now.saturating_add(delay), give_up, &error)
                    .await?;
            }
        }
    }
    Ok(ROUND)
}

/// POSTs `event` to `url`: `Ok` on a 2xx answer only; otherwise what went wrong.
fn post(http: &ureq::Agent, url: &str, event: &OutboxEvent) -> Result<(), String> {
    let mut resp = http
        .post(url)
        .header("Content-Type", "application/jose")
        .header(EVENT_ID_HEADER, event.event_id.as_str())
        .send(event.payload.as_str())
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .unwrap_or_default();
    Err(format!(
        "HTTP {status}: {}",
        tppguard_proto::text::escape(body.trim())
    ))
}

/// A random draw for the jitter: `u32` (0 when the random source fails: no jitter then).
fn jitter(rng: &ring::rand::SystemRandom) -> u32 {
    let mut bytes = [0u8; 4];
    if rng.fill(&mut bytes).is_err() {
        return 0;
    }
    u32::from_be_bytes(bytes)
}

/// Seconds until the next attempt after `attempts` attempts: `backoff_s` doubled per attempt
/// after the first, at most `backoff_max_s`, its second half drawn at random (`jitter` /
/// 2^32 of it), so receivers coming back are not hit by every verifier at once. At least 1.
pub(crate) fn backoff(config: &WebhookConfig, attempts: i64, jitter: u32) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    let full = config
        .backoff_s
        .saturating_mul(1u64 << doublings)
        .min(config.backoff_max_s);
    let half = full / 2;
    let spread = u128::from(full - half);
    let drawn = u64::try_from((spread * u128::from(jitter)) >> 32).unwrap_or(0);
    i64::try_from(half.saturating_add(drawn).max(1)).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboxQuery {
    pending: Option<bool>,
    limit: Option<usize>,
}

/// `GET /v1/webhooks/outbox` (admins): the outbox, newest first, without the payloads;
/// `pending=true` for the undelivered rows only (given up ones included).
pub(super) async fn outbox(
    State(s): State<Arc<AppState>>,
    query: Result<Query<OutboxQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| super::reads::bad_query(&e))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_OUTBOX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be 1 to {MAX_OUTBOX_PAGE}"),
        ));
    }
    let events = s.store.outbox(q.pending.unwrap_or(false), limit).await?;
    let webhooks: Vec<Value> = s
        .webhooks
        .configs()
        .map(|w| json!({"name": w.name, "licences": w.licences, "codes": w.codes}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"webhooks": webhooks, "events": events}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reason;
    use tppguard_proto::jws::Alg;

    fn config(name: &str, licences: &[&str], codes: &[&str]) -> WebhookConfig {
        WebhookConfig {
            name: name.to_owned(),
            url: "http://127.0.0.1:9/hook".to_owned(),
            licences: licences.iter().map(|l| (*l).to_owned()).collect(),
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            ca_file: None,
            timeout_s: 1,
            max_attempts: 3,
            backoff_s: 10,
            backoff_max_s: 100,
        }
    }

    /// A synthetic finding of `code` about `licence` at `node`/`gpu`, figures `figures`
    /// (the policy's own reasons are its business: only code, licence, node, GPU and the
    /// stable figures make an event).
    fn finding(code: &'static str, licence: &str, node: &str, gpu: &str) -> Finding {
        Finding {
            code,
            severity: Severity::Violation,
            sentence: format!("{code} of {gpu} at {node}"),
            node: Some(node.to_owned()),
            gpu: Some(gpu.to_owned()),
            licence: Some(licence.to_owned()),
            figures: Reason::NodeUnassigned {
                licences: 1,
                gpus: 8,
                site: Some("fra-1".to_owned()),
            },
            also_about: Vec::new(),
        }
    }

    fn verdict(findings: Vec<Finding>) -> FleetVerdict {
        let (licences, attestations, rule_set, _) =
            crate::policy::bench_support::synthetic_fleet(1, 1, 1);
        let mut v = crate::policy::evaluate(
            &licences,
            &[],
            &rule_set,
            &attestations,
            crate::policy::bench_support::AT,
        );
        v.findings = findings;
        v
    }

    /// A node re-enumerating its GPUs (the shipped device now `gpu3`), or the device matched
    /// another way (its node on the finding or only in the figures), is the same condition:
    /// one event id.
    #[test]
    fn a_named_device_keeps_its_event_id_across_submods_and_matches() {
        let figures =
            serde_json::json!({"shipment": "S", "node": "n1", "device": {"uuid": "GPU-1"}});
        let at_gpu0 = finding("diverted_device", "LIC-A", "n1", "gpu0");
        let at_gpu3 = finding("diverted_device", "LIC-A", "n1", "gpu3");
        let id = event_id("vendor-a", &at_gpu0, "LIC-A", &figures);
        assert_eq!(event_id("vendor-a", &at_gpu3, "LIC-A", &figures), id);
        let mut licence_only = at_gpu0.clone();
        licence_only.node = None;
        licence_only.gpu = None;
        assert_eq!(event_id("vendor-a", &licence_only, "LIC-A", &figures), id);
        // Another device, or another node, is another event.
        let other = serde_json::json!({"shipment": "S", "node": "n1", "device": {"uuid": "GPU-2"}});
        assert_ne!(event_id("vendor-a", &at_gpu0, "LIC-A", &other), id);
        let elsewhere =
            serde_json::json!({"shipment": "S", "node": "n2", "device": {"uuid": "GPU-1"}});
        assert_ne!(event_id("vendor-a", &licence_only, "LIC-A", &elsewhere), id);
    }

    #[test]
    fn one_ongoing_condition_is_one_event_per_webhook() {
        let a = finding("diverted_device", "LIC-A", "n1", "gpu0");
        let figures = serde_json::to_value(&a.figures).unwrap();
        let id = event_id("vendor-a", &a, "LIC-A", &figures);
        assert_eq!(id.len(), 64);
        // The same finding seen again (another sentence, say with an age): the same id.
        let mut again = a.clone();
        again.sentence = "seen again 3600 s later".to_owned();
        let mut changing = figures.clone();
        changing["age_s"] = serde_json::json!(3600);
        assert_eq!(event_id("vendor-a", &again, "LIC-A", &changing), id);
        // Another webhook, licence, node, GPU, code or site: another event.
        let other_site = serde_json::json!({"site": "ams-1"});
        // The shipped device a shipment finding names counts too.
        let shipped = |uuid: &str| serde_json::json!({"shipment": "S", "device": {"uuid": uuid}});
        assert_ne!(
            event_id("vendor-a", &a, "LIC-A", &shipped("GPU-1")),
            event_id("vendor-a", &a, "LIC-A", &shipped("GPU-2"))
        );
        for other in [
            event_id("vendor-b", &a, "LIC-A", &figures),
            event_id("vendor-a", &a, "LIC-B", &figures),
            event_id(
                "vendor-a",
                &finding("diverted_device", "LIC-A", "n2", "gpu0"),
                "LIC-A",
                &figures,
            ),
            event_id(
                "vendor-a",
                &finding("diverted_device", "LIC-A", "n1", "gpu1"),
                "LIC-A",
                &figures,
            ),
            event_id(
                "vendor-a",
                &finding("unaccounted_device", "LIC-A", "n1", "gpu0"),
                "LIC-A",
                &figures,
            ),
            event_id("vendor-a", &a, "LIC-A", &other_site),
        ] {
            assert_ne!(other, id);
        }
        // Fields cannot run into each other: ("ab", "c") is not ("a", "bc").
        let x = finding("diverted_device", "LIC-A", "ab", "c");
        let y = finding("diverted_device", "LIC-A", "a", "bc");
        assert_ne!(
            event_id("w", &x, "LIC-A", &figures),
            event_id("w", &y, "LIC-A", &figures)
        );
    }

    #[test]
    fn a_webhook_gets_only_its_codes_about_its_licences() {
        let hooks = Webhooks::new(&[
            config("vendor-a", &["LIC-A"], &["diverted_device"]),
            config(
                "vendor-b",
                &["LIC-B"],
                &["diverted_device", "unaccounted_device"],
            ),
        ])
        .unwrap();
        let mut bare = finding("diverted_device", "LIC-A", "n9", "gpu0");
        bare.licence = None;
        let v = verdict(vec![
            finding("diverted_device", "LIC-A", "n1", "gpu0"),
            finding("unaccounted_device", "LIC-A", "n1", "gpu1"),
            finding("diverted_device", "LIC-B", "n2", "gpu0"),
            finding("unaccounted_device", "LIC-B", "n2", "gpu1"),
            finding("duplicate_device", "LIC-B", "n2", "gpu2"),
            finding("diverted_device", "LIC-C", "n3", "gpu0"),
            bare,
        ]);
        let got: Vec<(&str, &str, &str)> = candidates(&hooks, &v)
            .iter()
            .map(|(w, f, l, _, _)| (w.name.as_str(), f.code, *l))
            .collect();
        assert_eq!(
            got,
            [
                ("vendor-a", "diverted_device", "LIC-A"),
                ("vendor-b", "diverted_device", "LIC-B"),
                ("vendor-b", "unaccounted_device", "LIC-B"),
            ],
            "vendor A never receives vendor B's events, nor anything unsubscribed"
        );
    }

    #[test]
    fn the_payload_is_a_signed_event_naming_its_id() {
        let pkcs8 = SigningKey::generate_pkcs8(Alg::EdDSA).unwrap();
        let key = SigningKey::from_pkcs8(Alg::EdDSA, &pkcs8).unwrap();
        let w = config("vendor-a", &["LIC-A"], &["diverted_device"]);
        let f = finding("diverted_device", "LIC-A", "n1", "gpu0");
        let figures = serde_json::json!({"shipment": "SHP-7", "uuid": "gpu-1"});
        let id = event_id(&w.name, &f, "LIC-A", &figures);
        let e = event(&key, &w, &f, "LIC-A", id.clone(), figures, 1_700_000_000).unwrap();
        assert_eq!(
            (e.event_id.as_str(), e.webhook.as_str()),
            (id.as_str(), "vendor-a")
        );
        let checked = jws::decode(&e.payload)
            .unwrap()
            .verify(&key.verifying_key())
            .unwrap();
        assert_eq!(checked.header().typ.as_deref(), Some(EVENT_TYP));
        let claims: Value = serde_json::from_slice(checked.payload()).unwrap();
        assert_eq!(claims["jti"], id.as_str());
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["iss"], EVENT_ISSUER);
        let body = &claims["tppguard.event"];
        assert_eq!(body["code"], "diverted_device");
        assert_eq!(body["severity"], "violation");
        assert_eq!(body["licence"], "LIC-A");
        assert_eq!(body["node"], "n1");
        assert_eq!(body["gpu"], "gpu0");
        assert_eq!(body["shipment"], "SHP-7");
        assert_eq!(body["figures"]["uuid"], "gpu-1");
        // Another key does not verify it.
        let other =
            SigningKey::from_pkcs8(Alg::EdDSA, &SigningKey::generate_pkcs8(Alg::EdDSA).unwrap())
                .unwrap();
        assert!(
            jws::decode(&e.payload)
                .unwrap()
                .verify(&other.verifying_key())
                .is_err()
        );
    }

    #[test]
    fn an_event_too_large_for_the_outbox_goes_without_its_figures() {
        let key =
            SigningKey::from_pkcs8(Alg::EdDSA, &SigningKey::generate_pkcs8(Alg::EdDSA).unwrap())
                .unwrap();
        let w = config("vendor-a", &["LIC-A"], &["duplicate_device"]);
        let mut f = finding("duplicate_device", "LIC-A", "n1", "gpu0");
        f.sentence = "x".repeat(MAX_EVENT_PAYLOAD_LEN);
        let figures = serde_json::json!({"seen_in": vec!["n/gpu0"; 20_000]});
        let id = event_id(&w.name, &f, "LIC-A", &figures);
        let e = event(&key, &w, &f, "LIC-A", id.clone(), figures, 1).unwrap();
        assert!(e.payload.len() <= MAX_EVENT_PAYLOAD_LEN);
        let claims: Value = serde_json::from_slice(
            jws::decode(&e.payload)
                .unwrap()
                .verify(&key.verifying_key())
                .unwrap()
                .payload(),
        )
        .unwrap();
        assert_eq!(claims["jti"], id.as_str());
        assert!(claims["tppguard.event"]["figures"]["omitted"].is_string());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_its_second_half() {
        let w = config("w", &["L"], &["c"]);
        assert_eq!(backoff(&w, 1, 0), 5);
        assert_eq!(backoff(&w, 1, u32::MAX), 9);
        assert_eq!(backoff(&w, 2, 0), 10);
        assert_eq!(backoff(&w, 3, 0), 20);
        assert_eq!(backoff(&w, 4, 0), 40);
        assert_eq!(backoff(&w, 5, 0), 50, "capped at 100, half of it fixed");
        assert_eq!(backoff(&w, 1_000_000, 1 << 31), 75);
        assert_eq!(backoff(&w, 64, u32::MAX), 99);
        let tiny = WebhookConfig {
            backoff_s: 1,
            backoff_max_s: 1,
            ..w
        };
        assert_eq!(backoff(&tiny, 1, 0), 1, "never 0");
        assert_eq!(backoff(&tiny, 0, u32::MAX), 1);
        let rng = ring::rand::SystemRandom::new();
        let draws: HashSet<u32> = (0..8).map(|_| jitter(&rng)).collect();
        assert!(draws.len() > 1, "drawn at random");
    }
}
