//! Whether an item needs a licence ([`licence_need`]): a device's outcome under a rule set,
//! held against the rule set's `[licensing]` rules for one destination country and one party
//! (the licensee's headquarters and ultimate parent). Pure; the facts come from what the
//! verifier verified (a signed licence), never from the node.

use serde::Serialize;

use crate::licence::{CountryCode, Licensee};
use crate::ruleset::{INDETERMINATE, LicenceNeed, LicensingRule, RuleSet, RuleSetStatus};

/// The party a determination turns on: where it and its ultimate parent are headquartered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Party {
    /// The country of the party's headquarters.
    pub headquarters: CountryCode,
    /// The country of its ultimate parent's headquarters (its own when it has none).
    pub ultimate_parent: CountryCode,
}

impl From<&Licensee> for Party {
    fn from(l: &Licensee) -> Self {
        Self {
            headquarters: l.headquarters_country,
            ultimate_parent: l.ultimate_parent_country,
        }
    }
}

/// Whether an item needs a licence, and what decided it. Field names are stable JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeedDetermination {
    /// The rule set.
    pub rule_set: String,
    /// Its legal status.
    pub rule_set_status: RuleSetStatus,
    /// The need.
    pub need: LicenceNeed,
    /// The licensing rule that decided (`742.6(a)(6)(iii)(A)`); `None` when none did.
    pub rule: Option<String>,
    /// Whether the party's headquarters or ultimate parent decided it (the rule bit on the
    /// party, not the place).
    pub by_party: bool,
    /// Why, with the facts: country, group and rule.
    pub sentence: String,
}

/// Whether an item of `outcome` (`None`: an unknown device) needs a licence under `rule_set`
/// for `destination` and `party`.
///
/// An outcome the rule set does not control needs none; an unknown or indeterminate one is
/// `undetermined`; a controlled one takes the first `[licensing]` rule that lists its outcome
/// and whose conditions hold, else `licensing.otherwise`; without `[licensing]` it is
/// `undetermined` (the rule set classifies, it does not say where a licence is needed).
pub fn licence_need(
    rule_set: &RuleSet,
    outcome: Option<&str>,
    destination: CountryCode,
    party: &Party,
) -> NeedDetermination {
    let decide = |need, rule: Option<&LicensingRule>, by_party, sentence| NeedDetermination {
        rule_set: rule_set.id.clone(),
        rule_set_status: rule_set.status,
        need,
        rule: rule.map(|r| r.id.clone()),
        by_party,
        sentence,
    };
    let outcome = match outcome {
        None => {
            return decide(
                LicenceNeed::Undetermined,
                None,
                false,
                "the device is not in the spec table, so its outcome and whether it needs a \
                 licence are unknown"
                    .to_owned(),
            );
        }
        Some(o) if o == INDETERMINATE => {
            return decide(
                LicenceNeed::Undetermined,
                None,
                false,
                format!(
                    "the device's outcome under {} is indeterminate, so whether it needs a \
                     licence is too",
                    rule_set.id
                ),
            );
        }
        Some(o) => o,
    };
    if !rule_set.classes.iter().any(|c| c.outcome == outcome) {
        return decide(
            LicenceNeed::NotRequired,
            None,
            false,
            format!(
                "{outcome} is outside {}: it needs no licence under it",
                rule_set.id
            ),
        );
    }
    let Some(licensing) = &rule_set.licensing else {
        return decide(
            LicenceNeed::Undetermined,
            None,
            false,
            format!(
                "{} classifies {outcome} but does not state where a licence is needed",
                rule_set.id
            ),
        );
    };
    let group = |c: CountryCode| rule_set.country_tier(c);
    for rule in licensing
        .rules
        .iter()
        .filter(|r| r.outcomes.iter().any(|o| o == outcome))
    {
        let destination_holds = rule
            .when
            .destination
            .as_ref()
            .is_none_or(|l| group(destination).is_some_and(|g| l.iter().any(|n| n == g)));
        // The headquarters prong first, then the ultimate parent's.
        let party_fact = match &rule.when.party {
            None => Some(None),
            Some(names) => [
                ("headquartered", party.headquarters),
                (
                    "whose ultimate parent is headquartered",
                    party.ultimate_parent,
                ),
            ]
            .into_iter()
            .find_map(|(words, country)| {
                licensing
                    .party_group_of(names, country)
                    .map(|g| Some((words, country, g.name.as_str())))
            }),
        };
        let (true, Some(party_fact)) = (destination_holds, party_fact) else {
            continue;
        };
        let mut facts = Vec::new();
        if let Some((words, country, party_group)) = party_fact {
            facts.push(format!(
                "a party {words} in {country} (party group {party_group})"
            ));
        }
        if rule.when.destination.is_some() {
            facts.push(format!(
                "destination {destination} (group {})",
                group(destination).unwrap_or("none")
            ));
        }
        return decide(
            rule.need,
            Some(rule),
            party_fact.is_some(),
            format!(
                "{} for {outcome} by {} ({}): {}",
                rule.need.label(),
                rule.id,
                facts.join(", "),
                rule.text
            ),
        );
    }
    decide(
        licensing.otherwise,
        None,
        false,
        format!(
            "{} for {outcome} at destination {destination} (group {}): {}",
            licensing.otherwise.label(),
            group(destination).unwrap_or("none"),
            licensing.otherwise_text
        ),
    )
}
