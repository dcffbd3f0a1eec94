//! Verifier state: challenge nonces, the append-only attestation record with each node's latest
//! accepted attestation, and licence tokens.
//!
//! One [`Store`] over `sqlx`'s `Any` driver serves both backends with the same SQL: an embedded
//! SQLite file by default (`sqlite://PATH`: created if missing, WAL, `synchronous=FULL` so an
//! acknowledged write survives the process being killed) and PostgreSQL (`postgres://...`) for
//! several verifier replicas sharing one state. Times are Unix seconds passed in by the caller;
//! hashes are lower-case hex; JSON is stored as text. Every read is bounded (see the `MAX_*`
//! constants) and every write that touches more than one row is one transaction.
//!
//! Single use of nonces across replicas: [`WriteBatch::consume_nonce`] is one conditional
//! `UPDATE ... WHERE used_at IS NULL AND expires_at > now`; the database applies it atomically,
//! so of any number of verifiers racing on one nonce exactly one sees a changed row (`Fresh`).
//!
//! Writes come in batches ([`Store::begin_batch`]): the service commits every submission that
//! arrived while the previous commit was running in one transaction, so the cost of making
//! them durable (one WAL sync on SQLite) is shared.

mod error;
mod lifecycle;
mod migrate;
#[cfg(any(test, feature = "pg-harness"))]
#[doc(hidden)]
pub mod pg_harness;
mod shipments;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tppguard_proto::identity::NodeId;
use tppguard_proto::site::SiteId;

pub use error::{StoreError, redact_url};
pub use lifecycle::{
    LicenceRetirement, LicenceRevocationRecord, LifecycleRecords, MAX_ACTOR_LEN, NodeRetirement,
};
pub use shipments::{
    DeviceSighting, DeviceSite, MAX_DEVICE_KEY_LEN, MAX_EVENT_PAYLOAD_LEN, MAX_HISTORY_SITE_LEN,
    MAX_OUTBOX_PAGE, MAX_SHIPMENT_ID_LEN, MAX_SHIPMENTS, MAX_SITE_HISTORY, NewEvent, NewShipment,
    OutboxEvent, ShipmentInsert, SiteSource, StoredShipment,
};
pub use tokens::{ApiToken, MAX_API_TOKENS};

/// Nonces shorter than this are refused (DESIGN.md: at least 32 random bytes).
pub const MIN_NONCE_LEN: usize = 32;
/// Nonces longer than this are refused.
pub const MAX_NONCE_LEN: usize = 128;
/// Longest node certificate subject stored.
pub const MAX_SUBJECT_LEN: usize = 512;
/// Longest attestation or licence token stored (bytes).
pub const MAX_TOKEN_LEN: usize = 1 << 20;
/// Longest claims JSON stored (bytes).
pub const MAX_CLAIMS_LEN: usize = 1 << 20;
/// Longest EAR token stored (bytes).
pub const MAX_EAR_LEN: usize = 256 << 10;
/// The longest GPU evidence facts (JSON) stored: a few KiB per GPU, 256 GPUs at most.
pub const MAX_GPU_EVIDENCE_LEN: usize = 1 << 20;
/// Longest reason code stored.
pub const MAX_REASON_LEN: usize = 128;
/// Longest human sentence stored.
pub const MAX_SENTENCE_LEN: usize = 4096;
/// Longest licence id stored.
pub const MAX_LICENCE_ID_LEN: usize = 256;
/// Most attestations [`Store::node_history`] returns.
pub const MAX_HISTORY: usize = 1000;
/// Most nodes [`Store::latest_accepted`] returns; more is an error, never a silent cut.
pub const MAX_NODES: usize = 250_000;
/// Most licences [`Store::licences`] returns; more is an error, never a silent cut.
pub const MAX_LICENCES: usize = 10_000;

/// How long a query waits for a connection, and SQLite for a lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`WriteBatch::consume_nonce`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// Issued, unexpired and unused until now; it is now used.
    Fresh,
    /// Never issued (or pruned).
    Unknown,
    /// Issued, unused, but `at` is at or past its expiry.
    Expired,
    /// Already used.
    Used,
}

/// What [`WriteBatch::spend_nonces`] found for one nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpentNonce {
    /// Fresh (now used), unknown, expired or used before.
    pub outcome: NonceUse,
    /// When it was issued (Unix seconds): for a fresh nonce only.
    pub issued_at: Option<i64>,
}

/// How the verifier judged an attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Verified; it may become the node's latest accepted attestation.
    Accepted,
    /// Refused; kept in the record, never the node's latest.
    Rejected,
}

impl Outcome {
    /// `accepted` or `rejected`, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// An attestation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttestation {
    /// The node: the SHA-256 of its certificate's SubjectPublicKeyInfo. Required for an
    /// accepted attestation; `None` for a rejection whose signer was not established.
    pub node_id: Option<NodeId>,
    /// The node's certificate subject, for display only (`unverified` when the signer was
    /// not established).
    pub subject: String,
    /// The site the node's certificate certifies, if any.
    pub certified_site: Option<SiteId>,
    /// The token's `iat` (Unix seconds).
    pub iat: i64,
    /// When the verifier received it (Unix seconds).
    pub received_at: i64,
    /// The JWS compact token as received; for a rejection, only its first bytes (the
    /// verifier's choice: `serve` keeps a short escaped prefix).
    pub token: String,
    /// SHA-256 of the whole token, lower-case hex, when `token` holds only part of it; `None`:
    /// the SHA-256 of `token`. The row's key either way (one row per token).
    pub token_sha256: Option<String>,
    /// The verified claims, JSON text (checked to parse).
    pub claims_json: String,
    /// The verifier's judgement.
    pub outcome: Outcome,
    /// Stable snake_case reason code.
    pub reason: String,
    /// Human sentence.
    pub sentence: String,
    /// The EAR issued for it, if any.
    pub ear: Option<String>,
    /// What the verifier established from the GPUs' own evidence (JSON text of
    /// [`crate::policy::GpuEvidenceFacts`]); `None` when no GPU carried evidence.
    pub gpu_evidence_json: Option<String>,
}

impl NewAttestation {
    /// The row of an accepted attestation: `verified` (its node, subject, certified site and
    /// `iat`), received as `token` at `received_at`, its claims as `claims_json`, with the EAR
    /// issued for it. What the writer records, and what tests and benches seed.
    pub fn accepted(
        verified: &crate::policy::VerifiedAttestation,
        token: String,
        claims_json: String,
        received_at: i64,
        ear: Option<String>,
    ) -> Self {
        Self {
            node_id: Some(verified.node_id()),
            subject: verified.node_subject().to_owned(),
            certified_site: verified.certified_site().cloned(),
            iat: verified.claims().iat,
            received_at,
            token,
            token_sha256: None,
            claims_json,
            outcome: Outcome::Accepted,
            reason: "accepted".to_owned(),
            sentence: "the attestation verified".to_owned(),
            ear,
            // Plain data: serializing it cannot fail, and a map with no entry is no column.
            gpu_evidence_json: (!verified.gpu_evidence().is_empty())
                .then(|| serde_json::to_string(verified.gpu_evidence()).ok())
                .flatten(),
        }
    }
}

/// A recorded attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttestation {
    /// Row id: increases in recording order, which is the verifier's receipt order.
    pub id: i64,
    /// The node (its key), when the signer was established.
    pub node_id: Option<NodeId>,
    /// The node's certificate subject, for display.
    pub subject: String,
    /// The site the node's certificate certifies, if any.
    pub certified_site: Option<SiteId>,
    /// The token's `iat`.
    pub iat: i64,
    /// When it was received.
    pub received_at: i64,
    /// The token.
    pub token: String,
    /// SHA-256 of the token's bytes, lower-case hex.
    pub token_sha256: String,
    /// The claims, JSON text.
    pub claims_json: String,
    /// The judgement.
    pub outcome: Outcome,
    /// Reason code.
    pub reason: String,
    /// Human sentence.
    pub sentence: String,
    /// The EAR, if any.
    pub ear: Option<String>,
    /// What the verifier established from the GPUs' own evidence, JSON text, if any.
    pub gpu_evidence_json: Option<String>,
}

/// One attestation of a node's history ([`Store::node_history`]): what a history shows,
/// without the token and claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Row id.
    pub id: i64,
    /// The node's certificate subject, for display.
    pub subject: String,
    /// The token's `iat`.
    pub iat: i64,
    /// When it was received.
    pub received_at: i64,
    /// SHA-256 of the token's bytes, lower-case hex.
    pub token_sha256: String,
    /// The judgement.
    pub outcome: Outcome,
    /// Reason code.
    pub reason: String,
    /// Human sentence.
    pub sentence: String,
    /// The EAR, if any.
    pub ear: Option<String>,
}

/// A stored licence token (verification is the caller's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLicence {
    /// The licence id the caller gave.
    pub id: String,
    /// The JWS token.
    pub token: String,
    /// SHA-256 of the token, lower-case hex.
    pub token_sha256: String,
    /// When it was first added.
    pub added_at: i64,
}

/// Attestations recorded, by outcome (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttestationCounts {
    /// Accepted ones.
    pub accepted: u64,
    /// Rejected ones.
    pub rejected: u64,
}

/// What [`Store::adopt_legacy_pointers`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyAdoption {
    /// Nodes whose latest pointer is now kept by node id.
    pub nodes: usize,
    /// Pointers dropped: their token named no node id.
    pub dropped: usize,
}

/// The verifier's storage: cheap to clone (a shared connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL, password hidden: named in every error.
    db: String,
}

const ATTESTATION_COLUMNS: &str = "a.id, a.node_id, a.subject, a.certified_site, a.iat, a.received_at, a.token, a.token_sha256, \
     a.claims_json, a.outcome, a.reason, a.sentence, a.ear, a.gpu_evidence_json";

impl Store {
    /// Opens (SQLite: creates if missing) the database at `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` (`sqlite:///abs/path.db`, `sqlite://relative.db`) or `postgres://...`
    /// (`postgresql://` too).
    ///
    /// Two SQLite openers racing on a new file (replicas, or a restart beside a running tool)
    /// can meet SQLITE_BUSY before any connection has its busy timeout: the probe connection
    /// and the switch to WAL run without one. Such an open is retried for up to
    /// [`BUSY_TIMEOUT`]; any other error is returned at once.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        loop {
            match Self::open_once(url).await {
                Err(StoreError::Open { ref message, .. })
                    if message.contains("database is locked")
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let db = redact_url(url);
        let (backend, connect_url) = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            (Backend::Sqlite, sqlite_url(rest, &db)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl { db });
        };
        let password = error::url_password(url);
        let open_err = |e: sqlx::Error, hint: &'static str| StoreError::Open {
            db: db.clone(),
            message: scrub(&e.to_string(), password.as_deref()),
            hint,
        };
        let hint = match backend {
            Backend::Sqlite => "check the folder exists and is writable",
            Backend::Postgres => {
                "check the server is running, the host, port, user, password and database name, \
                 and that the database exists"
            }
        };
        // One direct connection first: an unreachable server fails now, with the driver's own
        // reason, instead of after the pool's retries with "pool timed out".
        let probe = <sqlx::AnyConnection as sqlx::Connection>::connect(&connect_url)
            .await
            .map_err(|e| open_err(e, hint))?;
        sqlx::Connection::close(probe)
            .await
            .map_err(|e| open_err(e, hint))?;
        let options = AnyPoolOptions::new()
            .acquire_timeout(BUSY_TIMEOUT)
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            });
        let pool = match backend {
            Backend::Sqlite => options
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlx::raw_sql(
                            "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON;",
                        )
                        .execute(conn)
                        .await
                        .map(|_| ())
                    })
                })
                .connect(&connect_url)
                .await
                .map_err(|e| open_err(e, hint))?,
            Backend::Postgres => options
                .connect(&connect_url)
                .await
                .map_err(|e| open_err(e, hint))?,
        };
        if backend == Backend::Sqlite {
            // Persistent in the file: every later connection opens it in WAL mode.
            let row = sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_one(&pool)
                .await
                .map_err(|e| open_err(e, "check the folder exists and is writable"))?;
            let mode: String = row
                .try_get(0)
                .map_err(|e| open_err(e, "check the file is a SQLite database"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Open {
                    db,
                    message: format!("journal mode is {mode}, not wal"),
                    hint: "check the file is on a local file system that supports WAL",
                });
            }
        }
        migrate::run(&pool, backend, &db).await?;
        Ok(Self { pool, backend, db })
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL with any password hidden.
    pub fn url_redacted(&self) -> &str {
        &self.db
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("reading the schema version"))?;
        let v: Option<i64> = row
            .try_get("v")
            .map_err(self.query_err("reading the schema version"))?;
        Ok(v.unwrap_or(0))
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(self.query_err("ping"))
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records a freshly issued challenge nonce (see [`WriteBatch::issue_nonce`]) in a
    /// transaction of its own.
    pub async fn issue_nonce(
        &self,
        nonce: &[u8],
        issued_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut batch = self.begin_batch().await?;
        batch.issue_nonce(nonce, issued_at, expires_at).await?;
        batch.commit().await.map(|_| ())
    }

    /// Uses `nonce` at `at` (see [`WriteBatch::consume_nonce`]) in a transaction of its own.
    pub async fn consume_nonce(&self, nonce: &[u8], at: i64) -> Result<NonceUse, StoreError> {
        let mut batch = self.begin_batch().await?;
        let used = batch.consume_nonce(nonce, at).await?;
        batch.commit().await?;
        Ok(used)
    }

    /// Deletes nonces that expired before `before`; returns how many.
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(self.query_err("pruning nonces"))
    }

    /// Starts a write batch: one transaction for many submissions (group commit).
    ///
    /// It increases the fleet version first (see [`Store::fleet_version`]), which takes the
    /// counter's lock until the commit on both backends: write batches, on every replica, run
    /// one at a time, and versions follow commit order.
    pub async fn begin_batch(&self) -> Result<WriteBatch<'_>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE fleet_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(self.query_err("taking the fleet lock"))?;
        let version = row
            .try_get("version")
            .map_err(self.query_err("taking the fleet lock"))?;
        Ok(WriteBatch {
            store: self,
            tx,
            version,
        })
    }

    /// Appends an attestation (see [`WriteBatch::record`]) in a transaction of its own.
    /// Returns the new row's id.
    pub async fn record_attestation(&self, a: &NewAttestation) -> Result<i64, StoreError> {
        let mut batch = self.begin_batch().await?;
        let id = batch.record(a).await?;
        batch.commit().await?;
        id.ok_or_else(|| StoreError::DuplicateAttestation {
            db: self.db.clone(),
            sha256: sha256_hex(a.token.as_bytes()),
        })
    }

    /// The fleet version: increased by every write batch ([`Store::begin_batch`]), which
    /// stamps the latest pointers it moves with it. Unchanged since a replica last read the
    /// fleet: nothing to read again.
    pub async fn fleet_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM fleet_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("reading the fleet version"))?;
        row.try_get("version")
            .map_err(self.query_err("reading the fleet version"))
    }

    /// Each node and the row id of its latest accepted attestation, for the pointers moved
    /// by batches after fleet version `after` (all of them for `None`): the cheap way for a
    /// replica to see what other replicas recorded.
    pub async fn latest_pointers(
        &self,
        after: Option<i64>,
    ) -> Result<Vec<(NodeId, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, attestation_id FROM latest_accepted WHERE version > $1 \
             ORDER BY node_id LIMIT $2",
        )
        .bind(after.unwrap_or(i64::MIN))
        .bind(limit_plus_one(MAX_NODES))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading the latest pointers"))?;
        if rows.len() > MAX_NODES {
            return Err(self.too_many("nodes", MAX_NODES));
        }
        let err = self.query_err("reading the latest pointers");
        rows.iter()
            .map(|r| {
                let node: String = r.try_get("node_id").map_err(&err)?;
                Ok((
                    self.node_id(&node)?,
                    r.try_get("attestation_id").map_err(&err)?,
                ))
            })
            .collect()
    }

    /// The attestations with these row ids (missing ids are left out), in id order.
    pub async fn attestations_by_id(
        &self,
        ids: &[i64],
    ) -> Result<Vec<StoredAttestation>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ID_CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {ATTESTATION_COLUMNS} FROM attestations a WHERE a.id IN ({}) ORDER BY a.id",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(self.query_err("reading attestations by id"))?;
            for r in &rows {
                out.push(self.attestation(r)?);
            }
        }
        Ok(out)
    }

    /// Each node's latest accepted attestation (the last one received), ordered by node id:
    /// what the policy evaluates. Stale nodes are included (staleness is the policy's
    /// decision).
    pub async fn latest_accepted(&self) -> Result<Vec<StoredAttestation>, StoreError> {
        let sql = format!(
            "SELECT {ATTESTATION_COLUMNS} FROM latest_accepted l \
             JOIN attestations a ON a.id = l.attestation_id ORDER BY l.node_id LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit_plus_one(MAX_NODES))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading the latest attestations"))?;
        if rows.len() > MAX_NODES {
            return Err(self.too_many("nodes", MAX_NODES));
        }
        rows.iter().map(|r| self.attestation(r)).collect()
    }

    /// A node's attestations, accepted and rejected, most recently recorded first, at most
    /// `limit` (itself at most [`MAX_HISTORY`]): the columns a history shows, never the tokens
    /// or claims.
    pub async fn node_history(
        &self,
        node: &NodeId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        if limit > MAX_HISTORY {
            return Err(StoreError::InvalidInput {
                what: "history limit",
                reason: format!("{limit} is more than the most the store returns, {MAX_HISTORY}"),
            });
        }
        let rows = sqlx::query(
            "SELECT a.id, a.subject, a.iat, a.received_at, a.token_sha256, a.outcome, a.reason, \
             a.sentence, a.ear FROM attestations a WHERE a.node_id = $1 \
             ORDER BY a.id DESC LIMIT $2",
        )
        .bind(node.to_string())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading a node's history"))?;
        let err = self.query_err("reading a node's history");
        rows.iter()
            .map(|r| {
                let text = |c: &'static str| r.try_get::<String, _>(c).map_err(&err);
                let int = |c: &'static str| r.try_get::<i64, _>(c).map_err(&err);
                let outcome = text("outcome")?;
                let Some(outcome) = Outcome::parse(&outcome) else {
                    return Err(self.corrupt("attestation", format!("outcome {outcome:?}")));
                };
                Ok(HistoryEntry {
                    id: int("id")?,
                    subject: text("subject")?,
                    iat: int("iat")?,
                    received_at: int("received_at")?,
                    token_sha256: text("token_sha256")?,
                    outcome,
                    reason: text("reason")?,
                    sentence: text("sentence")?,
                    ear: r.try_get::<Option<String>, _>("ear").map_err(&err)?,
                })
            })
            .collect()
    }

    /// How many attestations are recorded, by outcome.
    pub async fn attestation_counts(&self) -> Result<AttestationCounts, StoreError> {
        let rows = sqlx::query("SELECT outcome, COUNT(*) AS n FROM attestations GROUP BY outcome")
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("counting attestations"))?;
        let mut counts = AttestationCounts::default();
        for row in &rows {
            let outcome: String = row
                .try_get("outcome")
                .map_err(self.query_err("counting attestations"))?;
            let n: i64 = row
                .try_get("n")
                .map_err(self.query_err("counting attestations"))?;
            let n = u64::try_from(n).unwrap_or(0);
            match Outcome::parse(&outcome) {
                Some(Outcome::Accepted) => counts.accepted = n,
                Some(Outcome::Rejected) => counts.rejected = n,
                None => return Err(self.corrupt("attestation", format!("outcome {outcome:?}"))),
            }
        }
        Ok(counts)
    }

    /// Stores a licence token; adding the same token again (same SHA-256) changes nothing.
    /// Returns whether it was new.
    pub async fn add_licence(
        &self,
        id: &str,
        token: &str,
        added_at: i64,
    ) -> Result<bool, StoreError> {
        check_len("licence id", id, 1, MAX_LICENCE_ID_LEN)?;
        check_len("licence token", token, 1, MAX_TOKEN_LEN)?;
        let mut batch = self.begin_batch().await?;
        let done = sqlx::query(
            "INSERT INTO licences (token_sha256, licence_id, token, added_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_sha256) DO NOTHING",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(id)
        .bind(token)
        .bind(added_at)
        .execute(&mut *batch.tx)
        .await
        .map_err(self.query_err("adding a licence"))?;
        batch.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many licences are stored (they are only ever added): a replica reloads its licences
    /// when this changes.
    pub async fn licence_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM licences")
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("counting licences"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(self.query_err("counting licences"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every stored licence, oldest first.
    pub async fn licences(&self) -> Result<Vec<StoredLicence>, StoreError> {
        let rows = sqlx::query(
            "SELECT licence_id, token, token_sha256, added_at FROM licences \
             ORDER BY added_at, token_sha256 LIMIT $1",
        )
        .bind(limit_plus_one(MAX_LICENCES))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading licences"))?;
        if rows.len() > MAX_LICENCES {
            return Err(self.too_many("licences", MAX_LICENCES));
        }
        rows.iter()
            .map(|r| {
                let get = |c: &'static str| {
                    r.try_get::<String, _>(c)
                        .map_err(self.query_err("reading licences"))
                };
                Ok(StoredLicence {
                    id: get("licence_id")?,
                    token: get("token")?,
                    token_sha256: get("token_sha256")?,
                    added_at: r
                        .try_get("added_at")
                        .map_err(self.query_err("reading licences"))?,
                })
            })
            .collect()
    }

    /// Re-keys the latest pointers a database kept by certificate subject before schema 3
    /// (`legacy_latest_by_subject`) by node id, then drops that table: `derive` reads the node
    /// id and certified site from a stored token (its certificate); a pointer whose token does
    /// not yield them is dropped (counted in the answer). Runs under the fleet lock, so
    /// replicas starting together adopt once; `None` when there is nothing to adopt.
    ///
    /// Only the pointed-at rows gain a node id: history recorded before schema 3 stays under
    /// its subject and is not listed by node id.
    pub async fn adopt_legacy_pointers(
        &self,
        derive: impl Fn(&str) -> Option<(NodeId, Option<SiteId>)>,
    ) -> Result<Option<LegacyAdoption>, StoreError> {
        if !self.legacy_pointers_exist(&self.pool).await? {
            return Ok(None);
        }
        let mut batch = self.begin_batch().await?;
        if !self.legacy_pointers_exist(&mut *batch.tx).await? {
            return Ok(None);
        }
        let err = self.query_err("adopting the pointers kept by subject");
        let rows = sqlx::query(
            "SELECT a.id, a.token FROM legacy_latest_by_subject l \
             JOIN attestations a ON a.id = l.attestation_id ORDER BY a.id",
        )
        .fetch_all(&mut *batch.tx)
        .await
        .map_err(&err)?;
        let mut adopted: Vec<(NodeId, i64)> = Vec::with_capacity(rows.len());
        let mut dropped = 0usize;
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(&err)?;
            let token: String = row.try_get("token").map_err(&err)?;
            let Some((node, site)) = derive(&token) else {
                dropped += 1;
                continue;
            };
            sqlx::query("UPDATE attestations SET node_id = $1, certified_site = $2 WHERE id = $3")
                .bind(node.to_string())
                .bind(site.map(|s| s.as_str().to_owned()))
                .bind(id)
                .execute(&mut *batch.tx)
                .await
                .map_err(&err)?;
            adopted.push((node, id));
        }
        let nodes = {
            let mut ids: Vec<NodeId> = adopted.iter().map(|(n, _)| *n).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        };
        // Rows come in id order: the last of a node (two subjects, one key) is its pointer.
        let mut latest: HashMap<NodeId, i64> = HashMap::new();
        for (node, id) in adopted {
            latest.insert(node, id);
        }
        batch.move_pointers(latest.into_iter().collect()).await?;
        sqlx::query("DROP TABLE legacy_latest_by_subject")
            .execute(&mut *batch.tx)
            .await
            .map_err(&err)?;
        batch.commit().await?;
        Ok(Some(LegacyAdoption { nodes, dropped }))
    }

    async fn legacy_pointers_exist<'e, E>(&self, executor: E) -> Result<bool, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master \
                 WHERE type = 'table' AND name = 'legacy_latest_by_subject'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = current_schema() \
                 AND table_name = 'legacy_latest_by_subject'"
            }
        };
        let row = sqlx::query(sql)
            .fetch_one(executor)
            .await
            .map_err(self.query_err("looking for pointers kept by subject"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(self.query_err("looking for pointers kept by subject"))?;
        Ok(n > 0)
    }

    /// A write transaction: on SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// concurrent writers wait on the busy timeout instead of failing on a stale snapshot.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(self.query_err("starting a transaction"))
    }

    fn attestation(&self, r: &AnyRow) -> Result<StoredAttestation, StoreError> {
        let err = self.query_err("reading an attestation");
        let text = |c: &'static str| r.try_get::<String, _>(c).map_err(&err);
        let int = |c: &'static str| r.try_get::<i64, _>(c).map_err(&err);
        let outcome = text("outcome")?;
        let Some(parsed) = Outcome::parse(&outcome) else {
            return Err(self.corrupt("attestation", format!("outcome {outcome:?}")));
        };
        let node_id = r
            .try_get::<Option<String>, _>("node_id")
            .map_err(&err)?
            .map(|n| self.node_id(&n))
            .transpose()?;
        let certified_site = r
            .try_get::<Option<String>, _>("certified_site")
            .map_err(&err)?
            .map(|site| {
                SiteId::parse(&site)
                    .map_err(|e| self.corrupt("attestation", format!("certified site: {e}")))
            })
            .transpose()?;
        Ok(StoredAttestation {
            id: int("id")?,
            node_id,
            subject: text("subject")?,
            certified_site,
            iat: int("iat")?,
            received_at: int("received_at")?,
            token: text("token")?,
            token_sha256: text("token_sha256")?,
            claims_json: text("claims_json")?,
            outcome: parsed,
            reason: text("reason")?,
            sentence: text("sentence")?,
            ear: r.try_get::<Option<String>, _>("ear").map_err(&err)?,
            gpu_evidence_json: r
                .try_get::<Option<String>, _>("gpu_evidence_json")
                .map_err(&err)?,
        })
    }

    /// A stored node id read back.
    fn node_id(&self, hex: &str) -> Result<NodeId, StoreError> {
        NodeId::from_hex(hex).ok_or_else(|| {
            self.corrupt(
                "node id",
                format!("{hex:?} is not 64 lower-case hex digits"),
            )
        })
    }

    fn query_err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| StoreError::Query {
            db: self.db.clone(),
            op,
            message: e.to_string(),
        }
    }

    fn corrupt(&self, what: &'static str, detail: String) -> StoreError {
        StoreError::Corrupt {
            db: self.db.clone(),
            what,
            detail,
        }
    }

    fn too_many(&self, what: &'static str, limit: usize) -> StoreError {
        StoreError::TooMany {
            db: self.db.clone(),
            what,
            limit,
        }
    }
}

/// A write transaction over many submissions: the verifier's group commit. Nothing in it is
/// visible to others, or durable, until [`WriteBatch::commit`]; dropped uncommitted, it rolls
/// back. Conflicts (a nonce used before, a token recorded before) are answers, not errors,
/// so one bad submission never aborts the others (PostgreSQL aborts a transaction on an
/// error).
pub struct WriteBatch<'s> {
    store: &'s Store,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// The fleet version this batch commits as.
    version: i64,
}

impl WriteBatch<'_> {
    /// Records freshly issued challenge nonces, all issued at `issued_at` and expiring at
    /// `expires_at`: one statement per [`ROW_CHUNK`] nonces.
    pub async fn issue_nonces(
        &mut self,
        nonces: &[&[u8]],
        issued_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        for nonce in nonces {
            check_nonce(nonce)?;
        }
        if expires_at <= issued_at {
            return Err(StoreError::InvalidInput {
                what: "nonce expiry",
                reason: format!("expires_at {expires_at} is not after issued_at {issued_at}"),
            });
        }
        for chunk in nonces.chunks(ROW_CHUNK) {
            let sql = format!(
                "INSERT INTO nonces (nonce_hex, issued_at, expires_at) VALUES {} \
                 ON CONFLICT (nonce_hex) DO NOTHING",
                values(chunk.len(), 3, 0)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for nonce in chunk {
                query = query.bind(hex(nonce)).bind(issued_at).bind(expires_at);
            }
            let done = query
                .execute(&mut *self.tx)
                .await
                .map_err(self.store.query_err("issuing nonces"))?;
            if done.rows_affected() != u64::try_from(chunk.len()).unwrap_or(u64::MAX) {
                return Err(StoreError::DuplicateNonce {
                    db: self.store.db.clone(),
                });
            }
        }
        Ok(())
    }

    /// Records one freshly issued challenge nonce.
    pub async fn issue_nonce(
        &mut self,
        nonce: &[u8],
        issued_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.issue_nonces(&[nonce], issued_at, expires_at).await
    }

    /// Uses `nonces` at time `at`, in order: each is `Fresh` exactly once, for the first use
    /// before expiry, on every replica sharing the database (one conditional `UPDATE`, which
    /// the database applies atomically). A nonce listed twice is `Fresh` the first time only.
    pub async fn consume_nonces(
        &mut self,
        nonces: &[&[u8]],
        at: i64,
    ) -> Result<Vec<NonceUse>, StoreError> {
        Ok(self
            .spend_nonces(nonces, at)
            .await?
            .into_iter()
            .map(|s| s.outcome)
            .collect())
    }

    /// As [`Self::consume_nonces`], with the issue time of each fresh nonce: the start of the
    /// window in which the attestation answering it may be dated.
    pub async fn spend_nonces(
        &mut self,
        nonces: &[&[u8]],
        at: i64,
    ) -> Result<Vec<SpentNonce>, StoreError> {
        let err = self.store.query_err("using nonces");
        let keys: Vec<Option<String>> = nonces
            .iter()
            .map(|n| {
                (MIN_NONCE_LEN..=MAX_NONCE_LEN)
                    .contains(&n.len())
                    .then(|| hex(n))
            })
            .collect();
        let mut wanted: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut fresh: HashMap<String, i64> = HashMap::new();
        for chunk in wanted.chunks(ROW_CHUNK) {
            let sql = format!(
                "UPDATE nonces SET used_at = $1 WHERE used_at IS NULL AND expires_at > $1 \
                 AND nonce_hex IN ({}) RETURNING nonce_hex, issued_at",
                placeholders(chunk.len(), 2)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(&mut *self.tx).await.map_err(&err)? {
                fresh.insert(
                    row.try_get("nonce_hex").map_err(&err)?,
                    row.try_get("issued_at").map_err(&err)?,
                );
            }
        }
        // Why the others were not fresh.
        let rest: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|k| !fresh.contains_key(*k))
            .collect();
        let mut known: HashMap<String, bool> = HashMap::new();
        for chunk in rest.chunks(ROW_CHUNK) {
            let sql = format!(
                "SELECT nonce_hex, used_at FROM nonces WHERE nonce_hex IN ({})",
                placeholders(chunk.len(), 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(&mut *self.tx).await.map_err(&err)? {
                let used_at: Option<i64> = row.try_get("used_at").map_err(&err)?;
                known.insert(row.try_get("nonce_hex").map_err(&err)?, used_at.is_some());
            }
        }
        let mut given: HashSet<&str> = HashSet::new();
        let spent = |outcome| SpentNonce {
            outcome,
            issued_at: None,
        };
        Ok(keys
            .iter()
            .map(|key| match key.as_deref() {
                None => spent(NonceUse::Unknown),
                // Spent by this statement: fresh for its first listing, used for the others.
                Some(k) => match fresh.get(k) {
                    Some(issued_at) if given.insert(k) => SpentNonce {
                        outcome: NonceUse::Fresh,
                        issued_at: Some(*issued_at),
                    },
                    Some(_) => spent(NonceUse::Used),
                    None => match known.get(k) {
                        None => spent(NonceUse::Unknown),
                        Some(true) => spent(NonceUse::Used),
                        Some(false) => spent(NonceUse::Expired),
                    },
                },
            })
            .collect())
    }

    /// Uses one nonce (see [`Self::consume_nonces`]).
    pub async fn consume_nonce(&mut self, nonce: &[u8], at: i64) -> Result<NonceUse, StoreError> {
        let used = self.consume_nonces(&[nonce], at).await?;
        Ok(used.first().copied().unwrap_or(NonceUse::Unknown))
    }

    /// Appends attestations, in order (the order the verifier received them), and moves each
    /// node's latest accepted pointer to the last accepted one here: a node's current
    /// attestation is the one the verifier received last, whatever its `iat` says (the node
    /// writes `iat`). Row ids increase in recording order on both backends and batches commit
    /// one at a time under the fleet lock, so the pointer only ever moves to a greater row id.
    /// One answer per attestation: its new row id; `None` when the same token (same SHA-256)
    /// is already recorded, or was earlier in the list; an error when a field is over the
    /// store's bounds (that one is not recorded, the others are).
    pub async fn record_many(
        &mut self,
        rows: &[NewAttestation],
    ) -> Result<Vec<Result<Option<i64>, StoreError>>, StoreError> {
        let err = self.store.query_err("recording attestations");
        let mut answers: Vec<Result<Option<i64>, StoreError>> =
            rows.iter().map(|a| validate(a).map(|()| None)).collect();
        let shas: Vec<String> = rows
            .iter()
            .map(|a| {
                a.token_sha256
                    .clone()
                    .unwrap_or_else(|| sha256_hex(a.token.as_bytes()))
            })
            .collect();
        let valid: Vec<usize> = (0..rows.len())
            .filter(|&i| answers.get(i).is_some_and(Result::is_ok))
            .collect();
        let mut ids: HashMap<String, i64> = HashMap::new();
        for chunk in valid.chunks(ROW_CHUNK) {
            let sql = format!(
                "INSERT INTO attestations (node_id, subject, certified_site, iat, received_at, \
                 token, token_sha256, claims_json, outcome, reason, sentence, ear, \
                 gpu_evidence_json) VALUES {} \
                 ON CONFLICT (token_sha256) DO NOTHING RETURNING id, token_sha256",
                values(chunk.len(), 13, 0)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in chunk {
                let (Some(a), Some(sha)) = (rows.get(i), shas.get(i)) else {
                    continue;
                };
                query = query
                    .bind(a.node_id.map(|n| n.to_string()))
                    .bind(a.subject.as_str())
                    .bind(a.certified_site.as_ref().map(|s| s.as_str().to_owned()))
                    .bind(a.iat)
                    .bind(a.received_at)
                    .bind(a.token.as_str())
                    .bind(sha.as_str())
                    .bind(a.claims_json.as_str())
                    .bind(a.outcome.as_str())
                    .bind(a.reason.as_str())
                    .bind(a.sentence.as_str())
                    .bind(a.ear.as_deref())
                    .bind(a.gpu_evidence_json.as_deref());
            }
            for row in query.fetch_all(&mut *self.tx).await.map_err(&err)? {
                ids.insert(
                    row.try_get("token_sha256").map_err(&err)?,
                    row.try_get("id").map_err(&err)?,
                );
            }
        }
        // Each recorded row's id, once (the first of equal tokens); each node's last accepted.
        let mut newest: HashMap<NodeId, i64> = HashMap::new();
        for &i in &valid {
            let (Some(a), Some(sha), Some(answer)) = (rows.get(i), shas.get(i), answers.get_mut(i))
            else {
                continue;
            };
            let Some(id) = ids.remove(sha.as_str()) else {
                continue;
            };
            *answer = Ok(Some(id));
            if a.outcome == Outcome::Accepted
                && let Some(node) = a.node_id
            {
                let entry = newest.entry(node).or_insert(id);
                *entry = (*entry).max(id);
            }
        }
        self.move_pointers(newest.into_iter().collect()).await?;
        Ok(answers)
    }

    /// Points each node at its row id, where that is later than the row it points at.
    async fn move_pointers(&mut self, mut latest: Vec<(NodeId, i64)>) -> Result<(), StoreError> {
        latest.sort_unstable();
        for chunk in latest.chunks(ROW_CHUNK) {
            let sql = format!(
                "INSERT INTO latest_accepted (node_id, attestation_id, version) VALUES {} \
                 ON CONFLICT (node_id) DO UPDATE SET attestation_id = excluded.attestation_id, \
                 version = excluded.version \
                 WHERE excluded.attestation_id > latest_accepted.attestation_id",
                values(chunk.len(), 3, 0)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (node, id) in chunk {
                query = query.bind(node.to_string()).bind(*id).bind(self.version);
            }
            query.execute(&mut *self.tx).await.map_err(
                self.store
                    .query_err("moving the nodes' latest attestations"),
            )?;
        }
        Ok(())
    }

    /// Appends one attestation (see [`Self::record_many`]).
    pub async fn record(&mut self, a: &NewAttestation) -> Result<Option<i64>, StoreError> {
        let mut answers = self.record_many(std::slice::from_ref(a)).await?;
        answers.pop().unwrap_or(Ok(None))
    }

    /// Makes everything in the batch durable (SQLite: `synchronous = FULL`), at once; returns
    /// the fleet version it committed as.
    pub async fn commit(self) -> Result<i64, StoreError> {
        self.tx
            .commit()
            .await
            .map_err(self.store.query_err("committing a batch"))?;
        Ok(self.version)
    }
}

/// Ids per `IN (...)` list: well under SQLite's and PostgreSQL's bound-parameter limits.
const ID_CHUNK: usize = 500;
/// Rows per multi-row statement: 500 rows of 10 columns stay well under both limits.
const ROW_CHUNK: usize = 500;

/// `$from+1, $from+2, ...`: `n` numbered placeholders starting at `$first`.
fn placeholders(n: usize, first: usize) -> String {
    (first..first.saturating_add(n))
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2, $3), ($4, $5, $6), ...`: `rows` tuples of `columns` placeholders after `$skip`.
fn values(rows: usize, columns: usize, skip: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(columns, skip + r * columns + 1)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The store's bounds on one attestation.
fn validate(a: &NewAttestation) -> Result<(), StoreError> {
    if a.outcome == Outcome::Accepted && a.node_id.is_none() {
        return Err(StoreError::InvalidInput {
            what: "node id",
            reason: "an accepted attestation must name its node (the verified key)".to_owned(),
        });
    }
    check_len("subject", &a.subject, 1, MAX_SUBJECT_LEN)?;
    check_len("attestation token", &a.token, 1, MAX_TOKEN_LEN)?;
    if let Some(sha) = &a.token_sha256
        && !(sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(StoreError::InvalidInput {
            what: "token SHA-256",
            reason: "not 64 lower-case hex digits".to_owned(),
        });
    }
    check_len("claims JSON", &a.claims_json, 2, MAX_CLAIMS_LEN)?;
    check_len("reason code", &a.reason, 1, MAX_REASON_LEN)?;
    check_len("sentence", &a.sentence, 0, MAX_SENTENCE_LEN)?;
    if let Some(ear) = &a.ear {
        check_len("EAR", ear, 1, MAX_EAR_LEN)?;
    }
    if let Some(facts) = &a.gpu_evidence_json {
        check_len("GPU evidence facts", facts, 2, MAX_GPU_EVIDENCE_LEN)?;
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&a.claims_json) {
        return Err(StoreError::InvalidInput {
            what: "claims JSON",
            reason: format!("not JSON: {e}"),
        });
    }
    Ok(())
}

/// The connect URL for `sqlite://` + `rest`: the folder must exist; the file is created if
/// missing (`mode=rwc` unless the URL names a mode).
fn sqlite_url(rest: &str, db: &str) -> Result<String, StoreError> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Open {
            db: db.to_owned(),
            message: "no file named".to_owned(),
            hint: "name a file, e.g. sqlite:///var/lib/tppguard/verifier.db (in-memory databases \
                   lose every nonce and attestation on restart)",
        });
    }
    let folder = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder
        && !folder.is_dir()
    {
        return Err(StoreError::Open {
            db: db.to_owned(),
            message: format!("folder {} does not exist", folder.display()),
            hint: "check the folder exists and is writable",
        });
    }
    Ok(match query {
        Some(q) if q.split('&').any(|p| p.starts_with("mode=")) => format!("sqlite://{rest}"),
        Some(q) => format!("sqlite://{path}?{q}&mode=rwc"),
        None => format!("sqlite://{path}?mode=rwc"),
    })
}

fn check_nonce(nonce: &[u8]) -> Result<(), StoreError> {
    if nonce.len() < MIN_NONCE_LEN || nonce.len() > MAX_NONCE_LEN {
        return Err(StoreError::InvalidInput {
            what: "nonce",
            reason: format!(
                "{} bytes; nonces are {MIN_NONCE_LEN} to {MAX_NONCE_LEN} random bytes",
                nonce.len()
            ),
        });
    }
    Ok(())
}

/// Bounds a text field, and refuses NUL, which PostgreSQL's `TEXT` cannot hold (refused
/// on both backends, so they store the same things).
fn check_len(what: &'static str, s: &str, min: usize, max: usize) -> Result<(), StoreError> {
    if s.len() < min || s.len() > max {
        return Err(StoreError::InvalidInput {
            what,
            reason: format!("{} bytes; the store takes {min} to {max}", s.len()),
        });
    }
    if s.contains('\0') {
        return Err(StoreError::InvalidInput {
            what,
            reason: "it contains a NUL character".to_owned(),
        });
    }
    Ok(())
}

fn limit_plus_one(n: usize) -> i64 {
    i64::try_from(n).map_or(i64::MAX, |n| n.saturating_add(1))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// `message` with `password` (as written in the URL, and percent-decoded) replaced by `***`.
fn scrub(message: &str, password: Option<&str>) -> String {
    let Some(password) = password else {
        return message.to_owned();
    };
    let decoded = percent_decode(password);
    let mut out = message.replace(password, "***");
    if !decoded.is_empty() {
        out = out.replace(&decoded, "***");
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(hexpair) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hexpair, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
