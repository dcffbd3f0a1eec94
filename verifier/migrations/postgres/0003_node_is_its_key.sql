-- 0003: a node is its key. Each attestation keeps the node id the verifier derived from the
-- signer's certificate (SHA-256 of its SubjectPublicKeyInfo, hex) and the site that
-- certificate certifies; the certificate subject stays, for display. A node's latest accepted
-- attestation is keyed by node id and is the last one the verifier accepted (row order, which
-- is receipt order), never the greatest iat.
--
-- The pointers kept by subject until now cannot be re-keyed in SQL (the node id is in the
-- stored token's certificate): they move to legacy_latest_by_subject, which the verifier
-- adopts and drops the first time it serves (Store::adopt_legacy_pointers).

ALTER TABLE attestations RENAME COLUMN node TO subject;
ALTER TABLE attestations ADD COLUMN node_id TEXT;
ALTER TABLE attestations ADD COLUMN certified_site TEXT;
DROP INDEX attestations_node_id;
CREATE INDEX attestations_by_node ON attestations (node_id, id);

ALTER TABLE latest_accepted RENAME TO legacy_latest_by_subject;
-- Index names are per schema: the new table's primary key takes this name again.
ALTER TABLE legacy_latest_by_subject
    RENAME CONSTRAINT latest_accepted_pkey TO legacy_latest_by_subject_pkey;
DROP INDEX latest_accepted_version;

CREATE TABLE latest_accepted (
    node_id         TEXT    PRIMARY KEY NOT NULL,
    attestation_id  BIGINT NOT NULL REFERENCES attestations (id),
    version         BIGINT NOT NULL
);
CREATE INDEX latest_accepted_by_version ON latest_accepted (version);
