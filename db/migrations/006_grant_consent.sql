-- Grants need the agent's consent, and add_wallet retries must ask for the same slot.

-- A grant binds its agent only after the agent wallet signed the acceptance text
-- (accepted_at). Before that it is pending and inert: mints and check_hyper_agent_address
-- ignore it. The agent may decline a pending grant (declined_at) or leave an accepted one
-- (left_at). Grants created before this migration never had the agent's consent: they stay
-- pending until their agent accepts them.
ALTER TABLE grants
  ADD COLUMN accepted_at timestamptz,
  ADD COLUMN declined_at timestamptz,
  ADD COLUMN left_at     timestamptz;
ALTER TABLE grants ADD CONSTRAINT grants_agent_answer
  CHECK ((declined_at IS NULL OR accepted_at IS NULL) AND (left_at IS NULL OR accepted_at IS NOT NULL));
CREATE INDEX grants_agent_created_idx ON grants (agent_address, created_at);

-- What each add_wallet request asked for: 'next' (the lowest free slot) or the slot number.
-- A retry under the same Idempotency-Key that asks for something else is refused (409).
-- NULL on rows written before this migration (their request is not known; any retry matches).
ALTER TABLE tee_wallet_requests ADD COLUMN requested text
  CHECK (requested IS NULL OR requested ~ '^(next|[0-9]{1,10})$');
