import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json';

export { canonicalJson } from './canonical-json';

/**
 * The audit log's hash chains: each row's hash covers its own fields and the previous row's hash,
 * so editing, deleting or reordering any row breaks every hash after it.
 *
 * Rows written before migration 010 form one chain (shard null; `auditRowHashV1`). From 010 on
 * the log is BROKER_AUDIT_SHARDS chains: a row goes to the shard of its OmniAccount
 * (`auditShardOf`), so one account's rows stay in one chain, in order; each shard's first row
 * chains to the last pre-010 row (or GENESIS_HASH). A sharded row's hash is over a digest of its
 * content and the previous hash (`auditRowHashV2`), so an inclusion proof can show the chain from
 * one row to its shard's head without revealing other accounts' rows.
 */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditRowFields {
  seq: string;
  at: string;
  event: string;
  outcome: 'ok' | 'denied' | 'failed';
  omni_account: string | null;
  request_id: string | null;
  idem_key: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  /** null for rows written before migration 010 (the single chain). */
  shard?: number | null;
  /** The row's position in its shard's chain, from 1 (a decimal string); null before 010. */
  shard_seq?: string | null;
}

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** The fields both hash forms cover, besides the chain link and the shard position. */
const ownFields = (row: AuditRowFields) => ({
  seq: row.seq,
  at: row.at,
  event: row.event,
  outcome: row.outcome,
  omni_account: row.omni_account,
  request_id: row.request_id,
  idem_key: row.idem_key,
  details: row.details,
});

/** The hash of a row of the single pre-010 chain. */
export function auditRowHashV1(row: AuditRowFields): string {
  return sha256hex(canonicalJson({ ...ownFields(row), prev_hash: row.prev_hash }));
}

/** The digest of a sharded row's own fields (everything but prev_hash): what a proof shows of other rows. */
export function auditRowContentDigest(row: AuditRowFields): string {
  return sha256hex(canonicalJson({ v: 2, ...ownFields(row), shard: row.shard ?? null, shard_seq: row.shard_seq ?? null }));
}

/** A sharded row's hash from its content digest and the previous row's hash in its shard. */
export function auditRowHashV2(contentDigest: string, prevHash: string): string {
  return sha256hex(canonicalJson({ v: 2, content: contentDigest, prev_hash: prevHash }));
}

/** A row's hash: the single-chain form before migration 010 (shard null), the sharded form after. */
export function auditRowHash(row: AuditRowFields): string {
  if (row.shard === null || row.shard === undefined) return auditRowHashV1(row);
  return auditRowHashV2(auditRowContentDigest(row), row.prev_hash);
}

/**
 * The shard of an account's rows among `shards` chains: the first 4 bytes of sha256(omni account)
 * modulo the count; rows with no account go to shard 0.
 */
export function auditShardOf(omniAccount: string | null | undefined, shards: number): number {
  if (!omniAccount) return 0;
  return createHash('sha256').update(omniAccount).digest().readUInt32BE(0) % shards;
}
