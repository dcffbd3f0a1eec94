-- 0007 (issue 15): shipments, the GPU site history and the webhook outbox.
--
-- shipments: vendor-signed shipment records the verifier verified when it received them; one
-- row per shipment id (a second, different token for the same id is refused). The token is kept
-- so the verifier (and an auditor) can verify it again.
CREATE TABLE shipments (
    shipment_id   TEXT    PRIMARY KEY NOT NULL,
    licence_id    TEXT    NOT NULL,
    vendor        TEXT    NOT NULL,
    token         TEXT    NOT NULL,
    token_sha256  TEXT    NOT NULL,
    delivered_at  INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    received_by   TEXT    NOT NULL
);
CREATE INDEX shipments_licence ON shipments (licence_id, shipment_id);

-- device_sites: where each GPU identity was attested, over time. A row is opened when the
-- device is first seen, or seen at another node or site than its latest row says; otherwise
-- the latest row's last_seen moves. site_source: certified (the node certificate's site),
-- claimed (the node's own word) or none.
CREATE TABLE device_sites (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device       TEXT    NOT NULL,
    node_id      TEXT    NOT NULL,
    site         TEXT,
    site_source  TEXT    NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);
CREATE INDEX device_sites_device ON device_sites (device, id);

-- outbox: webhook events, written in the transaction of the batch whose verdict produced them
-- (event_id is deterministic: one event per ongoing condition), delivered at least once.
CREATE TABLE outbox (
    event_id         TEXT    PRIMARY KEY NOT NULL,
    webhook          TEXT    NOT NULL,
    code             TEXT    NOT NULL,
    licence_id       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    delivered_at     INTEGER,
    gave_up_at       INTEGER,
    last_error       TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
