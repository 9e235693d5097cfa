-- TEE access tokens logged out at the broker (POST /v1/session/logout with a TEE bearer). The TEE
-- issues them for 7 days and keeps no revocation list the broker could ask, so the broker keeps
-- its own: a keyed digest of the token (never the token) until the token's own exp, after which
-- the token is refused by its exp anyway and the housekeeping purge drops the row.
CREATE TABLE revoked_tee_tokens (
  token_digest  text PRIMARY KEY,
  omni_account  text NOT NULL,
  expires_at    timestamptz NOT NULL,
  revoked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tee_tokens_expiry_idx ON revoked_tee_tokens (expires_at);
