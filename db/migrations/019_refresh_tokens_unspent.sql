-- An account's logins that can still renew (services/sessions.ts, GET /v1/account/sessions and
-- DELETE /v1/account/sessions/:session_id) are its refresh families' unspent, unrevoked tokens,
-- looked up by account: this index holds those rows only (at most one per family), so the account
-- page does not read the whole table, which every refresh adds a row to.
CREATE INDEX refresh_tokens_unspent_by_account ON refresh_tokens (omni_account) WHERE revoked_at IS NULL AND used_at IS NULL;
