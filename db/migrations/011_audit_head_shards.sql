-- Which signed head first covered each shard position (docs/security.md, "Second review, item 10").
-- A proof of row R in shard S needs a head whose shard_heads[S].seq >= R.seq; finding one by
-- reading shard_heads of every head was a scan that grew with the log on every GET /v1/audit/proof.
-- This table is that lookup as an index: one row per (shard, seq) a version 2 head recorded as the
-- shard's head, naming the first head that did (the one with the shortest chain above any row at or
-- below it). Derived from audit_heads, written in the same statement as each head
-- (db/audit-heads.ts recordAuditHead); append-only like the heads it indexes.
CREATE TABLE audit_head_shards (
  shard      int NOT NULL,
  -- The shard's last row (global seq) under the head; empty shards (seq 0) are not recorded.
  seq        bigint NOT NULL CHECK (seq > 0),
  head_root  text NOT NULL,
  PRIMARY KEY (shard, seq)
);

CREATE TRIGGER audit_head_shards_append_only
  BEFORE UPDATE OR DELETE ON audit_head_shards
  FOR EACH ROW EXECUTE FUNCTION audit_log_forbid_change();

CREATE TRIGGER audit_head_shards_no_truncate
  BEFORE TRUNCATE ON audit_head_shards
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_forbid_change();

-- The heads signed before this migration, each position credited to the earliest head that had it.
INSERT INTO audit_head_shards (shard, seq, head_root)
SELECT DISTINCT ON (e.shard, e.seq) e.shard, e.seq, h.root
  FROM audit_heads h
  CROSS JOIN LATERAL jsonb_to_recordset(h.shard_heads) AS e(shard int, seq bigint)
 WHERE h.version = 2 AND h.root IS NOT NULL AND e.seq > 0
 ORDER BY e.shard, e.seq, h.signed_at, h.seq;
