//! What each role sees of the fleet: pure functions from a [`FleetVerdict`] and the caller's
//! [`View`] to what a read answers.
//!
//! - `operator` and `admin` see everything.
//! - `regulator` sees everything through the redactions `[regulator] redact` names
//!   ([`Redact`]): each redacted value (a GPU serial, a GPU UUID, a certificate subject) is
//!   replaced by `redacted-` and 12 hex digits of a keyed hash of it, wherever it appears
//!   (the node, its GPUs, the findings' sentences and figures, the history). The same value
//!   reads the same everywhere within one verifier process, so counts, duplicates and
//!   findings still make sense; the key is drawn when the verifier starts, so a guess cannot
//!   be hashed and compared, and tokens differ between processes.
//! - `vendor` sees only the licences its credential names, the nodes assigned to them and the
//!   findings about those alone (a finding that also names a node outside them, or the whole
//!   fleet, is withheld); no countries (a country's figures and allocation add up every
//!   licensee's usage), and the fleet verdict is the worst of its licences'. A node outside
//!   its licences is answered as an unknown node.
//! - `node` and `metrics` see no licence and no node.

use std::borrow::Cow;
use std::collections::HashSet;

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tppguard_proto::identity::NodeId;

use super::auth::{Principal, Role};
use tppguard_proto::ruleset::{RuleSetPosture, RuleSetStatus};

use crate::policy::{
    CountryUsage, Finding, FleetVerdict, LicenceUsage, NodeVerdict, Reason, Severity, Verdict,
};

/// What `[regulator] redact` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redact {
    /// GPU serial numbers.
    Serials,
    /// GPU UUIDs.
    Uuids,
    /// Node certificate subjects (then a regulator names nodes by node id only).
    Subjects,
    /// GPU hardware identities from verified evidence (`hardware_id`, the device key's hash,
    /// and `ecid`, the chip's id): as identifying as a serial.
    HardwareIds,
}

impl Redact {
    /// Every value, as the configuration spells it.
    pub const ALL: [Self; 4] = [
        Self::Serials,
        Self::Uuids,
        Self::Subjects,
        Self::HardwareIds,
    ];
    /// What a regulator does not see when `[regulator] redact` is not given.
    pub const DEFAULT: [Self; 3] = [Self::Serials, Self::Uuids, Self::HardwareIds];

    /// The configuration's spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Serials => "serials",
            Self::Uuids => "uuids",
            Self::Subjects => "subjects",
            Self::HardwareIds => "hardware_ids",
        }
    }

    /// The value `name` spells.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Replaces the values a regulator must not see by keyed hashes of them.
pub(crate) struct Redactor {
    redact: Vec<Redact>,
    key: hmac::Key,
}

impl Redactor {
    /// Redacts `redact` under `key`.
    pub(crate) fn new(redact: &[Redact], key: hmac::Key) -> Self {
        Self {
            redact: redact.to_vec(),
            key,
        }
    }

    fn redacts(&self, what: Redact) -> bool {
        self.redact.contains(&what)
    }

    /// The stand-in for `value` (a `what`): the same value gives the same stand-in; a GPU
    /// serial or UUID in any ASCII case is the same value (the policy compares them so).
    fn token(&self, what: Redact, value: &str) -> String {
        let value = match what {
            Redact::Subjects => value.to_owned(),
            Redact::Serials | Redact::Uuids | Redact::HardwareIds => value.to_ascii_lowercase(),
        };
        let mut input = Vec::with_capacity(value.len().saturating_add(9));
        input.extend_from_slice(what.name().as_bytes());
        input.push(0);
        input.extend_from_slice(value.as_bytes());
        let tag = hmac::sign(&self.key, &input);
        let short = tag.as_ref().get(..6).unwrap_or_default();
        format!("redacted-{}", crate::policy::hex(short))
    }

    /// A certificate subject as a regulator may see it: its stand-in when subjects are
    /// redacted (lifecycle records name nodes that are no longer in the verdict).
    pub(crate) fn subject(&self, subject: &str) -> String {
        self.value(Redact::Subjects, subject)
    }

    fn value(&self, what: Redact, value: &str) -> String {
        if self.redacts(what) {
            self.token(what, value)
        } else {
            value.to_owned()
        }
    }

    /// The values of `node` to hide, each with its stand-in. The policy compares GPU serials
    /// and UUIDs without regard to ASCII case and writes them lower-cased in its findings
    /// (duplicates), so each is hidden in every case it may appear in, under one stand-in.
    fn secrets_of(&self, node: &NodeVerdict, out: &mut Vec<(String, String)>) {
        let mut push = |what: Redact, v: &str, token: &str| {
            if self.redacts(what) && !v.is_empty() && !out.iter().any(|(s, _)| s == v) {
                out.push((v.to_owned(), token.to_owned()));
            }
        };
        push(
            Redact::Subjects,
            &node.subject,
            &self.token(Redact::Subjects, &node.subject),
        );
        for g in &node.gpus {
            let evidence = g.gpu_evidence.as_deref();
            for (what, value) in [
                (Redact::Serials, g.serial.as_ref()),
                (Redact::Uuids, g.uuid.as_ref()),
                (
                    Redact::HardwareIds,
                    evidence.and_then(|e| e.hardware_id.as_ref()),
                ),
                (Redact::HardwareIds, evidence.and_then(|e| e.ecid.as_ref())),
            ] {
                let Some(v) = value else { continue };
                if !self.redacts(what) {
                    continue;
                }
                let token = self.token(what, v);
                for form in [v.clone(), v.to_ascii_lowercase(), v.to_ascii_uppercase()] {
                    push(what, &form, &token);
                }
            }
        }
    }
}

/// Every string in `value` with each secret replaced by its stand-in.
fn replace_in(value: &mut Value, secrets: &[(String, String)]) {
    match value {
        Value::String(s) => {
            for (secret, token) in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), token);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_in(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_in(v, secrets)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The node `id` of `verdict` (its nodes are in node id order).
pub(crate) fn node_of(verdict: &FleetVerdict, id: NodeId) -> Option<&NodeVerdict> {
    verdict
        .nodes
        .binary_search_by(|n| n.node.cmp(&id))
        .ok()
        .and_then(|i| verdict.nodes.get(i))
}

/// The nodes a finding names: its node, the others it bears on, and the node a
/// `diverted_device` matched by UUID or serial alone names in its figures only (so a
/// regulator's redactor still hides that node's GPU identities).
fn named_nodes<'v>(verdict: &'v FleetVerdict, f: &Finding) -> Vec<Option<&'v NodeVerdict>> {
    let in_figures = match &f.figures {
        Reason::DivertedDevice { node, .. } if f.node.is_none() => Some(node),
        _ => None,
    };
    f.node
        .iter()
        .chain(&f.also_about)
        .chain(in_figures)
        .map(|n| NodeId::from_hex(n).and_then(|id| node_of(verdict, id)))
        .collect()
}

/// The findings about shipped GPUs (issue 15): their `licence` is the shipment's, and a
/// vendor sees them about its licences wherever the GPU is.
pub(crate) const SHIPMENT_CODES: [&str; 4] = [
    "diverted_device",
    "unaccounted_device",
    "unshipped_device",
    "shipped_device_duplicated",
];

/// What one caller may see.
pub(crate) struct View<'a> {
    redactor: Option<&'a Redactor>,
    /// `None`: every licence; otherwise only these licence ids.
    licences: Option<HashSet<&'a str>>,
}

impl<'a> View<'a> {
    /// The view of `principal` (a regulator's through `redactor`).
    pub(crate) fn of(principal: &'a Principal, redactor: &'a Redactor) -> Self {
        match principal.role {
            Role::Operator | Role::Admin => Self::all(),
            Role::Regulator => Self {
                redactor: Some(redactor),
                licences: None,
            },
            Role::Vendor => Self {
                redactor: None,
                licences: Some(principal.licences.iter().map(String::as_str).collect()),
            },
            Role::Node | Role::Metrics => Self {
                redactor: None,
                licences: Some(HashSet::new()),
            },
        }
    }

    /// Everything, unredacted.
    pub(crate) fn all() -> Self {
        Self {
            redactor: None,
            licences: None,
        }
    }

    /// Sees everything unredacted: answers can be served straight from the verdict.
    pub(crate) fn is_everything(&self) -> bool {
        self.redactor.is_none() && self.licences.is_none()
    }

    /// Sees the whole fleet (perhaps redacted).
    pub(crate) fn is_whole_fleet(&self) -> bool {
        self.licences.is_none()
    }

    /// May name nodes by certificate subject (subjects are not redacted for it).
    pub(crate) fn sees_subjects(&self) -> bool {
        self.redactor.is_none_or(|r| !r.redacts(Redact::Subjects))
    }

    pub(crate) fn sees_licence(&self, id: &str) -> bool {
        self.licences.as_ref().is_none_or(|set| set.contains(id))
    }

    pub(crate) fn sees_node(&self, n: &NodeVerdict) -> bool {
        self.licences.is_none() || n.licence.as_deref().is_some_and(|l| self.sees_licence(l))
    }

    /// Sees `f`: everyone unscoped does; a scoped view sees a finding about its licences or
    /// nodes that names no node outside them, and a shipment finding (issue 15,
    /// [`SHIPMENT_CODES`]) about one of its licences wherever the GPU turned up (the node is
    /// named by id; its subject is shown only to a view that sees the node).
    pub(crate) fn sees_finding(&self, verdict: &FleetVerdict, f: &Finding) -> bool {
        if self.licences.is_none() {
            return true;
        }
        if SHIPMENT_CODES.contains(&f.code) {
            return f.licence.as_deref().is_some_and(|l| self.sees_licence(l));
        }
        let nodes = named_nodes(verdict, f);
        if nodes.is_empty() && f.licence.is_none() {
            return false;
        }
        nodes.iter().all(|n| n.is_some_and(|n| self.sees_node(n)))
            && f.licence.as_deref().is_none_or(|l| self.sees_licence(l))
    }

    /// A GPU serial, UUID or hardware identity (`what`) as this view shows it (shipments,
    /// issue 15).
    pub(crate) fn redacted(&self, what: Redact, value: &str) -> String {
        match self.redactor {
            Some(r) => r.value(what, value),
            None => value.to_owned(),
        }
    }

    /// A certificate subject as this view shows it.
    pub(crate) fn subject<'s>(&self, subject: &'s str) -> Cow<'s, str> {
        match self.redactor {
            Some(r) if r.redacts(Redact::Subjects) => {
                Cow::Owned(r.token(Redact::Subjects, subject))
            }
            _ => Cow::Borrowed(subject),
        }
    }

    /// `text` (a sentence about `node`) as this view shows it.
    pub(crate) fn text_about<'s>(&self, text: &'s str, node: &NodeVerdict) -> Cow<'s, str> {
        let Some(r) = self.redactor else {
            return Cow::Borrowed(text);
        };
        let mut secrets = Vec::new();
        r.secrets_of(node, &mut secrets);
        let mut value = Value::String(text.to_owned());
        replace_in(&mut value, &secrets);
        match value {
            Value::String(s) if s != text => Cow::Owned(s),
            _ => Cow::Borrowed(text),
        }
    }

    /// A node as this view shows it.
    pub(crate) fn node<'n>(&self, n: &'n NodeVerdict) -> Cow<'n, NodeVerdict> {
        let Some(r) = self.redactor else {
            return Cow::Borrowed(n);
        };
        let mut shown = n.clone();
        shown.subject = r.value(Redact::Subjects, &n.subject);
        for g in &mut shown.gpus {
            g.serial = g.serial.as_deref().map(|s| r.value(Redact::Serials, s));
            g.uuid = g.uuid.as_deref().map(|u| r.value(Redact::Uuids, u));
            if let Some(e) = g.gpu_evidence.as_mut().map(std::sync::Arc::make_mut) {
                e.hardware_id = e
                    .hardware_id
                    .as_deref()
                    .map(|h| r.value(Redact::HardwareIds, h));
                e.ecid = e.ecid.as_deref().map(|h| r.value(Redact::HardwareIds, h));
            }
        }
        Cow::Owned(shown)
    }

    /// A finding (with the subject of the node it names when `with_subject`) as this view
    /// shows it: redacted values are replaced in its sentence and figures too.
    pub(crate) fn finding<'v>(
        &self,
        verdict: &'v FleetVerdict,
        f: &'v Finding,
        with_subject: bool,
    ) -> ShownFinding<'v> {
        let named = named_nodes(verdict, f);
        let subject = f
            .node
            .as_ref()
            .and(named.first().copied().flatten())
            .filter(|n| with_subject && self.sees_node(n))
            .map(|n| n.subject.as_str());
        let Some(r) = self.redactor else {
            return ShownFinding::Plain {
                finding: f,
                subject,
            };
        };
        let plain = ShownFinding::Plain {
            finding: f,
            subject,
        };
        let mut value = serde_json::to_value(&plain).unwrap_or(Value::Null);
        let mut secrets = Vec::new();
        for n in named.into_iter().flatten() {
            r.secrets_of(n, &mut secrets);
        }
        // A retired or revoked node is not in the verdict: the subject its lifecycle finding
        // carries (`subject`, `certificate`) is hidden from the figures themselves.
        if r.redacts(Redact::Subjects) {
            for key in ["subject", "certificate"] {
                if let Some(Value::String(s)) = value.get("figures").and_then(|f| f.get(key))
                    && !s.is_empty()
                    && !secrets.iter().any(|(v, _)| v == s)
                {
                    secrets.push((s.clone(), r.token(Redact::Subjects, s)));
                }
            }
        }
        replace_in(&mut value, &secrets);
        ShownFinding::Redacted(value)
    }

    /// The fleet's verdict as this view sees it: a scoped view's is the worst of its
    /// licences'.
    pub(crate) fn verdict(&self, verdict: &FleetVerdict) -> Verdict {
        if self.licences.is_none() {
            return verdict.verdict;
        }
        self.licences(verdict)
            .iter()
            .map(|l| l.verdict)
            .max()
            .unwrap_or(Verdict::Compliant)
    }

    /// The licences it sees, in the verdict's order (by id).
    pub(crate) fn licences<'v>(&self, verdict: &'v FleetVerdict) -> Vec<&'v LicenceUsage> {
        verdict
            .licences
            .iter()
            .filter(|l| self.sees_licence(&l.licence))
            .collect()
    }

    /// The countries it sees: all of them, or none for a scoped view.
    pub(crate) fn countries<'v>(&self, verdict: &'v FleetVerdict) -> &'v [CountryUsage] {
        if self.licences.is_none() {
            &verdict.countries
        } else {
            &[]
        }
    }

    /// The nodes it sees, in node id order.
    pub(crate) fn nodes<'v>(&self, verdict: &'v FleetVerdict) -> Vec<&'v NodeVerdict> {
        verdict.nodes.iter().filter(|n| self.sees_node(n)).collect()
    }
}

/// A finding as a read answers it: the policy's finding and, when it names a node, that
/// node's certificate subject (for display); redacted, as JSON with the values replaced.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ShownFinding<'v> {
    Plain {
        #[serde(flatten)]
        finding: &'v Finding,
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<&'v str>,
    },
    Redacted(Value),
}

/// The findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct SeverityCounts {
    pub(crate) violation: u64,
    pub(crate) unproven: u64,
    pub(crate) warning: u64,
    pub(crate) info: u64,
}

impl SeverityCounts {
    fn add(&mut self, s: Severity) {
        let slot = match s {
            Severity::Violation => &mut self.violation,
            Severity::Unproven => &mut self.unproven,
            Severity::Warning => &mut self.warning,
            Severity::Info => &mut self.info,
        };
        *slot = slot.saturating_add(1);
    }
}

/// What a fleet summary counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    /// Nodes.
    pub(crate) nodes: u64,
    /// Of those, nodes whose latest attestation is stale.
    pub(crate) stale_nodes: u64,
    /// GPUs reported by them.
    pub(crate) gpus: u64,
    /// Devices counted against licences.
    pub(crate) devices_counted: u64,
    /// Findings, by severity.
    pub(crate) findings: SeverityCounts,
}

/// What `view` counts of `verdict`.
pub(crate) fn counts(verdict: &FleetVerdict, view: &View<'_>) -> Counts {
    let mut c = Counts::default();
    for n in verdict.nodes.iter().filter(|n| view.sees_node(n)) {
        c.nodes = c.nodes.saturating_add(1);
        c.stale_nodes = c.stale_nodes.saturating_add(u64::from(n.stale));
        c.gpus = c
            .gpus
            .saturating_add(u64::try_from(n.gpus.len()).unwrap_or(u64::MAX));
        c.devices_counted = c.devices_counted.saturating_add(n.devices_counted);
    }
    for f in verdict
        .findings
        .iter()
        .filter(|f| view.sees_finding(verdict, f))
    {
        c.findings.add(f.severity);
    }
    c
}

/// `GET /v1/fleet` (the summary): the verdicts and counts, no node.
#[derive(Debug, Serialize)]
pub(crate) struct Summary<'v> {
    pub(crate) at: i64,
    pub(crate) rule_set: &'v str,
    pub(crate) rule_set_version: &'v str,
    pub(crate) rule_set_status: RuleSetStatus,
    /// The enforcement posture (status, origin, variant and modifications).
    pub(crate) posture: &'v RuleSetPosture,
    pub(crate) verdict: Verdict,
    pub(crate) counts: Counts,
    pub(crate) licences: Vec<&'v LicenceUsage>,
    pub(crate) countries: &'v [CountryUsage],
}

/// The summary of `verdict` as `view` sees it, with `counts` (from [`counts`]).
pub(crate) fn summary<'v>(
    verdict: &'v FleetVerdict,
    view: &View<'_>,
    counts: Counts,
) -> Summary<'v> {
    Summary {
        at: verdict.at,
        rule_set: &verdict.rule_set,
        rule_set_version: &verdict.rule_set_version,
        rule_set_status: verdict.rule_set_status,
        posture: &verdict.posture,
        verdict: view.verdict(verdict),
        counts,
        licences: view.licences(verdict),
        countries: view.countries(verdict),
    }
}

/// `GET /v1/fleet?view=full`: the verdict with every node and finding, as `view` sees it
/// (the shape of [`FleetVerdict`]).
#[derive(Debug, Serialize)]
pub(crate) struct Full<'v> {
    pub(crate) at: i64,
    pub(crate) rule_set: &'v str,
    pub(crate) rule_set_version: &'v str,
    pub(crate) rule_set_status: RuleSetStatus,
    /// The enforcement posture (status, origin, variant and modifications).
    pub(crate) posture: &'v RuleSetPosture,
    pub(crate) verdict: Verdict,
    pub(crate) nodes: Vec<Cow<'v, NodeVerdict>>,
    pub(crate) licences: Vec<&'v LicenceUsage>,
    pub(crate) countries: &'v [CountryUsage],
    pub(crate) findings: Vec<ShownFinding<'v>>,
}

/// The whole verdict as `view` sees it (for a view that sees everything, serialize the
/// verdict itself instead).
pub(crate) fn full<'v>(verdict: &'v FleetVerdict, view: &View<'_>) -> Full<'v> {
    Full {
        at: verdict.at,
        rule_set: &verdict.rule_set,
        rule_set_version: &verdict.rule_set_version,
        rule_set_status: verdict.rule_set_status,
        posture: &verdict.posture,
        verdict: view.verdict(verdict),
        nodes: view
            .nodes(verdict)
            .into_iter()
            .map(|n| view.node(n))
            .collect(),
        licences: view.licences(verdict),
        countries: view.countries(verdict),
        findings: verdict
            .findings
            .iter()
            .filter(|f| view.sees_finding(verdict, f))
            .map(|f| view.finding(verdict, f, false))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{bench_support, evaluate};

    /// Three nodes: 0 and 2 under licence SYN-DE-0000, 1 under SYN-DE-0001, and node 2
    /// reporting node 0's first GPU (a duplicate: a finding naming both).
    fn fleet() -> FleetVerdict {
        let (licences, mut attestations, rule_set, at) = bench_support::synthetic_fleet(3, 2, 2);
        let copied = attestations[0].claims().submods.values().next().cloned();
        let mut claims = attestations[2].claims().clone();
        if let (Some(gpu), Some(first)) = (copied, claims.submods.values_mut().next()) {
            *first = gpu;
        }
        let a = &attestations[2];
        attestations[2] = crate::policy::VerifiedAttestation::from_stored(
            claims,
            a.node_id(),
            a.node_subject().to_owned(),
            a.certified_site().cloned(),
            None,
            *a.token_sha256(),
        );
        evaluate(&licences, &[], &rule_set, &attestations, at)
    }

    /// Node `i` of the fleet (its verdict lists nodes by node id).
    fn nth(v: &FleetVerdict, i: usize) -> &NodeVerdict {
        let subject = format!("node-{i:07}");
        v.nodes.iter().find(|n| n.subject == subject).unwrap()
    }

    fn principal(role: Role, licences: &[&str]) -> Principal {
        Principal {
            name: "test".to_owned(),
            role,
            licences: licences.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn redactor(redact: &[Redact]) -> Redactor {
        Redactor::new(redact, hmac::Key::new(hmac::HMAC_SHA256, b"test key"))
    }

    fn serials(v: &FleetVerdict) -> Vec<String> {
        v.nodes
            .iter()
            .flat_map(|n| n.gpus.iter().filter_map(|g| g.serial.clone()))
            .collect()
    }

    /// Issue 13: a GPU's hardware identity and ECID from verified evidence are as
    /// identifying as a serial: a regulator sees stand-ins for them, in the GPU and in a
    /// duplicate finding naming them, and an operator sees them.
    #[test]
    fn a_regulator_sees_stand_ins_for_hardware_identities() {
        use crate::gpu_evidence::GpuEvidenceReport;
        let mut v = fleet();
        let hardware_id = "ab".repeat(32);
        let ecid = "41431D480FE5E87274";
        v.nodes[0].gpus[0].gpu_evidence = Some(std::sync::Arc::new(GpuEvidenceReport {
            checks: Vec::new(),
            hardware_id: Some(hardware_id.clone()),
            ecid: Some(ecid.to_owned()),
            facts: None,
        }));
        let node = v.nodes[0].node;
        v.findings.push(crate::policy::Finding {
            code: "duplicate_device",
            severity: Severity::Warning,
            sentence: format!("GPU unknown (hardware identity {hardware_id}) appears twice"),
            node: Some(node.to_string()),
            gpu: Some("gpu0".to_owned()),
            licence: None,
            figures: crate::policy::Reason::GpuWithoutIdentity { gpus: 1 },
            also_about: Vec::new(),
        });
        let r = redactor(&Redact::DEFAULT);
        let regulator = principal(Role::Regulator, &[]);
        let full_text = serde_json::to_string(&full(&v, &View::of(&regulator, &r))).unwrap();
        assert!(!full_text.contains(&hardware_id), "{full_text}");
        assert!(
            !full_text
                .to_ascii_lowercase()
                .contains(&ecid.to_ascii_lowercase())
        );
        let shown = View::of(&regulator, &r).node(&v.nodes[0]).into_owned();
        let e = shown.gpus[0].gpu_evidence.as_deref().unwrap();
        assert!(e.hardware_id.as_deref().unwrap().starts_with("redacted-"));
        assert!(e.ecid.as_deref().unwrap().starts_with("redacted-"));
        let operator = principal(Role::Operator, &[]);
        let plain = serde_json::to_string(&full(&v, &View::of(&operator, &r))).unwrap();
        assert!(plain.contains(&hardware_id) && plain.contains(ecid));
    }

    #[test]
    fn an_operator_sees_everything() {
        let v = fleet();
        let r = redactor(&Redact::DEFAULT);
        let p = principal(Role::Operator, &[]);
        let view = View::of(&p, &r);
        assert!(view.is_everything());
        assert_eq!(view.nodes(&v).len(), 3);
        assert_eq!(view.licences(&v).len(), 2);
        assert_eq!(view.countries(&v).len(), v.countries.len());
        assert_eq!(view.verdict(&v), v.verdict);
        let c = counts(&v, &view);
        assert_eq!((c.nodes, c.gpus), (3, 6));
        let total =
            c.findings.violation + c.findings.unproven + c.findings.warning + c.findings.info;
        assert_eq!(total, u64::try_from(v.findings.len()).unwrap());
        assert_eq!(view.node(&v.nodes[0]).as_ref(), &v.nodes[0]);
    }

    #[test]
    fn a_regulator_sees_consistent_stand_ins_for_serials_and_uuids() {
        let v = fleet();
        let r = redactor(&Redact::DEFAULT);
        let p = principal(Role::Regulator, &[]);
        let view = View::of(&p, &r);
        assert!(!view.is_everything() && view.is_whole_fleet() && view.sees_subjects());
        let full = serde_json::to_string(&full(&v, &view)).unwrap();
        for secret in serials(&v) {
            assert!(!full.contains(&secret), "{secret} leaks: {full}");
        }
        // In any ASCII case: the policy writes a duplicated GPU's UUID lower-cased.
        let full_lower = full.to_ascii_lowercase();
        for n in &v.nodes {
            for g in &n.gpus {
                let uuid = g.uuid.as_deref().unwrap().to_ascii_lowercase();
                assert!(!full_lower.contains(&uuid), "uuid {uuid} leaks: {full}");
                let serial = g.serial.as_deref().unwrap().to_ascii_lowercase();
                assert!(!full_lower.contains(&serial), "serial {serial} leaks");
            }
            assert!(
                full.contains(&n.subject),
                "subjects are not redacted by default"
            );
        }
        // The duplicated GPU reads the same at both nodes, and in the finding about it.
        let shown: Vec<_> = (0..3).map(|i| view.node(nth(&v, i)).into_owned()).collect();
        let dup = shown[0].gpus[0].serial.clone().unwrap();
        assert!(dup.starts_with("redacted-") && dup.len() == "redacted-".len() + 12);
        assert_eq!(shown[2].gpus[0].serial.as_deref(), Some(dup.as_str()));
        assert_ne!(shown[0].gpus[1].serial.as_deref(), Some(dup.as_str()));
        assert_ne!(shown[1].gpus[0].serial.as_deref(), Some(dup.as_str()));
        let finding = v
            .findings
            .iter()
            .find(|f| f.code == "duplicate_device")
            .expect("a duplicate finding");
        let text = serde_json::to_string(&view.finding(&v, finding, true)).unwrap();
        let raw = serde_json::to_string(finding).unwrap();
        let gpu = &nth(&v, 0).gpus[0];
        let (serial, uuid) = (gpu.serial.as_deref().unwrap(), gpu.uuid.as_deref().unwrap());
        assert!(raw.contains(serial) || raw.contains(uuid), "{raw}");
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains(&serial.to_ascii_lowercase())
                && !lower.contains(&uuid.to_ascii_lowercase()),
            "{text}"
        );
        assert!(text.contains(&dup) || text.contains("redacted-"), "{text}");
        // Counts are the operator's.
        assert_eq!(counts(&v, &view), counts(&v, &View::all()));
    }

    #[test]
    fn a_regulator_may_have_subjects_redacted_too() {
        let v = fleet();
        let r = redactor(&Redact::ALL);
        let p = principal(Role::Regulator, &[]);
        let view = View::of(&p, &r);
        assert!(!view.sees_subjects());
        let shown = view.node(nth(&v, 1));
        assert!(shown.subject.starts_with("redacted-"));
        assert_eq!(view.subject(&nth(&v, 1).subject), shown.subject.as_str());
        let text = serde_json::to_string(&full(&v, &view)).unwrap();
        for n in &v.nodes {
            assert!(!text.contains(&n.subject), "{} leaks", n.subject);
        }
        let sentence = format!("about {}", nth(&v, 1).subject);
        assert_eq!(
            view.text_about(&sentence, nth(&v, 1)),
            format!("about {}", shown.subject)
        );
    }

    /// A retired or revoked node is not in the verdict; its lifecycle finding still names its
    /// subject, which a regulator with subjects redacted does not see.
    #[test]
    fn a_regulator_does_not_see_the_subjects_of_nodes_out_of_the_verdict() {
        let v = fleet();
        let r = redactor(&Redact::ALL);
        let p = principal(Role::Regulator, &[]);
        let view = View::of(&p, &r);
        let mut lc = crate::policy::lifecycle::Lifecycle::default();
        let (gone, revoked) = (
            NodeId::from_bytes([0xee; 32]),
            NodeId::from_bytes([0xdd; 32]),
        );
        lc.retire_node(gone, "CN=secret-node", "decommissioned", 10, "ops");
        lc.certificate_revoked(revoked, "CN=stolen-node", "0a:0b");
        let (_, findings) = lc.apply(Vec::new());
        assert_eq!(findings.len(), 2);
        for f in &findings {
            let raw = serde_json::to_string(f).unwrap();
            let shown = serde_json::to_string(&view.finding(&v, f, true)).unwrap();
            assert!(raw.contains("-node"), "{raw}");
            assert!(
                !shown.contains("CN=secret-node") && !shown.contains("CN=stolen-node"),
                "{shown}"
            );
            assert!(shown.contains("redacted-"), "{shown}");
        }
        // The operator sees them as recorded.
        let all = View::all();
        let shown = serde_json::to_string(&all.finding(&v, &findings[0], true)).unwrap();
        assert!(shown.contains("CN=secret-node"), "{shown}");
    }

    #[test]
    fn a_vendor_sees_only_its_licences_nodes_and_findings() {
        let v = fleet();
        let r = redactor(&Redact::DEFAULT);
        let p = principal(Role::Vendor, &["SYN-DE-0001"]);
        let view = View::of(&p, &r);
        assert!(!view.is_whole_fleet());
        let nodes = view.nodes(&v);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].licence.as_deref(), Some("SYN-DE-0001"));
        assert!(!view.sees_node(nth(&v, 0)) && !view.sees_node(nth(&v, 2)));
        assert!(view.sees_node(nth(&v, 1)));
        let licences: Vec<_> = view
            .licences(&v)
            .iter()
            .map(|l| l.licence.as_str())
            .collect();
        assert_eq!(licences, ["SYN-DE-0001"]);
        assert!(view.countries(&v).is_empty());
        for f in v.findings.iter().filter(|f| view.sees_finding(&v, f)) {
            assert_ne!(f.code, "duplicate_device", "names other licences' nodes");
            assert!(f.licence.as_deref().is_none_or(|l| l == "SYN-DE-0001"));
        }
        let c = counts(&v, &view);
        assert_eq!((c.nodes, c.gpus), (1, 2));
        // The other vendor sees the duplicate: both its nodes are under SYN-DE-0000.
        let other = principal(Role::Vendor, &["SYN-DE-0000"]);
        let other = View::of(&other, &r);
        assert!(
            v.findings
                .iter()
                .any(|f| f.code == "duplicate_device" && other.sees_finding(&v, f))
        );
        assert_eq!(other.verdict(&v), v.licences[0].verdict);
    }

    #[test]
    fn a_vendor_sees_the_shipment_findings_of_its_licences_only_wherever_the_gpu_is() {
        let mut v = fleet();
        // A shipped GPU of SYN-DE-0001 turned up in a node of SYN-DE-0000.
        let elsewhere = nth(&v, 0).clone();
        assert_eq!(elsewhere.licence.as_deref(), Some("SYN-DE-0000"));
        let mut diverted = v.findings[0].clone();
        diverted.code = "diverted_device";
        diverted.licence = Some("SYN-DE-0001".to_owned());
        diverted.node = Some(elsewhere.node.to_string());
        diverted.also_about.clear();
        v.findings.push(diverted.clone());
        let r = redactor(&Redact::DEFAULT);
        let a = principal(Role::Vendor, &["SYN-DE-0001"]);
        let a = View::of(&a, &r);
        assert!(!a.sees_node(&elsewhere));
        assert!(a.sees_finding(&v, &diverted), "its GPU, wherever it is");
        // Named by node id, never by the subject of a node it does not see.
        let shown = serde_json::to_value(a.finding(&v, &diverted, true)).unwrap();
        assert_eq!(shown["node"], elsewhere.node.to_string());
        assert!(shown.get("subject").is_none(), "{shown}");
        // Vendor B (the node's own licence) does not see A's shipment finding.
        let b = principal(Role::Vendor, &["SYN-DE-0000"]);
        let b = View::of(&b, &r);
        assert!(b.sees_node(&elsewhere));
        assert!(!b.sees_finding(&v, &diverted));
        // Without a licence, no vendor sees it.
        let mut bare = diverted.clone();
        bare.licence = None;
        assert!(!a.sees_finding(&v, &bare) && !b.sees_finding(&v, &bare));
        // The operator sees it, with the subject.
        let all = View::all();
        let shown = serde_json::to_value(all.finding(&v, &diverted, true)).unwrap();
        assert_eq!(shown["subject"], elsewhere.subject);
    }

    #[test]
    fn a_node_or_metrics_credential_sees_no_fleet() {
        let v = fleet();
        let r = redactor(&Redact::DEFAULT);
        for role in [Role::Node, Role::Metrics] {
            let p = principal(role, &[]);
            let view = View::of(&p, &r);
            assert!(view.nodes(&v).is_empty() && view.licences(&v).is_empty());
            assert_eq!(counts(&v, &view), Counts::default());
            assert!(full(&v, &view).findings.is_empty());
        }
    }

    #[test]
    fn redact_names_read_back() {
        for r in Redact::ALL {
            assert_eq!(Redact::parse(r.name()), Some(r));
        }
        assert_eq!(Redact::parse("names"), None);
    }
}
