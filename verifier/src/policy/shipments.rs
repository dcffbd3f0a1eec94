//! Shipments in the policy (issue 15): the vendor-signed records of which GPUs were delivered
//! where under which licence, as the verifier verified them, and what the fleet's attestations
//! say about them.

use serde::Serialize;

/// A GPU identity as a shipment lists it: at least one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippedDevice {
    /// "GPU-…" UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Board serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Hardware identity (the device certificate's, hex), where the vendor recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// The model, as the spec table names it, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

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
    /// When it was delivered, Unix seconds.
    pub delivered_at: i64,
    /// The GPUs shipped.
    pub devices: Vec<ShippedDevice>,
    /// SHA-256 (hex) of the signed token.
    pub token_sha256: String,
}
