import pg from 'pg';
import { auditRowHash, auditShardOf, GENESIS_HASH, type AuditRowFields } from '../lib/audit-chain';
import type { ShardHead } from '../lib/audit-merkle';
import { withTransaction, type Queryable } from './pool';

/** The reading side of the hash-chained audit log: an account's own rows, and the chain check. */

export interface AuditRow extends AuditRowFields {
  hash: string;
}

export const AUDIT_COLUMNS =
  'seq::text AS seq, shard, shard_seq::text AS shard_seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash, hash';

/** The account's rows, newest first; `beforeSeq` pages backwards (exclusive). */
export async function listAuditForAccount(q: Queryable, omniAccount: string, opts: { limit: number; beforeSeq?: string }): Promise<AuditRow[]> {
  const r = await q.query<AuditRow>(
    `SELECT ${AUDIT_COLUMNS} FROM audit_log
      WHERE omni_account = $1 AND ($2::bigint IS NULL OR seq < $2::bigint)
      ORDER BY audit_log.seq DESC
      LIMIT $3`,
    [omniAccount, opts.beforeSeq ?? null, opts.limit],
  );
  return r.rows;
}

/**
 * The rows under these idem keys (those that exist), in no particular order: what earlier tries of a
 * step wrote. Bounded as an append is (`timeoutMs`, lock waits included: a log locked by another
 * session fails this fast, as it fails the append), in one round trip: the simple protocol carries
 * no parameters, so the keys go in through pg.escapeLiteral.
 */
export async function auditRowsByIdemKeys(pool: pg.Pool, idemKeys: readonly string[], timeoutMs: number): Promise<AuditRow[]> {
  if (idemKeys.length === 0) return [];
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error(`bad audit read timeout ${timeoutMs}`);
  const keys = idemKeys.map((k) => pg.escapeLiteral(k)).join(', ');
  return withTransaction(
    pool,
    async (client) => {
      const results = (await client.query(
        `BEGIN READ ONLY; SELECT set_config('lock_timeout', '${timeoutMs}ms', true), set_config('statement_timeout', '${timeoutMs}ms', true); ` +
          `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE idem_key IN (${keys}); COMMIT`,
      )) as unknown as pg.QueryResult<AuditRow>[];
      return results[2]?.rows ?? [];
    },
    { begun: true, commits: true },
  );
}

/** The rows at these global seqs (those that exist), in no particular order. */
export async function auditRowsAt(q: Queryable, seqs: readonly string[]): Promise<AuditRow[]> {
  if (seqs.length === 0) return [];
  return (await q.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq = ANY($1::bigint[])`, [seqs])).rows;
}

/**
 * Which rows an account may read: its own, or — `of: 'grants'` — the mint rows its agents wrote
 * under the account's grants (they name the grant in `grant_id`; the agents' own logs keep them).
 * A grant id is not secret and a refused mint records the id its caller sent, so a row counts
 * only when it also names the grant's agent: `child_wallet` (the intent and outcome rows of a
 * mint under the grant), else `session_wallet` (a refusal: the wallet the caller signed in with).
 * A stranger's refused mint naming the grant is on the stranger's log only. The SQL condition on
 * audit_log (alias-free), its parameter being the account.
 */
export const MINTS_UNDER_GRANTS_OF = (param: string): string =>
  `event LIKE 'mint.%' AND (details ->> 'grant_id') IS NOT NULL AND EXISTS (
     SELECT 1 FROM grants g WHERE g.grant_id = details ->> 'grant_id' AND g.main_account = ${param}
        AND g.agent_address = COALESCE(details ->> 'child_wallet', details ->> 'session_wallet'))`;

/** The mint rows made under the grants `mainAccount` holds (by its agents), newest first; paged as listAuditForAccount. */
export async function listMintsUnderGrantsOf(q: Queryable, mainAccount: string, opts: { limit: number; beforeSeq?: string }): Promise<AuditRow[]> {
  const r = await q.query<AuditRow>(
    `SELECT ${AUDIT_COLUMNS} FROM audit_log
      WHERE ${MINTS_UNDER_GRANTS_OF('$1')} AND ($2::bigint IS NULL OR seq < $2::bigint)
      ORDER BY audit_log.seq DESC
      LIMIT $3`,
    [mainAccount, opts.beforeSeq ?? null, opts.limit],
  );
  return r.rows;
}

export type AuditChainVerdict =
  | {
      ok: true;
      rows: number;
      /** The log's latest row (any chain). */
      headSeq: string | null;
      headHash: string;
      /** What every shard's first row chains to: the last row of the pre-sharding chain, or all zeros. */
      genesisHash: string;
      /** Each shard's last row as found, in shard order (seq "0" for an empty shard). */
      shardHeads: ShardHead[];
    }
  | { ok: false; rows: number; brokenSeq: string; shard: number | null; reason: string };

/**
 * Runs fn on one client in one REPEATABLE READ READ ONLY transaction: every statement fn sends sees
 * the log as it stood at the first one. Reading the log in several statements needs it. Shards
 * commit out of seq order by design (each appends under its own lock, with seqs from one sequence):
 * a row with a lower seq can commit after a row with a higher one was read, so a walk whose pages
 * each took their own snapshot could step past it and report it missing. In one snapshot a shard is
 * always a prefix of its chain (its next row is appended only after the previous one committed), a
 * head is visible only with the rows it covers, and rows committed later are left for the next walk.
 */
export async function withAuditSnapshot<T>(pool: pg.Pool, fn: (q: pg.PoolClient) => Promise<T>): Promise<T> {
  return withTransaction(
    pool,
    async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return fn(client);
    },
    { begun: true },
  );
}

/**
 * Walks the whole log in global seq order and names the first broken link. The rows before
 * migration 010 (shard null) are one chain with gapless seq; after them every shard is its own
 * chain, starting from the last of those rows: a gap or reorder in a shard's shard_seq, a row in
 * another shard than its account's, a prev_hash that is not the shard's previous row's hash, or a
 * hash that does not match the row's content. The global seq may have gaps (a rolled-back append
 * uses up its number); a cut tail of a shard is what signed heads catch (checkAuditHeads).
 *
 * Given a pool, the walk runs in a snapshot of its own (withAuditSnapshot); given a client, it must
 * already be in one (audit:verify runs the walk and the heads' check in the same one).
 */
export async function verifyAuditChain(q: Queryable, opts: { batchSize?: number } = {}): Promise<AuditChainVerdict> {
  if (q instanceof pg.Pool) return withAuditSnapshot(q, (client) => walkAuditChain(client, opts));
  return walkAuditChain(q, opts);
}

async function walkAuditChain(q: Queryable, opts: { batchSize?: number }): Promise<AuditChainVerdict> {
  const batch = opts.batchSize ?? 1000;
  const settings = (await q.query<{ shards: number }>('SELECT shards FROM audit_settings')).rows[0];
  const shardCount = settings?.shards ?? 1;
  let legacyHash = GENESIS_HASH;
  let legacySeq = 0n;
  let sharded = false;
  const shards = new Map<number, { shardSeq: bigint; hash: string; seq: string }>();
  let rows = 0;
  let lastSeq = 0n;
  let headSeq: string | null = null;
  let headHash = GENESIS_HASH;
  const broken = (row: AuditRow, reason: string): AuditChainVerdict => ({ ok: false, rows, brokenSeq: row.seq, shard: row.shard ?? null, reason });
  for (;;) {
    const page = await q.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY audit_log.seq LIMIT $2`, [lastSeq.toString(), batch]);
    for (const row of page.rows) {
      const seq = BigInt(row.seq);
      if (row.shard === null || row.shard === undefined) {
        if (sharded) return broken(row, 'a row of the pre-sharding chain comes after sharded rows');
        if (seq !== legacySeq + 1n) return broken(row, `row ${legacySeq + 1n} is missing (the next row is ${row.seq})`);
        if (row.prev_hash !== legacyHash) return broken(row, `prev_hash ${row.prev_hash} is not the hash of row ${legacySeq} (${legacyHash})`);
        legacySeq = seq;
      } else {
        sharded = true;
        if (row.shard < 0 || row.shard >= shardCount) return broken(row, `shard ${row.shard} does not exist (the log has ${shardCount} shards)`);
        const home = auditShardOf(row.omni_account, shardCount);
        if (row.shard !== home) return broken(row, `the row is in shard ${row.shard}, but its account's rows belong in shard ${home}: it was moved`);
        const prev = shards.get(row.shard);
        const expected = (prev?.shardSeq ?? 0n) + 1n;
        const got = BigInt(row.shard_seq ?? '0');
        if (got !== expected) {
          return broken(
            row,
            got > expected
              ? `shard ${row.shard} row ${expected} is missing (the shard's next row in seq order is row ${got})`
              : `shard ${row.shard} row ${got} comes after row ${expected - 1n} in seq order: rows were reordered`,
          );
        }
        const prevHash = prev?.hash ?? legacyHash;
        if (row.prev_hash !== prevHash) {
          return broken(
            row,
            `prev_hash ${row.prev_hash} is not the hash of ${prev ? `shard ${row.shard} row ${prev.shardSeq} (seq ${prev.seq})` : 'the last pre-sharding row'} (${prevHash})`,
          );
        }
        shards.set(row.shard, { shardSeq: got, hash: row.hash, seq: row.seq });
      }
      const computed = auditRowHash(row);
      if (computed !== row.hash) {
        return broken(row, `its content does not match its hash (stored ${row.hash}, computed ${computed}): the row was altered`);
      }
      if (row.shard === null || row.shard === undefined) legacyHash = row.hash;
      headSeq = row.seq;
      headHash = row.hash;
      lastSeq = seq;
      rows += 1;
    }
    if (page.rows.length < batch) break;
  }
  const shardHeads: ShardHead[] = [];
  for (let s = 0; s < shardCount; s++) {
    const h = shards.get(s);
    shardHeads.push(h ? { shard: s, seq: h.seq, hash: h.hash } : { shard: s, seq: '0', hash: legacyHash });
  }
  return { ok: true, rows, headSeq, headHash, genesisHash: legacyHash, shardHeads };
}

/** A signed head as audit:verify checks it (from audit_heads, or pinned elsewhere and passed in). */
export interface HeadToCheck {
  seq: string;
  hash: string;
  /** Version 2 heads: every shard's head (already checked against the signed root). */
  shards?: ShardHead[];
  /** When it was signed, for the message. */
  at: string;
  /** Where it came from, for the message (e.g. "audit_heads", "--head"). */
  source: string;
}

export type HeadsVerdict = { ok: true; checked: number; latestSeq: string | null } | { ok: false; head: HeadToCheck; shard: number | null; reason: string };

/**
 * Checks the log against signed heads. With intact chains (verifyAuditChain), a head whose rows
 * still hold their hashes pins every row before them in their chains; a row that holds another
 * hash was rewritten (or rows before it were, and the chain recomputed), a missing row was cut.
 * A version 1 head pins one row (the single chain's head); a version 2 head pins every shard's.
 * Read in the walk's snapshot (withAuditSnapshot), so the heads and the rows they pin are as the walk found them.
 */
export async function checkAuditHeads(
  q: Queryable,
  heads: HeadToCheck[],
  chain: { headSeq: string | null; genesisHash: string; shardHeads: ShardHead[] },
): Promise<HeadsVerdict> {
  let latestSeq: string | null = null;
  const signed = (head: HeadToCheck) => `the head signed at ${head.at} (${head.source})`;
  for (const head of heads) {
    // Version 2: every shard's head, and the log's latest row as version 1 has it (one of those, or the last pre-sharding row).
    const pins: { shard: number | null; seq: string; hash: string }[] = [
      ...(head.shards ?? []).map((s) => ({ shard: s.shard, seq: s.seq, hash: s.hash })),
      { shard: null, seq: head.seq, hash: head.hash },
    ];
    for (const pin of pins) {
      const inShard = pin.shard === null ? '' : ` in shard ${pin.shard}`;
      if (pin.seq === '0') {
        if (pin.shard !== null && (chain.shardHeads[pin.shard]?.seq ?? '0') === '0' && pin.hash !== chain.genesisHash) {
          return {
            ok: false,
            head,
            shard: pin.shard,
            reason: `${signed(head)} says shard ${pin.shard} starts from ${pin.hash}, but the log's chains start from ${chain.genesisHash}`,
          };
        }
        continue;
      }
      const r = await q.query<{ hash: string; shard: number | null }>('SELECT hash, shard FROM audit_log WHERE seq = $1', [pin.seq]);
      const stored = r.rows[0];
      if (stored === undefined) {
        const end =
          pin.shard === null
            ? `the log ends at seq ${chain.headSeq ?? '(empty)'}`
            : `shard ${pin.shard} ends at seq ${chain.shardHeads[pin.shard]?.seq ?? '0'}`;
        return { ok: false, head, shard: pin.shard, reason: `${end} but ${signed(head)} covers seq ${pin.seq}${inShard}: rows were cut` };
      }
      if (pin.shard !== null && stored.shard !== pin.shard) {
        return {
          ok: false,
          head,
          shard: pin.shard,
          reason: `row ${pin.seq} is in shard ${String(stored.shard)}, but ${signed(head)} has it as the head of shard ${pin.shard}: the log was rewritten`,
        };
      }
      if (stored.hash !== pin.hash) {
        return {
          ok: false,
          head,
          shard: pin.shard,
          reason: `row ${pin.seq}${inShard} holds hash ${stored.hash}, but ${signed(head)} says ${pin.hash}: the log was rewritten at or before seq ${pin.seq}${inShard}`,
        };
      }
    }
    if (latestSeq === null || BigInt(head.seq) > BigInt(latestSeq)) latestSeq = head.seq;
  }
  return { ok: true, checked: heads.length, latestSeq };
}
