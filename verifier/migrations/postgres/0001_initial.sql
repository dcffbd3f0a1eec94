-- 0001: nonces, attestations (append-only) with each node's latest accepted one, licences.

CREATE TABLE nonces (
    nonce_hex   TEXT    PRIMARY KEY NOT NULL,
    issued_at   BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);
CREATE INDEX nonces_expires_at ON nonces (expires_at);

CREATE TABLE attestations (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node          TEXT    NOT NULL,
    iat           BIGINT  NOT NULL,
    received_at   BIGINT  NOT NULL,
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
    attestation_id  BIGINT  NOT NULL REFERENCES attestations (id),
    iat             BIGINT  NOT NULL,
    token_sha256    TEXT    NOT NULL
);

CREATE TABLE licences (
    token_sha256  TEXT    PRIMARY KEY NOT NULL,
    licence_id    TEXT    NOT NULL,
    token         TEXT    NOT NULL,
    added_at      BIGINT  NOT NULL
);
