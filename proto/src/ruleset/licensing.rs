//! Where a licence is needed: the optional `[licensing]` table of a rule set. Its rules turn
//! a device's outcome, the destination country and the party (the licensee's headquarters and
//! ultimate parent) into a [`LicenceNeed`], citing the rule that decided. The determination
//! itself is [`crate::classify::licence_need`].

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{RuleSet, RuleSetError};

/// Whether a licence is needed for an item, for one destination and party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceNeed {
    /// A licence is needed.
    Required,
    /// No licence is needed.
    NotRequired,
    /// The rule set cannot say (a destination group it does not encode, an unknown device):
    /// treat it as needed until checked.
    Undetermined,
}

impl LicenceNeed {
    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::NotRequired => "not_required",
            Self::Undetermined => "undetermined",
        }
    }

    /// Human words: `licence required`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Required => "licence required",
            Self::NotRequired => "no licence required",
            Self::Undetermined => "licence need undetermined",
        }
    }
}

impl fmt::Display for LicenceNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.code())
    }
}

/// Conditions on the destination and the party, AND-ed; at least one is given. `destination`
/// names country groups of the rule set (`[[country_groups]]`, which a what-if scenario may
/// move a country between); `party` names the licensing table's own party groups
/// (`[[licensing.party_groups]]`), which no scenario moves: moving a destination to another
/// tier does not change who is headquartered in D:5.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyConditions {
    /// The destination country is in one of these groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Vec<String>>,
    /// The party's headquarters **or** its ultimate parent's headquarters is in one of these
    /// party groups (15 CFR 742.6(a)(6)(iii)(A) turns on either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<Vec<String>>,
}

/// One licensing rule: when its conditions hold for a device whose outcome it lists, the need
/// is `need`. Rules are checked in file order; the first that holds decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensingRule {
    /// Citation: `742.6(a)(6)(iii)(A)`; unique among the rule set's clause and rule ids.
    pub id: String,
    /// The rule's words, shortened.
    pub text: String,
    /// What it decides.
    pub need: LicenceNeed,
    /// The device outcomes it applies to (`3A090.a`); each must be a class outcome.
    pub outcomes: Vec<String>,
    /// Its conditions.
    pub when: PartyConditions,
}

/// A named list of countries that party conditions name (`d5_macau`). Unlike country groups,
/// a country may be in several, and no scenario moves one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyGroup {
    /// Stable name: lower-case letters, digits and `_`, unique among party groups.
    pub name: String,
    /// What the group is, with its citation.
    pub text: String,
    /// Its countries (ISO 3166-1 alpha-2), sorted.
    #[serde(deserialize_with = "super::country_list")]
    pub countries: Vec<crate::licence::CountryCode>,
}

impl PartyGroup {
    /// Whether the group lists `country`.
    pub fn holds(&self, country: crate::licence::CountryCode) -> bool {
        self.countries.binary_search(&country).is_ok()
    }
}

/// Where the rule set requires a licence for the items it controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Licensing {
    /// The need when no rule holds for a controlled item.
    pub otherwise: LicenceNeed,
    /// Why, in words: shown when `otherwise` decides.
    pub otherwise_text: String,
    /// The party groups that `party` conditions name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub party_groups: Vec<PartyGroup>,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<LicensingRule>,
}

impl Licensing {
    /// The first of the party groups named in `names` that lists `country`.
    pub fn party_group_of(
        &self,
        names: &[String],
        country: crate::licence::CountryCode,
    ) -> Option<&PartyGroup> {
        self.party_groups
            .iter()
            .filter(|g| names.contains(&g.name))
            .find(|g| g.holds(country))
    }
}

impl RuleSet {
    /// Checks `[licensing]`: ids unique (also against clause ids), outcomes that are class
    /// outcomes, groups that exist, at least one condition per rule.
    pub(super) fn validate_licensing(&self) -> Result<(), RuleSetError> {
        let Some(licensing) = &self.licensing else {
            return Ok(());
        };
        let bad = |id: &str, problem: String| RuleSetError::BadLicensingRule {
            id: id.to_owned(),
            problem,
        };
        if licensing.otherwise_text.trim().is_empty() {
            return Err(bad(
                "otherwise",
                "`licensing.otherwise_text` is empty; say why".to_owned(),
            ));
        }
        let mut ids: BTreeSet<&str> = self
            .classes
            .iter()
            .flat_map(|c| c.clauses.iter().map(|k| k.id.as_str()))
            .chain(self.exclusions.iter().map(|e| e.id.as_str()))
            .collect();
        let groups: BTreeSet<&str> = self
            .country_groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        let mut party_groups: BTreeSet<&str> = BTreeSet::new();
        for g in &licensing.party_groups {
            let name_ok = !g.name.is_empty()
                && g.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok || !party_groups.insert(g.name.as_str()) {
                return Err(bad(
                    &g.name,
                    "a party group's name is empty, used twice or not lower-case letters, \
                     digits and `_`"
                        .to_owned(),
                ));
            }
            if g.countries.is_empty() {
                return Err(bad(&g.name, "a party group lists no country".to_owned()));
            }
            if g.countries.windows(2).any(|w| w.first() == w.get(1)) {
                return Err(bad(
                    &g.name,
                    "a party group lists a country twice".to_owned(),
                ));
            }
        }
        let list = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
        for rule in &licensing.rules {
            if rule.id.trim().is_empty() || !ids.insert(rule.id.as_str()) {
                return Err(bad(&rule.id, "its id is empty or used twice".to_owned()));
            }
            if rule.outcomes.is_empty() {
                return Err(bad(
                    &rule.id,
                    "`outcomes` is empty; list the class outcomes it applies to".to_owned(),
                ));
            }
            if let Some(o) = rule
                .outcomes
                .iter()
                .find(|o| !self.classes.iter().any(|c| &c.outcome == *o))
            {
                return Err(bad(
                    &rule.id,
                    format!("outcome {o:?} is not the outcome of any class"),
                ));
            }
            let when = &rule.when;
            if when.destination.is_none() && when.party.is_none() {
                return Err(bad(
                    &rule.id,
                    "`when` has neither `destination` nor `party`".to_owned(),
                ));
            }
            let named = [
                (
                    &when.destination,
                    &groups,
                    "country group",
                    "[[country_groups]]",
                ),
                (
                    &when.party,
                    &party_groups,
                    "party group",
                    "[[licensing.party_groups]]",
                ),
            ];
            for (names, defined, kind, table) in named {
                let Some(names) = names else { continue };
                if names.is_empty() {
                    return Err(bad(&rule.id, "a group list in `when` is empty".to_owned()));
                }
                if let Some(g) = names.iter().find(|g| !defined.contains(g.as_str())) {
                    return Err(bad(
                        &rule.id,
                        format!(
                            "{kind} {g:?} is not defined in {table}; defined: {}",
                            list(defined)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
