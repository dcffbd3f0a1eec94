//! The comparison of a baseline verdict with a scenario's ([`compare`]): per licence (verdict,
//! devices and TPP against the caps, licence need), per destination country (tier, TPP, the
//! national allocation every licence to the country shares, verdict), and the devices whose
//! class changes, side by side; and its text for a terminal ([`write_comparison`]).
//!
//! Pure and deterministic: every list is sorted, and the per-device list is capped
//! ([`MAX_DEVICE_CHANGES`]) so a large fleet gives a bounded answer; the aggregated
//! [`ClassChange`] rows always count every device.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use serde::Serialize;
use tppguard_proto::identity::NodeId;
use tppguard_proto::licence::CountryCode;
use tppguard_proto::ruleset::RuleSetPosture;
use tppguard_proto::spec::H100Equivalents;
use tppguard_proto::text::Escaped;
use tppguard_proto::units::Tpp;

use crate::error::Error;
use crate::policy::{
    CountryUsage, DeviceCap, FleetVerdict, GpuVerdict, LicenceUsage, NodeVerdict, TppCap, Verdict,
};

/// Most devices listed one by one in [`Comparison::devices`]; the rest are counted in
/// [`Comparison::devices_omitted`] (and always in [`Comparison::class_changes`]).
pub const MAX_DEVICE_CHANGES: usize = 1000;

/// One side of a device row: a GPU's class under one rule set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Side {
    /// Its outcome (`3A090.a`, `not_3a090`, `covered`); `None` for an unknown device.
    pub outcome: Option<String>,
    /// Whether the rule set controls it.
    pub controlled: bool,
    /// Whether it counts against its licence.
    pub counted: bool,
}

/// A verdict, baseline against scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VerdictChange {
    /// Under the baseline.
    pub baseline: Verdict,
    /// Under the scenario.
    pub scenario: Verdict,
}

/// How many counted devices of a licence need a licence, per need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NeedCounts {
    /// Devices that need a licence.
    pub required: u64,
    /// Devices that need none.
    pub not_required: u64,
    /// Devices whose need the rule set cannot decide.
    pub undetermined: u64,
}

/// One licence under one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenceSide {
    /// The licence's verdict.
    pub verdict: Verdict,
    /// Devices against `max_devices`.
    pub devices: DeviceCap,
    /// TPP against `max_aggregate_tpp`, with H100-equivalents.
    pub tpp: TppCap,
    /// Whether its counted devices need a licence.
    pub licence_need: NeedCounts,
}

impl LicenceSide {
    fn of(u: &LicenceUsage) -> Self {
        Self {
            verdict: u.verdict,
            devices: u.devices,
            tpp: u.tpp,
            licence_need: NeedCounts {
                required: u.licence_need.required,
                not_required: u.licence_need.not_required,
                undetermined: u.licence_need.undetermined,
            },
        }
    }
}

/// One licence, baseline against scenario. A side is `None` when the licence is not
/// evaluated there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenceComparison {
    /// The licence id.
    pub licence: String,
    /// Its destination country.
    pub destination_country: CountryCode,
    /// Under the baseline.
    pub baseline: Option<LicenceSide>,
    /// Under the scenario.
    pub scenario: Option<LicenceSide>,
    /// Whether the two sides differ.
    pub changed: bool,
}

/// One destination country under one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountrySide {
    /// Its country group (`tier_1`); `None` when the rule set has no groups.
    pub tier: Option<String>,
    /// Devices counted.
    pub devices: u64,
    /// TPP counted, across its licences.
    pub tpp: Tpp,
    /// `tpp` in H100-equivalents.
    pub h100_equivalents: H100Equivalents,
    /// The national allocation checked against `tpp`, shared by every licence to the
    /// country; `None` when its group has none.
    pub allocation: Option<TppCap>,
    /// The period the allocation covers (`2025-2027`).
    pub allocation_period: Option<String>,
    /// The country's verdict.
    pub verdict: Verdict,
}

impl CountrySide {
    fn of(c: &CountryUsage) -> Self {
        Self {
            tier: c.tier.clone(),
            devices: c.devices,
            tpp: c.tpp,
            h100_equivalents: c.h100_equivalents,
            allocation: c.allocation,
            allocation_period: c.allocation_period.clone(),
            verdict: c.verdict,
        }
    }
}

/// One destination country, baseline against scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountryComparison {
    /// The country.
    pub country: CountryCode,
    /// The licences to it (on either side), by id: they share its allocation.
    pub licences: Vec<String>,
    /// Under the baseline.
    pub baseline: Option<CountrySide>,
    /// Under the scenario.
    pub scenario: Option<CountrySide>,
    /// Whether the two sides differ.
    pub changed: bool,
}

/// Devices of one model whose class changes the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassChange {
    /// The spec-table model; `None` for an unknown device.
    pub model: Option<String>,
    /// The class under the baseline.
    pub baseline: Side,
    /// The class under the scenario.
    pub scenario: Side,
    /// Devices that change so.
    pub devices: u64,
    /// Nodes they are in.
    pub nodes: u64,
}

/// One device whose class changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceChange {
    /// The node: the SHA-256 of its certificate's SubjectPublicKeyInfo, hex.
    pub node: String,
    /// The node certificate's subject, for display.
    pub subject: String,
    /// The GPU's submod name (`gpu0`).
    pub gpu: String,
    /// The spec-table model; `None` for an unknown device.
    pub model: Option<String>,
    /// The class under the baseline.
    pub baseline: Side,
    /// The class under the scenario.
    pub scenario: Side,
}

/// Baseline against scenario: one evaluation of the same evidence at the same instant under
/// two postures. The field names are stable (JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The evaluation instant, Unix seconds.
    pub at: i64,
    /// The baseline's enforcement posture.
    pub baseline: RuleSetPosture,
    /// The scenario's enforcement posture (says MODIFIED for a changed rule set).
    pub scenario: RuleSetPosture,
    /// The fleet's verdict.
    pub verdict: VerdictChange,
    /// Per licence, by id.
    pub licences: Vec<LicenceComparison>,
    /// Per destination country, by code.
    pub countries: Vec<CountryComparison>,
    /// Devices changing class, aggregated by model and change.
    pub class_changes: Vec<ClassChange>,
    /// Devices changing class, by node id and submod, at most [`MAX_DEVICE_CHANGES`].
    pub devices: Vec<DeviceChange>,
    /// Devices changing class left out of `devices`.
    pub devices_omitted: u64,
}

/// Compares a baseline verdict with a scenario verdict of the same evidence.
pub fn compare(baseline: &FleetVerdict, scenario: &FleetVerdict) -> Comparison {
    let (class_changes, devices, devices_omitted) = device_changes(baseline, scenario);
    Comparison {
        at: scenario.at,
        baseline: baseline.posture.clone(),
        scenario: scenario.posture.clone(),
        verdict: VerdictChange {
            baseline: baseline.verdict,
            scenario: scenario.verdict,
        },
        licences: licences(baseline, scenario),
        countries: countries(baseline, scenario),
        class_changes,
        devices,
        devices_omitted,
    }
}

fn licences(baseline: &FleetVerdict, scenario: &FleetVerdict) -> Vec<LicenceComparison> {
    let mut rows: BTreeMap<&str, (CountryCode, Option<LicenceSide>, Option<LicenceSide>)> =
        BTreeMap::new();
    for u in &baseline.licences {
        rows.entry(&u.licence)
            .or_insert((u.destination_country, None, None))
            .1 = Some(LicenceSide::of(u));
    }
    for u in &scenario.licences {
        rows.entry(&u.licence)
            .or_insert((u.destination_country, None, None))
            .2 = Some(LicenceSide::of(u));
    }
    rows.into_iter()
        .map(|(id, (country, b, s))| LicenceComparison {
            licence: id.to_owned(),
            destination_country: country,
            changed: b != s,
            baseline: b,
            scenario: s,
        })
        .collect()
}

fn countries(baseline: &FleetVerdict, scenario: &FleetVerdict) -> Vec<CountryComparison> {
    type Row<'a> = (BTreeSet<&'a str>, Option<CountrySide>, Option<CountrySide>);
    let mut rows: BTreeMap<CountryCode, Row<'_>> = BTreeMap::new();
    for (verdict, is_baseline) in [(baseline, true), (scenario, false)] {
        for c in &verdict.countries {
            let row = rows.entry(c.country).or_default();
            row.0.extend(c.licences.iter().map(String::as_str));
            let side = Some(CountrySide::of(c));
            if is_baseline {
                row.1 = side;
            } else {
                row.2 = side;
            }
        }
    }
    rows.into_iter()
        .map(|(country, (licences, b, s))| CountryComparison {
            country,
            licences: licences.into_iter().map(str::to_owned).collect(),
            changed: b != s,
            baseline: b,
            scenario: s,
        })
        .collect()
}

/// A GPU's class, borrowed from its verdict: compared without allocating, turned into a
/// [`Side`] only for a device that changed (a fleet of a million GPUs mostly does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Class<'a> {
    outcome: Option<&'a str>,
    controlled: bool,
    counted: bool,
}

impl<'a> Class<'a> {
    fn of(g: &'a GpuVerdict) -> Self {
        Self {
            outcome: g.outcome.as_deref(),
            controlled: g.controlled,
            counted: g.counted,
        }
    }

    fn side(self) -> Side {
        Side {
            outcome: self.outcome.map(str::to_owned),
            controlled: self.controlled,
            counted: self.counted,
        }
    }
}

/// Per (model, class before, class after): devices, nodes, and the last node counted (nodes
/// are walked in order, so a node is counted once per group without a set).
type Groups<'a> = HashMap<(Option<&'static str>, Class<'a>, Class<'a>), (u64, u64, Option<NodeId>)>;

/// The nodes of a verdict by node id.
fn by_node(v: &FleetVerdict) -> Vec<&NodeVerdict> {
    let mut nodes: Vec<&NodeVerdict> = v.nodes.iter().collect();
    // The policy lists nodes by id already; a sorted input costs one pass.
    nodes.sort_by_key(|n| n.node);
    nodes
}

/// The GPUs (matched by node id and submod, walking both verdicts' nodes in id order) whose
/// class differs, aggregated and listed.
fn device_changes(
    baseline: &FleetVerdict,
    scenario: &FleetVerdict,
) -> (Vec<ClassChange>, Vec<DeviceChange>, u64) {
    let before = by_node(baseline);
    let mut before = before.iter().peekable();
    let mut groups: Groups<'_> = HashMap::new();
    let mut listed = Vec::new();
    let mut omitted = 0u64;
    for n in by_node(scenario) {
        while before.next_if(|m| m.node < n.node).is_some() {}
        let Some(m) = before.peek().filter(|m| m.node == n.node) else {
            continue;
        };
        for (i, g) in n.gpus.iter().enumerate() {
            // The same attestation lists its GPUs in the same order under both rule sets.
            let Some(b) = m
                .gpus
                .get(i)
                .filter(|b| b.submod == g.submod)
                .or_else(|| m.gpus.iter().find(|b| b.submod == g.submod))
            else {
                continue;
            };
            let (from, to) = (Class::of(b), Class::of(g));
            if from == to {
                continue;
            }
            let model = g.model.or(b.model);
            let group = groups.entry((model, from, to)).or_insert((0, 0, None));
            group.0 = group.0.saturating_add(1);
            if group.2 != Some(n.node) {
                group.1 = group.1.saturating_add(1);
                group.2 = Some(n.node);
            }
            if listed.len() < MAX_DEVICE_CHANGES {
                listed.push(DeviceChange {
                    node: n.node.to_string(),
                    subject: n.subject.clone(),
                    gpu: g.submod.to_string(),
                    model: model.map(str::to_owned),
                    baseline: from.side(),
                    scenario: to.side(),
                });
            } else {
                omitted = omitted.saturating_add(1);
            }
        }
    }
    listed.sort_by(|a, b| (&a.node, &a.gpu).cmp(&(&b.node, &b.gpu)));
    let mut classes: Vec<ClassChange> = groups
        .into_iter()
        .map(|((model, from, to), (devices, nodes, _))| ClassChange {
            model: model.map(str::to_owned),
            baseline: from.side(),
            scenario: to.side(),
            devices,
            nodes,
        })
        .collect();
    classes.sort_by(|a, b| {
        (&a.model, &a.baseline, &a.scenario).cmp(&(&b.model, &b.baseline, &b.scenario))
    });
    (classes, listed, omitted)
}

/// Devices listed one by one in the text (those that start or stop counting first); the JSON
/// lists up to [`MAX_DEVICE_CHANGES`].
const TEXT_DEVICES: usize = 20;

/// Writes a comparison for a terminal: both postures, the fleet verdict, the licences and
/// countries that change (and the licences to a country that changes) side by side, the rest
/// folded, then the devices changing class.
pub fn write_comparison(c: &Comparison, out: &mut dyn Write) -> Result<(), Error> {
    writeln!(out, "  baseline: {}", Escaped(&c.baseline.to_string()))?;
    writeln!(out, "  scenario: {}", Escaped(&c.scenario.to_string()))?;
    row(
        out,
        2,
        "fleet verdict",
        verdict_text(Some(c.verdict.baseline)),
        verdict_text(Some(c.verdict.scenario)),
        false,
    )?;
    let changed_countries: BTreeSet<CountryCode> = c
        .countries
        .iter()
        .filter(|r| r.changed)
        .map(|r| r.country)
        .collect();
    let mut folded = Vec::new();
    for l in &c.licences {
        if l.changed || changed_countries.contains(&l.destination_country) {
            write_licence(l, out)?;
        } else {
            folded.push(Escaped(&l.licence).to_string());
        }
    }
    write_folded(out, "licence", &folded)?;
    let mut folded = Vec::new();
    for country in &c.countries {
        if country.changed {
            write_country(country, out)?;
        } else {
            folded.push(country.country.to_string());
        }
    }
    write_folded(out, "country", &folded)?;
    write_devices(c, out)
}

fn write_folded(out: &mut dyn Write, what: &str, names: &[String]) -> Result<(), Error> {
    if !names.is_empty() {
        writeln!(
            out,
            "  unchanged: {} {what}{} ({})",
            names.len(),
            plural(names.len()),
            names.join(", ")
        )?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One row: the label, the baseline's value and the scenario's (`same` when equal and
/// `fold_same`; verdicts are always shown in full).
fn row(
    out: &mut dyn Write,
    indent: usize,
    label: &str,
    baseline: String,
    scenario: String,
    fold_same: bool,
) -> Result<(), Error> {
    let scenario = if fold_same && scenario == baseline {
        "same".to_owned()
    } else {
        scenario
    };
    let pad = 24usize.saturating_sub(indent);
    writeln!(out, "{:indent$}{label:<pad$} {baseline:<28} {scenario}", "")?;
    Ok(())
}

fn verdict_text(v: Option<Verdict>) -> String {
    match v {
        Some(Verdict::Compliant) => "compliant".to_owned(),
        Some(Verdict::Unproven) => "UNPROVEN".to_owned(),
        Some(Verdict::NotCompliant) => "NOT COMPLIANT".to_owned(),
        None => "not evaluated".to_owned(),
    }
}

/// A figure's integer part grouped by thousands, for reports: `1266496.5` -> `1,266,496.5`.
pub fn grouped(value: impl ToString) -> String {
    let text = value.to_string();
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(text.len().saturating_add(int.len() / 3));
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && int.len().saturating_sub(i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn side_text<T>(side: Option<&T>, f: impl Fn(&T) -> String) -> String {
    side.map_or_else(|| "-".to_owned(), f)
}

fn write_licence(l: &LicenceComparison, out: &mut dyn Write) -> Result<(), Error> {
    let title = format!(
        "licence {} ({})",
        Escaped(&l.licence),
        l.destination_country
    );
    row(
        out,
        2,
        &title,
        "baseline".to_owned(),
        "scenario".to_owned(),
        false,
    )?;
    let (b, s) = (l.baseline.as_ref(), l.scenario.as_ref());
    let both = |f: &dyn Fn(&LicenceSide) -> String| (side_text(b, f), side_text(s, f));
    let (vb, vs) = (
        verdict_text(b.map(|x| x.verdict)),
        verdict_text(s.map(|x| x.verdict)),
    );
    row(out, 4, "verdict", vb, vs, false)?;
    let (x, y) = both(&|x| format!("{} / {}", x.devices.used, x.devices.cap));
    row(out, 4, "devices used / cap", x, y, true)?;
    let (x, y) = both(&|x| cap_headroom(x.devices.headroom, x.devices.over_by));
    row(out, 4, "devices headroom", x, y, true)?;
    let (x, y) = both(&|x| format!("{} / {}", grouped(x.tpp.used), grouped(x.tpp.cap)));
    row(out, 4, "TPP used / cap", x, y, true)?;
    let (x, y) = both(&|x| tpp_headroom(&x.tpp));
    row(out, 4, "TPP headroom", x, y, true)?;
    let (x, y) = both(&|x| {
        format!(
            "{} / {}",
            x.tpp.used_h100_equivalents, x.tpp.cap_h100_equivalents
        )
    });
    row(out, 4, "H100-eq used / cap", x, y, true)?;
    let need = |x: &LicenceSide| x.licence_need != NeedCounts::default();
    if b.is_some_and(need) || s.is_some_and(need) {
        let (x, y) = both(&|x| need_text(x.licence_need));
        row(out, 4, "licence need", x, y, true)?;
    }
    Ok(())
}

/// `6 required, 2 undetermined`: the counts that are not zero (`none` when all are).
fn need_text(n: NeedCounts) -> String {
    let parts: Vec<String> = [
        (n.required, "required"),
        (n.not_required, "not required"),
        (n.undetermined, "undetermined"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, word)| format!("{count} {word}"))
    .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn cap_headroom(headroom: u64, over_by: u64) -> String {
    if over_by > 0 {
        format!("OVER by {over_by}")
    } else {
        headroom.to_string()
    }
}

fn tpp_headroom(cap: &TppCap) -> String {
    if cap.is_over() {
        format!("OVER by {}", grouped(cap.over_by))
    } else {
        grouped(cap.headroom)
    }
}

fn write_country(c: &CountryComparison, out: &mut dyn Write) -> Result<(), Error> {
    let names: Vec<String> = c.licences.iter().map(|l| Escaped(l).to_string()).collect();
    writeln!(
        out,
        "  country {} (licences {})",
        c.country,
        names.join(", ")
    )?;
    let (b, s) = (c.baseline.as_ref(), c.scenario.as_ref());
    let tier = |x: Option<&CountrySide>| {
        x.map_or_else(
            || "-".to_owned(),
            |x| x.tier.clone().unwrap_or_else(|| "no group".to_owned()),
        )
    };
    let (tb, ts) = (tier(b), tier(s));
    if tb == ts {
        writeln!(out, "    tier                 {tb} (same)")?;
    } else {
        writeln!(out, "    tier                 {tb} -> {ts}")?;
    }
    let alloc = |x: Option<&CountrySide>| {
        x.map_or_else(|| "-".to_owned(), |x| allocation_text(x, names.len()))
    };
    let (ab, as_) = (alloc(b), alloc(s));
    writeln!(out, "    allocation           {ab}")?;
    if ab == as_ {
        writeln!(out, "                      (same)")?;
    } else {
        writeln!(out, "                      -> {as_}")?;
    }
    let both = |f: &dyn Fn(&CountrySide) -> String| (side_text(b, f), side_text(s, f));
    let (x, y) = both(&|x| format!("{} ({} H100-eq)", grouped(x.tpp), x.h100_equivalents));
    row(out, 4, "TPP counted", x, y, true)?;
    let allocated = |x: Option<&CountrySide>| x.is_some_and(|x| x.allocation.is_some());
    if names.len() > 1 && (allocated(b) || allocated(s)) {
        writeln!(
            out,
            "    the national allocation is shared by {} licences: {}",
            names.len(),
            names.join(", ")
        )?;
    }
    row(
        out,
        4,
        "verdict",
        verdict_text(b.map(|x| x.verdict)),
        verdict_text(s.map(|x| x.verdict)),
        false,
    )
}

/// `790,000,000 TPP (2025-2027), used 1,266,496, headroom 788,733,504, shared by 2 licences`.
fn allocation_text(x: &CountrySide, licences: usize) -> String {
    let Some(a) = &x.allocation else {
        return "none".to_owned();
    };
    let period = x
        .allocation_period
        .as_deref()
        .map(|p| format!(" ({})", Escaped(p)))
        .unwrap_or_default();
    format!(
        "{} TPP{period}, used {}, headroom {}, shared by {licences} licence{}",
        grouped(a.cap),
        grouped(a.used),
        tpp_headroom(a),
        plural(licences)
    )
}

fn class_text(s: &Side) -> String {
    format!(
        "{}, {}, {}",
        Escaped(s.outcome.as_deref().unwrap_or("unknown")),
        if s.controlled {
            "controlled"
        } else {
            "not controlled"
        },
        if s.counted { "counted" } else { "not counted" }
    )
}

fn write_devices(c: &Comparison, out: &mut dyn Write) -> Result<(), Error> {
    if c.class_changes.is_empty() {
        writeln!(out, "  devices changing class: none")?;
        return Ok(());
    }
    writeln!(out, "  devices changing class:")?;
    for k in &c.class_changes {
        writeln!(
            out,
            "    {} ({} device{} on {} node{}): {} -> {}",
            Escaped(k.model.as_deref().unwrap_or("unknown device")),
            k.devices,
            plural(usize::try_from(k.devices).unwrap_or(usize::MAX)),
            k.nodes,
            plural(usize::try_from(k.nodes).unwrap_or(usize::MAX)),
            class_text(&k.baseline),
            class_text(&k.scenario)
        )?;
    }
    // Devices that start or stop counting matter more than a new name for the same control.
    let (moved, renamed): (Vec<&DeviceChange>, Vec<&DeviceChange>) =
        c.devices.iter().partition(|d| {
            (d.baseline.controlled, d.baseline.counted)
                != (d.scenario.controlled, d.scenario.counted)
        });
    for d in moved.into_iter().chain(renamed).take(TEXT_DEVICES) {
        writeln!(
            out,
            "      node {} [{}] {} {}: {} -> {}",
            Escaped(&d.subject),
            d.node.get(..12).unwrap_or(&d.node),
            Escaped(&d.gpu),
            Escaped(d.model.as_deref().unwrap_or("unknown device")),
            class_text(&d.baseline),
            class_text(&d.scenario)
        )?;
    }
    let total: u64 = c.class_changes.iter().map(|k| k.devices).sum();
    let shown = u64::try_from(c.devices.len().min(TEXT_DEVICES)).unwrap_or(u64::MAX);
    if total > shown {
        writeln!(
            out,
            "      ... and {} more (--json lists up to {MAX_DEVICE_CHANGES})",
            total.saturating_sub(shown)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
