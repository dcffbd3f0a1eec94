//! Stage 7b, licence need: whether each licence's counted devices need a licence under the
//! rule set, for the licence's destination and party ([`licence_need`]), and the findings
//! that say so once per licence and determination.
//!
//! The destination and the party (the licensee's headquarters and ultimate parent) come from
//! the signed licence alone; a node's claims never enter. A determination depends only on
//! (outcome, licence), so each licence's counted devices are first counted per outcome
//! ([`OutcomeCounts`], filled as the nodes are evaluated) and [`licence_need`] runs once per
//! distinct outcome: a fleet of any size pays for a handful of determinations per licence.

use std::cmp::Ordering;
use std::sync::Arc;

use tppguard_proto::classify::{NeedDetermination, Party, licence_need};
use tppguard_proto::licence::{CountryCode, Licence};
use tppguard_proto::ruleset::{LicenceNeed, RuleSet};

use super::findings::{Findings, Ref};
use super::reason::PartyProng;
use super::{GpuVerdict, LicenceNeedSummary, LicenceUsage, NeedCount, Reason, VerifiedLicence};

/// One licence's counted devices per outcome (`None`: an unknown device), in the order first
/// seen. A fleet has a handful of outcomes, so a list searched in place beats a map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct OutcomeCounts(Vec<(Option<Arc<str>>, u64)>);

impl OutcomeCounts {
    /// Adds a node's counted GPUs (a GPU not controlled, or a duplicate counted elsewhere, is
    /// not counted and adds nothing).
    pub(super) fn add_gpus(&mut self, gpus: &[GpuVerdict]) {
        for g in gpus.iter().filter(|g| g.counted) {
            self.add(g.outcome.as_ref(), 1);
        }
    }

    fn add(&mut self, outcome: Option<&Arc<str>>, devices: u64) {
        // The verifier shares one `Arc` per outcome, so the pointer test settles most lookups.
        let same = |o: &Option<Arc<str>>| match (o, outcome) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        };
        match self.0.iter_mut().find(|(o, _)| same(o)) {
            Some((_, n)) => *n = n.saturating_add(devices),
            None => self.0.push((outcome.cloned(), devices)),
        }
    }
}

/// Where a need sorts: `required` first, then `undetermined`, then `not_required` (the order
/// a reader acts on).
const fn rank(need: LicenceNeed) -> u8 {
    match need {
        LicenceNeed::Required => 0,
        LicenceNeed::Undetermined => 1,
        LicenceNeed::NotRequired => 2,
    }
}

fn order(a: &NeedCount, b: &NeedCount) -> Ordering {
    let key = |c: &NeedCount| {
        (
            rank(c.determination.need),
            c.determination.rule.clone(),
            c.outcome.clone(),
        )
    };
    key(a).cmp(&key(b))
}

/// The licence-need summary of one licence's counted devices: one determination per
/// distinct outcome, ordered `required`, `undetermined`, `not_required`, then by rule and
/// outcome, with the three counters.
pub(super) fn summarise(
    rule_set: &RuleSet,
    licence: &Licence,
    counts: &OutcomeCounts,
) -> LicenceNeedSummary {
    let party = Party::from(licence.licensee());
    let destination = licence.destination_country();
    let mut summary = LicenceNeedSummary::default();
    for (outcome, devices) in &counts.0 {
        let determination = licence_need(rule_set, outcome.as_deref(), destination, &party);
        let counter = match determination.need {
            LicenceNeed::Required => &mut summary.required,
            LicenceNeed::NotRequired => &mut summary.not_required,
            LicenceNeed::Undetermined => &mut summary.undetermined,
        };
        *counter = counter.saturating_add(*devices);
        summary.determinations.push(NeedCount {
            determination,
            outcome: outcome.as_deref().map(str::to_owned),
            devices: *devices,
        });
    }
    summary.determinations.sort_by(order);
    summary
}

/// The party group (of the licensing rule `rule`'s `party` condition) that lists `country`,
/// if any: the same test [`licence_need`] makes.
fn party_group(rule_set: &RuleSet, rule: &str, country: CountryCode) -> Option<String> {
    let licensing = rule_set.licensing.as_ref()?;
    let names = licensing
        .rules
        .iter()
        .find(|r| r.id == rule)
        .and_then(|r| r.when.party.as_ref())?;
    licensing
        .party_group_of(names, country)
        .map(|g| g.name.clone())
}

/// Which prong of a party rule bit: the headquarters when a party group of the rule lists it
/// (the headquarters is tested first, as [`licence_need`] does), else the ultimate parent.
fn prong(rule_set: &RuleSet, rule: &str, party: &Party) -> PartyProng {
    if party_group(rule_set, rule, party.headquarters).is_some() {
        PartyProng::Headquarters
    } else {
        PartyProng::UltimateParent
    }
}

/// The finding one determination of a licence leads to, if any: `licence_required_by_party`
/// when the party decided a `required`, `no_licence_required` for `not_required`,
/// `licence_need_undetermined` for `undetermined`. A `required` decided by the destination
/// alone is what the licence is for: it says nothing more.
fn finding_of(rule_set: &RuleSet, licence: &Licence, count: &NeedCount) -> Option<Reason> {
    let d: &NeedDetermination = &count.determination;
    let party = Party::from(licence.licensee());
    let group = |c| rule_set.country_tier(c).map(str::to_owned);
    match d.need {
        LicenceNeed::Required => {
            let rule = d.rule.clone().filter(|_| d.by_party)?;
            Some(Reason::LicenceRequiredByParty {
                headquarters: party.headquarters,
                headquarters_group: party_group(rule_set, &rule, party.headquarters),
                ultimate_parent: party.ultimate_parent,
                ultimate_parent_group: party_group(rule_set, &rule, party.ultimate_parent),
                prong: prong(rule_set, &rule, &party),
                rule,
                rule_set: d.rule_set.clone(),
                outcome: count.outcome.clone(),
                devices: count.devices,
            })
        }
        LicenceNeed::NotRequired => Some(Reason::NoLicenceRequired {
            destination: licence.destination_country(),
            destination_group: group(licence.destination_country()),
            rule: d.rule.clone(),
            rule_set: d.rule_set.clone(),
            outcome: count.outcome.clone(),
            devices: count.devices,
        }),
        LicenceNeed::Undetermined => Some(Reason::LicenceNeedUndetermined {
            rule_set: d.rule_set.clone(),
            outcome: count.outcome.clone(),
            devices: count.devices,
            why: d.sentence.clone(),
        }),
    }
}

/// Fills each licence's `licence_need` from its counted devices' outcomes, with its
/// findings. `lics`, `outcomes` and `usages` are in the same (licence) order.
pub(super) fn fill(
    lics: &[&VerifiedLicence],
    outcomes: &[OutcomeCounts],
    rule_set: &RuleSet,
    usages: &mut [LicenceUsage],
    findings: &mut Findings,
) {
    for (i, ((v, counts), usage)) in lics.iter().zip(outcomes).zip(usages).enumerate() {
        let l = &v.licence;
        let summary = summarise(rule_set, l, counts);
        report(rule_set, l, Some((i, l.id())), &summary, findings);
        usage.licence_need = summary;
    }
}

/// Records the findings of a licence's summary: one per determination, never one per device.
pub(super) fn report(
    rule_set: &RuleSet,
    licence: &Licence,
    lref: Ref<'_>,
    summary: &LicenceNeedSummary,
    findings: &mut Findings,
) {
    for count in &summary.determinations {
        if let Some(reason) = finding_of(rule_set, licence, count) {
            findings.push(reason, lref, None, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tppguard_proto::ruleset::shipped_rule_set;

    fn counts(outcomes: &[(Option<&str>, u64)]) -> OutcomeCounts {
        let mut c = OutcomeCounts::default();
        for (o, n) in outcomes {
            c.add(o.map(Arc::from).as_ref(), *n);
        }
        c
    }

    fn licence(hq: &str, parent: &str, destination: &str) -> Licence {
        Licence::from_toml_str(&super::super::tests::party_licence_toml(
            hq,
            parent,
            destination,
        ))
        .unwrap()
    }

    #[test]
    fn outcomes_are_counted_once_each_shared_or_not() {
        let shared: Arc<str> = Arc::from("3A090.a");
        let mut c = OutcomeCounts::default();
        c.add(Some(&shared), 2);
        c.add(Some(&shared), 3);
        c.add(Some(&Arc::from("3A090.a")), 1);
        c.add(None, 4);
        c.add(Some(&Arc::from("3A090.b")), 1);
        assert_eq!(
            c.0,
            [
                (Some(Arc::from("3A090.a")), 6),
                (None, 4),
                (Some(Arc::from("3A090.b")), 1)
            ]
        );
    }

    #[test]
    fn the_summary_orders_required_undetermined_not_required() {
        let rules = shipped_rule_set("us-eccn-3a090").unwrap();
        // A CN parent: both controlled outcomes required by the party; the unknown device
        // undetermined.
        let s = summarise(
            &rules,
            &licence("DE", "CN", "DE"),
            &counts(&[(None, 1), (Some("3A090.b"), 2), (Some("3A090.a"), 5)]),
        );
        assert_eq!((s.required, s.undetermined, s.not_required), (7, 1, 0));
        let order: Vec<(LicenceNeed, Option<&str>)> = s
            .determinations
            .iter()
            .map(|c| (c.determination.need, c.outcome.as_deref()))
            .collect();
        assert_eq!(
            order,
            [
                (LicenceNeed::Required, Some("3A090.a")),
                (LicenceNeed::Required, Some("3A090.b")),
                (LicenceNeed::Undetermined, None),
            ]
        );
        // A DE parent: not required, after the undetermined unknown device.
        let s = summarise(
            &rules,
            &licence("DE", "DE", "DE"),
            &counts(&[(Some("3A090.a"), 5), (None, 1)]),
        );
        assert_eq!((s.required, s.undetermined, s.not_required), (0, 1, 5));
        assert_eq!(
            s.determinations[0].determination.need,
            LicenceNeed::Undetermined
        );
        assert_eq!(
            s.determinations[1].determination.need,
            LicenceNeed::NotRequired
        );
        // No counted device: nothing to determine.
        let s = summarise(
            &rules,
            &licence("DE", "CN", "DE"),
            &OutcomeCounts::default(),
        );
        assert_eq!(s, LicenceNeedSummary::default());
    }

    #[test]
    fn the_prong_is_the_headquarters_when_it_bites_else_the_parent() {
        let rules = shipped_rule_set("us-eccn-3a090").unwrap();
        let party = |hq: &str, parent: &str| Party {
            headquarters: hq.parse().unwrap(),
            ultimate_parent: parent.parse().unwrap(),
        };
        let rule = "742.6(a)(6)(iii)(A)";
        assert_eq!(
            prong(&rules, rule, &party("MO", "US")),
            PartyProng::Headquarters
        );
        assert_eq!(
            prong(&rules, rule, &party("CN", "CN")),
            PartyProng::Headquarters
        );
        assert_eq!(
            prong(&rules, rule, &party("DE", "CN")),
            PartyProng::UltimateParent
        );
    }

    #[test]
    fn one_finding_per_determination_and_none_for_a_destination_requirement() {
        let rules = shipped_rule_set("us-eccn-3a090").unwrap();
        let findings_for = |l: &Licence, c: &OutcomeCounts| {
            let s = summarise(&rules, l, c);
            let mut f = Findings::new(0, 1);
            report(&rules, l, Some((0, "L")), &s, &mut f);
            f.list.iter().map(|f| f.code).collect::<Vec<_>>()
        };
        let many = counts(&[(Some("3A090.a"), 1000), (None, 2)]);
        assert_eq!(
            findings_for(&licence("DE", "CN", "DE"), &many),
            ["licence_required_by_party", "licence_need_undetermined"]
        );
        assert_eq!(
            findings_for(&licence("DE", "DE", "DE"), &many),
            ["licence_need_undetermined", "no_licence_required"]
        );
        // A CN destination with a CN party: the party rule comes first and bites.
        assert_eq!(
            findings_for(&licence("CN", "CN", "CN"), &counts(&[(Some("3A090.a"), 8)])),
            ["licence_required_by_party"]
        );
        // A DE party shipping to CN: required by the destination, which is what the licence
        // is for: no finding.
        assert!(
            findings_for(&licence("DE", "DE", "CN"), &counts(&[(Some("3A090.a"), 8)])).is_empty()
        );
    }
}
