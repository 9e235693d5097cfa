-- The holder of a grant reads the mints made under it (GET /v1/audit?of=grants): the agents' rows
-- that name one of the holder's grants, newest first. Only mint rows under a grant are indexed.
CREATE INDEX IF NOT EXISTS audit_log_mint_grant_idx ON audit_log ((details ->> 'grant_id'), seq DESC)
  WHERE event LIKE 'mint.%' AND (details ->> 'grant_id') IS NOT NULL;
