//! Gating (issue 15): what a node reports it did about its lease (claim `tppguard.gating`),
//! held against the lease it carries, which the attestation verifier checked was signed by
//! this verifier's result key for this node ([`GatingFacts`]).
//!
//! The stage runs after the assignment and emits, per node:
//!
//! - `gating_lease_foreign` (violation): the report carries a lease this verifier did not sign
//!   for this node (another key, another node's, not a lease): a forged or borrowed lease.
//! - `gating_not_held` (violation), in `enforce` mode, per GPU that had to be gated (the
//!   verified lease leaves it out, every GPU in `lapsed_fail_closed`, or the agent marks it
//!   `gate`) but is reported not gated or not held (compute mode read back other than
//!   `prohibited`, or the GPU missing from the report), with the NVML error if any.
//! - `gating_observe_only` (warning), in `observe` mode, when the lease leaves GPUs out (or
//!   the lease lapsed with `fail_closed`): they would have been gated.
//! - `gating_not_reported` (warning): the node's licence fails closed (`[lease] on_expiry =
//!   "fail_closed"`) and the attestation carries no gating report (an agent without gating).
//!   A warning, not a violation: the licence's conditions (caps, sites, models) are still
//!   checked on the evidence; what is missing is the node's account of enforcing them.
//!
//! The report is the node's word: root on the node can write any report. A lease is checked
//! because the verifier can check it (its own signature); the gating itself cannot be proven
//! from here (docs/trust-model.md, "Leases in the verdict"). A lease that expired before the
//! attestation arrived is history, not a fault: the findings name it.
//!
//! An attestation read back from storage carries no facts: its report is taken with the
//! lease unverifiable (no exclusion is read from it, no foreign lease found), and the
//! agent's own `gate` marks and the `lapsed_fail_closed` state still checked.

use tppguard_proto::claims::submod_name;
use tppguard_proto::lease::{
    CcReadyGate, ComputeMode, GatingMode, GatingReport, GatingState, GpuGate, LeaseExclusion,
    LeaseTime, MAX_LEASE_GPUS, MAX_TEXT_CHARS, OnExpiry,
};

use super::assign::Assignment;
use super::findings::Findings;
use super::latest::Current;
use super::{Reason, VerifiedLicence};

/// What the verifier established from a node's gating report when it verified the
/// attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatingFacts {
    /// The agent's mode.
    pub mode: GatingMode,
    /// Where the agent says it stood with leases.
    pub state: GatingState,
    /// What the lease the report carries turned out to be.
    pub lease: LeaseCheck,
    /// The report's GPUs (at most [`MAX_LEASE_GPUS`]), as the node reports them.
    pub gpus: Vec<GpuGate>,
    /// The CC ready state, as reported.
    pub cc_ready: Option<CcReadyGate>,
}

/// The lease inside a gating report, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseCheck {
    /// The report carries no lease (`no_lease_yet`, or an agent that never held one).
    Absent,
    /// The verifier has no result key to check it with (`check` without one; a stored
    /// attestation read back).
    Unverifiable,
    /// Signed by this verifier's result key, for this node.
    Verified(Box<VerifiedLease>),
    /// Not a lease this verifier issued to this node.
    Foreign {
        /// Why (`lease_bad_signature`, `lease_other_node`, `lease_wrong_typ`, a JWS or lease
        /// parse code).
        code: &'static str,
        /// The detail, with figures.
        detail: String,
    },
}

/// A lease in a report that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLease {
    /// Issued at.
    pub iat: i64,
    /// Not after.
    pub exp: i64,
    /// Where the verification instant lay against it (an expired one is history).
    pub time: LeaseTime,
    /// The attestation it answered.
    pub token_sha256: String,
    /// The GPUs it leaves out.
    pub excluded: Vec<LeaseExclusion>,
}

impl GatingFacts {
    /// The facts of `report` with its lease checked as `lease`.
    pub fn new(report: &GatingReport, lease: LeaseCheck) -> Self {
        Self {
            mode: report.mode,
            state: report.state,
            lease,
            gpus: report.gpus.iter().take(MAX_LEASE_GPUS).cloned().collect(),
            cc_ready: report.cc_ready.clone(),
        }
    }

    fn verified(&self) -> Option<&VerifiedLease> {
        match &self.lease {
            LeaseCheck::Verified(l) => Some(l),
            _ => None,
        }
    }
}

fn bounded(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

/// The stage: the findings of the module documentation, per node.
pub(super) fn check(
    nodes: &[Current<'_>],
    assignment: &[Assignment<'_>],
    lics: &[&VerifiedLicence],
    findings: &mut Findings,
) {
    for (n, current) in nodes.iter().enumerate() {
        let a = current.attestation;
        let nref = Some((n, a.node_id()));
        let licence = assignment
            .get(n)
            .and_then(|x| x.licence)
            .and_then(|i| lics.get(i).map(|v| (i, v.licence().id())));
        let Some(report) = &a.claims().gating else {
            let fails_closed = licence
                .and_then(|(i, _)| lics.get(i))
                .map(|v| v.licence().lease_terms().on_expiry)
                == Some(OnExpiry::FailClosed);
            if fails_closed {
                let reason = Reason::GatingNotReported {
                    on_expiry: OnExpiry::FailClosed,
                };
                findings.push(reason, licence, nref, None);
            }
            continue;
        };
        let read_back;
        let facts = match a.gating() {
            Some(f) => f,
            None => {
                let lease = if report.lease.is_some() {
                    LeaseCheck::Unverifiable
                } else {
                    LeaseCheck::Absent
                };
                read_back = GatingFacts::new(report, lease);
                &read_back
            }
        };
        node_findings(facts, licence, nref, findings);
    }
}

/// One node's findings from its facts.
fn node_findings(
    facts: &GatingFacts,
    licence: super::findings::Ref<'_>,
    nref: super::findings::NodeRef,
    findings: &mut Findings,
) {
    if let LeaseCheck::Foreign { code, detail } = &facts.lease {
        let reason = Reason::GatingLeaseForeign {
            problem: (*code).to_owned(),
            detail: bounded(detail),
        };
        findings.push(reason, licence, nref, None);
    }
    let lapsed_closed = facts.state == GatingState::LapsedFailClosed;
    let lease = facts.verified();
    let lease_expired =
        lease.is_some_and(|l| matches!(l.time, LeaseTime::Grace | LeaseTime::Lapsed));
    // Every GPU that had to be gated, with why: the lease's exclusions first (a GPU it
    // leaves out that the report does not name at all is not held either), then the
    // report's own.
    let mut due: Vec<(u32, Option<String>, Option<&GpuGate>)> = Vec::new();
    for e in lease.map(|l| l.excluded.as_slice()).unwrap_or_default() {
        let code = e.reasons.first().map(|r| bounded(&r.code));
        let gate = facts.gpus.iter().find(|g| g.gpu.same_gpu(&e.gpu));
        due.push((e.gpu.index, code, gate));
    }
    for g in &facts.gpus {
        let excluded = lease.is_some_and(|l| l.excluded.iter().any(|e| e.gpu.same_gpu(&g.gpu)));
        if !excluded && (g.gate || lapsed_closed) {
            due.push((g.gpu.index, None, Some(g)));
        }
    }
    match facts.mode {
        GatingMode::Enforce => {
            for (index, excluded_for, gate) in due {
                let held =
                    gate.is_some_and(|g| g.held && g.compute_mode == Some(ComputeMode::Prohibited));
                if held {
                    continue;
                }
                let reason = Reason::GatingNotHeld {
                    index,
                    excluded_for,
                    lapsed_fail_closed: lapsed_closed,
                    reported: gate.is_some(),
                    compute_mode: gate.and_then(|g| g.compute_mode),
                    error: gate.and_then(|g| g.error.as_deref()).map(bounded),
                    lease_expired,
                };
                findings.push(reason, licence, nref, Some(&submod_name(index)));
            }
        }
        GatingMode::Observe => {
            let mut gpus: Vec<u32> = due
                .iter()
                .filter(|(_, excluded_for, _)| excluded_for.is_some() || lapsed_closed)
                .map(|(i, _, _)| *i)
                .collect();
            gpus.sort_unstable();
            gpus.dedup();
            if !gpus.is_empty() {
                let reason = Reason::GatingObserveOnly {
                    gpus,
                    lapsed_fail_closed: lapsed_closed,
                };
                findings.push(reason, licence, nref, None);
            }
        }
    }
}

#[cfg(test)]
mod tests;
