//! Shipments (issue 15): the vendor-signed shipment records the verifier accepted, each GPU's
//! site history, and the webhook outbox.
//!
//! - A shipment id is stored once: the same token again changes nothing, a different token for
//!   the same id is a [`ShipmentInsert::Conflict`] (the first record stands; a vendor correcting
//!   a shipment issues a new id). Verification is the caller's job; the token is kept so it can
//!   be verified again.
//! - The site history ([`WriteBatch::record_device_sites`]) is written in the batch that records
//!   the attestations it comes from: a device's row is opened when it is first seen, or seen at
//!   another node or site than its latest row says; otherwise that row's `last_seen` moves.
//! - The outbox ([`WriteBatch::enqueue_events`], [`Store::enqueue_events`]) holds each webhook
//!   event once (its id is deterministic: `INSERT ... ON CONFLICT DO NOTHING`), until it is
//!   delivered or given up; delivery claims due rows for a while ([`Store::claim_due_events`]),
//!   so replicas do not send one row at once, and a claim that is never settled (the process
//!   died) is due again when it lapses: at-least-once, under the same id.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    MAX_LICENCE_ID_LEN, MAX_REASON_LEN, MAX_TOKEN_LEN, ROW_CHUNK, Store, StoreError, WriteBatch,
    check_len, limit_plus_one, placeholders, sha256_hex, values,
};

/// Most shipments [`Store::shipments`] returns; more is an error, never a silent cut.
pub const MAX_SHIPMENTS: usize = 10_000;
/// Longest shipment id stored.
pub const MAX_SHIPMENT_ID_LEN: usize = 256;
/// Longest vendor (certificate subject) or `received_by` stored.
pub const MAX_VENDOR_LEN: usize = 512;
/// Longest device identity key stored ([`DeviceSighting::device`]).
pub const MAX_DEVICE_KEY_LEN: usize = 300;
/// Longest site id stored in the history.
pub const MAX_HISTORY_SITE_LEN: usize = 256;
/// Most rows of one device's site history returned.
pub const MAX_SITE_HISTORY: usize = 1000;
/// Most site history rows [`Store::device_sites_of`] reads for 500 devices; more is an
/// error, never a silent cut.
pub const MAX_SITE_ROWS: usize = 100_000;
/// Most outbox rows [`Store::claim_due_events`] and [`Store::outbox`] return at once.
pub const MAX_OUTBOX_PAGE: usize = 1000;
/// Longest event payload stored (a signed event, a few KiB).
pub const MAX_EVENT_PAYLOAD_LEN: usize = 64 << 10;
/// Longest delivery error kept.
pub const MAX_DELIVERY_ERROR_LEN: usize = 1024;

/// A verified shipment to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShipment {
    /// The shipment id (the vendor's).
    pub id: String,
    /// The licence it ships under.
    pub licence: String,
    /// The vendor: the subject of the certificate that signed it.
    pub vendor: String,
    /// The compact JWS.
    pub token: String,
    /// When it was delivered (the shipment's word, signed by the vendor).
    pub delivered_at: i64,
    /// When this verifier received it.
    pub received_at: i64,
    /// Who posted it (a credential's name).
    pub received_by: String,
}

/// A stored shipment (verification is the caller's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShipment {
    /// The shipment id.
    pub id: String,
    /// The licence it ships under.
    pub licence: String,
    /// The vendor.
    pub vendor: String,
    /// The compact JWS.
    pub token: String,
    /// SHA-256 of the token, lower-case hex.
    pub token_sha256: String,
    /// When it was delivered.
    pub delivered_at: i64,
    /// When this verifier received it.
    pub received_at: i64,
    /// Who posted it.
    pub received_by: String,
}

/// What [`Store::add_shipment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipmentInsert {
    /// Stored now.
    Added,
    /// This very token was stored before: nothing changed.
    AlreadyStored,
    /// Another token is stored under this shipment id (its SHA-256): refused, the first
    /// record stands.
    Conflict {
        /// SHA-256 of the token stored under the id.
        stored_sha256: String,
        /// The vendor of the stored record (the route shows the hash to that vendor only).
        stored_vendor: String,
    },
    /// The store holds its most shipments already (`max`): refused, nothing written.
    Full {
        /// The bound.
        max: usize,
    },
}

/// Where a site in the history comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteSource {
    /// The node certificate's site (the operator CA's word).
    Certified,
    /// The node's own claim (no certified site).
    Claimed,
    /// Neither.
    None,
}

impl SiteSource {
    /// As stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Certified => "certified",
            Self::Claimed => "claimed",
            Self::None => "none",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "certified" => Some(Self::Certified),
            "claimed" => Some(Self::Claimed),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// One GPU seen in one accepted attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSighting {
    /// The device identity key: `hw:<hex>` (a verified hardware identity), `uuid:<uuid>`
    /// (normalised: trimmed, lower case) or `serial:<serial>` (trimmed).
    pub device: String,
    /// The node (its key), hex.
    pub node_id: String,
    /// The site, if any.
    pub site: Option<String>,
    /// Where the site comes from.
    pub site_source: SiteSource,
    /// When (the verifier's receipt time).
    pub at: i64,
}

/// One row of a device's site history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceSite {
    /// The node (its key), hex.
    pub node: String,
    /// The site, if any.
    pub site: Option<String>,
    /// Where the site comes from.
    pub site_source: SiteSource,
    /// First seen there.
    pub first_seen: i64,
    /// Last seen there.
    pub last_seen: i64,
}

/// A webhook event to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The deterministic event id (hex SHA-256).
    pub event_id: String,
    /// The webhook it goes to.
    pub webhook: String,
    /// The finding's code.
    pub code: String,
    /// The licence it is about.
    pub licence: String,
    /// The signed payload (compact JWS).
    pub payload: String,
    /// When it was made.
    pub created_at: i64,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxEvent {
    /// The event id.
    pub event_id: String,
    /// The webhook.
    pub webhook: String,
    /// The finding's code.
    pub code: String,
    /// The licence.
    pub licence: String,
    /// The signed payload.
    #[serde(skip)]
    pub payload: String,
    /// When it was made.
    pub created_at: i64,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When it is next due.
    pub next_attempt_at: i64,
    /// When it was delivered (a 2xx answer).
    pub delivered_at: Option<i64>,
    /// When delivery was given up (`max_attempts` reached).
    pub gave_up_at: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
}

const SHIPMENT_COLUMNS: &str =
    "shipment_id, licence_id, vendor, token, token_sha256, delivered_at, received_at, received_by";
const OUTBOX_COLUMNS: &str = "event_id, webhook, code, licence_id, payload, created_at, attempts, next_attempt_at, delivered_at, gave_up_at, last_error";

impl Store {
    /// Stores a verified shipment (see [`ShipmentInsert`]) in a write batch of its own, so it
    /// moves the fleet version and replicas take it in at their next refresh.
    pub async fn add_shipment(&self, s: &NewShipment) -> Result<ShipmentInsert, StoreError> {
        self.add_shipment_within(s, MAX_SHIPMENTS).await
    }

    /// [`Self::add_shipment`] with at most `max` shipments stored: a new id beyond it is
    /// [`ShipmentInsert::Full`] (shipments are never deleted, and the fleet reads at most
    /// [`MAX_SHIPMENTS`]: refusing here keeps every stored one evaluated).
    pub async fn add_shipment_within(
        &self,
        s: &NewShipment,
        max: usize,
    ) -> Result<ShipmentInsert, StoreError> {
        check_len("shipment id", &s.id, 1, MAX_SHIPMENT_ID_LEN)?;
        check_len("licence id", &s.licence, 1, MAX_LICENCE_ID_LEN)?;
        check_len("vendor", &s.vendor, 0, MAX_VENDOR_LEN)?;
        check_len("shipment token", &s.token, 1, MAX_TOKEN_LEN)?;
        check_len("received by", &s.received_by, 1, MAX_VENDOR_LEN)?;
        let sha = sha256_hex(s.token.as_bytes());
        let err = self.query_err("adding a shipment");
        let mut batch = self.begin_batch().await?;
        let known = sqlx::query("SELECT token_sha256 FROM shipments WHERE shipment_id = $1")
            .bind(&s.id)
            .fetch_optional(&mut *batch.tx)
            .await
            .map_err(&err)?;
        if known.is_none() {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM shipments")
                .fetch_one(&mut *batch.tx)
                .await
                .map_err(&err)?;
            let n: i64 = row.try_get("n").map_err(&err)?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= max {
                // Nothing was written: the transaction is dropped (rolled back).
                return Ok(ShipmentInsert::Full { max });
            }
        }
        let done = sqlx::query(
            "INSERT INTO shipments (shipment_id, licence_id, vendor, token, token_sha256, \
             delivered_at, received_at, received_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (shipment_id) DO NOTHING",
        )
        .bind(&s.id)
        .bind(&s.licence)
        .bind(&s.vendor)
        .bind(&s.token)
        .bind(&sha)
        .bind(s.delivered_at)
        .bind(s.received_at)
        .bind(&s.received_by)
        .execute(&mut *batch.tx)
        .await
        .map_err(&err)?;
        if done.rows_affected() == 1 {
            batch.commit().await?;
            return Ok(ShipmentInsert::Added);
        }
        let row = sqlx::query("SELECT token_sha256, vendor FROM shipments WHERE shipment_id = $1")
            .bind(&s.id)
            .fetch_one(&mut *batch.tx)
            .await
            .map_err(&err)?;
        let stored: String = row.try_get("token_sha256").map_err(&err)?;
        let stored_vendor: String = row.try_get("vendor").map_err(&err)?;
        // Nothing was written: the transaction is dropped (rolled back).
        Ok(if stored == sha {
            ShipmentInsert::AlreadyStored
        } else {
            ShipmentInsert::Conflict {
                stored_sha256: stored,
                stored_vendor,
            }
        })
    }

    /// How many shipments are stored (they are only ever added).
    pub async fn shipment_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM shipments")
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("counting shipments"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(self.query_err("counting shipments"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The stored shipments, by id: at most [`MAX_SHIPMENTS`] (the first by id). Never an
    /// error on count: the fleet reloads them on every refresh, and new ones are refused at
    /// the bound ([`ShipmentInsert::Full`]).
    pub async fn shipments(&self) -> Result<Vec<StoredShipment>, StoreError> {
        let sql = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments ORDER BY shipment_id LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::try_from(MAX_SHIPMENTS).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading shipments"))?;
        rows.iter()
            .take(MAX_SHIPMENTS)
            .map(|r| self.shipment_row(r))
            .collect()
    }

    /// The shipment `id`, if stored.
    pub async fn shipment(&self, id: &str) -> Result<Option<StoredShipment>, StoreError> {
        let sql = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE shipment_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.query_err("reading a shipment"))?;
        row.as_ref().map(|r| self.shipment_row(r)).transpose()
    }

    fn shipment_row(&self, r: &AnyRow) -> Result<StoredShipment, StoreError> {
        let err = self.query_err("reading shipments");
        let text = |c: &'static str| r.try_get::<String, _>(c).map_err(&err);
        let int = |c: &'static str| r.try_get::<i64, _>(c).map_err(&err);
        Ok(StoredShipment {
            id: text("shipment_id")?,
            licence: text("licence_id")?,
            vendor: text("vendor")?,
            token: text("token")?,
            token_sha256: text("token_sha256")?,
            delivered_at: int("delivered_at")?,
            received_at: int("received_at")?,
            received_by: text("received_by")?,
        })
    }

    /// The site history of `device` (its identity key), oldest first, at most
    /// [`MAX_SITE_HISTORY`] rows (the latest ones).
    pub async fn device_sites(&self, device: &str) -> Result<Vec<DeviceSite>, StoreError> {
        let err = self.query_err("reading a device's site history");
        let rows = sqlx::query(
            "SELECT node_id, site, site_source, first_seen, last_seen FROM device_sites \
             WHERE device = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(device)
        .bind(limit_plus_one(MAX_SITE_HISTORY).saturating_sub(1))
        .fetch_all(&self.pool)
        .await
        .map_err(&err)?;
        rows.iter().rev().map(|r| self.site_row(r)).collect()
    }

    /// The site histories of `devices` (identity keys), each oldest first; at most
    /// [`MAX_SITE_HISTORY`] rows per device are kept in the answer (the latest ones).
    pub async fn device_sites_of(
        &self,
        devices: &[String],
    ) -> Result<HashMap<String, Vec<DeviceSite>>, StoreError> {
        let err = self.query_err("reading site histories");
        let mut out: HashMap<String, Vec<DeviceSite>> = HashMap::new();
        for chunk in devices.chunks(ROW_CHUNK) {
            let sql = format!(
                "SELECT device, node_id, site, site_source, first_seen, last_seen FROM \
                 device_sites WHERE device IN ({}) ORDER BY device, id LIMIT $1",
                placeholders(chunk.len(), 2)
            );
            let mut query =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit_plus_one(MAX_SITE_ROWS));
            for d in chunk {
                query = query.bind(d.as_str());
            }
            let rows = query.fetch_all(&self.pool).await.map_err(&err)?;
            if rows.len() > MAX_SITE_ROWS {
                return Err(self.too_many("site history rows", MAX_SITE_ROWS));
            }
            for r in rows {
                let device: String = r.try_get("device").map_err(&err)?;
                let row = self.site_row(&r)?;
                out.entry(device).or_default().push(row);
            }
        }
        for rows in out.values_mut() {
            let extra = rows.len().saturating_sub(MAX_SITE_HISTORY);
            rows.drain(..extra);
        }
        Ok(out)
    }

    fn site_row(&self, r: &AnyRow) -> Result<DeviceSite, StoreError> {
        let err = self.query_err("reading site histories");
        let source: String = r.try_get("site_source").map_err(&err)?;
        let Some(site_source) = SiteSource::parse(&source) else {
            return Err(self.corrupt("device site", format!("site source {source:?}")));
        };
        Ok(DeviceSite {
            node: r.try_get("node_id").map_err(&err)?,
            site: r.try_get("site").map_err(&err)?,
            site_source,
            first_seen: r.try_get("first_seen").map_err(&err)?,
            last_seen: r.try_get("last_seen").map_err(&err)?,
        })
    }

    /// Queues events in a transaction of their own (no fleet lock: an event already queued is
    /// left as it is). Returns how many were new.
    pub async fn enqueue_events(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = insert_events(self, &mut tx, events).await?;
        tx.commit()
            .await
            .map_err(self.query_err("queueing webhook events"))?;
        Ok(n)
    }

    /// Which of `ids` are in the outbox already.
    pub async fn known_events(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(self.query_err("reading the outbox"))?;
        known_events(self, &mut conn, ids).await
    }

    /// Claims up to `limit` due events of `webhooks` (neither delivered nor given up,
    /// `next_attempt_at <= now`), oldest first: each counts an attempt (a claim the process
    /// died in counts too, so an event that kills its sender is given up in the end) and is
    /// moved to `next_attempt_at = until`, so no other delivery task takes it meanwhile; settle each with [`Store::event_delivered`]
    /// or [`Store::event_failed`]. A claim never settled is due again at `until`.
    pub async fn claim_due_events(
        &self,
        webhooks: &[&str],
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        if webhooks.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = limit.min(MAX_OUTBOX_PAGE);
        let sql = format!(
            "UPDATE outbox SET next_attempt_at = $1, attempts = attempts + 1 WHERE event_id IN (SELECT event_id FROM \
             outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= $2 \
             AND webhook IN ({}) ORDER BY next_attempt_at, created_at, event_id LIMIT $3) \
             AND delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= $2 \
             RETURNING {OUTBOX_COLUMNS}",
            placeholders(webhooks.len(), 4)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(until)
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        for w in webhooks {
            query = query.bind(*w);
        }
        let mut tx = self.begin_write().await?;
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(self.query_err("claiming due webhook events"))?;
        tx.commit()
            .await
            .map_err(self.query_err("claiming due webhook events"))?;
        let mut out: Vec<OutboxEvent> = rows
            .iter()
            .map(|r| self.event(r))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id)));
        Ok(out)
    }

    /// Marks `event_id` delivered at `at` (once: a second mark changes nothing).
    pub async fn event_delivered(&self, event_id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET delivered_at = $1, last_error = NULL \
             WHERE event_id = $2 AND delivered_at IS NULL",
        )
        .bind(at)
        .bind(event_id)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(self.query_err("marking a webhook event delivered"))
    }

    /// Records a failed attempt at `event_id`: its next attempt at `next_at`, or given up at
    /// `at` when `give_up`.
    pub async fn event_failed(
        &self,
        event_id: &str,
        at: i64,
        next_at: i64,
        give_up: bool,
        error: &str,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_DELIVERY_ERROR_LEN).collect();
        let error = error.replace('\0', "\\0");
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, last_error = $2, \
             gave_up_at = $3 WHERE event_id = $4 AND delivered_at IS NULL",
        )
        .bind(next_at)
        .bind(error)
        .bind(give_up.then_some(at))
        .bind(event_id)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(self.query_err("recording a failed webhook delivery"))
    }

    /// The outbox, newest first: at most `limit` (itself at most [`MAX_OUTBOX_PAGE`]) rows,
    /// only the undelivered ones when `pending`.
    pub async fn outbox(
        &self,
        pending: bool,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let filter = if pending {
            "WHERE delivered_at IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox {filter} \
             ORDER BY created_at DESC, event_id LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::try_from(limit.min(MAX_OUTBOX_PAGE)).unwrap_or(0))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading the outbox"))?;
        rows.iter().map(|r| self.event(r)).collect()
    }

    fn event(&self, r: &AnyRow) -> Result<OutboxEvent, StoreError> {
        let err = self.query_err("reading the outbox");
        let text = |c: &'static str| r.try_get::<String, _>(c).map_err(&err);
        let int = |c: &'static str| r.try_get::<i64, _>(c).map_err(&err);
        let opt = |c: &'static str| r.try_get::<Option<i64>, _>(c).map_err(&err);
        Ok(OutboxEvent {
            event_id: text("event_id")?,
            webhook: text("webhook")?,
            code: text("code")?,
            licence: text("licence_id")?,
            payload: text("payload")?,
            created_at: int("created_at")?,
            attempts: int("attempts")?,
            next_attempt_at: int("next_attempt_at")?,
            delivered_at: opt("delivered_at")?,
            gave_up_at: opt("gave_up_at")?,
            last_error: r.try_get("last_error").map_err(&err)?,
        })
    }
}

/// Which of `ids` are in the outbox.
async fn known_events(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    ids: &[String],
) -> Result<HashSet<String>, StoreError> {
    let mut known = HashSet::new();
    for chunk in ids.chunks(ROW_CHUNK) {
        let sql = format!(
            "SELECT event_id FROM outbox WHERE event_id IN ({})",
            placeholders(chunk.len(), 1)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query
            .fetch_all(&mut *conn)
            .await
            .map_err(store.query_err("reading the outbox"))?
        {
            known.insert(
                row.try_get("event_id")
                    .map_err(store.query_err("reading the outbox"))?,
            );
        }
    }
    Ok(known)
}

/// `INSERT ... ON CONFLICT DO NOTHING` of `events` (checked first); how many were new.
async fn insert_events(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    events: &[NewEvent],
) -> Result<u64, StoreError> {
    for e in events {
        check_event(e)?;
    }
    let mut new = 0;
    for chunk in events.chunks(ROW_CHUNK) {
        let sql = format!(
            "INSERT INTO outbox (event_id, webhook, code, licence_id, payload, created_at, \
             attempts, next_attempt_at) VALUES {} ON CONFLICT (event_id) DO NOTHING",
            values(chunk.len(), 8, 0)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            query = query
                .bind(e.event_id.as_str())
                .bind(e.webhook.as_str())
                .bind(e.code.as_str())
                .bind(e.licence.as_str())
                .bind(e.payload.as_str())
                .bind(e.created_at)
                .bind(0_i64)
                .bind(e.created_at);
        }
        new += query
            .execute(&mut **tx)
            .await
            .map_err(store.query_err("queueing webhook events"))?
            .rows_affected();
    }
    Ok(new)
}

fn check_event(e: &NewEvent) -> Result<(), StoreError> {
    check_len("event id", &e.event_id, 1, 128)?;
    check_len("webhook name", &e.webhook, 1, 128)?;
    check_len("event code", &e.code, 1, MAX_REASON_LEN)?;
    check_len("licence id", &e.licence, 1, MAX_LICENCE_ID_LEN)?;
    check_len("event payload", &e.payload, 1, MAX_EVENT_PAYLOAD_LEN)?;
    Ok(())
}

fn check_sighting(s: &DeviceSighting) -> Result<(), StoreError> {
    check_len("device identity", &s.device, 1, MAX_DEVICE_KEY_LEN)?;
    check_len("node id", &s.node_id, 1, 64)?;
    if let Some(site) = &s.site {
        check_len("site", site, 1, MAX_HISTORY_SITE_LEN)?;
    }
    Ok(())
}

/// A device's latest history row, as read or opened in this batch.
#[derive(Debug, Clone)]
struct Place {
    /// The stored row's id; `None` for a row opened in this batch.
    id: Option<i64>,
    node_id: String,
    site: Option<String>,
    source: SiteSource,
    first_seen: i64,
    last_seen: i64,
}

impl Place {
    fn is(&self, s: &DeviceSighting) -> bool {
        self.node_id == s.node_id && self.site == s.site && self.source == s.site_source
    }
}

impl WriteBatch<'_> {
    /// Takes `sightings` (in receipt order) into the site history: a device seen where its
    /// latest row says moves that row's `last_seen` (never back); seen elsewhere, or for the
    /// first time, opens a row. A sighting over the store's bounds refuses the call (callers
    /// bound their input: at most one per GPU of an accepted attestation).
    pub async fn record_device_sites(
        &mut self,
        sightings: &[DeviceSighting],
    ) -> Result<(), StoreError> {
        for s in sightings {
            check_sighting(s)?;
        }
        let err = self.store.query_err("recording the GPU site history");
        let mut devices: Vec<&str> = sightings.iter().map(|s| s.device.as_str()).collect();
        devices.sort_unstable();
        devices.dedup();
        let mut latest: HashMap<String, Place> = HashMap::with_capacity(devices.len());
        for chunk in devices.chunks(ROW_CHUNK) {
            let sql = format!(
                "SELECT d.id, d.device, d.node_id, d.site, d.site_source, d.first_seen, \
                 d.last_seen FROM device_sites d WHERE d.device IN ({}) AND d.id = \
                 (SELECT MAX(e.id) FROM device_sites e WHERE e.device = d.device)",
                placeholders(chunk.len(), 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in chunk {
                query = query.bind(*d);
            }
            for r in query.fetch_all(&mut *self.tx).await.map_err(&err)? {
                let source: String = r.try_get("site_source").map_err(&err)?;
                let source = SiteSource::parse(&source).ok_or_else(|| {
                    self.store
                        .corrupt("device site", format!("site source {source:?}"))
                })?;
                latest.insert(
                    r.try_get("device").map_err(&err)?,
                    Place {
                        id: Some(r.try_get("id").map_err(&err)?),
                        node_id: r.try_get("node_id").map_err(&err)?,
                        site: r.try_get("site").map_err(&err)?,
                        source,
                        first_seen: r.try_get("first_seen").map_err(&err)?,
                        last_seen: r.try_get("last_seen").map_err(&err)?,
                    },
                );
            }
        }
        // Decided in memory, in order: stored rows whose last_seen moves, and rows to open
        // (each closed, in this batch, at its last sighting before the device moved on).
        let mut moved: HashMap<i64, i64> = HashMap::new();
        let mut opened: Vec<(String, Place)> = Vec::new();
        for s in sightings {
            match latest.get_mut(&s.device) {
                Some(place) if place.is(s) => {
                    place.last_seen = place.last_seen.max(s.at);
                    if let Some(id) = place.id {
                        moved.insert(id, place.last_seen);
                    }
                }
                _ => {
                    let place = Place {
                        id: None,
                        node_id: s.node_id.clone(),
                        site: s.site.clone(),
                        source: s.site_source,
                        first_seen: s.at,
                        last_seen: s.at,
                    };
                    if let Some(done) = latest.insert(s.device.clone(), place)
                        && done.id.is_none()
                    {
                        opened.push((s.device.clone(), done));
                    }
                }
            }
        }
        // Each device's rows in the order they were opened: its latest gets the greatest id.
        let mut still_open: Vec<(String, Place)> = latest
            .into_iter()
            .filter(|(_, place)| place.id.is_none())
            .collect();
        still_open.sort_by(|a, b| a.0.cmp(&b.0));
        opened.extend(still_open);
        let mut moved: Vec<(i64, i64)> = moved.into_iter().collect();
        moved.sort_unstable();
        for (id, last_seen) in moved {
            sqlx::query("UPDATE device_sites SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
                .bind(last_seen)
                .bind(id)
                .execute(&mut *self.tx)
                .await
                .map_err(&err)?;
        }
        for chunk in opened.chunks(ROW_CHUNK) {
            let sql = format!(
                "INSERT INTO device_sites (device, node_id, site, site_source, first_seen, \
                 last_seen) VALUES {}",
                values(chunk.len(), 6, 0)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (device, place) in chunk {
                query = query
                    .bind(device.as_str())
                    .bind(place.node_id.as_str())
                    .bind(place.site.as_deref())
                    .bind(place.source.as_str())
                    .bind(place.first_seen)
                    .bind(place.last_seen);
            }
            query.execute(&mut *self.tx).await.map_err(&err)?;
        }
        Ok(())
    }

    /// Which of `ids` are in the outbox, as this batch sees it.
    pub async fn known_events(&mut self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        known_events(self.store, &mut self.tx, ids).await
    }

    /// Queues `events` in this batch's transaction (see [`Store::enqueue_events`]); how many
    /// were new.
    pub async fn enqueue_events(&mut self, events: &[NewEvent]) -> Result<u64, StoreError> {
        insert_events(self.store, &mut self.tx, events).await
    }
}
