//! Leases (issue 15): what a node may use, derived from the verdict its EAR was made from,
//! signed with the verifier's result key after each accepted attestation.
//!
//! Pure: [`LeasePlan::new`] reads a [`FleetVerdict`] once (which GPUs of each licence fit
//! under its caps), [`LeasePlan::lease`] writes one node's [`LeaseClaims`], [`sign`] makes the
//! compact JWS (`typ` [`LEASE_TYP`], `alg` the result key's). Leases are not stored: the
//! stored EAR's verdict and the licence's `[lease]` terms re-derive one.
//!
//! # What a lease leaves out
//!
//! A GPU is left out (`tppguard.excluded`, with the findings' codes and sentences) when:
//!
//! 1. a violation is about it (the finding names the node and the GPU's submod:
//!    `model_not_allowed`, `eccn_not_allowed`, `device_tpp_above_cap`, `exceeds_spec`, any
//!    later per-GPU violation);
//! 2. it is the copy not counted of a duplicate that is a violation (`duplicate_device`
//!    across licences or sites: the GPU counts where its evidence, or the stricter licence,
//!    puts it);
//! 3. a node-level or licence-level violation of [`NODE_WIDE`] bears on its node, and the
//!    rule set controls it (a GPU no licence controls needs none, so no licence problem gates
//!    it);
//! 4. it does not fit under its licence's caps: the licence's counted GPUs are walked in a
//!    fixed order (nodes by node id, GPUs by index), each added until the next would pass
//!    `max_devices` (`device_count_above_cap`) or `max_aggregate_tpp`
//!    (`aggregate_tpp_above_cap`); that one and every later one are left out. The order
//!    must not depend on when a node last attested: a lease is made just after its node's
//!    attestation, so an order by receipt would put that node last every time and the
//!    licence's nodes would take the room from each other in turn (two nodes of 8 under a cap
//!    of 10 would run 4 GPUs between them). By node id, which node keeps the room is
//!    arbitrary but the same at every attestation, so the leases in force allow exactly the
//!    cap. Every counted GPU takes room, those left out for 1 to 3 included: they count in
//!    the licence's usage, and a node that ignores its lease (`gating_not_held`) must not
//!    free room for another node's GPUs.
//!
//! A stale or unproven node keeps its GPUs (unproven is not a violation); the lease's
//! `tppguard.verdict` says so. `country_allocation_exceeded` leaves nothing out: it sums
//! licences under the rule set's allocation, which no one node's GPUs can settle. A GPU with
//! no identity (no UUID, serial or verified hardware identity) cannot be named, so no lease
//! allows it.

use std::collections::{BTreeMap, HashMap, HashSet};

use ring::digest;
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{self, Header, JwsError, SigningKey};
use tppguard_proto::lease::{
    GpuRef, LEASE_PROFILE, LEASE_TYP, LeaseClaims, LeaseExclusion, LeaseGpu, LeaseReason,
    LeaseTerms, LeaseVerdict, MAX_REASONS, MAX_TEXT_CHARS,
};
use tppguard_proto::units::Tpp;

use crate::policy::{
    Finding, FindingIndex, FleetVerdict, GpuVerdict, NodeVerdict, Reason, Severity, Verdict,
};

/// The node-level and licence-level violations that leave out every GPU of the node the rule
/// set controls: the node's site or licence cannot be relied on, so no GPU of it is licensed.
///
/// - `site_claim_mismatch`: the node claims another site than its certificate certifies.
/// - `node_unassigned`: no licence covers the node's site.
/// - `gpu_evidence_reused`: one GPU signed the evidence of several: the node reports GPUs
///   that did not sign.
/// - `licence_expired`, `licence_not_yet_valid`: the licence does not hold now.
///
/// The licence caps are left to the walk (only the excess is left out), and
/// `country_allocation_exceeded` to the licence authority.
pub const NODE_WIDE: [&str; 5] = [
    "site_claim_mismatch",
    "node_unassigned",
    "gpu_evidence_reused",
    "licence_expired",
    "licence_not_yet_valid",
];

/// The GPUs of one licence that fit under its caps, and why each other does not.
#[derive(Debug, Default)]
struct LicenceRoom {
    /// (node, submod) left out by the walk, with its reason.
    excess: HashMap<(NodeId, String), LeaseReason>,
}

/// One verdict read for leases: each licence's walk, done once for many nodes.
pub struct LeasePlan<'v> {
    verdict: &'v FleetVerdict,
    index: &'v FindingIndex<'v>,
    rooms: HashMap<&'v str, LicenceRoom>,
}

/// A text bounded for a lease (characters, as [`LeaseClaims::from_json`] counts them).
fn bounded(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

fn reason_of(f: &Finding) -> LeaseReason {
    LeaseReason {
        code: f.code.to_owned(),
        sentence: bounded(&f.sentence),
    }
}

/// The NVML index a submod name (`gpu3`) stands for.
fn index_of(submod: &str) -> Option<u32> {
    submod.strip_prefix("gpu")?.parse().ok()
}

/// How a duplicate's places are written (`subject [short]/gpu0`, as `duplicate_device` does).
fn place_name(node: &NodeVerdict, submod: &str) -> String {
    format!("{} [{}]/{submod}", node.subject, node.node.short())
}

/// The GPU as a lease names it: index, UUID, serial, and the hardware identity when its own
/// evidence verified; `None` when it has no identity at all.
fn gpu_ref(gpu: &GpuVerdict) -> Option<GpuRef> {
    let hardware_id = gpu
        .gpu_evidence
        .as_deref()
        .filter(|r| r.verified())
        .and_then(|r| r.hardware_id.clone());
    let some = |s: &Option<String>| s.as_deref().filter(|s| !s.trim().is_empty()).map(bounded);
    let r = GpuRef {
        index: index_of(&gpu.submod)?,
        uuid: some(&gpu.uuid),
        serial: some(&gpu.serial),
        hardware_id: some(&hardware_id),
    };
    (r.uuid.is_some() || r.serial.is_some() || r.hardware_id.is_some()).then_some(r)
}

impl<'v> LeasePlan<'v> {
    /// Reads `verdict` (with its `index`) for leases: walks every licence's counted GPUs
    /// against its caps.
    pub fn new(verdict: &'v FleetVerdict, index: &'v FindingIndex<'v>) -> Self {
        let mut plan = Self {
            verdict,
            index,
            rooms: HashMap::new(),
        };
        let mut by_licence: BTreeMap<&str, Vec<&NodeVerdict>> = BTreeMap::new();
        for n in &verdict.nodes {
            if let Some(l) = n.licence.as_deref() {
                by_licence.entry(l).or_default().push(n);
            }
        }
        for (licence, mut nodes) in by_licence {
            nodes.sort_by_key(|n| n.node);
            let room = plan.walk(licence, &nodes);
            plan.rooms.insert(licence, room);
        }
        plan
    }

    /// The walk of the module documentation, step 4.
    fn walk(&self, licence: &str, nodes: &[&NodeVerdict]) -> LicenceRoom {
        let mut room = LicenceRoom::default();
        let Some(usage) = self.verdict.licences.iter().find(|u| u.licence == licence) else {
            return room;
        };
        let (max_devices, max_tpp) = (usage.devices.cap, usage.tpp.cap);
        let (mut devices, mut tpp) = (0u64, Tpp::default());
        let mut full: Option<LeaseReason> = None;
        for n in nodes {
            let mut gpus: Vec<&GpuVerdict> = n
                .gpus
                .iter()
                .filter(|g| g.controlled && g.counted)
                .collect();
            gpus.sort_by_key(|g| index_of(&g.submod));
            for g in gpus {
                let gpu_tpp = g.tpp.unwrap_or_default();
                if full.is_none() {
                    let next_tpp = tpp.saturating_add(gpu_tpp);
                    if devices >= max_devices {
                        full = Some(LeaseReason {
                            code: "device_count_above_cap".to_owned(),
                            sentence: format!(
                                "the licence allows {max_devices} devices and devices ahead of \
                                 this one (by node id, then GPU index) already fill it: it is \
                                 left out of the lease"
                            ),
                        });
                    } else if next_tpp > max_tpp {
                        full = Some(LeaseReason {
                            code: "aggregate_tpp_above_cap".to_owned(),
                            sentence: format!(
                                "the licence's aggregate TPP cap is {max_tpp}; devices ahead of \
                                 this one (by node id, then GPU index) use {tpp}, and its TPP \
                                 {gpu_tpp} would bring it to {next_tpp}: it is left out of the \
                                 lease"
                            ),
                        });
                    } else {
                        devices = devices.saturating_add(1);
                        tpp = next_tpp;
                    }
                }
                if let Some(reason) = &full {
                    room.excess
                        .insert((n.node, g.submod.to_string()), reason.clone());
                }
            }
        }
        room
    }

    /// Steps 1 to 3: the GPUs of `node` left out by findings, by submod, with their reasons.
    fn own_exclusions(&self, node: &NodeVerdict) -> BTreeMap<String, Vec<LeaseReason>> {
        let id = node.node.to_string();
        let findings = self.index.for_node(node);
        let violations = findings
            .iter()
            .filter(|f| f.severity == Severity::Violation);
        let mut out: BTreeMap<String, Vec<LeaseReason>> = BTreeMap::new();
        let mut node_wide: Vec<LeaseReason> = Vec::new();
        for f in violations {
            let about_node = f.node.as_deref() == Some(id.as_str());
            match (&f.gpu, &f.figures) {
                (
                    Some(_),
                    Reason::DuplicateDevice {
                        seen_in,
                        counted_in,
                        ..
                    },
                ) => {
                    for g in &node.gpus {
                        let place = place_name(node, &g.submod);
                        if place != *counted_in && seen_in.contains(&place) {
                            out.entry(g.submod.to_string())
                                .or_default()
                                .push(reason_of(f));
                        }
                    }
                }
                (Some(submod), _) if about_node => {
                    out.entry(submod.clone()).or_default().push(reason_of(f));
                }
                (None, _) if NODE_WIDE.contains(&f.code) => node_wide.push(reason_of(f)),
                _ => {}
            }
        }
        if !node_wide.is_empty() {
            for g in node.gpus.iter().filter(|g| g.controlled) {
                out.entry(g.submod.to_string())
                    .or_default()
                    .extend(node_wide.iter().cloned());
            }
        }
        out
    }

    /// The lease for `node` at `now`, issued by `iss`, under its licence's lease terms (the
    /// verdict's `LicenceUsage::lease`; the defaults without a licence). `None` when the verdict has
    /// no such node.
    pub fn lease(&self, node: NodeId, now: i64, iss: &str) -> Option<LeaseClaims> {
        let n = self
            .verdict
            .nodes
            .binary_search_by(|v| v.node.cmp(&node))
            .ok()
            .and_then(|i| self.verdict.nodes.get(i))?;
        let terms = n
            .licence
            .as_deref()
            .and_then(|l| self.verdict.licences.iter().find(|u| u.licence == l))
            .map_or_else(LeaseTerms::default, |u| u.lease);
        let mut own = self.own_exclusions(n);
        let room = n.licence.as_deref().and_then(|l| self.rooms.get(l));
        let mut gpus = Vec::new();
        let mut excluded = Vec::new();
        // Submod names are `gpu<index>`, one per index; kept so a lease never names an index
        // twice, whatever a verdict holds.
        let mut seen: HashSet<u32> = HashSet::new();
        for g in &n.gpus {
            let Some(gpu) = gpu_ref(g) else { continue };
            if !seen.insert(gpu.index) {
                continue;
            }
            let mut reasons = own.remove(&*g.submod).unwrap_or_default();
            if let Some(r) = room.and_then(|r| r.excess.get(&(n.node, g.submod.to_string()))) {
                reasons.push(r.clone());
            }
            if reasons.is_empty() {
                let licence = n
                    .licence
                    .clone()
                    .filter(|_| g.controlled)
                    .map(|l| bounded(&l));
                gpus.push(LeaseGpu { gpu, licence });
            } else {
                reasons.dedup();
                reasons.truncate(MAX_REASONS);
                excluded.push(LeaseExclusion { gpu, reasons });
            }
        }
        let worst = self
            .index
            .for_node(n)
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or_default()
            .max(n.severity);
        let verdict = match Verdict::from_severity(worst) {
            Verdict::Compliant => LeaseVerdict::Compliant,
            Verdict::Unproven => LeaseVerdict::Unproven,
            Verdict::NotCompliant => LeaseVerdict::NotCompliant,
        };
        let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        let exp = now.saturating_add(seconds(terms.lifetime_s));
        let renew_at = exp.saturating_sub(seconds(terms.renew_before_s)).max(now);
        Some(LeaseClaims {
            iss: bounded(iss),
            sub: n.node.to_string(),
            iat: now,
            nbf: now,
            exp,
            eat_profile: LEASE_PROFILE.to_owned(),
            token_sha256: n.token_sha256.clone(),
            verdict,
            renew_at,
            grace_s: terms.grace_s,
            on_expiry: terms.on_expiry,
            gpus,
            excluded,
        })
    }
}

/// The lease for `node` from `verdict` (see [`LeasePlan`]; build the plan once for many
/// nodes of one verdict).
pub fn build(
    verdict: &FleetVerdict,
    index: &FindingIndex<'_>,
    node: NodeId,
    now: i64,
    iss: &str,
) -> Option<LeaseClaims> {
    let plan = LeasePlan::new(verdict, index);
    plan.lease(node, now, iss)
}

/// The issuer a verifier writes in its leases: `tppguard-verifier:` and the SHA-256 (hex) of
/// its result key's SubjectPublicKeyInfo, so an agent can tell which key signed.
pub fn issuer(key: &SigningKey) -> String {
    let spki = key.public_key_spki_der();
    let sha = digest::digest(&digest::SHA256, &spki);
    format!("tppguard-verifier:{}", crate::policy::hex(sha.as_ref()))
}

/// Why a lease could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseSignError {
    /// The claims do not serialize (a bug).
    #[error("the lease's claims do not serialize: {0}")]
    Json(#[from] serde_json::Error),
    /// The key refused to sign.
    #[error("the result key cannot sign the lease: {0}")]
    Sign(#[from] JwsError),
}

impl LeaseSignError {
    /// Every code.
    pub const CODES: [&'static str; 2] = ["lease_claims_json", "lease_sign_failed"];

    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "lease_claims_json",
            Self::Sign(_) => "lease_sign_failed",
        }
    }
}

/// Signs `claims` as a compact JWS: `typ` [`LEASE_TYP`], `alg` the key's.
pub fn sign(claims: &LeaseClaims, key: &SigningKey) -> Result<String, LeaseSignError> {
    let payload = claims.to_json()?;
    Ok(jws::sign(
        &Header::new(key.alg()).with_typ(LEASE_TYP),
        &payload,
        key,
    )?)
}

#[cfg(test)]
mod tests;
