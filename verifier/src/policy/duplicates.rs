//! Stage 5, duplicates: one GPU in several nodes' current attestations.
//!
//! A GPU is identified by its hardware identity where its own evidence verified (the SHA-256
//! of its per-device certificate's key: only the GPU can sign under it, so no node can claim
//! it without the GPU), and by its UUID, normalised (surrounding white space dropped, ASCII
//! case folded): NVML writes `GPU-` and lower-case hex, so `GPU-ABC` and ` gpu-abc ` are one
//! device, and a serial changed or nulled on one copy does not make a second device. Either
//! identity repeated is a duplicate; when both repeat over the same places, one finding names
//! both. A GPU with neither has no identity; the node stage makes its node unproven. A place
//! whose GPU's evidence verified is where a duplicate counts, before any licence order: a node
//! copying another's UUIDs cannot take its GPUs over, and the finding is then the copier's
//! (its licence, its node), not the honest node's. Each repeated
//! identity counts once, against the stricter licence (smaller `max_aggregate_tpp`, then
//! smaller licence id; an assigned node before an unassigned one; then node and GPU order),
//! and `duplicate_device` names every place; across licences or sites it is a violation
//! (the same hardware cannot stand in two places), within one licence and site a warning.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use tppguard_proto::identity::NodeId;

use super::assign::Assignment;
use super::findings::Findings;
use super::latest::Current;
use super::{Reason, VerifiedLicence};

/// Where one GPU occurrence sits: (node index, GPU index within the node).
pub(super) type Place = (usize, usize);

/// What a [`GpuIdentity`] is: a verified hardware identity or a reported UUID. The two are
/// never equal to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum IdentityKind {
    /// The SHA-256 of the GPU's device certificate key, from evidence that verified.
    Hardware,
    /// The UUID the node reports.
    Uuid,
}

/// A GPU identity compared normalised: trimmed, ASCII case folded, and of one kind.
#[derive(Debug, Clone, Copy)]
pub(super) struct GpuIdentity<'a>(&'a str, IdentityKind);

impl<'a> GpuIdentity<'a> {
    /// A verified hardware identity (lower-case hex, as the verifier wrote it).
    pub(super) fn hardware(id: &'a str) -> Self {
        Self(id, IdentityKind::Hardware)
    }

    /// The kind.
    pub(super) fn kind(&self) -> IdentityKind {
        self.1
    }

    /// The identity of a reported UUID; `None` when absent or blank.
    pub(super) fn of(uuid: Option<&'a str>) -> Option<Self> {
        let uuid = uuid?;
        // NVML's own form starts and ends with an ASCII letter or digit: nothing to trim
        // (the common case, cheaper than a Unicode trim over a million GPUs).
        let bytes = uuid.as_bytes();
        let plain = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
        let trimmed = if plain { uuid } else { uuid.trim() };
        (!trimmed.is_empty()).then_some(Self(trimmed, IdentityKind::Uuid))
    }

    /// The normalised text (lower case), as findings name it.
    pub(super) fn normalised(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for GpuIdentity<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1 && self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for GpuIdentity<'_> {}

impl Hash for GpuIdentity<'_> {
    /// The case-folded bytes, a block at a time (a fleet hashes a million UUIDs).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.1.hash(state);
        let mut block = [0u8; 64];
        for chunk in self.0.as_bytes().chunks(block.len()) {
            let folded = block.get_mut(..chunk.len()).unwrap_or_default();
            folded.copy_from_slice(chunk);
            folded.make_ascii_lowercase();
            state.write(folded);
        }
        state.write_u8(0xff);
    }
}

impl PartialOrd for GpuIdentity<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GpuIdentity<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.1.cmp(&other.1).then_with(|| {
            self.0
                .bytes()
                .map(|b| b.to_ascii_lowercase())
                .cmp(other.0.bytes().map(|b| b.to_ascii_lowercase()))
        })
    }
}

/// Every identity seen more than once, with its places in (node, GPU) order. Each identity
/// is hashed once with a randomly keyed SipHash (an agent cannot choose colliding
/// identities); the small (hash, place) records are sorted, and only places sharing a hash
/// are compared in full. The result does not depend on the hash values.
fn repeated<'a>(nodes: &[Current<'a>]) -> BTreeMap<GpuIdentity<'a>, Vec<Place>> {
    let hasher = RandomState::new();
    let total = nodes
        .iter()
        .map(|c| c.attestation.claims.submods.len())
        .sum();
    let mut hashed: Vec<(u64, Place, IdentityKind)> = Vec::with_capacity(total);
    for (n, node) in nodes.iter().enumerate() {
        let a = node.attestation;
        for (g, (name, gpu)) in a.claims.submods.iter().enumerate() {
            if let Some(id) = GpuIdentity::of(gpu.uuid.as_deref()) {
                hashed.push((hasher.hash_one(id), (n, g), IdentityKind::Uuid));
            }
            if let Some(id) = a.verified_hardware_id(name).map(GpuIdentity::hardware) {
                hashed.push((hasher.hash_one(id), (n, g), IdentityKind::Hardware));
            }
        }
    }
    hashed.sort_unstable();
    let identity_at = |(n, g): Place, kind: IdentityKind| -> Option<GpuIdentity<'a>> {
        let a = nodes.get(n)?.attestation;
        let (name, gpu) = a.claims.submods.iter().nth(g)?;
        match kind {
            IdentityKind::Uuid => GpuIdentity::of(gpu.uuid.as_deref()),
            IdentityKind::Hardware => a.verified_hardware_id(name).map(GpuIdentity::hardware),
        }
    };
    let mut out: BTreeMap<GpuIdentity<'a>, Vec<Place>> = BTreeMap::new();
    for run in hashed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
        let mut groups: BTreeMap<GpuIdentity<'a>, Vec<Place>> = BTreeMap::new();
        for &(_, place, kind) in run {
            if let Some(id) = identity_at(place, kind) {
                groups.entry(id).or_default().push(place);
            }
        }
        out.extend(groups.into_iter().filter(|(_, places)| places.len() > 1));
    }
    out
}

/// Finds repeated GPUs, records `duplicate_device` for each, and returns the places that do
/// not count (every place but the one counted).
pub(super) fn find(
    nodes: &[Current<'_>],
    assignment: &[Assignment<'_>],
    lics: &[&VerifiedLicence],
    findings: &mut Findings,
) -> HashSet<Place> {
    let mut not_counted = HashSet::new();
    let licence_of = |n: usize| assignment.get(n).and_then(|a| a.licence);
    let site_of = |n: usize| assignment.get(n).and_then(|a| a.site);
    let submod_of = |(n, g): Place| -> &str {
        nodes
            .get(n)
            .and_then(|c| c.attestation.claims.submods.keys().nth(g))
            .map_or("", String::as_str)
    };
    let place_name = |p: Place| {
        let subject = nodes.get(p.0).map_or("", |c| c.attestation.node_subject());
        let short = nodes
            .get(p.0)
            .map_or_else(String::new, |c| c.attestation.node_id.short());
        format!("{subject} [{short}]/{}", submod_of(p))
    };
    let repeats = repeated(nodes);
    // A hardware identity repeated over exactly the places a UUID repeats over is one
    // duplicate: the UUID's finding names it, and it is not reported again.
    let by_places: BTreeMap<&Vec<Place>, &GpuIdentity<'_>> = repeats
        .iter()
        .filter(|(id, _)| id.kind() == IdentityKind::Hardware)
        .map(|(id, places)| (places, id))
        .collect();
    let uuid_places: HashSet<&Vec<Place>> = repeats
        .iter()
        .filter(|(id, _)| id.kind() == IdentityKind::Uuid)
        .map(|(_, places)| places)
        .collect();
    for (identity, places) in &repeats {
        if identity.kind() == IdentityKind::Hardware && uuid_places.contains(places) {
            continue;
        }
        // A place whose GPU signed verified evidence comes first: the GPU is where its own
        // report says it is, so a node reporting another node's UUIDs cannot take them over
        // (nor lower that node's tier). Then the stricter licence; ties go to the smaller node
        // id, never to the evaluation's own node order.
        let strictness = |&(n, g): &Place| {
            let lic = licence_of(n);
            let cap = lic
                .and_then(|i| lics.get(i))
                .map(|v| v.licence.max_aggregate_tpp());
            let id = nodes.get(n).map(|c| c.attestation.node_id);
            let unverified = nodes.get(n).is_none_or(|c| {
                c.attestation
                    .claims
                    .submods
                    .keys()
                    .nth(g)
                    .is_none_or(|name| c.attestation.verified_hardware_id(name).is_none())
            });
            (unverified, lic.is_none(), cap, lic, id, g)
        };
        let Some(&counted) = places.iter().min_by_key(|p| strictness(p)) else {
            continue;
        };
        not_counted.extend(places.iter().copied().filter(|&p| p != counted));
        let across = places.iter().any(|&(n, _)| {
            licence_of(n) != licence_of(counted.0) || site_of(n) != site_of(counted.0)
        });
        let mut seen_in: Vec<String> = places.iter().map(|&p| place_name(p)).collect();
        seen_in.sort();
        let lic = licence_of(counted.0).and_then(|i| lics.get(i).map(|v| (i, v.licence.id())));
        let counted_gpu = nodes
            .get(counted.0)
            .and_then(|c| c.attestation.claims.submods.values().nth(counted.1));
        let (uuid, hardware_id) = match identity.kind() {
            IdentityKind::Uuid => (
                identity.normalised(),
                by_places.get(places).map(|h| h.normalised()),
            ),
            IdentityKind::Hardware => (
                counted_gpu
                    .and_then(|g| GpuIdentity::of(g.uuid.as_deref()))
                    .map_or_else(|| "unknown".to_owned(), |u| u.normalised()),
                Some(identity.normalised()),
            ),
        };
        let reason = Reason::DuplicateDevice {
            uuid,
            hardware_id,
            serial: counted_gpu.and_then(|g| g.serial.clone()),
            seen_in,
            counted_in: place_name(counted),
            counted_against: lic.map(|(_, id)| id.to_owned()),
            across_licences_or_sites: across,
        };
        let severity = reason.severity();
        // When the counted place's GPU signed verified evidence, the places that did not are
        // the ones that lie: the finding is theirs (their licence, node and severity), never
        // the honest node's. Otherwise it is the counted place's, and every place's severity.
        let liar = (!strictness(&counted).0)
            .then(|| {
                places
                    .iter()
                    .copied()
                    .filter(|p| strictness(p).0)
                    .min_by_key(|p| strictness(p))
            })
            .flatten();
        let about = liar.unwrap_or(counted);
        let mut others: Vec<NodeId> = Vec::new();
        for &(n, g) in places {
            if liar.is_none() || strictness(&(n, g)).0 {
                findings.raise_node(n, severity);
            }
            if n != about.0
                && let Some(c) = nodes.get(n)
            {
                others.push(c.attestation.node_id);
            }
        }
        others.sort_unstable();
        others.dedup();
        let nref = nodes.get(about.0).map(|c| (about.0, c.attestation.node_id));
        let lic = match liar {
            Some(l) => licence_of(l.0).and_then(|i| lics.get(i).map(|v| (i, v.licence.id()))),
            None => lic,
        };
        findings.push(reason, lic, nref, Some(submod_of(about)));
        if let Some(f) = findings.last_mut() {
            f.also_about = others.into_iter().map(|id| id.to_string()).collect();
        }
    }
    not_counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_compare_trimmed_and_case_folded() {
        let a = GpuIdentity::of(Some("GPU-9fa5439d")).unwrap();
        let b = GpuIdentity::of(Some("  gpu-9FA5439D \t")).unwrap();
        assert_eq!(a, b);
        let h = RandomState::new();
        assert_eq!(h.hash_one(a), h.hash_one(b));
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert_ne!(a, GpuIdentity::of(Some("GPU-9fa5439e")).unwrap());
        assert!(GpuIdentity::of(Some("   ")).is_none());
        assert_eq!(
            a,
            GpuIdentity::of(Some("\u{3000}GPU-9FA5439D\u{a0}")).unwrap()
        );
        assert!(GpuIdentity::of(None).is_none());
        assert_eq!(b.normalised(), "gpu-9fa5439d");
        // A hardware identity never equals a UUID of the same text.
        let h = GpuIdentity::hardware("gpu-9fa5439d");
        assert_ne!(h, a);
        assert_ne!(h.cmp(&a), std::cmp::Ordering::Equal);
        assert_eq!(h, GpuIdentity::hardware("GPU-9FA5439D"));
    }
}
