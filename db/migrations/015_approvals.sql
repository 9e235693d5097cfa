-- Approval of a mint (docs/approvals.md). A grant may carry an approval policy (when its mints wait
-- for the holder's decision); each mint that needs one leaves an approvals row, which the holder
-- decides once and the agent collects once. The row is what the API lists and what makes a
-- decision or a hand-out single (each change is a conditional UPDATE on its status).
ALTER TABLE grants ADD COLUMN approval jsonb;

CREATE TABLE approvals (
  approval_id     text PRIMARY KEY,
  grant_id        text NOT NULL REFERENCES grants (grant_id),
  main_account    text NOT NULL,
  main_address    text NOT NULL,
  agent_address   text NOT NULL,
  agent_account   text NOT NULL,
  target          text NOT NULL,
  params          jsonb NOT NULL,
  -- The grant's scope the mint would run under (its roles and services), as the holder sees it.
  scope           jsonb NOT NULL,
  reason          text,
  -- sha256 of the request's canonical JSON: what the holder's EIP-712 signature covers.
  request_hash    text NOT NULL,
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
  requested_at    timestamptz NOT NULL,
  expires_at      timestamptz NOT NULL,
  decided_at      timestamptz,
  -- 'eip712' (a wallet's signature, kept as the receipt) or 'fresh-session' (the session's jti digest).
  decided_via     text,
  receipt         jsonb,
  collected_at    timestamptz
);
CREATE INDEX approvals_owner_pending ON approvals (main_account, requested_at DESC) WHERE status = 'pending';
CREATE INDEX approvals_agent ON approvals (agent_account);
