//! Scenario changes: parsed once from text (`FR=tier_2`, `rule-set=ID`,
//! `licence:ID:max_devices=64`), applied to copies of the rule sets and licences.

use std::fmt;
use std::str::FromStr;

use tppguard_proto::licence::{CapChange, CountryCode};
use tppguard_proto::ruleset::RuleSet;

use crate::policy::VerifiedLicence;

/// Most changes in one scenario.
pub const MAX_CHANGES: usize = 32;
/// Longest change text accepted, in characters.
pub const MAX_CHANGE_CHARS: usize = 256;

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

/// Why a scenario could not be built. Every variant has a stable code and a sentence that
/// names the change, the reason and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Placeholder until the parser lands.
    #[error("scenario change {text:?} is not understood")]
    BadChange {
        /// The text, escaped when printed.
        text: String,
    },
}

/// The changes of one scenario, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scenario {
    /// The changes.
    pub changes: Vec<Change>,
}

impl FromStr for Change {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Err(ScenarioError::BadChange {
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl Scenario {
    /// Parses the changes (at most [`MAX_CHANGES`]).
    pub fn parse(texts: &[String]) -> Result<Self, ScenarioError> {
        let changes = texts
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { changes })
    }

    /// One scenario rule set per baseline rule set (same order): the `rule-set=` change's
    /// rule set (resolved by `load`) or the baseline one, with every country move applied.
    pub fn rule_sets(
        &self,
        baseline: &[RuleSet],
        _load: &dyn Fn(&str) -> Result<RuleSet, ScenarioError>,
    ) -> Result<Vec<RuleSet>, ScenarioError> {
        Ok(baseline.to_vec())
    }

    /// The licences with every cap change applied.
    pub fn licences(
        &self,
        baseline: &[VerifiedLicence],
    ) -> Result<Vec<VerifiedLicence>, ScenarioError> {
        Ok(baseline.to_vec())
    }
}
