//! Scenario changes: parsed once from text (`FR=tier_2`, `rule-set=ID`,
//! `licence:ID:max_devices=64`), strictly and within bounds, and applied to copies of the rule
//! sets and licences. This is the one parser of scenario text: the CLI's `--scenario`, the
//! API's `change` parameters and the fuzz target all go through [`Scenario::parse`] (or
//! [`Change`]'s `FromStr`).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use tppguard_proto::licence::{CapChange, CountryCode};
use tppguard_proto::ruleset::{RuleSet, RuleSetError};
use tppguard_proto::text::{Escaped, escape};
use tppguard_proto::units::Tpp;

use crate::policy::VerifiedLicence;

/// Most changes in one scenario.
pub const MAX_CHANGES: usize = 32;
/// Longest change text accepted, in characters.
pub const MAX_CHANGE_CHARS: usize = 256;

/// The accepted forms, for every message that must show them.
const FORMS: &str = "`CC=GROUP` (`FR=tier_2`), `rule-set=ID` (`rule-set=us-gain-ai-act-s3150`) \
                     or `licence:ID:KEY=VALUE` with KEY `max_devices`, `max_aggregate_tpp` or \
                     `max_tpp_per_device` (`licence:EXAMPLE-DE-2026-0142:max_devices=64`)";

/// The prefix of a rule-set replacement.
const RULE_SET_PREFIX: &str = "rule-set=";
/// The prefix of a licence cap change.
const LICENCE_PREFIX: &str = "licence:";
/// The longest licence id (as the licence format has it).
const MAX_LICENCE_ID_CHARS: usize = 64;
/// The longest country-group name accepted.
const MAX_GROUP_CHARS: usize = 64;

/// One change of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `FR=tier_2`: move a country into a country group of every scenario rule set.
    CountryGroup {
        /// The country.
        country: CountryCode,
        /// The group.
        group: String,
    },
    /// `rule-set=ID` (or a file, from the CLI only): evaluate under this rule set instead.
    RuleSet(String),
    /// `licence:ID:KEY=VALUE`: change one cap of one licence.
    LicenceCap {
        /// The licence id.
        licence: String,
        /// The cap and its new value.
        cap: CapChange,
    },
}

/// Why a scenario could not be built. Every variant has a stable code ([`Self::code`]) and a
/// sentence that names the change, the reason and the fix; text from outside is escaped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The text is none of the accepted forms.
    #[error("scenario change \"{}\" is not understood: {problem}; write {FORMS}", Escaped(.text))]
    Malformed {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// More changes than [`MAX_CHANGES`].
    #[error(
        "a scenario has {count} changes, more than the {max} accepted; split it into several \
         scenarios of at most {max} changes"
    )]
    TooManyChanges {
        /// How many were given.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// A change longer than [`MAX_CHANGE_CHARS`].
    #[error(
        "scenario change \"{}...\" is {chars} characters long, more than the {max} accepted; \
         write {FORMS}",
        Escaped(.start)
    )]
    TooLong {
        /// Its first characters.
        start: String,
        /// Its length in characters.
        chars: usize,
        /// The most accepted.
        max: usize,
    },
    /// A cap value is not a valid figure for its key.
    #[error(
        "scenario change \"{}\": {reason}; write {expected} (`licence:ID:{key}=VALUE`)",
        Escaped(.text)
    )]
    BadCap {
        /// The change.
        text: String,
        /// The cap's key.
        key: &'static str,
        /// Why the value was refused.
        reason: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A licence change names no licence of the fleet.
    #[error(
        "scenario change \"{change}\" names licence \"{}\", which is not among the licences \
         evaluated (licences: {known}); name one of them",
        Escaped(.licence)
    )]
    UnknownLicence {
        /// The change, canonical.
        change: String,
        /// The licence id asked for.
        licence: String,
        /// The licence ids evaluated, comma-separated (`none` when there are none).
        known: String,
    },
    /// A country move names a group a scenario rule set does not have.
    #[error("scenario change \"{change}\": {source}")]
    UnknownGroup {
        /// The change, canonical.
        change: String,
        /// The rule set's refusal, naming its groups and the fix.
        #[source]
        source: RuleSetError,
    },
    /// Two changes of the same thing.
    #[error(
        "scenario changes \"{}\" and \"{}\" both change {}; keep one of them",
        Escaped(.first),
        Escaped(.second),
        Escaped(.what)
    )]
    Conflict {
        /// The first change, canonical.
        first: String,
        /// The second change, canonical.
        second: String,
        /// What both change (`the group of FR`).
        what: String,
    },
    /// The `rule-set=` change's rule set could not be loaded.
    #[error("scenario change \"rule-set={}\": {reason}", Escaped(.rule_set))]
    RuleSetUnavailable {
        /// The rule set id or file as given.
        rule_set: String,
        /// Why it could not be loaded, with the fix.
        reason: String,
    },
}

impl ScenarioError {
    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "scenario_change_malformed",
            Self::TooManyChanges { .. } => "scenario_too_many_changes",
            Self::TooLong { .. } => "scenario_change_too_long",
            Self::BadCap { .. } => "scenario_bad_cap",
            Self::UnknownLicence { .. } => "scenario_unknown_licence",
            Self::UnknownGroup { .. } => "scenario_unknown_group",
            Self::Conflict { .. } => "scenario_conflict",
            Self::RuleSetUnavailable { .. } => "scenario_rule_set_unavailable",
        }
    }

    /// Every code, for tests and documentation.
    pub const CODES: &'static [&'static str] = &[
        "scenario_change_malformed",
        "scenario_too_many_changes",
        "scenario_change_too_long",
        "scenario_bad_cap",
        "scenario_unknown_licence",
        "scenario_unknown_group",
        "scenario_conflict",
        "scenario_rule_set_unavailable",
    ];
}

/// The changes of one scenario, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scenario {
    /// The changes.
    pub changes: Vec<Change>,
}

fn malformed(text: &str, problem: impl Into<String>) -> ScenarioError {
    ScenarioError::Malformed {
        text: text.to_owned(),
        problem: problem.into(),
    }
}

impl FromStr for Change {
    type Err = ScenarioError;

    /// Parses one change exactly: no surrounding spaces, no control characters, at most
    /// [`MAX_CHANGE_CHARS`] characters.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let chars = text.chars().count();
        if chars > MAX_CHANGE_CHARS {
            return Err(ScenarioError::TooLong {
                start: text.chars().take(32).collect(),
                chars,
                max: MAX_CHANGE_CHARS,
            });
        }
        if text.is_empty() {
            return Err(malformed(text, "it is empty"));
        }
        // What a terminal would obey (controls, bidirectional overrides) or what escaping
        // would change (a backslash) never belongs in a change.
        if matches!(escape(text), Cow::Owned(_)) {
            return Err(malformed(
                text,
                "it holds a control, bidirectional-override or backslash character",
            ));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(malformed(text, "it holds a space"));
        }
        if let Some(rule_set) = text.strip_prefix(RULE_SET_PREFIX) {
            if rule_set.is_empty() {
                return Err(malformed(text, "the rule set is empty"));
            }
            return Ok(Self::RuleSet(rule_set.to_owned()));
        }
        if let Some(rest) = text.strip_prefix(LICENCE_PREFIX) {
            return parse_licence_cap(text, rest);
        }
        parse_country_move(text)
    }
}

/// `CC=GROUP`.
fn parse_country_move(text: &str) -> Result<Change, ScenarioError> {
    let Some((country, group)) = text.split_once('=') else {
        return Err(malformed(text, "it has no `=`"));
    };
    let country = country.parse::<CountryCode>().map_err(|reason| {
        malformed(
            text,
            format!("the country {reason}; name it by its ISO 3166-1 alpha-2 code"),
        )
    })?;
    let group_ok = !group.is_empty()
        && group.len() <= MAX_GROUP_CHARS
        && group
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !group_ok {
        return Err(malformed(
            text,
            format!(
                "the country group must be 1 to {MAX_GROUP_CHARS} lower-case letters, digits \
                 and `_` (`tier_2`)"
            ),
        ));
    }
    Ok(Change::CountryGroup {
        country,
        group: group.to_owned(),
    })
}

/// `licence:ID:KEY=VALUE` (`rest` is after `licence:`). The id may hold `:` (licence ids do),
/// so the key is after the last `:` before the `=`.
fn parse_licence_cap(text: &str, rest: &str) -> Result<Change, ScenarioError> {
    let Some((target, value)) = rest.split_once('=') else {
        return Err(malformed(text, "a licence change has no `=`"));
    };
    let Some((licence, key)) = target.rsplit_once(':') else {
        return Err(malformed(text, "a licence change names no cap (`:KEY`)"));
    };
    let id_ok = !licence.is_empty()
        && licence.len() <= MAX_LICENCE_ID_CHARS
        && licence
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if !id_ok {
        return Err(malformed(
            text,
            format!(
                "the licence id must be 1 to {MAX_LICENCE_ID_CHARS} ASCII letters, digits and \
                 `-_.:/`"
            ),
        ));
    }
    let cap = match key {
        "max_devices" => CapChange::MaxDevices(parse_count(text, value)?),
        "max_aggregate_tpp" => {
            CapChange::MaxAggregateTpp(parse_tpp(text, "max_aggregate_tpp", value)?)
        }
        "max_tpp_per_device" => {
            CapChange::MaxTppPerDevice(parse_tpp(text, "max_tpp_per_device", value)?)
        }
        _ => {
            return Err(malformed(
                text,
                format!("\"{}\" is not a licence cap", Escaped(key)),
            ));
        }
    };
    Ok(Change::LicenceCap {
        licence: licence.to_owned(),
        cap,
    })
}

const COUNT_EXPECTED: &str = "a whole number of devices from 1 to 4294967295";
const TPP_EXPECTED: &str = "a plain decimal TPP above zero (`32500000`, `15831.2`)";

fn parse_count(text: &str, value: &str) -> Result<u32, ScenarioError> {
    let bad = |reason: &str| ScenarioError::BadCap {
        text: text.to_owned(),
        key: "max_devices",
        reason: reason.to_owned(),
        expected: COUNT_EXPECTED,
    };
    // `u32::from_str` accepts a leading `+`; the canonical form has none.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the value is not a whole number"));
    }
    let n: u32 = value
        .parse()
        .map_err(|_| bad("the value is larger than 4294967295"))?;
    if n == 0 {
        return Err(bad("a cap of zero is not a licence"));
    }
    if value.len() > 1 && value.starts_with('0') {
        return Err(bad("the value has a leading zero"));
    }
    Ok(n)
}

fn parse_tpp(text: &str, key: &'static str, value: &str) -> Result<Tpp, ScenarioError> {
    let bad = |reason: String| ScenarioError::BadCap {
        text: text.to_owned(),
        key,
        reason,
        expected: TPP_EXPECTED,
    };
    let tpp: Tpp = value.parse().map_err(|e| bad(format!("{e}")))?;
    if tpp == Tpp::default() {
        return Err(bad("a cap of zero is not a licence".to_owned()));
    }
    Ok(tpp)
}

impl fmt::Display for Change {
    /// The canonical text, which parses back to the same change.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CountryGroup { country, group } => write!(f, "{country}={group}"),
            Self::RuleSet(rule_set) => write!(f, "{RULE_SET_PREFIX}{rule_set}"),
            Self::LicenceCap { licence, cap } => {
                write!(
                    f,
                    "{LICENCE_PREFIX}{licence}:{}={}",
                    cap.key(),
                    cap_value(cap)
                )
            }
        }
    }
}

/// A cap's new value as written (`64`, `500000.5`).
fn cap_value(cap: &CapChange) -> String {
    match cap {
        CapChange::MaxDevices(n) => n.to_string(),
        CapChange::MaxAggregateTpp(t) | CapChange::MaxTppPerDevice(t) => t.to_string(),
    }
}

impl Change {
    /// What the change changes, for conflicts: two changes with one key conflict.
    fn target(&self) -> (String, String) {
        match self {
            Self::CountryGroup { country, .. } => (
                format!("country:{country}"),
                format!("the group of {country}"),
            ),
            Self::RuleSet(_) => ("rule-set".to_owned(), "the rule set evaluated".to_owned()),
            Self::LicenceCap { licence, cap } => (
                format!("licence:{licence}:{}", cap.key()),
                format!("`{}` of licence {licence}", cap.key()),
            ),
        }
    }
}

impl Scenario {
    /// Parses the changes (at most [`MAX_CHANGES`]), refusing two changes of one thing.
    pub fn parse(texts: &[String]) -> Result<Self, ScenarioError> {
        if texts.len() > MAX_CHANGES {
            return Err(ScenarioError::TooManyChanges {
                count: texts.len(),
                max: MAX_CHANGES,
            });
        }
        let changes = texts
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<Change>, _>>()?;
        let mut seen: Vec<(String, &Change)> = Vec::with_capacity(changes.len());
        for change in &changes {
            let (key, what) = change.target();
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(ScenarioError::Conflict {
                    first: first.to_string(),
                    second: change.to_string(),
                    what,
                });
            }
            seen.push((key, change));
        }
        Ok(Self { changes })
    }

    /// The `rule-set=` change's rule set id or file, if any.
    pub fn replacement(&self) -> Option<&str> {
        self.changes.iter().find_map(|c| match c {
            Change::RuleSet(r) => Some(r.as_str()),
            _ => None,
        })
    }

    /// The canonical texts of the changes, in order.
    pub fn texts(&self) -> Vec<String> {
        self.changes.iter().map(Change::to_string).collect()
    }

    /// One scenario rule set per baseline rule set (same order): the `rule-set=` change's
    /// rule set (resolved by `load`, once) or the baseline one, with every country move
    /// applied ([`RuleSet::with_country_in_group`], which marks the copy modified). A licence
    /// cap change marks every scenario rule set modified too (`licence LIC-1: max_devices =
    /// 64`): the determination it gives is hypothetical, and its posture says so. A
    /// replacement alone is a rule set as loaded, not marked modified. A move to a group a
    /// scenario rule set lacks is an error, never skipped.
    pub fn rule_sets(
        &self,
        baseline: &[RuleSet],
        load: &dyn Fn(&str) -> Result<RuleSet, ScenarioError>,
    ) -> Result<Vec<RuleSet>, ScenarioError> {
        let replacement = self.replacement().map(load).transpose()?;
        baseline
            .iter()
            .map(|base| {
                let mut rule_set = replacement.as_ref().unwrap_or(base).clone();
                for change in &self.changes {
                    match change {
                        Change::CountryGroup { country, group } => {
                            rule_set = rule_set.with_country_in_group(*country, group).map_err(
                                |source| ScenarioError::UnknownGroup {
                                    change: change.to_string(),
                                    source,
                                },
                            )?;
                        }
                        Change::LicenceCap { licence, cap } => rule_set.mark_modified(format!(
                            "licence {licence} {} set to {}",
                            cap.key(),
                            cap_value(cap)
                        )),
                        Change::RuleSet(_) => {}
                    }
                }
                Ok(rule_set)
            })
            .collect()
    }

    /// The licences with every cap change applied (copies; a change naming no licence of
    /// `baseline` is an error that lists the licences).
    pub fn licences(
        &self,
        baseline: &[VerifiedLicence],
    ) -> Result<Vec<VerifiedLicence>, ScenarioError> {
        let ids: BTreeSet<&str> = baseline.iter().map(|l| l.licence().id()).collect();
        for change in &self.changes {
            if let Change::LicenceCap { licence, .. } = change
                && !ids.contains(licence.as_str())
            {
                return Err(ScenarioError::UnknownLicence {
                    change: change.to_string(),
                    licence: licence.clone(),
                    known: if ids.is_empty() {
                        "none".to_owned()
                    } else {
                        ids.iter().copied().collect::<Vec<_>>().join(", ")
                    },
                });
            }
        }
        Ok(baseline
            .iter()
            .map(|l| {
                let changed = self
                    .changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::LicenceCap { licence, cap } if licence == l.licence().id() => {
                            Some(*cap)
                        }
                        _ => None,
                    })
                    .fold(l.licence().clone(), |lic, cap| lic.with_cap(cap));
                VerifiedLicence::new(changed, l.signer_subject().to_owned())
            })
            .collect())
    }
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
