-- A session issued by a refresh (api/session-refresh.ts refreshSession) says so on its own row, with
-- the login behind it: its refresh family's start and the method of the family's first login
-- (services/sessions.ts loginOfRefreshFamily). Until now only its refresh token's row
-- (refresh_tokens.session_jti) tied it to its family, and the hourly purge deletes a family's rows:
-- a refreshed session outliving them read as a login of its own, made when it was refreshed, so it
-- could claim a new family (30 more days, again and again) and count as a recent login. Its own row
-- now answers both, whatever the purge did (docs/security.md "Refresh tokens").
--
--   issued_by_refresh  true: a refresh issued it (login_at and login_method are its login's);
--                      false: a login's own session (its created_at and method are the login's);
--                      NULL: written before this migration (or by a broker that predates it) and not
--                      tied to a family below. How it was issued is not known, so it claims no refresh
--                      family and counts as a recent login only through a family it is tied to
--                      (services/sessions.ts). Such rows leave with their expiry.
ALTER TABLE sessions
  ADD COLUMN issued_by_refresh boolean,
  ADD COLUMN login_at timestamptz,
  ADD COLUMN login_method text;

-- The rows still tied to their family: the session of the family's first token claimed it (a login's
-- own session); the session of any later token was issued by a refresh. The login is read as
-- services/sessions.ts reads it: the family's start, and its first session's method (the family's
-- record of it once that row is gone).
UPDATE sessions s
   SET issued_by_refresh = (first.session_jti <> s.jti),
       login_at = CASE WHEN first.session_jti <> s.jti THEN t.family_started_at END,
       login_method = CASE WHEN first.session_jti <> s.jti THEN coalesce((SELECT o.method FROM sessions o WHERE o.jti = first.session_jti), first.method) END
  FROM refresh_tokens t
 CROSS JOIN LATERAL (
   SELECT f.session_jti, f.method FROM refresh_tokens f WHERE f.family_id = t.family_id ORDER BY f.created_at, f.token_digest LIMIT 1
 ) first
 WHERE t.session_jti = s.jti;

ALTER TABLE sessions ADD CONSTRAINT sessions_login_of_refresh CHECK (
  (issued_by_refresh IS TRUE) = (login_at IS NOT NULL) AND (issued_by_refresh IS TRUE) = (login_method IS NOT NULL)
);
