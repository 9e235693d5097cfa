-- Ending a refresh family costs the same whatever its size (docs/security.md "Refresh tokens").
-- Every refresh adds a token row to its family, so a family renewed for weeks holds many spent rows;
-- ending it (logout, reuse of a spent token, DELETE /v1/account/sessions/:session_id) no longer
-- updates them all. It records the end once, here, and revokes only what can still produce a
-- bearer: the family's one unspent token and its sessions still live. A refresh reads this row
-- before anything else of the family, so every older token of an ended family is refused whatever
-- its own revoked_at says. The hourly purge deletes a row once its family is past
-- BROKER_REFRESH_MAX_SECONDS (it ended after it started, so its tokens are purged by then).
CREATE TABLE refresh_family_revocations (
  family_id   text PRIMARY KEY,
  revoked_at  timestamptz NOT NULL DEFAULT now()
);

-- A family's tokens by age: its refreshes of the last minute (the per-family budget,
-- BROKER_RATE_LIMIT_REFRESH_PER_MINUTE), its first token (the login), its newest ones (the ids a
-- revoke by id accepts). It serves every lookup by family alone too, so it replaces the plain one.
CREATE INDEX refresh_tokens_family_created ON refresh_tokens (family_id, created_at);
DROP INDEX refresh_tokens_family_idx;

-- A family's one unspent, unrevoked token: ending the family revokes it without reading the rest.
CREATE INDEX refresh_tokens_unspent_by_family ON refresh_tokens (family_id) WHERE revoked_at IS NULL AND used_at IS NULL;
