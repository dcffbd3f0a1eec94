//! Stage 4, classification of one GPU: what the verifier derives from its identity (spec row,
//! outcome, TPP, ECCN, whether the rule set controls it) and from its measurement (held
//! against the spec; an unlisted part classified by its measured figures).
//!
//! Identity-derived figures are computed once per distinct (PCI vendor, PCI device, name)
//! ([`Deriver`]); measured figures are each GPU's own, never memoised.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tppguard_proto::claims::GpuSubmod;
use tppguard_proto::claims::Pci;
use tppguard_proto::claims::measurement::Measurement;
use tppguard_proto::classify::{Classification, classify_device};
use tppguard_proto::licence::Licence;
use tppguard_proto::ruleset::{INDETERMINATE, MeasurementTolerances, RuleSet};
use tppguard_proto::spec::{self, AcceleratorSpec, H100Equivalents, SpecMatch, UnknownReason};
use tppguard_proto::tpp::ComputeFigures;
use tppguard_proto::units::{Tops, Tpp};

use super::findings::{Findings, NodeRef, Ref};
use super::{
    GpuMeasurement, MeasuredRate, MeasurementStatus, RateCheck, Reason, SpecRatio, TppSource,
};

/// What the verifier derives from one GPU identity, computed once per distinct identity.
pub(super) struct Derived {
    /// `outcome`, shared by every GPU verdict with this identity.
    pub(super) outcome_shared: Option<Arc<str>>,
    /// `clause`, shared likewise.
    pub(super) clause_shared: Option<Arc<str>>,
    pub(super) spec: Option<&'static AcceleratorSpec>,
    pub(super) unknown: Option<UnknownReason>,
    pub(super) outcome: Option<String>,
    pub(super) eccn: Option<String>,
    pub(super) tpp: Option<Tpp>,
    /// `tpp` as JSON prints it, to compare with the agent's figure.
    pub(super) tpp_f64: Option<f64>,
    /// `tpp` in H100-equivalents.
    pub(super) h100_equivalents: Option<H100Equivalents>,
    /// Whether the rule set controls the device (see [`controls`]).
    pub(super) controlled: bool,
}

/// Whether the rule set controls a device with this outcome: one of its classes (`3A090.a`,
/// `covered`), or an outcome it cannot decide (`indeterminate`, or no outcome: an unknown
/// part). A default outcome or an exclusion (`not_3a090`, a consumer part's carve-out) is
/// outside the rule set: such a device needs no licence.
pub(super) fn controls(rule_set: &RuleSet, outcome: Option<&str>) -> bool {
    match outcome {
        None => true,
        Some(o) if o == INDETERMINATE => true,
        Some(o) => rule_set.classes.iter().any(|c| c.outcome == o),
    }
}

/// The identity-derived figures of every distinct (PCI vendor, PCI device, name), computed
/// once, and the licences' model and ECCN lists answered once per (identity, licence).
pub(super) struct Deriver<'a> {
    rule_set: &'a RuleSet,
    memo: HashMap<SpecKey<'a>, usize>,
    derived: Vec<Derived>,
    last: Option<(SpecKey<'a>, usize)>,
    /// (model_ok, eccn_ok) per (derived identity, licence), at `identity * licences + licence`.
    allow_memo: Vec<Option<(bool, bool)>>,
    licences: usize,
    /// Submod names repeat across nodes (`gpu0`..`gpu7`): one `Arc<str>` per position.
    submod_names: Vec<Arc<str>>,
    /// Site ids repeat across nodes: one `Arc<str>` per site.
    sites: HashSet<Arc<str>>,
}

impl<'a> Deriver<'a> {
    pub(super) fn new(rule_set: &'a RuleSet, licences: usize) -> Self {
        Self {
            rule_set,
            memo: HashMap::new(),
            derived: Vec::new(),
            last: None,
            allow_memo: Vec::new(),
            licences,
            submod_names: Vec::new(),
            sites: HashSet::new(),
        }
    }

    /// A shared name for site `site`.
    pub(super) fn site(&mut self, site: &str) -> Arc<str> {
        if let Some(shared) = self.sites.get(site) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(site);
        self.sites.insert(Arc::clone(&shared));
        shared
    }

    /// The index of the figures derived for `gpu`'s identity.
    pub(super) fn index(&mut self, gpu: &'a GpuSubmod) -> usize {
        let key = (
            gpu.pci.as_ref().map(|p| p.vendor_id.as_str()),
            gpu.pci.as_ref().map(|p| p.device_id.as_str()),
            gpu.name.as_deref(),
        );
        // Neighbouring GPUs are usually alike: check the last identity before hashing.
        if let Some((k, i)) = self.last
            && k == key
        {
            return i;
        }
        let rule_set = self.rule_set;
        let derived = &mut self.derived;
        let i = *self.memo.entry(key).or_insert_with(|| {
            derived.push(Derived::new(
                gpu.pci.as_ref().and_then(pci_combined),
                gpu.name.as_deref(),
                rule_set,
            ));
            derived.len().saturating_sub(1)
        });
        self.last = Some((key, i));
        i
    }

    /// The figures at `index`.
    pub(super) fn get(&self, index: usize) -> Option<&Derived> {
        self.derived.get(index)
    }

    /// Whether licence `licence` (index `l`) allows the identity at `index`:
    /// `(model_ok, eccn_ok)`.
    pub(super) fn allowed(&mut self, index: usize, l: usize, licence: &Licence) -> (bool, bool) {
        let slot = index.saturating_mul(self.licences).saturating_add(l);
        if self.allow_memo.len() <= slot {
            self.allow_memo.resize(slot.saturating_add(1), None);
        }
        let Some(d) = self.derived.get(index) else {
            return (false, false);
        };
        let model = d.spec.map(|s| s.model);
        let eccn = d.eccn.as_deref();
        match self.allow_memo.get_mut(slot) {
            Some(Some(known)) => *known,
            Some(empty) => *empty.insert(allowed(licence, model, eccn)),
            None => allowed(licence, model, eccn),
        }
    }

    /// A shared name for the submod at position `g`.
    pub(super) fn submod_name(&mut self, g: usize, submod: &str) -> Arc<str> {
        match self.submod_names.get(g) {
            Some(shared) if **shared == *submod => Arc::clone(shared),
            _ => {
                let shared: Arc<str> = Arc::from(submod);
                if let Some(slot) = self.submod_names.get_mut(g) {
                    *slot = Arc::clone(&shared);
                } else if self.submod_names.len() == g {
                    self.submod_names.push(Arc::clone(&shared));
                }
                shared
            }
        }
    }
}

impl Derived {
    fn new(pci: Option<u32>, name: Option<&str>, rule_set: &RuleSet) -> Self {
        match spec::lookup(pci, name) {
            SpecMatch::Found { spec, .. } => {
                let c = classify_device(&spec.figures(), rule_set);
                let eccn = eccn_of(rule_set, &c);
                Self {
                    controlled: controls(rule_set, Some(&c.outcome)),
                    outcome_shared: Some(Arc::from(c.outcome.as_str())),
                    clause_shared: c.clause.as_deref().map(Arc::from),
                    spec: Some(spec),
                    unknown: None,
                    outcome: Some(c.outcome),
                    eccn,
                    tpp_f64: c.tpp.map(Tpp::as_f64),
                    h100_equivalents: c.tpp.map(spec::h100_equivalents),
                    tpp: c.tpp,
                }
            }
            SpecMatch::Unknown { reason } => Self {
                outcome_shared: None,
                clause_shared: None,
                spec: None,
                unknown: Some(reason),
                outcome: None,
                eccn: None,
                tpp: None,
                tpp_f64: None,
                h100_equivalents: None,
                controlled: true,
            },
        }
    }
}

/// The classification's outcome when it is an ECCN of the rule set's (`3A090.a` under
/// `3A090`).
pub(super) fn eccn_of(rule_set: &RuleSet, c: &Classification) -> Option<String> {
    rule_set
        .eccn
        .as_deref()
        .filter(|e| {
            c.outcome
                .strip_prefix(e)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(|_| c.outcome.clone())
}

/// A GPU's measurement held against its spec row (`None`: not in the table) with the
/// tolerances, and the findings about its rates.
pub(super) struct Checked {
    pub(super) verdict: GpuMeasurement,
    /// `exceeds_spec` and `below_spec`, in precision order.
    pub(super) findings: Vec<Reason>,
    /// The measured median of `verdict.tpp_basis`.
    pub(super) basis_tops: Option<Tops>,
}

pub(super) fn check_measurement(
    m: &Measurement,
    attested_at: i64,
    gpu: &GpuSubmod,
    spec: Option<&AcceleratorSpec>,
    spec_tpp: Option<Tpp>,
    tolerances: MeasurementTolerances,
) -> Checked {
    let exceeds = u128::from(tolerances.exceeds_spec_percent).saturating_add(100);
    let below = 100u128.saturating_sub(u128::from(tolerances.below_spec_percent));
    let mut rates: Vec<MeasuredRate> = m
        .results
        .iter()
        .filter_map(|r| {
            let tops = Tops::from_measured(r.tops_median)?;
            let spec_tops = spec.and_then(|s| {
                s.dense_tops
                    .iter()
                    .find(|(p, t)| *p == r.precision && t.raw() > 0)
                    .map(|(_, t)| *t)
            });
            let (ratio, check) = match spec_tops {
                None => (None, RateCheck::NoSpecFigure),
                Some(st) => {
                    let measured = u128::from(tops.raw()).saturating_mul(100);
                    let check = if measured > u128::from(st.raw()).saturating_mul(exceeds) {
                        RateCheck::ExceedsSpec
                    } else if measured < u128::from(st.raw()).saturating_mul(below) {
                        RateCheck::BelowSpec
                    } else {
                        RateCheck::WithinTolerance
                    };
                    (SpecRatio::new(tops, st), check)
                }
            };
            Some(MeasuredRate {
                precision: r.precision,
                tops,
                spec_tops,
                ratio,
                check,
            })
        })
        .collect();
    rates.sort_by_key(|r| r.precision);

    // The lower-bound TPP, with the spec TPP's own tie-breaking between precisions.
    let figures = measured_figures(&rates);
    let best = tppguard_proto::tpp::tpp(&figures);

    let model = spec.map_or("", |s| s.model);
    let t = &m.telemetry;
    let mut findings = Vec::new();
    for r in &rates {
        let (Some(spec_tops), Some(ratio)) = (r.spec_tops, r.ratio) else {
            continue;
        };
        match r.check {
            RateCheck::ExceedsSpec => findings.push(Reason::ExceedsSpec {
                model: model.to_owned(),
                precision: r.precision,
                measured_tops: r.tops,
                spec_tops,
                ratio,
                tolerance_percent: tolerances.exceeds_spec_percent,
            }),
            RateCheck::BelowSpec => findings.push(Reason::BelowSpec {
                model: model.to_owned(),
                precision: r.precision,
                measured_tops: r.tops,
                spec_tops,
                ratio,
                tolerance_percent: tolerances.below_spec_percent,
                sm_clock_mhz_min: t.sm_clock_mhz_min,
                sm_clock_mhz_max: t.sm_clock_mhz_max,
                max_sm_clock_mhz: gpu.max_sm_clock_mhz,
                temperature_c_max: t.temperature_c_max,
                power_mw_max: t.power_mw_max,
                power_limit_mw: gpu.power_limit_mw,
                throttle_reasons: t.throttle_reasons.clone(),
            }),
            RateCheck::WithinTolerance | RateCheck::NoSpecFigure => {}
        }
    }

    let any = |check: RateCheck| rates.iter().any(|r| r.check == check);
    let age = attested_at.saturating_sub(m.started_at);
    let stale = age > tolerances.max_age_s() || m.started_at > attested_at;
    let status = if spec.is_none() {
        if best.is_some() {
            MeasurementStatus::Unlisted
        } else {
            MeasurementStatus::NoSpecFigure
        }
    } else if any(RateCheck::ExceedsSpec) {
        MeasurementStatus::ExceedsSpec
    } else if rates.iter().all(|r| r.spec_tops.is_none()) {
        MeasurementStatus::NoSpecFigure
    } else if stale {
        MeasurementStatus::Stale
    } else if any(RateCheck::BelowSpec) {
        MeasurementStatus::BelowSpec
    } else {
        MeasurementStatus::Consistent
    };
    let tpp = best.map(|b| b.tpp);
    let tpp_ratio = tpp.zip(spec_tpp).and_then(|(measured, spec)| {
        SpecRatio::new(
            Tops::from_ten_thousandths(measured.raw())?,
            Tops::from_ten_thousandths(spec.raw())?,
        )
    });
    Checked {
        basis_tops: best.map(|b| b.tops),
        verdict: GpuMeasurement {
            method: m.method,
            started_at: m.started_at,
            tpp,
            tpp_basis: best.map(|b| b.precision),
            tpp_ratio,
            status,
            tolerances,
            rates,
        },
        findings,
    }
}

/// The figures of a GPU known only by its measured rates: die area and bandwidths unknown,
/// and designed for datacenters (nothing says otherwise, so no carve-out for consumer parts
/// applies).
pub(super) fn measured_figures(rates: &[MeasuredRate]) -> ComputeFigures {
    ComputeFigures {
        dense_tops: rates.iter().map(|r| (r.precision, r.tops)).collect(),
        die_area: None,
        datacenter: true,
        dram_bandwidth: None,
        interconnect_bandwidth: None,
    }
}

/// NVML's combined PCI id, `(device << 16) | vendor`, from `0x10de` and `0x2330`.
pub(super) fn pci_combined(pci: &Pci) -> Option<u32> {
    fn hex16(text: &str) -> Option<u16> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))?;
        u16::from_str_radix(digits, 16).ok()
    }
    let vendor = hex16(&pci.vendor_id)?;
    let device = hex16(&pci.device_id)?;
    Some((u32::from(device) << 16) | u32::from(vendor))
}

/// Whether the licence allows the device's model and ECCN: `(model_ok, eccn_ok)`. The ECCN
/// logic is the licence's own ([`Licence::allows`]); only the model half is split off, so a
/// finding can say which list refused.
pub(super) fn allowed(licence: &Licence, model: Option<&str>, eccn: Option<&str>) -> (bool, bool) {
    if licence.allows(eccn, model) {
        return (true, true);
    }
    let model_ok = licence.models().is_empty()
        || model.is_some_and(|m| licence.models().iter().any(|l| l == m));
    let eccn_ok = !model_ok && licence.allows(eccn, licence.models().first().map(String::as_str));
    (model_ok, eccn_ok)
}

/// What a spec lookup reads: PCI vendor id, PCI device id and NVML name, as reported.
pub(super) type SpecKey<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// A GPU not in the spec table that carries a measurement: its `unlisted_device` finding and
/// its classification by the measured figures.
pub(super) struct Unlisted {
    pub(super) reason: Reason,
    /// The measured TPP it counts with.
    pub(super) tpp: Tpp,
    pub(super) eccn: Option<String>,
    pub(super) class: Classification,
}

/// The per-device cap check: the spec TPP above the cap, or else the measured TPP above it
/// (whatever model the device claims); one finding at most.
pub(super) fn per_device_cap(
    licence: &Licence,
    spec_tpp: Option<Tpp>,
    measured_tpp: Option<Tpp>,
) -> Option<Reason> {
    let cap = licence.max_tpp_per_device()?;
    if let Some(tpp) = spec_tpp.filter(|t| *t > cap) {
        return Some(Reason::DeviceTppAboveCap {
            tpp,
            cap,
            basis: TppSource::Spec,
        });
    }
    measured_tpp
        .filter(|t| *t > cap)
        .map(|tpp| Reason::DeviceTppAboveCap {
            tpp,
            cap,
            basis: TppSource::Measured,
        })
}

/// Compares the agent's classification with the verifier's and records a difference.
pub(super) fn agent_mismatch(
    gpu: &GpuSubmod,
    d: &Derived,
    findings: &mut Findings,
    lref: Ref<'_>,
    nref: NodeRef,
    at_gpu: Option<&str>,
) {
    let agent = &gpu.classification;
    let ours = d.outcome.as_deref().unwrap_or(INDETERMINATE);
    let eccn_differs = agent.eccn.as_deref().is_some_and(|e| e != ours);
    let tpp_differs = agent.tpp != d.tpp_f64;
    if eccn_differs || tpp_differs {
        let reason = Reason::AgentClassificationMismatch {
            agent_eccn: agent.eccn.clone(),
            eccn: d.outcome.clone(),
            agent_tpp: agent.tpp,
            tpp: d.tpp,
        };
        findings.push(reason, lref, nref, at_gpu);
    }
}
