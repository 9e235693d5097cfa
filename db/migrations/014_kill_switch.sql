-- The kill switch (docs/kill-switch.md). An agent's revocation epoch for one user wallet rides in
-- every credential the agent mints for that wallet (session tag agentkeys_revocation_epoch);
-- revoking the agent raises it. Each revocation leaves a deny entry for as long as a credential
-- minted before it can still be alive; the entries are rendered into a deny policy on each data role.
CREATE TABLE agent_epochs (
  user_wallet    text NOT NULL,
  agent_address  text NOT NULL,
  epoch          integer NOT NULL DEFAULT 0,
  revoked_at     timestamptz,
  PRIMARY KEY (user_wallet, agent_address)
);

CREATE TABLE kill_switch_entries (
  entry_id       bigserial PRIMARY KEY,
  kind           text NOT NULL CHECK (kind IN ('grant', 'agent')),
  main_account   text NOT NULL,
  user_wallet    text NOT NULL,
  agent_address  text NOT NULL,
  -- kind grant: the revoked grant (its id is a session tag of every credential minted under it).
  grant_id       text,
  -- kind agent: the epoch the revocation ended (credentials carrying it are denied).
  epoch          integer,
  revoked_at     timestamptz NOT NULL,
  expires_at     timestamptz NOT NULL,
  CHECK ((kind = 'grant' AND grant_id IS NOT NULL) OR (kind = 'agent' AND epoch IS NOT NULL))
);
CREATE UNIQUE INDEX kill_switch_entries_grant ON kill_switch_entries (grant_id) WHERE kind = 'grant';
CREATE UNIQUE INDEX kill_switch_entries_agent ON kill_switch_entries (user_wallet, agent_address, epoch) WHERE kind = 'agent';
CREATE INDEX kill_switch_entries_expiry ON kill_switch_entries (expires_at);
