//! Prometheus metrics (prometheus-client, OpenMetrics text): attestations by outcome and
//! reason code, verification latency, TPP used per licence and stale nodes (both set from the
//! latest evaluation), bytes of rejected attestations, and requests refused at a limit.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::FleetVerdict;

type Labels = Vec<(&'static str, String)>;

/// The verifier's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    attestations: Family<Labels, Counter>,
    latency: Histogram,
    tpp_used: Family<Labels, Gauge<f64, AtomicU64>>,
    devices_used: Family<Labels, Gauge>,
    stale_nodes: Gauge,
    auth_failures: Family<Labels, Counter>,
    credential_reloads: Counter,
    rejected_bytes: Counter,
    refused: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tppguard_verifier");
        let attestations = Family::<Labels, Counter>::default();
        registry.register(
            "attestations",
            "Attestations received, by outcome (accepted, rejected) and reason code",
            attestations.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        registry.register(
            "verification_seconds",
            "Time to verify one attestation (signature, chain, claims, nonce)",
            latency.clone(),
        );
        let tpp_used = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "licence_tpp_used",
            "Aggregate TPP counted against each licence at the latest evaluation",
            tpp_used.clone(),
        );
        let devices_used = Family::<Labels, Gauge>::default();
        registry.register(
            "licence_devices_used",
            "Devices counted against each licence at the latest evaluation",
            devices_used.clone(),
        );
        let stale_nodes = Gauge::default();
        registry.register(
            "stale_nodes",
            "Nodes whose latest accepted attestation is older than their licence allows",
            stale_nodes.clone(),
        );
        let auth_failures = Family::<Labels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused for their credential, by reason (missing, malformed, \
             unknown_token, wrong_secret, expired, revoked, certificate_rejected, forbidden)",
            auth_failures.clone(),
        );
        let credential_reloads = Counter::default();
        registry.register(
            "credential_reloads",
            "Reloads of the API tokens from the database (at most one per second)",
            credential_reloads.clone(),
        );
        let rejected_bytes = Counter::default();
        registry.register(
            "rejected_bytes",
            "Bytes of attestation bodies read and rejected (a record keeps only a hash and a \
             short prefix of each)",
            rejected_bytes.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "refused",
            "Requests refused at a limit, by code (overloaded, challenge_rate_limited, \
             too_many_outstanding_challenges)",
            refused.clone(),
        );
        Self {
            registry,
            auth_failures,
            credential_reloads,
            rejected_bytes,
            refused,
            attestations,
            latency,
            tpp_used,
            devices_used,
            stale_nodes,
        }
    }

    /// Counts one attestation.
    pub fn attestation(&self, outcome: &'static str, code: &'static str) {
        self.attestations
            .get_or_create(&vec![
                ("outcome", outcome.to_owned()),
                ("code", code.to_owned()),
            ])
            .inc();
    }

    /// Counts one request refused for its credential.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts one reload of the API tokens.
    pub fn credential_reload(&self) {
        self.credential_reloads.inc();
    }

    /// Counts the bytes of one rejected attestation body.
    pub fn rejected_bytes(&self, bytes: usize) {
        self.rejected_bytes
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Counts one request refused at a limit.
    pub fn refused(&self, code: &'static str) {
        self.refused
            .get_or_create(&vec![("code", code.to_owned())])
            .inc();
    }

    /// Records one verification's duration.
    pub fn verification(&self, took: Duration) {
        self.latency.observe(took.as_secs_f64());
    }

    /// Sets the usage gauges from a verdict.
    pub fn usage(&self, verdict: &FleetVerdict) {
        self.tpp_used.clear();
        self.devices_used.clear();
        for l in &verdict.licences {
            let labels = vec![
                ("licence", l.licence.clone()),
                ("rule_set", verdict.rule_set.clone()),
            ];
            self.tpp_used
                .get_or_create(&labels)
                .set(l.tpp.used.as_f64());
            self.devices_used
                .get_or_create(&labels)
                .set(i64::try_from(l.devices.used).unwrap_or(i64::MAX));
        }
        let stale = verdict.nodes.iter().filter(|n| n.stale).count();
        self.stale_nodes
            .set(i64::try_from(stale).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
