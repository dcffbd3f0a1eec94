-- 0005: lifecycle records, each kept for good (rows are only ever added): licence revocations
-- signed by the licence authority (the token kept, so an auditor can verify it again), licence
-- retirements and node retirements by an administrator (who, when, why).

CREATE TABLE licence_revocations (
    licence_id    TEXT    PRIMARY KEY NOT NULL,
    token         TEXT    NOT NULL,
    token_sha256  TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    revoked_at    INTEGER NOT NULL,
    recorded_at   INTEGER NOT NULL,
    recorded_by   TEXT    NOT NULL
);

CREATE TABLE licence_retirements (
    licence_id  TEXT    PRIMARY KEY NOT NULL,
    reason      TEXT    NOT NULL,
    retired_at  INTEGER NOT NULL,
    retired_by  TEXT    NOT NULL
);

CREATE TABLE node_retirements (
    node_id     TEXT    PRIMARY KEY NOT NULL,
    subject     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    retired_at  INTEGER NOT NULL,
    retired_by  TEXT    NOT NULL
);
