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
//! back is left out and reported, never an error for every request. The licences are verified again, and the rule set
//! chosen again, at most once per second ([`Basis`]): a licence or a certificate that expires
//! stops counting within a second; a check that finds the same licences keeps the same
//! [`LicenceSet`] id.
//!
//! Reads are served from one verdict held in memory ([`Snapshot`]), computed once per state
//! of the fleet: it is kept while the memory's generation (moved by every change taken in: an
//! attestation, reloaded licences, or any write to the database this replica did not make
//! itself, such as another replica's batch, a licence, a revocation or a retirement) and the
//! licence set are unchanged, and until its next change instant ([`next_change`]: the first
//! instant at which the same inputs evaluate differently by time alone). Readers that find it
//! out of date share one evaluation ([`FleetState::computing`]); the writer offers the verdict
//! its batch evaluated ([`FleetState::committed`]), so under ingest reads rarely evaluate.
//!
//! Nodes are kept by node id (their key). Which of two attestations of a node is the latest
//! is decided as the store decides it: the one recorded later (greater row id; batches commit
//! one at a time under the fleet lock, so row order is the verifier's receipt order, across
//! replicas), never the node's own `iat`. Memory and database agree whatever order replicas'
//! writes are seen in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tppguard_proto::claims::AttestationClaims;
use tppguard_proto::identity::NodeId;
use tppguard_proto::licence::DEFAULT_MAX_ATTESTATION_AGE_SECONDS;
use tppguard_proto::ruleset::RuleSet;

use super::api::{ApiError, ApiResult};
use crate::chain::TrustAnchors;
use crate::check::rule_sets;
use crate::policy::lifecycle::Lifecycle;
use crate::policy::shipments::{VerifiedShipment, next_deadline};
use crate::policy::{
    Finding, FleetVerdict, GpuEvidenceFacts, MAX_CLOCK_SKEW_S, NodeVerdict, VerifiedAttestation,
    VerifiedLicence, evaluate_with,
};
use crate::store::{Store, StoredAttestation, StoredLicence};

/// Longest a read leaves a batch to the writer that evaluated it ([`FleetState::refresh_for_read`]):
/// far more than a commit takes.
const WRITER_PENDING_AT_MOST: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Moves with every change this memory takes in (see the module documentation).
    generation: u64,
    /// Moves whenever `licences` are reloaded.
    licence_generation: u64,
}

impl Inner {
    /// Takes in an accepted attestation recorded as row `id`, unless the node's current one
    /// was recorded later; whether it did.
    fn apply(&mut self, id: i64, attestation: VerifiedAttestation) -> bool {
        let changed = match self.nodes.get_mut(&attestation.node_id()) {
            Some(cur) if cur.id >= id => false,
            Some(cur) => {
                *cur = Latest { id, attestation };
                true
            }
            None => {
                self.nodes
                    .insert(attestation.node_id(), Latest { id, attestation });
                true
            }
        };
        if changed {
            self.generation = self.generation.wrapping_add(1);
        }
        changed
    }
}

/// The licences that verified and the rule set, at `checked_at`.
pub(crate) struct LicenceSet {
    /// Two sets with one id hold the same licences and rule set.
    id: u64,
    licence_generation: u64,
    /// [`super::lifecycle::LifecycleState::generation`] when checked.
    lifecycle_generation: u64,
    /// Stage 0's input (revocations, retirements, revoked nodes), and its findings.
    lifecycle: Lifecycle,
    lifecycle_findings: Vec<Finding>,
    checked_at: i64,
    /// The ids of the licences that verified and count (neither revoked nor retired), in
    /// stored order.
    tokens: Vec<String>,
    licences: Vec<VerifiedLicence>,
    rule_set: RuleSet,
    /// The stored shipments that verify, by id (issue 15; [`super::shipments::ShipmentsHeld`]).
    shipments: Arc<[VerifiedShipment]>,
}

/// What an evaluation needs besides the attestations: the instant and the licence set.
pub(crate) struct Basis {
    at: i64,
    set: Arc<LicenceSet>,
}

/// One evaluation of the whole fleet, served to every read while it holds.
pub(crate) struct Snapshot {
    pub(crate) verdict: FleetVerdict,
    generation: u64,
    set: u64,
    /// The first instant at which the verdict may change by time alone; `None`: never.
    pub(crate) next_change: Option<i64>,
    /// The summary's counts for views of the whole fleet, made at the first such read.
    counts: std::sync::OnceLock<super::view::Counts>,
}

impl Snapshot {
    fn new(verdict: FleetVerdict, generation: u64, set: &LicenceSet) -> Self {
        let next_change = earliest(
            next_change(&verdict, &set.licences),
            next_deadline(&set.shipments, &set.licences, verdict.at),
        );
        Self {
            verdict,
            generation,
            set: set.id,
            next_change,
            counts: std::sync::OnceLock::new(),
        }
    }

    /// Whether it is the verdict of memory `generation` under licence set `set` at `now`.
    fn holds(&self, generation: u64, set: u64, now: i64) -> bool {
        self.generation == generation
            && self.set == set
            && self.verdict.at <= now
            && self.next_change.is_none_or(|t| now < t)
    }

    /// The counts of a view of the whole fleet (they do not depend on redactions).
    pub(crate) fn whole_fleet_counts(&self) -> super::view::Counts {
        *self
            .counts
            .get_or_init(|| super::view::counts(&self.verdict, &super::view::View::all()))
    }
}

/// The writer's last evaluation with arrivals: the memory generation it started from, its
/// licence set and its arrivals (node, token SHA-256).
struct Evaluated {
    generation: u64,
    /// The fleet version the memory reflected.
    version: Option<i64>,
    /// When the evaluation ended.
    ended: std::time::Instant,
    set: Arc<LicenceSet>,
    arrivals: HashMap<NodeId, [u8; 32]>,
}

/// The in-memory fleet of one replica.
pub(crate) struct FleetState {
    /// `rule_sets` from the configuration (files); empty: the licences name them.
    rule_sets: Vec<String>,
    inner: RwLock<Inner>,
    basis: Mutex<Option<Arc<LicenceSet>>>,
    next_set_id: AtomicU64,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    evaluated: Mutex<Option<Evaluated>>,
    /// Held by the one reader evaluating the fleet; the others wait for its verdict.
    pub(crate) computing: tokio::sync::Mutex<()>,
    /// Revocations, retirements, revoked nodes, unusable rows (lifecycle, issue 12).
    pub(crate) lifecycle: super::lifecycle::LifecycleState,
    /// The stored shipments (issue 15), reloaded with the licences.
    pub(crate) shipments: super::shipments::ShipmentsHeld,
    /// The verifier's result key (its public half): a stored gating report's lease is checked
    /// under it again when the row is read back, so a restarted replica reaches the verdict
    /// the writer reached (issue 15). Unset: the leases read back are unverifiable.
    lease_key: std::sync::OnceLock<tppguard_proto::jws::VerifyingKey>,
}

#[cfg(test)]
impl Basis {
    /// The licences that verify and count (neither revoked nor retired).
    pub(crate) fn licences(&self) -> &[VerifiedLicence] {
        &self.set.licences
    }
}

impl FleetState {
    pub(crate) fn new(rule_sets: Vec<String>) -> Self {
        Self {
            lifecycle: super::lifecycle::LifecycleState::new(rule_sets.clone()),
            rule_sets,
            inner: RwLock::default(),
            basis: Mutex::default(),
            next_set_id: AtomicU64::new(1),
            snapshot: Mutex::default(),
            evaluated: Mutex::default(),
            computing: tokio::sync::Mutex::new(()),
            shipments: super::shipments::ShipmentsHeld::default(),
            lease_key: std::sync::OnceLock::new(),
        }
    }

    /// Sets the result key stored gating reports' leases are checked under (once, at start).
    pub(crate) fn set_lease_key(&self, key: tppguard_proto::jws::VerifyingKey) {
        let _ = self.lease_key.set(key);
    }

    /// Catches up with the database: other replicas' attestations, new licences, and any
    /// write this replica did not make (which moves the generation). One single-row read when
    /// nothing changed since the last look.
    pub(crate) async fn refresh(&self, store: &Store) -> ApiResult<()> {
        let version = store.fleet_version().await?;
        let seen = self.read().version;
        if seen >= Some(version) {
            return Ok(());
        }
        self.catch_up(store, seen, version).await
    }

    /// [`Self::refresh`] for a read: the same, except while this replica's writer is between
    /// its batch's commit and [`Self::committed`] (the database one version ahead, the writer's
    /// evaluation pending, for at most [`WRITER_PENDING_AT_MOST`]: a batch whose commit failed
    /// never calls it): the batch is left to the writer, which takes it in with its verdict a
    /// moment later, and the read is served the fleet as it was just before. Its clients were
    /// not answered yet, so no client can have seen it.
    pub(crate) async fn refresh_for_read(&self, store: &Store) -> ApiResult<()> {
        let version = store.fleet_version().await?;
        let seen = self.read().version;
        if seen >= Some(version) {
            return Ok(());
        }
        let writer_pending = self
            .evaluated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|e| {
                e.version == seen
                    && seen.map(|v| v.saturating_add(1)) == Some(version)
                    && e.ended.elapsed() < WRITER_PENDING_AT_MOST
            });
        if writer_pending {
            return Ok(());
        }
        self.catch_up(store, seen, version).await
    }

    /// Reads what batches after `seen` changed, up to `version`.
    async fn catch_up(&self, store: &Store, seen: Option<i64>, version: i64) -> ApiResult<()> {
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
            let mut parsed = Vec::with_capacity(rows.len());
            for row in &rows {
                match from_stored(row, self.lease_key.get()) {
                    Ok(attestation) => parsed.push((row.id, attestation)),
                    Err(e) => self.lifecycle.row_unusable(row, e.sentence()),
                }
            }
            for (_, attestation) in &parsed {
                self.lifecycle.arrived(attestation.node_id());
            }
            let mut inner = self.write();
            for (id, attestation) in parsed {
                inner.apply(id, attestation);
            }
            self.lifecycle.check_rows(&rows);
        }
        let count = store.lifecycle_count().await?;
        let known = self.read().licence_count;
        if known != Some(count) {
            let licences = store.licences().await?;
            self.lifecycle.reload(store).await?;
            self.shipments.reload(store).await?;
            let mut inner = self.write();
            inner.licence_count = Some(count);
            inner.licences = licences;
            inner.licence_generation = inner.licence_generation.wrapping_add(1);
        }
        // Everything up to `version` is now in memory (what was read is at least as new).
        let mut inner = self.write();
        if inner.version < Some(version) {
            inner.version = Some(version);
            inner.generation = inner.generation.wrapping_add(1);
        }
        Ok(())
    }

    /// After this replica committed a batch that moved the fleet version to `version`: takes
    /// in its `accepted` attestations (row id, attestation); when the memory reflected the
    /// version just before, it now reflects `version`, and the next refresh has nothing to
    /// read. `verdict`, the batch's evaluation with its arrivals, is kept for reads when it is
    /// exactly the fleet now held (the arrivals it evaluated are the attestations taken in,
    /// from the memory it evaluated).
    pub(crate) fn committed(
        &self,
        version: i64,
        accepted: Vec<(i64, VerifiedAttestation)>,
        verdict: Option<FleetVerdict>,
    ) {
        for (_, attestation) in &accepted {
            self.lifecycle.arrived(attestation.node_id());
        }
        let mut inner = self.write();
        let before = inner.generation;
        let mut taken: HashMap<NodeId, [u8; 32]> = HashMap::with_capacity(accepted.len());
        for (id, attestation) in accepted {
            let (node, sha) = (attestation.node_id(), *attestation.token_sha256());
            if inner.apply(id, attestation) {
                taken.insert(node, sha);
            }
        }
        if inner.version == Some(version.saturating_sub(1)) {
            inner.version = Some(version);
        }
        let evaluated = self
            .evaluated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(verdict), Some(e)) = (verdict, evaluated)
            && e.generation == before
            && e.arrivals == taken
        {
            // Published while the memory is locked: no reader sees the new generation
            // without its verdict.
            let snapshot = Snapshot::new(verdict, inner.generation, &e.set);
            self.install(Arc::new(snapshot));
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
        self.read().nodes.len()
    }

    /// The licences and rule set at `at` (verified at most once per second, licence set and
    /// lifecycle state).
    pub(crate) fn basis(&self, trust: &TrustAnchors, at: i64) -> ApiResult<Arc<Basis>> {
        let lifecycle_generation = self.lifecycle.generation();
        let (stored, licence_generation) = {
            let inner = self.read();
            let cache = self.basis.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(set) = cache.as_ref()
                && set.checked_at == at
                && set.licence_generation == inner.licence_generation
                && set.lifecycle_generation == lifecycle_generation
            {
                return Ok(Arc::new(Basis {
                    at,
                    set: Arc::clone(set),
                }));
            }
            (inner.licences.clone(), inner.licence_generation)
        };
        let (lifecycle, licences, lifecycle_findings) =
            self.lifecycle.basis_inputs(&stored, trust, at);
        // The store keeps one token per licence id: the ids that count name the set.
        let ids: Vec<String> = licences
            .iter()
            .map(|l| l.licence().id().to_owned())
            .collect();
        let mut sets = rule_sets(&self.rule_sets, &licences)?;
        if sets.is_empty() {
            return Err(ApiError::internal(&"no rule set to evaluate"));
        }
        let rule_set = sets.swap_remove(0);
        let shipments = self.shipments.verified(trust);
        let mut cache = self.basis.lock().unwrap_or_else(PoisonError::into_inner);
        let id = match cache.as_ref() {
            Some(old)
                if old.tokens == ids
                    && *old.shipments == *shipments
                    && old.lifecycle_generation == lifecycle_generation
                    && old.rule_set.id == rule_set.id
                    && old.rule_set.version == rule_set.version =>
            {
                old.id
            }
            _ => self.next_set_id.fetch_add(1, Ordering::Relaxed),
        };
        let set = Arc::new(LicenceSet {
            id,
            licence_generation,
            lifecycle_generation,
            lifecycle,
            lifecycle_findings,
            checked_at: at,
            tokens: ids,
            licences,
            rule_set,
            shipments: Arc::from(shipments),
        });
        *cache = Some(Arc::clone(&set));
        Ok(Arc::new(Basis { at, set }))
    }

    /// The verdict held, when it is the fleet's at `now`: nothing changed since, and the
    /// licences were checked this second (call [`Self::basis`] first to check them).
    pub(crate) fn cached(&self, now: i64) -> Option<Arc<Snapshot>> {
        let lifecycle_generation = self.lifecycle.generation();
        let (generation, licence_generation) = {
            let inner = self.read();
            (inner.generation, inner.licence_generation)
        };
        let set = self
            .basis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|s| {
                s.checked_at == now
                    && s.licence_generation == licence_generation
                    && s.lifecycle_generation == lifecycle_generation
            })
            .map(|s| s.id)?;
        self.latest()
            .filter(|snapshot| snapshot.holds(generation, set, now))
    }

    /// The last verdict computed, whatever its age (for the metrics' gauges).
    pub(crate) fn latest(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `snapshot` for reads unless a newer one is held.
    fn install(&self, snapshot: Arc<Snapshot>) {
        let mut slot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        let newer_held = slot.as_ref().is_some_and(|held| {
            (held.generation, held.verdict.at) > (snapshot.generation, snapshot.verdict.at)
        });
        if !newer_held {
            *slot = Some(snapshot);
        }
    }

    /// Evaluates the fleet held under `basis` and keeps the verdict for reads. CPU work:
    /// call it off the async workers, holding [`Self::computing`].
    pub(crate) fn compute(&self, basis: &Basis) -> Arc<Snapshot> {
        let (verdict, generation) = {
            let inner = self.read();
            let verdict = evaluate_with(
                &basis.set.licences,
                &basis.set.shipments,
                &basis.set.rule_set,
                inner
                    .nodes
                    .iter()
                    .filter(|(id, _)| basis.set.lifecycle.counts(**id))
                    .map(|(_, l)| &l.attestation),
                basis.at,
                basis.set.lifecycle_findings.clone(),
            );
            (verdict, inner.generation)
        };
        let snapshot = Arc::new(Snapshot::new(verdict, generation, &basis.set));
        self.install(Arc::clone(&snapshot));
        snapshot
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
        let inner = self.read();
        let arriving: HashMap<NodeId, [u8; 32]> = arrivals
            .iter()
            .map(|a| (a.node_id(), *a.token_sha256()))
            .collect();
        let verdict = evaluate_with(
            &basis.set.licences,
            &basis.set.shipments,
            &basis.set.rule_set,
            inner
                .nodes
                .iter()
                .filter(|(id, _)| !arriving.contains_key(id) && basis.set.lifecycle.counts(**id))
                .map(|(_, l)| &l.attestation)
                .chain(arrivals.iter().map(|a| &**a)),
            basis.at,
            basis.set.lifecycle_findings.clone(),
        );
        if !arriving.is_empty() {
            *self
                .evaluated
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Evaluated {
                generation: inner.generation,
                version: inner.version,
                ended: std::time::Instant::now(),
                set: Arc::clone(&basis.set),
                arrivals: arriving,
            });
        }
        verdict
    }
}

// What-if scenarios (issue 14): the fleet held, evaluated under a scenario's licences and rule
// set for `GET /v1/scenario` (super::scenario); nothing is kept or installed.
impl FleetState {
    /// The baseline and scenario verdicts at `basis.at` from one reading of the fleet held
    /// (the same attestations, lifecycle and instant): the baseline is `snapshot`'s verdict
    /// when it is that reading's, else evaluated again; the scenario's licences and rule set
    /// are `change` of the basis's. CPU work: call it off the async workers.
    pub(crate) fn what_if<E>(
        &self,
        basis: &Basis,
        snapshot: &Snapshot,
        change: impl FnOnce(&[VerifiedLicence], &RuleSet) -> Result<(Vec<VerifiedLicence>, RuleSet), E>,
    ) -> Result<(FleetVerdict, FleetVerdict), E> {
        let (licences, rule_set) = change(&basis.set.licences, &basis.set.rule_set)?;
        let inner = self.read();
        let nodes = || {
            inner
                .nodes
                .iter()
                .filter(|(id, _)| basis.set.lifecycle.counts(**id))
                .map(|(_, l)| &l.attestation)
        };
        let baseline = if snapshot.holds(inner.generation, basis.set.id, basis.at) {
            snapshot.verdict.clone()
        } else {
            evaluate_with(
                &basis.set.licences,
                &basis.set.shipments,
                &basis.set.rule_set,
                nodes(),
                basis.at,
                basis.set.lifecycle_findings.clone(),
            )
        };
        let scenario = evaluate_with(
            &licences,
            &basis.set.shipments,
            &rule_set,
            nodes(),
            basis.at,
            basis.set.lifecycle_findings.clone(),
        );
        Ok((baseline, scenario))
    }
}

/// The first instant after `verdict.at` at which evaluating the same attestations under the
/// same `licences` may answer differently by time alone, `None` when no such instant comes:
/// a licence's validity starting (`valid_from`) or ending (`valid_until`, exclusive), a node
/// turning stale (its age, from receipt or else `iat`, passing the `max_attestation_age` of
/// its licence, or the default without one), an attestation dated in the future ceasing to be
/// (one without a receipt time only). Licence-signer certificates, roots and CRLs are checked
/// again every second ([`FleetState::basis`]).
pub(crate) fn next_change(verdict: &FleetVerdict, licences: &[VerifiedLicence]) -> Option<i64> {
    let at = verdict.at;
    let mut max_age: HashMap<&str, u64> = HashMap::with_capacity(licences.len());
    let mut first: Option<i64> = None;
    let mut consider = |t: i64| {
        if t > at && first.is_none_or(|f| t < f) {
            first = Some(t);
        }
    };
    for v in licences {
        let l = v.licence();
        consider(l.valid_from());
        consider(l.valid_until());
        let age = max_age.entry(l.id()).or_insert(u64::MAX);
        *age = (*age).min(l.max_attestation_age_s());
    }
    for n in &verdict.nodes {
        if n.received_at.is_none() {
            consider(n.iat.saturating_sub(MAX_CLOCK_SKEW_S));
        }
        if n.stale {
            continue;
        }
        let limit = n
            .licence
            .as_deref()
            .and_then(|l| max_age.get(l))
            .copied()
            .unwrap_or(DEFAULT_MAX_ATTESTATION_AGE_SECONDS);
        if let Some(t) = stale_from(n, limit) {
            consider(t);
        }
    }
    first
}

/// The earlier of two instants, either of which may be absent.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The first instant at which `node` is stale under `max_age_s`: its age passes it.
fn stale_from(node: &NodeVerdict, max_age_s: u64) -> Option<i64> {
    let since = node.received_at.unwrap_or(node.iat);
    since
        .checked_add(i64::try_from(max_age_s).ok()?)?
        .checked_add(1)
}

/// A stored accepted attestation as the policy takes it: the claims recorded when it was
/// verified, its node id and certified site as the verifier derived them from the verified
/// chain then, and what it established from the GPUs' own evidence then (the columns, not the
/// token's certificates and reports again: a replica catching up with 100,000 nodes parses no
/// certificate and checks no signature), its receipt time and token hash.
fn from_stored(
    a: &StoredAttestation,
    lease_key: Option<&tppguard_proto::jws::VerifyingKey>,
) -> ApiResult<VerifiedAttestation> {
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
    let gpu_evidence = match &a.gpu_evidence_json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| corrupt(&format!("GPU evidence facts do not read back ({e})")))?,
        None => GpuEvidenceFacts::new(),
    };
    // The gating report's lease, checked as at receipt: the same facts the writer had.
    let gating = crate::attestation::gating_facts(&claims, &node_id, lease_key, a.received_at);
    Ok(VerifiedAttestation::from_stored(
        claims,
        node_id,
        a.subject.clone(),
        a.certified_site.clone(),
        Some(a.received_at),
        sha,
    )
    .with_gpu_evidence(gpu_evidence)
    .with_gating(gating))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bench_support::{self, AT};
    use crate::policy::evaluate;

    const DAY: i64 = 86_400;

    /// `n` nodes under licence SYN-DE-0000 (max age 24 h), node `i` received at `AT - 60 * i`.
    fn fleet(n: usize) -> (Vec<VerifiedLicence>, Vec<VerifiedAttestation>, RuleSet) {
        let (licences, attestations, rule_set, _) = bench_support::synthetic_fleet(n, 1, 1);
        let received = attestations
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.received_at_time(AT - 60 * i64::try_from(i).unwrap()))
            .collect();
        (licences, received, rule_set)
    }

    #[test]
    fn the_next_change_is_the_first_node_to_turn_stale() {
        let (licences, attestations, rule_set) = fleet(3);
        let verdict = evaluate(&licences, &[], &rule_set, &attestations, AT);
        assert!(verdict.nodes.iter().all(|n| !n.stale));
        // The oldest node (received 120 s before AT) is stale once its age passes 24 h.
        let t = next_change(&verdict, &licences).unwrap();
        assert_eq!(t, AT - 120 + DAY + 1);
        let just_before = evaluate(&licences, &[], &rule_set, &attestations, t - 1);
        assert!(just_before.nodes.iter().all(|n| !n.stale));
        assert_eq!(next_change(&just_before, &licences), Some(t));
        let at_it = evaluate(&licences, &[], &rule_set, &attestations, t);
        assert_eq!(at_it.nodes.iter().filter(|n| n.stale).count(), 1);
        // Stale nodes stay stale: the next change is the next node's.
        assert_eq!(next_change(&at_it, &licences), Some(AT - 60 + DAY + 1));
    }

    #[test]
    fn the_next_change_is_a_licence_validity_bound_when_sooner() {
        let (licences, attestations, rule_set) = fleet(1);
        let until = licences[0].licence().valid_until();
        // Evaluated late enough that the node is stale: only the licence's end remains.
        let late = until - 10;
        let verdict = evaluate(&licences, &[], &rule_set, &attestations, late);
        assert!(verdict.nodes[0].stale);
        assert_eq!(next_change(&verdict, &licences), Some(until));
        let after = evaluate(&licences, &[], &rule_set, &attestations, until);
        assert_eq!(
            next_change(&after, &licences),
            None,
            "nothing changes by time any more"
        );
        // Before the licence starts, its start comes first.
        let from = licences[0].licence().valid_from();
        let early = evaluate(&licences, &[], &rule_set, &[], from - 5);
        assert_eq!(next_change(&early, &licences), Some(from));
        // Without a licence, nodes turn stale after the default age.
        let bare = evaluate(&[], &[], &rule_set, &attestations, AT);
        assert_eq!(
            next_change(&bare, &[]),
            Some(AT + i64::try_from(DEFAULT_MAX_ATTESTATION_AGE_SECONDS).unwrap() + 1)
        );
    }

    /// A fleet state holding `attestations` (row ids 1..), its basis built from `licences`.
    fn state(
        attestations: Vec<VerifiedAttestation>,
        licences: &[VerifiedLicence],
        rule_set: RuleSet,
    ) -> (FleetState, Arc<Basis>) {
        state_with(attestations, licences, rule_set, Vec::new())
    }

    /// [`state`], with shipments in the basis.
    fn state_with(
        attestations: Vec<VerifiedAttestation>,
        licences: &[VerifiedLicence],
        rule_set: RuleSet,
        shipments: Vec<VerifiedShipment>,
    ) -> (FleetState, Arc<Basis>) {
        let fleet = FleetState::new(Vec::new());
        {
            let mut inner = fleet.write();
            for (i, a) in attestations.into_iter().enumerate() {
                inner.apply(i64::try_from(i).unwrap() + 1, a);
            }
        }
        let set = Arc::new(LicenceSet {
            id: 7,
            licence_generation: 0,
            lifecycle_generation: fleet.lifecycle.generation(),
            lifecycle: Lifecycle::default(),
            lifecycle_findings: Vec::new(),
            checked_at: AT,
            tokens: Vec::new(),
            licences: licences.to_vec(),
            rule_set,
            shipments: Arc::from(shipments),
        });
        *fleet.basis.lock().unwrap() = Some(Arc::clone(&set));
        (fleet, Arc::new(Basis { at: AT, set }))
    }

    #[test]
    fn a_verdict_is_served_until_the_fleet_changes_or_its_next_change_passes() {
        let (licences, mut attestations, rule_set) = fleet(3);
        let last = attestations.pop().unwrap();
        let (fleet, basis) = state(attestations, &licences, rule_set);
        assert!(fleet.cached(AT).is_none(), "nothing evaluated yet");
        let first = fleet.compute(&basis);
        assert_eq!(first.verdict.nodes.len(), 2);
        let held = fleet.cached(AT).expect("held");
        assert!(Arc::ptr_eq(&held, &first));
        // A later second needs the licences checked again first.
        assert!(fleet.cached(AT + 1).is_none());
        // Past its next change instant it is not served, whatever the licences.
        let t = first.next_change.unwrap();
        assert!(!first.holds(first.generation, 7, t) && first.holds(first.generation, 7, t - 1));
        // A new attestation moves the generation: not served any more.
        fleet.write().apply(10, last);
        assert!(fleet.cached(AT).is_none());
        let second = fleet.compute(&basis);
        assert_eq!(second.verdict.nodes.len(), 3);
        assert!(Arc::ptr_eq(&fleet.cached(AT).unwrap(), &second));
        // An older evaluation finishing late never replaces a newer one.
        fleet.install(Arc::clone(&first));
        assert!(Arc::ptr_eq(&fleet.latest().unwrap(), &second));
    }

    /// A shipped device no node attests becomes `unaccounted_device` at an instant of its own:
    /// a verdict held is not served past it.
    #[test]
    fn a_verdict_held_expires_when_a_shipped_device_turns_unaccounted() {
        let (licences, attestations, rule_set) = fleet(1);
        let deadline = AT + 3600;
        let after_s = licences[0].licence().shipment_terms().unaccounted_after_s;
        let shipment = VerifiedShipment {
            id: "SHP-1".to_owned(),
            licence: licences[0].licence().id().to_owned(),
            vendor: "CN=vendor".to_owned(),
            site: "site-0".to_owned(),
            country: "DE".parse().unwrap(),
            delivered_at: deadline - 1 - i64::try_from(after_s).unwrap(),
            devices: vec![crate::policy::ShippedDevice {
                uuid: Some("GPU-never-attested".to_owned()),
                serial: None,
                hardware_id: None,
                model: None,
            }],
            token_sha256: "00".to_owned(),
        };
        let (fleet, basis) = state_with(attestations, &licences, rule_set, vec![shipment]);
        let snapshot = fleet.compute(&basis);
        assert_eq!(snapshot.next_change, Some(deadline));
        assert!(
            !snapshot
                .verdict
                .findings
                .iter()
                .any(|f| f.code == "unaccounted_device")
        );
        assert!(fleet.cached(AT).is_some());
        let later = Basis {
            at: deadline,
            set: Arc::clone(&basis.set),
        };
        let verdict = fleet.evaluate(&later, &[]);
        assert!(
            verdict
                .findings
                .iter()
                .any(|f| f.code == "unaccounted_device")
        );
    }

    #[test]
    fn the_writers_verdict_is_kept_only_when_it_is_the_fleet_held() {
        let (licences, mut attestations, rule_set) = fleet(3);
        let third = attestations.pop().unwrap();
        let second = attestations.pop().unwrap();
        let (fleet, basis) = state(attestations, &licences, rule_set);
        fleet.write().version = Some(4);
        // The batch evaluates with the third node arriving and commits it: kept.
        let verdict = fleet.evaluate(&basis, &[&third]);
        fleet.committed(5, vec![(20, third.clone())], Some(verdict));
        let held = fleet.cached(AT).expect("the batch's verdict is held");
        assert_eq!(held.verdict.nodes.len(), 2);
        assert_eq!(fleet.read().version, Some(5));
        // A batch whose arrival was not recorded (a duplicate) leaves nothing to serve.
        let verdict = fleet.evaluate(&basis, &[&second]);
        fleet.committed(6, Vec::new(), Some(verdict));
        assert!(fleet.latest().is_some_and(|s| s.verdict.nodes.len() == 2));
        assert!(
            Arc::ptr_eq(&fleet.cached(AT).unwrap(), &held),
            "nothing changed"
        );
        // A verdict made before another change is refused too.
        let verdict = fleet.evaluate(&basis, &[&second]);
        fleet.write().generation += 1;
        fleet.committed(7, vec![(21, second)], Some(verdict));
        assert!(fleet.cached(AT).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_waiting_share_one_evaluation() {
        let (licences, attestations, rule_set) = fleet(50);
        let (fleet, basis) = state(attestations, &licences, rule_set);
        let fleet = Arc::new(fleet);
        let evaluations = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (fleet, basis, evaluations) = (
                    Arc::clone(&fleet),
                    Arc::clone(&basis),
                    Arc::clone(&evaluations),
                );
                tokio::spawn(async move {
                    if let Some(s) = fleet.cached(AT) {
                        return s;
                    }
                    let _one = fleet.computing.lock().await;
                    if let Some(s) = fleet.cached(AT) {
                        return s;
                    }
                    evaluations.fetch_add(1, Ordering::Relaxed);
                    let f = Arc::clone(&fleet);
                    tokio::task::spawn_blocking(move || f.compute(&basis))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut got = Vec::new();
        for r in readers {
            got.push(r.await.unwrap());
        }
        assert_eq!(evaluations.load(Ordering::Relaxed), 1);
        assert!(got.iter().all(|s| Arc::ptr_eq(s, &got[0])));
    }

    #[tokio::test]
    async fn a_read_leaves_the_writers_commit_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let store = Store::open(&url).await.unwrap();
        let (licences, mut attestations, rule_set) = fleet(2);
        let arriving = attestations.pop().unwrap();
        let (fleet, basis) = state(attestations, &licences, rule_set);
        let v0 = store.fleet_version().await.unwrap();
        fleet.write().version = Some(v0);
        // The writer evaluated its batch; the batch commits (version + 1).
        let _ = fleet.evaluate(&basis, &[&arriving]);
        store.begin_batch().await.unwrap().commit().await.unwrap();
        fleet.refresh_for_read(&store).await.unwrap();
        assert_eq!(fleet.read().version, Some(v0), "left to the writer");
        // Another write after it: the read catches up with both.
        store.begin_batch().await.unwrap().commit().await.unwrap();
        let before = fleet.read().generation;
        fleet.refresh_for_read(&store).await.unwrap();
        assert_eq!(fleet.read().version, Some(v0 + 2));
        assert_ne!(fleet.read().generation, before, "a write it did not make");
        // The writer's own refresh never waits for itself.
        let _ = fleet.evaluate(&basis, &[&arriving]);
        store.begin_batch().await.unwrap().commit().await.unwrap();
        fleet.refresh(&store).await.unwrap();
        assert_eq!(fleet.read().version, Some(v0 + 3));
    }
}
