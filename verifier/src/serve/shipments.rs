//! Shipments in the service (issue 15): the routes that take and show vendor-signed shipment
//! records, each GPU's site history, and the shipments the fleet is evaluated with.
//!
//! - `POST /v1/shipments` (vendor, admin): the body is the shipment JWS; it is verified
//!   ([`crate::shipment::verify_token`]) before anything is stored, and a vendor may post only
//!   shipments under the licences its credential names (403 otherwise, logged). A refused
//!   token is answered with the refusal's code and never stored. A shipment id is stored once:
//!   the same token again is answered 200 (`added: false`), another token under a stored id 409
//!   `shipment_id_taken`.
//! - `GET /v1/shipments`, `GET /v1/shipments/{id}`: a vendor sees the shipments of its licences
//!   only (another's is answered as unknown); operator, regulator (through its redactions) and
//!   admin see all. A shipment's devices come with where the fleet holds them now (node, site)
//!   and their site history.
//! - `GET /v1/devices/{identity}/sites`: a device's site history (`hw:`, `uuid:` or `serial:`
//!   identity); a vendor sees only devices on its shipments.
//! - The fleet ([`ShipmentsHeld`]): the stored shipments are reloaded when the lifecycle count
//!   moves (a new shipment counts in it) and each token is verified once per process, at the
//!   instant it was received (a shipment records a delivery that happened: it does not lapse
//!   when its signing certificate later expires), then cached by its SHA-256.
//!
//! The site history is written by the batch that records the attestations
//! ([`super::webhooks::stage_batch`], [`sightings`]): one sighting per GPU identity of an
//! accepted attestation (at most [`MAX_SUBMODS`]), keyed by its hardware identity where its
//! evidence verified, else its normalised UUID, else its serial; the site is the node
//! certificate's, else the node's claim, marked `claimed`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tppguard_proto::claims::MAX_SUBMODS;

use super::AppState;
use super::api::{ApiError, ApiResult, jose_body, json_response, now};
use super::auth::{Principal, Role};
use super::view::{Redact, View};
use crate::chain::{CrlDer, TrustAnchors};
use crate::policy::VerifiedAttestation;
use crate::policy::shipments::{ShippedDevice, VerifiedShipment};
use crate::store::{
    DeviceSighting, DeviceSite, MAX_DEVICE_KEY_LEN, MAX_HISTORY_SITE_LEN, NewShipment,
    ShipmentInsert, SiteSource, Store, StoredShipment,
};

type Shared = Arc<AppState>;

pub(super) const SHIPMENTS: &str = "/v1/shipments";
pub(super) const SHIPMENT: &str = "/v1/shipments/{id}";
pub(super) const DEVICE_SITES: &str = "/v1/devices/{identity}/sites";
pub(super) const OUTBOX: &str = "/v1/webhooks/outbox";

/// The routes of this module and the webhooks' outbox.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(SHIPMENTS, get(list).post(add))
        .route(SHIPMENT, get(one))
        .route(DEVICE_SITES, get(device_sites))
        .route(OUTBOX, get(super::webhooks::outbox))
}

// ---- device identities and sightings ----

/// The identity key of a GPU: `hw:<hex>` (a verified hardware identity, lower case),
/// `uuid:<uuid>` (trimmed, lower case) or `serial:<serial>` (trimmed), the first that is
/// given; `None` with none, or one too long to store.
pub(crate) fn device_key(
    hardware_id: Option<&str>,
    uuid: Option<&str>,
    serial: Option<&str>,
) -> Option<String> {
    device_keys(hardware_id, uuid, serial).into_iter().next()
}

/// Every identity key a GPU is known by, strongest first (see [`device_key`]).
fn device_keys(hardware_id: Option<&str>, uuid: Option<&str>, serial: Option<&str>) -> Vec<String> {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    [
        nonempty(hardware_id).map(|h| format!("hw:{}", h.to_ascii_lowercase())),
        nonempty(uuid).map(|u| format!("uuid:{}", u.to_ascii_lowercase())),
        nonempty(serial).map(|s| format!("serial:{s}")),
    ]
    .into_iter()
    .flatten()
    .filter(|k| k.len() <= MAX_DEVICE_KEY_LEN && !k.contains('\0'))
    .collect()
}

/// The keys a shipped device is known by.
fn shipped_keys(d: &ShippedDevice) -> Vec<String> {
    device_keys(
        d.hardware_id.as_deref(),
        d.uuid.as_deref(),
        d.serial.as_deref(),
    )
}

/// `text` as an identity key (normalised), if it is one.
fn parse_key(text: &str) -> Option<String> {
    let (kind, value) = text.split_once(':')?;
    match kind {
        "hw" => device_key(Some(value), None, None),
        "uuid" => device_key(None, Some(value), None),
        "serial" => device_key(None, None, Some(value)),
        _ => None,
    }
}

/// The GPUs of accepted attestation `a`, seen at `at`: one sighting per identity (at most
/// [`MAX_SUBMODS`]).
pub(crate) fn sightings(a: &VerifiedAttestation, at: i64) -> Vec<DeviceSighting> {
    let (site, site_source) = match a.certified_site() {
        Some(site) => (Some(site.as_str().to_owned()), SiteSource::Certified),
        None => match a
            .claims()
            .site()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_HISTORY_SITE_LEN && !s.contains('\0'))
        {
            Some(site) => (Some(site.to_owned()), SiteSource::Claimed),
            None => (None, SiteSource::None),
        },
    };
    let node_id = a.node_id().to_string();
    let mut seen = HashSet::new();
    a.claims()
        .submods
        .iter()
        .take(MAX_SUBMODS)
        .filter_map(|(name, gpu)| {
            device_key(
                a.verified_hardware_id(name),
                gpu.uuid.as_deref(),
                gpu.serial.as_deref(),
            )
        })
        .filter(|key| seen.insert(key.clone()))
        .map(|device| DeviceSighting {
            device,
            node_id: node_id.clone(),
            site: site.clone(),
            site_source,
            at,
        })
        .collect()
}

// ---- the shipments the fleet is evaluated with ----

/// The stored shipments and what verifying them gave.
#[derive(Default)]
pub(crate) struct ShipmentsHeld {
    stored: RwLock<Vec<StoredShipment>>,
    checked: Mutex<Checked>,
}

/// What verifying the stored shipments gave, under the vendor CRLs they were checked against.
#[derive(Default)]
struct Checked {
    /// The `[vendor] crls` in use when these were checked: other CRLs (a reload revoking a
    /// signer) void every result.
    vendor_crls: Vec<CrlDer>,
    /// By token SHA-256: the verified shipment, or why it did not verify.
    by_token: HashMap<String, Result<VerifiedShipment, String>>,
}

impl ShipmentsHeld {
    /// Reads the stored shipments again (the fleet calls it when the lifecycle count moved).
    pub(crate) async fn reload(&self, store: &Store) -> ApiResult<()> {
        let stored = store.shipments().await?;
        *self.stored.write().unwrap_or_else(PoisonError::into_inner) = stored;
        Ok(())
    }

    /// The stored shipments that verify (each at the instant it was received, once per
    /// token and vendor CRLs), by id.
    pub(crate) fn verified(&self, trust: &TrustAnchors) -> Vec<VerifiedShipment> {
        let stored = self.stored.read().unwrap_or_else(PoisonError::into_inner);
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.vendor_crls.as_slice() != trust.vendor_crls() {
            // A revoked signer's shipments must stop counting: check every token again.
            checked.vendor_crls = trust.vendor_crls().to_vec();
            checked.by_token.clear();
        }
        let mut out = Vec::with_capacity(stored.len());
        for row in stored.iter() {
            let result = checked
                .by_token
                .entry(row.token_sha256.clone())
                .or_insert_with(|| {
                    let result = crate::shipment::verify_token(trust, &row.token, row.received_at)
                        .map_err(|e| format!("{}: {}", e.code(), e.sentence()))
                        .and_then(|v| {
                            if v.id == row.id && v.licence == row.licence {
                                Ok(v)
                            } else {
                                Err("its token names another id or licence than its row".to_owned())
                            }
                        });
                    if let Err(e) = &result {
                        tracing::warn!(
                            shipment = %tppguard_proto::text::escape(&row.id),
                            reason = %e,
                            "a stored shipment does not verify; it is left out"
                        );
                    }
                    result
                });
            if let Ok(v) = result {
                out.push(v.clone());
            }
        }
        out
    }
}

// ---- routes ----

/// The refusal of a shipment token.
fn refused(code: &'static str, sentence: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        format!("the shipment is rejected: {sentence}"),
    )
}

/// `POST /v1/shipments`.
async fn add(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let token = jose_body(&headers, body)?;
    let now = now(&s)?;
    let verified = crate::shipment::verify_token(&s.trust(), &token, now)
        .map_err(|e| refused(e.code(), e.sentence()))?;
    if principal.role == Role::Vendor && !principal.licences.contains(&verified.licence) {
        s.metrics.refused("shipment_licence_forbidden");
        tracing::warn!(
            credential = %tppguard_proto::text::escape(&principal.name),
            licence = %tppguard_proto::text::escape(&verified.licence),
            shipment = %tppguard_proto::text::escape(&verified.id),
            "a vendor posted a shipment under a licence its credential does not name"
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "shipment_licence_forbidden",
            format!(
                "this credential may post shipments under {} only, not {}: ask the operator for \
                 a vendor credential naming that licence",
                principal.licences.join(", "),
                tppguard_proto::text::escape(&verified.licence)
            ),
        ));
    }
    let row = NewShipment {
        id: verified.id.clone(),
        licence: verified.licence.clone(),
        vendor: verified.vendor.clone(),
        token,
        delivered_at: verified.delivered_at,
        received_at: now,
        received_by: principal.name.clone(),
    };
    let (status, added) = match s.store.add_shipment(&row).await? {
        ShipmentInsert::Added => (StatusCode::CREATED, true),
        ShipmentInsert::AlreadyStored => (StatusCode::OK, false),
        ShipmentInsert::Conflict {
            stored_sha256,
            stored_vendor,
        } => {
            // Another vendor's record: its hash is not this caller's to see.
            let hash = if stored_vendor == verified.vendor {
                format!(" (SHA-256 {stored_sha256})")
            } else {
                String::new()
            };
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "shipment_id_taken",
                format!(
                    "shipment {} is already recorded with another token{hash}: a shipment \
                     record is kept as first received; sign a correction under a new shipment id",
                    tppguard_proto::text::escape(&verified.id)
                ),
            ));
        }
        ShipmentInsert::Full { max } => {
            s.metrics.refused("shipments_full");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "shipments_full",
                format!(
                    "shipment {} is not recorded: this verifier holds its most shipments \
                     ({max}), and shipments are never deleted; ask the operator to archive the \
                     store and start a new one, or to run another verifier for new licences",
                    tppguard_proto::text::escape(&verified.id)
                ),
            ));
        }
    };
    json_response(
        status,
        &json!({
            "shipment": verified.id,
            "licence": verified.licence,
            "added": added,
            "token_sha256": crate::store::sha256_hex(row.token.as_bytes()),
        }),
    )
}

/// A shipment as the routes show it.
#[derive(Debug, Serialize)]
struct ShownShipment<'a> {
    id: &'a str,
    licence: &'a str,
    vendor: &'a str,
    site: &'a str,
    delivered_at: i64,
    received_at: i64,
    received_by: &'a str,
    token_sha256: &'a str,
    devices: usize,
}

/// What the routes show of a stored row besides the verified shipment (never its token).
struct Receipt {
    received_at: i64,
    received_by: String,
    token_sha256: String,
}

fn shown<'a>(v: &'a VerifiedShipment, row: &'a Receipt) -> ShownShipment<'a> {
    ShownShipment {
        id: &v.id,
        licence: &v.licence,
        vendor: &v.vendor,
        site: &v.site,
        delivered_at: v.delivered_at,
        received_at: row.received_at,
        received_by: &row.received_by,
        token_sha256: &row.token_sha256,
        devices: v.devices.len(),
    }
}

/// The verified shipments `view` sees, with their rows, by id.
async fn visible<'v>(s: &Shared, view: &View<'v>) -> ApiResult<Vec<(VerifiedShipment, Receipt)>> {
    s.fleet.refresh_for_read(&s.store).await?;
    let verified = s.fleet.shipments.verified(&s.trust());
    let stored = s
        .fleet
        .shipments
        .stored
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    // Borrowed: a read clones no stored token.
    let rows: HashMap<&str, &StoredShipment> = stored.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut out: Vec<(VerifiedShipment, Receipt)> = verified
        .into_iter()
        .filter(|v| view.sees_licence(&v.licence))
        .filter_map(|v| {
            let r = rows.get(v.id.as_str())?;
            let receipt = Receipt {
                received_at: r.received_at,
                received_by: r.received_by.clone(),
                token_sha256: r.token_sha256.clone(),
            };
            Some((v, receipt))
        })
        .collect();
    out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    licence: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// `GET /v1/shipments`: a page of the shipments the caller sees, by id.
async fn list(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| super::reads::bad_query(&e))?;
    let limit = q.limit.unwrap_or(super::reads::DEFAULT_PAGE);
    if !(1..=super::reads::MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be 1 to {}", super::reads::MAX_PAGE),
        ));
    }
    let view = View::of(&principal, &s.redactor);
    let all = visible(&s, &view).await?;
    let matching: Vec<&(VerifiedShipment, Receipt)> = all
        .iter()
        .filter(|(v, _)| q.licence.as_deref().is_none_or(|l| v.licence == l))
        .collect();
    let page: Vec<ShownShipment<'_>> = matching
        .iter()
        .filter(|(v, _)| q.after.as_deref().is_none_or(|a| v.id.as_str() > a))
        .take(limit)
        .map(|(v, r)| shown(v, r))
        .collect();
    let next = (page.len() == limit)
        .then(|| page.last().map(|p| p.id.to_owned()))
        .flatten()
        .filter(|last| matching.last().is_some_and(|(v, _)| v.id != *last));
    json_response(
        StatusCode::OK,
        &json!({"total": matching.len(), "shipments": page, "next": next}),
    )
}

fn unknown_shipment(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "shipment_unknown",
        format!(
            "no shipment {} is known to this credential: GET /v1/shipments lists those it sees",
            tppguard_proto::text::escape(id)
        ),
    )
}

/// Where the fleet holds a GPU now.
#[derive(Debug, Clone, Serialize)]
struct HeldAt {
    node: String,
    gpu: String,
    site: Option<String>,
    site_certified: bool,
    stale: bool,
}

/// A shipped device as `GET /v1/shipments/{id}` shows it.
#[derive(Debug, Serialize)]
struct ShownDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hardware_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    /// The identity keys it is known by (history and `GET /v1/devices/{identity}/sites`).
    identities: Vec<String>,
    /// Where the fleet's current attestations hold it (more than one place: a duplicate).
    held_at: Vec<HeldAt>,
    /// Its site history, oldest first, over all its identities.
    sites: Vec<DeviceSite>,
}

/// `GET /v1/shipments/{id}`: the shipment, and for each device where the fleet holds it now
/// and its site history.
async fn one(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let view = View::of(&principal, &s.redactor);
    let all = visible(&s, &view).await?;
    let Some((v, row)) = all.iter().find(|(v, _)| v.id == id) else {
        return Err(unknown_shipment(&id));
    };
    let snapshot = super::reads::current(&s).await?;
    let keys: Vec<Vec<String>> = v.devices.iter().map(shipped_keys).collect();
    let wanted: HashSet<&str> = keys.iter().flatten().map(String::as_str).collect();
    let mut held: HashMap<String, Vec<HeldAt>> = HashMap::new();
    for n in &snapshot.verdict.nodes {
        for g in &n.gpus {
            let hw = g
                .gpu_evidence
                .as_deref()
                .filter(|e| e.verified())
                .and_then(|e| e.hardware_id.as_deref());
            for key in device_keys(hw, g.uuid.as_deref(), g.serial.as_deref()) {
                if wanted.contains(key.as_str()) {
                    held.entry(key).or_default().push(HeldAt {
                        node: n.node.to_string(),
                        gpu: g.submod.to_string(),
                        site: n.site.as_deref().map(str::to_owned),
                        site_certified: n.site_certified,
                        stale: n.stale,
                    });
                }
            }
        }
    }
    let all_keys: Vec<String> = wanted.iter().map(|k| (*k).to_owned()).collect();
    let mut history = s.store.device_sites_of(&all_keys).await?;
    let devices: Vec<ShownDevice> = v
        .devices
        .iter()
        .zip(keys)
        .map(|(d, keys)| {
            let mut places: BTreeMap<(String, String, String), HeldAt> = BTreeMap::new();
            let mut sites: Vec<DeviceSite> = Vec::new();
            for key in &keys {
                for h in held.get(key).into_iter().flatten() {
                    places.insert((h.node.clone(), h.gpu.clone(), String::new()), h.clone());
                }
                sites.extend(history.remove(key).unwrap_or_default());
            }
            sites.sort_by_key(|a| (a.first_seen, a.last_seen));
            ShownDevice {
                uuid: d.uuid.as_deref().map(|u| view.redacted(Redact::Uuids, u)),
                serial: d
                    .serial
                    .as_deref()
                    .map(|x| view.redacted(Redact::Serials, x)),
                hardware_id: d
                    .hardware_id
                    .as_deref()
                    .map(|h| view.redacted(Redact::HardwareIds, h)),
                model: d.model.clone(),
                identities: keys.iter().map(|k| redacted_key(&view, k)).collect(),
                held_at: places.into_values().collect(),
                sites,
            }
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"shipment": shown(v, row), "devices": devices}),
    )
}

/// An identity key as `view` may see it.
fn redacted_key(view: &View<'_>, key: &str) -> String {
    let Some((kind, value)) = key.split_once(':') else {
        return key.to_owned();
    };
    let what = match kind {
        "hw" => Redact::HardwareIds,
        "uuid" => Redact::Uuids,
        _ => Redact::Serials,
    };
    format!("{kind}:{}", view.redacted(what, value))
}

/// `GET /v1/devices/{identity}/sites`: the device's site history, oldest first.
async fn device_sites(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(identity): Path<String>,
) -> ApiResult<Response> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "device_unknown",
            format!(
                "no device {} is known to this credential: name it as hw:HEX, uuid:GPU-... or \
                 serial:SERIAL (a vendor sees the devices on its shipments)",
                tppguard_proto::text::escape(&identity)
            ),
        )
    };
    let Some(key) = parse_key(&identity) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "device_identity_malformed",
            format!(
                "{} is not a device identity: write hw:HEX, uuid:GPU-... or serial:SERIAL",
                tppguard_proto::text::escape(&identity)
            ),
        ));
    };
    let view = View::of(&principal, &s.redactor);
    if !view.is_whole_fleet() {
        let shipped = visible(&s, &view)
            .await?
            .iter()
            .any(|(v, _)| v.devices.iter().any(|d| shipped_keys(d).contains(&key)));
        if !shipped {
            return Err(unknown());
        }
    }
    let sites = s.store.device_sites(&key).await?;
    json_response(
        StatusCode::OK,
        &json!({"device": redacted_key(&view, &key), "sites": sites}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keys_prefer_the_verified_hardware_identity_and_normalise() {
        assert_eq!(
            device_key(Some("AB12"), Some("GPU-X"), Some("S1")).as_deref(),
            Some("hw:ab12")
        );
        assert_eq!(
            device_key(None, Some(" GPU-AbC "), Some("S1")).as_deref(),
            Some("uuid:gpu-abc")
        );
        assert_eq!(
            device_key(None, Some("  "), Some(" S1 ")).as_deref(),
            Some("serial:S1")
        );
        assert_eq!(device_key(None, None, None), None);
        assert_eq!(
            device_key(None, Some(&"u".repeat(400)), None),
            None,
            "too long"
        );
        assert_eq!(parse_key("uuid:GPU-ABC").as_deref(), Some("uuid:gpu-abc"));
        assert_eq!(parse_key("hw:AB").as_deref(), Some("hw:ab"));
        for bad in ["", "GPU-ABC", "mac:1", "uuid:", "serial:\0"] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
        let d = ShippedDevice {
            uuid: Some("GPU-1".to_owned()),
            serial: Some("S".to_owned()),
            hardware_id: None,
            model: None,
        };
        assert_eq!(shipped_keys(&d), ["uuid:gpu-1", "serial:S"]);
    }
}

#[cfg(test)]
mod route_tests {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::header;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::policy::bench_support;

    async fn state(dir: &std::path::Path) -> Shared {
        crate::pki::init(&dir.join("pki"), crate::unix_now().unwrap()).unwrap();
        super::super::test_state(dir).await
    }

    fn principal(role: Role, licences: &[&str]) -> Principal {
        Principal {
            name: format!("test-{role}"),
            role,
            licences: licences.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    async fn call(s: &Shared, p: Principal, request: Request<Body>) -> (u16, Value) {
        let app = routes().with_state(Arc::clone(s)).layer(Extension(p));
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_that_does_not_verify_is_refused_and_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path()).await;
        for p in [
            principal(Role::Vendor, &["LIC-A"]),
            principal(Role::Admin, &[]),
        ] {
            for body in ["not a jws", "eyJhbGciOiJFZERTQSJ9.e30.c2ln", "\u{0}\u{1}"] {
                let request = Request::post(SHIPMENTS)
                    .header(header::CONTENT_TYPE, "application/jose")
                    .body(Body::from(body))
                    .unwrap();
                let (status, answer) = call(&s, p.clone(), request).await;
                assert_eq!(status, 422, "{answer}");
                assert!(
                    answer["code"].as_str().is_some_and(|c| !c.is_empty()),
                    "{answer}"
                );
            }
            // Another content type is refused before anything is read.
            let request = Request::post(SHIPMENTS)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap();
            assert_eq!(call(&s, p.clone(), request).await.0, 415);
        }
        assert_eq!(s.store.shipment_count().await.unwrap(), 0);
        // A stored row whose token does not verify is never shown, nor evaluated.
        let row = NewShipment {
            id: "SHP-FORGED".to_owned(),
            licence: "LIC-A".to_owned(),
            vendor: "CN=nobody".to_owned(),
            token: "forged.token.here".to_owned(),
            delivered_at: 1,
            received_at: 2,
            received_by: "db-writer".to_owned(),
        };
        s.store.add_shipment(&row).await.unwrap();
        let (status, answer) = call(&s, principal(Role::Operator, &[]), get(SHIPMENTS)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["total"], 0, "{answer}");
        let (status, answer) = call(
            &s,
            principal(Role::Operator, &[]),
            get("/v1/shipments/SHP-FORGED"),
        )
        .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (404, Some("shipment_unknown"))
        );
        assert!(s.fleet.shipments.verified(&s.trust()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_batch_writes_the_site_history_a_vendor_sees_only_for_its_shipments() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path()).await;
        let (licences, attestations, rule_set, at) = bench_support::synthetic_fleet(2, 2, 1);
        let verdict = crate::policy::evaluate(&licences, &[], &rule_set, &attestations, at);
        let refs: Vec<&VerifiedAttestation> = attestations.iter().collect();
        let mut tx = s.store.begin_batch().await.unwrap();
        super::super::webhooks::stage_batch(&s, &mut tx, &refs, &verdict, at)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let uuid = attestations[1].claims().submods["gpu1"]
            .uuid
            .clone()
            .unwrap();
        let path = format!("/v1/devices/uuid:{uuid}/sites");
        let (status, answer) = call(&s, principal(Role::Operator, &[]), get(&path)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["device"],
            format!("uuid:{}", uuid.to_ascii_lowercase())
        );
        let sites = answer["sites"].as_array().unwrap();
        assert_eq!(sites.len(), 1, "{answer}");
        assert_eq!(sites[0]["node"], attestations[1].node_id().to_string());
        assert_eq!(sites[0]["site"], "site-0");
        assert_eq!(sites[0]["site_source"], "certified");
        assert_eq!(
            (
                sites[0]["first_seen"].as_i64(),
                sites[0]["last_seen"].as_i64()
            ),
            (Some(at), Some(at))
        );
        // A vendor sees no device that is on none of its shipments (there are none).
        let vendor = principal(Role::Vendor, &["SYN-DE-0000"]);
        let (status, answer) = call(&s, vendor.clone(), get(&path)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (404, Some("device_unknown"))
        );
        let (status, answer) = call(&s, vendor, get(SHIPMENTS)).await;
        assert_eq!((status, answer["total"].as_u64()), (200, Some(0)));
        // Identities are named with their kind.
        let (status, answer) = call(
            &s,
            principal(Role::Operator, &[]),
            get("/v1/devices/GPU-1/sites"),
        )
        .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("device_identity_malformed"))
        );
    }

    /// A state holding the example licence, two synthetic nodes (two GPUs each, at site-0,
    /// certified) recorded with their site history, and two shipments taken as verified:
    /// SHP-A (vendor A, LIC-A) with node 0's gpu0, SHP-B (vendor B, LIC-B) with node 1's gpu0.
    /// Their tokens are placeholders put in the verification cache: what is tested is the
    /// service around a verified shipment (the shipment verifier is tested on its own).
    async fn two_vendors(dir: &std::path::Path) -> (Shared, Vec<VerifiedAttestation>) {
        use tppguard_proto::jws::{self, Header};
        let s = state(dir).await;
        let now = crate::unix_now().unwrap();
        let authority = dir.join("pki").join(crate::pki::LICENCE_AUTHORITY_DIR);
        let signer = crate::licence::load_signer(&authority).unwrap();
        let licence = tppguard_proto::licence::Licence::from_toml_str(include_str!(
            "../../../examples/licence.toml"
        ))
        .unwrap();
        let header = Header::new(signer.key.alg())
            .with_typ(crate::licence::LICENCE_TYP)
            .with_x5c(signer.x5c.clone());
        let token = jws::sign(&header, &licence.to_json().unwrap(), &signer.key).unwrap();
        s.store
            .add_licence(licence.id(), &token, now)
            .await
            .unwrap();
        let (_, attestations, rule_set, _) = bench_support::synthetic_fleet(2, 2, 1);
        let rows: Vec<crate::store::NewAttestation> = attestations
            .iter()
            .enumerate()
            .map(|(i, a)| {
                crate::store::NewAttestation::accepted(
                    a,
                    format!("token-{i}"),
                    serde_json::to_string(a.claims()).unwrap(),
                    now,
                    None,
                )
            })
            .collect();
        let verdict = crate::policy::evaluate(&[], &[], &rule_set, &attestations, now);
        let refs: Vec<&VerifiedAttestation> = attestations.iter().collect();
        let mut tx = s.store.begin_batch().await.unwrap();
        tx.record_many(&rows).await.unwrap();
        super::super::webhooks::stage_batch(&s, &mut tx, &refs, &verdict, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for (id, licence, vendor, node) in [
            ("SHP-A", "LIC-A", "CN=Vendor A", 0),
            ("SHP-B", "LIC-B", "CN=Vendor B", 1),
        ] {
            let token = format!("token-of-{id}");
            let uuid = attestations[node].claims().submods["gpu0"].uuid.clone();
            let verified = VerifiedShipment {
                id: id.to_owned(),
                licence: licence.to_owned(),
                vendor: vendor.to_owned(),
                site: "site-0".to_owned(),
                country: "DE".parse().unwrap(),
                delivered_at: now - 86_400,
                devices: vec![ShippedDevice {
                    uuid,
                    serial: None,
                    hardware_id: None,
                    model: Some("H100 SXM5 80GB".to_owned()),
                }],
                token_sha256: crate::store::sha256_hex(token.as_bytes()),
            };
            s.fleet
                .shipments
                .checked
                .lock()
                .unwrap()
                .by_token
                .insert(verified.token_sha256.clone(), Ok(verified));
            let row = NewShipment {
                id: id.to_owned(),
                licence: licence.to_owned(),
                vendor: vendor.to_owned(),
                token,
                delivered_at: now - 86_400,
                received_at: now,
                received_by: "test".to_owned(),
            };
            assert_eq!(
                s.store.add_shipment(&row).await.unwrap(),
                ShipmentInsert::Added
            );
        }
        (s, attestations)
    }

    /// A result cached under other vendor CRLs (before a reload revoking the signer) is
    /// voided: the token is verified again under the CRLs in use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_vendor_crls_void_the_cached_verifications() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = two_vendors(dir.path()).await;
        s.fleet.shipments.reload(&s.store).await.unwrap();
        let trust = s.trust();
        assert_eq!(s.fleet.shipments.verified(&trust).len(), 2, "as cached");
        // As if these were checked under CRLs that are no longer those in use.
        s.fleet.shipments.checked.lock().unwrap().vendor_crls = vec![CrlDer::from(vec![0x30, 0])];
        let held = s.fleet.shipments.verified(&trust);
        assert!(held.is_empty(), "the seeded tokens do not verify: {held:?}");
        assert_eq!(
            s.fleet
                .shipments
                .checked
                .lock()
                .unwrap()
                .vendor_crls
                .as_slice(),
            trust.vendor_crls()
        );
    }

    fn ids(answer: &Value) -> Vec<String> {
        answer["shipments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vendor_a_never_sees_vendor_bs_shipments_or_history() {
        let dir = tempfile::tempdir().unwrap();
        let (s, attestations) = two_vendors(dir.path()).await;
        let uuid = |n: usize| {
            attestations[n].claims().submods["gpu0"]
                .uuid
                .clone()
                .unwrap()
                .to_ascii_lowercase()
        };
        let a = principal(Role::Vendor, &["LIC-A"]);
        let b = principal(Role::Vendor, &["LIC-B"]);
        let (status, answer) = call(&s, a.clone(), get(SHIPMENTS)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(ids(&answer), ["SHP-A"]);
        let (_, answer) = call(&s, b.clone(), get(SHIPMENTS)).await;
        assert_eq!(ids(&answer), ["SHP-B"]);
        let (_, answer) = call(&s, principal(Role::Operator, &[]), get(SHIPMENTS)).await;
        assert_eq!(ids(&answer), ["SHP-A", "SHP-B"]);
        let (_, answer) = call(
            &s,
            principal(Role::Admin, &[]),
            get("/v1/shipments?licence=LIC-B"),
        )
        .await;
        assert_eq!(ids(&answer), ["SHP-B"]);
        // Another vendor's shipment is unknown, not forbidden: nothing about it leaks.
        let (status, answer) = call(&s, a.clone(), get("/v1/shipments/SHP-B")).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (404, Some("shipment_unknown"))
        );
        // Its own: the device, where the fleet holds it now, and its history.
        let (status, answer) = call(&s, a.clone(), get("/v1/shipments/SHP-A")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["shipment"]["licence"], "LIC-A");
        let device = &answer["devices"][0];
        assert_eq!(device["identities"][0], format!("uuid:{}", uuid(0)));
        assert_eq!(
            device["held_at"][0]["node"],
            attestations[0].node_id().to_string()
        );
        assert_eq!(device["held_at"][0]["site"], "site-0");
        assert_eq!(device["held_at"][0]["site_certified"], true);
        assert_eq!(device["sites"].as_array().unwrap().len(), 1, "{device}");
        assert!(
            !answer.to_string().contains(&uuid(1)),
            "nothing of B's: {answer}"
        );
        // Site histories: each vendor its own devices only.
        let path = |n: usize| format!("/v1/devices/uuid:{}/sites", uuid(n));
        assert_eq!(call(&s, a.clone(), get(&path(0))).await.0, 200);
        assert_eq!(call(&s, a, get(&path(1))).await.0, 404);
        assert_eq!(call(&s, b.clone(), get(&path(0))).await.0, 404);
        assert_eq!(call(&s, b, get(&path(1))).await.0, 200);
        // A regulator sees the shipment through its redactions.
        let (status, answer) = call(
            &s,
            principal(Role::Regulator, &[]),
            get("/v1/shipments/SHP-A"),
        )
        .await;
        assert_eq!(status, 200);
        assert!(!answer.to_string().contains(&uuid(0)), "{answer}");
        assert!(
            answer["devices"][0]["uuid"]
                .as_str()
                .unwrap()
                .starts_with("redacted-")
        );
    }
}
