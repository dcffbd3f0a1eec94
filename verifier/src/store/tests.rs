//! The storage test suite: every test runs twice, on a fresh SQLite file (`store::tests::sqlite`)
//! and on a fresh database in a throwaway PostgreSQL cluster (`store::tests::postgres`, see
//! `pg_harness`). A missing PostgreSQL installation fails the postgres tests with the fix.

use std::collections::BTreeSet;

use sqlx::Connection;

use super::pg_harness;
use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty database; a SQLite one lives as long as this value.
pub(super) struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

pub(super) async fn fresh(kind: Kind) -> TestDb {
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/verifier.db", dir.path().display());
            TestDb {
                url,
                _dir: Some(dir),
            }
        }
        Kind::Postgres => {
            let cluster = match pg_harness::cluster() {
                Ok(c) => c,
                Err(e) => panic!("PostgreSQL test cluster: {e}"),
            };
            let (name, url) = cluster.next_database();
            sqlx::any::install_default_drivers();
            let mut admin = sqlx::AnyConnection::connect(&cluster.admin_url())
                .await
                .expect("connect to the test cluster");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .expect("create the test database");
            admin.close().await.expect("close admin connection");
            TestDb { url, _dir: None }
        }
    }
}

pub(super) async fn open(db: &TestDb) -> Store {
    Store::open(&db.url).await.expect("open store")
}

fn nonce(n: u8) -> Vec<u8> {
    let mut v = vec![0xa5; 32];
    v[0] = n;
    v
}

/// The node id of the test node named `name` (a stand-in key).
fn nid(name: &str) -> NodeId {
    NodeId::from_spki_der(name.as_bytes())
}

/// An attestation of the node `node` (its key [`nid`], its subject `node`).
fn att(node: &str, iat: i64, token: &str, outcome: Outcome) -> NewAttestation {
    NewAttestation {
        node_id: Some(nid(node)),
        subject: node.to_owned(),
        certified_site: None,
        iat,
        received_at: iat + 1,
        token: token.to_owned(),
        token_sha256: None,
        claims_json: format!(r#"{{"iss":"{node}","iat":{iat}}}"#),
        outcome,
        reason: match outcome {
            Outcome::Accepted => "ok".to_owned(),
            Outcome::Rejected => "bad_signature".to_owned(),
        },
        sentence: "test".to_owned(),
        ear: (outcome == Outcome::Accepted).then(|| format!("ear-{token}")),
        gpu_evidence_json: None,
    }
}

/// Each node's latest row id, by subject.
async fn latest_ids(store: &Store) -> Vec<(String, i64)> {
    let mut ids: Vec<(String, i64)> = store
        .latest_accepted()
        .await
        .expect("latest")
        .into_iter()
        .map(|a| (a.subject, a.id))
        .collect();
    ids.sort();
    ids
}

// ---- the suite ----

async fn migrations_idempotent(kind: Kind) {
    let db = fresh(kind).await;
    // Two verifiers starting together on an empty database: each migration applies once.
    let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
    let (a, b) = (a.expect("open a"), b.expect("open b"));
    assert_eq!(
        a.schema_version().await.expect("version"),
        migrate::latest_version()
    );
    assert_eq!(
        b.schema_version().await.expect("version"),
        migrate::latest_version()
    );
    assert_eq!(
        a.backend(),
        match kind {
            Kind::Sqlite => Backend::Sqlite,
            Kind::Postgres => Backend::Postgres,
        }
    );
    a.issue_nonce(&nonce(1), 10, 20).await.expect("issue");
    drop((a, b));
    // Opening again changes nothing and keeps the data.
    let c = open(&db).await;
    assert_eq!(
        c.schema_version().await.expect("version"),
        migrate::latest_version()
    );
    c.ping().await.expect("ping");
    assert_eq!(
        c.consume_nonce(&nonce(1), 15).await.expect("use"),
        NonceUse::Fresh
    );
    let rows = sqlx::query("SELECT COUNT(*) AS n FROM schema_version")
        .fetch_one(&c.pool)
        .await
        .expect("count");
    assert_eq!(
        rows.try_get::<i64, _>("n").expect("n"),
        i64::try_from(migrate::MIGRATIONS.len()).unwrap(),
        "each migration once"
    );
}

async fn nonce_lifecycle(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    s.issue_nonce(&nonce(1), 100, 200).await.expect("issue 1");
    s.issue_nonce(&nonce(2), 100, 200).await.expect("issue 2");
    assert_eq!(
        s.consume_nonce(&nonce(1), 150).await.expect("use"),
        NonceUse::Fresh
    );
    assert_eq!(
        s.consume_nonce(&nonce(1), 151).await.expect("use"),
        NonceUse::Used
    );
    // Used stays used after expiry too.
    assert_eq!(
        s.consume_nonce(&nonce(1), 500).await.expect("use"),
        NonceUse::Used
    );
    // Expiry is exclusive: at expires_at it is expired, and expired stays unusable.
    assert_eq!(
        s.consume_nonce(&nonce(2), 200).await.expect("use"),
        NonceUse::Expired
    );
    assert_eq!(
        s.consume_nonce(&nonce(2), 150).await.expect("use"),
        NonceUse::Fresh
    );
    assert_eq!(
        s.consume_nonce(&nonce(3), 150).await.expect("use"),
        NonceUse::Unknown
    );
    assert_eq!(
        s.consume_nonce(b"short", 150).await.expect("use"),
        NonceUse::Unknown
    );
    assert!(matches!(
        s.issue_nonce(&nonce(1), 100, 200).await,
        Err(StoreError::DuplicateNonce { .. })
    ));
    assert!(matches!(
        s.issue_nonce(&[7; 16], 100, 200).await,
        Err(StoreError::InvalidInput { what: "nonce", .. })
    ));
    assert!(matches!(
        s.issue_nonce(&nonce(4), 200, 200).await,
        Err(StoreError::InvalidInput { .. })
    ));
    s.issue_nonce(&nonce(5), 100, 1000).await.expect("issue 5");
    assert_eq!(s.prune_nonces(300).await.expect("prune"), 2);
    assert_eq!(
        s.consume_nonce(&nonce(1), 301).await.expect("use"),
        NonceUse::Unknown
    );
    assert_eq!(
        s.consume_nonce(&nonce(5), 301).await.expect("use"),
        NonceUse::Fresh
    );
}

async fn nonce_race_between_replicas(kind: Kind) {
    const NONCES: u8 = 20;
    const TASKS_PER_REPLICA: usize = 4;
    let db = fresh(kind).await;
    let a = open(&db).await;
    let b = open(&db).await;
    for n in 0..NONCES {
        a.issue_nonce(&nonce(n), 0, 1000).await.expect("issue");
    }
    let mut handles = Vec::new();
    for n in 0..NONCES {
        for i in 0..TASKS_PER_REPLICA * 2 {
            let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(tokio::spawn(async move {
                (n, replica.consume_nonce(&nonce(n), 10).await)
            }));
        }
    }
    let mut fresh_count = vec![0usize; usize::from(NONCES)];
    for h in handles {
        let (n, r) = h.await.expect("join");
        match r.expect("consume") {
            NonceUse::Fresh => fresh_count[usize::from(n)] += 1,
            NonceUse::Used => {}
            other => panic!("nonce {n}: unexpected {other:?}"),
        }
    }
    assert_eq!(fresh_count, vec![1; usize::from(NONCES)]);
}

async fn latest_pointer_rules(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let first = s
        .record_attestation(&att("node-a", 100, "tok-a100", Outcome::Accepted))
        .await
        .expect("record");
    assert_eq!(latest_ids(&s).await, vec![("node-a".to_owned(), first)]);
    // Received later with an older iat: the verifier's receipt decides, not the node's clock.
    let older = s
        .record_attestation(&att("node-a", 90, "tok-a90", Outcome::Accepted))
        .await
        .expect("record");
    assert!(older > first);
    assert_eq!(latest_ids(&s).await, vec![("node-a".to_owned(), older)]);
    // Rejected, even with a far greater iat: never the latest; a node with only rejected
    // ones has none.
    s.record_attestation(&att("node-a", 3_000_000, "tok-a-bad", Outcome::Rejected))
        .await
        .expect("record");
    s.record_attestation(&att("node-c", 300, "tok-c300-bad", Outcome::Rejected))
        .await
        .expect("record");
    assert_eq!(latest_ids(&s).await, vec![("node-a".to_owned(), older)]);
    // A node's attestation dated far ahead does not pin it: the next one received replaces it.
    let ahead = s
        .record_attestation(&att("node-a", 3_000_000, "tok-a-ahead", Outcome::Accepted))
        .await
        .expect("record");
    assert_eq!(latest_ids(&s).await, vec![("node-a".to_owned(), ahead)]);
    let newer = s
        .record_attestation(&att("node-a", 150, "tok-a150", Outcome::Accepted))
        .await
        .expect("record");
    // A stale node (ancient iat) is still listed: staleness is the policy's call.
    let ancient = s
        .record_attestation(&att("node-b", 1, "tok-b1", Outcome::Accepted))
        .await
        .expect("record");
    assert_eq!(
        latest_ids(&s).await,
        vec![("node-a".to_owned(), newer), ("node-b".to_owned(), ancient)]
    );
    // Two keys under one subject are two nodes; one key under two subjects is one node.
    let mut twin = att("node-a", 160, "tok-twin", Outcome::Accepted);
    twin.node_id = Some(nid("another key"));
    let twin_id = s.record_attestation(&twin).await.expect("record");
    let mut renamed = att("node-b", 2, "tok-b2-renamed", Outcome::Accepted);
    renamed.subject = "node-b-renamed".to_owned();
    let renamed_id = s.record_attestation(&renamed).await.expect("record");
    let latest = s.latest_accepted().await.expect("latest");
    assert_eq!(latest.len(), 3, "{latest:?}");
    let of = |id: NodeId| latest.iter().find(|a| a.node_id == Some(id)).map(|a| a.id);
    assert_eq!(of(nid("node-a")), Some(newer));
    assert_eq!(of(nid("another key")), Some(twin_id));
    assert_eq!(of(nid("node-b")), Some(renamed_id));
    // Several of one node in one batch: the last in the list (received last) wins.
    let mut b = s.begin_batch().await.expect("batch");
    let answers = b
        .record_many(&[
            att("node-a", 999, "tok-a999", Outcome::Accepted),
            att("node-a", 500, "tok-a500", Outcome::Accepted),
        ])
        .await
        .expect("record");
    b.commit().await.expect("commit");
    let last = match answers[1] {
        Ok(Some(id)) => id,
        ref other => panic!("{other:?}"),
    };
    let latest = s.latest_accepted().await.expect("latest");
    let a = latest
        .iter()
        .find(|a| a.node_id == Some(nid("node-a")))
        .expect("node-a");
    assert_eq!(a.id, last);
    assert_eq!(a.token, "tok-a500");
    assert_eq!(a.token_sha256, sha256_hex(b"tok-a500"));
    assert_eq!(a.subject, "node-a");
    assert_eq!(a.iat, 500);
    assert_eq!(a.received_at, 501);
    assert_eq!(a.outcome, Outcome::Accepted);
    assert_eq!(a.reason, "ok");
    assert_eq!(a.ear.as_deref(), Some("ear-tok-a500"));
    assert_eq!(a.claims_json, r#"{"iss":"node-a","iat":500}"#);
    let counts = s.attestation_counts().await.expect("counts");
    assert_eq!(
        counts,
        AttestationCounts {
            accepted: 9,
            rejected: 2
        }
    );
}

/// A database from before schema 3 kept each node's pointer by subject: serving re-keys them
/// by node id (read from the stored token by the caller's function) and drops the old table.
async fn legacy_pointers_adopted(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    // Nothing to adopt on a fresh database... after the first adoption drops the table.
    assert_eq!(
        s.adopt_legacy_pointers(|_| None).await.expect("adopt"),
        Some(LegacyAdoption {
            nodes: 0,
            dropped: 0
        })
    );
    assert_eq!(
        s.adopt_legacy_pointers(|_| None).await.expect("adopt"),
        None
    );
    // Rows as schema 2 wrote them: no node id, pointers by subject.
    sqlx::raw_sql(
        "CREATE TABLE legacy_latest_by_subject (node TEXT PRIMARY KEY NOT NULL, \
         attestation_id BIGINT NOT NULL, iat BIGINT NOT NULL, token_sha256 TEXT NOT NULL, \
         version BIGINT NOT NULL DEFAULT 0)",
    )
    .execute(&s.pool)
    .await
    .expect("legacy table");
    let mut ids = Vec::new();
    for (subject, token) in [
        ("old-a", "key-a.1"),
        ("old-a", "key-a.2"),
        ("old-b", "garbage"),
    ] {
        let mut row = att(subject, 10, token, Outcome::Rejected);
        row.node_id = None;
        ids.push(s.record_attestation(&row).await.expect("record"));
    }
    sqlx::query("UPDATE attestations SET outcome = 'accepted' WHERE node_id IS NULL")
        .execute(&s.pool)
        .await
        .expect("accepted");
    for (subject, id) in [("old-a", ids[1]), ("old-b", ids[2])] {
        sqlx::query(
            "INSERT INTO legacy_latest_by_subject (node, attestation_id, iat, token_sha256) \
             VALUES ($1, $2, 10, 'x')",
        )
        .bind(subject)
        .bind(id)
        .execute(&s.pool)
        .await
        .expect("legacy pointer");
    }
    let adopted = s
        .adopt_legacy_pointers(|token| {
            token
                .strip_prefix("key-a.")
                .map(|_| (nid("key a"), Some(SiteId::parse("fra-1").expect("site"))))
        })
        .await
        .expect("adopt");
    assert_eq!(
        adopted,
        Some(LegacyAdoption {
            nodes: 1,
            dropped: 1
        })
    );
    let latest = s.latest_accepted().await.expect("latest");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].id, ids[1]);
    assert_eq!(latest[0].node_id, Some(nid("key a")));
    assert_eq!(
        latest[0].certified_site.as_ref().map(SiteId::as_str),
        Some("fra-1")
    );
    assert_eq!(
        s.adopt_legacy_pointers(|_| None).await.expect("adopt"),
        None
    );
}

async fn history_order_and_limit(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    assert!(
        s.node_history(&nid("node-a"), 10)
            .await
            .expect("empty")
            .is_empty()
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let outcome = if i == 2 {
            Outcome::Rejected
        } else {
            Outcome::Accepted
        };
        ids.push(
            s.record_attestation(&att("node-a", 100 + i, &format!("a{i}"), outcome))
                .await
                .expect("record"),
        );
        s.record_attestation(&att("node-b", 100 + i, &format!("b{i}"), outcome))
            .await
            .expect("record");
    }
    let all = s
        .node_history(&nid("node-a"), MAX_HISTORY)
        .await
        .expect("history");
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(all.iter().all(|a| a.subject == "node-a"));
    assert_eq!(all[2].outcome, Outcome::Rejected);
    assert_eq!(all[2].ear, None);
    let three = s.node_history(&nid("node-a"), 3).await.expect("history");
    assert_eq!(
        three.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    assert!(
        s.node_history(&nid("node-a"), 0)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(matches!(
        s.node_history(&nid("node-a"), MAX_HISTORY + 1).await,
        Err(StoreError::InvalidInput { .. })
    ));
}

async fn duplicate_token_rejected(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let id = s
        .record_attestation(&att("node-a", 100, "same-token", Outcome::Accepted))
        .await
        .expect("record");
    // Same token bytes, even with a different judgement or node: refused, nothing changes.
    let err = s
        .record_attestation(&att("node-z", 500, "same-token", Outcome::Accepted))
        .await
        .expect_err("duplicate");
    match &err {
        StoreError::DuplicateAttestation { sha256, .. } => {
            assert_eq!(sha256, &sha256_hex(b"same-token"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("already recorded"), "{err}");
    assert_eq!(latest_ids(&s).await, vec![("node-a".to_owned(), id)]);
    assert_eq!(
        s.attestation_counts().await.expect("counts"),
        AttestationCounts {
            accepted: 1,
            rejected: 0
        }
    );
    // The store keeps working (the failed transaction was rolled back).
    s.record_attestation(&att("node-z", 500, "other-token", Outcome::Accepted))
        .await
        .expect("record after duplicate");
    assert_eq!(latest_ids(&s).await.len(), 2);
}

async fn bounds_and_bad_input(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let mut big = att("node-a", 1, "x", Outcome::Accepted);
    big.token = "x".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        s.record_attestation(&big).await,
        Err(StoreError::InvalidInput { .. })
    ));
    let mut anonymous = att("node-a", 1, "z", Outcome::Accepted);
    anonymous.node_id = None;
    assert!(matches!(
        s.record_attestation(&anonymous).await,
        Err(StoreError::InvalidInput {
            what: "node id",
            ..
        })
    ));
    let mut bad_json = att("node-a", 1, "y", Outcome::Accepted);
    bad_json.claims_json = "{not json".to_owned();
    assert!(matches!(
        s.record_attestation(&bad_json).await,
        Err(StoreError::InvalidInput {
            what: "claims JSON",
            ..
        })
    ));
    assert!(matches!(
        s.add_licence("", "tok", 1).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert_eq!(
        s.attestation_counts().await.expect("counts"),
        AttestationCounts::default()
    );
}

async fn licence_idempotence(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    assert!(s.licences().await.expect("none").is_empty());
    assert!(s.add_licence("lic-1", "token-one", 100).await.expect("add"));
    assert!(
        !s.add_licence("lic-1", "token-one", 200)
            .await
            .expect("again")
    );
    assert!(
        !s.add_licence("renamed", "token-one", 300)
            .await
            .expect("again")
    );
    // A renewed licence: same id, new token, stored alongside.
    assert!(s.add_licence("lic-1", "token-two", 150).await.expect("add"));
    let all = s.licences().await.expect("licences");
    assert_eq!(
        all,
        vec![
            StoredLicence {
                id: "lic-1".to_owned(),
                token: "token-one".to_owned(),
                token_sha256: sha256_hex(b"token-one"),
                added_at: 100,
            },
            StoredLicence {
                id: "lic-1".to_owned(),
                token: "token-two".to_owned(),
                token_sha256: sha256_hex(b"token-two"),
                added_at: 150,
            },
        ]
    );
}

async fn durability_without_close(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    s.issue_nonce(&nonce(9), 0, 100).await.expect("issue");
    let id = s
        .record_attestation(&att("node-a", 100, "durable", Outcome::Accepted))
        .await
        .expect("record");
    s.add_licence("lic", "licence-token", 5).await.expect("add");
    // No close, no checkpoint, no destructor: as if the process had been killed.
    std::mem::forget(s);
    let again = open(&db).await;
    assert_eq!(latest_ids(&again).await, vec![("node-a".to_owned(), id)]);
    assert_eq!(again.licences().await.expect("licences").len(), 1);
    assert_eq!(
        again.consume_nonce(&nonce(9), 50).await.expect("use"),
        NonceUse::Fresh
    );
    let names: BTreeSet<_> = again
        .node_history(&nid("node-a"), 10)
        .await
        .expect("history")
        .into_iter()
        .map(|a| a.token_sha256)
        .collect();
    assert_eq!(names, BTreeSet::from([sha256_hex(b"durable")]));
}

/// One write batch: many nonces issued and spent, many attestations recorded, per-row
/// answers, one fleet-version step at the commit; a dropped batch changes nothing.
async fn batch_operations(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let v0 = s.fleet_version().await.expect("version");

    let mut b = s.begin_batch().await.expect("batch");
    let (n1, n2, n3) = (nonce(1), nonce(2), nonce(3));
    b.issue_nonces(&[&n1, &n2, &n3], 100, 200)
        .await
        .expect("issue");
    let used = b
        .consume_nonces(&[&n1, &n1, &n2, &nonce(9), b"short"], 150)
        .await
        .expect("use");
    assert_eq!(
        used,
        [
            NonceUse::Fresh,
            NonceUse::Used,
            NonceUse::Fresh,
            NonceUse::Unknown,
            NonceUse::Unknown
        ]
    );
    let mut empty_node = att("a", 10, "t-bad", Outcome::Accepted);
    empty_node.subject = String::new();
    let rows = [
        att("a", 10, "t-a10", Outcome::Accepted),
        att("a", 20, "t-a20", Outcome::Accepted),
        att("b", 5, "t-b5", Outcome::Rejected),
        att("a", 10, "t-a10", Outcome::Accepted),
        empty_node,
        // PostgreSQL text cannot hold NUL: refused on both backends, for this row only.
        att("b", 6, "t-\0-nul", Outcome::Rejected),
    ];
    let answers = b.record_many(&rows).await.expect("record");
    assert!(matches!(answers[0], Ok(Some(_))), "{answers:?}");
    assert!(matches!(answers[2], Ok(Some(_))), "{answers:?}");
    assert!(
        matches!(answers[3], Ok(None)),
        "the same token twice: {answers:?}"
    );
    for bad in [4, 5] {
        assert!(
            matches!(answers[bad], Err(StoreError::InvalidInput { .. })),
            "{answers:?}"
        );
    }
    let a20 = match answers[1] {
        Ok(Some(id)) => id,
        ref other => panic!("{other:?}"),
    };
    let v1 = b.commit().await.expect("commit");
    assert_eq!(v1, v0 + 1, "one step for the batch");
    assert_eq!(s.fleet_version().await.expect("version"), v1);
    assert_eq!(latest_ids(&s).await, [("a".to_owned(), a20)]);
    assert_eq!(
        s.latest_pointers(None).await.expect("pointers"),
        [(nid("a"), a20)]
    );
    assert_eq!(
        s.latest_pointers(Some(v0)).await.expect("pointers"),
        [(nid("a"), a20)],
        "moved by the batch after v0"
    );
    let by_id = s.attestations_by_id(&[a20, 999_999]).await.expect("by id");
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].token, "t-a20");

    // Only rejections: the version moves (every batch moves it), no pointer does.
    let mut b = s.begin_batch().await.expect("batch");
    b.record(&att("c", 1, "t-c1", Outcome::Rejected))
        .await
        .expect("record");
    let v2 = b.commit().await.expect("commit");
    assert_eq!(v2, v1 + 1);
    assert!(
        s.latest_pointers(Some(v1))
            .await
            .expect("pointers")
            .is_empty()
    );

    // Dropped without a commit: the nonce stays unspent, the row unrecorded, the version
    // where it was.
    let mut b = s.begin_batch().await.expect("batch");
    assert_eq!(
        b.consume_nonce(&n3, 160).await.expect("use"),
        NonceUse::Fresh
    );
    b.record(&att("d", 1, "t-d1", Outcome::Accepted))
        .await
        .expect("record");
    drop(b);
    assert_eq!(s.fleet_version().await.expect("version"), v2);
    assert_eq!(
        s.consume_nonce(&n3, 161).await.expect("use"),
        NonceUse::Fresh
    );
    assert_eq!(latest_ids(&s).await.len(), 1);

    // Licences: added once, then a no-op.
    assert!(s.add_licence("L-1", "lic-token", 5).await.expect("add"));
    assert!(!s.add_licence("L-1", "lic-token", 6).await.expect("add"));
    assert_eq!(s.licence_count().await.expect("count"), 1);
}

/// API tokens (migration 4): stored once per id, listed oldest first with their scope and
/// times (NULL and set), revoked once (the first revocation time stays).
async fn api_tokens_round_trip(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let token = |id: &str, at: i64| super::ApiToken {
        id: id.to_owned(),
        name: format!("name of {id}"),
        role: "vendor".to_owned(),
        licences: vec!["L-1".to_owned(), "L-2".to_owned()],
        secret_sha256: super::sha256_hex(id.as_bytes()),
        created_at: at,
        expires_at: (at > 10).then_some(at + 100),
        revoked_at: None,
    };
    s.add_api_token(&token("b", 20)).await.expect("add b");
    s.add_api_token(&token("a", 10)).await.expect("add a");
    assert!(matches!(
        s.add_api_token(&token("a", 30)).await,
        Err(StoreError::InvalidInput { .. })
    ));
    let listed = s.api_tokens().await.expect("list");
    assert_eq!(listed, [token("a", 10), token("b", 20)]);
    let revoked = s.revoke_api_token("b", 40).await.expect("revoke");
    assert_eq!(revoked.and_then(|t| t.revoked_at), Some(40));
    let again = s.revoke_api_token("b", 50).await.expect("revoke again");
    assert_eq!(again.and_then(|t| t.revoked_at), Some(40));
    assert_eq!(s.revoke_api_token("c", 50).await.expect("unknown"), None);
    // The service's cache: usable tokens, and those revoked (b, at 40) or expired (d, at
    // 120) within `RECENT_S`; "a" never expires.
    s.add_api_token(&token("d", 20)).await.expect("add d");
    let ids = |ts: Vec<super::ApiToken>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let recent = super::tokens::RECENT_S;
    assert_eq!(
        ids(s.recent_api_tokens(60).await.expect("recent")),
        ["a", "b", "d"]
    );
    assert_eq!(
        ids(s.recent_api_tokens(40 + recent).await.expect("recent")),
        ["a", "d"]
    );
    assert_eq!(
        ids(s.recent_api_tokens(120 + recent).await.expect("recent")),
        ["a"]
    );
    // A row that does not read back is left out; the others still load.
    sqlx::query("UPDATE api_tokens SET licences = 'not json' WHERE id = 'a'")
        .execute(&s.pool)
        .await
        .expect("corrupt a row");
    assert_eq!(
        ids(s.recent_api_tokens(60).await.expect("recent")),
        ["b", "d"]
    );
}

/// A rejection kept as a prefix is keyed by the SHA-256 of the whole token it was cut from:
/// the same token again is not recorded twice, a malformed hash is refused, and the history
/// names the whole token's hash.
async fn prefix_rows_keyed_by_the_whole_token(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let whole = "x".repeat(10_000);
    let mut row = att("node-a", 100, "xxxx...(truncated)", Outcome::Rejected);
    row.token_sha256 = Some(sha256_hex(whole.as_bytes()));
    assert!(s.record_attestation(&row).await.expect("record") > 0);
    let mut b = s.begin_batch().await.expect("batch");
    assert_eq!(
        b.record(&row).await.expect("again"),
        None,
        "one row per token"
    );
    row.token_sha256 = Some("ABC".to_owned());
    assert!(matches!(
        b.record(&row).await,
        Err(StoreError::InvalidInput {
            what: "token SHA-256",
            ..
        })
    ));
    drop(b);
    let history = s.node_history(&nid("node-a"), 10).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].token_sha256, sha256_hex(whole.as_bytes()));
}

/// Issue 13: what the verifier established from GPU evidence is kept with the row and read
/// back as written; a row without it reads back without it; an oversized one is refused.
async fn gpu_evidence_facts_round_trip(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let facts = r#"{"gpu0":{"checks":[],"hardware_id":"ab","ecid":null,"facts":null}}"#;
    let with = NewAttestation {
        gpu_evidence_json: Some(facts.to_owned()),
        ..att("node-a", 100, "with-evidence", Outcome::Accepted)
    };
    s.record_attestation(&with).await.expect("record");
    s.record_attestation(&att("node-b", 100, "without", Outcome::Accepted))
        .await
        .expect("record");
    let latest = s.latest_accepted().await.expect("latest");
    let by_subject = |name: &str| {
        latest
            .iter()
            .find(|a| a.subject == name)
            .and_then(|a| a.gpu_evidence_json.clone())
    };
    assert_eq!(by_subject("node-a").as_deref(), Some(facts));
    assert_eq!(by_subject("node-b"), None);
    let huge = NewAttestation {
        gpu_evidence_json: Some(format!("\"{}\"", "x".repeat(MAX_GPU_EVIDENCE_LEN))),
        ..att("node-c", 100, "huge", Outcome::Accepted)
    };
    let err = s.record_attestation(&huge).await.expect_err("too large");
    assert!(err.to_string().contains("GPU evidence facts"), "{err}");
}

// ---- shipments, site history, outbox (issue 15) ----

fn shipment(id: &str, licence: &str, token: &str) -> NewShipment {
    NewShipment {
        id: id.to_owned(),
        licence: licence.to_owned(),
        vendor: "CN=Vendor A".to_owned(),
        token: token.to_owned(),
        delivered_at: 100,
        received_at: 200,
        received_by: "vendor-a".to_owned(),
    }
}

async fn shipments_stored_once(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let count = s.lifecycle_count().await.expect("count");
    let version = s.fleet_version().await.expect("version");
    let first = shipment("SHP-1", "LIC-A", "a.b.c");
    assert_eq!(
        s.add_shipment(&first).await.expect("add"),
        ShipmentInsert::Added
    );
    assert!(
        s.fleet_version().await.expect("version") > version,
        "replicas look again"
    );
    assert_eq!(s.lifecycle_count().await.expect("count"), count + 1);
    // The same token again: idempotent.
    assert_eq!(
        s.add_shipment(&first).await.expect("again"),
        ShipmentInsert::AlreadyStored
    );
    // Another token for the same id: refused, the first record stands.
    let other = shipment("SHP-1", "LIC-B", "x.y.z");
    assert_eq!(
        s.add_shipment(&other).await.expect("conflict"),
        ShipmentInsert::Conflict {
            stored_sha256: sha256_hex(b"a.b.c"),
            stored_vendor: first.vendor.clone(),
        }
    );
    s.add_shipment(&shipment("SHP-0", "LIC-B", "d.e.f"))
        .await
        .expect("second");
    let all = s.shipments().await.expect("list");
    assert_eq!(
        all.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["SHP-0", "SHP-1"]
    );
    let one = s.shipment("SHP-1").await.expect("read").expect("stored");
    assert_eq!(
        (
            one.licence.as_str(),
            one.token.as_str(),
            one.delivered_at,
            one.received_at
        ),
        ("LIC-A", "a.b.c", 100, 200)
    );
    assert_eq!(one.token_sha256, sha256_hex(b"a.b.c"));
    assert_eq!(s.shipment_count().await.expect("n"), 2);
    // At the bound, a new id is refused with nothing written; a stored one still answers.
    assert_eq!(
        s.add_shipment_within(&shipment("SHP-2", "LIC-A", "j.k.l"), 2)
            .await
            .expect("full"),
        ShipmentInsert::Full { max: 2 }
    );
    assert_eq!(
        s.add_shipment_within(&first, 2).await.expect("again"),
        ShipmentInsert::AlreadyStored
    );
    assert_eq!(s.shipment_count().await.expect("n"), 2);
    assert!(s.shipment("SHP-9").await.expect("read").is_none());
    // Bounds and NUL are refused, nothing stored.
    let bad = shipment("SHP-\0", "LIC-A", "g.h.i");
    assert!(s.add_shipment(&bad).await.is_err());
    let long = shipment(&"x".repeat(MAX_SHIPMENT_ID_LEN + 1), "LIC-A", "g.h.i");
    assert!(s.add_shipment(&long).await.is_err());
    assert_eq!(s.shipment_count().await.expect("n"), 2);
}

fn sighting(device: &str, node: &str, site: Option<&str>, at: i64) -> DeviceSighting {
    DeviceSighting {
        device: device.to_owned(),
        node_id: nid(node).to_string(),
        site: site.map(str::to_owned),
        site_source: if site.is_some() {
            SiteSource::Certified
        } else {
            SiteSource::None
        },
        at,
    }
}

async fn device_site_history(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    let mut batch = s.begin_batch().await.expect("batch");
    batch
        .record_device_sites(&[
            sighting("uuid:gpu-1", "a", Some("fra-1"), 10),
            sighting("uuid:gpu-2", "a", Some("fra-1"), 10),
        ])
        .await
        .expect("first");
    batch.commit().await.expect("commit");
    // Seen again where it was: last_seen moves, no new row.
    let mut batch = s.begin_batch().await.expect("batch");
    batch
        .record_device_sites(&[sighting("uuid:gpu-1", "a", Some("fra-1"), 20)])
        .await
        .expect("again");
    batch.commit().await.expect("commit");
    let h = s.device_sites("uuid:gpu-1").await.expect("history");
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].first_seen, h[0].last_seen), (10, 20));
    // Moved to another node and site, then seen there twice and back at the first, in one
    // batch: three rows in order, each closed at its last sighting.
    let mut batch = s.begin_batch().await.expect("batch");
    batch
        .record_device_sites(&[
            sighting("uuid:gpu-1", "b", Some("ams-1"), 30),
            sighting("uuid:gpu-1", "b", Some("ams-1"), 31),
            sighting("uuid:gpu-1", "a", Some("fra-1"), 32),
        ])
        .await
        .expect("moves");
    batch.commit().await.expect("commit");
    let h = s.device_sites("uuid:gpu-1").await.expect("history");
    let places: Vec<(Option<&str>, i64, i64)> = h
        .iter()
        .map(|r| (r.site.as_deref(), r.first_seen, r.last_seen))
        .collect();
    assert_eq!(
        places,
        [
            (Some("fra-1"), 10, 20),
            (Some("ams-1"), 30, 31),
            (Some("fra-1"), 32, 32)
        ]
    );
    assert_eq!(h[1].node, nid("b").to_string());
    // A later sighting at the latest place moves only the latest row; time never goes back.
    let mut batch = s.begin_batch().await.expect("batch");
    batch
        .record_device_sites(&[
            sighting("uuid:gpu-1", "a", Some("fra-1"), 40),
            sighting("uuid:gpu-2", "a", Some("fra-1"), 5),
        ])
        .await
        .expect("later");
    batch.commit().await.expect("commit");
    let h = s.device_sites("uuid:gpu-1").await.expect("history");
    assert_eq!(h.len(), 3);
    assert_eq!((h[2].first_seen, h[2].last_seen), (32, 40));
    let h2 = s.device_sites("uuid:gpu-2").await.expect("history");
    assert_eq!((h2[0].first_seen, h2[0].last_seen), (10, 10));
    // A claimed site is another place than the same site certified.
    let mut claimed = sighting("uuid:gpu-2", "a", Some("fra-1"), 50);
    claimed.site_source = SiteSource::Claimed;
    let mut batch = s.begin_batch().await.expect("batch");
    batch
        .record_device_sites(&[claimed])
        .await
        .expect("claimed");
    batch.commit().await.expect("commit");
    let h2 = s.device_sites("uuid:gpu-2").await.expect("history");
    assert_eq!(h2.len(), 2);
    assert_eq!(h2[1].site_source, SiteSource::Claimed);
    assert!(s.device_sites("uuid:none").await.expect("none").is_empty());
    // Over-long identities are refused.
    let mut batch = s.begin_batch().await.expect("batch");
    let long = sighting(&"u".repeat(MAX_DEVICE_KEY_LEN + 1), "a", None, 1);
    assert!(batch.record_device_sites(&[long]).await.is_err());
}

fn event(id: &str, webhook: &str, at: i64) -> NewEvent {
    NewEvent {
        event_id: id.to_owned(),
        webhook: webhook.to_owned(),
        code: "diverted_device".to_owned(),
        licence: "LIC-A".to_owned(),
        payload: format!("payload-of-{id}"),
        created_at: at,
    }
}

async fn outbox_at_least_once(kind: Kind) {
    let db = fresh(kind).await;
    let s = open(&db).await;
    // Queued in a batch, then again on its own: one row per id.
    let mut batch = s.begin_batch().await.expect("batch");
    let new = batch
        .enqueue_events(&[event("e1", "hook", 100), event("e2", "hook", 101)])
        .await
        .expect("enqueue");
    assert_eq!(new, 2);
    batch.commit().await.expect("commit");
    assert_eq!(
        s.enqueue_events(&[event("e1", "hook", 150), event("e3", "other", 150)])
            .await
            .expect("again"),
        1
    );
    // A claim takes the due rows of the configured webhooks only, oldest first.
    let claimed = s
        .claim_due_events(&["hook"], 100, 130, 10)
        .await
        .expect("claim");
    assert_eq!(
        claimed
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e1"],
        "e2 is not due yet at 100"
    );
    assert_eq!(claimed[0].payload, "payload-of-e1");
    // Claimed: no one else takes it until the claim lapses.
    assert!(
        s.claim_due_events(&["hook"], 101, 131, 10)
            .await
            .expect("claim")
            .iter()
            .all(|e| e.event_id != "e1")
    );
    // The process died before settling e1: due again, same id and payload.
    let again = s
        .claim_due_events(&["hook"], 130, 160, 10)
        .await
        .expect("claim");
    assert!(
        again
            .iter()
            .any(|e| e.event_id == "e1" && e.payload == "payload-of-e1")
    );
    // A failure: retried at next_at; given up: never again.
    s.event_failed("e1", 160, 170, false, "HTTP 500")
        .await
        .expect("failed");
    let early = s
        .claim_due_events(&["hook"], 165, 200, 10)
        .await
        .expect("claim");
    assert!(early.iter().all(|e| e.event_id != "e1"), "e1 waits for 170");
    let retried = s
        .claim_due_events(&["hook"], 170, 200, 10)
        .await
        .expect("claim");
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 3, "three claims so far");
    assert_eq!(retried[0].last_error.as_deref(), Some("HTTP 500"));
    s.event_failed("e1", 200, 210, true, "HTTP 500 \0")
        .await
        .expect("gave up");
    s.event_delivered("e2", 205).await.expect("delivered");
    s.event_delivered("e2", 300).await.expect("twice");
    assert!(
        s.claim_due_events(&["hook"], 10_000, 10_100, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let rows = s.outbox(false, 10).await.expect("outbox");
    assert_eq!(rows.len(), 3);
    let e1 = rows.iter().find(|e| e.event_id == "e1").expect("e1");
    assert_eq!(
        (e1.gave_up_at, e1.attempts, e1.delivered_at),
        (Some(200), 3, None)
    );
    let e2 = rows.iter().find(|e| e.event_id == "e2").expect("e2");
    assert_eq!(e2.delivered_at, Some(205), "the first delivery stands");
    let pending = s.outbox(true, 10).await.expect("pending");
    assert_eq!(pending.len(), 2);
    // Bounds.
    let mut big = event("e9", "hook", 1);
    big.payload = "x".repeat((64 << 10) + 1);
    assert!(s.enqueue_events(&[big]).await.is_err());
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    batch_operations,
    migrations_idempotent,
    nonce_lifecycle,
    nonce_race_between_replicas,
    latest_pointer_rules,
    legacy_pointers_adopted,
    history_order_and_limit,
    duplicate_token_rejected,
    bounds_and_bad_input,
    licence_idempotence,
    durability_without_close,
    api_tokens_round_trip,
    prefix_rows_keyed_by_the_whole_token,
    gpu_evidence_facts_round_trip,
    shipments_stored_once,
    device_site_history,
    outbox_at_least_once,
);

// ---- backend-specific ----

#[tokio::test]
async fn sqlite_store_is_wal_and_synchronous_full() {
    let db = fresh(Kind::Sqlite).await;
    let s = open(&db).await;
    for _ in 0..3 {
        // Several pool connections: each must carry the settings.
        let mut conn = s.pool.acquire().await.expect("conn");
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .expect("journal_mode")
            .try_get(0)
            .expect("text");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .expect("synchronous")
            .try_get(0)
            .expect("int");
        assert_eq!(sync, 2, "synchronous=FULL");
        let busy: i64 = sqlx::query("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .expect("busy_timeout")
            .try_get(0)
            .expect("int");
        assert!(busy >= 5000);
    }
}

#[tokio::test]
async fn store_open_errors_name_the_database_and_the_fix() {
    let err = Store::open("mysql://root:pw@localhost/x")
        .await
        .expect_err("unsupported");
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    assert!(!err.to_string().contains(":pw@"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}/missing/verifier.db", dir.path().display());
    let err = Store::open(&url).await.expect_err("missing folder");
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(
        msg.contains("check the folder exists and is writable"),
        "{msg}"
    );

    // Nothing listens on port 1: the error names the server, hides the password.
    let err = Store::open("postgres://app:hunter2@127.0.0.1:1/tpp")
        .await
        .expect_err("unreachable");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("postgres://app:***@127.0.0.1:1/tpp"), "{msg}");
    assert!(msg.contains("check the server is running"), "{msg}");
    assert!(
        !msg.contains("timed out"),
        "the real cause, not a pool timeout: {msg}"
    );
}

#[tokio::test]
async fn sqlite_schema_from_a_newer_verifier_is_refused() {
    let db = fresh(Kind::Sqlite).await;
    let s = open(&db).await;
    let future = migrate::latest_version() + 1;
    sqlx::query("INSERT INTO schema_version (version, name) VALUES ($1, 'future')")
        .bind(future)
        .execute(&s.pool)
        .await
        .expect("insert");
    s.close().await;
    let err = Store::open(&db.url).await.expect_err("newer schema");
    assert!(matches!(err, StoreError::Schema { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("schema version {future}")),
        "{err}"
    );
}
