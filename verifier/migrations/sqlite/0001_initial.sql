-- 0001: nonces, attestations (append-only) with each node's latest accepted one, licences.

CREATE TABLE nonces (
    nonce_hex   TEXT    PRIMARY KEY NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX nonces_expires_at ON nonces (expires_at);

CREATE TABLE attestations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    node          TEXT    NOT NULL,
    iat           INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    token         TEXT    NOT NULL,
    token_sha256  TEXT    NOT NULL UNIQUE,
    claims_json   TEXT    NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('accepted', 'rejected')),
    reason        TEXT    NOT NULL,
    sentence      TEXT    NOT NULL,
    ear           TEXT
);
CREATE INDEX attestations_node_id ON attestations (node, id);

CREATE TABLE latest_accepted (
    node            TEXT    PRIMARY KEY NOT NULL,
    attestation_id  INTEGER NOT NULL REFERENCES attestations (id),
    iat             INTEGER NOT NULL,
    token_sha256    TEXT    NOT NULL
);

CREATE TABLE licences (
    token_sha256  TEXT    PRIMARY KEY NOT NULL,
    licence_id    TEXT    NOT NULL,
    token         TEXT    NOT NULL,
    added_at      INTEGER NOT NULL
);
