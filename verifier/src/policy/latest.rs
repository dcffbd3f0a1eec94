//! Stage 1, the latest evidence per node: of the attestations given (a folder of tokens, or a
//! stored fleet chained with new arrivals), which one is each node's current state, and what
//! the others say about the node's history.
//!
//! A node is its key ([`NodeId`]). Its current attestation is the newest by the verifier's
//! receipt when known (`serve`), else by `iat`, then by token SHA-256. Without a receipt time
//! (`check`), an attestation dated more than [`MAX_CLOCK_SKEW_S`] after the evaluation
//! instant is never current while an older one exists: the node's own clock must not choose
//! its state. A node with only such attestations is still evaluated (its GPUs count), and is
//! flagged.

use std::collections::HashMap;

use tppguard_proto::identity::NodeId;

use super::{MAX_CLOCK_SKEW_S, VerifiedAttestation};

/// A node's current attestation and what its other attestations add.
pub(super) struct Current<'a> {
    /// The attestation the node is evaluated on.
    pub(super) attestation: &'a VerifiedAttestation,
    /// The greatest `iat` dated after the evaluation instant plus the skew, when the node
    /// sent one (and no receipt time orders it).
    pub(super) future_iat: Option<i64>,
    /// Every distinct `host.machine_id` the node's attestations report, sorted, when they
    /// report more than one; empty otherwise.
    pub(super) machine_ids: Vec<&'a str>,
    /// The site of the attestation before the current one, when it differs from the
    /// current's (certified, else claimed).
    pub(super) earlier_site: Option<&'a str>,
}

/// The site an attestation places its node at: certified, else claimed.
pub(super) fn site_of(a: &VerifiedAttestation) -> Option<&str> {
    a.certified_site
        .as_ref()
        .map(|s| s.as_str())
        .or_else(|| a.claims.site())
}

/// Which of a node's attestations is the newer: the one the verifier received last (`serve`),
/// else the greater `iat`, then the greater token SHA-256.
fn recency(a: &VerifiedAttestation) -> (Option<i64>, i64, &[u8; 32]) {
    (a.received_at, a.claims.iat, &a.token_sha256)
}

#[derive(Default)]
struct Group<'a> {
    best: Option<&'a VerifiedAttestation>,
    before_best: Option<&'a VerifiedAttestation>,
    future: Option<&'a VerifiedAttestation>,
    /// The first machine id seen, and any other (kept apart: most nodes report one, and a
    /// fleet should not allocate a list per node for it).
    machine_id: Option<&'a str>,
    other_machine_ids: Vec<&'a str>,
}

impl<'a> Group<'a> {
    fn add(&mut self, a: &'a VerifiedAttestation, at: i64) {
        if let Some(id) = a.claims.host.machine_id.as_deref() {
            match self.machine_id {
                None => self.machine_id = Some(id),
                Some(first) if first != id && !self.other_machine_ids.contains(&id) => {
                    self.other_machine_ids.push(id);
                }
                Some(_) => {}
            }
        }
        let future = a.received_at.is_none() && a.claims.iat > at.saturating_add(MAX_CLOCK_SKEW_S);
        if future {
            if self.future.is_none_or(|f| recency(a) > recency(f)) {
                self.future = Some(a);
            }
            return;
        }
        match self.best {
            Some(b) if recency(a) <= recency(b) => {
                if self.before_best.is_none_or(|p| recency(a) > recency(p)) {
                    self.before_best = Some(a);
                }
            }
            _ => {
                self.before_best = self.best;
                self.best = Some(a);
            }
        }
    }

    fn into_current(self) -> Option<Current<'a>> {
        let attestation = self.best.or(self.future)?;
        let earlier_site = self
            .before_best
            .and_then(site_of)
            .filter(|&earlier| Some(earlier) != site_of(attestation));
        let mut machine_ids = self.other_machine_ids;
        if !machine_ids.is_empty() {
            machine_ids.extend(self.machine_id);
            machine_ids.sort_unstable();
        }
        Some(Current {
            attestation,
            future_iat: self.future.map(|f| f.claims.iat),
            machine_ids,
            earlier_site,
        })
    }
}

/// Each node's current attestation at `at`, in memory order: the later stages walk the fleet
/// several times, and walking a large fleet where it lies is much faster than in node id
/// order (a hash order). Nothing depends on this order: [`super::evaluate`] sorts its output
/// by node id.
pub(super) fn select<'a>(
    attestations: impl IntoIterator<Item = &'a VerifiedAttestation>,
    at: i64,
) -> Vec<Current<'a>> {
    let attestations = attestations.into_iter();
    let mut groups: HashMap<NodeId, Group<'a>> = HashMap::with_capacity(attestations.size_hint().0);
    for a in attestations {
        groups.entry(a.node_id).or_default().add(a, at);
    }
    let mut nodes: Vec<Current<'a>> = groups
        .into_values()
        .filter_map(Group::into_current)
        .collect();
    nodes.sort_unstable_by_key(|c| std::ptr::from_ref(c.attestation).addr());
    nodes
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attestation_at, dgx};
    use super::*;

    const AT: i64 = 1_790_000_000;

    #[test]
    fn newest_by_receipt_beats_a_later_iat() {
        let early_iat = attestation_at("n", AT - 10, Some(AT - 1), None, &dgx("n"));
        let late_iat = attestation_at("n", AT, Some(AT - 5), None, &dgx("n"));
        let nodes = select([&late_iat, &early_iat], AT);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].attestation.claims.iat, AT - 10, "received last");
    }

    #[test]
    fn without_receipt_a_future_iat_is_not_current_while_an_older_exists() {
        let old = attestation_at("n", AT - 60, None, None, &dgx("n"));
        let ahead = attestation_at("n", AT + 10 * 365 * 86_400, None, None, &dgx("n"));
        let nodes = select([&ahead, &old], AT);
        assert_eq!(nodes[0].attestation.claims.iat, AT - 60);
        assert_eq!(nodes[0].future_iat, Some(AT + 10 * 365 * 86_400));
        let alone = select([&ahead], AT);
        assert_eq!(alone[0].attestation.claims.iat, AT + 10 * 365 * 86_400);
        let within_skew = attestation_at("n", AT + MAX_CLOCK_SKEW_S, None, None, &dgx("n"));
        assert_eq!(select([&within_skew], AT)[0].future_iat, None);
    }

    #[test]
    fn machine_ids_and_an_earlier_site_are_kept() {
        let mut a = attestation_at("n", AT - 20, None, Some("fra-1"), &dgx("n"));
        let mut b = attestation_at("n", AT - 10, None, Some("ams-1"), &dgx("n"));
        a.claims.host.machine_id = Some("m1".to_owned());
        b.claims.host.machine_id = Some("m2".to_owned());
        let nodes = select([&b, &a], AT);
        assert_eq!(nodes[0].machine_ids, ["m1", "m2"]);
        assert_eq!(nodes[0].earlier_site, Some("fra-1"));
        let same = select([&b], AT);
        assert_eq!(same[0].earlier_site, None);
        assert!(
            same[0].machine_ids.is_empty(),
            "one machine id: nothing to report"
        );
    }
}
