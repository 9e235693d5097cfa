-- The verified email a Google login reports (email_verified true), kept on the user beside its
-- identity (google sub). Updated on every Google login; other logins leave it alone.
ALTER TABLE users ADD COLUMN email text;
