import type pg from 'pg';
import { auditRowContentDigest, auditRowHashV2, auditShardOf, type AuditRowFields } from '../lib/audit-chain';
import { ConfigError } from '../lib/config';
import { auditWriteFailures } from '../lib/metrics';
import { withTransaction, type Queryable } from './pool';

// Advisory lock keys. Appenders of one shard serialise on (AUDIT_SHARD_LOCK, shard) so each row
// chains to the true previous row of its shard; other shards append in parallel. The shard count
// is read under a shared AUDIT_SETTINGS_LOCK, which ensureAuditShards takes exclusively.
const AUDIT_SHARD_LOCK = 727_002;
const AUDIT_SETTINGS_LOCK = 727_003;

export interface AuditEvent {
  /** What happened, e.g. "login.email", "tee.post_heima_login", "grant.create", "mint.aws". */
  event: string;
  outcome: 'ok' | 'denied' | 'failed';
  omniAccount?: string | null;
  requestId?: string | null;
  /** Makes the append idempotent: a second append with the same key returns the first row. */
  idemKey?: string | null;
  /** Never raw secrets: hash or HMAC tokens, codes and credentials before they get here. */
  details?: Record<string, unknown>;
}

export interface AuditRecord {
  seq: string;
  hash: string;
}

export interface AuditSettings {
  shards: number;
  /** What every shard's first row chains to: the last row of the pre-sharding chain, or all zeros. */
  genesis_hash: string;
}

export async function readAuditSettings(q: Queryable): Promise<AuditSettings> {
  const r = await q.query<AuditSettings>('SELECT shards, genesis_hash FROM audit_settings');
  if (!r.rows[0]) throw new Error('audit_settings is empty: migration 010 did not run');
  return r.rows[0];
}

/**
 * Appends one row to its shard's chain. Must run inside a transaction (the locks are
 * transaction-scoped); the row is durable when that transaction commits.
 */
export async function appendAudit(tx: Queryable, e: AuditEvent): Promise<AuditRecord> {
  try {
    return await appendAuditRow(tx, e);
  } catch (err) {
    auditWriteFailures.inc({ event: e.event });
    throw err;
  }
}

async function appendAuditRow(tx: Queryable, e: AuditEvent): Promise<AuditRecord> {
  await tx.query('SELECT pg_advisory_xact_lock_shared($1)', [AUDIT_SETTINGS_LOCK]);
  const settings = await readAuditSettings(tx);
  const shard = auditShardOf(e.omniAccount, settings.shards);
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [AUDIT_SHARD_LOCK, shard]);
  if (e.idemKey) {
    const existing = await tx.query<AuditRecord>('SELECT seq::text AS seq, hash FROM audit_log WHERE idem_key = $1', [e.idemKey]);
    if (existing.rows[0]) return existing.rows[0];
  }
  // The global seq is taken under the shard lock, so within a shard seq rises with shard_seq.
  const prev = await tx.query<{ seq: string; shard_seq: string | null; hash: string | null }>(
    `SELECT nextval('audit_log_global_seq')::text AS seq, p.shard_seq::text AS shard_seq, p.hash
       FROM (SELECT 1) one
       LEFT JOIN LATERAL (SELECT shard_seq, hash FROM audit_log WHERE shard = $1 ORDER BY shard_seq DESC LIMIT 1) p ON true`,
    [shard],
  );
  const p = prev.rows[0];
  if (!p) throw new Error('no seq from audit_log_global_seq');
  const row: AuditRowFields = {
    seq: p.seq,
    shard,
    shard_seq: p.shard_seq ? (BigInt(p.shard_seq) + 1n).toString() : '1',
    at: new Date().toISOString(),
    event: e.event,
    outcome: e.outcome,
    omni_account: e.omniAccount ?? null,
    request_id: e.requestId ?? null,
    idem_key: e.idemKey ?? null,
    details: e.details ?? {},
    prev_hash: p.hash ?? settings.genesis_hash,
  };
  const hash = auditRowHashV2(auditRowContentDigest(row), row.prev_hash);
  await tx.query(
    `INSERT INTO audit_log (seq, shard, shard_seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
    [
      row.seq,
      row.shard,
      row.shard_seq,
      row.at,
      row.event,
      row.outcome,
      row.omni_account,
      row.request_id,
      row.idem_key,
      JSON.stringify(row.details),
      row.prev_hash,
      hash,
    ],
  );
  return { seq: row.seq, hash };
}

/**
 * Start-up check of BROKER_AUDIT_SHARDS against the database. The count may change only while no
 * row has been written to a shard (a fresh or just-migrated log): once rows are placed by one
 * count, another would put an account's next rows in another chain and break its order, so a
 * different count is refused with a ConfigError (the API and worker do not start). Appends always
 * use the count in the database, never the configured one.
 */
export async function ensureAuditShards(pool: pg.Pool, shards: number): Promise<'unchanged' | 'set'> {
  // The usual case, without the exclusive lock: taking it would queue every append behind the start-up.
  if ((await readAuditSettings(pool)).shards === shards) return 'unchanged';
  return withTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_SETTINGS_LOCK]);
    const current = await readAuditSettings(c);
    if (current.shards === shards) return 'unchanged';
    const used = await c.query('SELECT 1 FROM audit_log WHERE shard IS NOT NULL LIMIT 1');
    if (used.rows.length > 0) {
      throw new ConfigError(
        `BROKER_AUDIT_SHARDS is ${shards} but the audit log is already split into ${current.shards} chains; ` +
          `the count cannot change on a log with sharded rows (set BROKER_AUDIT_SHARDS=${current.shards})`,
      );
    }
    await c.query('UPDATE audit_settings SET shards = $1', [shards]);
    return 'set';
  });
}
