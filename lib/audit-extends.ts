import { auditRowHash, type AuditRowFields } from './audit-chain';
import type { ShardHead } from './audit-merkle';

/**
 * Whether the log still extends a head signed before: what the audit anchor checks before it signs
 * again (activities/audit-anchor.ts). Every position the earlier head pinned — each shard's head,
 * and the log's latest row — must still be there, in the same shard, holding the same hash over
 * the same content, and no shard's head may now be below the position signed for it. A log that
 * fails this was rewritten, cut or moved back since that head was signed; signing it would give a
 * forgery the audit key's signature.
 *
 * Not checked here (audit:verify walks it): the rows below a pinned position. A rewrite below one
 * leaves a row whose hash no longer matches its content or its successor's prev_hash, which no new
 * head hides.
 */

/** A signed head's pins: its statement's `seq`/`hash` (the log's latest row) and, version 2, every shard's head. */
export interface SignedPins {
  seq: string;
  hash: string;
  shards?: ShardHead[];
}

export interface LogNow {
  /** Every shard's head as currentAuditHeads reads it; null for an empty log. */
  shards: ShardHead[] | null;
  /** What every shard's first row chains to (audit_settings.genesis_hash). */
  genesisHash: string;
  /** The rows at the pinned seqs that exist, by seq. */
  rows: ReadonlyMap<string, AuditRowFields & { hash: string }>;
}

export type ExtendsVerdict = { ok: true } | { ok: false; shard: number | null; reason: string };

/** The seqs a head pins (those above 0): the rows `LogNow.rows` must hold. */
export function pinnedSeqs(head: SignedPins): string[] {
  return [...new Set([head.seq, ...(head.shards ?? []).map((s) => s.seq)].filter((seq) => seq !== '0'))];
}

export function extendsSignedHead(head: SignedPins, now: LogNow): ExtendsVerdict {
  if (head.shards && now.shards && head.shards.length !== now.shards.length) {
    return { ok: false, shard: null, reason: `the head has ${head.shards.length} shards, the log ${now.shards.length}` };
  }
  const pins: { shard: number | null; seq: string; hash: string }[] = [
    ...(head.shards ?? []).map((s) => ({ shard: s.shard, seq: s.seq, hash: s.hash })),
    { shard: null, seq: head.seq, hash: head.hash },
  ];
  for (const pin of pins) {
    const inShard = pin.shard === null ? '' : ` of shard ${pin.shard}`;
    const fail = (reason: string): ExtendsVerdict => ({ ok: false, shard: pin.shard, reason });
    if (pin.seq === '0') {
      if (pin.hash !== now.genesisHash)
        return fail(`shard ${pin.shard ?? 0} was signed as starting from ${pin.hash}, but the log's chains start from ${now.genesisHash}`);
      continue;
    }
    const row = now.rows.get(pin.seq);
    if (!row) return fail(`row ${pin.seq}${inShard}, signed as its head, is gone: rows were cut`);
    if (pin.shard !== null && row.shard !== pin.shard)
      return fail(`row ${pin.seq} is now in shard ${String(row.shard)}, but was signed as the head of shard ${pin.shard}`);
    if (row.hash !== pin.hash)
      return fail(`row ${pin.seq}${inShard} holds hash ${row.hash}, but was signed with ${pin.hash}: the log was rewritten at or before it`);
    if (auditRowHash(row) !== row.hash) return fail(`row ${pin.seq}${inShard} kept its signed hash, but its content no longer matches it: the row was altered`);
    if (pin.shard !== null) {
      const current = now.shards?.[pin.shard];
      if (!current || BigInt(current.seq) < BigInt(pin.seq)) {
        return fail(`shard ${pin.shard}'s head is now seq ${current?.seq ?? '0'}, below seq ${pin.seq} signed for it: the shard moved back`);
      }
    }
  }
  return { ok: true };
}
