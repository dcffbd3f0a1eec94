//! Rule sets: versioned classification thresholds with their source and legal status, read
//! from TOML ([`RuleSet::from_toml_str`]); the shipped files in `rules/` are embedded
//! ([`all_shipped_rule_sets`]; [`shipped_rule_sets`] are the defaults, historical ones left
//! out). No threshold lives in code: this module only knows the shape.
//!
//! The format is documented in `rules/README.md`. Classification over a rule set is in
//! [`crate::classify`].

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::licence::CountryCode;
use crate::units::{Bandwidth, PerformanceDensity, Tpp};

mod licensing;
mod variant;

pub use licensing::{LicenceNeed, Licensing, LicensingRule, PartyConditions, PartyGroup};
pub use variant::{RuleSetOrigin, RuleSetPosture};

/// Largest rule-set file accepted, checked before parsing.
pub const MAX_RULE_SET_BYTES: usize = 64 * 1024;

/// The outcome name classification uses when a figure it needs is unknown; no rule set may
/// use it.
pub const INDETERMINATE: &str = "indeterminate";

/// `measurement.exceeds_spec_percent` when the rule set leaves it out.
pub const DEFAULT_EXCEEDS_SPEC_PERCENT: u32 = 10;
/// `measurement.below_spec_percent` when the rule set leaves it out.
pub const DEFAULT_BELOW_SPEC_PERCENT: u32 = 50;
/// Largest `exceeds_spec_percent` accepted (a measurement eleven times the spec).
pub const MAX_EXCEEDS_SPEC_PERCENT: u32 = 1000;
/// Largest `below_spec_percent` accepted (100: never below spec).
pub const MAX_BELOW_SPEC_PERCENT: u32 = 100;
/// `measurement.max_age_days` when the rule set leaves it out: how old (at the attestation's
/// `iat`) a measurement may be and still back the `measured` evidence tier.
pub const DEFAULT_MEASUREMENT_MAX_AGE_DAYS: u32 = 30;
/// Largest `max_age_days` accepted (ten years).
pub const MAX_MEASUREMENT_MAX_AGE_DAYS: u32 = 3650;

/// The shipped rule-set files, embedded at compile time: (file name, contents).
const SHIPPED: [(&str, &str); 5] = [
    (
        "us-eccn-3a090.toml",
        include_str!("../../../rules/us-eccn-3a090.toml"),
    ),
    (
        "us-gain-ai-act-s3150.toml",
        include_str!("../../../rules/us-gain-ai-act-s3150.toml"),
    ),
    (
        "us-ai-overwatch-act-hr6875.toml",
        include_str!("../../../rules/us-ai-overwatch-act-hr6875.toml"),
    ),
    (
        "us-china-review-2026-01.toml",
        include_str!("../../../rules/us-china-review-2026-01.toml"),
    ),
    (
        "us-ai-diffusion-2025.toml",
        include_str!("../../../rules/us-ai-diffusion-2025.toml"),
    ),
];

/// Legal status of a rule set, shown beside every outcome so no report presents a bill as law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSetStatus {
    /// A regulation in force.
    InForce,
    /// A bill: proposed law, not in force.
    Bill,
    /// An announced licensing or review policy.
    Policy,
    /// No longer in force (rescinded or unenforced); for comparison only.
    Historical,
}

impl RuleSetStatus {
    /// The stable snake_case code, as in the TOML files.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InForce => "in_force",
            Self::Bill => "bill",
            Self::Policy => "policy",
            Self::Historical => "historical",
        }
    }

    /// Human label: `bill (not law)`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::InForce => "in force",
            Self::Bill => "bill (not law)",
            Self::Policy => "policy",
            Self::Historical => "historical (not in force)",
        }
    }
}

impl fmt::Display for RuleSetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.code())
    }
}

/// A range over one figure: `min` inclusive, `max` exclusive; either may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "T: FromStr, T::Err: fmt::Display"))]
pub struct Range<T> {
    /// Lower bound, inclusive.
    #[serde(default, deserialize_with = "exact_opt")]
    pub min: Option<T>,
    /// Upper bound, exclusive.
    #[serde(default, deserialize_with = "exact_opt")]
    pub max: Option<T>,
}

impl<T: PartialOrd> Range<T> {
    /// Whether `value` lies in `[min, max)`.
    pub fn contains(&self, value: &T) -> bool {
        self.min.as_ref().is_none_or(|min| value >= min)
            && self.max.as_ref().is_none_or(|max| value < max)
    }
}

/// AND-ed conditions of a clause; an absent key places no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Total Processing Performance.
    pub tpp: Option<Range<Tpp>>,
    /// TPP per mm² of applicable die area.
    pub performance_density: Option<Range<PerformanceDensity>>,
    /// DRAM bandwidth, GB/s.
    pub dram_bandwidth: Option<Range<Bandwidth>>,
    /// Interconnect bandwidth, GB/s.
    pub interconnect_bandwidth: Option<Range<Bandwidth>>,
    /// DRAM plus interconnect bandwidth, GB/s.
    pub dram_plus_interconnect_bandwidth: Option<Range<Bandwidth>>,
    /// Whether the device is designed or marketed for datacenters.
    pub datacenter: Option<bool>,
}

impl Conditions {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One clause: AND-ed conditions, with the citation id and text of the rule it encodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    /// Citation of the clause: `3A090.a.2`.
    pub id: String,
    /// The rule's words, shortened.
    pub text: String,
    /// The conditions, all of which must hold.
    pub when: Conditions,
    /// Whether the clause is confirmed from the legal text (`confirmed = false`: reported in
    /// the press or a summary, not yet read in the text). An outcome decided by an
    /// unconfirmed clause says so.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub confirmed: bool,
}

fn yes() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_true(value: &bool) -> bool {
    *value
}

/// A carve-out checked before the classes: when it holds, the outcome is `outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Citation of the carve-out.
    pub id: String,
    /// The rule's words, shortened.
    pub text: String,
    /// The outcome when it holds.
    pub outcome: String,
    /// The conditions, all of which must hold.
    pub when: Conditions,
}

/// An outcome reached when any of its clauses holds (clauses are OR-ed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// The outcome: `3A090.a`.
    pub outcome: String,
    /// The clauses, in order.
    pub clauses: Vec<Clause>,
}

/// How a node (a computer holding devices) is classified from its devices' outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRules {
    /// Every device outcome of the rule set, most severe first: the node takes the first that
    /// any of its devices has.
    pub rank: Vec<String>,
    /// Node outcome for a device outcome (`3A090.a` -> `4A090.a`); unlisted outcomes carry over.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
}

/// What an allocation is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AllocationBasis {
    /// Devices under licences whose destination country is the country, across licences.
    DestinationCountry,
}

impl AllocationBasis {
    /// The stable snake_case code, as in the TOML files.
    pub const fn code(self) -> &'static str {
        match self {
            Self::DestinationCountry => "destination_country",
        }
    }
}

/// An aggregate TPP allocation that applies to **each** country of a group separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// The cap on aggregate TPP per country, exact.
    #[serde(deserialize_with = "exact")]
    pub tpp: Tpp,
    /// The period it covers, as the rule states it (`2025-2027`).
    pub period: String,
    /// What is counted against it.
    pub basis: AllocationBasis,
    /// The rule's words, shortened.
    #[serde(default)]
    pub text: Option<String>,
    /// A per-consignee limit below which no licence is needed (the 2025 rule's LPP), exact;
    /// documented only: the policy engine does not know consignees.
    #[serde(default, deserialize_with = "exact_opt")]
    pub per_consignee_tpp: Option<Tpp>,
    /// The period of `per_consignee_tpp` (`per calendar year`).
    #[serde(default)]
    pub per_consignee_period: Option<String>,
}

/// A named group of countries (a tier), with an optional per-country allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryGroup {
    /// Stable name: lower-case letters, digits and `_` (`tier_1`).
    pub name: String,
    /// Human description with its citation.
    pub text: String,
    /// Its countries (ISO 3166-1 alpha-2), sorted.
    #[serde(default, deserialize_with = "country_list")]
    pub countries: Vec<CountryCode>,
    /// Whether the group also holds every country no other group lists (at most one group).
    #[serde(default)]
    pub rest: bool,
    /// The allocation each of its countries gets; absent: none (no country cap).
    #[serde(default)]
    pub allocation: Option<Allocation>,
}

impl CountryGroup {
    fn holds(&self, country: CountryCode) -> bool {
        self.countries.binary_search(&country).is_ok()
    }
}

/// How far a GPU's measured dense rate may stray from its spec figure (table `[measurement]`),
/// in whole percent of the spec figure. A measurement is above spec when `median > spec x (1 +
/// exceeds_spec_percent / 100)`, below when `median < spec x (1 - below_spec_percent / 100)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementTolerances {
    /// How far above spec a measurement may be before `exceeds_spec`, percent (0 to 1000).
    #[serde(default = "default_exceeds_spec_percent", deserialize_with = "percent")]
    pub exceeds_spec_percent: u32,
    /// How far below spec a measurement may be before `below_spec`, percent (0 to 100; 100
    /// never warns).
    #[serde(default = "default_below_spec_percent", deserialize_with = "percent")]
    pub below_spec_percent: u32,
    /// How old a measurement may be, in days before the attestation's `iat`, and still back
    /// the `measured` tier (1 to 3650). An older one is still held against the spec.
    #[serde(default = "default_max_age_days", deserialize_with = "percent")]
    pub max_age_days: u32,
}

impl Default for MeasurementTolerances {
    fn default() -> Self {
        Self {
            exceeds_spec_percent: DEFAULT_EXCEEDS_SPEC_PERCENT,
            below_spec_percent: DEFAULT_BELOW_SPEC_PERCENT,
            max_age_days: DEFAULT_MEASUREMENT_MAX_AGE_DAYS,
        }
    }
}

impl MeasurementTolerances {
    /// These tolerances with each given override in place (a licence's `[measurement]`).
    pub fn with_overrides(
        self,
        exceeds_spec_percent: Option<u32>,
        below_spec_percent: Option<u32>,
        max_age_days: Option<u32>,
    ) -> Self {
        Self {
            exceeds_spec_percent: exceeds_spec_percent.unwrap_or(self.exceeds_spec_percent),
            below_spec_percent: below_spec_percent.unwrap_or(self.below_spec_percent),
            max_age_days: max_age_days.unwrap_or(self.max_age_days),
        }
    }

    /// `max_age_days` in seconds.
    pub fn max_age_s(&self) -> i64 {
        i64::from(self.max_age_days).saturating_mul(86_400)
    }

    /// The first tolerance outside its range, as an error naming the key.
    pub fn check(&self) -> Result<(), RuleSetError> {
        check_tolerance("exceeds_spec_percent", Some(self.exceeds_spec_percent))?;
        check_tolerance("below_spec_percent", Some(self.below_spec_percent))?;
        check_tolerance("max_age_days", Some(self.max_age_days))
    }
}

/// Checks one `[measurement]` key against its range: `exceeds_spec_percent`,
/// `below_spec_percent` or `max_age_days`.
pub(crate) fn check_tolerance(key: &'static str, value: Option<u32>) -> Result<(), RuleSetError> {
    let (min, max, default) = match key {
        "below_spec_percent" => (0, MAX_BELOW_SPEC_PERCENT, DEFAULT_BELOW_SPEC_PERCENT),
        "max_age_days" => (
            1,
            MAX_MEASUREMENT_MAX_AGE_DAYS,
            DEFAULT_MEASUREMENT_MAX_AGE_DAYS,
        ),
        _ => (0, MAX_EXCEEDS_SPEC_PERCENT, DEFAULT_EXCEEDS_SPEC_PERCENT),
    };
    match value {
        Some(value) if value < min || value > max => Err(RuleSetError::BadTolerance {
            key,
            value,
            min,
            max,
            default,
        }),
        _ => Ok(()),
    }
}

fn default_max_age_days() -> u32 {
    DEFAULT_MEASUREMENT_MAX_AGE_DAYS
}

fn default_exceeds_spec_percent() -> u32 {
    DEFAULT_EXCEEDS_SPEC_PERCENT
}

fn default_below_spec_percent() -> u32 {
    DEFAULT_BELOW_SPEC_PERCENT
}

/// A validated rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Stable id: lower-case letters, digits and `-`.
    pub id: String,
    /// Version of this file's content.
    pub version: String,
    /// Human title.
    pub title: String,
    /// Legal status.
    pub status: RuleSetStatus,
    /// Citation of the legal text.
    pub source: String,
    /// Date the rule took effect; absent when there is none (a bill) or it is not recorded.
    #[serde(default, serialize_with = "display_opt")]
    pub effective: Option<toml::value::Datetime>,
    /// The ECCN this rule set classifies against, when it is an export-control entry; its
    /// outcome is then reported as `eccn`.
    #[serde(default)]
    pub eccn: Option<String>,
    /// Free-form notes (scope, caveats).
    #[serde(default)]
    pub notes: Option<String>,
    /// Outcome when no exclusion or class applies.
    pub default_outcome: String,
    /// Carve-outs, checked in order before the classes.
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
    /// Classes, checked in order; the first that holds decides.
    pub classes: Vec<Class>,
    /// Node classification.
    pub node: NodeRules,
    /// Country groups (tiers), checked in file order; a country is in at most one listed
    /// group, else in the `rest` group if there is one. Absent: no tiers, no allocations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub country_groups: Vec<CountryGroup>,
    /// Tolerances for holding measured throughput against the spec table; absent: the
    /// defaults (10 % above, 50 % below).
    #[serde(default)]
    pub measurement: MeasurementTolerances,
    /// Where a licence is needed for the items it controls; absent: the rule set does not
    /// say (the need is `undetermined` for every controlled item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensing: Option<Licensing>,
    /// The shipped rule set this file modifies (a what-if copy); it is then never shown
    /// with that rule set's status alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_of: Option<String>,
    /// Where it came from; set by the loader, never read from the file.
    #[serde(skip_deserializing, default)]
    pub origin: RuleSetOrigin,
    /// Changes a what-if scenario made, in words; never read from the file.
    #[serde(skip_deserializing, default, skip_serializing_if = "Vec::is_empty")]
    pub modifications: Vec<String>,
}

/// Why a rule-set file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleSetError {
    /// The file is larger than [`MAX_RULE_SET_BYTES`].
    #[error("rule set is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid TOML, or a key is unknown, missing or of the wrong type (the message names
    /// the key, line and column).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// The id has characters other than lower-case letters, digits and `-`.
    #[error("`id` {id:?} must be non-empty lower-case letters, digits and `-`")]
    BadId {
        /// The id.
        id: String,
    },
    /// `effective` is not a plain date.
    #[error("`effective` {value} must be a date such as 2023-11-17, without a time")]
    BadEffectiveDate {
        /// The value.
        value: String,
    },
    /// An outcome name is empty or reserved.
    #[error("outcome {outcome:?} at `{key}` is empty or reserved; pick another name")]
    BadOutcome {
        /// Where.
        key: String,
        /// The name.
        outcome: String,
    },
    /// Two classes share an outcome.
    #[error("two classes have outcome {outcome:?}; merge their clauses into one class")]
    DuplicateClass {
        /// The outcome.
        outcome: String,
    },
    /// A class has no clauses.
    #[error("class {outcome:?} has no clauses; add at least one `[[classes.clauses]]`")]
    EmptyClass {
        /// The class.
        outcome: String,
    },
    /// A clause or exclusion has no conditions (it would always hold).
    #[error("clause {id:?} has an empty `when`; give it at least one condition")]
    EmptyConditions {
        /// The clause id.
        id: String,
    },
    /// A clause id is empty or used twice.
    #[error("clause id {id:?} is empty or used twice; clause ids must be unique")]
    DuplicateClauseId {
        /// The id.
        id: String,
    },
    /// A range's `min` is not below its `max`.
    #[error(
        "clause {id:?}: `{key}` has min {min} not below max {max}; min is inclusive, max exclusive"
    )]
    EmptyRange {
        /// The clause id.
        id: String,
        /// The figure.
        key: &'static str,
        /// The minimum.
        min: String,
        /// The maximum.
        max: String,
    },
    /// `node.rank` does not list every outcome exactly once.
    #[error("`node.rank` must list every outcome exactly once; {problem} {outcome:?}")]
    BadRank {
        /// What is wrong: "missing", "repeated" or "unknown".
        problem: &'static str,
        /// The outcome.
        outcome: String,
    },
    /// `node.map` names an outcome the rule set does not have.
    #[error("`node.map` maps {outcome:?}, which is not an outcome of this rule set")]
    UnknownMappedOutcome {
        /// The outcome.
        outcome: String,
    },
    /// A country group's name is not lower-case letters, digits and `_`, or is used twice.
    #[error(
        "country group name {name:?} is empty, used twice or not lower-case letters, digits \
         and `_`"
    )]
    BadCountryGroup {
        /// The name.
        name: String,
    },
    /// A country group lists no country and is not the `rest` group.
    #[error("country group {name:?} lists no country; add `countries` or set `rest = true`")]
    EmptyCountryGroup {
        /// The group.
        name: String,
    },
    /// A country is listed in two groups, or twice in one.
    #[error(
        "country {country} is in country groups {first:?} and {second:?}; a country is in one \
         group only"
    )]
    CountryInTwoGroups {
        /// The country.
        country: CountryCode,
        /// The first group listing it.
        first: String,
        /// The other group listing it.
        second: String,
    },
    /// More than one group has `rest = true`.
    #[error("country groups {first:?} and {second:?} both have `rest = true`; keep one")]
    TwoRestGroups {
        /// The first.
        first: String,
        /// The second.
        second: String,
    },
    /// A `[measurement]` value is outside its range.
    #[error(
        "`measurement.{key}` is {value}, outside the accepted {min} to {max}; write a whole \
         number from {min} to {max} (the default is {default})"
    )]
    BadTolerance {
        /// The key.
        key: &'static str,
        /// The value.
        value: u32,
        /// The smallest accepted.
        min: u32,
        /// The largest accepted.
        max: u32,
        /// The default.
        default: u32,
    },
    /// An allocation's period is empty.
    #[error("country group {name:?}: `allocation.period` is empty; state the period (`2025-2027`)")]
    EmptyAllocationPeriod {
        /// The group.
        name: String,
    },
    /// A `[licensing]` rule is malformed.
    #[error("licensing rule {id:?}: {problem}")]
    BadLicensingRule {
        /// The rule id (`otherwise` for the table itself).
        id: String,
        /// What is wrong, with the fix.
        problem: String,
    },
    /// A user's file reuses a shipped rule set's id with other content.
    #[error(
        "rule set id {id:?} is a shipped rule set's, but this file's content differs from it; \
         give the file its own `id` and declare `variant_of = \"{id}\"`, so every report shows \
         it as a modified copy and never under the shipped name"
    )]
    ShippedIdReused {
        /// The id.
        id: String,
    },
    /// A variant declares another legal status than its base's.
    #[error(
        "this variant of {variant_of} declares status `{status}`, but {variant_of} is \
         `{base}`; a modified copy keeps its base's status: write `status = \"{base}\"`"
    )]
    VariantStatus {
        /// The base rule set.
        variant_of: String,
        /// The base's status.
        base: RuleSetStatus,
        /// The status the file declares.
        status: RuleSetStatus,
    },
    /// `variant_of` names no shipped rule set.
    #[error("`variant_of` {variant_of:?} names no shipped rule set (shipped: {known})")]
    UnknownVariantOf {
        /// The value.
        variant_of: String,
        /// The shipped ids, comma-separated.
        known: String,
    },
    /// A scenario names a country group the rule set does not have.
    #[error(
        "rule set {rule_set} has no country group {group:?} (groups: {known}); name one of \
         its groups, or evaluate a rule set that has it (`--rule-set`)"
    )]
    UnknownCountryGroup {
        /// The rule set.
        rule_set: String,
        /// The group asked for.
        group: String,
        /// Its groups, comma-separated (empty when it has none).
        known: String,
    },
    /// No shipped rule set has this id.
    #[error("no shipped rule set has id {id:?} (shipped: {known})")]
    UnknownId {
        /// The id asked for.
        id: String,
        /// The shipped ids, comma-separated.
        known: String,
    },
    /// A shipped file failed to parse (a packaging bug).
    #[error("shipped rule set {file}: {source}")]
    Shipped {
        /// The file.
        file: &'static str,
        /// Why.
        #[source]
        source: Box<RuleSetError>,
    },
}

impl RuleSet {
    /// Parses and validates a rule set from TOML text (a user's file or a shipped one).
    pub fn from_toml_str(text: &str) -> Result<Self, RuleSetError> {
        if text.len() > MAX_RULE_SET_BYTES {
            return Err(RuleSetError::TooLarge {
                len: text.len(),
                max: MAX_RULE_SET_BYTES,
            });
        }
        let rule_set: Self = toml::from_str(text)?;
        rule_set.validate()?;
        Ok(rule_set)
    }

    /// Every outcome a device can get under this rule set (classes, exclusions, default),
    /// in that order, without repeats.
    pub fn outcomes(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.classes
            .iter()
            .map(|c| c.outcome.as_str())
            .chain(self.exclusions.iter().map(|e| e.outcome.as_str()))
            .chain([self.default_outcome.as_str()])
            .filter(|o| seen.insert(*o))
            .collect()
    }

    /// The node outcome for a device outcome (through `node.map`).
    pub fn node_outcome<'a>(&'a self, device_outcome: &'a str) -> &'a str {
        self.node
            .map
            .get(device_outcome)
            .map_or(device_outcome, String::as_str)
    }

    /// The country group (tier) a country is in: the group listing it, else the `rest`
    /// group; `None` when the rule set has no groups or none applies.
    pub fn country_group(&self, country: CountryCode) -> Option<&CountryGroup> {
        self.country_groups
            .iter()
            .find(|g| g.holds(country))
            .or_else(|| self.country_groups.iter().find(|g| g.rest))
    }

    /// The name of the country's group (tier), `tier_1`.
    pub fn country_tier(&self, country: CountryCode) -> Option<&str> {
        self.country_group(country).map(|g| g.name.as_str())
    }

    /// The aggregate allocation the country gets, if its group has one.
    pub fn country_allocation(&self, country: CountryCode) -> Option<&Allocation> {
        self.country_group(country)
            .and_then(|g| g.allocation.as_ref())
    }

    fn validate(&self) -> Result<(), RuleSetError> {
        let id_ok = !self.id.is_empty()
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(RuleSetError::BadId {
                id: self.id.clone(),
            });
        }
        if let Some(effective) = &self.effective
            && (effective.date.is_none() || effective.time.is_some())
        {
            return Err(RuleSetError::BadEffectiveDate {
                value: effective.to_string(),
            });
        }
        check_outcome("default_outcome", &self.default_outcome)?;
        let mut clause_ids = BTreeSet::new();
        let mut check_clause = |id: &str, when: &Conditions| {
            if id.is_empty() || !clause_ids.insert(id.to_owned()) {
                return Err(RuleSetError::DuplicateClauseId { id: id.to_owned() });
            }
            check_conditions(id, when)
        };
        for exclusion in &self.exclusions {
            check_outcome("exclusions.outcome", &exclusion.outcome)?;
            check_clause(&exclusion.id, &exclusion.when)?;
        }
        let mut class_outcomes = BTreeSet::new();
        for class in &self.classes {
            check_outcome("classes.outcome", &class.outcome)?;
            if !class_outcomes.insert(class.outcome.as_str()) {
                return Err(RuleSetError::DuplicateClass {
                    outcome: class.outcome.clone(),
                });
            }
            if class.clauses.is_empty() {
                return Err(RuleSetError::EmptyClass {
                    outcome: class.outcome.clone(),
                });
            }
            for clause in &class.clauses {
                check_clause(&clause.id, &clause.when)?;
            }
        }
        let outcomes: BTreeSet<&str> = self.outcomes().into_iter().collect();
        let mut ranked = BTreeSet::new();
        for outcome in &self.node.rank {
            let problem = if !outcomes.contains(outcome.as_str()) {
                Some("unknown")
            } else if !ranked.insert(outcome.as_str()) {
                Some("repeated")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(RuleSetError::BadRank {
                    problem,
                    outcome: outcome.clone(),
                });
            }
        }
        if let Some(missing) = outcomes.difference(&ranked).next() {
            return Err(RuleSetError::BadRank {
                problem: "missing",
                outcome: (*missing).to_owned(),
            });
        }
        if let Some(unknown) = self
            .node
            .map
            .keys()
            .find(|k| !outcomes.contains(k.as_str()))
        {
            return Err(RuleSetError::UnknownMappedOutcome {
                outcome: unknown.clone(),
            });
        }
        for node_outcome in self.node.map.values() {
            check_outcome("node.map", node_outcome)?;
        }
        self.measurement.check()?;
        self.validate_country_groups()?;
        self.validate_licensing()?;
        if self.variant_of.as_deref().is_some_and(str::is_empty) {
            return Err(RuleSetError::UnknownVariantOf {
                variant_of: String::new(),
                known: String::new(),
            });
        }
        Ok(())
    }

    fn validate_country_groups(&self) -> Result<(), RuleSetError> {
        let mut names = BTreeSet::new();
        let mut seen: BTreeMap<CountryCode, &str> = BTreeMap::new();
        let mut rest: Option<&str> = None;
        for group in &self.country_groups {
            let name_ok = !group.name.is_empty()
                && group
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok || !names.insert(group.name.as_str()) {
                return Err(RuleSetError::BadCountryGroup {
                    name: group.name.clone(),
                });
            }
            if group.countries.is_empty() && !group.rest {
                return Err(RuleSetError::EmptyCountryGroup {
                    name: group.name.clone(),
                });
            }
            if group.rest {
                if let Some(first) = rest {
                    return Err(RuleSetError::TwoRestGroups {
                        first: first.to_owned(),
                        second: group.name.clone(),
                    });
                }
                rest = Some(&group.name);
            }
            for &country in &group.countries {
                if let Some(first) = seen.insert(country, &group.name) {
                    return Err(RuleSetError::CountryInTwoGroups {
                        country,
                        first: first.to_owned(),
                        second: group.name.clone(),
                    });
                }
            }
            if let Some(a) = &group.allocation
                && a.period.trim().is_empty()
            {
                return Err(RuleSetError::EmptyAllocationPeriod {
                    name: group.name.clone(),
                });
            }
        }
        Ok(())
    }
}

fn check_outcome(key: &str, outcome: &str) -> Result<(), RuleSetError> {
    if outcome.trim().is_empty() || outcome.eq_ignore_ascii_case(INDETERMINATE) {
        Err(RuleSetError::BadOutcome {
            key: key.to_owned(),
            outcome: outcome.to_owned(),
        })
    } else {
        Ok(())
    }
}

fn check_conditions(id: &str, when: &Conditions) -> Result<(), RuleSetError> {
    if when.is_empty() {
        return Err(RuleSetError::EmptyConditions { id: id.to_owned() });
    }
    check_range(id, "tpp", when.tpp.as_ref(), Tpp::to_string)?;
    check_range(
        id,
        "performance_density",
        when.performance_density.as_ref(),
        |pd| pd.threshold_text(),
    )?;
    let bandwidths = [
        ("dram_bandwidth", &when.dram_bandwidth),
        ("interconnect_bandwidth", &when.interconnect_bandwidth),
        (
            "dram_plus_interconnect_bandwidth",
            &when.dram_plus_interconnect_bandwidth,
        ),
    ];
    for (key, range) in bandwidths {
        check_range(id, key, range.as_ref(), Bandwidth::to_string)?;
    }
    Ok(())
}

fn check_range<T: PartialOrd>(
    id: &str,
    key: &'static str,
    range: Option<&Range<T>>,
    text: impl Fn(&T) -> String,
) -> Result<(), RuleSetError> {
    match range {
        Some(Range {
            min: Some(min),
            max: Some(max),
        }) if min >= max => Err(RuleSetError::EmptyRange {
            id: id.to_owned(),
            key,
            min: text(min),
            max: text(max),
        }),
        Some(Range {
            min: None,
            max: None,
        }) => Err(RuleSetError::EmptyConditions {
            id: format!("{id} (`{key}` has neither min nor max)"),
        }),
        _ => Ok(()),
    }
}

/// The shipped rule sets a command uses when none is named, parsed, in a fixed order (3A090,
/// GAIN AI Act, China review). Historical rule sets (the 2025 AI Diffusion Rule) are never a
/// default: they are left out here; name them with [`shipped_rule_set`] or find them in
/// [`all_shipped_rule_sets`].
pub fn shipped_rule_sets() -> Result<Vec<RuleSet>, RuleSetError> {
    Ok(all_shipped_rule_sets()?
        .into_iter()
        .filter(|r| r.status != RuleSetStatus::Historical)
        .collect())
}

/// Every shipped rule set, historical ones included, parsed, in a fixed order (3A090, GAIN AI
/// Act, China review, AI Diffusion Rule 2025).
pub fn all_shipped_rule_sets() -> Result<Vec<RuleSet>, RuleSetError> {
    SHIPPED
        .iter()
        .map(|(file, text)| {
            let mut rule_set = RuleSet::from_toml_str(text).map_err(|e| RuleSetError::Shipped {
                file,
                source: Box::new(e),
            })?;
            rule_set.origin = RuleSetOrigin::Shipped;
            Ok(rule_set)
        })
        .collect()
}

/// The shipped rule set with this id (historical ones included).
pub fn shipped_rule_set(id: &str) -> Result<RuleSet, RuleSetError> {
    let all = all_shipped_rule_sets()?;
    let known = all
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| RuleSetError::UnknownId {
            id: id.to_owned(),
            known,
        })
}

/// Serializes an optional value through `Display` (dates as `2023-11-17`), or `null`.
fn display_opt<T: fmt::Display, S: serde::Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

/// Reads a list of ISO 3166-1 alpha-2 codes (`["DE", "FR"]`), keeping repeats (validation
/// names them) and sorting.
fn country_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<CountryCode>, D::Error> {
    let texts: Vec<String> = Vec::deserialize(deserializer)?;
    let mut codes = texts
        .iter()
        .map(|t| t.parse::<CountryCode>().map_err(de::Error::custom))
        .collect::<Result<Vec<_>, _>>()?;
    codes.sort_unstable();
    Ok(codes)
}

/// Reads a whole number of percent (`10`), or of days (`max_age_days`): a TOML or JSON integer
/// from 0 to `u32::MAX` (the range is checked later, naming the key). A float (`10.5`), a
/// negative number or a string is refused with the fix.
pub(crate) fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct PercentVisitor;

    impl Visitor<'_> for PercentVisitor {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number of percent, such as 10")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| {
                E::custom(format!(
                    "percentage {v} is far too large; write a whole number of percent such as 10"
                ))
            })
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "percentage {v} is negative; write a whole number of percent such as 10"
                ))),
            }
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
            Err(E::custom(format!(
                "percentage {v} is not a whole number; write a whole number of percent such as \
                 10 (tolerances are exact integers)"
            )))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            Err(E::custom(format!(
                "percentage {:?} is a string; write it as a bare integer such as 10",
                v.chars().take(32).collect::<String>()
            )))
        }
    }

    deserializer.deserialize_any(PercentVisitor)
}

/// A whole number of percent as written (see [`percent`]); `Option<Percent>` reads an
/// optional one (JSON `null` included).
pub(crate) struct Percent(pub(crate) u32);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        percent(deserializer).map(Self)
    }
}

/// Reads a required exact figure (see [`exact_opt`]).
fn exact<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    exact_opt(deserializer)?.ok_or_else(|| de::Error::custom("missing figure"))
}

/// Reads an optional threshold written as a decimal string (`"5.92"`) or a TOML integer
/// (`4800`), exactly. A TOML float (`5.92`) is refused: the TOML reader has already rounded it
/// to binary, so `5.9200000000000000001` would silently become `5.92`.
fn exact_opt<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct ExactVisitor<T>(PhantomData<T>);

    impl<T> ExactVisitor<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        fn parse<E: de::Error>(text: &str) -> Result<T, E> {
            text.parse()
                .map_err(|e| E::custom(format!("invalid threshold: {e}")))
        }
    }

    impl<T> Visitor<'_> for ExactVisitor<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative decimal as a string (\"5.92\") or an integer (4800)")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            Self::parse(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            Self::parse(&v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            Self::parse(&v.to_string())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            Err(E::custom(format!(
                "threshold {v} is a TOML float, which is not exact; write it as a string: \"{v}\""
            )))
        }
    }

    deserializer
        .deserialize_any(ExactVisitor(PhantomData))
        .map(Some)
}

#[cfg(test)]
mod tests;
