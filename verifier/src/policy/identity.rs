//! Stage 2, node identity: a node is its key, so the subject and the machine id are facts to
//! compare, never names to merge on. One subject under several keys
//! (`subject_with_several_keys`: cloned images, a reused host name, or a key rotated while
//! the old node still reports) is a warning on each node; one key reporting several machine
//! ids (`node_key_on_several_machines`: a node folder copied to other hosts, whose GPUs then
//! hide behind one node) leaves the node unproven.

use std::collections::BTreeMap;

use super::Reason;
use super::findings::Findings;
use super::latest::Current;

/// Records the identity findings of every node.
pub(super) fn check(nodes: &[Current<'_>], names: &[String], findings: &mut Findings) {
    let mut by_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (n, c) in nodes.iter().enumerate() {
        by_subject
            .entry(c.attestation.node_subject())
            .or_default()
            .push(n);
    }
    for (subject, ns) in by_subject.iter().filter(|(_, ns)| ns.len() > 1) {
        let keys: Vec<String> = ns.iter().filter_map(|&n| names.get(n).cloned()).collect();
        for &n in ns {
            let reason = Reason::SubjectWithSeveralKeys {
                subject: (*subject).to_owned(),
                nodes: keys.clone(),
            };
            findings.push(reason, None, names.get(n).map(|id| (n, id.as_str())), None);
        }
    }
    for (n, c) in nodes.iter().enumerate() {
        if c.machine_ids.len() > 1 {
            let reason = Reason::NodeKeyOnSeveralMachines {
                machine_ids: c.machine_ids.iter().map(|&m| m.to_owned()).collect(),
            };
            findings.push(reason, None, names.get(n).map(|id| (n, id.as_str())), None);
        }
    }
}
