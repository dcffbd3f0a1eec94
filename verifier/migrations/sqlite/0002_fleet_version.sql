-- 0002: a counter that every write changing the fleet (a node's latest attestation, the
-- licences) increases in its transaction, so a replica learns with one single-row read whether
-- anything changed since it last looked.

CREATE TABLE fleet_version (
    id       INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO fleet_version (id, version) VALUES (1, 0);
