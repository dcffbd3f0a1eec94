-- 0002: a counter that every write transaction increases (under its lock, so versions follow
-- commit order), and the version at which each node's latest pointer last moved: a replica
-- learns with one single-row read whether anything changed since it last looked, and reads
-- only the pointers that moved.

CREATE TABLE fleet_version (
    id       INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO fleet_version (id, version) VALUES (1, 0);

ALTER TABLE latest_accepted ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX latest_accepted_version ON latest_accepted (version);
