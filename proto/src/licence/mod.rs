//! Licences: what a licence authority grants for a shipment (who, where, which parts, how
//! many, until when), read from TOML ([`Licence::from_toml_str`]) or from the JSON payload of
//! a signed licence ([`Licence::from_json`]), and validated once into a [`Licence`].
//!
//! The format is documented in `examples/README.md`. Caps are exact fixed-point figures;
//! instants are Unix seconds; nothing here reads a clock (`now` is an argument).

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

// `country` and `time` are shared with `crate::shipment` (one country check, one RFC 3339
// parser), not with the outside.
pub(crate) mod country;
pub mod revocation;
pub(crate) mod time;

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::evidence::EvidenceTier;
use crate::lease::{LeaseTerms, OnExpiry};
use crate::ruleset::{self, MeasurementTolerances, Percent};
use crate::spec;
use crate::units::{DecimalError, Tpp};

pub use country::CountryCode;
pub use time::{MAX_ATTESTATION_AGE_SECONDS, MAX_UNIX_SECONDS, MIN_UNIX_SECONDS};

/// Largest licence accepted (TOML text or JSON bytes), checked before parsing.
pub const MAX_LICENCE_BYTES: usize = 64 * 1024;

/// `max_attestation_age` when the licence leaves it out: 24 hours.
pub const DEFAULT_MAX_ATTESTATION_AGE_SECONDS: u64 = 86_400;

pub use crate::site::MAX_ID_CHARS;

/// The key toml uses to hand a TOML datetime to a deserializer.
const TOML_DATETIME_FIELD: &str = "$__toml_private_datetime";

/// Who holds the licence, and who controls them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Licensee {
    /// Legal name of the licensee.
    pub name: String,
    /// Country of the licensee's headquarters.
    pub headquarters_country: CountryCode,
    /// Country of the licensee's ultimate parent (its own country when it has no parent).
    pub ultimate_parent_country: CountryCode,
}

/// A site where the licensed devices may be installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    /// Stable id, unique in the licence: `fra-1`.
    pub id: String,
    /// Human name or address.
    pub name: String,
    /// The site's country (the licence's destination country).
    pub country: CountryCode,
}

/// A licence's overrides of the rule set's measurement tolerances (table `[measurement]`):
/// each key given replaces the rule set's for the devices counted under the licence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct MeasurementOverrides {
    /// Replaces the rule set's `exceeds_spec_percent` (0 to 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceeds_spec_percent: Option<u32>,
    /// Replaces the rule set's `below_spec_percent` (0 to 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below_spec_percent: Option<u32>,
    /// Replaces the rule set's `max_age_days` (1 to 3650).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u32>,
}

impl MeasurementOverrides {
    /// Whether the licence overrides nothing.
    pub fn is_empty(&self) -> bool {
        self.exceeds_spec_percent.is_none()
            && self.below_spec_percent.is_none()
            && self.max_age_days.is_none()
    }

    /// `base` (the rule set's tolerances) with these overrides in place.
    pub fn apply(&self, base: MeasurementTolerances) -> MeasurementTolerances {
        base.with_overrides(
            self.exceeds_spec_percent,
            self.below_spec_percent,
            self.max_age_days,
        )
    }
}

/// A licence's shipment terms (`[shipments]`, issue 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ShipmentTerms {
    /// Every device counted under the licence must be on one of its shipments.
    pub required: bool,
    /// Seconds after a shipment's delivery date after which a shipped GPU never attested is
    /// `unaccounted_device`.
    pub unaccounted_after_s: u64,
}

impl ShipmentTerms {
    /// Default `unaccounted_after`: 14 days.
    pub const DEFAULT_UNACCOUNTED_AFTER_S: u64 = 14 * 86_400;
}

impl Default for ShipmentTerms {
    fn default() -> Self {
        Self {
            required: false,
            unaccounted_after_s: Self::DEFAULT_UNACCOUNTED_AFTER_S,
        }
    }
}

/// A validated licence. Built only by [`Licence::from_toml_str`] or [`Licence::from_json`],
/// so every value satisfies the checks documented on [`LicenceError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    id: String,
    issuer: String,
    licensee: Licensee,
    destination_country: CountryCode,
    end_user: String,
    end_use: String,
    sites: Vec<Site>,
    eccns: Vec<String>,
    models: Vec<String>,
    max_devices: u32,
    max_aggregate_tpp: Tpp,
    max_tpp_per_device: Option<Tpp>,
    min_evidence_tier: EvidenceTier,
    max_attestation_age_s: u64,
    valid_from: i64,
    valid_until: i64,
    rule_set: String,
    measurement: MeasurementOverrides,
    shipments: ShipmentTerms,
    lease: LeaseTerms,
}

/// Where an instant lies against a licence's validity window `[valid_from, valid_until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Validity {
    /// `now` is before `valid_from`.
    NotYetValid {
        /// The instant asked about, Unix seconds.
        now: i64,
        /// Start of validity, Unix seconds (inclusive).
        valid_from: i64,
        /// Seconds until it starts.
        starts_in_s: u64,
    },
    /// `valid_from <= now < valid_until`.
    Valid {
        /// The instant asked about, Unix seconds.
        now: i64,
        /// End of validity, Unix seconds (exclusive).
        valid_until: i64,
        /// Seconds left.
        remaining_s: u64,
    },
    /// `now` is at or after `valid_until`.
    Expired {
        /// The instant asked about, Unix seconds.
        now: i64,
        /// End of validity, Unix seconds (exclusive).
        valid_until: i64,
        /// Seconds since it ended.
        expired_for_s: u64,
    },
}

impl Validity {
    /// The stable snake_case code: `licence_not_yet_valid`, `licence_valid`,
    /// `licence_expired`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotYetValid { .. } => "licence_not_yet_valid",
            Self::Valid { .. } => "licence_valid",
            Self::Expired { .. } => "licence_expired",
        }
    }

    /// Whether the licence is in force at that instant.
    pub const fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }

    /// A human sentence with the instants.
    pub fn sentence(&self) -> String {
        match *self {
            Self::NotYetValid {
                now,
                valid_from,
                starts_in_s,
            } => format!(
                "the licence is not valid yet at {}: it starts at {} ({starts_in_s} s later)",
                time::format_rfc3339(now),
                time::format_rfc3339(valid_from)
            ),
            Self::Valid {
                now,
                valid_until,
                remaining_s,
            } => format!(
                "the licence is valid at {} until {} ({remaining_s} s left)",
                time::format_rfc3339(now),
                time::format_rfc3339(valid_until)
            ),
            Self::Expired {
                now,
                valid_until,
                expired_for_s,
            } => format!(
                "the licence expired at {}, {expired_for_s} s before {}",
                time::format_rfc3339(valid_until),
                time::format_rfc3339(now)
            ),
        }
    }
}

/// Why a licence was rejected. Each message names the key, the reason and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenceError {
    /// The input is larger than [`MAX_LICENCE_BYTES`].
    #[error("licence is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid TOML, or a key is unknown, missing or of the wrong type (a float cap, say);
    /// the message names the key, line and column.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// Not valid JSON, or a key is unknown, missing or of the wrong type; the message names
    /// the key, line and column.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A required text is empty or only spaces.
    #[error("`{key}` is empty; write the {what}")]
    EmptyField {
        /// The key.
        key: String,
        /// What belongs there.
        what: &'static str,
    },
    /// An id has characters outside its alphabet, or is too long.
    #[error("`{key}` {value:?} {rule}")]
    BadId {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A country is not an assigned ISO 3166-1 alpha-2 code.
    #[error("`{key}` {value:?} {reason}")]
    BadCountry {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// `valid_from` or `valid_until` is not an RFC 3339 timestamp with an offset.
    #[error("`{key}` {value:?} {reason}")]
    BadTimestamp {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// `valid_until` is not after `valid_from`.
    #[error(
        "`valid_until` {valid_until} is not after `valid_from` {valid_from}; the licence would \
         never be valid"
    )]
    EmptyValidity {
        /// Start, RFC 3339.
        valid_from: String,
        /// End, RFC 3339.
        valid_until: String,
    },
    /// `max_attestation_age` is not a duration from 1 s to 366 days.
    #[error("`max_attestation_age` {value:?} {reason}")]
    BadDuration {
        /// The value as written.
        value: String,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// A TPP cap is not an exact non-negative decimal of at most four places.
    #[error("`{key}` {value:?}: {reason}; write it as a string (\"15831.2\") or an integer")]
    BadCap {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// Why.
        reason: DecimalError,
    },
    /// A cap is zero: nothing could ever be used under the licence.
    #[error("`{key}` is 0, so nothing would be allowed; give the granted amount (at least 1)")]
    ZeroCap {
        /// The key.
        key: &'static str,
    },
    /// The per-device cap is above the aggregate cap (a typo: one device could not use it).
    #[error(
        "`max_tpp_per_device` {per_device} is above `max_aggregate_tpp` {aggregate}; check both \
         figures"
    )]
    PerDeviceCapAboveAggregate {
        /// The per-device cap.
        per_device: Tpp,
        /// The aggregate cap.
        aggregate: Tpp,
    },
    /// The licence names no site.
    #[error("`sites` is empty; add at least one `[[sites]]` with `id`, `name` and `country`")]
    NoSites,
    /// Two sites share an id.
    #[error("two `[[sites]]` have id {id:?}; site ids must be unique")]
    DuplicateSite {
        /// The id.
        id: String,
    },
    /// A site lies outside the destination country.
    #[error(
        "site {site:?} is in {country}, not the destination country {destination}; a licence \
         covers one destination, so issue another licence for {country}"
    )]
    SiteOutsideDestination {
        /// The site id.
        site: String,
        /// Its country.
        country: CountryCode,
        /// The licence's destination.
        destination: CountryCode,
    },
    /// A `[measurement]` value is outside its range.
    #[error(
        "`measurement.{key}` is {value}, outside the accepted {min} to {max}; write a whole \
         number from {min} to {max}, or leave the key out to use the rule set's"
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
    },
    /// A `[shipments]` or `[lease]` value is out of range, or the terms contradict each
    /// other.
    #[error("`{key}` {value:?} {reason}")]
    BadTerm {
        /// The key (`lease.lifetime`, ...).
        key: &'static str,
        /// The value as written.
        value: String,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// Neither `eccns` nor `models` lists anything, so nothing would be allowed.
    #[error(
        "the licence allows nothing: list at least one ECCN in `eccns` (\"3A090.a\") or one \
         model in `models` (\"H100 SXM5 80GB\")"
    )]
    NothingAllowed,
    /// An ECCN is not of the form `3A090` or `3A090.a`.
    #[error(
        "`eccns` entry {value:?} is not an ECCN; write digit, category letter A-E, three digits \
         and optional lower-case paragraphs: \"3A090\", \"3A090.a\""
    )]
    BadEccn {
        /// The value.
        value: String,
    },
    /// A model is not in the accelerator spec table.
    #[error(
        "`models` entry {model:?} is not in the accelerator spec table; use its model name as \
         `tppguard-verifier` lists it (\"H100 SXM5 80GB\")"
    )]
    UnknownModel {
        /// The model as written.
        model: String,
    },
}

impl LicenceError {
    /// Every code, for documentation and the uniqueness test.
    pub const CODES: [&'static str; 20] = [
        "too_large",
        "invalid_toml",
        "invalid_json",
        "empty_field",
        "bad_id",
        "bad_country",
        "bad_timestamp",
        "empty_validity",
        "bad_duration",
        "bad_cap",
        "zero_cap",
        "per_device_cap_above_aggregate",
        "no_sites",
        "duplicate_site",
        "site_outside_destination",
        "nothing_allowed",
        "bad_eccn",
        "unknown_model",
        "bad_tolerance",
        "bad_term",
    ];

    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Toml(_) => "invalid_toml",
            Self::Json(_) => "invalid_json",
            Self::EmptyField { .. } => "empty_field",
            Self::BadId { .. } => "bad_id",
            Self::BadCountry { .. } => "bad_country",
            Self::BadTimestamp { .. } => "bad_timestamp",
            Self::EmptyValidity { .. } => "empty_validity",
            Self::BadDuration { .. } => "bad_duration",
            Self::BadCap { .. } => "bad_cap",
            Self::ZeroCap { .. } => "zero_cap",
            Self::PerDeviceCapAboveAggregate { .. } => "per_device_cap_above_aggregate",
            Self::NoSites => "no_sites",
            Self::DuplicateSite { .. } => "duplicate_site",
            Self::SiteOutsideDestination { .. } => "site_outside_destination",
            Self::NothingAllowed => "nothing_allowed",
            Self::BadEccn { .. } => "bad_eccn",
            Self::UnknownModel { .. } => "unknown_model",
            Self::BadTolerance { .. } => "bad_tolerance",
            Self::BadTerm { .. } => "bad_term",
        }
    }
}

impl Licence {
    /// Parses and validates a licence from TOML text (the authoring format).
    pub fn from_toml_str(text: &str) -> Result<Self, LicenceError> {
        check_size(text.len())?;
        let raw: RawLicence = toml::from_str(text)?;
        raw.validate()
    }

    /// Parses and validates a licence from JSON (the payload of a signed licence, as
    /// [`Licence::to_json`] writes it). The same checks as [`Licence::from_toml_str`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, LicenceError> {
        check_size(bytes.len())?;
        let raw: RawLicence = serde_json::from_slice(bytes)?;
        raw.validate()
    }

    /// The licence as JSON with stable field names (the `Serialize` form): caps as decimal
    /// strings, instants as RFC 3339 UTC, `max_attestation_age` in seconds.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The licence id, as the authority numbers it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who issued it (the licence authority).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Who holds it.
    pub fn licensee(&self) -> &Licensee {
        &self.licensee
    }

    /// The country the devices are licensed to.
    pub fn destination_country(&self) -> CountryCode {
        self.destination_country
    }

    /// The end user, as the licence names it.
    pub fn end_user(&self) -> &str {
        &self.end_user
    }

    /// The licensed end use.
    pub fn end_use(&self) -> &str {
        &self.end_use
    }

    /// The sites, in file order (at least one; ids unique).
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    /// Allowed ECCNs, sorted, without repeats (may be empty when `models` is not).
    pub fn eccns(&self) -> &[String] {
        &self.eccns
    }

    /// Allowed models as the spec table names them, sorted, without repeats (may be empty
    /// when `eccns` is not).
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// The most devices the licence covers (at least 1).
    pub fn max_devices(&self) -> u32 {
        self.max_devices
    }

    /// The most aggregate TPP the licence covers (above zero).
    pub fn max_aggregate_tpp(&self) -> Tpp {
        self.max_aggregate_tpp
    }

    /// The most TPP one device may have; `None` when the licence sets no per-device cap.
    pub fn max_tpp_per_device(&self) -> Option<Tpp> {
        self.max_tpp_per_device
    }

    /// The weakest evidence the licence accepts for a device.
    pub fn min_evidence_tier(&self) -> EvidenceTier {
        self.min_evidence_tier
    }

    /// The oldest a node's last good attestation may be before the node is stale, seconds.
    pub fn max_attestation_age_s(&self) -> u64 {
        self.max_attestation_age_s
    }

    /// Start of validity, Unix seconds (inclusive).
    pub fn valid_from(&self) -> i64 {
        self.valid_from
    }

    /// End of validity, Unix seconds (exclusive).
    pub fn valid_until(&self) -> i64 {
        self.valid_until
    }

    /// Id of the rule set the licence is evaluated under (the verifier resolves it).
    pub fn rule_set(&self) -> &str {
        &self.rule_set
    }

    /// The licence's overrides of the rule set's measurement tolerances (none by default).
    pub fn measurement(&self) -> &MeasurementOverrides {
        &self.measurement
    }

    /// The shipment terms (`[shipments]`; defaults when absent).
    pub fn shipment_terms(&self) -> ShipmentTerms {
        self.shipments
    }

    /// The lease terms (`[lease]`; defaults when absent).
    pub fn lease_terms(&self) -> LeaseTerms {
        self.lease
    }

    /// Where `now` (Unix seconds) lies against `[valid_from, valid_until)`.
    pub fn is_valid_at(&self, now: i64) -> Validity {
        if now < self.valid_from {
            Validity::NotYetValid {
                now,
                valid_from: self.valid_from,
                starts_in_s: self.valid_from.abs_diff(now),
            }
        } else if now < self.valid_until {
            Validity::Valid {
                now,
                valid_until: self.valid_until,
                remaining_s: self.valid_until.abs_diff(now),
            }
        } else {
            Validity::Expired {
                now,
                valid_until: self.valid_until,
                expired_for_s: now.abs_diff(self.valid_until),
            }
        }
    }

    /// Whether an attestation `age_s` seconds old is recent enough (at most
    /// [`Self::max_attestation_age_s`]).
    pub fn attestation_is_fresh(&self, age_s: u64) -> bool {
        age_s <= self.max_attestation_age_s
    }

    /// Whether a device of this ECCN and model is of a kind the licence covers.
    ///
    /// Each non-empty list is a condition, and both must hold: with `eccns`, the device's
    /// ECCN must be listed or fall under a listed one (`3A090` covers `3A090.a`); with
    /// `models`, the device's model (looked up in the spec table, so NVML names work) must be
    /// listed. An unknown ECCN or model fails a list that needs it.
    pub fn allows(&self, eccn: Option<&str>, model: Option<&str>) -> bool {
        let eccn_ok = self.eccns.is_empty()
            || eccn.is_some_and(|e| self.eccns.iter().any(|allowed| eccn_covers(allowed, e)));
        let model_ok = self.models.is_empty()
            || model
                .and_then(spec::by_model)
                .is_some_and(|s| self.models.iter().any(|m| m == s.model));
        eccn_ok && model_ok
    }

    /// Whether a device of `tpp` is within the per-device cap (always, without one).
    pub fn allows_device_tpp(&self, tpp: Tpp) -> bool {
        self.max_tpp_per_device.is_none_or(|cap| tpp <= cap)
    }

    /// A copy with one cap changed: a what-if scenario's change, never a signed licence.
    #[must_use]
    pub fn with_cap(&self, cap: CapChange) -> Self {
        let mut copy = self.clone();
        match cap {
            CapChange::MaxDevices(n) => copy.max_devices = n,
            CapChange::MaxAggregateTpp(t) => copy.max_aggregate_tpp = t,
            CapChange::MaxTppPerDevice(t) => copy.max_tpp_per_device = Some(t),
        }
        copy
    }
}

/// One licence cap a what-if scenario changes ([`Licence::with_cap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapChange {
    /// `max_devices`.
    MaxDevices(u32),
    /// `max_aggregate_tpp`.
    MaxAggregateTpp(Tpp),
    /// `max_tpp_per_device`.
    MaxTppPerDevice(Tpp),
}

impl CapChange {
    /// The licence key it changes, as in the licence TOML.
    pub const fn key(&self) -> &'static str {
        match self {
            Self::MaxDevices(_) => "max_devices",
            Self::MaxAggregateTpp(_) => "max_aggregate_tpp",
            Self::MaxTppPerDevice(_) => "max_tpp_per_device",
        }
    }
}

/// Whether `allowed` (`3A090`) is `eccn` or a parent paragraph of it (`3A090.a`).
fn eccn_covers(allowed: &str, eccn: &str) -> bool {
    eccn.strip_prefix(allowed)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// `3A090`, `3A090.a`, `5A002.a.1`: digit, letter A-E, three digits, then `.` paragraphs of
/// lower-case letters and digits.
fn is_eccn(text: &str) -> bool {
    let Some((head, rest)) = text.split_at_checked(5) else {
        return false;
    };
    let head = head.as_bytes();
    let head_ok = matches!(
        head,
        [a, b'A'..=b'E', c, d, e] if [a, c, d, e].iter().all(|x| x.is_ascii_digit())
    );
    head_ok
        && (rest.is_empty()
            || rest.strip_prefix('.').is_some_and(|paras| {
                paras.split('.').all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
            }))
}

fn check_size(len: usize) -> Result<(), LicenceError> {
    if len > MAX_LICENCE_BYTES {
        Err(LicenceError::TooLarge {
            len,
            max: MAX_LICENCE_BYTES,
        })
    } else {
        Ok(())
    }
}

/// The JSON form, borrowed from a [`Licence`]: the same keys as the TOML file.
#[derive(Serialize)]
struct WireLicence<'a> {
    id: &'a str,
    issuer: &'a str,
    licensee: &'a Licensee,
    destination_country: CountryCode,
    end_user: &'a str,
    end_use: &'a str,
    sites: &'a [Site],
    eccns: &'a [String],
    models: &'a [String],
    max_devices: u32,
    max_aggregate_tpp: String,
    max_tpp_per_device: Option<String>,
    min_evidence_tier: EvidenceTier,
    max_attestation_age: u64,
    valid_from: String,
    valid_until: String,
    rule_set: &'a str,
    #[serde(skip_serializing_if = "MeasurementOverrides::is_empty")]
    measurement: MeasurementOverrides,
    #[serde(skip_serializing_if = "Option::is_none")]
    shipments: Option<WireShipments>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<WireLease>,
}

/// `[shipments]` in the JSON form: seconds.
#[derive(Serialize)]
struct WireShipments {
    required: bool,
    unaccounted_after: u64,
}

/// `[lease]` in the JSON form: seconds.
#[derive(Serialize)]
struct WireLease {
    lifetime: u64,
    renew_before: u64,
    grace: u64,
    on_expiry: OnExpiry,
}

impl Serialize for Licence {
    /// Every field, in file order, with the TOML keys: caps as exact decimal strings,
    /// `max_tpp_per_device` `null` when absent, `max_attestation_age` in seconds, instants
    /// as RFC 3339 UTC; `measurement` (with only the keys given) only when it overrides
    /// something, so a licence without it has the same JSON as before it existed.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireLicence {
            id: &self.id,
            issuer: &self.issuer,
            licensee: &self.licensee,
            destination_country: self.destination_country,
            end_user: &self.end_user,
            end_use: &self.end_use,
            sites: &self.sites,
            eccns: &self.eccns,
            models: &self.models,
            max_devices: self.max_devices,
            max_aggregate_tpp: self.max_aggregate_tpp.to_string(),
            max_tpp_per_device: self.max_tpp_per_device.map(|t| t.to_string()),
            min_evidence_tier: self.min_evidence_tier,
            max_attestation_age: self.max_attestation_age_s,
            valid_from: time::format_rfc3339(self.valid_from),
            valid_until: time::format_rfc3339(self.valid_until),
            rule_set: &self.rule_set,
            measurement: self.measurement,
            // Written only when not the defaults, so a licence without them has the same
            // JSON (and signature input) as before they existed.
            shipments: (self.shipments != ShipmentTerms::default()).then_some(WireShipments {
                required: self.shipments.required,
                unaccounted_after: self.shipments.unaccounted_after_s,
            }),
            lease: (self.lease != LeaseTerms::default()).then_some(WireLease {
                lifetime: self.lease.lifetime_s,
                renew_before: self.lease.renew_before_s,
                grace: self.lease.grace_s,
                on_expiry: self.lease.on_expiry,
            }),
        }
        .serialize(serializer)
    }
}

/// The licence as written (TOML or JSON), before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLicence {
    id: String,
    issuer: String,
    licensee: RawLicensee,
    destination_country: String,
    end_user: String,
    end_use: String,
    sites: Vec<RawSite>,
    #[serde(default)]
    eccns: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    max_devices: u32,
    max_aggregate_tpp: ExactText,
    #[serde(default)]
    max_tpp_per_device: Option<ExactText>,
    #[serde(default)]
    min_evidence_tier: EvidenceTier,
    #[serde(default)]
    max_attestation_age: Option<DurationValue>,
    valid_from: TimestampText,
    valid_until: TimestampText,
    rule_set: String,
    #[serde(default)]
    measurement: Option<RawMeasurement>,
    #[serde(default)]
    shipments: Option<RawShipments>,
    #[serde(default)]
    lease: Option<RawLease>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShipments {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unaccounted_after: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    #[serde(default)]
    lifetime: Option<DurationValue>,
    #[serde(default)]
    renew_before: Option<DurationValue>,
    #[serde(default)]
    grace: Option<DurationValue>,
    #[serde(default)]
    on_expiry: Option<OnExpiry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasurement {
    #[serde(default)]
    exceeds_spec_percent: Option<Percent>,
    #[serde(default)]
    below_spec_percent: Option<Percent>,
    #[serde(default)]
    max_age_days: Option<Percent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLicensee {
    name: String,
    headquarters_country: String,
    ultimate_parent_country: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: String,
    name: String,
    country: String,
}

fn non_empty(key: &str, value: String, what: &'static str) -> Result<String, LicenceError> {
    if value.trim().is_empty() {
        Err(LicenceError::EmptyField {
            key: key.to_owned(),
            what,
        })
    } else {
        Ok(value)
    }
}

/// A licence or site id: 1 to [`MAX_ID_CHARS`] ASCII letters, digits and `-_.:/`.
fn check_id(key: &str, value: String) -> Result<String, LicenceError> {
    let value = non_empty(key, value, "id")?;
    if crate::site::is_valid_id(&value) {
        Ok(value)
    } else {
        Err(LicenceError::BadId {
            key: key.to_owned(),
            value,
            rule: "must be at most 64 ASCII letters, digits and `-_.:/`",
        })
    }
}

fn check_country(key: &str, value: String) -> Result<CountryCode, LicenceError> {
    country::check(&value).map_err(|reason| LicenceError::BadCountry {
        key: key.to_owned(),
        value,
        reason,
    })
}

fn check_cap(key: &'static str, value: ExactText) -> Result<Tpp, LicenceError> {
    let tpp: Tpp = value.0.parse().map_err(|reason| LicenceError::BadCap {
        key,
        value: value.0,
        reason,
    })?;
    if tpp == Tpp::default() {
        return Err(LicenceError::ZeroCap { key });
    }
    Ok(tpp)
}

fn check_timestamp(key: &'static str, value: TimestampText) -> Result<i64, LicenceError> {
    time::parse_rfc3339(&value.0).map_err(|reason| LicenceError::BadTimestamp {
        key,
        value: value.0,
        reason,
    })
}

impl RawLicence {
    fn validate(self) -> Result<Licence, LicenceError> {
        let id = check_id("id", self.id)?;
        let issuer = non_empty("issuer", self.issuer, "licence authority's name")?;
        let licensee = Licensee {
            name: non_empty("licensee.name", self.licensee.name, "licensee's legal name")?,
            headquarters_country: check_country(
                "licensee.headquarters_country",
                self.licensee.headquarters_country,
            )?,
            ultimate_parent_country: check_country(
                "licensee.ultimate_parent_country",
                self.licensee.ultimate_parent_country,
            )?,
        };
        let destination_country = check_country("destination_country", self.destination_country)?;
        let end_user = non_empty("end_user", self.end_user, "end user the licence names")?;
        let end_use = non_empty("end_use", self.end_use, "licensed end use")?;

        if self.sites.is_empty() {
            return Err(LicenceError::NoSites);
        }
        let mut site_ids = BTreeSet::new();
        let mut sites = Vec::with_capacity(self.sites.len());
        for raw in self.sites {
            let id = check_id("sites.id", raw.id)?;
            if !site_ids.insert(id.clone()) {
                return Err(LicenceError::DuplicateSite { id });
            }
            let name = non_empty("sites.name", raw.name, "site's name or address")?;
            let country = check_country("sites.country", raw.country)?;
            if country != destination_country {
                return Err(LicenceError::SiteOutsideDestination {
                    site: id,
                    country,
                    destination: destination_country,
                });
            }
            sites.push(Site { id, name, country });
        }

        let mut eccns = BTreeSet::new();
        for eccn in self.eccns {
            if !is_eccn(&eccn) {
                return Err(LicenceError::BadEccn { value: eccn });
            }
            eccns.insert(eccn);
        }
        let mut models = BTreeSet::new();
        for model in self.models {
            let Some(row) = spec::by_model(&model) else {
                return Err(LicenceError::UnknownModel { model });
            };
            models.insert(row.model.to_owned());
        }
        if eccns.is_empty() && models.is_empty() {
            return Err(LicenceError::NothingAllowed);
        }

        if self.max_devices == 0 {
            return Err(LicenceError::ZeroCap { key: "max_devices" });
        }
        let max_aggregate_tpp = check_cap("max_aggregate_tpp", self.max_aggregate_tpp)?;
        let max_tpp_per_device = self
            .max_tpp_per_device
            .map(|cap| check_cap("max_tpp_per_device", cap))
            .transpose()?;
        if let Some(per_device) = max_tpp_per_device
            && per_device > max_aggregate_tpp
        {
            return Err(LicenceError::PerDeviceCapAboveAggregate {
                per_device,
                aggregate: max_aggregate_tpp,
            });
        }

        let max_attestation_age_s = match self.max_attestation_age {
            None => DEFAULT_MAX_ATTESTATION_AGE_SECONDS,
            Some(DurationValue::Text(text)) => {
                time::parse_duration(&text).map_err(|reason| LicenceError::BadDuration {
                    value: text,
                    reason,
                })?
            }
            Some(DurationValue::Seconds(seconds)) => u64::try_from(seconds)
                .map_err(|_| "is negative; write a positive number of seconds or 24h")
                .and_then(time::check_duration_seconds)
                .map_err(|reason| LicenceError::BadDuration {
                    value: seconds.to_string(),
                    reason,
                })?,
        };

        let valid_from = check_timestamp("valid_from", self.valid_from)?;
        let valid_until = check_timestamp("valid_until", self.valid_until)?;
        if valid_until <= valid_from {
            return Err(LicenceError::EmptyValidity {
                valid_from: time::format_rfc3339(valid_from),
                valid_until: time::format_rfc3339(valid_until),
            });
        }

        let rule_set = non_empty("rule_set", self.rule_set, "id of a rule set")?;
        if !rule_set
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(LicenceError::BadId {
                key: "rule_set".to_owned(),
                value: rule_set,
                rule: "must be a rule-set id: lower-case letters, digits and `-` \
                       (\"us-eccn-3a090\")",
            });
        }

        let measurement = self
            .measurement
            .map_or_else(MeasurementOverrides::default, |m| MeasurementOverrides {
                exceeds_spec_percent: m.exceeds_spec_percent.map(|p| p.0),
                below_spec_percent: m.below_spec_percent.map(|p| p.0),
                max_age_days: m.max_age_days.map(|p| p.0),
            });
        for (key, value) in [
            ("exceeds_spec_percent", measurement.exceeds_spec_percent),
            ("below_spec_percent", measurement.below_spec_percent),
            ("max_age_days", measurement.max_age_days),
        ] {
            if let Err(ruleset::RuleSetError::BadTolerance {
                key,
                value,
                min,
                max,
                ..
            }) = ruleset::check_tolerance(key, value)
            {
                return Err(LicenceError::BadTolerance {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }

        let shipments = check_shipment_terms(self.shipments)?;
        let lease = check_lease_terms(self.lease)?;

        Ok(Licence {
            id,
            issuer,
            licensee,
            destination_country,
            end_user,
            end_use,
            sites,
            eccns: eccns.into_iter().collect(),
            models: models.into_iter().collect(),
            max_devices: self.max_devices,
            max_aggregate_tpp,
            max_tpp_per_device,
            min_evidence_tier: self.min_evidence_tier,
            max_attestation_age_s,
            valid_from,
            valid_until,
            rule_set,
            measurement,
            shipments,
            lease,
        })
    }
}

/// A `[shipments]` or `[lease]` duration: from 1 s to `max` seconds, `default` when absent.
fn term_seconds(
    key: &'static str,
    value: Option<DurationValue>,
    default: u64,
    max: u64,
) -> Result<u64, LicenceError> {
    let (text, seconds) = match value {
        None => return Ok(default),
        Some(DurationValue::Text(text)) => {
            let seconds = time::parse_duration(&text);
            (text, seconds)
        }
        Some(DurationValue::Seconds(n)) => (
            n.to_string(),
            u64::try_from(n)
                .map_err(|_| "is negative; write a duration such as 1h")
                .and_then(time::check_duration_seconds),
        ),
    };
    match seconds {
        Ok(s) if s <= max => Ok(s),
        Ok(_) => Err(LicenceError::BadTerm {
            key,
            value: text,
            reason: "is too long: a lease's lifetime and grace are at most 7d",
        }),
        Err(reason) => Err(LicenceError::BadTerm {
            key,
            value: text,
            reason,
        }),
    }
}

fn check_shipment_terms(raw: Option<RawShipments>) -> Result<ShipmentTerms, LicenceError> {
    let Some(raw) = raw else {
        return Ok(ShipmentTerms::default());
    };
    Ok(ShipmentTerms {
        required: raw.required,
        unaccounted_after_s: term_seconds(
            "shipments.unaccounted_after",
            raw.unaccounted_after,
            ShipmentTerms::DEFAULT_UNACCOUNTED_AFTER_S,
            MAX_ATTESTATION_AGE_SECONDS,
        )?,
    })
}

fn check_lease_terms(raw: Option<RawLease>) -> Result<LeaseTerms, LicenceError> {
    let Some(raw) = raw else {
        return Ok(LeaseTerms::default());
    };
    let lifetime_s = term_seconds(
        "lease.lifetime",
        raw.lifetime,
        LeaseTerms::DEFAULT_LIFETIME_S,
        LeaseTerms::MAX_S,
    )?;
    let renew_before_s = term_seconds(
        "lease.renew_before",
        raw.renew_before,
        LeaseTerms::DEFAULT_RENEW_BEFORE_S.min(lifetime_s.saturating_sub(1).max(1)),
        LeaseTerms::MAX_S,
    )?;
    if renew_before_s >= lifetime_s {
        return Err(LicenceError::BadTerm {
            key: "lease.renew_before",
            value: renew_before_s.to_string(),
            reason: "is not shorter than `lease.lifetime`: the agent would renew before the \
                     lease starts; make it a fraction of the lifetime (15m of 1h)",
        });
    }
    Ok(LeaseTerms {
        lifetime_s,
        renew_before_s,
        grace_s: term_seconds(
            "lease.grace",
            raw.grace,
            LeaseTerms::DEFAULT_GRACE_S,
            LeaseTerms::MAX_S,
        )?,
        on_expiry: raw.on_expiry.unwrap_or_default(),
    })
}

/// A figure written as a decimal string (`"15831.2"`) or an integer (`100000`), kept as text
/// for the exact parser. A float (`15831.2`) is refused: the TOML or JSON reader has already
/// rounded it to binary.
struct ExactText(String);

impl<'de> Deserialize<'de> for ExactText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExactVisitor;

        impl Visitor<'_> for ExactVisitor {
            type Value = ExactText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TPP figure as a string (\"15831.2\") or an integer (100000)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExactText, E> {
                Ok(ExactText(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExactText, E> {
                Ok(ExactText(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExactText, E> {
                Ok(ExactText(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ExactText, E> {
                Err(E::custom(format!(
                    "cap {v} is a float, which is not exact; write it as a string: \"{v}\""
                )))
            }
        }

        deserializer.deserialize_any(ExactVisitor)
    }
}

/// `max_attestation_age` as written: integer seconds or a duration string.
enum DurationValue {
    Seconds(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"24h\", \"30m\" or \"7d\", or integer seconds")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                Ok(DurationValue::Text(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Ok(DurationValue::Seconds(i128::from(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                Ok(DurationValue::Seconds(i128::from(v)))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `valid_from` / `valid_until` as written: a TOML datetime or a string, as text for the
/// strict RFC 3339 parser.
pub(crate) struct TimestampText(pub(crate) String);

impl<'de> Deserialize<'de> for TimestampText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl<'de> Visitor<'de> for TimestampVisitor {
            type Value = TimestampText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimestampText, E> {
                Ok(TimestampText(v.to_owned()))
            }

            /// A TOML datetime arrives as a one-entry map holding its text.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TimestampText, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) if key == TOML_DATETIME_FIELD => {
                        let text: String = map.next_value()?;
                        Ok(TimestampText(text))
                    }
                    _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
                }
            }
        }

        deserializer.deserialize_any(TimestampVisitor)
    }
}

#[cfg(test)]
mod tests;
