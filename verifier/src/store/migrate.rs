//! Versioned schema migrations, embedded in the binary (`verifier/migrations/{sqlite,postgres}/`).
//!
//! Each pending migration runs in its own transaction that first takes a lock (`BEGIN
//! IMMEDIATE` on SQLite, a transaction-scoped advisory lock on PostgreSQL), so verifiers started
//! together against one database apply each migration exactly once; the transaction records the
//! migration in `schema_version` before it commits.

use sqlx::{AnyPool, Row};

use super::{Backend, StoreError};

/// One migration: its number, name and DDL per backend.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration, in order. Add new ones at the end, to both folders.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "fleet version",
        sqlite: include_str!("../../migrations/sqlite/0002_fleet_version.sql"),
        postgres: include_str!("../../migrations/postgres/0002_fleet_version.sql"),
    },
    Migration {
        version: 3,
        name: "node is its key",
        sqlite: include_str!("../../migrations/sqlite/0003_node_is_its_key.sql"),
        postgres: include_str!("../../migrations/postgres/0003_node_is_its_key.sql"),
    },
    Migration {
        version: 4,
        name: "api tokens",
        sqlite: include_str!("../../migrations/sqlite/0004_api_tokens.sql"),
        postgres: include_str!("../../migrations/postgres/0004_api_tokens.sql"),
    },
    Migration {
        version: 5,
        name: "lifecycle",
        sqlite: include_str!("../../migrations/sqlite/0005_lifecycle.sql"),
        postgres: include_str!("../../migrations/postgres/0005_lifecycle.sql"),
    },
    Migration {
        version: 6,
        name: "gpu evidence",
        sqlite: include_str!("../../migrations/sqlite/0006_gpu_evidence.sql"),
        postgres: include_str!("../../migrations/postgres/0006_gpu_evidence.sql"),
    },
    Migration {
        version: 7,
        name: "shipments",
        sqlite: include_str!("../../migrations/sqlite/0007_shipments.sql"),
        postgres: include_str!("../../migrations/postgres/0007_shipments.sql"),
    },
];

/// Arbitrary constant naming the migration lock among PostgreSQL advisory locks.
const PG_LOCK_KEY: i64 = 0x7470_7067_7561_7264; // "tppguard"

/// The newest schema version this verifier knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies the pending migrations; returns the schema version the database is at afterwards.
pub(crate) async fn run(pool: &AnyPool, backend: Backend, db: &str) -> Result<i64, StoreError> {
    let query_err = |op: &'static str| {
        move |e: sqlx::Error| StoreError::Query {
            db: db.to_owned(),
            op,
            message: e.to_string(),
        }
    };
    let mut at = 0;
    for migration in MIGRATIONS {
        let mut conn = pool
            .acquire()
            .await
            .map_err(query_err("taking a connection for migrations"))?;
        let mut tx = match backend {
            Backend::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await,
            Backend::Postgres => sqlx::Connection::begin(&mut *conn).await,
        }
        .map_err(query_err("starting the migration transaction"))?;
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(query_err("taking the migration lock"))?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY NOT NULL, \
             name TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(query_err("creating the schema_version table"))?;
        let rows = sqlx::query("SELECT version, name FROM schema_version ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err("reading schema_version"))?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in &rows {
            let version: i64 = row
                .try_get("version")
                .map_err(query_err("reading schema_version"))?;
            let name: String = row
                .try_get("name")
                .map_err(query_err("reading schema_version"))?;
            applied.push((version, name));
        }
        check_history(&applied, db)?;
        at = applied.last().map_or(0, |(v, _)| *v);
        if at >= migration.version {
            tx.rollback()
                .await
                .map_err(query_err("ending the migration transaction"))?;
            continue;
        }
        let ddl = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        let failed = |e: sqlx::Error| StoreError::Migrate {
            db: db.to_owned(),
            version: migration.version,
            name: migration.name,
            message: e.to_string(),
        };
        sqlx::raw_sql(ddl).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query("INSERT INTO schema_version (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        at = migration.version;
    }
    Ok(at)
}

/// The applied migrations must be a prefix of [`MIGRATIONS`], name for name.
fn check_history(applied: &[(i64, String)], db: &str) -> Result<(), StoreError> {
    for (i, (version, name)) in applied.iter().enumerate() {
        match MIGRATIONS.get(i) {
            Some(m) if m.version == *version && m.name == name => {}
            Some(m) => {
                return Err(StoreError::Schema {
                    db: db.to_owned(),
                    detail: format!(
                        "schema migration {version} ({name}) is recorded where this verifier \
                         expects {} ({})",
                        m.version, m.name
                    ),
                });
            }
            None => {
                return Err(StoreError::Schema {
                    db: db.to_owned(),
                    detail: format!(
                        "the database is at schema version {version} ({name}); this verifier knows \
                         versions up to {}",
                        latest_version()
                    ),
                });
            }
        }
    }
    Ok(())
}
