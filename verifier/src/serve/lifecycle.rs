//! Lifecycle in the service: the records that take licences and nodes out of the evaluation
//! (licence revocations signed by the licence authority, licence and node retirements, see
//! [`crate::store::LifecycleRecords`]), the nodes whose certificate chain the current CRLs
//! revoke, the stored rows that cannot be used, and the CRLs reloaded while serving.
//!
//! The policy takes all of it as one input ([`Lifecycle`], stage 0). This replica keeps it in
//! memory ([`LifecycleState`], held by the fleet): the records are read again when the
//! database's lifecycle count changes (every record moves the fleet version), the revoked
//! nodes are found again when the CRLs change (by issuer and serial, from each node's latest
//! token, never by building a chain: [`RevokedSet`]).
//!
//! CRLs: trust.toml is read again every `crl_reload_s` seconds and on SIGHUP; its CRLs replace
//! the ones in use (its roots stay those pinned at start). A file that does not load keeps the
//! CRLs in use, with a warning. Changed CRLs move the fleet version (a licence signer's
//! revocation changes the verdict as a node's does).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tppguard_proto::identity::NodeId;
use tppguard_proto::ruleset::shipped_rule_set;
use tppguard_proto::text::Escaped;

use super::AppState;
use super::api::{ApiError, ApiResult};
use crate::chain::{RevokedCert, RevokedSet, TrustAnchors, TrustError};
use crate::error::Error;
use crate::licence::{VerifiedRevocation, verify_licence, verify_licence_revocation};
use crate::policy::lifecycle::Lifecycle;
use crate::policy::{Finding, VerifiedLicence};
use crate::store::{
    LicenceRevocationRecord, LifecycleRecords, Store, StoredAttestation, StoredLicence,
};

/// Nodes read per page when the fleet is checked against new CRLs.
const CRL_CHECK_PAGE: usize = 1000;
/// Who recorded a revocation imported from `licences_dir`.
pub(crate) const IMPORTED_BY: &str = "licences_dir";
/// The file suffix of a signed revocation in `licences_dir`.
pub(crate) const REVOCATION_SUFFIX: &str = ".revocation.jws";
/// Largest revocation file read from `licences_dir`.
const MAX_REVOCATION_FILE_BYTES: u64 = 1 << 20;

/// trust.toml's anchors in use: the roots pinned at start, the CRLs last loaded. Handlers take
/// a snapshot ([`TrustHolder::get`]); a reload swaps it.
pub(crate) struct TrustHolder {
    path: PathBuf,
    current: RwLock<Arc<TrustAnchors>>,
}

impl TrustHolder {
    pub(crate) fn new(path: &Path, trust: TrustAnchors) -> Self {
        Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(trust)),
        }
    }

    /// The anchors in use.
    pub(crate) fn get(&self) -> Arc<TrustAnchors> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads trust.toml again and takes its CRLs when they differ from those in use: the new
    /// anchors, or `None` when nothing changed.
    pub(crate) fn reload(&self) -> Result<Option<Arc<TrustAnchors>>, TrustError> {
        let loaded = TrustAnchors::from_trust_toml(&self.path)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.operator_crls() == loaded.operator_crls()
            && current.licence_authority_crls() == loaded.licence_authority_crls()
            && current.vendor_crls() == loaded.vendor_crls()
        {
            return Ok(None);
        }
        let next = Arc::new(current.with_crls_of(&loaded));
        *current = Arc::clone(&next);
        Ok(Some(next))
    }
}

#[derive(Default)]
struct Inner {
    /// Moves with every change below: the fleet's basis is computed again.
    generation: u64,
    records: LifecycleRecords,
    /// The certificates the operator CRLs in use revoke.
    revoked_set: Arc<RevokedSet>,
    /// Nodes whose latest attestation's chain holds a revoked certificate.
    revoked_nodes: HashMap<NodeId, RevokedCert>,
    /// Stored attestation rows that do not read back, by record name; with the node, when
    /// known, so a later good row of the node clears it.
    bad_rows: BTreeMap<String, (Option<NodeId>, String)>,
}

/// This replica's lifecycle state (held by the fleet).
pub(crate) struct LifecycleState {
    /// `rule_sets` from the configuration: a licence must name one of them or a shipped one.
    rule_sets: Vec<String>,
    inner: RwLock<Inner>,
}

impl LifecycleState {
    pub(crate) fn new(rule_sets: Vec<String>) -> Self {
        Self {
            rule_sets,
            inner: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation = inner.generation.wrapping_add(1);
        inner
    }

    /// Moves whenever what the evaluation takes from here changes.
    pub(crate) fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Reads the lifecycle records again (their count changed).
    pub(crate) async fn reload(&self, store: &Store) -> ApiResult<()> {
        let records = store.lifecycle_records().await?;
        for problem in &records.unreadable {
            tracing::warn!(problem = %Escaped(problem), "a stored lifecycle record is left out");
        }
        self.write().records = records;
        Ok(())
    }

    /// Takes the operator CRLs of `trust` (at start, before the fleet is read).
    pub(crate) fn set_crls(&self, trust: &TrustAnchors) {
        self.write().revoked_set = Arc::new(RevokedSet::from_crls(trust.operator_crls()));
    }

    /// Checks stored rows (the latest of their nodes) against the CRLs in use: a row's node is
    /// marked revoked, or cleared, by its own token's chain.
    pub(crate) fn check_rows(&self, rows: &[StoredAttestation]) {
        let set = Arc::clone(&self.read().revoked_set);
        if set.is_empty() && self.read().revoked_nodes.is_empty() {
            return;
        }
        let found: Vec<(NodeId, Option<RevokedCert>)> = rows
            .iter()
            .filter_map(|r| Some((r.node_id?, revoked_in_token(&set, &r.token))))
            .collect();
        let mut inner = self.write();
        for (node, revoked) in found {
            match revoked {
                Some(cert) => inner.revoked_nodes.insert(node, cert),
                None => inner.revoked_nodes.remove(&node),
            };
        }
    }

    /// Node `node`'s attestation was accepted and applied: it was verified against the CRLs in
    /// use, and it replaces any row of the node that did not read back.
    pub(crate) fn arrived(&self, node: NodeId) {
        let stale = {
            let inner = self.read();
            inner.revoked_nodes.contains_key(&node)
                || inner.bad_rows.values().any(|(n, _)| *n == Some(node))
        };
        if stale {
            let mut inner = self.write();
            inner.revoked_nodes.remove(&node);
            inner.bad_rows.retain(|_, (n, _)| *n != Some(node));
        }
    }

    /// A stored attestation row that does not read back: left out, reported, logged.
    pub(crate) fn row_unusable(&self, row: &StoredAttestation, problem: &str) {
        let record = format!("attestation {}", row.id);
        tracing::warn!(
            record = %record,
            problem = %Escaped(problem),
            "a stored attestation is left out of the evaluation"
        );
        self.write()
            .bad_rows
            .insert(record, (row.node_id, problem.to_owned()));
    }

    /// The retirement of node `node`, if it was retired.
    pub(crate) fn node_retirement(&self, node: NodeId) -> Option<crate::store::NodeRetirement> {
        self.read()
            .records
            .node_retirements
            .iter()
            .find(|r| r.node_id == node)
            .cloned()
    }

    /// The records, for the lifecycle listing.
    pub(crate) fn records(&self) -> LifecycleRecords {
        self.read().records.clone()
    }

    /// The nodes the CRLs in use revoke, by node id.
    pub(crate) fn revoked_nodes(&self) -> Vec<(NodeId, RevokedCert)> {
        let mut list: Vec<_> = self
            .read()
            .revoked_nodes
            .iter()
            .map(|(n, c)| (*n, c.clone()))
            .collect();
        list.sort_unstable_by_key(|(n, _)| *n);
        list
    }

    /// Whether a licence naming `rule_set` can be evaluated: a shipped rule set, or one the
    /// configuration names.
    pub(crate) fn rule_set_loadable(&self, rule_set: &str) -> bool {
        if shipped_rule_set(rule_set).is_ok() {
            return true;
        }
        !self.rule_sets.is_empty()
            && crate::check::rule_sets(&self.rule_sets, &[])
                .is_ok_and(|sets| sets.iter().any(|s| s.id == rule_set))
    }

    /// The policy's stage-0 input and the licences it keeps, from the stored licences at
    /// `at`: a licence that does not verify, or names a rule set this verifier cannot load
    /// (with no `rule_sets` configured), is reported as unusable instead of stopping anything.
    pub(crate) fn basis_inputs(
        &self,
        stored: &[StoredLicence],
        trust: &TrustAnchors,
        at: i64,
    ) -> (Lifecycle, Vec<VerifiedLicence>, Vec<Finding>) {
        let mut lc = self.policy_input();
        let mut usable = Vec::with_capacity(stored.len());
        for l in stored {
            let record = format!("licence {} (token sha256 {})", l.id, short(&l.token_sha256));
            match verify_licence(&l.token, trust, at) {
                Err(e) => lc.unusable(&record, &format!("{}: {}", e.code(), e.sentence())),
                Ok(v)
                    if self.rule_sets.is_empty()
                        && !self.rule_set_loadable(v.licence().rule_set()) =>
                {
                    lc.unusable(&record, &unknown_rule_set(v.licence().rule_set()));
                }
                Ok(v) => usable.push(v),
            }
        }
        let (kept, findings) = lc.apply(usable);
        (lc, kept, findings)
    }

    /// Everything recorded, as the policy takes it.
    fn policy_input(&self) -> Lifecycle {
        let inner = self.read();
        let mut lc = Lifecycle::default();
        for r in &inner.records.revocations {
            lc.revoke_licence(&r.licence_id, &r.reason, r.revoked_at);
        }
        for r in &inner.records.licence_retirements {
            lc.retire_licence(&r.licence_id, &r.reason, r.retired_at, &r.retired_by);
        }
        for r in &inner.records.node_retirements {
            lc.retire_node(
                r.node_id,
                &r.subject,
                &r.reason,
                r.retired_at,
                &r.retired_by,
            );
        }
        for problem in &inner.records.unreadable {
            lc.unusable("lifecycle record", problem);
        }
        for (node, cert) in &inner.revoked_nodes {
            lc.certificate_revoked(*node, &cert.subject, &cert.serial);
        }
        for (record, (_, problem)) in &inner.bad_rows {
            lc.unusable(record, problem);
        }
        lc
    }

    /// Checks every node's latest token against the CRLs of `trust`, a page at a time, and
    /// takes the result; whether the set of revoked nodes changed.
    pub(crate) async fn recheck(&self, store: &Store, trust: &TrustAnchors) -> ApiResult<bool> {
        let set = Arc::new(RevokedSet::from_crls(trust.operator_crls()));
        let mut revoked = HashMap::new();
        let mut after = None;
        while !set.is_empty() {
            let page = store.latest_tokens_page(after, CRL_CHECK_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            let set = Arc::clone(&set);
            let found = tokio::task::spawn_blocking(move || {
                page.into_iter()
                    .filter_map(|(node, token)| Some((node, revoked_in_token(&set, &token)?)))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| ApiError::internal(&e))?;
            revoked.extend(found);
        }
        let mut inner = self.write();
        let changed = inner.revoked_nodes != revoked;
        inner.revoked_set = set;
        inner.revoked_nodes = revoked;
        Ok(changed)
    }
}

/// The first certificate of `token`'s `x5c` that `set` revokes.
fn revoked_in_token(set: &RevokedSet, token: &str) -> Option<RevokedCert> {
    if set.is_empty() {
        return None;
    }
    let decoded = tppguard_proto::jws::decode(token).ok()?;
    set.revoked_in(&decoded.header().x5c)
}

/// The first 12 hex digits of a hash, for record names.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Why a licence naming `rule_set` cannot be used.
pub(crate) fn unknown_rule_set(rule_set: &str) -> String {
    format!(
        "it names rule set {:?}, which this verifier cannot load (a shipped rule set id, or one \
         of the configuration's rule_sets)",
        rule_set.chars().take(80).collect::<String>()
    )
}

/// Reloads the CRLs of trust.toml; when they changed, checks the fleet again and moves the
/// fleet version. Failures are logged; the CRLs in use stay.
pub(crate) async fn reload_crls(state: &AppState) {
    let trust = match state.trust.reload() {
        Ok(Some(trust)) => trust,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "trust.toml did not load again: the CRLs in use stay");
            return;
        }
    };
    let checked = state.fleet.lifecycle.recheck(&state.store, &trust).await;
    match checked {
        Ok(nodes_changed) => {
            tracing::info!(
                revoked_nodes = state.fleet.lifecycle.revoked_nodes().len(),
                nodes_changed,
                "CRLs reloaded"
            );
            if let Err(e) = state.store.bump_fleet_version().await {
                tracing::warn!(error = %e, "the fleet version did not move after a CRL reload");
            }
        }
        Err(e) => tracing::warn!(
            error = %Escaped(e.sentence()),
            "the fleet could not be checked against the new CRLs; retried at the next reload"
        ),
    }
}

/// The SIGHUP stream, installed before `serve` says it listens (a SIGHUP before it would end
/// the process); `None` when no handler can be installed.
pub(crate) fn hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

/// Reloads the CRLs every `every_s` seconds (0: never on a timer) and at each of `hup`
/// (SIGHUP), until the process ends.
pub(crate) async fn reload_loop(
    state: Arc<AppState>,
    every_s: u64,
    mut hup: Option<tokio::signal::unix::Signal>,
) {
    let period = std::time::Duration::from_secs(every_s.max(1));
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = timer.tick(), if every_s > 0 => {}
            Some(()) = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        reload_crls(&state).await;
    }
}

/// Verifies and stores every `*.revocation.jws` of `dir` (sorted by name); one that does not
/// verify stops the start, naming the file.
pub(crate) async fn import_revocations(
    store: &Store,
    trust: &TrustAnchors,
    dir: &Path,
    now: i64,
) -> Result<(), Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        // The licence import already named an unreadable folder.
        return Ok(());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_revocation_file(p))
        .collect();
    files.sort();
    for file in files {
        let bytes = crate::chain::read_bounded(&file, MAX_REVOCATION_FILE_BYTES)?;
        let token = String::from_utf8_lossy(&bytes).trim_ascii().to_owned();
        let verified = verify_licence_revocation(&token, trust, now).map_err(|source| {
            Error::LicenceRejected {
                path: file.clone(),
                source,
            }
        })?;
        store
            .add_licence_revocation(&revocation_record(&verified, &token, now, IMPORTED_BY))
            .await?;
    }
    Ok(())
}

/// Whether `path` names a signed revocation (`*.revocation.jws`).
pub(crate) fn is_revocation_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(REVOCATION_SUFFIX))
}

/// The record of a verified revocation.
pub(crate) fn revocation_record(
    v: &VerifiedRevocation,
    token: &str,
    now: i64,
    by: &str,
) -> LicenceRevocationRecord {
    let r = v.revocation();
    LicenceRevocationRecord {
        licence_id: r.licence_id().to_owned(),
        token: token.to_owned(),
        reason: r.reason().to_owned(),
        revoked_at: r.revoked_at(),
        recorded_at: now,
        recorded_by: by.to_owned(),
    }
}
