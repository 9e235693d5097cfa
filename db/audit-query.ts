import { auditRowHash, GENESIS_HASH, type AuditRowFields } from '../lib/audit-chain';
import type { Queryable } from './pool';

/** The reading side of the hash-chained audit log: an account's own rows, and the chain check. */

export interface AuditRow extends AuditRowFields {
  hash: string;
}

const COLUMNS = 'seq::text AS seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash, hash';

/** The account's rows, newest first; `beforeSeq` pages backwards (exclusive). */
export async function listAuditForAccount(q: Queryable, omniAccount: string, opts: { limit: number; beforeSeq?: string }): Promise<AuditRow[]> {
  const r = await q.query<AuditRow>(
    `SELECT ${COLUMNS} FROM audit_log
      WHERE omni_account = $1 AND ($2::bigint IS NULL OR seq < $2::bigint)
      ORDER BY audit_log.seq DESC
      LIMIT $3`,
    [omniAccount, opts.beforeSeq ?? null, opts.limit],
  );
  return r.rows;
}

export type AuditChainVerdict =
  { ok: true; rows: number; headSeq: string | null; headHash: string } | { ok: false; rows: number; brokenSeq: string; reason: string };

/**
 * Walks the whole chain in seq order and names the first broken link: a gap or reorder in seq,
 * a prev_hash that is not the previous row's hash, or a hash that does not match the row's content.
 */
export async function verifyAuditChain(q: Queryable, opts: { batchSize?: number } = {}): Promise<AuditChainVerdict> {
  const batch = opts.batchSize ?? 1000;
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1n;
  let rows = 0;
  let headSeq: string | null = null;
  for (;;) {
    const page = await q.query<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY audit_log.seq LIMIT $2`, [expectedSeq.toString(), batch]);
    for (const row of page.rows) {
      if (BigInt(row.seq) !== expectedSeq) {
        return { ok: false, rows, brokenSeq: row.seq, reason: `row ${expectedSeq} is missing (the next row is ${row.seq})` };
      }
      if (row.prev_hash !== prevHash) {
        return { ok: false, rows, brokenSeq: row.seq, reason: `prev_hash ${row.prev_hash} is not the hash of row ${expectedSeq - 1n} (${prevHash})` };
      }
      const computed = auditRowHash(row);
      if (computed !== row.hash) {
        return {
          ok: false,
          rows,
          brokenSeq: row.seq,
          reason: `its content does not match its hash (stored ${row.hash}, computed ${computed}): the row was altered`,
        };
      }
      prevHash = row.hash;
      headSeq = row.seq;
      expectedSeq += 1n;
      rows += 1;
    }
    if (page.rows.length < batch) break;
  }
  return { ok: true, rows, headSeq, headHash: prevHash };
}

/** A signed head as audit:verify checks it (from audit_heads, or pinned elsewhere and passed in). */
export interface HeadToCheck {
  seq: string;
  hash: string;
  /** When it was signed, for the message. */
  at: string;
  /** Where it came from, for the message (e.g. "audit_heads", "--head"). */
  source: string;
}

export type HeadsVerdict = { ok: true; checked: number; latestSeq: string | null } | { ok: false; head: HeadToCheck; reason: string };

/**
 * Checks the log against signed heads. With an intact chain (verifyAuditChain), a head whose seq
 * still holds its hash pins every row before it; a row that holds another hash was rewritten (or
 * the rows before it were, and the chain recomputed), a missing row was cut.
 */
export async function checkAuditHeads(q: Queryable, heads: HeadToCheck[], chainHeadSeq: string | null): Promise<HeadsVerdict> {
  let latestSeq: string | null = null;
  for (const head of heads) {
    const r = await q.query<{ hash: string }>('SELECT hash FROM audit_log WHERE seq = $1', [head.seq]);
    const stored = r.rows[0]?.hash;
    if (stored === undefined) {
      return {
        ok: false,
        head,
        reason: `the log ends at seq ${chainHeadSeq ?? '(empty)'} but the head signed at ${head.at} (${head.source}) covers seq ${head.seq}: rows were cut`,
      };
    }
    if (stored !== head.hash) {
      return {
        ok: false,
        head,
        reason: `row ${head.seq} holds hash ${stored}, but the head signed at ${head.at} (${head.source}) says ${head.hash}: the log was rewritten at or before seq ${head.seq}`,
      };
    }
    if (latestSeq === null || BigInt(head.seq) > BigInt(latestSeq)) latestSeq = head.seq;
  }
  return { ok: true, checked: heads.length, latestSeq };
}
