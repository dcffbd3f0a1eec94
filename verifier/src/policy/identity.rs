//! Stage 2, node identity: a node is its key, so the subject and the machine id are facts to
//! compare, never names to merge on. One subject under several keys
//! (`subject_with_several_keys`: cloned images, a reused host name, or a key rotated while
//! the old node still reports) is a warning on each node; one key reporting several machine
//! ids (`node_key_on_several_machines`: a node folder copied to other hosts, whose GPUs then
//! hide behind one node) leaves the node unproven.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::Reason;
use super::findings::Findings;
use super::latest::Current;

/// Records the identity findings of every node.
pub(super) fn check(nodes: &[Current<'_>], findings: &mut Findings) {
    // The first node seen under each subject; only subjects seen again are collected.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
    let mut shared: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (n, c) in nodes.iter().enumerate() {
        let subject = c.attestation.node_subject();
        match first.entry(subject) {
            Entry::Vacant(v) => {
                v.insert(n);
            }
            Entry::Occupied(o) => shared
                .entry(subject)
                .or_insert_with(|| vec![*o.get()])
                .push(n),
        }
    }
    for (subject, run) in &shared {
        let mut keys: Vec<String> = run
            .iter()
            .filter_map(|&n| nodes.get(n).map(|c| c.attestation.node_id.to_string()))
            .collect();
        keys.sort_unstable();
        for &n in run {
            let reason = Reason::SubjectWithSeveralKeys {
                subject: (*subject).to_owned(),
                nodes: keys.clone(),
            };
            let id = nodes.get(n).map(|c| (n, c.attestation.node_id));
            findings.push(reason, None, id, None);
        }
    }
    for (n, c) in nodes.iter().enumerate() {
        if c.machine_ids.len() > 1 {
            let reason = Reason::NodeKeyOnSeveralMachines {
                machine_ids: c.machine_ids.iter().map(|&m| m.to_owned()).collect(),
            };
            let id = nodes.get(n).map(|c| (n, c.attestation.node_id));
            findings.push(reason, None, id, None);
        }
    }
}
