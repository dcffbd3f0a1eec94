//! Shipments in the policy (issue 15): the vendor-signed records of which GPUs were delivered
//! where under which licence, as the verifier verified them, and what the fleet's attestations
//! say about them.
//!
//! A shipped device is found in the fleet by its identity: the hardware identity where the
//! shipment records one and the GPU's own evidence verified one (then nothing else is
//! compared: a UUID copied onto another chip is not the shipped device), else the UUID where
//! both have one, else the serial; each trimmed and ASCII case folded, as
//! [`duplicates`](super::duplicates) compares UUIDs. Where a node attests one, the node's
//! *certified* site decides (a claimed site never does; a node whose certificate certifies no
//! site is not proven at a licensed site):
//!
//! - `diverted_device` (violation): attested by a node not proven at a site of the shipment's
//!   licence in its destination country. The finding is about the shipment's licence (its
//!   vendor sees it); about the node and the GPU only when the GPU's verified hardware
//!   identity is the recorded one.
//!
//! A shipment is the vendor's signed word: it can make the vendor's licence's verdict worse,
//! never another party's node unless the hardware identity proves it ([`Match`]). A match by
//! UUID or serial names the node in the figures, never in the finding's `node`/`gpu`.
//! - `shipped_device_duplicated` (violation): attested in several places (beside
//!   `duplicate_device`, which is about where it counts), about the shipment's licence.
//! - `unaccounted_device` (warning): in no node's current attestation more than the licence's
//!   `unaccounted_after` after the delivery date; one finding per device.
//! - `unshipped_device` (violation): counted under a licence whose `[shipments] required` is
//!   true, and on none of that licence's shipments.
//! - `shipment_licence_unknown` (warning): the shipment's licence is not among those evaluated,
//!   so its devices cannot be followed (its licence id is still on the finding, for its
//!   vendor); `shipment_site_not_licensed` (warning): its delivery site (id and signed
//!   country) is not a site of its licence (a vendor's error or an amended licence: where the
//!   devices stand decides).
//!
//! A simulated inventory may claim any identity: its GPUs never satisfy anything (they are
//! not seen, not shipped, never move a node to a shipment's licence), but a shipped identity
//! it reports away from the licence's sites is still `diverted_device`. Shipments only add
//! findings: they never make a verdict better. They also choose between licences listing one
//! site ([`Shipped::preferred`]): a node whose controlled GPUs are all on shipments of one
//! licence listing its site counts under that licence, not the stricter one.

use std::collections::HashMap;

use serde::Serialize;
use tppguard_proto::claims::GpuSubmod;
use tppguard_proto::licence::{CountryCode, Licence};

use super::assign::Assignment;
use super::duplicates::Place;
use super::findings::{Findings, Ref};
use super::gpu::Deriver;
use super::latest::Current;
use super::{NodeVerdict, Reason, VerifiedAttestation, VerifiedLicence};

/// A GPU identity as a shipment lists it (at least one of UUID, serial and hardware identity):
/// the shipment format's own device, defined once in proto.
pub use tppguard_proto::shipment::Device as ShippedDevice;

/// A shipment whose signature chained to a pinned `[vendor] roots` root: only
/// `crate::shipment` builds one from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedShipment {
    /// The shipment id, as the vendor numbers it.
    pub id: String,
    /// The licence it ships under.
    pub licence: String,
    /// The vendor: the subject of the certificate that signed it.
    pub vendor: String,
    /// The delivery site id (a site of the licence).
    pub site: String,
    /// The delivery site's country, as the vendor signed it.
    pub country: CountryCode,
    /// When it was delivered, Unix seconds.
    pub delivered_at: i64,
    /// The GPUs shipped.
    pub devices: Vec<ShippedDevice>,
    /// SHA-256 (hex) of the signed token.
    pub token_sha256: String,
}

/// One licence's shipments, as its usage shows them ([`super::LicenceUsage::shipments`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShipmentSummary {
    /// Shipments under the licence.
    pub count: u64,
    /// Devices they list.
    pub devices_shipped: u64,
    /// Of those, devices a node (not simulated) attests at a site of the licence.
    pub devices_seen: u64,
    /// Devices attested by a node not proven at a site of the licence (`diverted_device`).
    pub devices_diverted: u64,
    /// Devices in no node's current attestation past the licence's `unaccounted_after`
    /// (`unaccounted_device`).
    pub devices_unaccounted: u64,
    /// Devices counted under the licence on none of its shipments, when it requires them
    /// (`unshipped_device`).
    pub devices_unshipped: u64,
}

/// Which identity an index key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Hardware,
    Uuid,
    Serial,
}

/// A GPU's identities, each trimmed and ASCII case folded; a blank one is none.
#[derive(Debug, Default, PartialEq, Eq)]
struct Identities {
    hardware: Option<String>,
    uuid: Option<String>,
    serial: Option<String>,
}

fn normalised(text: Option<&str>) -> Option<String> {
    let trimmed = text?.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_ascii_lowercase())
}

impl Identities {
    fn shipped(d: &ShippedDevice) -> Self {
        Self {
            hardware: normalised(d.hardware_id.as_deref()),
            uuid: normalised(d.uuid.as_deref()),
            serial: normalised(d.serial.as_deref()),
        }
    }

    /// An attested GPU's: its hardware identity only where its own evidence verified.
    fn attested(a: &VerifiedAttestation, submod: &str, gpu: &GpuSubmod) -> Self {
        Self {
            hardware: normalised(a.verified_hardware_id(submod)),
            uuid: normalised(gpu.uuid.as_deref()),
            serial: normalised(gpu.serial.as_deref()),
        }
    }

    fn keys(&self) -> [(Kind, Option<&String>); 3] {
        [
            (Kind::Hardware, self.hardware.as_ref()),
            (Kind::Uuid, self.uuid.as_ref()),
            (Kind::Serial, self.serial.as_ref()),
        ]
    }

    /// Whether a shipped device (`self`) is the GPU `seen`, and how: by hardware identity
    /// where both have one (nothing else then counts), else by UUID where both have one, else
    /// by serial.
    fn matched(&self, seen: &Self) -> Option<Match> {
        if let (Some(a), Some(b)) = (&self.hardware, &seen.hardware) {
            return (a == b).then_some(Match::Hardware);
        }
        let by_name = match (&self.uuid, &seen.uuid) {
            (Some(a), Some(b)) => a == b,
            _ => matches!((&self.serial, &seen.serial), (Some(a), Some(b)) if a == b),
        };
        let how = if self.hardware.is_some() {
            Match::Unproven
        } else {
            Match::Named
        };
        by_name.then_some(how)
    }
}

/// How a GPU was found to be a shipped device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    /// Its verified hardware identity is the one the shipment records: proven. Only such a
    /// match bears on the node (a shipment is the vendor's signed word, not the operator's).
    Hardware,
    /// By UUID or serial, the shipment recording no hardware identity for the device: it
    /// counts as the device (seen, shipped, preferred), and bears on the licence only.
    Named,
    /// By UUID or serial, though the shipment records a hardware identity the GPU did not
    /// prove: a clone as likely as the device. It never counts as the device; it may still
    /// be diverted or duplicated, about the licence only.
    Unproven,
}

impl Match {
    /// Whether it counts as the shipped device (seen, shipped, preferred).
    fn counts(self) -> bool {
        self != Self::Unproven
    }
}

/// A shipped device: (shipment, device) indices in [`Shipped`]'s order.
type DeviceRef = (usize, usize);

/// A GPU of a current attestation that is a shipped device, and how it was matched.
type Sighting = (Place, DeviceRef, Match);

/// A shipment, the licence it ships under (index into the evaluated licences; `None`: not
/// evaluated) and its devices' identities.
struct Entry<'s> {
    shipment: &'s VerifiedShipment,
    licence: Option<usize>,
    identities: Vec<Identities>,
}

/// What became of one shipped device in the fleet.
#[derive(Debug, Default, Clone, Copy)]
struct DeviceState {
    /// A node (not simulated) attests it.
    seen: bool,
    /// ... at a site of the shipment's licence.
    seen_licensed: bool,
    /// A node not proven at a site of the licence attests it.
    diverted: bool,
}

/// The shipments of one evaluation, and where the fleet's current attestations report their
/// devices.
pub(super) struct Shipped<'s> {
    entries: Vec<Entry<'s>>,
    /// Every GPU of a current attestation that is a shipped device, sorted by place.
    sightings: Vec<Sighting>,
}

/// What the report reads besides the shipments: the evaluation's nodes, where they count,
/// their verdicts (in node order) and the instant.
pub(super) struct Fleet<'f, 'a> {
    pub(super) nodes: &'f [Current<'a>],
    pub(super) assignment: &'f [Assignment<'a>],
    pub(super) lics: &'f [&'f VerifiedLicence],
    pub(super) verdicts: &'f [NodeVerdict],
    pub(super) at: i64,
}

impl<'s> Shipped<'s> {
    /// Indexes the shipments (in a fixed order, each token once) and finds their devices in
    /// the nodes' current attestations.
    pub(super) fn new(
        shipments: &'s [VerifiedShipment],
        lics: &[&VerifiedLicence],
        nodes: &[Current<'_>],
    ) -> Self {
        if shipments.is_empty() {
            return Self {
                entries: Vec::new(),
                sightings: Vec::new(),
            };
        }
        let mut licence_index: HashMap<&str, usize> = HashMap::with_capacity(lics.len());
        for (i, v) in lics.iter().enumerate() {
            licence_index.entry(v.licence.id()).or_insert(i);
        }
        let mut sorted: Vec<&VerifiedShipment> = shipments.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.licence, &a.id, &a.token_sha256).cmp(&(&b.licence, &b.id, &b.token_sha256))
        });
        sorted.dedup_by(|a, b| a.token_sha256 == b.token_sha256);
        let entries: Vec<Entry<'s>> = sorted
            .into_iter()
            .map(|shipment| Entry {
                shipment,
                licence: licence_index.get(shipment.licence.as_str()).copied(),
                identities: shipment.devices.iter().map(Identities::shipped).collect(),
            })
            .collect();
        let sightings = sightings(&entries, nodes);
        Self { entries, sightings }
    }

    /// The shipped devices GPU `place` counts as (a [`Match::Unproven`] one is none).
    fn at_place(&self, place: Place) -> impl Iterator<Item = DeviceRef> + '_ {
        let start = self.sightings.partition_point(|(p, _, _)| *p < place);
        self.sightings
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(move |(p, _, _)| *p == place)
            .filter(|(_, _, how)| how.counts())
            .map(|(_, d, _)| *d)
    }

    /// The licence a shipment ships under, when evaluated.
    fn licence_of(&self, device: DeviceRef) -> Option<usize> {
        self.entries.get(device.0).and_then(|e| e.licence)
    }

    /// Per node (empty without shipments): the one licence whose shipments hold every GPU of
    /// the node the rule set controls (at least one), if exactly one licence's do. A simulated
    /// node has none. Assignment prefers it among the licences listing the node's site.
    pub(super) fn preferred<'a>(
        &self,
        nodes: &[Current<'a>],
        deriver: &mut Deriver<'a>,
    ) -> Vec<Option<usize>> {
        if self.sightings.is_empty() {
            return Vec::new();
        }
        nodes
            .iter()
            .enumerate()
            .map(|(n, c)| self.preferred_for(n, c, deriver))
            .collect()
    }

    fn preferred_for<'a>(
        &self,
        n: usize,
        current: &Current<'a>,
        deriver: &mut Deriver<'a>,
    ) -> Option<usize> {
        let claims = current.attestation.claims();
        if claims.simulated {
            return None;
        }
        let mut common: Option<Vec<usize>> = None;
        for (g, gpu) in claims.submods.values().enumerate() {
            let derived = deriver.index(gpu);
            if !deriver.get(derived).is_some_and(|d| d.controlled) {
                continue;
            }
            let mut here: Vec<usize> = self
                .at_place((n, g))
                .filter_map(|d| self.licence_of(d))
                .collect();
            here.sort_unstable();
            here.dedup();
            let kept = match common {
                None => here,
                Some(before) => before.into_iter().filter(|l| here.contains(l)).collect(),
            };
            if kept.is_empty() {
                return None;
            }
            common = Some(kept);
        }
        match common.as_deref() {
            Some([only]) => Some(*only),
            _ => None,
        }
    }

    /// Records the shipments' findings; returns each licence's summary, `None` for a licence
    /// with no shipment that does not require them.
    pub(super) fn report(
        &self,
        fleet: &Fleet<'_, '_>,
        findings: &mut Findings,
    ) -> Vec<Option<ShipmentSummary>> {
        let mut summaries: Vec<Option<ShipmentSummary>> = fleet
            .lics
            .iter()
            .map(|v| {
                v.licence
                    .shipment_terms()
                    .required
                    .then(ShipmentSummary::default)
            })
            .collect();
        self.check_shipments(fleet.lics, findings, &mut summaries);
        let states = self.follow(fleet, findings);
        self.duplicated(fleet, findings);
        self.unaccounted(fleet, &states, findings, &mut summaries);
        self.unshipped(fleet, findings, &mut summaries);
        for (s, entry) in self.entries.iter().enumerate() {
            let summary = entry
                .licence
                .and_then(|i| summaries.get_mut(i))
                .and_then(Option::as_mut);
            if let (Some(summary), Some(states)) = (summary, states.get(s)) {
                for st in states {
                    summary.devices_seen = summary
                        .devices_seen
                        .saturating_add(u64::from(st.seen_licensed));
                    summary.devices_diverted = summary
                        .devices_diverted
                        .saturating_add(u64::from(st.diverted));
                }
            }
        }
        summaries
    }

    /// Each shipment against its licence: `shipment_licence_unknown`,
    /// `shipment_site_not_licensed`; counts shipments and devices.
    fn check_shipments(
        &self,
        lics: &[&VerifiedLicence],
        findings: &mut Findings,
        summaries: &mut [Option<ShipmentSummary>],
    ) {
        for entry in &self.entries {
            let s = entry.shipment;
            let Some((i, v)) = entry.licence.and_then(|i| lics.get(i).map(|v| (i, v))) else {
                let reason = Reason::ShipmentLicenceUnknown {
                    shipment: s.id.clone(),
                    vendor: s.vendor.clone(),
                    licence: s.licence.clone(),
                    devices: len_u64(s.devices.len()),
                };
                push_about(findings, reason, entry, lics, None, None);
                continue;
            };
            if let Some(summary) = summaries.get_mut(i) {
                let summary = summary.get_or_insert_with(ShipmentSummary::default);
                summary.count = summary.count.saturating_add(1);
                summary.devices_shipped = summary
                    .devices_shipped
                    .saturating_add(len_u64(s.devices.len()));
            }
            // The signed country must be the licence's for that site, too: {fra-1, CN} under a
            // licence whose fra-1 is in DE is not a delivery to that site.
            let same_country = v
                .licence
                .site(&s.site)
                .is_some_and(|x| x.country == s.country);
            if !licensed_at(&v.licence, &s.site) || !same_country {
                let reason = Reason::ShipmentSiteNotLicensed {
                    shipment: s.id.clone(),
                    vendor: s.vendor.clone(),
                    site: s.site.clone(),
                    country: s.country,
                    licensed_sites: site_ids(&v.licence),
                };
                push_about(findings, reason, entry, lics, None, None);
            }
        }
    }

    /// Every sighting of a device of an evaluated licence's shipment: `diverted_device` where
    /// the node is not proven at a site of the licence; what became of each device.
    fn follow(&self, fleet: &Fleet<'_, '_>, findings: &mut Findings) -> Vec<Vec<DeviceState>> {
        let mut states: Vec<Vec<DeviceState>> = self
            .entries
            .iter()
            .map(|e| vec![DeviceState::default(); e.identities.len()])
            .collect();
        for &((n, g), (s, d), how) in &self.sightings {
            let (Some(entry), Some(current)) = (self.entries.get(s), fleet.nodes.get(n)) else {
                continue;
            };
            let Some(v) = entry.licence.and_then(|i| fleet.lics.get(i)) else {
                continue;
            };
            let a = current.attestation;
            let site = a.certified_site().map(|s| s.as_str());
            let licensed = site.is_some_and(|s| licensed_at(&v.licence, s));
            let real = !a.claims().simulated && how.counts();
            if let Some(state) = states.get_mut(s).and_then(|st| st.get_mut(d)) {
                state.seen |= real;
                state.seen_licensed |= real && licensed;
                state.diverted |= !licensed;
            }
            if licensed {
                continue;
            }
            let Some(device) = entry.shipment.devices.get(d) else {
                continue;
            };
            let submod = a.claims().submods.keys().nth(g).map(String::as_str);
            let proven = how == Match::Hardware;
            let reason = Reason::DivertedDevice {
                shipment: entry.shipment.id.clone(),
                vendor: entry.shipment.vendor.clone(),
                device: device.clone(),
                node: a.node_id().to_string(),
                gpu: submod.unwrap_or_default().to_owned(),
                hardware_proven: proven,
                site: site.map(str::to_owned),
                site_country: site.and_then(|s| site_country(fleet.lics, s)),
                licensed_sites: site_ids(&v.licence),
                destination: v.licence.destination_country(),
            };
            // Only the verified hardware identity makes it the node's: a vendor's word alone
            // (a UUID or serial it listed) never makes another party's node worse.
            let about = proven.then_some((n, current));
            push_about(
                findings,
                reason,
                entry,
                fleet.lics,
                about,
                submod.filter(|_| proven),
            );
        }
        states
    }

    /// `shipped_device_duplicated` for every shipped device attested in several places.
    fn duplicated(&self, fleet: &Fleet<'_, '_>, findings: &mut Findings) {
        let mut by_device: Vec<(DeviceRef, Match, Place)> = self
            .sightings
            .iter()
            .map(|&(p, d, how)| (d, how, p))
            .collect();
        // Per device, the places its verified hardware identity proves come first.
        by_device.sort_unstable();
        for run in by_device
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|r| r.len() > 1)
        {
            let Some(&((s, d), _, _)) = run.first() else {
                continue;
            };
            let (Some(entry), Some(device)) = (
                self.entries.get(s),
                self.entries.get(s).and_then(|e| e.shipment.devices.get(d)),
            ) else {
                continue;
            };
            let mut seen_in: Vec<String> = run
                .iter()
                .map(|&(_, _, p)| place_name(fleet.nodes, p))
                .collect();
            seen_in.sort();
            let reason = Reason::ShippedDeviceDuplicated {
                shipment: entry.shipment.id.clone(),
                vendor: entry.shipment.vendor.clone(),
                device: device.clone(),
                seen_in,
            };
            let severity = reason.severity();
            // Only places the hardware identity proves bear on their nodes.
            let mut proven = run
                .iter()
                .filter(|(_, how, _)| *how == Match::Hardware)
                .map(|&(_, _, p)| p);
            let first = proven.next();
            let about = first.and_then(|(n, g)| {
                let current = fleet.nodes.get(n)?;
                let submod = current.attestation.claims().submods.keys().nth(g)?;
                Some((n, current, submod.as_str()))
            });
            push_about(
                findings,
                reason,
                entry,
                fleet.lics,
                about.map(|(n, c, _)| (n, c)),
                about.map(|(_, _, g)| g),
            );
            let mut others: Vec<String> = Vec::new();
            for (n, _) in proven.filter(|p| first.is_none_or(|f| p.0 != f.0)) {
                findings.raise_node(n, severity);
                if let Some(c) = fleet.nodes.get(n) {
                    others.push(c.attestation.node_id().to_string());
                }
            }
            others.sort_unstable();
            others.dedup();
            if let Some(f) = findings.last_mut() {
                f.also_about = others;
            }
        }
    }

    /// `unaccounted_device` for every device of an evaluated licence's shipment that no node
    /// (not simulated) attests, more than the licence's `unaccounted_after` after delivery.
    fn unaccounted(
        &self,
        fleet: &Fleet<'_, '_>,
        states: &[Vec<DeviceState>],
        findings: &mut Findings,
        summaries: &mut [Option<ShipmentSummary>],
    ) {
        for (entry, states) in self.entries.iter().zip(states) {
            let Some((i, v)) = entry
                .licence
                .and_then(|i| fleet.lics.get(i).map(|v| (i, v)))
            else {
                continue;
            };
            let s = entry.shipment;
            let after_s = v.licence.shipment_terms().unaccounted_after_s;
            let Some(overdue_s) = overdue_by(fleet.at, s.delivered_at, after_s) else {
                continue;
            };
            for (device, _) in s.devices.iter().zip(states).filter(|(_, st)| !st.seen) {
                let reason = Reason::UnaccountedDevice {
                    shipment: s.id.clone(),
                    vendor: s.vendor.clone(),
                    device: device.clone(),
                    site: s.site.clone(),
                    delivered_at: s.delivered_at,
                    unaccounted_after_s: after_s,
                    overdue_s,
                };
                push_about(findings, reason, entry, fleet.lics, None, None);
                if let Some(Some(summary)) = summaries.get_mut(i) {
                    summary.devices_unaccounted = summary.devices_unaccounted.saturating_add(1);
                }
            }
        }
    }

    /// `unshipped_device` for every GPU counted under a licence that requires shipments and
    /// on none of that licence's shipments (a simulated node's GPUs are on none).
    fn unshipped(
        &self,
        fleet: &Fleet<'_, '_>,
        findings: &mut Findings,
        summaries: &mut [Option<ShipmentSummary>],
    ) {
        for (n, (current, verdict)) in fleet.nodes.iter().zip(fleet.verdicts).enumerate() {
            let Some(l) = fleet.assignment.get(n).and_then(|a| a.licence) else {
                continue;
            };
            let Some(v) = fleet.lics.get(l) else {
                continue;
            };
            if !v.licence.shipment_terms().required {
                continue;
            }
            let a = current.attestation;
            let simulated = a.claims().simulated;
            // Both in submod order; a GPU verdict's submod is found by walking forward.
            let mut names = a.claims().submods.keys().enumerate();
            for gpu in verdict.gpus.iter().filter(|g| g.counted) {
                let Some((g, _)) = names.find(|(_, name)| name.as_str() == &*gpu.submod) else {
                    break;
                };
                let shipped =
                    !simulated && self.at_place((n, g)).any(|d| self.licence_of(d) == Some(l));
                if shipped {
                    continue;
                }
                let reason = Reason::UnshippedDevice {
                    uuid: gpu.uuid.clone(),
                    serial: gpu.serial.clone(),
                    simulated,
                    shipments: len_u64(
                        self.entries.iter().filter(|e| e.licence == Some(l)).count(),
                    ),
                };
                findings.push(
                    reason,
                    Some((l, v.licence.id())),
                    Some((n, a.node_id())),
                    Some(&*gpu.submod),
                );
                if let Some(Some(summary)) = summaries.get_mut(l) {
                    summary.devices_unshipped = summary.devices_unshipped.saturating_add(1);
                }
            }
        }
    }
}

/// Every GPU of the nodes' current attestations that is a shipped device, in place order.
fn sightings(entries: &[Entry<'_>], nodes: &[Current<'_>]) -> Vec<Sighting> {
    let mut index: HashMap<(Kind, &str), Vec<DeviceRef>> = HashMap::new();
    for (s, entry) in entries.iter().enumerate() {
        for (d, ids) in entry.identities.iter().enumerate() {
            for (kind, key) in ids.keys() {
                if let Some(key) = key {
                    index.entry((kind, key.as_str())).or_default().push((s, d));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut candidates: Vec<DeviceRef> = Vec::new();
    for (n, current) in nodes.iter().enumerate() {
        let a = current.attestation;
        for (g, (name, gpu)) in a.claims().submods.iter().enumerate() {
            let seen = Identities::attested(a, name, gpu);
            candidates.clear();
            for (kind, key) in seen.keys() {
                if let Some(found) = key.and_then(|k| index.get(&(kind, k.as_str()))) {
                    candidates.extend(found);
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            for &device in &candidates {
                let how = entries
                    .get(device.0)
                    .and_then(|e| e.identities.get(device.1))
                    .and_then(|ids| ids.matched(&seen));
                if let Some(how) = how {
                    out.push(((n, g), device, how));
                }
            }
        }
    }
    out
}

/// Records `reason` about the shipment's licence (by id alone when it is not evaluated, so
/// its vendor still sees it), and a node and GPU.
fn push_about(
    findings: &mut Findings,
    reason: Reason,
    entry: &Entry<'_>,
    lics: &[&VerifiedLicence],
    node: Option<(usize, &Current<'_>)>,
    gpu: Option<&str>,
) {
    let lref: Ref<'_> = entry
        .licence
        .and_then(|i| lics.get(i).map(|v| (i, v.licence.id())));
    let nref = node.map(|(n, c)| (n, c.attestation.node_id()));
    findings.push(reason, lref, nref, gpu);
    if lref.is_none()
        && let Some(f) = findings.last_mut()
    {
        f.licence = Some(entry.shipment.licence.clone());
    }
}

/// Whether `site` is a site of `licence` in its destination country.
fn licensed_at(licence: &Licence, site: &str) -> bool {
    licence
        .sites()
        .iter()
        .any(|s| s.id == site && s.country == licence.destination_country())
}

/// The licence's site ids, in its order.
fn site_ids(licence: &Licence) -> Vec<String> {
    licence.sites().iter().map(|s| s.id.clone()).collect()
}

/// The country of `site` as the first evaluated licence listing it places it.
fn site_country(lics: &[&VerifiedLicence], site: &str) -> Option<CountryCode> {
    lics.iter()
        .find_map(|v| v.licence.site(site))
        .map(|s| s.country)
}

/// How a finding names GPU `place`: `node id/gpu0`. Never the node's subject: that is the
/// operator's, and the shipment's vendor (with no redactor) reads these findings.
fn place_name(nodes: &[Current<'_>], (n, g): Place) -> String {
    nodes.get(n).map_or_else(String::new, |c| {
        let a = c.attestation;
        let submod = a.claims().submods.keys().nth(g).map_or("", String::as_str);
        format!("{}/{submod}", a.node_id())
    })
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// How far `at` lies past `delivered_at + after_s`, seconds; `None` when not past it.
fn overdue_by(at: i64, delivered_at: i64, after_s: u64) -> Option<u64> {
    let past = i128::from(at) - i128::from(delivered_at) - i128::from(after_s);
    (past > 0).then(|| u64::try_from(past).unwrap_or(u64::MAX))
}

/// The first instant after `at` at which a device of one of `shipments` not attested by then
/// becomes `unaccounted_device` (its licence's `unaccounted_after` past its delivery);
/// `None` when none comes. `serve` keeps a verdict no longer than that.
pub fn next_deadline(
    shipments: &[VerifiedShipment],
    licences: &[VerifiedLicence],
    at: i64,
) -> Option<i64> {
    shipments
        .iter()
        .filter_map(|s| {
            let after_s = licences
                .iter()
                .find(|v| v.licence().id() == s.licence)?
                .licence()
                .shipment_terms()
                .unaccounted_after_s;
            let first = i128::from(s.delivered_at) + i128::from(after_s) + 1;
            i64::try_from(first).ok()
        })
        .filter(|&t| t > at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(hardware: Option<&str>, uuid: Option<&str>, serial: Option<&str>) -> Identities {
        Identities::shipped(&ShippedDevice {
            uuid: uuid.map(str::to_owned),
            serial: serial.map(str::to_owned),
            hardware_id: hardware.map(str::to_owned),
            model: None,
        })
    }

    #[test]
    fn identities_are_trimmed_and_case_folded_and_blank_is_none() {
        assert_eq!(
            ids(Some(" AB12 "), Some("\tGPU-9FA5 "), Some("  ")),
            Identities {
                hardware: Some("ab12".to_owned()),
                uuid: Some("gpu-9fa5".to_owned()),
                serial: None,
            }
        );
        assert_eq!(ids(None, Some(""), None), Identities::default());
    }

    #[test]
    fn the_hardware_identity_decides_where_both_have_one() {
        let shipped = ids(Some("aa"), Some("GPU-1"), Some("s1"));
        // Same chip, another UUID (a re-flashed board): the shipped device, proven.
        assert_eq!(
            shipped.matched(&ids(Some("AA"), Some("GPU-2"), None)),
            Some(Match::Hardware)
        );
        // Another chip under the shipped UUID and serial: not it.
        assert_eq!(
            shipped.matched(&ids(Some("bb"), Some("GPU-1"), Some("s1"))),
            None
        );
        // No verified identity on the GPU though the shipment records one: matched by UUID
        // or serial, unproven (a clone as likely), never counting as the device.
        let clone = shipped.matched(&ids(None, Some("gpu-1"), Some("other")));
        assert_eq!(clone, Some(Match::Unproven));
        assert!(!Match::Unproven.counts());
        assert_eq!(shipped.matched(&ids(None, Some("GPU-3"), Some("s1"))), None);
        assert_eq!(
            shipped.matched(&ids(None, None, Some("S1"))),
            Some(Match::Unproven)
        );
        assert_eq!(shipped.matched(&ids(None, None, None)), None);
        // A device shipped by serial alone is found by serial, and counts.
        let by_serial =
            ids(None, None, Some("s9")).matched(&ids(Some("cc"), Some("GPU-9"), Some("s9")));
        assert_eq!(by_serial, Some(Match::Named));
        assert!(Match::Named.counts() && Match::Hardware.counts());
    }

    #[test]
    fn a_device_is_overdue_only_past_its_period() {
        assert_eq!(overdue_by(100, 0, 100), None);
        assert_eq!(overdue_by(101, 0, 100), Some(1));
        assert_eq!(overdue_by(i64::MIN, i64::MAX, u64::MAX), None);
        assert_eq!(overdue_by(i64::MAX, i64::MIN, 0), Some(u64::MAX));
    }

    #[test]
    fn labels_name_the_strongest_identity_given_and_escape_it() {
        let device = |uuid: Option<&str>, serial: Option<&str>, hw: Option<&str>| ShippedDevice {
            uuid: uuid.map(str::to_owned),
            serial: serial.map(str::to_owned),
            hardware_id: hw.map(str::to_owned),
            model: None,
        };
        assert_eq!(device(Some("GPU-1"), Some("s"), None).label(), "GPU-1");
        assert_eq!(
            device(None, Some("s\u{1b}"), None).label(),
            "serial s\\u{1b}"
        );
        assert_eq!(
            device(None, None, Some("ab")).label(),
            "hardware identity ab"
        );
        assert_eq!(device(None, None, None).label(), "without identity");
    }
}
