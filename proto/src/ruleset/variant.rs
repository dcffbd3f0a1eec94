//! Where a rule set came from, and modified copies of it: a user's file that declares itself a
//! variant of a shipped rule set (`variant_of`), and the in-memory changes of a what-if
//! scenario ([`RuleSet::with_country_in_group`]). A modified rule set always says so
//! ([`RuleSetPosture`]): it is never shown with the shipped one's status alone.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{RuleSet, RuleSetError, RuleSetStatus, all_shipped_rule_sets};
use crate::licence::CountryCode;

/// Where a rule set came from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RuleSetOrigin {
    /// Shipped with tppguard (`rules/`), unmodified.
    Shipped,
    /// Read from a user's file.
    #[default]
    File,
    /// Built in memory by a what-if scenario.
    Scenario,
}

impl RuleSetOrigin {
    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Shipped => "shipped",
            Self::File => "file",
            Self::Scenario => "scenario",
        }
    }
}

/// The enforcement posture of one determination: which rule set, with its legal status, where
/// it came from and how it was modified. Every verdict and report carries one per rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSetPosture {
    /// The rule set id.
    pub rule_set: String,
    /// Its version.
    pub version: String,
    /// Its legal status as the file states it.
    pub status: RuleSetStatus,
    /// Where it came from.
    pub origin: RuleSetOrigin,
    /// The shipped rule set it modifies, when it is a variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_of: Option<String>,
    /// The changes a scenario made, in words (`FR moved from tier_1 to tier_2`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modifications: Vec<String>,
}

impl RuleSetPosture {
    /// Whether it is anything but a shipped rule set as shipped.
    pub fn is_modified(&self) -> bool {
        self.variant_of.is_some() || !self.modifications.is_empty()
    }
}

impl fmt::Display for RuleSetPosture {
    /// `us-ai-diffusion-2025 v1 [historical (not in force); MODIFIED from us-ai-diffusion-2025:
    /// FR moved from tier_1 to tier_2]`; a user's file says `from a file`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} [{}",
            self.rule_set,
            self.version,
            self.status.label()
        )?;
        if self.origin == RuleSetOrigin::File {
            f.write_str("; from a file")?;
        }
        if self.is_modified() {
            f.write_str("; MODIFIED")?;
            if let Some(base) = &self.variant_of {
                write!(f, " from {base}")?;
            }
            if !self.modifications.is_empty() {
                write!(f, ": {}", self.modifications.join("; "))?;
            }
        }
        f.write_str("]")
    }
}

impl RuleSet {
    /// Its enforcement posture.
    pub fn posture(&self) -> RuleSetPosture {
        RuleSetPosture {
            rule_set: self.id.clone(),
            version: self.version.clone(),
            status: self.status,
            origin: self.origin,
            variant_of: self.variant_of.clone(),
            modifications: self.modifications.clone(),
        }
    }

    /// Parses a user's rule-set file ([`Self::from_toml_str`]), then holds it against the
    /// shipped rule sets: a file identical to a shipped one is that one (origin `shipped`);
    /// any other file reusing a shipped id is refused, `variant_of` or not, so a modified rule
    /// set never carries a shipped rule set's name; `variant_of` must name a shipped rule set,
    /// and a variant keeps its base's legal status (a variant of a bill is not in force).
    pub fn from_file_toml_str(text: &str) -> Result<Self, RuleSetError> {
        let mut rule_set = Self::from_toml_str(text)?;
        let shipped = all_shipped_rule_sets()?;
        let known = || {
            shipped
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(same) = shipped.iter().find(|r| r.id == rule_set.id) {
            let as_shipped = Self {
                origin: RuleSetOrigin::Shipped,
                ..rule_set.clone()
            };
            return if *same == as_shipped {
                Ok(as_shipped)
            } else {
                Err(RuleSetError::ShippedIdReused {
                    id: rule_set.id.clone(),
                })
            };
        }
        if let Some(base_id) = &rule_set.variant_of {
            let Some(base) = shipped.iter().find(|r| &r.id == base_id) else {
                return Err(RuleSetError::UnknownVariantOf {
                    variant_of: base_id.clone(),
                    known: known(),
                });
            };
            if base.status != rule_set.status {
                return Err(RuleSetError::VariantStatus {
                    variant_of: base_id.clone(),
                    base: base.status,
                    status: rule_set.status,
                });
            }
        }
        rule_set.origin = RuleSetOrigin::File;
        Ok(rule_set)
    }

    /// A copy with `country` moved into country group `group` (out of any group listing it),
    /// marked as a scenario variant with the change in words. Moving a country into the
    /// `rest` group lists it there explicitly, so the result does not depend on the rest.
    pub fn with_country_in_group(
        &self,
        country: CountryCode,
        group: &str,
    ) -> Result<Self, RuleSetError> {
        if !self.country_groups.iter().any(|g| g.name == group) {
            return Err(RuleSetError::UnknownCountryGroup {
                rule_set: self.id.clone(),
                group: group.to_owned(),
                known: self
                    .country_groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let from = self
            .country_tier(country)
            .map_or_else(|| "no group".to_owned(), str::to_owned);
        let mut copy = self.clone();
        for g in &mut copy.country_groups {
            g.countries.retain(|c| *c != country);
            if g.name == group {
                g.countries.push(country);
                g.countries.sort_unstable();
            }
        }
        copy.mark_modified(format!("{country} moved from {from} to {group}"));
        Ok(copy)
    }

    /// Marks a copy as modified by a scenario, with the change in words. A shipped rule set
    /// becomes a scenario variant of itself; a user's file stays a file (`variant_of` only
    /// ever names a shipped rule set).
    pub fn mark_modified(&mut self, change: String) {
        if self.origin == RuleSetOrigin::Shipped {
            if self.variant_of.is_none() {
                self.variant_of = Some(self.id.clone());
            }
            self.origin = RuleSetOrigin::Scenario;
        }
        self.modifications.push(change);
    }
}
