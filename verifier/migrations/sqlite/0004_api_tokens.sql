-- 0004: the API's bearer credentials (`tppguard-verifier token issue|list|revoke`). A token reads
-- `tpg_<id>_<secret>`; only the SHA-256 of the secret is kept (lower-case hex), so a copy of
-- the database does not hold a usable credential. `licences` is a JSON array of licence ids
-- (the scope of a vendor token; `[]` for every other role). Revoked tokens stay, for the record.

CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    licences       TEXT NOT NULL,
    secret_sha256  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    revoked_at     BIGINT
);
