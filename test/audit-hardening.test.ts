import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ApplicationFailure, type LogLevel, type LogMetadata, type Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type pg from 'pg';
import { appendAudit, appendAuditDurably, type AuditEvent } from '../db/audit';
import { buildAuditProof } from '../db/audit-proof';
import { AUDIT_COLUMNS, verifyAuditChain, type AuditRow } from '../db/audit-query';
import { createPool, withTransaction, type Db } from '../db/pool';
import { auditShardOf } from '../lib/audit-chain';
import type { BrokerSecrets } from '../adapters/secrets';
import { generateSigningKeyJwk, signingKeyFromJwk } from '../lib/signing-key';
import type { AnchoredHead } from '../workflows/audit-anchor.definitions';
import { rechainShard, withAppendOnlyOff } from './audit-tamper';
import { useAuditLogs, type AuditTestLog } from './support/audit-logs';

/**
 * The audit log review after 1.2.0: audit:verify's walk reads one snapshot (no false "missing row"
 * on a live log), a proof's chain is capped even under the earliest covering head, an append
 * refuses details that would be stored as one text and hashed as another, and the anchor refuses
 * to sign a log that no longer extends the head it signed before.
 */

const logs = useAuditLogs('akb-audit-hardening');
type Log = AuditTestLog;
const freshLog = (shards = 4): Promise<Log> => logs.fresh({ shards, poolSize: 4 });

const account = () => `0x${randomBytes(32).toString('hex')}`;
/** An account whose rows go to another shard than `other`'s. */
const accountOutside = (other: string, shards = 4): string => {
  for (;;) {
    const a = account();
    if (auditShardOf(a, shards) !== auditShardOf(other, shards)) return a;
  }
};

const event = (omniAccount: string | null, details: Record<string, unknown> = { n: 1 }): AuditEvent => ({
  event: 'login.wallet',
  outcome: 'ok',
  omniAccount,
  requestId: randomBytes(8).toString('hex'),
  details,
});

const append = (log: Log, omniAccount: string | null) => withTransaction(log.db, (tx) => appendAudit(tx, event(omniAccount)));

const count = async (db: Db, table = 'audit_log') => Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`)).rows[0]?.n);

const rowsOfShard = async (log: Log, shard: number) =>
  (await log.db.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE shard = $1 ORDER BY audit_log.shard_seq`, [shard])).rows;

interface Logged {
  level: LogLevel;
  message: string;
  meta?: LogMetadata;
}

/** The anchor activity run as the worker runs it (in an activity context), its log lines kept. */
async function anchor(log: Log, previous?: AnchoredHead | null, secrets?: BrokerSecrets): Promise<{ head: AnchoredHead | null; logged: Logged[] }> {
  const logged: Logged[] = [];
  const logger: Logger = {
    log: (level, message, meta) => void logged.push({ level, message, meta }),
    trace: (message, meta) => void logged.push({ level: 'TRACE', message, meta }),
    debug: (message, meta) => void logged.push({ level: 'DEBUG', message, meta }),
    info: (message, meta) => void logged.push({ level: 'INFO', message, meta }),
    warn: (message, meta) => void logged.push({ level: 'WARN', message, meta }),
    error: (message, meta) => void logged.push({ level: 'ERROR', message, meta }),
  };
  const activities = logs.anchorActivities(log, secrets);
  const env = new MockActivityEnvironment(undefined, { logger });
  try {
    const head = await env.run<[], AnchoredHead | null, () => Promise<AnchoredHead | null>>(() =>
      activities.anchorAuditHead(previous === undefined ? {} : { previous }),
    );
    return { head, logged };
  } catch (e) {
    Object.assign(e as object, { logged });
    throw e;
  }
}

async function anchored(log: Log, previous?: AnchoredHead | null): Promise<AnchoredHead> {
  const { head } = await anchor(log, previous);
  assert.ok(head, 'the log has rows');
  return head;
}

/** As the broker's database login can (it owns the tables): every signed head deleted, their triggers off meanwhile. */
async function deleteSignedHeads(db: Db): Promise<void> {
  for (const table of ['audit_heads', 'audit_head_shards']) {
    await db.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
    try {
      await db.query(`DELETE FROM ${table}`);
    } finally {
      await db.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
    }
  }
}

void describe('audit:verify reads one snapshot (review item 1)', () => {
  void test('a row with a lower seq committing after the page past it was read is not reported missing', async () => {
    const log = await freshLog();
    const a = account();
    const b = accountOutside(a);
    for (let i = 0; i < 2; i++) {
      await append(log, a);
      await append(log, b);
    }
    // An append of `a` takes its seq and stays open; one of `b` (another shard, another lock) takes a higher seq and commits.
    const open = await log.db.connect();
    let released = false;
    const release = () => {
      if (!released) open.release();
      released = true;
    };
    logs.cleanups.push(async () => release());
    await open.query('BEGIN');
    const pending = await appendAudit(open, event(a));
    const later = await append(log, b);
    assert.ok(BigInt(pending.seq) < BigInt(later.seq));

    // The walk's own pool, as audit:verify has: after its first page (which reads `later` but not the
    // open row), the open append commits and `a` appends again, chained after it.
    const walker = createPool(log.url, 1);
    logs.cleanups.push(() => walker.end());
    let pages = 0;
    walker.on('connect', (client: pg.PoolClient) => {
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
      (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
        const callback = typeof args[args.length - 1] === 'function' ? (args.pop() as (err: unknown, res?: unknown) => void) : undefined;
        const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
        const answer = query(...args).then(async (res) => {
          if (text?.includes('FROM audit_log WHERE seq > $1') && ++pages === 1) {
            await open.query('COMMIT');
            release();
            await append(log, a);
          }
          return res;
        });
        if (!callback) return answer;
        answer.then(
          (res) => callback(null, res),
          (err: unknown) => callback(err),
        );
        return undefined;
      };
    });
    const verdict = await verifyAuditChain(walker, { batchSize: 5 });
    assert.ok(pages >= 2, 'the walk read more than one page');
    assert.ok(verdict.ok, `a live log is not broken: ${JSON.stringify(verdict)}`);
    assert.equal(verdict.rows, 5, 'the rows of the snapshot: the two committed later are for the next walk');
    // The next walk sees them, intact.
    const next = await verifyAuditChain(log.db, { batchSize: 5 });
    assert.ok(next.ok, JSON.stringify(next));
    assert.equal(next.rows, 7);
  });
});

void describe('a proof chain is capped under the earliest covering head too (review item 2)', () => {
  void test('a row whose first covering head is more than maxChain rows above it (the anchor stalled) gets too_far, not a long proof', async () => {
    const log = await freshLog();
    const a = account();
    await append(log, a);
    await anchored(log); // a head before the row: it does not cover it
    const row = await append(log, a);
    for (let i = 0; i < 5; i++) await append(log, a); // the anchor stalls while the shard grows
    const stalled = await anchored(log); // the first head covering the row: 5 rows above it
    for (let i = 0; i < 3; i++) await append(log, a);
    await anchored(log); // the latest: 8 rows above it

    assert.deepEqual(await buildAuditProof(log.db, a, row.seq, { maxChain: 3 }), { ok: false, why: 'too_far' });
    assert.deepEqual(await buildAuditProof(log.db, a, row.seq, { maxChain: 4 }), { ok: false, why: 'too_far' });
    // At the cap: the proof under the earliest covering head, its chain exactly maxChain rows.
    const atCap = await buildAuditProof(log.db, a, row.seq, { maxChain: 5 });
    assert.ok(atCap.ok);
    assert.deepEqual([atCap.proof.head.jws, atCap.proof.chain.length], [stalled.jws, 5]);
    // A row near enough to the latest head is proved under it as before.
    const near = (await rowsOfShard(log, auditShardOf(a, 4))).at(-3) as AuditRow;
    const proof = await buildAuditProof(log.db, a, near.seq, { maxChain: 3 });
    assert.ok(proof.ok);
    assert.equal(proof.proof.chain.length, 2);
  });
});

void describe('an append refuses details it would store as one text and hash as another (review item 4)', () => {
  void test('a Date, a Buffer, a Map, a class instance or a function anywhere in details: refused before writing, no seq taken', async () => {
    const log = await freshLog();
    const a = account();
    const first = await append(log, a);
    class Point {
      constructor(readonly x: number) {}
    }
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ t: new Date() }, /details\.t is a Date with a toJSON method/],
      [{ nested: { list: [1, Buffer.from('x')] } }, /details\.nested\.list\[1\] is a Buffer with a toJSON method/],
      [{ m: new Map([['k', 'v']]) }, /details\.m is a Map \(not a plain object\)/],
      [{ p: new Point(1) }, /details\.p is a Point \(not a plain object\)/],
      [{ own: { toJSON: () => 'x' } }, /details\.own is an object with a toJSON method/],
      [{ f: () => 1 }, /details\.f is a function/],
      [{ n: 1n }, /details\.n is a bigint/],
    ];
    for (const [details, why] of refusals) {
      await assert.rejects(
        withTransaction(log.db, (tx) => appendAudit(tx, event(a, details))),
        (e: Error) => e.name === 'CanonicalJsonError' && why.test(e.message) && /audit event login\.wallet not written/.test(e.message),
        `appendAudit ${why}`,
      );
      await assert.rejects(appendAuditDurably(log.db, [event(a), event(a, details)], 2000), why, `appendAuditDurably ${why}`);
    }
    await assert.rejects(
      withTransaction(log.db, (tx) => appendAudit(tx, event(a, new Date() as never))),
      /not a plain object/,
    );
    assert.equal(await count(log.db), 1, 'nothing written');
    // Plain data still goes in (an undefined property is left out by both forms), with the next seq: none was taken.
    const next = await withTransaction(log.db, (tx) =>
      appendAudit(
        tx,
        event(a, { at: new Date(0).toISOString(), list: [1, 'two', null, { deep: true }], skipped: undefined, bare: Object.create(null) as object }),
      ),
    );
    assert.equal(BigInt(next.seq), BigInt(first.seq) + 1n);
    const verdict = await verifyAuditChain(log.db);
    assert.ok(verdict.ok, JSON.stringify(verdict));
  });
});

void describe('the anchor signs only a log that extends the head it signed before (review item 5)', () => {
  /** A log with rows in every shard, two heads signed as the Schedule signs them (the second given the first). */
  async function anchoredLog(): Promise<{ log: Log; previous: AnchoredHead; shard: number; rows: AuditRow[] }> {
    const log = await freshLog();
    const accounts = Array.from({ length: 8 }, account);
    for (const a of accounts) await append(log, a);
    const first = await anchored(log);
    for (const a of accounts) await append(log, a);
    const { head: previous, logged } = await anchor(log, first);
    assert.ok(previous, 'a log that grew extends its previous head: signed');
    assert.deepEqual(
      logged.filter((l) => l.level === 'WARN' || l.level === 'ERROR'),
      [],
    );
    const busiest = await log.db.query<{ shard: number }>('SELECT shard FROM audit_log GROUP BY shard ORDER BY count(*) DESC, shard LIMIT 1');
    const shard = busiest.rows[0]?.shard ?? 0;
    return { log, previous, shard, rows: await rowsOfShard(log, shard) };
  }

  const refusedNaming = (shard: number, why: RegExp) => (e: unknown) => {
    assert.ok(e instanceof ApplicationFailure, String(e));
    assert.equal(e.type, 'AuditFailed');
    assert.equal(e.nonRetryable, true);
    assert.match(e.message, new RegExp(`^audit anchor REFUSED to sign \\(shard ${shard}\\): `));
    assert.match(e.message, why);
    const logged = (e as unknown as { logged: Logged[] }).logged;
    const errors = logged.filter((l) => l.level === 'ERROR' && l.message.startsWith('audit anchor REFUSED'));
    assert.equal(errors.length, 1, logged.map((l) => `${l.level} ${l.message}`).join('\n'));
    assert.equal(errors[0]?.meta?.shard, shard, 'the error log names the shard');
    assert.match(errors[0]?.message ?? '', new RegExp(`\\(shard ${shard}\\)`));
    return true;
  };

  void test('a shard rewritten and re-chained, every signed head deleted: refused against the previous run’s head, nothing signed', async () => {
    const { log, previous, shard, rows } = await anchoredLog();
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query(`UPDATE audit_log SET details = '{"n":2}'::jsonb WHERE seq = $1`, [rows[0]?.seq]);
    });
    await rechainShard(log.db, shard);
    await deleteSignedHeads(log.db);
    await append(log, account());
    assert.ok((await verifyAuditChain(log.db)).ok, 'the re-chained shard passes the chain check alone');
    await assert.rejects(
      anchor(log, previous),
      refusedNaming(
        shard,
        new RegExp(
          `row ${rows.at(-1)?.seq} of shard ${shard} holds hash [0-9a-f]{64}, but was signed with ${rows.at(-1)?.hash}.*\\(the previous anchor run\\)`,
        ),
      ),
    );
    assert.equal(await count(log.db, 'audit_heads'), 0, 'nothing signed');
  });

  void test('with no previous run (a manual run), the newest head in audit_heads is the one the log must extend', async () => {
    const { log, shard, rows } = await anchoredLog();
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query(`UPDATE audit_log SET details = '{"n":3}'::jsonb WHERE seq = $1`, [rows[0]?.seq]);
    });
    await rechainShard(log.db, shard);
    const heads = await count(log.db, 'audit_heads');
    await assert.rejects(anchor(log), refusedNaming(shard, /holds hash [0-9a-f]{64}, but was signed with .*\(audit_heads \(seq \d+\)\)/));
    assert.equal(await count(log.db, 'audit_heads'), heads, 'nothing signed');
  });

  void test("a shard's signed tail cut and the heads deleted: refused, the shard named", async () => {
    const { log, previous, shard, rows } = await anchoredLog();
    const cut = rows.at(-1) as AuditRow;
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query('DELETE FROM audit_log WHERE seq = $1', [cut.seq]);
    });
    await deleteSignedHeads(log.db);
    await assert.rejects(
      anchor(log, previous),
      refusedNaming(shard, new RegExp(`row ${cut.seq} of shard ${shard}, signed as its head, is gone: rows were cut`)),
    );
  });

  void test('a signed row whose content was edited under its kept hash: refused', async () => {
    const { log, previous, shard, rows } = await anchoredLog();
    const head = rows.at(-1) as AuditRow;
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query(`UPDATE audit_log SET details = '{"n":4}'::jsonb WHERE seq = $1`, [head.seq]);
    });
    await assert.rejects(anchor(log, previous), refusedNaming(shard, /kept its signed hash, but its content no longer matches it/));
  });

  void test('after a rotation, a recorded head signed by a retired key (BROKER_AUDIT_KEYS_RETIRED_PATH) is checked, not skipped', async () => {
    const { log, shard, rows } = await anchoredLog();
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query(`UPDATE audit_log SET details = '{"n":5}'::jsonb WHERE seq = $1`, [rows[0]?.seq]);
    });
    await rechainShard(log.db, shard);
    const rotated = await signingKeyFromJwk(await generateSigningKeyJwk());
    const heads = await count(log.db, 'audit_heads');
    // The old key published as retired: the newest recorded head is verified with it and the rewrite refused.
    const withRetired: BrokerSecrets = { ...logs.secrets, auditKey: rotated, retiredAuditKeys: [logs.secrets.auditKey.publicJwk] };
    await assert.rejects(
      anchor(log, undefined, withRetired),
      refusedNaming(shard, /holds hash [0-9a-f]{64}, but was signed with .*\(audit_heads \(seq \d+\)\)/),
    );
    assert.equal(await count(log.db, 'audit_heads'), heads, 'nothing signed');
    // Not published as retired: a head of an unknown key is skipped with a warning (the database could have written it).
    const { head, logged } = await anchor(log, undefined, { ...logs.secrets, auditKey: rotated, retiredAuditKeys: [] });
    assert.ok(head, 'signed: nothing it knows contradicts the log');
    assert.ok(logged.some((l) => l.level === 'WARN' && /neither the audit key nor a retired one/.test(l.message)));
  });

  void test('a previous head that is not the audit key’s: refused; an honest log with an unchanged head: the same head again', async () => {
    const { log, previous } = await anchoredLog();
    const [h, p] = previous.jws.split('.') as [string, string, string];
    const forged = { ...previous, jws: `${h}.${p}.${Buffer.from('not a signature').toString('base64url')}` };
    await assert.rejects(
      anchor(log, forged),
      (e: unknown) => e instanceof ApplicationFailure && /the head cannot be read: the head does not verify/.test(e.message),
    );
    const again = await anchored(log, previous);
    assert.equal(again.jws, previous.jws, 'an unchanged log: the head already signed');
  });
});
