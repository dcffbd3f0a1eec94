//! The findings collector every stage writes to: the list, and the worst severity seen per
//! node and per licence (for their verdicts).

use tppguard_proto::identity::NodeId;

use super::{Finding, Reason, Severity};

/// A licence a finding is about: its index in the evaluation and its id.
pub(super) type Ref<'a> = Option<(usize, &'a str)>;

/// A node a finding is about: its index in the evaluation and its id (written as hex only
/// when a finding names it: most nodes of a fleet have none).
pub(super) type NodeRef = Option<(usize, NodeId)>;

/// Collects findings and the worst severity per node and per licence.
pub(super) struct Findings {
    pub(super) list: Vec<Finding>,
    pub(super) node_severity: Vec<Severity>,
    pub(super) licence_severity: Vec<Severity>,
}

impl Findings {
    pub(super) fn new(nodes: usize, licences: usize) -> Self {
        Self {
            list: Vec::new(),
            node_severity: vec![Severity::Info; nodes],
            licence_severity: vec![Severity::Info; licences],
        }
    }

    /// Records `reason` about a licence, a node and a GPU (each optional).
    pub(super) fn push(
        &mut self,
        reason: Reason,
        licence: Ref<'_>,
        node: NodeRef,
        gpu: Option<&str>,
    ) {
        let severity = reason.severity();
        if let Some((i, _)) = node {
            self.raise_node(i, severity);
        }
        if let Some(s) = licence.and_then(|(i, _)| self.licence_severity.get_mut(i)) {
            *s = (*s).max(severity);
        }
        self.list.push(Finding::new(
            reason,
            licence.map(|(_, id)| id),
            node.map(|(_, n)| n.to_string()),
            gpu,
        ));
    }

    /// Raises node `n`'s severity to at least `severity` (a finding recorded on another node
    /// that bears on this one too).
    pub(super) fn raise_node(&mut self, n: usize, severity: Severity) {
        if let Some(s) = self.node_severity.get_mut(n) {
            *s = (*s).max(severity);
        }
    }

    /// The finding last pushed.
    pub(super) fn last_mut(&mut self) -> Option<&mut Finding> {
        self.list.last_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_worst_severity_per_node_and_licence() {
        let mut f = Findings::new(2, 1);
        let stale = Reason::StaleNode {
            iat: 0,
            age_s: 10,
            max_age_s: 5,
        };
        let n1 = NodeId::from_spki_der(b"n1");
        f.push(stale, Some((0, "lic")), Some((1, n1)), None);
        f.raise_node(0, Severity::Warning);
        assert_eq!(f.node_severity, [Severity::Warning, Severity::Unproven]);
        assert_eq!(f.licence_severity, [Severity::Unproven]);
        assert_eq!(f.list.len(), 1);
        assert_eq!(f.list[0].node, Some(n1.to_string()));
    }
}
