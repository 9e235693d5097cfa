-- A revoke by id (DELETE /v1/account/sessions/:session_id, services/sessions.ts) names a login by the
-- public name of a session it was listed under: the keyed digest of the session's jti
-- (sessionIdOf, the jti_hash its audit rows carry), which only the API can compute. Each refresh
-- token now records that name for the session it was issued with (or, for a family's first, the
-- one that claimed it), so an id resolves through this index to its session and family however
-- many refreshes came since, and whether or not the hourly purge has deleted the session's row.
-- Tokens issued before this migration carry none (NULL, not indexed): their ids are still found
-- among each live family's newest sessions, as before, until those families pass
-- BROKER_REFRESH_MAX_SECONDS.
ALTER TABLE refresh_tokens ADD COLUMN session_jti_hash text;
CREATE INDEX refresh_tokens_by_session_jti_hash ON refresh_tokens (session_jti_hash) WHERE session_jti_hash IS NOT NULL;
