-- Refresh tokens (docs/security.md "Refresh tokens"): the holder of a broker session claims one
-- refresh token for it, then trades a refresh token for a new session and a new refresh token;
-- each is accepted once. Kept by a keyed digest, never the token. A family is every token
-- descended from one session's claim: presenting a spent one again revokes the whole family and
-- every session it issued. A token expires after BROKER_REFRESH_IDLE_SECONDS unused, and a family
-- BROKER_REFRESH_MAX_SECONDS after the session it started from was issued.
CREATE TABLE refresh_tokens (
  token_digest       text PRIMARY KEY,
  family_id          text NOT NULL,
  omni_account       text NOT NULL,
  method             text NOT NULL,
  wallet             text,
  -- The session issued together with this token (or, for a family's first, the one that claimed it):
  -- one refresh token per session, so a refreshed or already claimed session cannot claim another.
  session_jti        text NOT NULL UNIQUE,
  family_started_at  timestamptz NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  used_at            timestamptz,
  revoked_at         timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
