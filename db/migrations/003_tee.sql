-- Heima TEE integration: the post_heima_login callbacks, the add_wallet requests, grant lookups.

-- One row per accepted post_heima_login callback, keyed by a keyed digest of the TEE access
-- JWT (never the token): the same callback twice is one row. client_auth is the TEE's
-- ClientAuth as opaque JSON, secret-bearing values (codes, signatures, tokens) replaced by
-- HMAC digests before they get here.
CREATE TABLE tee_logins (
  token_digest  text PRIMARY KEY,
  omni_account  text NOT NULL,
  client_id     text NOT NULL,
  user_id       text NOT NULL REFERENCES users (user_id),
  client_auth   jsonb,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tee_logins_omni_idx ON tee_logins (omni_account, created_at);

-- Which wallet slot each add_wallet callback produced, so a retried activity answers the
-- same slot instead of taking another one.
CREATE TABLE tee_wallet_requests (
  request_key   text PRIMARY KEY,
  omni_account  text NOT NULL,
  wallet_index  integer NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX grants_main_account_idx ON grants (main_account, created_at);
ALTER TABLE grants ADD CONSTRAINT grants_addresses_lower_hex
  CHECK (main_address ~ '^0x[0-9a-f]{40}$' AND agent_address ~ '^0x[0-9a-f]{40}$');
