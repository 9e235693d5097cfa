-- Sharded audit chains (docs/mint.md, "Sharded chains"). Until now every append waited on the one
-- previous row, so all accounts queued on one lock. From here the log is audit_settings.shards
-- hash chains: a row goes to the shard of its OmniAccount (lib/audit-chain.ts auditShardOf; no
-- account: shard 0), so one account's rows stay in one chain and in order, and accounts in other
-- shards append in parallel. Each row keeps a global seq (for cursors; from a sequence, so a
-- rolled-back append leaves a gap) and gets a per-shard shard_seq without gaps.
--
-- Rows written before this migration are kept as they are (their hashes are pinned by signed
-- heads): they stay the single chain with shard NULL, and every shard's first row chains to the
-- last of them (genesis_hash below; all zeros for an empty log).

CREATE TABLE audit_settings (
  id            boolean PRIMARY KEY DEFAULT true CHECK (id),
  -- BROKER_AUDIT_SHARDS is checked against this at start-up (db/audit.ts ensureAuditShards): it can
  -- be changed only while no sharded row exists; after that a different count is refused.
  shards        int NOT NULL CHECK (shards BETWEEN 1 AND 256),
  genesis_hash  text NOT NULL
);
INSERT INTO audit_settings (shards, genesis_hash)
  SELECT 16, coalesce((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), repeat('0', 64));

CREATE FUNCTION audit_settings_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'UPDATE' THEN
    RAISE EXCEPTION 'audit_settings: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.genesis_hash IS DISTINCT FROM OLD.genesis_hash OR NEW.id IS DISTINCT FROM OLD.id THEN
    RAISE EXCEPTION 'audit_settings: genesis_hash cannot change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.shards <> OLD.shards AND EXISTS (SELECT 1 FROM audit_log WHERE shard IS NOT NULL) THEN
    RAISE EXCEPTION 'audit_settings: the log already has % shards with rows in them; the shard count cannot change', OLD.shards
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER audit_settings_guard BEFORE UPDATE OR DELETE ON audit_settings FOR EACH ROW EXECUTE FUNCTION audit_settings_guard();
CREATE TRIGGER audit_settings_no_truncate BEFORE TRUNCATE ON audit_settings FOR EACH STATEMENT EXECUTE FUNCTION audit_log_forbid_change();

ALTER TABLE audit_log ADD COLUMN shard int, ADD COLUMN shard_seq bigint;
-- NOT VALID: the rows before this migration keep shard NULL; every new row must have both. A broker
-- of an older version still running against this database fails its appends (audit_error, no
-- credential) instead of writing an unsharded row after sharded ones.
ALTER TABLE audit_log ADD CONSTRAINT audit_log_sharded CHECK (shard IS NOT NULL AND shard_seq IS NOT NULL AND shard_seq >= 1) NOT VALID;
CREATE UNIQUE INDEX audit_log_shard_seq_idx ON audit_log (shard, shard_seq);

CREATE SEQUENCE audit_log_global_seq AS bigint;
SELECT setval('audit_log_global_seq', coalesce((SELECT max(seq) FROM audit_log), 0) + 1, false);

-- Heads of version 2 commit to every shard's head through a Merkle root; version 1 heads (seq,
-- hash of the single chain) stay and still verify. One head per root (an unchanged log is not
-- signed again); version 1 heads stay one per seq.
ALTER TABLE audit_heads ADD COLUMN version int NOT NULL DEFAULT 1, ADD COLUMN root text, ADD COLUMN shard_heads jsonb;
ALTER TABLE audit_heads DROP CONSTRAINT audit_heads_pkey;
CREATE UNIQUE INDEX audit_heads_v1_seq_idx ON audit_heads (seq) WHERE root IS NULL;
CREATE UNIQUE INDEX audit_heads_root_idx ON audit_heads (root) WHERE root IS NOT NULL;
CREATE INDEX audit_heads_signed_idx ON audit_heads (signed_at, seq);
