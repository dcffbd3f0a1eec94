//! Stage 6, one node: freshness, each GPU classified and checked against the node's licence,
//! the evidence tier derived from what was verified, and the node's tallies.
//!
//! The tier is the verifier's, never the claim's: `declared` always; `measured` only when
//! every GPU of the node carries a real (never simulated) measurement consistent with its
//! spec (`consistent` or `below_spec`), and the inventory is not simulated; `hardware` only
//! when every GPU carries its own evidence (signed SPDM report and device chain) that the
//! attestation verifier verified and bound to this attestation
//! ([`VerifiedAttestation::gpu_evidence`](super::VerifiedAttestation::gpu_evidence)), and the
//! inventory is not simulated. A claimed `hardware` not backed so is
//! `hardware_tier_unverified`, and each GPU whose evidence failed is `gpu_evidence_failed`.
//! Each GPU's verdict carries its own tier and its evidence's named checks. A tier below the
//! licence's minimum leaves the licence `unproven`, as do stale, simulated or future-dated
//! evidence, GPUs without identity and parts whose TPP the verifier cannot establish.

use std::collections::HashSet;

use tppguard_proto::claims::measurement::MeasurementMethod;
use tppguard_proto::claims::{GpuStatus, GpuSubmod};
use tppguard_proto::classify::classify_device;
use tppguard_proto::evidence::EvidenceTier;
use tppguard_proto::licence::{DEFAULT_MAX_ATTESTATION_AGE_SECONDS, Licence};
use tppguard_proto::ruleset::{MeasurementTolerances, RuleSet};
use tppguard_proto::spec;
use tppguard_proto::tpp::Precision;
use tppguard_proto::units::Tpp;

use super::assign::Assignment;
use super::duplicates::{GpuIdentity, Place};
use super::findings::{Findings, NodeRef, Ref};
use super::gpu::{
    Deriver, Unlisted, agent_mismatch, check_measurement, controls, eccn_of, measured_figures,
    per_device_cap,
};
use super::latest::Current;
use super::{
    GpuEvidenceReport, GpuVerdict, MAX_CLOCK_SKEW_S, MeasurementStatus, NodeVerdict, Reason,
    Severity, TppSource, VerifiedLicence, hex,
};

/// What every node's evaluation shares.
pub(super) struct Context<'a> {
    pub(super) rule_set: &'a RuleSet,
    pub(super) lics: &'a [&'a VerifiedLicence],
    pub(super) at: i64,
    pub(super) not_counted: &'a HashSet<Place>,
    /// Whether to compare the agent's own classification (only under the rule set it uses).
    pub(super) check_agent: bool,
}

/// What a node adds to its licence's usage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) nodes: u64,
    pub(super) stale_nodes: u64,
    pub(super) devices: u64,
    pub(super) devices_tpp_unknown: u64,
    pub(super) devices_tpp_measured: u64,
    pub(super) devices_not_controlled: u64,
    pub(super) tpp: Tpp,
}

impl Tally {
    pub(super) fn add(&mut self, other: &Self) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.stale_nodes = self.stale_nodes.saturating_add(other.stale_nodes);
        self.devices = self.devices.saturating_add(other.devices);
        self.devices_tpp_unknown = self
            .devices_tpp_unknown
            .saturating_add(other.devices_tpp_unknown);
        self.devices_tpp_measured = self
            .devices_tpp_measured
            .saturating_add(other.devices_tpp_measured);
        self.devices_not_controlled = self
            .devices_not_controlled
            .saturating_add(other.devices_not_controlled);
        self.tpp = self.tpp.saturating_add(other.tpp);
    }
}

/// Why a node's GPUs do not back the `measured` tier, GPU by GPU.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct TierGaps {
    pub(super) gpus: u64,
    pub(super) unmeasured: u64,
    pub(super) exceeding: u64,
    pub(super) unlisted: u64,
    pub(super) no_spec_figure: u64,
    pub(super) stale: u64,
    pub(super) simulated: u64,
}

impl TierGaps {
    /// Adds a GPU by its measurement (`None`: none) and how it was taken.
    pub(super) fn add(
        &mut self,
        status: Option<MeasurementStatus>,
        method: Option<MeasurementMethod>,
    ) {
        self.gpus = self.gpus.saturating_add(1);
        let gap = match (status, method) {
            (_, Some(MeasurementMethod::Simulated)) => &mut self.simulated,
            (None, _) => &mut self.unmeasured,
            (Some(MeasurementStatus::ExceedsSpec), _) => &mut self.exceeding,
            (Some(MeasurementStatus::Unlisted), _) => &mut self.unlisted,
            (Some(MeasurementStatus::NoSpecFigure), _) => &mut self.no_spec_figure,
            (Some(MeasurementStatus::Stale), _) => &mut self.stale,
            (Some(MeasurementStatus::Consistent | MeasurementStatus::BelowSpec), _) => return,
        };
        *gap = gap.saturating_add(1);
    }

    fn is_empty(&self) -> bool {
        self.gpus > 0
            && self.unmeasured == 0
            && self.exceeding == 0
            && self.unlisted == 0
            && self.no_spec_figure == 0
            && self.stale == 0
            && self.simulated == 0
    }
}

/// Which GPUs of a node do not back the `hardware` tier.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct HardwareGaps {
    pub(super) gpus: u64,
    pub(super) without_evidence: u64,
    pub(super) failed: u64,
}

impl HardwareGaps {
    /// Adds a GPU by its evidence: `None` none, else whether it verified.
    pub(super) fn add(&mut self, evidence: Option<bool>) {
        self.gpus = self.gpus.saturating_add(1);
        match evidence {
            None => self.without_evidence = self.without_evidence.saturating_add(1),
            Some(false) => self.failed = self.failed.saturating_add(1),
            Some(true) => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.gpus > 0 && self.without_evidence == 0 && self.failed == 0
    }
}

/// The submods whose verified hardware identity also signs for another submod of the same
/// attestation (root asked one GPU for several GPUs' reports), each identity reported once as
/// `gpu_evidence_reused`: none of them backs the hardware tier.
fn reused_hardware<'a>(
    a: &'a super::VerifiedAttestation,
    findings: &mut Findings,
    lref: Ref<'_>,
    nref: NodeRef,
) -> HashSet<&'a str> {
    let mut by_id: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for name in a.gpu_evidence().keys() {
        if let Some(id) = a.verified_hardware_id(name) {
            by_id.entry(id).or_default().push(name.as_str());
        }
    }
    let mut reused = HashSet::new();
    for (id, submods) in by_id.into_iter().filter(|(_, s)| s.len() > 1) {
        let reason = Reason::GpuEvidenceReused {
            hardware_id: id.to_owned(),
            submods: submods.iter().map(|s| (*s).to_owned()).collect(),
        };
        findings.push(reason, lref, nref, submods.first().copied());
        reused.extend(submods);
    }
    reused
}

/// The tier the verifier derives, and the finding when the claim asked for more.
pub(super) fn derive_tier(
    claimed: EvidenceTier,
    simulated_inventory: bool,
    gaps: TierGaps,
    hardware: HardwareGaps,
) -> (EvidenceTier, Option<Reason>) {
    let mut gaps = gaps;
    if simulated_inventory {
        gaps.simulated = gaps.gpus;
    }
    let derived = if hardware.is_empty() && gaps.is_empty() {
        EvidenceTier::Hardware
    } else if gaps.is_empty() {
        EvidenceTier::Measured
    } else {
        EvidenceTier::Declared
    };
    let finding = match claimed {
        EvidenceTier::Hardware if derived < EvidenceTier::Hardware => {
            Some(Reason::HardwareTierUnverified {
                effective: derived,
                gpus: hardware.gpus,
                without_evidence: hardware.without_evidence,
                failed: hardware.failed,
            })
        }
        EvidenceTier::Hardware => None,
        EvidenceTier::Measured if derived < EvidenceTier::Measured => {
            Some(Reason::MeasuredTierDowngraded {
                claimed,
                effective: derived,
                gpus: gaps.gpus,
                unmeasured: gaps.unmeasured,
                exceeding: gaps.exceeding,
                unlisted: gaps.unlisted,
                no_spec_figure: gaps.no_spec_figure,
                stale: gaps.stale,
                simulated: gaps.simulated,
            })
        }
        EvidenceTier::Measured | EvidenceTier::Declared => None,
    };
    (derived, finding)
}

/// A node's freshness: `stale_node`, `attestation_from_future` and `simulated_inventory`.
/// Returns (age, stale). The age runs from the verifier's receipt when known, else from
/// `iat`.
fn freshness(
    current: &Current<'_>,
    licence: Option<&Licence>,
    at: i64,
    findings: &mut Findings,
    lref: Ref<'_>,
    nref: NodeRef,
) -> (u64, bool) {
    let a = current.attestation;
    let claims = a.claims();
    if claims.simulated {
        let gpus = u64::try_from(claims.submods.len()).unwrap_or(u64::MAX);
        findings.push(Reason::SimulatedInventory { gpus }, lref, nref, None);
    }
    if let Some(iat) = current.future_iat {
        let reason = Reason::AttestationFromFuture {
            iat,
            at,
            ahead_s: iat.abs_diff(at),
            max_skew_s: MAX_CLOCK_SKEW_S.unsigned_abs(),
        };
        findings.push(reason, lref, nref, None);
    }
    let since = a.received_at().unwrap_or(claims.iat);
    let age_s = u64::try_from(at.saturating_sub(since)).unwrap_or(0);
    let max_age_s = licence.map_or(
        DEFAULT_MAX_ATTESTATION_AGE_SECONDS,
        Licence::max_attestation_age_s,
    );
    let stale = age_s > max_age_s;
    if stale {
        let reason = Reason::StaleNode {
            iat: claims.iat,
            age_s,
            max_age_s,
        };
        findings.push(reason, lref, nref, None);
    }
    (age_s, stale)
}

/// One GPU's evaluation: its verdict, and what it adds to the node.
struct GpuOutcome {
    verdict: GpuVerdict,
    /// Counted here (controlled, and not a duplicate counted elsewhere).
    counted: bool,
    /// Counted elsewhere as a duplicate.
    duplicate: bool,
    measurement: Option<(MeasurementStatus, MeasurementMethod)>,
    /// Its own evidence: `None` none, else whether it verified.
    hardware: Option<bool>,
}

/// Where a GPU sits, for its findings.
struct At<'r> {
    place: Place,
    submod: &'r str,
    licence: Option<(usize, &'r Licence)>,
    lref: Ref<'r>,
    nref: NodeRef,
    iat: i64,
    tolerances: MeasurementTolerances,
    /// What the attestation verifier made of the GPU's own evidence, if it carried any.
    evidence: Option<&'r std::sync::Arc<GpuEvidenceReport>>,
    /// Whether the inventory is simulated (then no GPU backs a tier above `declared`).
    simulated: bool,
    /// Whether the GPU's verified hardware identity signs for another submod of this
    /// attestation too (`gpu_evidence_reused`, reported once per node).
    reused: bool,
}

fn evaluate_gpu<'a>(
    ctx: &Context<'_>,
    deriver: &mut Deriver<'a>,
    gpu: &'a GpuSubmod,
    at: &At<'_>,
    findings: &mut Findings,
) -> Option<GpuOutcome> {
    let d_idx = deriver.index(gpu);
    let allow = at.licence.map(|(i, l)| deriver.allowed(d_idx, i, l));
    let submod_name = deriver.submod_name(at.place.1, at.submod);
    let d = deriver.get(d_idx)?;
    let duplicate = ctx.not_counted.contains(&at.place);
    let readable = gpu.status == GpuStatus::Ok;
    let has_identity = gpu.pci.is_some() || gpu.name.is_some();
    let (lref, nref, at_gpu) = (at.lref, at.nref, Some(at.submod));

    // Measured figures are this GPU's own: never memoised by identity.
    let checked = gpu
        .measurement
        .as_ref()
        .map(|m| check_measurement(m, at.iat, gpu, d.spec, d.tpp, at.tolerances));
    let measured_tpp = checked.as_ref().and_then(|c| c.verdict.tpp);
    let unlisted = match (&d.unknown, &checked, measured_tpp) {
        (Some(unknown), Some(c), Some(tpp)) => {
            let class = classify_device(&measured_figures(&c.verdict.rates), ctx.rule_set);
            let eccn = eccn_of(ctx.rule_set, &class);
            Some(Unlisted {
                reason: Reason::UnlistedDevice {
                    lookup: unknown.code(),
                    detail: unknown.sentence(),
                    measured_tpp: tpp,
                    precision: c.verdict.tpp_basis.unwrap_or(Precision::Fp64),
                    measured_tops: c.basis_tops.unwrap_or_default(),
                    outcome: class.outcome.clone(),
                },
                tpp,
                eccn,
                class,
            })
        }
        _ => None,
    };
    let controlled = match &unlisted {
        Some(u) => controls(ctx.rule_set, Some(&u.class.outcome)),
        None => d.controlled,
    };

    if !readable {
        findings.push(Reason::GpuLost { status: gpu.status }, lref, nref, at_gpu);
    }
    if let Some(u) = &unlisted {
        findings.push(u.reason.clone(), lref, nref, at_gpu);
    } else if let Some(unknown) = &d.unknown
        && (readable || has_identity)
    {
        let reason = Reason::UnknownDevice {
            lookup: unknown.code(),
            detail: unknown.sentence(),
        };
        findings.push(reason, lref, nref, at_gpu);
    }
    if let Some(c) = &checked {
        for reason in &c.findings {
            findings.push(reason.clone(), lref, nref, at_gpu);
        }
    }
    // A device the rule set does not control needs no licence: no list or cap applies.
    if let (Some((_, l)), Some((model_ok, eccn_ok))) = (at.licence, allow)
        && controlled
        && (readable || d.spec.is_some() || unlisted.is_some())
    {
        let (model_ok, eccn_ok) = match &unlisted {
            Some(u) => super::gpu::allowed(l, None, u.eccn.as_deref()),
            None => (model_ok, eccn_ok),
        };
        if !model_ok {
            let model = d.spec.map(|s| s.model.to_owned());
            findings.push(Reason::ModelNotAllowed { model }, lref, nref, at_gpu);
        }
        if !eccn_ok {
            let reason = match &unlisted {
                Some(u) => Reason::EccnNotAllowed {
                    eccn: u.eccn.clone(),
                    outcome: Some(u.class.outcome.clone()),
                },
                None => Reason::EccnNotAllowed {
                    eccn: d.eccn.clone(),
                    outcome: d.outcome.clone(),
                },
            };
            findings.push(reason, lref, nref, at_gpu);
        }
        if let Some(reason) = per_device_cap(l, d.tpp, measured_tpp) {
            findings.push(reason, lref, nref, at_gpu);
        }
    }
    if ctx.check_agent && readable {
        agent_mismatch(gpu, d, findings, lref, nref, at_gpu);
    }
    let (tpp, tpp_from) = match (d.tpp, &unlisted) {
        (Some(t), _) => (Some(t), Some(TppSource::Spec)),
        (None, Some(u)) => (Some(u.tpp), Some(TppSource::Measured)),
        (None, None) => (None, None),
    };
    let (outcome, clause) = match &unlisted {
        Some(u) => (
            Some(std::sync::Arc::from(u.class.outcome.as_str())),
            u.class.clause.as_deref().map(std::sync::Arc::from),
        ),
        None => (d.outcome_shared.clone(), d.clause_shared.clone()),
    };
    let counted = controlled && !duplicate;
    let measurement = checked
        .as_ref()
        .map(|c| (c.verdict.status, c.verdict.method));
    let hardware = at.evidence.map(|report| {
        let problem = evidence_problem(report, d.spec, at.reused);
        if let Some(reason) = problem.clone().filter(|_| !at.reused) {
            findings.push(reason, lref, nref, at_gpu);
        }
        problem.is_none()
    });
    let evidence_tier = gpu_tier(hardware, measurement, at.simulated);
    Some(GpuOutcome {
        verdict: GpuVerdict {
            submod: submod_name,
            uuid: gpu.uuid.clone(),
            serial: gpu.serial.clone(),
            status: gpu.status,
            model: d.spec.map(|s| s.model),
            outcome,
            clause,
            controlled,
            tpp,
            h100_equivalents: match tpp_from {
                Some(TppSource::Spec) => d.h100_equivalents,
                Some(TppSource::Measured) => tpp.map(spec::h100_equivalents),
                None => None,
            },
            counted,
            tpp_from,
            measured: checked.map(|c| Box::new(c.verdict)),
            evidence_tier,
            gpu_evidence: at.evidence.cloned(),
        },
        counted,
        duplicate,
        measurement,
        hardware,
    })
}

/// One GPU's own tier: `measured` when a real measurement consistent with its spec backs it,
/// `hardware` when its own evidence verified too (the tiers nest: `hardware` is `measured`
/// plus the GPU's signed report, so a licence asking for `measured` never takes a GPU that
/// was not measured), else `declared`; never above `declared` for a simulated inventory.
fn gpu_tier(
    hardware: Option<bool>,
    measurement: Option<(MeasurementStatus, MeasurementMethod)>,
    simulated: bool,
) -> EvidenceTier {
    let measured = measurement.is_some_and(|(status, method)| {
        status.backs_measured_tier() && method != MeasurementMethod::Simulated
    });
    match (simulated, measured, hardware) {
        (true, _, _) | (false, false, _) => EvidenceTier::Declared,
        (false, true, Some(true)) => EvidenceTier::Hardware,
        (false, true, _) => EvidenceTier::Measured,
    }
}

/// Why a GPU's evidence does not back the hardware tier, as its finding; `None` when it does.
/// It must have verified, name the chip of the spec-table part the inventory's PCI id and name
/// select (a GH100 cannot be counted as an AD102 part), and sign for this submod alone.
fn evidence_problem(
    report: &GpuEvidenceReport,
    spec: Option<&spec::AcceleratorSpec>,
    reused: bool,
) -> Option<Reason> {
    if !report.verified() {
        return Some(evidence_failed(report));
    }
    if reused {
        return Some(Reason::GpuEvidenceFailed {
            failed: vec!["reused".to_owned()],
            first_code: "gpu_evidence_reused".to_owned(),
            detail: "the same GPU signed for another submod of this attestation".to_owned(),
        });
    }
    let chip = report.facts.as_ref().and_then(|f| f.chip.as_deref());
    match (spec, chip) {
        (Some(s), Some(c)) if s.die.eq_ignore_ascii_case(c) => None,
        (s, c) => Some(Reason::GpuEvidenceFailed {
            failed: vec!["spec_chip".to_owned()],
            first_code: "spec_chip_mismatch".to_owned(),
            detail: format!(
                "the GPU's certificate names chip {}, but the inventory's PCI id and name \
                 select {} in the spec table",
                c.unwrap_or("none"),
                s.map_or_else(
                    || "no part".to_owned(),
                    |s| format!("{} (chip {})", s.model, s.die)
                )
            ),
        }),
    }
}

/// The `gpu_evidence_failed` finding of a report that did not verify.
fn evidence_failed(report: &GpuEvidenceReport) -> Reason {
    let failed: Vec<&crate::gpu_evidence::Check> = report
        .checks
        .iter()
        .filter(|c| c.outcome == crate::gpu_evidence::Outcome::Failed)
        .collect();
    Reason::GpuEvidenceFailed {
        failed: failed.iter().map(|c| c.name.as_str().to_owned()).collect(),
        first_code: failed
            .first()
            .map_or_else(|| "not_verified".to_owned(), |c| c.code.clone()),
        detail: failed.first().map_or_else(
            || "a check the hardware tier needs was not run".to_owned(),
            |c| c.sentence.clone(),
        ),
    }
}

/// Evaluates node `n` (named `name`) under its assignment.
pub(super) fn evaluate_node<'a>(
    ctx: &Context<'_>,
    deriver: &mut Deriver<'a>,
    n: usize,
    current: &Current<'a>,
    assignment: Assignment<'_>,
    findings: &mut Findings,
) -> (NodeVerdict, Tally) {
    let a = current.attestation;
    let claims = a.claims();
    let lic_idx = assignment.licence;
    let lic = lic_idx.and_then(|i| ctx.lics.get(i)).map(|v| &v.licence);
    let lref: Ref<'_> = lic_idx.zip(lic).map(|(i, l)| (i, l.id()));
    let nref: NodeRef = Some((n, a.node_id()));
    let (age_s, stale) = freshness(current, lic, ctx.at, findings, lref, nref);

    let tolerances = lic.map_or(ctx.rule_set.measurement, |l| {
        l.measurement().apply(ctx.rule_set.measurement)
    });
    let mut tally = Tally {
        nodes: 1,
        stale_nodes: u64::from(stale),
        ..Tally::default()
    };
    let reused = reused_hardware(a, findings, lref, nref);
    let mut gaps = TierGaps::default();
    let mut hardware = HardwareGaps::default();
    let mut without_identity: u64 = 0;
    let mut controlled_here = false;
    let mut gpus = Vec::with_capacity(claims.submods.len());
    for (g, (submod, gpu)) in claims.submods.iter().enumerate() {
        let at = At {
            place: (n, g),
            submod,
            licence: lic_idx.zip(lic),
            lref,
            nref,
            iat: claims.iat,
            tolerances,
            evidence: a.gpu_evidence().get(submod.as_str()),
            simulated: claims.simulated,
            reused: reused.contains(submod.as_str()),
        };
        let Some(o) = evaluate_gpu(ctx, deriver, gpu, &at, findings) else {
            continue;
        };
        if GpuIdentity::of(gpu.uuid.as_deref()).is_none()
            && a.verified_hardware_id(submod).is_none()
        {
            without_identity = without_identity.saturating_add(1);
        }
        controlled_here |= o.verdict.controlled;
        if !o.duplicate {
            gaps.add(o.measurement.map(|m| m.0), o.measurement.map(|m| m.1));
            hardware.add(o.hardware);
        }
        if o.counted {
            tally.devices = tally.devices.saturating_add(1);
            match o.verdict.tpp {
                Some(t) => tally.tpp = tally.tpp.saturating_add(t),
                None => tally.devices_tpp_unknown = tally.devices_tpp_unknown.saturating_add(1),
            }
            if o.verdict.tpp_from == Some(TppSource::Measured) {
                tally.devices_tpp_measured = tally.devices_tpp_measured.saturating_add(1);
            }
        } else if !o.verdict.controlled && !o.duplicate {
            tally.devices_not_controlled = tally.devices_not_controlled.saturating_add(1);
        }
        gpus.push(o.verdict);
    }
    if without_identity > 0 {
        let reason = Reason::GpuWithoutIdentity {
            gpus: without_identity,
        };
        findings.push(reason, lref, nref, None);
    }

    let (effective, tier_finding) =
        derive_tier(claims.evidence_tier, claims.simulated, gaps, hardware);
    if let Some(reason) = tier_finding {
        findings.push(reason, lref, nref, None);
    }
    match lic {
        Some(l) if !effective.meets(l.min_evidence_tier()) => {
            let reason = Reason::EvidenceTierTooLow {
                have: effective,
                need: l.min_evidence_tier(),
                gpus: tally.devices,
            };
            findings.push(reason, lref, nref, None);
        }
        Some(_) => {}
        None if controlled_here => {
            let reason = Reason::NodeUnassigned {
                licences: u64::try_from(ctx.lics.len()).unwrap_or(u64::MAX),
                gpus: u64::try_from(claims.submods.len()).unwrap_or(u64::MAX),
                site: assignment.site.map(str::to_owned),
            };
            findings.push(reason, None, nref, None);
        }
        None => {}
    }
    let verdict = NodeVerdict {
        node: a.node_id(),
        subject: a.node_subject().to_owned(),
        token_sha256: hex(a.token_sha256()),
        iat: claims.iat,
        received_at: a.received_at(),
        age_s,
        stale,
        site: assignment.site.map(|s| deriver.site(s)),
        site_certified: a.certified_site().is_some(),
        licence: lic.map(|l| l.id().to_owned()),
        evidence_tier: claims.evidence_tier,
        effective_evidence_tier: effective,
        devices_counted: tally.devices,
        devices_not_controlled: tally.devices_not_controlled,
        tpp_counted: tally.tpp,
        h100_equivalents: spec::h100_equivalents(tally.tpp),
        severity: Severity::Info,
        gpus,
    };
    (verdict, tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(consistent: u64, f: impl Fn(&mut TierGaps)) -> TierGaps {
        let mut g = TierGaps::default();
        for _ in 0..consistent {
            g.add(
                Some(MeasurementStatus::Consistent),
                Some(MeasurementMethod::CudaGemm),
            );
        }
        f(&mut g);
        g
    }

    #[test]
    fn measured_only_from_real_consistent_measurements_of_every_gpu() {
        let all = gaps(8, |_| {});
        assert_eq!(
            derive_tier(EvidenceTier::Measured, false, all, HardwareGaps::default()).0,
            EvidenceTier::Measured
        );
        assert_eq!(
            derive_tier(EvidenceTier::Declared, false, all, HardwareGaps::default()).0,
            EvidenceTier::Measured
        );
        let simulated = gaps(7, |g| {
            g.add(
                Some(MeasurementStatus::Consistent),
                Some(MeasurementMethod::Simulated),
            );
        });
        let (tier, finding) = derive_tier(
            EvidenceTier::Measured,
            false,
            simulated,
            HardwareGaps::default(),
        );
        assert_eq!(tier, EvidenceTier::Declared);
        assert!(matches!(
            finding,
            Some(Reason::MeasuredTierDowngraded { simulated: 1, .. })
        ));
        let one_missing = gaps(7, |g| g.add(None, None));
        assert_eq!(
            derive_tier(
                EvidenceTier::Measured,
                false,
                one_missing,
                HardwareGaps::default()
            )
            .0,
            EvidenceTier::Declared
        );
        assert_eq!(
            derive_tier(EvidenceTier::Measured, true, all, HardwareGaps::default()).0,
            EvidenceTier::Declared
        );
        assert_eq!(
            derive_tier(
                EvidenceTier::Measured,
                false,
                TierGaps::default(),
                HardwareGaps::default()
            )
            .0,
            EvidenceTier::Declared
        );
    }

    fn hardware(verified: u64, failed: u64, without: u64) -> HardwareGaps {
        let mut h = HardwareGaps::default();
        for _ in 0..verified {
            h.add(Some(true));
        }
        for _ in 0..failed {
            h.add(Some(false));
        }
        for _ in 0..without {
            h.add(None);
        }
        h
    }

    #[test]
    fn hardware_only_when_every_gpu_has_verified_evidence() {
        let all = hardware(8, 0, 0);
        // Verified evidence of every measured GPU backs hardware, whatever was claimed.
        for claimed in EvidenceTier::ALL {
            let (tier, finding) = derive_tier(claimed, false, gaps(8, |_| {}), all);
            assert_eq!(tier, EvidenceTier::Hardware);
            assert_eq!(finding, None, "{claimed}");
        }
        // The tiers nest: verified evidence without the measured tier is not hardware.
        let (tier, finding) = derive_tier(
            EvidenceTier::Hardware,
            false,
            gaps(7, |g| g.add(None, None)),
            all,
        );
        assert_eq!(tier, EvidenceTier::Declared);
        assert!(matches!(
            finding,
            Some(Reason::HardwareTierUnverified {
                failed: 0,
                without_evidence: 0,
                ..
            })
        ));
        // One GPU without evidence, or with evidence that failed: not hardware.
        let (tier, finding) = derive_tier(
            EvidenceTier::Hardware,
            false,
            gaps(8, |_| {}),
            hardware(7, 0, 1),
        );
        assert_eq!(tier, EvidenceTier::Measured);
        assert_eq!(
            finding,
            Some(Reason::HardwareTierUnverified {
                effective: EvidenceTier::Measured,
                gpus: 8,
                without_evidence: 1,
                failed: 0,
            })
        );
        let (tier, finding) = derive_tier(
            EvidenceTier::Hardware,
            false,
            TierGaps::default(),
            hardware(7, 1, 0),
        );
        assert_eq!(tier, EvidenceTier::Declared);
        assert!(matches!(
            finding,
            Some(Reason::HardwareTierUnverified { failed: 1, .. })
        ));
        // A simulated inventory never reaches hardware, verified evidence or not.
        let (tier, _) = derive_tier(EvidenceTier::Hardware, true, gaps(8, |_| {}), all);
        assert_eq!(tier, EvidenceTier::Declared);
        // No GPU at all backs nothing.
        let (tier, _) = derive_tier(
            EvidenceTier::Hardware,
            false,
            TierGaps::default(),
            HardwareGaps::default(),
        );
        assert_eq!(tier, EvidenceTier::Declared);
    }

    #[test]
    fn each_gpu_has_its_own_tier() {
        let real = Some((MeasurementStatus::Consistent, MeasurementMethod::CudaGemm));
        let fake = Some((MeasurementStatus::Consistent, MeasurementMethod::Simulated));
        assert_eq!(gpu_tier(Some(true), real, false), EvidenceTier::Hardware);
        // Verified evidence alone, without a real measurement, is not hardware.
        assert_eq!(gpu_tier(Some(true), None, false), EvidenceTier::Declared);
        assert_eq!(gpu_tier(Some(true), fake, false), EvidenceTier::Declared);
        assert_eq!(gpu_tier(Some(false), real, false), EvidenceTier::Measured);
        assert_eq!(gpu_tier(None, fake, false), EvidenceTier::Declared);
        assert_eq!(gpu_tier(None, None, false), EvidenceTier::Declared);
        assert_eq!(gpu_tier(Some(true), real, true), EvidenceTier::Declared);
        let exceeding = Some((MeasurementStatus::ExceedsSpec, MeasurementMethod::CudaGemm));
        assert_eq!(gpu_tier(None, exceeding, false), EvidenceTier::Declared);
    }

    #[test]
    fn a_claimed_hardware_tier_is_never_taken() {
        let (tier, finding) = derive_tier(
            EvidenceTier::Hardware,
            false,
            gaps(8, |_| {}),
            HardwareGaps::default(),
        );
        assert_eq!(tier, EvidenceTier::Measured);
        assert!(matches!(
            finding,
            Some(Reason::HardwareTierUnverified { .. })
        ));
        let (tier, _) = derive_tier(
            EvidenceTier::Hardware,
            false,
            TierGaps::default(),
            HardwareGaps::default(),
        );
        assert_eq!(tier, EvidenceTier::Declared);
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally {
            nodes: 1,
            devices: 8,
            tpp: Tpp::from_ten_thousandths(10).unwrap_or_default(),
            ..Tally::default()
        };
        a.add(&a.clone());
        assert_eq!(a.nodes, 2);
        assert_eq!(a.devices, 16);
        assert_eq!(a.tpp, Tpp::from_ten_thousandths(20).unwrap_or_default());
    }
}
