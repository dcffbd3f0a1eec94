//! Stage 3, assignment: which licence each node counts under, from the site the operator CA
//! certified in its certificate.
//!
//! The site is the certified one; a claimed site (`tppguard.site`) that disagrees is a
//! violation (`site_claim_mismatch`) and changes nothing. A node without a certified site is
//! assigned by its claim as before, and is `site_not_certified` (unproven: where it stands
//! rests on its own word). A node whose site moved since its previous attestation is
//! `node_site_changed`. A site listed by several licences belongs to the stricter (smaller
//! `max_aggregate_tpp`, then smaller licence id), with `site_in_several_licences`; a node
//! without any site belongs to the one licence when exactly one is evaluated. With shipments
//! (issue 15), a node whose controlled GPUs are all on shipments of one licence listing its
//! site counts under that licence instead: another vendor's licence at the same site no
//! longer captures it.

use std::collections::{BTreeMap, HashMap};

use super::findings::{Findings, NodeRef, Ref};
use super::latest::Current;
use super::{Reason, VerifiedLicence};

/// Where a node counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Assignment<'a> {
    /// The licence (index into the sorted licences), if any.
    pub(super) licence: Option<usize>,
    /// The site it is at: certified, else claimed.
    pub(super) site: Option<&'a str>,
}

/// The licences' sites: every licence listing each site, and the one a node there counts
/// under.
pub(super) struct Sites<'a> {
    listed_by: BTreeMap<&'a str, Vec<usize>>,
    counted_under: HashMap<&'a str, usize>,
}

impl<'a> Sites<'a> {
    pub(super) fn new(lics: &[&'a VerifiedLicence]) -> Self {
        let mut listed_by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, v) in lics.iter().enumerate() {
            for site in v.licence.sites() {
                listed_by.entry(site.id.as_str()).or_default().push(i);
            }
        }
        let counted_under = listed_by
            .iter()
            .filter_map(|(site, is)| {
                let stricter = is
                    .iter()
                    .copied()
                    .min_by_key(|&i| (lics.get(i).map(|v| v.licence.max_aggregate_tpp()), i))?;
                Some((*site, stricter))
            })
            .collect();
        Self {
            listed_by,
            counted_under,
        }
    }

    /// Whether licence `i` lists `site`.
    fn lists(&self, site: &str, i: usize) -> bool {
        self.listed_by.get(site).is_some_and(|is| is.contains(&i))
    }

    /// `site_in_several_licences` for every site listed twice.
    pub(super) fn report_overlaps(&self, lics: &[&VerifiedLicence], findings: &mut Findings) {
        let licence_ref = |i: usize| lics.get(i).map(|v| (i, v.licence.id()));
        for (site, is) in self.listed_by.iter().filter(|(_, is)| is.len() > 1) {
            let counted = self.counted_under.get(site).copied();
            let reason = Reason::SiteInSeveralLicences {
                site: (*site).to_owned(),
                licences: is
                    .iter()
                    .filter_map(|&i| lics.get(i).map(|v| v.licence.id().to_owned()))
                    .collect(),
                counted_against: counted
                    .and_then(licence_ref)
                    .map_or_else(String::new, |(_, id)| id.to_owned()),
            };
            findings.push(reason, counted.and_then(licence_ref), None, None);
        }
    }
}

/// Assigns every node and records the site findings. `preferred` (per node, may be empty) is
/// the licence the node's shipments name ([`super::shipments::Shipped::preferred`]): the node
/// counts under it when it lists the node's site, else under the site's stricter licence.
pub(super) fn assign<'a>(
    nodes: &[Current<'a>],
    lics: &[&VerifiedLicence],
    sites: &Sites<'_>,
    preferred: &[Option<usize>],
    findings: &mut Findings,
) -> Vec<Assignment<'a>> {
    let single = (lics.len() == 1).then_some(0);
    let mut out = Vec::with_capacity(nodes.len());
    for (n, current) in nodes.iter().enumerate() {
        let a = current.attestation;
        let certified = a.certified_site.as_ref().map(|s| s.as_str());
        let claimed = a.claims.site();
        let site = certified.or(claimed);
        let licence = match site {
            Some(s) => preferred
                .get(n)
                .copied()
                .flatten()
                .filter(|&i| sites.lists(s, i))
                .or_else(|| sites.counted_under.get(s).copied()),
            None => single,
        };
        let lref: Ref<'_> = licence.and_then(|i| lics.get(i).map(|v| (i, v.licence.id())));
        let nref: NodeRef = Some((n, a.node_id));
        match (certified, claimed) {
            (Some(c), Some(cl)) if c != cl => findings.push(
                Reason::SiteClaimMismatch {
                    claimed: cl.to_owned(),
                    certified: c.to_owned(),
                },
                lref,
                nref,
                None,
            ),
            (None, _) => findings.push(
                Reason::SiteNotCertified {
                    claimed: claimed.map(str::to_owned),
                },
                lref,
                nref,
                None,
            ),
            _ => {}
        }
        if let (Some(earlier), Some(now)) = (current.earlier_site, site) {
            findings.push(
                Reason::NodeSiteChanged {
                    from: earlier.to_owned(),
                    to: now.to_owned(),
                },
                lref,
                nref,
                None,
            );
        }
        out.push(Assignment { licence, site });
    }
    out
}
