//! The write path: one task takes every challenge, attestation and rejection from the
//! handlers and commits them in batches (group commit).
//!
//! Whatever arrives while a batch is being committed forms the next batch (up to
//! [`MAX_BATCH`]): under load, one transaction, one durable sync (SQLite `synchronous = FULL`,
//! PostgreSQL's WAL flush) and one fleet evaluation serve many submissions; alone, a
//! submission is committed at once. A batch:
//!
//! 1. takes the fleet lock (it increases the fleet version, [`WriteBatch`]), so replicas'
//!    batches take turns, and catches the in-memory fleet up with the database
//!    ([`FleetState::refresh`]);
//! 2. in one transaction, stores the new challenge nonces, spends the nonces the attestations
//!    answer (a replayed, unknown or expired nonce, or an `iat` outside the challenge's window,
//!    turns the attestation into a rejection) and records the rejections; only then does an
//!    attestation count against its node's `node_rate_per_minute` (so replaying a node's old
//!    tokens never locks it out), and one over it is answered 429, unrecorded;
//! 3. evaluates the fleet with the batch's accepted attestations taken in, under the licences
//!    and rule set of this second, and signs each one's EAR: it appraises that very token
//!    (named by its SHA-256), never an older or later one of the same node;
//! 4. records the accepted attestations with their EARs, commits, and only then updates the
//!    in-memory fleet and answers. A failed commit answers every submission of the batch 503
//!    and changes nothing: an answer of 200 means the attestation is on disk.
//!
//! Requests whose handler stopped waiting (request timeout, closed connection) are left out
//! of the next batch; a batch that runs past [`BATCH_TIMEOUT`] is rolled back and its requests
//! answered 503.
//!
//! Every answer of a batch therefore reflects the same instant, the whole batch and every
//! replica's earlier batches: two nodes whose GPUs overlap each see the other, whether they
//! arrive together or at two replicas.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::api::{
    ApiError, ApiResult, NodeFinding, Rejection, iat_rejection, node_of, nonce_rejection,
    rate_limited, rejected_record, with_subjects,
};
use crate::ear::{EarClaims, EarStatus};
use crate::lease::LeasePlan;
use crate::policy::{FleetVerdict, VerifiedAttestation};
use crate::store::{NewAttestation, WriteBatch};
use tppguard_proto::identity::NodeId;

/// Most jobs in one batch.
pub(crate) const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer before handlers wait to hand theirs over.
pub(crate) const QUEUE: usize = 4096;
/// Nonces are deleted this long after they expire (until then, a late answer is told
/// `nonce_expired` rather than `nonce_unknown`).
const NONCE_RETENTION_S: i64 = 86_400;
/// Longest a batch may take; past it, it is rolled back and its requests answered 503 (a
/// database that stopped answering must not hold every later request).
const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Seconds between prunings of old nonces.
const PRUNE_EVERY_S: i64 = 600;

/// Work for the writer.
pub(crate) enum Job {
    /// Store a fresh challenge nonce; answers its expiry.
    Challenge {
        nonce: [u8; 32],
        reply: oneshot::Sender<ApiResult<i64>>,
    },
    /// Record an attestation rejected before its nonce was looked at.
    Rejected {
        record: Box<NewAttestation>,
        reply: oneshot::Sender<ApiResult<()>>,
    },
    /// Spend the nonce, evaluate, sign the EAR, record.
    Attest(Box<Submission>),
}

/// A verified attestation waiting for its nonce, its evaluation and its record.
pub(crate) struct Submission {
    pub(crate) verified: VerifiedAttestation,
    pub(crate) token: String,
    /// The claims as JSON text, made by the handler (in parallel, off the writer's path).
    pub(crate) claims_json: String,
    pub(crate) nonce: Vec<u8>,
    pub(crate) received_at: i64,
    pub(crate) reply: oneshot::Sender<ApiResult<Accepted>>,
}

/// The answer to an accepted attestation.
pub(crate) struct Accepted {
    pub(crate) status: EarStatus,
    pub(crate) ear: String,
    pub(crate) findings: Vec<NodeFinding>,
    /// The lease (compact JWS) made from the same verdict as the EAR (issue 15).
    pub(crate) lease: Option<String>,
}

impl Job {
    /// Its handler stopped waiting for the answer.
    fn abandoned(&self) -> bool {
        match self {
            Self::Challenge { reply, .. } => reply.is_closed(),
            Self::Rejected { reply, .. } => reply.is_closed(),
            Self::Attest(sub) => sub.reply.is_closed(),
        }
    }
}

/// Hands `job` to the writer.
pub(crate) async fn submit(queue: &mpsc::Sender<Job>, job: Job) -> ApiResult<()> {
    queue
        .send(job)
        .await
        .map_err(|_| ApiError::internal(&"the verifier's writer stopped"))
}

/// The writer: runs until every sender is gone.
pub(crate) async fn run(state: Arc<AppState>, mut queue: mpsc::Receiver<Job>) {
    let mut last_prune = i64::MIN;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        // The service clock (injected in tests), as the handlers read it.
        let Some(now) = (state.clock)() else {
            fail_all(
                batch,
                &ApiError::internal(&"the system clock is before 1970"),
            );
            continue;
        };
        // Requests whose handler gave up (request timeout, closed connection) are not
        // committed: their client was told nothing succeeded.
        let batch: Vec<Job> = batch.into_iter().filter(|j| !j.abandoned()).collect();
        let jobs = batch.len();
        if jobs > 0
            && tokio::time::timeout(BATCH_TIMEOUT, process(&state, batch, now))
                .await
                .is_err()
        {
            // Dropping the batch rolled its transaction back and dropped its replies: the
            // handlers answer 503 and their clients retry.
            tracing::warn!(jobs, timeout_s = BATCH_TIMEOUT.as_secs(), "batch timed out");
        }
        if now.saturating_sub(last_prune) >= PRUNE_EVERY_S {
            last_prune = now;
            match state
                .store
                .prune_nonces(now.saturating_sub(NONCE_RETENTION_S))
                .await
            {
                Ok(n) => tracing::debug!(pruned = n, "old nonces deleted"),
                Err(e) => tracing::warn!(error = %e, "could not delete old nonces; will retry"),
            }
        }
    }
}

/// Answers every job of `batch` with `error`.
fn fail_all(batch: Vec<Job>, error: &ApiError) {
    for job in batch {
        match job {
            Job::Challenge { reply, .. } => drop(reply.send(Err(error.clone()))),
            Job::Rejected { reply, .. } => drop(reply.send(Err(error.clone()))),
            Job::Attest(sub) => drop(sub.reply.send(Err(error.clone()))),
        }
    }
}

/// An answer to send once the batch is committed, with the outcome to count in the metrics.
enum Answer {
    Challenge(oneshot::Sender<ApiResult<i64>>, i64),
    Recorded(oneshot::Sender<ApiResult<()>>),
    Attest {
        reply: oneshot::Sender<ApiResult<Accepted>>,
        result: ApiResult<Accepted>,
        counted: Option<(&'static str, &'static str)>,
    },
}

impl Answer {
    fn send(self) {
        match self {
            Self::Challenge(reply, expires_at) => drop(reply.send(Ok(expires_at))),
            Self::Recorded(reply) => drop(reply.send(Ok(()))),
            Self::Attest { reply, result, .. } => drop(reply.send(result)),
        }
    }

    fn fail(self, error: &ApiError) {
        match self {
            Self::Challenge(reply, _) => drop(reply.send(Err(error.clone()))),
            Self::Recorded(reply) => drop(reply.send(Err(error.clone()))),
            Self::Attest { reply, .. } => drop(reply.send(Err(error.clone()))),
        }
    }
}

async fn process(s: &Arc<AppState>, batch: Vec<Job>, now: i64) {
    let started = std::time::Instant::now();
    let jobs = batch.len();
    // The fleet lock first, then the catch-up: replicas' batches take turns, and each
    // evaluates a fleet that holds everything the others committed.
    let mut tx = match s.store.begin_batch().await {
        Ok(tx) => tx,
        Err(e) => {
            fail_all(batch, &e.into());
            return;
        }
    };
    if let Err(e) = s.fleet.refresh(&s.store).await {
        tracing::warn!(
            error = e.sentence(),
            jobs,
            "batch refused: cannot read the fleet"
        );
        fail_all(batch, &e);
        return;
    }
    let refreshed = started.elapsed();
    let mut staged = Staged::default();
    if let Err(e) = stage(s, &mut tx, batch, now, &mut staged).await {
        tracing::warn!(error = e.sentence(), jobs, "batch rolled back");
        staged.answers.into_iter().for_each(|a| a.fail(&e));
        return;
    }
    let staged_at = started.elapsed();
    let version = match tx.commit().await {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::from(e);
            tracing::warn!(error = e.sentence(), jobs, "batch commit failed");
            staged.answers.into_iter().for_each(|a| a.fail(&e));
            return;
        }
    };
    let accepted = staged.accepted.len();
    if let Some(verdict) = &staged.verdict {
        s.metrics.usage(verdict);
    }
    s.fleet
        .committed(version, staged.accepted, staged.verdict.take());
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        jobs,
        accepted,
        refresh_ms = ms(refreshed),
        evaluate_ms = ms(staged.evaluation),
        commit_ms = ms(started.elapsed().saturating_sub(staged_at)),
        took_ms = ms(started.elapsed()),
        "batch committed"
    );
    for answer in staged.answers {
        if let Answer::Attest {
            counted: Some((outcome, code)),
            ..
        } = &answer
        {
            s.metrics.attestation(outcome, code);
        }
        answer.send();
    }
}

/// What a batch has done before its commit.
#[derive(Default)]
struct Staged {
    answers: Vec<Answer>,
    /// Accepted attestations and their row ids, for the in-memory fleet.
    accepted: Vec<(i64, VerifiedAttestation)>,
    /// The verdict the batch's EARs were made from.
    verdict: Option<FleetVerdict>,
    /// How long evaluating the fleet took.
    evaluation: std::time::Duration,
}

/// Steps 2 to 4 of the module documentation, up to the commit: a few multi-row statements
/// per batch, whatever its size. An error is fatal to the batch: every answer staged, and
/// every request not yet answered, is failed with it.
async fn stage(
    s: &Arc<AppState>,
    tx: &mut WriteBatch<'_>,
    batch: Vec<Job>,
    now: i64,
    staged: &mut Staged,
) -> ApiResult<()> {
    let mut nonces: Vec<[u8; 32]> = Vec::new();
    let mut records: Vec<NewAttestation> = Vec::new();
    let mut record_replies: Vec<oneshot::Sender<ApiResult<()>>> = Vec::new();
    let mut subs: Vec<Submission> = Vec::new();
    let expires_at = now.saturating_add(s.nonce_ttl_s);
    for job in batch {
        match job {
            Job::Challenge { nonce, reply } => {
                nonces.push(nonce);
                staged.answers.push(Answer::Challenge(reply, expires_at));
            }
            Job::Rejected { record, reply } => {
                records.push(*record);
                record_replies.push(reply);
            }
            Job::Attest(sub) => subs.push(*sub),
        }
    }
    let unanswered = |subs: Vec<Submission>, replies: Vec<oneshot::Sender<_>>, e: &ApiError| {
        subs.into_iter()
            .for_each(|sub| drop(sub.reply.send(Err(e.clone()))));
        replies
            .into_iter()
            .for_each(|r| drop(r.send(Err(e.clone()))));
    };

    // New nonces, then the nonces the attestations answer.
    let refs: Vec<&[u8]> = nonces.iter().map(|n| &n[..]).collect();
    let spent = match tx.issue_nonces(&refs, now, expires_at).await {
        Ok(()) => {
            let answered: Vec<&[u8]> = subs.iter().map(|sub| sub.nonce.as_slice()).collect();
            tx.spend_nonces(&answered, now).await
        }
        Err(e) => Err(e),
    };
    let spent = match spent {
        Ok(spent) => spent,
        Err(e) => {
            let e = ApiError::from(e);
            unanswered(subs, record_replies, &e);
            return Err(e);
        }
    };
    let mut fresh: Vec<Submission> = Vec::with_capacity(subs.len());
    let mut refused: Vec<(Submission, Rejection)> = Vec::new();
    let mut refused_records = Vec::new();
    for (sub, used) in subs.into_iter().zip(spent) {
        // Answered, whatever the answer: no longer outstanding.
        s.challenges.answered(&sub.nonce);
        // A fresh nonce says when its challenge was issued: the token must be dated between
        // then and its receipt (each less or plus clock skew).
        let rejection = nonce_rejection(used.outcome).or_else(|| {
            used.issued_at.and_then(|issued_at| {
                iat_rejection(sub.verified.claims().iat, issued_at, sub.received_at)
            })
        });
        match rejection {
            // Only a fresh answer counts against the node's rate; over it, not recorded (a
            // flood must not fill the database).
            None if !s.limiter.allow(sub.verified.node_id(), now) => {
                staged.answers.push(Answer::Attest {
                    reply: sub.reply,
                    result: Err(rate_limited(now)),
                    counted: Some(("rejected", "rate_limited")),
                });
            }
            None => fresh.push(sub),
            Some(r) => {
                s.metrics.rejected_bytes(sub.token.len());
                refused_records.push(rejected_record(&sub.token, Some(&sub.verified), now, &r));
                refused.push((sub, r));
            }
        }
    }

    // The rejections made before the nonce was looked at.
    let recorded = match tx.record_many(&records).await {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::from(e);
            let subs = fresh.into_iter().chain(refused.into_iter().map(|(s, _)| s));
            unanswered(subs.collect(), record_replies, &e);
            return Err(e);
        }
    };
    for (reply, outcome) in record_replies.into_iter().zip(recorded) {
        match outcome {
            Err(e) => drop(reply.send(Err(e.into()))),
            Ok(_) => staged.answers.push(Answer::Recorded(reply)),
        }
    }

    // The accepted ones, before the nonce rejections: a token sent twice in one batch is
    // recorded (its SHA-256 is the row's key) as accepted, its copy answered as a replay.
    if !fresh.is_empty()
        && let Err(e) = accept(s, tx, fresh, now, staged).await
    {
        refused
            .into_iter()
            .for_each(|(sub, _)| drop(sub.reply.send(Err(e.clone()))));
        return Err(e);
    }
    let recorded = match tx.record_many(&refused_records).await {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::from(e);
            let subs = refused.into_iter().map(|(s, _)| s).collect();
            unanswered(subs, Vec::new(), &e);
            return Err(e);
        }
    };
    for ((sub, r), outcome) in refused.into_iter().zip(recorded) {
        let answer = match outcome {
            Err(e) => Answer::Attest {
                reply: sub.reply,
                result: Err(e.into()),
                counted: None,
            },
            Ok(_) => Answer::Attest {
                reply: sub.reply,
                result: Err(r.error()),
                counted: Some(("rejected", r.code)),
            },
        };
        staged.answers.push(answer);
    }
    Ok(())
}

/// Which evaluation appraises each fresh attestation: round 0 holds each node's last
/// arrival of the batch (what the node's record becomes), round 1 the one before it, and so
/// on. A node sends one attestation at a time, so a batch almost always needs round 0 alone;
/// the rounds bound the extra evaluations by the most one node sent in one batch (itself
/// bounded by `node_rate_per_minute`).
fn rounds(fresh: &[Submission]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<NodeId, usize> = HashMap::new();
    for (i, sub) in fresh.iter().enumerate().rev() {
        let k = seen.entry(sub.verified.node_id()).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        if let Some(round) = rounds.get_mut(*k) {
            round.push(i);
        }
        *k += 1;
    }
    rounds
}

/// Evaluates the fleet with the batch's fresh attestations, signs their EARs and records them.
/// Without a usable rule set or licences (`basis`), they are answered with that error and the
/// rest of the batch goes on.
///
/// Each EAR appraises the token it answers: its node's appraisal is made from a verdict in
/// which that token is the node's current attestation, and names the token's SHA-256
/// (checked here before signing). Arrivals are recorded in batch order, which is receipt
/// order, so each node's record ends at its last arrival (round 0).
async fn accept(
    s: &Arc<AppState>,
    tx: &mut WriteBatch<'_>,
    fresh: Vec<Submission>,
    now: i64,
    staged: &mut Staged,
) -> ApiResult<()> {
    // Evaluate the fleet as it will be with the batch, off the async workers.
    let evaluating = std::time::Instant::now();
    let basis = match s.fleet.basis(&s.trust(), now) {
        Ok(b) => b,
        Err(e) => {
            for sub in fresh {
                staged.answers.push(Answer::Attest {
                    reply: sub.reply,
                    result: Err(e.clone()),
                    counted: None,
                });
            }
            return Ok(());
        }
    };
    let rounds = rounds(&fresh);
    // Round `k` of `rounds` in the fleet of round 0: round 0's arrivals, each replaced by
    // the node's arrival in round `k` where it has one.
    let verdicts: Vec<FleetVerdict> = tokio::task::block_in_place(|| {
        let latest: Vec<&VerifiedAttestation> = rounds
            .first()
            .map(|r| {
                r.iter()
                    .filter_map(|&i| fresh.get(i))
                    .map(|f| &f.verified)
                    .collect()
            })
            .unwrap_or_default();
        rounds
            .iter()
            .enumerate()
            .map(|(k, round)| {
                if k == 0 {
                    return s.fleet.evaluate(&basis, &latest);
                }
                let mut arrivals: HashMap<NodeId, &VerifiedAttestation> =
                    latest.iter().map(|a| (a.node_id(), *a)).collect();
                for sub in round.iter().filter_map(|&i| fresh.get(i)) {
                    arrivals.insert(sub.verified.node_id(), &sub.verified);
                }
                let arrivals: Vec<&VerifiedAttestation> = arrivals.into_values().collect();
                s.fleet.evaluate(&basis, &arrivals)
            })
            .collect()
    });
    staged.evaluation = evaluating.elapsed();
    let mut round_of = vec![0usize; fresh.len()];
    for (k, round) in rounds.iter().enumerate() {
        for &i in round {
            if let Some(r) = round_of.get_mut(i) {
                *r = k;
            }
        }
    }
    let indexes: Vec<_> = verdicts.iter().map(FleetVerdict::finding_index).collect();
    // Leases (issue 15): each licence's walk against its caps, once per verdict.
    let plans: Vec<LeasePlan<'_>> = verdicts
        .iter()
        .zip(&indexes)
        .map(|(v, i)| LeasePlan::new(v, i))
        .collect();
    let issuer = crate::lease::issuer(&s.result_key);
    let mut records = Vec::with_capacity(fresh.len());
    let mut pending = Vec::with_capacity(fresh.len());
    for (sub, k) in fresh.into_iter().zip(round_of) {
        let (Some(verdict), Some(index)) = (verdicts.get(k), indexes.get(k)) else {
            continue;
        };
        let node_id = sub.verified.node_id();
        let sha = crate::store::sha256_hex(sub.token.as_bytes());
        let nonce = Some(&sub.verified.claims().eat_nonce);
        let ear = EarClaims::for_node(verdict, index, node_id, nonce, now);
        let appraisal = ear.submods.get(&node_id.to_string());
        if appraisal.and_then(|a| a.token_sha256.as_deref()) != Some(sha.as_str()) {
            // The verdict must hold this very token as the node's attestation.
            staged.answers.push(Answer::Attest {
                reply: sub.reply,
                result: Err(ApiError::internal(&format!(
                    "the evaluation of node {node_id} did not appraise token {sha}"
                ))),
                counted: None,
            });
            continue;
        }
        let status = appraisal.map_or(EarStatus::None, |a| a.status);
        let signed = match ear.sign(&s.result_key) {
            Ok(p) => p,
            Err(e) => {
                staged.answers.push(Answer::Attest {
                    reply: sub.reply,
                    result: Err(e.into()),
                    counted: None,
                });
                continue;
            }
        };
        // The lease from the verdict the EAR was made from; not stored (the stored EAR's
        // verdict and the licence's terms re-derive it).
        let lease = plans
            .get(k)
            .and_then(|p| p.lease(node_id, now, &issuer))
            .map(|claims| crate::lease::sign(&claims, &s.result_key));
        let lease = match lease.transpose() {
            Ok(l) => l,
            Err(e) => {
                staged.answers.push(Answer::Attest {
                    reply: sub.reply,
                    result: Err(ApiError::internal(&format!(
                        "the lease of node {node_id} cannot be signed ({}): {e}",
                        e.code()
                    ))),
                    counted: None,
                });
                continue;
            }
        };
        records.push(NewAttestation::accepted(
            &sub.verified,
            sub.token,
            sub.claims_json,
            sub.received_at,
            Some(signed.clone()),
        ));
        let findings = node_of(verdict, node_id)
            .map(|n| with_subjects(verdict, index.for_node(n)))
            .unwrap_or_default();
        let accepted = Accepted {
            status,
            ear: signed,
            findings,
            lease,
        };
        pending.push((sub.verified, sub.reply, accepted));
    }
    drop(plans);
    drop(indexes);
    let recorded = match tx.record_many(&records).await {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::from(e);
            pending
                .into_iter()
                .for_each(|(_, reply, _)| drop(reply.send(Err(e.clone()))));
            return Err(e);
        }
    };
    for ((verified, reply, accepted), outcome) in pending.into_iter().zip(recorded) {
        let (result, counted) = match outcome {
            Ok(Some(id)) => {
                staged.accepted.push((id, verified));
                (Ok(accepted), Some(("accepted", "accepted")))
            }
            Ok(None) => (
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "attestation_duplicate",
                    "this exact attestation was already received",
                )),
                Some(("rejected", "attestation_duplicate")),
            ),
            Err(e) => (Err(e.into()), None),
        };
        staged.answers.push(Answer::Attest {
            reply,
            result,
            counted,
        });
    }
    // Issue 15, in the batch's transaction: the GPU site history of the attestations
    // recorded, and the webhook events of the verdict they were appraised in.
    if let Some(verdict) = verdicts.first() {
        let recorded: Vec<&VerifiedAttestation> = staged.accepted.iter().map(|(_, a)| a).collect();
        super::webhooks::stage_batch(s, tx, &recorded, verdict, now).await?;
    }
    staged.verdict = verdicts.into_iter().next();
    Ok(())
}
