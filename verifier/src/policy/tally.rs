//! Stage 7, usage: each licence's tally against its caps and validity, each destination
//! country's sum across its licences against the rule set's allocation.

use std::collections::BTreeMap;

use tppguard_proto::classify::Party;
use tppguard_proto::licence::{CountryCode, Validity};
use tppguard_proto::ruleset::RuleSet;
use tppguard_proto::spec;
use tppguard_proto::units::Tpp;

use super::findings::Findings;
use super::node::Tally;
use super::{CountryUsage, DeviceCap, LicenceUsage, Reason, TppCap, Verdict, VerifiedLicence};

/// Each licence's usage, with its validity and cap findings.
pub(super) fn licences(
    lics: &[&VerifiedLicence],
    tallies: &[Tally],
    rule_set: &RuleSet,
    at: i64,
    findings: &mut Findings,
) -> Vec<LicenceUsage> {
    let mut usages = Vec::with_capacity(lics.len());
    for (i, (v, t)) in lics.iter().zip(tallies).enumerate() {
        let l = &v.licence;
        let lref = Some((i, l.id()));
        let validity = l.is_valid_at(at);
        match validity {
            Validity::Valid { .. } => {}
            Validity::NotYetValid {
                valid_from,
                starts_in_s,
                ..
            } => {
                let reason = Reason::LicenceNotYetValid {
                    valid_from,
                    starts_in_s,
                    devices: t.devices,
                };
                findings.push(reason, lref, None, None);
            }
            Validity::Expired {
                valid_until,
                expired_for_s,
                ..
            } => {
                let reason = Reason::LicenceExpired {
                    valid_until,
                    expired_for_s,
                    devices: t.devices,
                };
                findings.push(reason, lref, None, None);
            }
        }
        if l.rule_set() != rule_set.id {
            let reason = Reason::LicenceRuleSetMismatch {
                licence_rule_set: l.rule_set().to_owned(),
                rule_set: rule_set.id.clone(),
            };
            findings.push(reason, lref, None, None);
        }
        let devices = DeviceCap::new(t.devices, u64::from(l.max_devices()));
        if devices.over_by > 0 {
            let reason = Reason::DeviceCountAboveCap {
                used: devices.used,
                cap: devices.cap,
                over_by: devices.over_by,
            };
            findings.push(reason, lref, None, None);
        }
        let tpp = TppCap::new(t.tpp, l.max_aggregate_tpp());
        if tpp.is_over() {
            let reason = Reason::AggregateTppAboveCap {
                used: tpp.used,
                cap: tpp.cap,
                over_by: tpp.over_by,
            };
            findings.push(reason, lref, None, None);
        }
        usages.push(LicenceUsage {
            licence: l.id().to_owned(),
            signer: v.signer_subject.clone(),
            destination_country: l.destination_country(),
            licence_rule_set: l.rule_set().to_owned(),
            validity,
            nodes: t.nodes,
            stale_nodes: t.stale_nodes,
            devices,
            devices_tpp_unknown: t.devices_tpp_unknown,
            devices_tpp_measured: t.devices_tpp_measured,
            devices_not_controlled: t.devices_not_controlled,
            tpp,
            party: Party::from(l.licensee()),
            licence_need: super::LicenceNeedSummary::default(),
            shipments: None,
            lease: l.lease_terms(),
            severity: super::Severity::Info,
            verdict: Verdict::Compliant,
        });
    }
    usages
}

/// Each destination country's usage across its licences, checked against the rule set's
/// allocation (`country_allocation_exceeded`).
pub(super) fn countries(
    usages: &[LicenceUsage],
    tallies: &[Tally],
    rule_set: &RuleSet,
    findings: &mut Findings,
) -> Vec<CountryUsage> {
    let mut countries: BTreeMap<CountryCode, CountryUsage> = BTreeMap::new();
    for (u, t) in usages.iter().zip(tallies) {
        let c = countries
            .entry(u.destination_country)
            .or_insert_with(|| CountryUsage {
                country: u.destination_country,
                licences: Vec::new(),
                devices: 0,
                devices_tpp_unknown: 0,
                devices_tpp_measured: 0,
                tpp: Tpp::default(),
                h100_equivalents: spec::h100_equivalents(Tpp::default()),
                allocation: None,
                tier: rule_set
                    .country_tier(u.destination_country)
                    .map(str::to_owned),
                allocation_period: None,
                verdict: Verdict::Compliant,
            });
        c.licences.push(u.licence.clone());
        c.devices = c.devices.saturating_add(t.devices);
        c.devices_tpp_unknown = c.devices_tpp_unknown.saturating_add(t.devices_tpp_unknown);
        c.devices_tpp_measured = c
            .devices_tpp_measured
            .saturating_add(t.devices_tpp_measured);
        c.tpp = c.tpp.saturating_add(t.tpp);
        c.h100_equivalents = spec::h100_equivalents(c.tpp);
    }
    for c in countries.values_mut() {
        let Some(a) = rule_set.country_allocation(c.country) else {
            continue;
        };
        let cap = TppCap::new(c.tpp, a.tpp);
        if cap.is_over() {
            let reason = Reason::CountryAllocationExceeded {
                country: c.country,
                tier: c.tier.clone(),
                used: cap.used,
                cap: cap.cap,
                over_by: cap.over_by,
                period: a.period.clone(),
            };
            findings.push(reason, None, None, None);
        }
        c.allocation = Some(cap);
        c.allocation_period = Some(a.period.clone());
    }
    countries.into_values().collect()
}
