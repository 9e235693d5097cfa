-- The audit log is append-only at the database level too: rows can be inserted, never changed or
-- removed (the hash chain detects tampering; this stops the broker's own role from doing it).
-- A superuser can still disable the trigger: `npm run audit:verify` catches what happens then.

CREATE FUNCTION audit_log_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
  BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_forbid_change();

CREATE TRIGGER audit_log_no_truncate
  BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_forbid_change();

-- Mint rows are looked up by request (mint/<request_id>) when correlating with Temporal.
CREATE INDEX audit_log_request_idx ON audit_log (request_id);
