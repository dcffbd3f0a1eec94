//! Lifecycle records: licence revocations (signed by the licence authority; the token is kept
//! so an auditor can verify it again), licence retirements and node retirements (who, when,
//! why). Rows are only ever added, each in a write batch, so every record moves the fleet
//! version and replicas see it at their next refresh ([`Store::fleet_version`]).

use sqlx::Row;
use sqlx::any::AnyRow;
use tppguard_proto::identity::NodeId;

use super::{
    MAX_LICENCE_ID_LEN, MAX_LICENCES, MAX_NODES, MAX_SENTENCE_LEN, MAX_SUBJECT_LEN, MAX_TOKEN_LEN,
    Store, StoreError, check_len, limit_plus_one, sha256_hex,
};

/// Longest `recorded_by` / `retired_by` stored (a credential's name).
pub const MAX_ACTOR_LEN: usize = 256;

/// A licence revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceRevocationRecord {
    /// The licence revoked.
    pub licence_id: String,
    /// The signed revocation (compact JWS).
    pub token: String,
    /// The authority's reason.
    pub reason: String,
    /// When the authority revoked it (its `revoked_at`).
    pub revoked_at: i64,
    /// When this verifier recorded it.
    pub recorded_at: i64,
    /// Who submitted it (a credential's name, or `licences_dir`).
    pub recorded_by: String,
}

/// A licence retired by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceRetirement {
    /// The licence.
    pub licence_id: String,
    /// Why.
    pub reason: String,
    /// When.
    pub retired_at: i64,
    /// Who.
    pub retired_by: String,
}

/// A node retired by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRetirement {
    /// The node (its key).
    pub node_id: NodeId,
    /// Its certificate subject when retired, for display.
    pub subject: String,
    /// Why.
    pub reason: String,
    /// When.
    pub retired_at: i64,
    /// Who.
    pub retired_by: String,
}

/// Every lifecycle record, and a description of each row that did not read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleRecords {
    /// Licence revocations, by licence id.
    pub revocations: Vec<LicenceRevocationRecord>,
    /// Licence retirements, by licence id.
    pub licence_retirements: Vec<LicenceRetirement>,
    /// Node retirements, by node id.
    pub node_retirements: Vec<NodeRetirement>,
    /// Rows that do not read back (a node id that is not 64 hex digits, say): reported,
    /// never a reason to stop.
    pub unreadable: Vec<String>,
}

impl Store {
    /// Records a licence revocation; one for the same licence already recorded is kept (the
    /// first word stands). Returns whether it was new.
    pub async fn add_licence_revocation(
        &self,
        r: &LicenceRevocationRecord,
    ) -> Result<bool, StoreError> {
        check_len("licence id", &r.licence_id, 1, MAX_LICENCE_ID_LEN)?;
        check_len("revocation token", &r.token, 1, MAX_TOKEN_LEN)?;
        check_len("revocation reason", &r.reason, 1, MAX_SENTENCE_LEN)?;
        check_len("recorded by", &r.recorded_by, 1, MAX_ACTOR_LEN)?;
        let mut batch = self.begin_batch().await?;
        let done = sqlx::query(
            "INSERT INTO licence_revocations (licence_id, token, token_sha256, reason, \
             revoked_at, recorded_at, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (licence_id) DO NOTHING",
        )
        .bind(&r.licence_id)
        .bind(&r.token)
        .bind(sha256_hex(r.token.as_bytes()))
        .bind(&r.reason)
        .bind(r.revoked_at)
        .bind(r.recorded_at)
        .bind(&r.recorded_by)
        .execute(&mut *batch.tx)
        .await
        .map_err(self.query_err("recording a licence revocation"))?;
        batch.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a licence retirement; a licence retired before stays as first recorded.
    /// Returns whether it was new.
    pub async fn retire_licence(&self, r: &LicenceRetirement) -> Result<bool, StoreError> {
        check_len("licence id", &r.licence_id, 1, MAX_LICENCE_ID_LEN)?;
        check_len("retirement reason", &r.reason, 1, MAX_SENTENCE_LEN)?;
        check_len("retired by", &r.retired_by, 1, MAX_ACTOR_LEN)?;
        let mut batch = self.begin_batch().await?;
        let done = sqlx::query(
            "INSERT INTO licence_retirements (licence_id, reason, retired_at, retired_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (licence_id) DO NOTHING",
        )
        .bind(&r.licence_id)
        .bind(&r.reason)
        .bind(r.retired_at)
        .bind(&r.retired_by)
        .execute(&mut *batch.tx)
        .await
        .map_err(self.query_err("retiring a licence"))?;
        batch.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a node retirement; a node retired before stays as first recorded. Returns
    /// whether it was new. The node's history is kept.
    pub async fn retire_node(&self, r: &NodeRetirement) -> Result<bool, StoreError> {
        check_len("node subject", &r.subject, 0, MAX_SUBJECT_LEN)?;
        check_len("retirement reason", &r.reason, 1, MAX_SENTENCE_LEN)?;
        check_len("retired by", &r.retired_by, 1, MAX_ACTOR_LEN)?;
        let mut batch = self.begin_batch().await?;
        let done = sqlx::query(
            "INSERT INTO node_retirements (node_id, subject, reason, retired_at, retired_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node_id) DO NOTHING",
        )
        .bind(r.node_id.to_string())
        .bind(&r.subject)
        .bind(&r.reason)
        .bind(r.retired_at)
        .bind(&r.retired_by)
        .execute(&mut *batch.tx)
        .await
        .map_err(self.query_err("retiring a node"))?;
        batch.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves the fleet version without another write: what changed is outside the database
    /// (the CRLs reloaded), and replicas and caches keyed by the version must look again.
    pub async fn bump_fleet_version(&self) -> Result<i64, StoreError> {
        self.begin_batch().await?.commit().await
    }

    /// How many licences, lifecycle records and shipments (issue 15) are stored (all only ever
    /// added): a replica reloads them when this changes.
    pub async fn lifecycle_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM licences) + (SELECT COUNT(*) FROM licence_revocations) \
             + (SELECT COUNT(*) FROM licence_retirements) \
             + (SELECT COUNT(*) FROM node_retirements) + (SELECT COUNT(*) FROM shipments) AS n",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(self.query_err("counting lifecycle records"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(self.query_err("counting lifecycle records"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every lifecycle record (bounded: [`MAX_LICENCES`] per licence table, [`MAX_NODES`]
    /// node retirements; more is an error).
    pub async fn lifecycle_records(&self) -> Result<LifecycleRecords, StoreError> {
        let mut out = LifecycleRecords::default();
        let rows = self
            .bounded(
                "SELECT licence_id, token, reason, revoked_at, recorded_at, recorded_by \
                 FROM licence_revocations ORDER BY licence_id LIMIT $1",
                MAX_LICENCES,
                "licence revocations",
            )
            .await?;
        for r in &rows {
            out.revocations.push(self.revocation(r)?);
        }
        let rows = self
            .bounded(
                "SELECT licence_id, reason, retired_at, retired_by FROM licence_retirements \
                 ORDER BY licence_id LIMIT $1",
                MAX_LICENCES,
                "licence retirements",
            )
            .await?;
        let err = self.query_err("reading licence retirements");
        for r in &rows {
            out.licence_retirements.push(LicenceRetirement {
                licence_id: r.try_get("licence_id").map_err(&err)?,
                reason: r.try_get("reason").map_err(&err)?,
                retired_at: r.try_get("retired_at").map_err(&err)?,
                retired_by: r.try_get("retired_by").map_err(&err)?,
            });
        }
        let rows = self
            .bounded(
                "SELECT node_id, subject, reason, retired_at, retired_by FROM node_retirements \
                 ORDER BY node_id LIMIT $1",
                MAX_NODES,
                "node retirements",
            )
            .await?;
        let err = self.query_err("reading node retirements");
        for r in &rows {
            let hex: String = r.try_get("node_id").map_err(&err)?;
            let Some(node_id) = NodeId::from_hex(&hex) else {
                out.unreadable.push(format!(
                    "node retirement {:?}: the node id is not 64 lower-case hex digits",
                    hex.chars().take(80).collect::<String>()
                ));
                continue;
            };
            out.node_retirements.push(NodeRetirement {
                node_id,
                subject: r.try_get("subject").map_err(&err)?,
                reason: r.try_get("reason").map_err(&err)?,
                retired_at: r.try_get("retired_at").map_err(&err)?,
                retired_by: r.try_get("retired_by").map_err(&err)?,
            });
        }
        Ok(out)
    }

    /// Up to `limit` nodes after `after` (by node id) with their latest accepted token: how
    /// the fleet is checked against new CRLs, a page at a time.
    pub async fn latest_tokens_page(
        &self,
        after: Option<NodeId>,
        limit: usize,
    ) -> Result<Vec<(NodeId, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.node_id, a.token FROM latest_accepted l \
             JOIN attestations a ON a.id = l.attestation_id \
             WHERE l.node_id > $1 ORDER BY l.node_id LIMIT $2",
        )
        .bind(after.map_or_else(String::new, |n| n.to_string()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading the latest tokens"))?;
        let err = self.query_err("reading the latest tokens");
        rows.iter()
            .map(|r| {
                let node: String = r.try_get("node_id").map_err(&err)?;
                Ok((self.node_id(&node)?, r.try_get("token").map_err(&err)?))
            })
            .collect()
    }

    async fn bounded(
        &self,
        sql: &'static str,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(limit_plus_one(max))
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading lifecycle records"))?;
        if rows.len() > max {
            return Err(self.too_many(what, max));
        }
        Ok(rows)
    }

    fn revocation(&self, r: &AnyRow) -> Result<LicenceRevocationRecord, StoreError> {
        let err = self.query_err("reading licence revocations");
        Ok(LicenceRevocationRecord {
            licence_id: r.try_get("licence_id").map_err(&err)?,
            token: r.try_get("token").map_err(&err)?,
            reason: r.try_get("reason").map_err(&err)?,
            revoked_at: r.try_get("revoked_at").map_err(&err)?,
            recorded_at: r.try_get("recorded_at").map_err(&err)?,
            recorded_by: r.try_get("recorded_by").map_err(&err)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Kind, fresh, open};
    use super::super::{NewAttestation, Outcome};
    use super::*;

    fn accepted(node: NodeId, token: &str) -> NewAttestation {
        NewAttestation {
            node_id: Some(node),
            subject: "CN=n".to_owned(),
            certified_site: None,
            iat: 1,
            received_at: 2,
            token: token.to_owned(),
            token_sha256: None,
            claims_json: "{}".to_owned(),
            outcome: Outcome::Accepted,
            reason: "ok".to_owned(),
            sentence: "accepted".to_owned(),
            ear: None,
            gpu_evidence_json: None,
        }
    }

    async fn records_are_kept_once_and_move_the_fleet_version(kind: Kind) {
        let db = fresh(kind).await;
        let s = open(&db).await;
        let v0 = s.fleet_version().await.unwrap();
        let c0 = s.lifecycle_count().await.unwrap();
        let revocation = LicenceRevocationRecord {
            licence_id: "LIC-1".to_owned(),
            token: "a.b.c".to_owned(),
            reason: "breach".to_owned(),
            revoked_at: 10,
            recorded_at: 20,
            recorded_by: "admin".to_owned(),
        };
        assert!(s.add_licence_revocation(&revocation).await.unwrap());
        let again = LicenceRevocationRecord {
            reason: "another".to_owned(),
            ..revocation.clone()
        };
        assert!(
            !s.add_licence_revocation(&again).await.unwrap(),
            "first word stands"
        );
        let retirement = LicenceRetirement {
            licence_id: "LIC-2".to_owned(),
            reason: "ended".to_owned(),
            retired_at: 30,
            retired_by: "ops".to_owned(),
        };
        assert!(s.retire_licence(&retirement).await.unwrap());
        let node = NodeRetirement {
            node_id: NodeId::from_bytes([7; 32]),
            subject: "CN=gpu-node-01".to_owned(),
            reason: "decommissioned".to_owned(),
            retired_at: 40,
            retired_by: "ops".to_owned(),
        };
        assert!(s.retire_node(&node).await.unwrap());
        assert!(!s.retire_node(&node).await.unwrap());
        assert!(s.fleet_version().await.unwrap() >= v0 + 3);
        assert_eq!(s.lifecycle_count().await.unwrap(), c0 + 3);
        s.add_licence("LIC-3", "x.y.z", 1).await.unwrap();
        assert_eq!(
            s.lifecycle_count().await.unwrap(),
            c0 + 4,
            "licences count too"
        );
        let records = s.lifecycle_records().await.unwrap();
        assert_eq!(records.revocations, [revocation]);
        assert_eq!(records.licence_retirements, [retirement]);
        assert_eq!(records.node_retirements, [node]);
        assert!(records.unreadable.is_empty());
        let v = s.fleet_version().await.unwrap();
        assert_eq!(s.bump_fleet_version().await.unwrap(), v + 1);
    }

    async fn bad_input_is_refused_and_a_bad_row_is_reported(kind: Kind) {
        let db = fresh(kind).await;
        let s = open(&db).await;
        let empty_reason = LicenceRetirement {
            licence_id: "LIC-1".to_owned(),
            reason: String::new(),
            retired_at: 1,
            retired_by: "ops".to_owned(),
        };
        assert!(matches!(
            s.retire_licence(&empty_reason).await,
            Err(StoreError::InvalidInput { .. })
        ));
        sqlx::query(
            "INSERT INTO node_retirements (node_id, subject, reason, retired_at, retired_by) \
             VALUES ('zz', '', 'r', 1, 'x')",
        )
        .execute(&s.pool)
        .await
        .unwrap();
        let records = s.lifecycle_records().await.unwrap();
        assert!(records.node_retirements.is_empty());
        assert_eq!(records.unreadable.len(), 1, "{:?}", records.unreadable);
    }

    async fn latest_tokens_come_a_page_at_a_time(kind: Kind) {
        let db = fresh(kind).await;
        let s = open(&db).await;
        let nodes: Vec<NodeId> = (1..=3u8).map(|b| NodeId::from_bytes([b; 32])).collect();
        for (i, n) in nodes.iter().enumerate() {
            s.record_attestation(&accepted(*n, &format!("old-{i}")))
                .await
                .unwrap();
            s.record_attestation(&accepted(*n, &format!("new-{i}")))
                .await
                .unwrap();
        }
        let first = s.latest_tokens_page(None, 2).await.unwrap();
        assert_eq!(
            first,
            [
                (nodes[0], "new-0".to_owned()),
                (nodes[1], "new-1".to_owned())
            ]
        );
        let rest = s.latest_tokens_page(Some(nodes[1]), 2).await.unwrap();
        assert_eq!(rest, [(nodes[2], "new-2".to_owned())]);
        assert!(
            s.latest_tokens_page(Some(nodes[2]), 2)
                .await
                .unwrap()
                .is_empty()
        );
    }

    mod sqlite {
        use super::*;

        #[tokio::test]
        async fn records() {
            records_are_kept_once_and_move_the_fleet_version(Kind::Sqlite).await;
        }

        #[tokio::test]
        async fn bad_rows() {
            bad_input_is_refused_and_a_bad_row_is_reported(Kind::Sqlite).await;
        }

        #[tokio::test]
        async fn latest_tokens() {
            latest_tokens_come_a_page_at_a_time(Kind::Sqlite).await;
        }
    }

    mod postgres {
        use super::*;

        #[tokio::test]
        async fn records() {
            records_are_kept_once_and_move_the_fleet_version(Kind::Postgres).await;
        }

        #[tokio::test]
        async fn bad_rows() {
            bad_input_is_refused_and_a_bad_row_is_reported(Kind::Postgres).await;
        }

        #[tokio::test]
        async fn latest_tokens() {
            latest_tokens_come_a_page_at_a_time(Kind::Postgres).await;
        }
    }
}
