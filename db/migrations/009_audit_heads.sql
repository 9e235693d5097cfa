-- Signed heads of the audit chain (docs/mint.md, "Anchored heads"). A Temporal Schedule signs the
-- current head {seq, hash, at} with the audit key every BROKER_AUDIT_ANCHOR_SECONDS and records the
-- statement here, in its own workflow history, and at GET /v1/audit/head for outsiders to pin.
-- One row per head seq (an unchanged head is not signed again); append-only like audit_log.
CREATE TABLE audit_heads (
  seq        bigint PRIMARY KEY,
  hash       text NOT NULL,
  signed_at  timestamptz NOT NULL,
  kid        text NOT NULL,
  jws        text NOT NULL
);

CREATE TRIGGER audit_heads_append_only
  BEFORE UPDATE OR DELETE ON audit_heads
  FOR EACH ROW EXECUTE FUNCTION audit_log_forbid_change();

CREATE TRIGGER audit_heads_no_truncate
  BEFORE TRUNCATE ON audit_heads
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_forbid_change();
