-- An account's sessions not revoked, by account and expiry (db/sessions.ts): its logins with a live
-- bearer (listLiveLoginsOfAccount, GET /v1/account/sessions), its live bearers a revoke by id
-- searches (liveSessionsOfAccount, DELETE /v1/account/sessions/:session_id) and its sessions a
-- family's end revokes (revokeSessionsOfFamily: logout, a replayed refresh token, the revoke by
-- id). Each reads `omni_account = $1 AND revoked_at IS NULL`, the first two `AND expires_at > now()`
-- too. Ending a family revokes its sessions and a busy account piles up revoked rows until the
-- hourly purge drops them with their expiry; this index holds none of them, and its expires_at
-- skips the expired ones the purge has not reached yet, so those reads touch the live rows only.
CREATE INDEX sessions_unrevoked_by_account ON sessions (omni_account, expires_at) WHERE revoked_at IS NULL;
