//! Classification of a device ([`classify_device`]) and of a node ([`classify_node`]) under a
//! [`RuleSet`], with three-valued logic: a condition over an unknown figure is unknown, and an
//! unknown that could change the outcome makes it [`INDETERMINATE`], never a guess.
//!
//! Every [`Classification`] names the rule set and its status, the clause that decided, a
//! sentence with the figures compared, and the figures used.

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

use std::fmt;

use serde::{Serialize, Serializer};

use crate::ruleset::{Conditions, INDETERMINATE, Range, RuleSet, RuleSetStatus};

mod need;

use crate::tpp::{self, ComputeFigures, Precision, TppBasis};
use crate::units::{Bandwidth, PerformanceDensity, Tpp};
pub use need::{NeedDetermination, Party, licence_need};

/// Why a classification is indeterminate. Codes are stable; new ones are added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IndeterminateReason {
    /// No complete set of dense throughput figures, so TPP is unknown.
    NoThroughputFigures,
    /// The applicable die area is unknown, so performance density is unknown.
    DieAreaUnknown,
    /// The DRAM bandwidth is unknown.
    DramBandwidthUnknown,
    /// The interconnect bandwidth is unknown.
    InterconnectBandwidthUnknown,
    /// (Node) a device is indeterminate and could raise the node's outcome.
    DeviceIndeterminate,
    /// (Node) a device was classified under another rule set.
    RuleSetMismatch,
    /// (Node) a device's outcome is not in the rule set's `node.rank`.
    OutcomeNotRanked,
}

impl IndeterminateReason {
    /// Every reason, for documentation and the uniqueness test.
    pub const ALL: [Self; 7] = [
        Self::NoThroughputFigures,
        Self::DieAreaUnknown,
        Self::DramBandwidthUnknown,
        Self::InterconnectBandwidthUnknown,
        Self::DeviceIndeterminate,
        Self::RuleSetMismatch,
        Self::OutcomeNotRanked,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Self::NoThroughputFigures => "no_throughput_figures",
            Self::DieAreaUnknown => "die_area_unknown",
            Self::DramBandwidthUnknown => "dram_bandwidth_unknown",
            Self::InterconnectBandwidthUnknown => "interconnect_bandwidth_unknown",
            Self::DeviceIndeterminate => "device_indeterminate",
            Self::RuleSetMismatch => "rule_set_mismatch",
            Self::OutcomeNotRanked => "outcome_not_ranked",
        }
    }

    /// Human text.
    pub const fn sentence(self) -> &'static str {
        match self {
            Self::NoThroughputFigures => {
                "TPP is unknown: no complete set of dense throughput figures"
            }
            Self::DieAreaUnknown => {
                "performance density is unknown: the applicable die area is unknown"
            }
            Self::DramBandwidthUnknown => "the DRAM bandwidth is unknown",
            Self::InterconnectBandwidthUnknown => "the interconnect bandwidth is unknown",
            Self::DeviceIndeterminate => {
                "a device is indeterminate and could raise the node's outcome"
            }
            Self::RuleSetMismatch => "a device was classified under another rule set",
            Self::OutcomeNotRanked => "a device's outcome is not ranked by the rule set",
        }
    }
}

impl fmt::Display for IndeterminateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.code())
    }
}

impl Serialize for IndeterminateReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// What decided a classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// A clause of a class held.
    Clause,
    /// An exclusion held.
    Exclusion,
    /// Nothing held: the rule set's default outcome.
    Default,
    /// A needed figure is unknown.
    Indeterminate,
}

/// The classification of one device under one rule set. Field names are stable JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// Id of the rule set.
    pub rule_set: String,
    /// Its version.
    pub rule_set_version: String,
    /// Its legal status.
    pub rule_set_status: RuleSetStatus,
    /// The outcome (`3A090.a`, `covered`) or [`INDETERMINATE`].
    pub outcome: String,
    /// What decided it.
    pub decided_by: DecidedBy,
    /// The clause or exclusion that decided (or could not be decided); `None` for the default.
    pub clause: Option<String>,
    /// Why the outcome is indeterminate.
    pub reason: Option<IndeterminateReason>,
    /// The comparison that decided, with figures: `TPP 15831.2 >= 4800 (3A090.a.1)`.
    pub sentence: String,
    /// TPP, if known.
    pub tpp: Option<Tpp>,
    /// The precision that set the TPP.
    pub tpp_basis: Option<Precision>,
    /// Performance density, if known.
    pub performance_density: Option<PerformanceDensity>,
    /// DRAM bandwidth used.
    pub dram_bandwidth: Option<Bandwidth>,
    /// Interconnect bandwidth used.
    pub interconnect_bandwidth: Option<Bandwidth>,
    /// Whether the device is designed or marketed for datacenters.
    pub datacenter: bool,
    /// Whether the deciding clause is marked `confirmed = false` in the rule set (a bill's
    /// prong not yet read in its text): the outcome then rests on an unconfirmed reading.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
}

/// The classification of a node (a computer) from its devices' classifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeClassification {
    /// Id of the rule set.
    pub rule_set: String,
    /// Its legal status.
    pub rule_set_status: RuleSetStatus,
    /// The node outcome (`4A090.a`) or [`INDETERMINATE`].
    pub outcome: String,
    /// The device outcome it comes from (`3A090.a`), when decided.
    pub device_outcome: Option<String>,
    /// Index of the device that decided (or could not be decided).
    pub device: Option<usize>,
    /// Why the outcome is indeterminate.
    pub reason: Option<IndeterminateReason>,
    /// Human sentence.
    pub sentence: String,
    /// Number of devices.
    pub devices: usize,
    /// Sum of the devices' known TPPs.
    pub tpp: Tpp,
}

/// The figures a rule set compares, derived once.
struct Derived {
    basis: Option<TppBasis>,
    density: Option<PerformanceDensity>,
    figures: ComputeFigures,
}

/// A three-valued truth.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Truth {
    True(Vec<String>),
    False,
    Unknown(IndeterminateReason),
}

impl Derived {
    fn new(figures: &ComputeFigures) -> Self {
        let basis = tpp::tpp(figures);
        Self {
            density: basis
                .zip(figures.die_area)
                .and_then(|(b, area)| tpp::performance_density(b.tpp, area)),
            basis,
            figures: figures.clone(),
        }
    }

    fn tpp(&self) -> Option<Tpp> {
        self.basis.map(|b| b.tpp)
    }

    fn density_reason(&self) -> IndeterminateReason {
        if self.basis.is_none() {
            IndeterminateReason::NoThroughputFigures
        } else {
            IndeterminateReason::DieAreaUnknown
        }
    }

    fn combined_reason(&self) -> IndeterminateReason {
        if self.figures.dram_bandwidth.is_none() {
            IndeterminateReason::DramBandwidthUnknown
        } else {
            IndeterminateReason::InterconnectBandwidthUnknown
        }
    }

    /// AND of the conditions: false wins over unknown, unknown over true.
    fn check(&self, when: &Conditions) -> Truth {
        let bw = |b: Option<Bandwidth>| b.map(BandwidthText);
        let results = [
            when.tpp.as_ref().map(|r| {
                range_truth(
                    "TPP",
                    r,
                    self.tpp(),
                    IndeterminateReason::NoThroughputFigures,
                )
            }),
            when.performance_density.as_ref().map(|r| {
                density_truth(r, self.density).unwrap_or(Truth::Unknown(self.density_reason()))
            }),
            when.dram_bandwidth.as_ref().map(|r| {
                range_truth(
                    "DRAM bandwidth",
                    &bandwidth_range(r),
                    bw(self.figures.dram_bandwidth),
                    IndeterminateReason::DramBandwidthUnknown,
                )
            }),
            when.interconnect_bandwidth.as_ref().map(|r| {
                range_truth(
                    "interconnect bandwidth",
                    &bandwidth_range(r),
                    bw(self.figures.interconnect_bandwidth),
                    IndeterminateReason::InterconnectBandwidthUnknown,
                )
            }),
            when.dram_plus_interconnect_bandwidth.as_ref().map(|r| {
                range_truth(
                    "DRAM plus interconnect bandwidth",
                    &bandwidth_range(r),
                    bw(self.figures.dram_plus_interconnect_bandwidth()),
                    self.combined_reason(),
                )
            }),
            when.datacenter.map(|wanted| {
                if wanted == self.figures.datacenter {
                    Truth::True(vec![datacenter_text(wanted).to_owned()])
                } else {
                    Truth::False
                }
            }),
        ];
        let mut parts = Vec::new();
        let mut unknown = None;
        for result in results.into_iter().flatten() {
            match result {
                Truth::False => return Truth::False,
                Truth::Unknown(reason) => {
                    unknown.get_or_insert(reason);
                }
                Truth::True(mut text) => parts.append(&mut text),
            }
        }
        match unknown {
            Some(reason) => Truth::Unknown(reason),
            None => Truth::True(parts),
        }
    }
}

fn datacenter_text(datacenter: bool) -> &'static str {
    if datacenter {
        "designed or marketed for datacenters"
    } else {
        "not designed or marketed for datacenters"
    }
}

/// A bandwidth printed with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BandwidthText(Bandwidth);

impl fmt::Display for BandwidthText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} GB/s", self.0)
    }
}

fn bandwidth_range(range: &Range<Bandwidth>) -> Range<BandwidthText> {
    Range {
        min: range.min.map(BandwidthText),
        max: range.max.map(BandwidthText),
    }
}

/// One range condition over a figure with exact `Display`.
fn range_truth<T: PartialOrd + fmt::Display>(
    name: &str,
    range: &Range<T>,
    value: Option<T>,
    unknown: IndeterminateReason,
) -> Truth {
    let Some(value) = value else {
        return Truth::Unknown(unknown);
    };
    if !range.contains(&value) {
        return Truth::False;
    }
    Truth::True(vec![range_text(
        name,
        &value.to_string(),
        range.min.as_ref().map(ToString::to_string),
        range.max.as_ref().map(ToString::to_string),
    )])
}

/// The density condition; `None` when the density is unknown. The density is printed with
/// enough decimals that it never reads as equal to a threshold it is not equal to.
fn density_truth(
    range: &Range<PerformanceDensity>,
    value: Option<PerformanceDensity>,
) -> Option<Truth> {
    let value = value?;
    if !range.contains(&value) {
        return Some(Truth::False);
    }
    let shown = value.to_string();
    let reads_equal = [range.min, range.max]
        .into_iter()
        .flatten()
        .any(|t| t.threshold_text() == shown && t != value);
    let shown = if reads_equal {
        format!("{shown} (exactly {}/{})", value.tpp(), value.die_area())
    } else {
        shown
    };
    Some(Truth::True(vec![range_text(
        "performance density",
        &shown,
        range.min.map(PerformanceDensity::threshold_text),
        range.max.map(PerformanceDensity::threshold_text),
    )]))
}

fn range_text(name: &str, value: &str, min: Option<String>, max: Option<String>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("{min} <= {name} {value} < {max}"),
        (Some(min), None) => format!("{name} {value} >= {min}"),
        (None, Some(max)) => format!("{name} {value} < {max}"),
        (None, None) => format!("{name} {value}"),
    }
}

/// The result of one branch (exclusion or class) of the rule set.
enum Branch {
    Holds {
        clause: String,
        sentence: String,
    },
    Fails,
    Unknown {
        clause: String,
        reason: IndeterminateReason,
    },
}

/// A decision, built from the last branch back to the first.
struct Decision {
    outcome: String,
    decided_by: DecidedBy,
    clause: Option<String>,
    reason: Option<IndeterminateReason>,
    sentence: String,
}

/// Classifies one device's figures under a rule set.
///
/// Exclusions are checked in order, then classes in order (a class holds when any clause
/// holds; a clause holds when all its conditions hold); the first that holds decides, else
/// the default outcome. A branch that cannot be decided makes the result indeterminate,
/// unless every way it could go gives the same outcome.
pub fn classify_device(figures: &ComputeFigures, rule_set: &RuleSet) -> Classification {
    let derived = Derived::new(figures);
    let mut branches: Vec<(String, DecidedBy, Branch)> = Vec::new();
    for exclusion in &rule_set.exclusions {
        let branch = match derived.check(&exclusion.when) {
            Truth::True(parts) => Branch::Holds {
                clause: exclusion.id.clone(),
                sentence: format!("{} ({})", parts.join(" and "), exclusion.id),
            },
            Truth::False => Branch::Fails,
            Truth::Unknown(reason) => Branch::Unknown {
                clause: exclusion.id.clone(),
                reason,
            },
        };
        branches.push((exclusion.outcome.clone(), DecidedBy::Exclusion, branch));
    }
    for class in &rule_set.classes {
        let mut first_unknown = None;
        let mut holds = None;
        for clause in &class.clauses {
            match derived.check(&clause.when) {
                Truth::True(parts) => {
                    holds = Some(Branch::Holds {
                        clause: clause.id.clone(),
                        sentence: format!("{} ({})", parts.join(" and "), clause.id),
                    });
                    break;
                }
                Truth::False => {}
                Truth::Unknown(reason) => {
                    first_unknown.get_or_insert(Branch::Unknown {
                        clause: clause.id.clone(),
                        reason,
                    });
                }
            }
        }
        let branch = holds.or(first_unknown).unwrap_or(Branch::Fails);
        branches.push((class.outcome.clone(), DecidedBy::Clause, branch));
    }
    let default = Decision {
        outcome: rule_set.default_outcome.clone(),
        decided_by: DecidedBy::Default,
        clause: None,
        reason: None,
        sentence: default_sentence(rule_set, &derived),
    };
    let decision = branches.into_iter().rev().fold(
        default,
        |later, (outcome, decided_by, branch)| match branch {
            Branch::Holds { clause, sentence } => Decision {
                outcome,
                decided_by,
                clause: Some(clause),
                reason: None,
                sentence,
            },
            Branch::Fails => later,
            Branch::Unknown { clause, reason } => {
                if later.decided_by != DecidedBy::Indeterminate && later.outcome == outcome {
                    later
                } else {
                    Decision {
                        outcome: INDETERMINATE.to_owned(),
                        decided_by: DecidedBy::Indeterminate,
                        sentence: format!(
                            "{clause} cannot be decided: {} (it would give {outcome})",
                            reason.sentence()
                        ),
                        clause: Some(clause),
                        reason: Some(reason),
                    }
                }
            }
        },
    );
    let unconfirmed = decision.decided_by == DecidedBy::Clause
        && decision.clause.as_deref().is_some_and(|id| {
            rule_set
                .classes
                .iter()
                .flat_map(|c| &c.clauses)
                .any(|k| k.id == id && !k.confirmed)
        });
    let mut sentence = decision.sentence;
    if unconfirmed {
        sentence.push_str("; this clause is not confirmed from the legal text");
    }
    Classification {
        rule_set: rule_set.id.clone(),
        rule_set_version: rule_set.version.clone(),
        rule_set_status: rule_set.status,
        outcome: decision.outcome,
        decided_by: decision.decided_by,
        clause: decision.clause,
        reason: decision.reason,
        sentence,
        tpp: derived.tpp(),
        tpp_basis: derived.basis.map(|b| b.precision),
        performance_density: derived.density,
        dram_bandwidth: figures.dram_bandwidth,
        interconnect_bandwidth: figures.interconnect_bandwidth,
        datacenter: figures.datacenter,
        unconfirmed,
    }
}

fn default_sentence(rule_set: &RuleSet, derived: &Derived) -> String {
    let mut figures = Vec::new();
    if let Some(tpp) = derived.tpp() {
        figures.push(format!("TPP {tpp}"));
    }
    if let Some(density) = derived.density {
        figures.push(format!("performance density {density}"));
    }
    if let Some(bw) = derived.figures.dram_bandwidth {
        figures.push(format!("DRAM bandwidth {bw} GB/s"));
    }
    if let Some(bw) = derived.figures.interconnect_bandwidth {
        figures.push(format!("interconnect bandwidth {bw} GB/s"));
    }
    figures.push(datacenter_text(derived.figures.datacenter).to_owned());
    format!(
        "no clause of {} applies ({}): {}",
        rule_set.id,
        figures.join(", "),
        rule_set.default_outcome
    )
}

/// Classifies a node from its devices' classifications under the same rule set.
///
/// The node takes the most severe device outcome (first in `node.rank`), mapped through
/// `node.map` (`3A090.a` -> `4A090.a`). An indeterminate device makes the node indeterminate
/// unless another device already has the most severe outcome. A node without devices gets the
/// default outcome.
pub fn classify_node(devices: &[Classification], rule_set: &RuleSet) -> NodeClassification {
    let tpp = Tpp::sum(devices.iter().filter_map(|d| d.tpp));
    let rank_of = |outcome: &str| rule_set.node.rank.iter().position(|r| r == outcome);
    let mut worst: Option<(usize, usize)> = None;
    let mut undecided: Option<(usize, IndeterminateReason)> = None;
    for (index, device) in devices.iter().enumerate() {
        let problem = if device.rule_set != rule_set.id {
            Some(IndeterminateReason::RuleSetMismatch)
        } else if device.outcome == INDETERMINATE {
            Some(IndeterminateReason::DeviceIndeterminate)
        } else {
            match rank_of(&device.outcome) {
                Some(rank) => {
                    if worst.is_none_or(|(_, w)| rank < w) {
                        worst = Some((index, rank));
                    }
                    None
                }
                None => Some(IndeterminateReason::OutcomeNotRanked),
            }
        };
        if let Some(reason) = problem {
            undecided.get_or_insert((index, reason));
        }
    }
    let most_severe_reached = worst.is_some_and(|(_, rank)| rank == 0);
    let base = NodeClassification {
        rule_set: rule_set.id.clone(),
        rule_set_status: rule_set.status,
        outcome: String::new(),
        device_outcome: None,
        device: None,
        reason: None,
        sentence: String::new(),
        devices: devices.len(),
        tpp,
    };
    match (undecided, worst) {
        (Some((index, reason)), _) if !most_severe_reached => NodeClassification {
            outcome: INDETERMINATE.to_owned(),
            device: Some(index),
            reason: Some(reason),
            sentence: format!("device {index}: {}", reason.sentence()),
            ..base
        },
        (_, Some((index, _))) => {
            let device_outcome = devices
                .get(index)
                .map_or(rule_set.default_outcome.as_str(), |d| d.outcome.as_str());
            let outcome = rule_set.node_outcome(device_outcome).to_owned();
            NodeClassification {
                sentence: format!(
                    "device {index} is {device_outcome}, the most severe of {} device(s): node is {outcome}",
                    devices.len()
                ),
                outcome,
                device_outcome: Some(device_outcome.to_owned()),
                device: Some(index),
                ..base
            }
        }
        (_, None) => {
            let outcome = rule_set.node_outcome(&rule_set.default_outcome).to_owned();
            NodeClassification {
                sentence: format!("no devices: node is {outcome}"),
                outcome,
                device_outcome: Some(rule_set.default_outcome.clone()),
                ..base
            }
        }
    }
}

#[cfg(test)]
mod tests;
