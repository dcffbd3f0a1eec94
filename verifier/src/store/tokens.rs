//! The API's bearer credentials (table `api_tokens`, migration 4): issued, listed and revoked
//! by `tppguard-verifier token`, read by `serve` into its in-memory cache. The store keeps
//! only the SHA-256 of each token's secret; it never sees the secret's text.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, check_len, limit_plus_one};

/// Most API tokens [`Store::api_tokens`] returns; more is an error, never a silent cut.
pub const MAX_API_TOKENS: usize = 10_000;
/// How long a revoked or expired token stays in the service's cache (90 days), so that
/// presenting it is answered with why it is refused.
pub const RECENT_S: i64 = 90 * 86_400;
/// Longest token id stored.
const MAX_ID_LEN: usize = 64;
/// Longest token name stored.
const MAX_NAME_LEN: usize = 256;
/// Longest role stored.
const MAX_ROLE_LEN: usize = 32;
/// Longest licence scope stored (JSON text).
const MAX_LICENCES_LEN: usize = 64 << 10;

/// A stored API token: everything but the secret, whose SHA-256 stands in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The public part of the token (`tpg_<id>_...`): how it is looked up and named.
    pub id: String,
    /// Who it was issued to (free text, for listings and logs).
    pub name: String,
    /// Its role, snake_case (`crate::serve::auth::Role`).
    pub role: String,
    /// The licence ids a vendor token is scoped to; empty for every other role.
    pub licences: Vec<String>,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_sha256: String,
    /// When it was issued (Unix seconds).
    pub created_at: i64,
    /// When it stops being accepted (Unix seconds), if ever.
    pub expires_at: Option<i64>,
    /// When it was revoked (Unix seconds), if it was.
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, name, role, licences, secret_sha256, created_at, expires_at, revoked_at";

impl Store {
    /// Stores a newly issued token; an id already stored is refused.
    pub async fn add_api_token(&self, t: &ApiToken) -> Result<(), StoreError> {
        check_len("token id", &t.id, 1, MAX_ID_LEN)?;
        check_len("token name", &t.name, 1, MAX_NAME_LEN)?;
        check_len("token role", &t.role, 1, MAX_ROLE_LEN)?;
        check_len("token secret hash", &t.secret_sha256, 64, 64)?;
        let licences =
            serde_json::to_string(&t.licences).map_err(|e| StoreError::InvalidInput {
                what: "token licences",
                reason: e.to_string(),
            })?;
        check_len("token licences", &licences, 2, MAX_LICENCES_LEN)?;
        let done = sqlx::query(
            "INSERT INTO api_tokens (id, name, role, licences, secret_sha256, created_at, \
             expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.role)
        .bind(licences)
        .bind(&t.secret_sha256)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await
        .map_err(self.query_err("adding an API token"))?;
        if done.rows_affected() != 1 {
            return Err(StoreError::InvalidInput {
                what: "token id",
                reason: format!("{} is already issued; draw a new id", t.id),
            });
        }
        Ok(())
    }

    /// Every stored token (revoked and expired ones too), oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit_plus_one(MAX_API_TOKENS))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading API tokens"))?;
        if rows.len() > MAX_API_TOKENS {
            return Err(self.too_many("API tokens", MAX_API_TOKENS));
        }
        rows.iter().map(|r| self.api_token(r)).collect()
    }

    /// The tokens the service's cache holds at `now`, oldest first: those still usable, and
    /// those revoked or expired less than [`RECENT_S`] ago (so a refusal can say why); older
    /// ones are left out, so they never count towards [`MAX_API_TOKENS`]. A row that does not
    /// read back is left out with a warning, never a reason to keep a stale cache (a token
    /// revoked later must stop working).
    pub async fn recent_api_tokens(&self, now: i64) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE (revoked_at IS NULL OR revoked_at > $1) \
             AND (expires_at IS NULL OR expires_at > $1) ORDER BY created_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.saturating_sub(RECENT_S))
            .bind(limit_plus_one(MAX_API_TOKENS))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading API tokens"))?;
        if rows.len() > MAX_API_TOKENS {
            return Err(self.too_many("recent API tokens", MAX_API_TOKENS));
        }
        Ok(rows
            .iter()
            .filter_map(|r| match self.api_token(r) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "a stored API token is unreadable; it is not accepted");
                    None
                }
            })
            .collect())
    }

    /// Marks token `id` revoked at `at`: `Ok(None)` when no such token exists, otherwise the
    /// token as stored afterwards (a token revoked before keeps its first revocation time).
    pub async fn revoke_api_token(
        &self,
        id: &str,
        at: i64,
    ) -> Result<Option<ApiToken>, StoreError> {
        check_len("token id", id, 1, MAX_ID_LEN)?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(self.query_err("revoking an API token"))?;
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.query_err("reading an API token"))?;
        row.map(|r| self.api_token(&r)).transpose()
    }

    fn api_token(&self, r: &AnyRow) -> Result<ApiToken, StoreError> {
        let err = self.query_err("reading API tokens");
        let licences: String = r.try_get("licences").map_err(&err)?;
        let licences: Vec<String> = serde_json::from_str(&licences).map_err(|e| {
            self.corrupt(
                "API token licences",
                format!("{licences:?} is not a JSON list: {e}"),
            )
        })?;
        Ok(ApiToken {
            id: r.try_get("id").map_err(&err)?,
            name: r.try_get("name").map_err(&err)?,
            role: r.try_get("role").map_err(&err)?,
            licences,
            secret_sha256: r.try_get("secret_sha256").map_err(&err)?,
            created_at: r.try_get("created_at").map_err(&err)?,
            expires_at: r.try_get("expires_at").map_err(&err)?,
            revoked_at: r.try_get("revoked_at").map_err(&err)?,
        })
    }
}
