//! Shipment records (issue 15): what a GPU vendor delivered where under which licence, read
//! from TOML ([`Shipment::from_toml_str`], the authoring format) or from the JSON payload of a
//! signed shipment ([`Shipment::from_json`]), and validated once into a [`Shipment`].
//!
//! The vendor signs a shipment (`tppguard-verifier shipment sign`); the verifier trusts one
//! only through a signer chained to a pinned `[vendor] roots` root. Everything here is the
//! payload's own consistency: the ids are in the licence id alphabet, the delivery country is
//! an assigned ISO code, each device names at least one identity (UUID, board serial or the
//! device certificate's hardware id), and no identity appears twice (compared ASCII
//! case-insensitively, as the policy compares them with attested GPUs). The format is
//! documented in `examples/README.md`; nothing here reads a clock.

#![deny(clippy::as_conversions, clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::licence::{CountryCode, TimestampText, country, time};
use crate::spec;

/// Largest shipment accepted (TOML text or JSON bytes), checked before parsing. A signed
/// shipment must fit a JWS ([`crate::jws::MAX_JWS_BYTES`]) once base64-encoded with its
/// certificate chain; 4096 devices with a UUID and a serial each take about 400 KiB.
pub const MAX_SHIPMENT_BYTES: usize = 512 * 1024;

/// The most devices one shipment lists; split a larger delivery into several shipments.
pub const MAX_DEVICES: usize = 4096;

/// The most characters of a UUID or a board serial.
pub const MAX_IDENTITY_CHARS: usize = 64;

/// The most hex digits of a hardware id (a SHA-256 is 64; room for SHA-512).
pub const MAX_HARDWARE_ID_CHARS: usize = 128;

/// The fewest hex digits of a hardware id (64 bits).
pub const MIN_HARDWARE_ID_CHARS: usize = 16;

/// The most characters of the vendor's display name.
pub const MAX_VENDOR_CHARS: usize = 128;

/// How many characters of a refused value an error quotes.
const SHOWN_CHARS: usize = 64;

/// Where the devices were delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The site id, as the licence names it (`fra-1`).
    pub site: String,
    /// The site's country.
    pub country: CountryCode,
}

/// One GPU shipped: at least one of `uuid`, `serial` and `hardware_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The GPU UUID as NVML reports it (`GPU-2c12e0be-…`), trimmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The board serial, trimmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The hardware identity (the device certificate's, hex), lower case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// The model as the accelerator spec table names it (`H100 SXM5 80GB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A validated shipment record. Built only by [`Shipment::from_toml_str`] or
/// [`Shipment::from_json`], so every value satisfies the checks documented on
/// [`ShipmentError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    id: String,
    vendor: String,
    licence: String,
    delivered_at: i64,
    delivery: Delivery,
    devices: Vec<Device>,
}

/// Why a shipment was rejected. Each message names the key, the reason and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipmentError {
    /// The input is larger than [`MAX_SHIPMENT_BYTES`].
    #[error(
        "shipment is {len} bytes, more than the {max}-byte limit; split the delivery into \
         several shipments"
    )]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid TOML, or a key is unknown, missing or of the wrong type; the message names
    /// the key, line and column.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// Not valid JSON, or a key is unknown, missing or of the wrong type.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A required text is empty or only spaces.
    #[error("`{key}` is empty; write the {what}")]
    EmptyField {
        /// The key.
        key: &'static str,
        /// What belongs there.
        what: &'static str,
    },
    /// An id has characters outside the licence id alphabet, or is too long.
    #[error("`{key}` {value:?} {rule}")]
    BadId {
        /// The key.
        key: &'static str,
        /// The value (at most 64 characters of it).
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The vendor's name holds control characters or is too long.
    #[error("`vendor` {value:?} {reason}")]
    BadVendor {
        /// The value (at most 64 characters of it).
        value: String,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// `delivery.country` is not an assigned ISO 3166-1 alpha-2 code.
    #[error("`delivery.country` {value:?} {reason}")]
    BadCountry {
        /// The value (at most 64 characters of it).
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// `delivered_at` is not an RFC 3339 timestamp with an offset.
    #[error("`delivered_at` {value:?} {reason}")]
    BadTimestamp {
        /// The value (at most 64 characters of it).
        value: String,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// The shipment lists no device.
    #[error(
        "`devices` is empty; add a `[[devices]]` table for each GPU shipped, with its `uuid`, \
         `serial` or `hardware_id`"
    )]
    NoDevices,
    /// The shipment lists more than [`MAX_DEVICES`] devices.
    #[error(
        "`devices` lists {count} GPUs, more than the {max} of one shipment; split the delivery \
         into several shipments"
    )]
    TooManyDevices {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A device names none of the three identities.
    #[error(
        "`devices[{index}]` names no identity; give its `uuid` (\"GPU-…\"), its board `serial` \
         or its `hardware_id`"
    )]
    NoIdentity {
        /// The device's position (from 0).
        index: usize,
    },
    /// An identity is empty, too long, or not printable ASCII (hex for `hardware_id`).
    #[error("`devices[{index}].{key}` {value:?} {reason}")]
    BadIdentity {
        /// The device's position (from 0).
        index: usize,
        /// `uuid`, `serial` or `hardware_id`.
        key: &'static str,
        /// The value (at most 64 characters of it).
        value: String,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// One identity is listed for two devices.
    #[error(
        "`devices[{second}].{key}` {value:?} repeats `devices[{first}].{key}` (compared \
         ignoring case); a GPU is listed once per shipment"
    )]
    DuplicateIdentity {
        /// `uuid`, `serial` or `hardware_id`.
        key: &'static str,
        /// The value (at most 64 characters of it).
        value: String,
        /// The first device listing it.
        first: usize,
        /// The device repeating it.
        second: usize,
    },
    /// A model is not in the accelerator spec table.
    #[error(
        "`devices[{index}].model` {model:?} is not in the accelerator spec table; use the \
         table's model name (\"H100 SXM5 80GB\") or the name NVML reports (\"NVIDIA H100 80GB \
         HBM3\"), or leave `model` out"
    )]
    UnknownModel {
        /// The device's position (from 0).
        index: usize,
        /// The model (at most 64 characters of it).
        model: String,
    },
}

impl ShipmentError {
    /// Every code, for documentation and the uniqueness test.
    pub const CODES: [&'static str; 14] = [
        "too_large",
        "invalid_toml",
        "invalid_json",
        "empty_field",
        "bad_id",
        "bad_vendor",
        "bad_country",
        "bad_timestamp",
        "no_devices",
        "too_many_devices",
        "no_identity",
        "bad_identity",
        "duplicate_identity",
        "unknown_model",
    ];

    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Toml(_) => "invalid_toml",
            Self::Json(_) => "invalid_json",
            Self::EmptyField { .. } => "empty_field",
            Self::BadId { .. } => "bad_id",
            Self::BadVendor { .. } => "bad_vendor",
            Self::BadCountry { .. } => "bad_country",
            Self::BadTimestamp { .. } => "bad_timestamp",
            Self::NoDevices => "no_devices",
            Self::TooManyDevices { .. } => "too_many_devices",
            Self::NoIdentity { .. } => "no_identity",
            Self::BadIdentity { .. } => "bad_identity",
            Self::DuplicateIdentity { .. } => "duplicate_identity",
            Self::UnknownModel { .. } => "unknown_model",
        }
    }
}

impl Device {
    /// How sentences name it: its UUID, else its serial, else its hardware identity (escaped:
    /// a sentence goes to terminals and logs).
    pub fn label(&self) -> String {
        use crate::text::escape;
        match (&self.uuid, &self.serial, &self.hardware_id) {
            (Some(u), _, _) => escape(u).into_owned(),
            (None, Some(s), _) => format!("serial {}", escape(s)),
            (None, None, Some(h)) => format!("hardware identity {}", escape(h)),
            (None, None, None) => "without identity".to_owned(),
        }
    }
}

impl Shipment {
    /// Parses and validates a shipment from TOML text (the authoring format).
    pub fn from_toml_str(text: &str) -> Result<Self, ShipmentError> {
        check_size(text.len())?;
        let raw: RawShipment = toml::from_str(text)?;
        raw.validate()
    }

    /// Parses and validates a shipment from JSON (the payload of a signed shipment, as
    /// [`Shipment::to_json`] writes it). The same checks as [`Shipment::from_toml_str`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ShipmentError> {
        check_size(bytes.len())?;
        let raw: RawShipment = serde_json::from_slice(bytes)?;
        raw.validate()
    }

    /// The shipment as JSON with stable keys (the TOML keys, in file order): `delivered_at`
    /// as RFC 3339 UTC, absent device identities left out.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The shipment id, as the vendor numbers it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The vendor's display name, as the record gives it (the verifier names the vendor by
    /// the signer's certificate).
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// The id of the licence the GPUs ship under.
    pub fn licence(&self) -> &str {
        &self.licence
    }

    /// When the GPUs were delivered, Unix seconds.
    pub fn delivered_at(&self) -> i64 {
        self.delivered_at
    }

    /// Where they were delivered.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The GPUs shipped, in file order (1 to [`MAX_DEVICES`]; no identity repeated).
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }
}

/// The JSON form, borrowed from a [`Shipment`].
#[derive(Serialize)]
struct WireShipment<'a> {
    id: &'a str,
    vendor: &'a str,
    licence: &'a str,
    delivered_at: String,
    delivery: &'a Delivery,
    devices: &'a [Device],
}

impl Serialize for Shipment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireShipment {
            id: &self.id,
            vendor: &self.vendor,
            licence: &self.licence,
            delivered_at: time::format_rfc3339(self.delivered_at),
            delivery: &self.delivery,
            devices: &self.devices,
        }
        .serialize(serializer)
    }
}

fn check_size(len: usize) -> Result<(), ShipmentError> {
    if len > MAX_SHIPMENT_BYTES {
        Err(ShipmentError::TooLarge {
            len,
            max: MAX_SHIPMENT_BYTES,
        })
    } else {
        Ok(())
    }
}

/// At most [`SHOWN_CHARS`] characters of a refused value, for an error message.
fn shown(value: &str) -> String {
    value.chars().take(SHOWN_CHARS).collect()
}

/// The shipment as written (TOML or JSON), before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShipment {
    id: String,
    vendor: String,
    licence: String,
    delivered_at: TimestampText,
    delivery: RawDelivery,
    #[serde(default)]
    devices: Vec<RawDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    site: String,
    country: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    serial: Option<String>,
    #[serde(default)]
    hardware_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// An id in the licence id alphabet ([`crate::site::is_valid_id`]).
fn check_id(key: &'static str, value: String) -> Result<String, ShipmentError> {
    if value.trim().is_empty() {
        return Err(ShipmentError::EmptyField { key, what: "id" });
    }
    if crate::site::is_valid_id(&value) {
        Ok(value)
    } else {
        Err(ShipmentError::BadId {
            key,
            value: shown(&value),
            rule: crate::site::ID_RULE,
        })
    }
}

fn check_vendor(value: String) -> Result<String, ShipmentError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ShipmentError::EmptyField {
            key: "vendor",
            what: "vendor's name, as its customers know it",
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ShipmentError::BadVendor {
            value: shown(&value),
            reason: "holds a control character (a line break, an escape); write the name on \
                     one line",
        });
    }
    if trimmed.chars().count() > MAX_VENDOR_CHARS {
        return Err(ShipmentError::BadVendor {
            value: shown(&value),
            reason: "is longer than 128 characters; shorten it",
        });
    }
    Ok(trimmed.to_owned())
}

/// Which identity of a device, for messages and the repeat check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IdentityKey {
    Uuid,
    Serial,
    HardwareId,
}

impl IdentityKey {
    const fn key(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Serial => "serial",
            Self::HardwareId => "hardware_id",
        }
    }
}

/// A UUID or serial: trimmed, 1 to [`MAX_IDENTITY_CHARS`] printable ASCII characters; a
/// hardware id: trimmed, [`MIN_HARDWARE_ID_CHARS`] to [`MAX_HARDWARE_ID_CHARS`] hex digits,
/// kept lower case.
fn check_identity(
    index: usize,
    which: IdentityKey,
    value: String,
) -> Result<String, ShipmentError> {
    let bad = |reason: &'static str| ShipmentError::BadIdentity {
        index,
        key: which.key(),
        value: shown(&value),
        reason,
    };
    let trimmed = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Err(bad("is empty; give the identity or leave the key out"));
    }
    match which {
        IdentityKey::Uuid | IdentityKey::Serial => {
            if !trimmed.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(bad(
                    "holds characters other than printable ASCII; copy it as NVML or the \
                     board label gives it",
                ));
            }
            if trimmed.len() > MAX_IDENTITY_CHARS {
                return Err(bad("is longer than 64 characters; check the value"));
            }
            Ok(trimmed.to_owned())
        }
        IdentityKey::HardwareId => {
            if !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(
                    "is not hex; give the hardware identity as hex digits (the SHA-256 of \
                     the device certificate's key, as `gpu-evidence` shows it)",
                ));
            }
            if !(MIN_HARDWARE_ID_CHARS..=MAX_HARDWARE_ID_CHARS).contains(&trimmed.len()) {
                return Err(bad("is not 16 to 128 hex digits; check the value"));
            }
            Ok(trimmed.to_ascii_lowercase())
        }
    }
}

impl RawShipment {
    fn validate(self) -> Result<Shipment, ShipmentError> {
        let id = check_id("id", self.id)?;
        let vendor = check_vendor(self.vendor)?;
        let licence = check_id("licence", self.licence)?;
        let delivered_at = time::parse_rfc3339(&self.delivered_at.0).map_err(|reason| {
            ShipmentError::BadTimestamp {
                value: shown(&self.delivered_at.0),
                reason,
            }
        })?;
        let site = check_id("delivery.site", self.delivery.site)?;
        let country =
            country::check(&self.delivery.country).map_err(|reason| ShipmentError::BadCountry {
                value: shown(&self.delivery.country),
                reason,
            })?;

        if self.devices.is_empty() {
            return Err(ShipmentError::NoDevices);
        }
        if self.devices.len() > MAX_DEVICES {
            return Err(ShipmentError::TooManyDevices {
                count: self.devices.len(),
                max: MAX_DEVICES,
            });
        }
        // Each identity, lower-cased, to the first device that listed it.
        let mut seen: BTreeMap<(IdentityKey, String), usize> = BTreeMap::new();
        let mut devices = Vec::with_capacity(self.devices.len());
        for (index, raw) in self.devices.into_iter().enumerate() {
            let device = check_device(index, raw)?;
            for (which, value) in [
                (IdentityKey::Uuid, &device.uuid),
                (IdentityKey::Serial, &device.serial),
                (IdentityKey::HardwareId, &device.hardware_id),
            ] {
                let Some(value) = value else { continue };
                if let Some(&first) = seen.get(&(which, value.to_ascii_lowercase())) {
                    return Err(ShipmentError::DuplicateIdentity {
                        key: which.key(),
                        value: shown(value),
                        first,
                        second: index,
                    });
                }
                seen.insert((which, value.to_ascii_lowercase()), index);
            }
            devices.push(device);
        }

        Ok(Shipment {
            id,
            vendor,
            licence,
            delivered_at,
            delivery: Delivery { site, country },
            devices,
        })
    }
}

fn check_device(index: usize, raw: RawDevice) -> Result<Device, ShipmentError> {
    let identity =
        |which, value: Option<String>| value.map(|v| check_identity(index, which, v)).transpose();
    let device = Device {
        uuid: identity(IdentityKey::Uuid, raw.uuid)?,
        serial: identity(IdentityKey::Serial, raw.serial)?,
        hardware_id: identity(IdentityKey::HardwareId, raw.hardware_id)?,
        model: raw
            .model
            .map(|model| {
                spec::by_model(&model)
                    .map(|row| row.model.to_owned())
                    .ok_or_else(|| ShipmentError::UnknownModel {
                        index,
                        model: shown(&model),
                    })
            })
            .transpose()?,
    };
    if device.uuid.is_none() && device.serial.is_none() && device.hardware_id.is_none() {
        return Err(ShipmentError::NoIdentity { index });
    }
    Ok(device)
}

#[cfg(test)]
mod tests;
