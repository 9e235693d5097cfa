-- Passkeys (WebAuthn credentials, docs/passkeys.md). One row per credential, under the account it
-- signs in to. user_handle is the WebAuthn user.id the authenticator keeps with the credential
-- (base64url); a passkey-only account's identity is {type: passkey, value: user_handle}, as the
-- Heima TEE derives it. counter and the backup flags are what the last ceremony reported: a counter
-- that goes backwards is refused, and backup_eligible never changes for a credential.
CREATE TABLE passkeys (
  credential_id    text PRIMARY KEY CHECK (credential_id ~ '^[A-Za-z0-9_-]+$' AND length(credential_id) BETWEEN 16 AND 1366),
  omni_account     text NOT NULL,
  user_handle      text NOT NULL CHECK (user_handle ~ '^[A-Za-z0-9_-]{1,86}$'),
  public_key       bytea NOT NULL,
  counter          bigint NOT NULL CHECK (counter >= 0),
  backup_eligible  boolean NOT NULL,
  backed_up        boolean NOT NULL,
  transports       text[] NOT NULL DEFAULT '{}',
  aaguid           text NOT NULL,
  name             text NOT NULL,
  -- sha256 of the challenge of the last ceremony that wrote the row: a retried write of that same
  -- ceremony is recognised (idempotent), any other is judged on its counter.
  last_challenge   text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  last_used_at     timestamptz
);
CREATE INDEX passkeys_account ON passkeys (omni_account, created_at);
CREATE INDEX passkeys_user_handle ON passkeys (user_handle);
