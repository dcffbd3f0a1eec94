//! The fleet as this replica knows it: each node's latest accepted attestation (as verified
//! when it arrived) and the stored licences, held in memory so that evaluating the fleet reads
//! no attestation rows and parses no claims.
//!
//! The database stays the source of truth. [`FleetState::refresh`] first reads the fleet
//! version, a counter every write batch increases: unchanged since the last look, there is
//! nothing to read (the usual case for a single verifier, whose own commits move the version
//! it already holds, [`FleetState::committed`]). Otherwise it reads the latest pointers (node
//! and row id) that batches moved since the version it holds (all of them at start), fetches
//! the rows it has not seen, and reloads the licences and the lifecycle records when their
//! count changed (both are only ever added; [`super::lifecycle`]). A row that does not read
//! back is left out and reported, never an error for every request. The licences are verified
//! again, and the rule set chosen again, at most once per second ([`Basis`]): a licence or a
//! certificate that expires stops counting within a second.
//!
//! Nodes are kept by node id (their key). Which of two attestations of a node is the latest
//! is decided as the store decides it: the one recorded later (greater row id; batches commit
//! one at a time under the fleet lock, so row order is the verifier's receipt order, across
//! replicas), never the node's own `iat`. Memory and database agree whatever order replicas'
//! writes are seen in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tppguard_proto::claims::AttestationClaims;
use tppguard_proto::identity::NodeId;
use tppguard_proto::ruleset::RuleSet;

use super::api::{ApiError, ApiResult};
use crate::chain::TrustAnchors;
use crate::check::rule_sets;
use crate::policy::lifecycle::Lifecycle;
use crate::policy::{Finding, FleetVerdict, VerifiedAttestation, VerifiedLicence, evaluate_with};
use crate::store::{Store, StoredAttestation, StoredLicence};

/// A node's latest accepted attestation and its row id.
struct Latest {
    id: i64,
    attestation: VerifiedAttestation,
}

#[derive(Default)]
struct Inner {
    /// The fleet version this memory reflects at least (see [`Store::fleet_version`]).
    version: Option<i64>,
    nodes: HashMap<NodeId, Latest>,
    /// The stored licence tokens, and the lifecycle count ([`Store::lifecycle_count`]: licences
    /// and lifecycle records) when they were read.
    licences: Vec<StoredLicence>,
    licence_count: Option<u64>,
}

/// What an evaluation needs besides the attestations, valid for one second.
pub(crate) struct Basis {
    at: i64,
    licence_count: Option<u64>,
    /// [`super::lifecycle::LifecycleState::generation`] when computed.
    lifecycle_generation: u64,
    /// Stage 0's input, and its findings (lifecycle, issue 12).
    lifecycle: Lifecycle,
    lifecycle_findings: Vec<Finding>,
    /// The stored licences that verify at `at` and count (neither revoked nor retired).
    pub(crate) licences: Vec<VerifiedLicence>,
    /// The rule set evaluated: the first configured, or the first the licences name.
    pub(crate) rule_set: RuleSet,
}

/// The in-memory fleet of one replica.
pub(crate) struct FleetState {
    /// `rule_sets` from the configuration (files); empty: the licences name them.
    rule_sets: Vec<String>,
    inner: RwLock<Inner>,
    basis: Mutex<Option<Arc<Basis>>>,
    /// Revocations, retirements, revoked nodes, unusable rows (lifecycle, issue 12).
    pub(crate) lifecycle: super::lifecycle::LifecycleState,
}

impl FleetState {
    pub(crate) fn new(rule_sets: Vec<String>) -> Self {
        Self {
            lifecycle: super::lifecycle::LifecycleState::new(rule_sets.clone()),
            rule_sets,
            inner: RwLock::default(),
            basis: Mutex::default(),
        }
    }

    /// Catches up with the database: other replicas' attestations and new licences. One
    /// single-row read when nothing changed since the last look.
    pub(crate) async fn refresh(&self, store: &Store) -> ApiResult<()> {
        let version = store.fleet_version().await?;
        let seen = self.read().version;
        if seen >= Some(version) {
            return Ok(());
        }
        let pointers = store.latest_pointers(seen).await?;
        let unseen: Vec<i64> = {
            let inner = self.read();
            pointers
                .iter()
                .filter(|(node, id)| inner.nodes.get(node).is_none_or(|l| l.id != *id))
                .map(|(_, id)| *id)
                .collect()
        };
        if !unseen.is_empty() {
            let rows = store.attestations_by_id(&unseen).await?;
            // A row that does not read back is left out and reported, never a 500.
            for row in &rows {
                match from_stored(row) {
                    Ok(attestation) => self.apply(row.id, attestation),
                    Err(e) => self.lifecycle.row_unusable(row, e.sentence()),
                }
            }
            self.lifecycle.check_rows(&rows);
        }
        let count = store.lifecycle_count().await?;
        let known = self.read().licence_count;
        if known != Some(count) {
            let licences = store.licences().await?;
            self.lifecycle.reload(store).await?;
            let mut inner = self.write();
            inner.licence_count = Some(count);
            inner.licences = licences;
        }
        // Everything up to `version` is now in memory (what was read is at least as new).
        let mut inner = self.write();
        inner.version = inner.version.max(Some(version));
        Ok(())
    }

    /// After this replica committed a batch that moved the fleet version to `version`, with
    /// its accepted attestations already applied: when the memory reflected the version just
    /// before, it now reflects `version`, and the next refresh has nothing to read.
    pub(crate) fn committed(&self, version: i64) {
        let mut inner = self.write();
        if inner.version == Some(version.saturating_sub(1)) {
            inner.version = Some(version);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many nodes the fleet holds.
    pub(crate) fn node_count(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .len()
    }

    /// Takes in an accepted attestation recorded as row `id`, unless the node's current one
    /// was recorded later.
    pub(crate) fn apply(&self, id: i64, attestation: VerifiedAttestation) {
        self.lifecycle.arrived(attestation.node_id());
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        match inner.nodes.get_mut(&attestation.node_id()) {
            Some(cur) if cur.id >= id => {}
            Some(cur) => *cur = Latest { id, attestation },
            None => {
                inner
                    .nodes
                    .insert(attestation.node_id(), Latest { id, attestation });
            }
        }
    }

    /// The node ids of the nodes held whose certificate subject is `subject` (display names
    /// are not unique: several machines may share one).
    pub(crate) fn nodes_with_subject(&self, subject: &str) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .read()
            .nodes
            .iter()
            .filter(|(_, l)| l.attestation.node_subject() == subject)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The licences and rule set at `at` (computed at most once per second and licence set).
    pub(crate) fn basis(&self, trust: &TrustAnchors, at: i64) -> ApiResult<Arc<Basis>> {
        let lifecycle_generation = self.lifecycle.generation();
        let (stored, licence_count) = {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            let mut cache = self.basis.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = cache.as_ref()
                && b.at == at
                && b.licence_count == inner.licence_count
                && b.lifecycle_generation == lifecycle_generation
            {
                return Ok(Arc::clone(b));
            }
            *cache = None;
            (inner.licences.clone(), inner.licence_count)
        };
        let (lifecycle, licences, lifecycle_findings) =
            self.lifecycle.basis_inputs(&stored, trust, at);
        let mut sets = rule_sets(&self.rule_sets, &licences)?;
        if sets.is_empty() {
            return Err(ApiError::internal(&"no rule set to evaluate"));
        }
        let rule_set = sets.swap_remove(0);
        let basis = Arc::new(Basis {
            at,
            licence_count,
            lifecycle_generation,
            lifecycle,
            lifecycle_findings,
            licences,
            rule_set,
        });
        *self.basis.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&basis));
        Ok(basis)
    }

    /// The verdict at `basis.at` on the fleet held, with `arrivals` taken in: an arrival
    /// replaces its node's attestation held (it was received later), so the verdict appraises
    /// exactly the arrivals. Give at most one arrival per node. CPU work: call it off the
    /// async workers.
    pub(crate) fn evaluate(
        &self,
        basis: &Basis,
        arrivals: &[&VerifiedAttestation],
    ) -> FleetVerdict {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let arriving: HashSet<NodeId> = arrivals.iter().map(|a| a.node_id()).collect();
        evaluate_with(
            &basis.licences,
            &basis.rule_set,
            inner
                .nodes
                .iter()
                .filter(|(id, _)| !arriving.contains(id) && basis.lifecycle.counts(**id))
                .map(|(_, l)| &l.attestation)
                .chain(arrivals.iter().map(|a| &**a)),
            basis.at,
            basis.lifecycle_findings.clone(),
        )
    }
}

/// A stored accepted attestation as the policy takes it: the claims recorded when it was
/// verified, its node id and certified site as the verifier derived them from the verified
/// chain then (the columns, not the token's certificate again: a replica catching up with
/// 100,000 nodes parses no certificate), its receipt time and token hash.
fn from_stored(a: &StoredAttestation) -> ApiResult<VerifiedAttestation> {
    let corrupt = |what: &str| {
        ApiError::internal(&format!(
            "stored attestation {} of {:?}: {what}",
            a.id, a.subject
        ))
    };
    let node_id = a
        .node_id
        .ok_or_else(|| corrupt("an accepted attestation without a node id"))?;
    let claims = AttestationClaims::from_json(a.claims_json.as_bytes())
        .map_err(|e| corrupt(&format!("claims do not read back ({})", e.code())))?;
    let sha: [u8; 32] = super::api::hex_bytes(&a.token_sha256)
        .try_into()
        .map_err(|_| corrupt("token_sha256 is not 32 bytes of hex"))?;
    Ok(VerifiedAttestation::from_stored(
        claims,
        node_id,
        a.subject.clone(),
        a.certified_site.clone(),
        Some(a.received_at),
        sha,
    ))
}

/// The node id and certified site of a stored token, from its certificate (x5c leaf): how
/// pointers kept by subject before schema 3 are re-keyed ([`Store::adopt_legacy_pointers`]).
pub(crate) fn stored_token_identity(
    token: &str,
) -> Option<(NodeId, Option<tppguard_proto::site::SiteId>)> {
    let leaf = tppguard_proto::jws::decode(token)
        .ok()
        .and_then(|t| t.header().x5c.first().cloned())?;
    crate::chain::stored_leaf_facts(&leaf).ok()
}
