import pg from 'pg';
import { auditRowContentDigest, auditRowHashV2, auditShardOf, type AuditRowFields } from '../lib/audit-chain';
import { assertPlainJson, CanonicalJsonError } from '../lib/canonical-json';
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
  /**
   * Never raw secrets: hash or HMAC tokens, codes and credentials before they get here. Plain JSON
   * values only (no Date, Buffer or class instance: lib/canonical-json.ts assertPlainJson); anything
   * else is refused before a statement is sent.
   */
  details?: Record<string, unknown>;
}

export interface AuditRecord {
  seq: string;
  hash: string;
  /** The row was already there under its idem key (an earlier try wrote it): nothing was appended. */
  existing?: true;
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
  const [record] = await appendAuditRows(tx, [e]);
  if (!record) throw new Error('no audit record appended');
  return record;
}

/**
 * Appends rows, each to its shard's chain in the order given, with the same guarantees as that many
 * appendAudit calls but fewer round trips: the settings lock and read once, each shard's lock
 * once, and per shard one statement for the idem check, the global seqs and the previous row,
 * then one insert. Must run inside a transaction. Idem keys within one call must differ.
 */
export async function appendAuditRows(tx: Queryable, events: readonly AuditEvent[]): Promise<AuditRecord[]> {
  try {
    refuseNonPlainDetails(events);
    return await appendRows(tx, events, await lockedSettings(tx));
  } catch (err) {
    for (const e of events) auditWriteFailures.inc({ event: e.event });
    throw err;
  }
}

/**
 * Appends rows in a transaction of their own, durable when this returns; every statement bounded
 * by `timeoutMs` (lock waits included). Two round trips when the rows fall in one shard: the first
 * message sends BEGIN, the timeouts, the settings lock and read, then the lock of the shard the
 * rows fall in by the shard count last read through this pool and the shard's head after it; the
 * second the insert and COMMIT. When the count read differs from the one guessed (it changes only
 * on a log with no sharded row, at start-up), the head read is dropped — its seqs are lost, a gap
 * in the global seq as a rolled-back append leaves — and the right shard is locked and read again;
 * the other shard's lock is held to the end, harmlessly (at worst a lock wait, bounded by the
 * timeout).
 */
export async function appendAuditDurably(pool: pg.Pool, events: readonly AuditEvent[], timeoutMs: number): Promise<AuditRecord[]> {
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error(`bad audit write timeout ${timeoutMs}`);
  const guess = lastShardCount.get(pool);
  try {
    refuseNonPlainDetails(events);
  } catch (err) {
    for (const e of events) auditWriteFailures.inc({ event: e.event });
    throw err;
  }
  const guessedShards = guess === undefined ? [] : [...new Set(events.map((e) => auditShardOf(e.omniAccount, guess)))];
  const shard = guessedShards.length === 1 ? guessedShards[0] : undefined;
  try {
    return await withTransaction(
      pool,
      async (client) => {
        const before = `BEGIN; SELECT set_config('lock_timeout', '${timeoutMs}ms', true), set_config('statement_timeout', '${timeoutMs}ms', true); `;
        if (shard === undefined) return appendRows(client, events, await lockedSettings(client, before, pool), { commit: true });
        const results = (await client.query(
          `${before}${SETTINGS_SQL}; ${shardLockSql(shard)}; ${shardHeadSql(shard, idemKeysOf(events), events.length)}`,
        )) as unknown as pg.QueryResult[];
        const settings = settingsFrom(results.slice(0, -2), pool);
        const head = results[results.length - 1]?.rows[0] as ShardHead | undefined;
        const read = settings.shards === guess && head ? { shard, head } : undefined;
        return appendRows(client, events, settings, { commit: true, ...(read ? { read } : {}) });
      },
      { begun: true, commits: true },
    );
  } catch (err) {
    for (const e of events) auditWriteFailures.inc({ event: e.event });
    throw err;
  }
}

/**
 * A row's details are stored as JSON.stringify writes them and hashed as canonicalJson writes them;
 * the two agree only on plain JSON values (canonicalJson ignores toJSON: a Date would be stored as
 * its ISO text and hashed as an empty object, a row that never verifies). Checked before the first
 * statement, so a refused append takes no lock and no seq and writes nothing.
 */
function refuseNonPlainDetails(events: readonly AuditEvent[]): void {
  for (const e of events) {
    const details: unknown = e.details ?? {};
    const proto: unknown = typeof details === 'object' && details !== null ? Object.getPrototypeOf(details) : undefined;
    if (Array.isArray(details) || (proto !== Object.prototype && proto !== null)) {
      throw new CanonicalJsonError(`the details of audit event ${e.event} are not a plain object`);
    }
    try {
      assertPlainJson(details, 'details');
    } catch (err) {
      if (err instanceof CanonicalJsonError) throw new CanonicalJsonError(`audit event ${e.event} not written: ${err.message}`);
      throw err;
    }
  }
}

/** The shard count last read under the settings lock, per pool (its database): what the next durable append guesses. */
const lastShardCount = new WeakMap<pg.Pool, number>();

const SETTINGS_SQL = `SELECT pg_advisory_xact_lock_shared(${AUDIT_SETTINGS_LOCK}); SELECT shards, genesis_hash FROM audit_settings`;

function settingsFrom(results: pg.QueryResult[], pool?: pg.Pool): AuditSettings {
  const settings = results[results.length - 1]?.rows[0] as AuditSettings | undefined;
  if (!settings) throw new Error('audit_settings is empty: migration 010 did not run');
  if (pool) lastShardCount.set(pool, settings.shards);
  return settings;
}

/**
 * The shard count, read under the shared settings lock (held to the transaction's end, so
 * ensureAuditShards cannot change it under the appends). Lock and read are two statements sent in
 * one simple-protocol message: each statement of such a message takes its own snapshot when it
 * starts (READ COMMITTED), so the read sees whatever committed before the lock was granted, as it
 * did when they were two round trips. The simple protocol has no parameters: only constants, and
 * values through pg.escapeLiteral, go into these texts.
 */
async function lockedSettings(tx: Queryable, before = '', pool?: pg.Pool): Promise<AuditSettings> {
  return settingsFrom((await tx.query(`${before}${SETTINGS_SQL}`)) as unknown as pg.QueryResult[], pool);
}

interface ShardHead {
  hits: { idem_key: string; seq: string; hash: string }[];
  seqs: string[];
  shard_seq: string | null;
  hash: string | null;
}

const sqlInt = (n: number): string => {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
};
const sqlText = (v: string | null | undefined): string => (v === null || v === undefined ? 'NULL' : pg.escapeLiteral(v));

function idemKeysOf(events: readonly { idemKey?: string | null }[]): string[] {
  return events.map((e) => e.idemKey).filter((k): k is string => !!k);
}

/** Its own statement, before the one that reads the shard's previous row (shardHeadSql). */
function shardLockSql(shard: number): string {
  return `SELECT pg_advisory_xact_lock(${AUDIT_SHARD_LOCK}, ${sqlInt(shard)})`;
}

/**
 * The rows already appended under these idem keys, one global seq per row still to write, and the
 * shard's previous row. Sent after the shard's lock: its snapshot is taken after the lock is
 * granted, so it sees the last row of whoever held it. The seqs are taken under the shard lock and
 * handed out in ascending numeric order (n.v, the bigint: the text column would put 10 before 9),
 * so within a shard seq rises with shard_seq; none is taken for a row that exists.
 */
function shardHeadSql(shard: number, idemKeys: string[], rows: number): string {
  return `WITH hit AS (SELECT idem_key, seq, hash FROM audit_log WHERE idem_key = ANY(ARRAY[${idemKeys.map(sqlText).join(', ')}]::text[]))
       SELECT (SELECT coalesce(json_agg(json_build_object('idem_key', idem_key, 'seq', seq::text, 'hash', hash)), '[]'::json) FROM hit) AS hits,
              ARRAY(SELECT n.v::text AS seq FROM (SELECT nextval('audit_log_global_seq') AS v
                                           FROM generate_series(1, ${sqlInt(rows)} - (SELECT count(*)::int FROM hit))) n ORDER BY n.v) AS seqs,
              p.shard_seq::text AS shard_seq, p.hash
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (SELECT shard_seq, hash FROM audit_log WHERE shard = ${sqlInt(shard)} ORDER BY shard_seq DESC LIMIT 1) p ON true`;
}

/**
 * Appends the rows, each shard locked (unless `read` holds its lock and head, taken by the caller)
 * then read, in ascending order so two appends spanning the same shards cannot deadlock; then every
 * insert in one message, with COMMIT when `commit`.
 */
async function appendRows(
  tx: Queryable,
  events: readonly AuditEvent[],
  settings: AuditSettings,
  opts: { commit?: boolean; read?: { shard: number; head: ShardHead } } = {},
): Promise<AuditRecord[]> {
  const keys = idemKeysOf(events);
  if (new Set(keys).size !== keys.length) throw new Error('two audit rows of one append share an idem key');
  const shardOf = events.map((e) => auditShardOf(e.omniAccount, settings.shards));
  const records: AuditRecord[] = new Array<AuditRecord>(events.length);
  const inserts: string[] = [];
  for (const shard of [...new Set(shardOf)].sort((a, b) => a - b)) {
    const group = events.map((e, i) => ({ e, i })).filter(({ i }) => shardOf[i] === shard);
    let head = opts.read?.shard === shard ? opts.read.head : undefined;
    if (!head) {
      await tx.query(shardLockSql(shard));
      head = (await tx.query<ShardHead>(shardHeadSql(shard, idemKeysOf(group.map(({ e }) => e)), group.length))).rows[0];
    }
    if (!head) throw new Error('no answer from the audit append');
    const hits = new Map(head.hits.map((h) => [h.idem_key, { seq: h.seq, hash: h.hash }]));
    const seqs = [...head.seqs];
    let prevHash = head.hash ?? settings.genesis_hash;
    let shardSeq = head.shard_seq ? BigInt(head.shard_seq) : 0n;
    const tuples: string[] = [];
    for (const { e, i } of group) {
      const hit = e.idemKey ? hits.get(e.idemKey) : undefined;
      if (hit) {
        records[i] = { ...hit, existing: true };
        continue;
      }
      const seq = seqs.shift();
      if (seq === undefined) throw new Error('no seq from audit_log_global_seq');
      shardSeq += 1n;
      const row: AuditRowFields = {
        seq,
        shard,
        shard_seq: shardSeq.toString(),
        at: new Date().toISOString(),
        event: e.event,
        outcome: e.outcome,
        omni_account: e.omniAccount ?? null,
        request_id: e.requestId ?? null,
        idem_key: e.idemKey ?? null,
        details: e.details ?? {},
        prev_hash: prevHash,
      };
      const hash = auditRowHashV2(auditRowContentDigest(row), row.prev_hash);
      prevHash = hash;
      records[i] = { seq, hash };
      const values = [row.seq, String(row.shard), row.shard_seq, row.at, row.event, row.outcome, row.omni_account, row.request_id, row.idem_key];
      tuples.push(`(${[...values.map(sqlText), sqlText(JSON.stringify(row.details)), sqlText(row.prev_hash), sqlText(hash)].join(', ')})`);
    }
    if (tuples.length > 0) {
      inserts.push(
        `INSERT INTO audit_log (seq, shard, shard_seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash, hash) VALUES ${tuples.join(', ')}`,
      );
    }
  }
  if (opts.commit) inserts.push('COMMIT');
  if (inserts.length > 0) await tx.query(inserts.join('; '));
  return records;
}

/** The refusal of a count that differs from the one rows were already placed by. */
function shardCountFixed(shards: number, current: number): ConfigError {
  return new ConfigError(
    `BROKER_AUDIT_SHARDS is ${shards} but the audit log is already split into ${current} chains; ` +
      `the count cannot change on a log with sharded rows (set BROKER_AUDIT_SHARDS=${current})`,
  );
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
    if (used.rows.length > 0) throw shardCountFixed(shards, current.shards);
    await c.query('UPDATE audit_settings SET shards = $1', [shards]);
    lastShardCount.delete(pool);
    return 'set';
  });
}

/**
 * ensureAuditShards without its write, for a login that may only read audit_settings
 * (BROKER_MIGRATIONS=external: the schema owner sets the count, `npm run db:migrate`). A different
 * count is refused either way, with the fix that still applies: on a log without sharded rows the
 * owner can set it, on one with them the setting must follow the database.
 */
export async function checkAuditShards(q: Queryable, shards: number): Promise<void> {
  const current = await readAuditSettings(q);
  if (current.shards === shards) return;
  const used = await q.query('SELECT 1 FROM audit_log WHERE shard IS NOT NULL LIMIT 1');
  if (used.rows.length > 0) throw shardCountFixed(shards, current.shards);
  throw new ConfigError(
    `BROKER_AUDIT_SHARDS is ${shards} but the database has ${current.shards} audit shards, and with BROKER_MIGRATIONS=external only the schema owner sets them: ` +
      `run \`npm run db:migrate\` with BROKER_AUDIT_SHARDS=${shards} (no row is in a shard yet), or set BROKER_AUDIT_SHARDS=${current.shards}`,
  );
}
