-- Foundation schema: accounts, sessions, the replay guard and the hash-chained audit log.

CREATE TABLE users (
  user_id         text PRIMARY KEY,
  client_id       text NOT NULL,
  omni_account    text NOT NULL UNIQUE,
  identity_type   text NOT NULL,
  identity_value  text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  last_login_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wallets (
  omni_account  text NOT NULL,
  wallet_index  integer NOT NULL CHECK (wallet_index >= 0),
  address       text CHECK (address IS NULL OR address ~ '^0x[0-9a-f]{40}$'),
  role          text NOT NULL CHECK (role IN ('main', 'agent')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (omni_account, wallet_index)
);
CREATE INDEX wallets_address_idx ON wallets (address);

CREATE TABLE grants (
  grant_id       text PRIMARY KEY,
  main_account   text NOT NULL,
  main_address   text NOT NULL,
  agent_address  text NOT NULL,
  scope          jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz
);
CREATE INDEX grants_pair_idx ON grants (main_address, agent_address);
CREATE INDEX grants_agent_idx ON grants (agent_address);

-- Replay guard: a signature (or other one-time proof) is accepted once; rows are kept at
-- least until expires_at, after which the proof is refused by its own time window anyway.
CREATE TABLE used_signatures (
  signature_hash  text PRIMARY KEY,
  purpose         text NOT NULL,
  used_at         timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL
);

CREATE TABLE sessions (
  jti           text PRIMARY KEY,
  omni_account  text NOT NULL,
  method        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  revoked_at    timestamptz
);
CREATE INDEX sessions_omni_idx ON sessions (omni_account);

-- Append-only: each row carries the hash of the previous one (see lib/audit-chain.ts).
CREATE TABLE audit_log (
  seq           bigint PRIMARY KEY,
  at            text NOT NULL,
  event         text NOT NULL,
  outcome       text NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
  omni_account  text,
  request_id    text,
  idem_key      text UNIQUE,
  details       jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_hash     text NOT NULL,
  hash          text NOT NULL UNIQUE
);
CREATE INDEX audit_log_omni_idx ON audit_log (omni_account, seq);
