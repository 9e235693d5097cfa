import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { verifyAuditChain } from '../db/audit-query';
import { signAuditHead, verifyAuditHead } from '../lib/audit-head';
import { generateSigningKeyJwk, signingKeyFromJwk } from '../lib/signing-key';
import { ActivityFailure, ApplicationFailure, ScheduleOverlapPolicy, WorkflowFailedError } from '@temporalio/client';
import type { ShardHead } from '../lib/audit-merkle';
import { ensureAuditAnchorSchedule } from '../worker/schedules';
import { AUDIT_ANCHOR_SCHEDULE_ID, type AnchorResult } from '../workflows/audit-anchor.definitions';
import { rechainShard, withAppendOnlyOff } from './audit-tamper';
import { startStack, type TestStack } from './harness';
import { mintOidc, walletLogin } from './mint-client';

/**
 * Anchored audit heads: the audit-anchor workflow signs the chain's head and records it in
 * audit_heads, its own history and GET /v1/audit/head; audit:verify then catches what a plain hash
 * chain cannot — a rewrite with every later hash recomputed, or a cut tail — and refuses a head
 * signed by a key that is not an audit key. Tampering is done as an insider with DB access would.
 */

const ROOT = join(__dirname, '..');
const run = promisify(execFile);
let stack: TestStack;
let keysFile: string;

before(async () => {
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_RATE_LIMIT_MINT_PER_MINUTE: '100000', BROKER_AUDIT_ANCHOR_SECONDS: '1' },
  });
  const alice = await walletLogin(stack);
  await mintOidc(stack, alice.token);
  await mintOidc(stack, alice.token);
  keysFile = join(await mkdtemp(join(tmpdir(), 'akb-audit-keys-')), 'audit-keys.json');
  await writeFile(keysFile, JSON.stringify((await stack.request('GET', '/v1/audit/keys')).body));
});
after(async () => {
  await stack?.temporal.schedule
    .getHandle(AUDIT_ANCHOR_SCHEDULE_ID)
    .delete()
    .catch(() => undefined);
  await stack?.stop();
});

async function anchor(): Promise<NonNullable<AnchorResult>> {
  const result = await stack.temporal.workflow.execute<() => Promise<AnchorResult>>('auditAnchorWorkflow', {
    workflowId: `audit/anchor-test-${Date.now()}-${Math.random().toString(16).slice(2)}`,
    taskQueue: stack.config.BROKER_TASK_QUEUE,
  });
  assert.ok(result, 'the log has rows, so a head is signed');
  return result;
}

async function verify(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/audit-verify.ts'), '--keys', keysFile, ...args], {
      cwd: ROOT,
      env: stack.childEnv(),
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

/** As the database superuser with the append-only trigger off, then every later hash of the row's shard recomputed: a rewrite the chains alone cannot see. */
async function rewriteAndRechain(seq: string, mutate: string): Promise<void> {
  await withAppendOnlyOff(stack.db, async () => {
    await stack.db.query(mutate, [seq]);
  });
  const shard = (await stack.db.query<{ shard: number }>('SELECT shard FROM audit_log WHERE seq = $1', [seq])).rows[0]?.shard;
  assert.ok(shard !== undefined);
  await rechainShard(stack.db, shard);
}

void describe('anchored audit heads', () => {
  void test('a signed head is in audit_heads, the run history and GET /v1/audit/head, and verifies with the audit keys', async () => {
    const none = await stack.request('GET', '/v1/audit/head');
    assert.equal(none.status, 404, 'no head before the first anchor');
    const head = await anchor();
    const res = await stack.request('GET', '/v1/audit/head');
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('cache-control') ?? '', /public, max-age=\d+/);
    const body = res.body as { seq: string; jws: string };
    assert.equal(body.jws, head.jws);
    const keys = (await stack.request('GET', '/v1/audit/keys')).body as { keys: { kid: string }[] };
    const statement = await verifyAuditHead(body.jws, keys);
    const current = (await stack.db.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_log ORDER BY audit_log.seq DESC LIMIT 1'))
      .rows[0];
    assert.deepEqual([statement.seq, statement.hash], [current?.seq, current?.hash]);
    const jwks = (await stack.request('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
    assert.ok(!jwks.keys.some((k) => k.kid === statement.kid), 'the audit key is not an OIDC key AWS would trust');
    // Unchanged log: anchoring again returns the same head, nothing new recorded.
    assert.equal((await anchor()).jws, head.jws);
    assert.equal(Number((await stack.db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_heads')).rows[0]?.n), 1);
    const ok = await verify('--head', head.jws);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /2 signed heads agree/);
  });

  void test('the Schedule keeps anchoring across a worker restart', async () => {
    assert.equal(await ensureAuditAnchorSchedule(stack.temporal, stack.config), 'created');
    assert.equal(await ensureAuditAnchorSchedule(stack.temporal, stack.config), 'existing');
    const { action } = await stack.temporal.schedule.getHandle(AUDIT_ANCHOR_SCHEDULE_ID).describe();
    assert.equal(action.type === 'startWorkflow' ? action.workflowExecutionTimeout : undefined, 300_000, 'every scheduled run has an execution timeout');
    const count = async () => Number((await stack.db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_heads')).rows[0]?.n);
    const waitForNewHead = async (after: number, what: string) => {
      for (let i = 0; i < 150; i++) {
        if ((await count()) > after) return;
        await delay(200);
      }
      assert.fail(`no new head ${what}`);
    };
    // New rows make a new head to sign.
    const w = await walletLogin(stack);
    let before = await count();
    await waitForNewHead(before, 'from the Schedule');
    await stack.stopWorker();
    await walletLogin(stack, w.wallet); // the stateless login needs no worker: a new row while the worker is down
    before = await count();
    await stack.startWorker();
    await waitForNewHead(before, 'after the worker came back');
    // The tests below tamper with the log: no Schedule signing heads behind their back.
    await stack.temporal.schedule.getHandle(AUDIT_ANCHOR_SCHEDULE_ID).delete();
  });

  void test('a head signed by another key is refused', async () => {
    const stranger = await signingKeyFromJwk(await generateSigningKeyJwk());
    const forged = await signAuditHead(stranger, { seq: '1', hash: 'f'.repeat(64), at: new Date().toISOString(), iss: stack.config.publicUrl });
    const r = await verify('--head', forged);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /REFUSED \(--head\): the head is signed by a key that is not an audit key/);
  });

  void test('a rewrite with every later hash recomputed passes the chain but contradicts the signed head', async () => {
    const head = await anchor();
    await rewriteAndRechain('2', `UPDATE audit_log SET details = details || '{"wallet":"0x0000000000000000000000000000000000000bad"}'::jsonb WHERE seq = $1`);
    assert.ok((await verifyAuditChain(stack.db)).ok, 'the re-chained shard passes the chain check alone');
    const r = await verify();
    assert.equal(r.code, 1, r.out);
    // The earliest head after the rewritten row is the first to contradict it.
    assert.match(
      r.out,
      /CONTRADICTS a signed head \(shard \d+\): row \d+ in shard \d+ holds hash [0-9a-f]{64}, but the head signed at .* says [0-9a-f]{64}: the log was rewritten at or before seq \d+ in shard \d+/,
    );
    assert.ok(BigInt(head.seq) >= 2n);
  });

  void test('a cut tail is reported against the head that covered it', async () => {
    // Cut from the earliest signed head on: that head's row is gone.
    const earliest = (await stack.db.query<{ seq: string }>('SELECT min(seq)::text AS seq FROM audit_heads')).rows[0]?.seq ?? '';
    await withAppendOnlyOff(stack.db, async () => {
      await stack.db.query('DELETE FROM audit_log WHERE seq >= $1', [earliest]);
    });
    assert.ok((await verifyAuditChain(stack.db)).ok, 'a cut tail passes the chain check alone');
    const r = await verify();
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      new RegExp(`\\(shard (\\d+)\\): shard \\1 ends at seq \\d+ but the head signed at .* covers seq ${earliest} in shard \\1: rows were cut`),
    );
  });
});

/**
 * The audit anchor run by its Schedule: Temporal hands each scheduled run the head its predecessor
 * signed, and the anchor refuses to sign a log that no longer extends it — even when whoever
 * rewrote a shard also deleted every signed head from the database, so the database alone has
 * nothing left to contradict the forgery. Its own stack, after the tests above (the Schedule's id
 * is one per namespace: one test at a time may own it).
 */
let sched: TestStack;

const headCount = async () => Number((await sched.db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_heads')).rows[0]?.n);

async function until<T>(what: string, probe: () => Promise<T | undefined | false>): Promise<T> {
  for (let i = 0; i < 150; i++) {
    const v = await probe();
    if (v) return v;
    await delay(200);
  }
  assert.fail(`timed out waiting for ${what}`);
}

void describe('the scheduled audit anchor', () => {
  before(async () => {
    sched = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_AUDIT_ANCHOR_SECONDS: '1' } });
    for (let i = 0; i < 4; i++) await walletLogin(sched);
  });
  after(async () => {
    await sched?.temporal.schedule
      .getHandle(AUDIT_ANCHOR_SCHEDULE_ID)
      .delete()
      .catch(() => undefined);
    await sched?.stop();
  });

  void test('a shard rewritten and every signed head deleted: the next scheduled run refuses against its predecessor’s head, naming the shard, and signs nothing', async () => {
    assert.equal(await ensureAuditAnchorSchedule(sched.temporal, sched.config), 'created');
    const schedule = sched.temporal.schedule.getHandle(AUDIT_ANCHOR_SCHEDULE_ID);
    await until('the first scheduled head', async () => (await headCount()) >= 1);
    await walletLogin(sched);
    await until('a second scheduled head, signed by a run given the first', async () => (await headCount()) >= 2);
    await schedule.pause('the test tampers with the log');
    await until('no scheduled run in flight', async () => (await schedule.describe()).info.runningActions.length === 0);

    // The newest head — what the last scheduled run returned, so what Temporal hands the next one.
    const newest = (await sched.db.query<{ shard_heads: ShardHead[] }>('SELECT shard_heads FROM audit_heads ORDER BY signed_at DESC, seq DESC LIMIT 1'))
      .rows[0];
    const pinned = newest?.shard_heads.find((h) => h.seq !== '0');
    assert.ok(pinned, 'a shard with rows under the head');
    // As the broker's database login can: rewrite the shard's signed head row, re-chain the shard,
    // delete every signed head (triggers off), and let the log grow.
    await withAppendOnlyOff(sched.db, async () => {
      await sched.db.query(`UPDATE audit_log SET details = details || '{"forged":true}'::jsonb WHERE seq = $1`, [pinned.seq]);
    });
    await rechainShard(sched.db, pinned.shard);
    for (const table of ['audit_heads', 'audit_head_shards']) {
      await sched.db.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
      await sched.db.query(`DELETE FROM ${table}`);
      await sched.db.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
    }
    await walletLogin(sched);

    const taken = (await schedule.describe()).info.numActionsTaken;
    // With the Schedule's own overlap policy: a start under ALLOW_ALL (trigger()'s default) is given no previous result.
    await schedule.trigger(ScheduleOverlapPolicy.SKIP);
    const action = await until('the triggered run to finish', async () => {
      const { info } = await schedule.describe();
      const last = info.recentActions.at(-1)?.action;
      return info.numActionsTaken > taken && info.runningActions.length === 0 && last?.type === 'startWorkflow' ? last : undefined;
    });
    const run = sched.temporal.workflow.getHandle(action.workflow.workflowId, action.workflow.firstExecutionRunId);
    const failure = await run.result().then(
      () => assert.fail('the anchor signed a rewritten log'),
      (e: unknown) => e,
    );
    assert.ok(failure instanceof WorkflowFailedError, String(failure));
    assert.ok(failure.cause instanceof ActivityFailure, String(failure.cause));
    const cause = failure.cause.cause;
    assert.ok(cause instanceof ApplicationFailure, String(cause));
    assert.equal(cause.type, 'AuditFailed');
    assert.match(
      cause.message,
      new RegExp(
        `^audit anchor REFUSED to sign \\(shard ${pinned.shard}\\): row ${pinned.seq} of shard ${pinned.shard} holds hash [0-9a-f]{64}, but was signed with ${pinned.hash}: .*\\(the previous anchor run\\)`,
      ),
    );
    assert.equal(await headCount(), 0, 'nothing signed');
  });
});
