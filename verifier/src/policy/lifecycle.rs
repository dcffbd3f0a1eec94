//! Stage 0, lifecycle: what an administrator, the licence authority or a CRL took out of the
//! evaluation, applied before stage 1 as a filter with findings. Pure: the records are inputs
//! ([`Lifecycle`]), gathered by the caller (`serve` from its database and CRLs).
//!
//! - A licence revoked by the licence authority ([`Reason::LicenceRevoked`]) or retired by an
//!   administrator ([`Reason::LicenceRetired`]) no longer counts: it is left out, so the nodes
//!   at its sites are unlicensed.
//! - A retired node ([`Reason::NodeRetired`]) and a node whose certificate chain a CRL revokes
//!   ([`Reason::NodeCertificateRevoked`]) no longer count: their attestations are left out.
//! - A stored record that cannot be used ([`Reason::StoredRecordUnusable`]) is reported.

use std::collections::{BTreeMap, HashMap};

use tppguard_proto::identity::NodeId;

use super::{Finding, Reason, VerifiedLicence};

/// Why a licence was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Revoked {
    reason: String,
    at: i64,
}

/// Who retired something, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Retired {
    reason: String,
    at: i64,
    by: String,
}

/// The lifecycle inputs of an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    revoked_licences: BTreeMap<String, Revoked>,
    retired_licences: BTreeMap<String, Retired>,
    retired_nodes: HashMap<NodeId, (String, Retired)>,
    revoked_nodes: HashMap<NodeId, (String, String)>,
    unusable: BTreeMap<String, String>,
}

impl Lifecycle {
    /// The licence authority revoked licence `id` at `at` for `reason`.
    pub fn revoke_licence(&mut self, id: &str, reason: &str, at: i64) {
        self.revoked_licences.insert(
            id.to_owned(),
            Revoked {
                reason: reason.to_owned(),
                at,
            },
        );
    }

    /// `by` retired licence `id` at `at` for `reason`.
    pub fn retire_licence(&mut self, id: &str, reason: &str, at: i64, by: &str) {
        self.retired_licences.insert(
            id.to_owned(),
            Retired {
                reason: reason.to_owned(),
                at,
                by: by.to_owned(),
            },
        );
    }

    /// `by` retired node `node` (certificate subject `subject`) at `at` for `reason`.
    pub fn retire_node(&mut self, node: NodeId, subject: &str, reason: &str, at: i64, by: &str) {
        let retired = Retired {
            reason: reason.to_owned(),
            at,
            by: by.to_owned(),
        };
        self.retired_nodes
            .insert(node, (subject.to_owned(), retired));
    }

    /// A CRL revokes certificate `certificate` (serial `serial`) of node `node`'s chain.
    pub fn certificate_revoked(&mut self, node: NodeId, certificate: &str, serial: &str) {
        self.revoked_nodes
            .insert(node, (certificate.to_owned(), serial.to_owned()));
    }

    /// Stored record `record` cannot be used, because of `problem`.
    pub fn unusable(&mut self, record: &str, problem: &str) {
        self.unusable.insert(record.to_owned(), problem.to_owned());
    }

    /// Whether node `node`'s attestations count (it is neither retired nor revoked).
    pub fn counts(&self, node: NodeId) -> bool {
        !self.retired_nodes.contains_key(&node) && !self.revoked_nodes.contains_key(&node)
    }

    /// Whether licence `id` counts (neither revoked nor retired).
    pub fn licence_counts(&self, id: &str) -> bool {
        !self.revoked_licences.contains_key(id) && !self.retired_licences.contains_key(id)
    }

    /// The licences that count, and the findings of this stage: one per revocation, licence
    /// retirement, node retirement, revoked node (not also retired) and unusable record.
    pub fn apply(&self, licences: Vec<VerifiedLicence>) -> (Vec<VerifiedLicence>, Vec<Finding>) {
        let mut findings = Vec::new();
        for (id, r) in &self.revoked_licences {
            let held = licences.iter().any(|l| l.licence().id() == id);
            let reason = Reason::LicenceRevoked {
                reason: r.reason.clone(),
                revoked_at: r.at,
                held,
            };
            findings.push(Finding::new(reason, Some(id), None, None));
        }
        for (id, r) in &self.retired_licences {
            let reason = Reason::LicenceRetired {
                reason: r.reason.clone(),
                retired_at: r.at,
                retired_by: r.by.clone(),
            };
            findings.push(Finding::new(reason, Some(id), None, None));
        }
        for (node, (subject, r)) in &self.retired_nodes {
            let reason = Reason::NodeRetired {
                subject: subject.clone(),
                reason: r.reason.clone(),
                retired_at: r.at,
                retired_by: r.by.clone(),
            };
            findings.push(Finding::new(reason, None, Some(node.to_string()), None));
        }
        for (node, (certificate, serial)) in &self.revoked_nodes {
            if self.retired_nodes.contains_key(node) {
                continue;
            }
            let reason = Reason::NodeCertificateRevoked {
                certificate: certificate.clone(),
                serial: serial.clone(),
            };
            findings.push(Finding::new(reason, None, Some(node.to_string()), None));
        }
        for (record, problem) in &self.unusable {
            let reason = Reason::StoredRecordUnusable {
                record: record.clone(),
                problem: problem.clone(),
            };
            findings.push(Finding::new(reason, None, None, None));
        }
        let kept = licences
            .into_iter()
            .filter(|l| self.licence_counts(l.licence().id()))
            .collect();
        (kept, findings)
    }
}

#[cfg(test)]
mod tests {
    use tppguard_proto::licence::Licence;

    use super::*;
    use crate::policy::Severity;

    fn licence(id: &str) -> VerifiedLicence {
        let text = include_str!("../../../examples/licence.toml");
        let mut toml: toml::Table = toml::from_str(text).unwrap();
        toml.insert("id".to_owned(), toml::Value::String(id.to_owned()));
        let licence = Licence::from_toml_str(&toml::to_string(&toml).unwrap()).unwrap();
        VerifiedLicence::new(licence, "CN=signer".to_owned())
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn nothing_recorded_changes_nothing() {
        let lc = Lifecycle::default();
        let (kept, findings) = lc.apply(vec![licence("A"), licence("B")]);
        assert_eq!(kept.len(), 2);
        assert!(findings.is_empty());
        assert!(lc.counts(NodeId::from_bytes([1; 32])));
    }

    #[test]
    fn revoked_and_retired_licences_are_left_out_with_findings() {
        let mut lc = Lifecycle::default();
        lc.revoke_licence("A", "terms \u{1b}[2J breached", 100);
        lc.revoke_licence("GONE", "never held", 100);
        lc.retire_licence("B", "superseded", 200, "alice");
        let (kept, findings) = lc.apply(vec![licence("A"), licence("B"), licence("C")]);
        let ids: Vec<&str> = kept.iter().map(|l| l.licence().id()).collect();
        assert_eq!(ids, ["C"]);
        assert_eq!(
            codes(&findings),
            ["licence_revoked", "licence_revoked", "licence_retired"]
        );
        let a = &findings[0];
        assert_eq!(a.licence.as_deref(), Some("A"));
        assert_eq!(a.severity, Severity::Warning);
        assert!(
            !a.sentence.contains('\u{1b}') && a.sentence.contains("\\u{1b}"),
            "the reason is escaped: {}",
            a.sentence
        );
        assert!(
            findings[1].sentence.contains("does not hold"),
            "{}",
            findings[1].sentence
        );
        assert!(findings[2].sentence.contains("alice retired this licence"));
    }

    #[test]
    fn retired_and_revoked_nodes_do_not_count() {
        let (a, b, c) = (
            NodeId::from_bytes([1; 32]),
            NodeId::from_bytes([2; 32]),
            NodeId::from_bytes([3; 32]),
        );
        let mut lc = Lifecycle::default();
        lc.retire_node(a, "CN=a", "decommissioned", 10, "ops");
        lc.certificate_revoked(b, "CN=b", "0a:0b");
        lc.certificate_revoked(a, "CN=a", "01");
        lc.unusable("licence L", "bad");
        assert!(!lc.counts(a) && !lc.counts(b) && lc.counts(c));
        let (_, findings) = lc.apply(Vec::new());
        assert_eq!(
            codes(&findings),
            [
                "node_retired",
                "node_certificate_revoked",
                "stored_record_unusable"
            ],
            "a retired node is not also reported revoked"
        );
        assert_eq!(findings[0].severity, Severity::Info);
        assert_eq!(findings[0].node, Some(a.to_string()));
        assert_eq!(findings[1].severity, Severity::Unproven);
        assert_eq!(findings[1].node, Some(b.to_string()));
        assert!(findings[1].sentence.contains("serial 0a:0b"));
    }
}
