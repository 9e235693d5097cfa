import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Client } from '@temporalio/client';
import { createMaintenanceActivities } from '../activities/maintenance';
import { SesMailer } from '../adapters/ses-mailer';
import { decideApproval, expireApproval, insertApproval, markApprovalCollected, PURGE_FINISHED_APPROVALS_SQL } from '../db/approvals';
import { brokerDataConverter } from '../adapters/temporal-options';
import { CodecError } from '../lib/codec';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { ensureMaintenanceSchedule } from '../worker/schedules';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import { PURGE_SCHEDULE_ID } from '../workflows/maintenance.definitions';
import { bindAgent } from './grant-client';
import { startStack, type TestStack } from './harness';
import { walletLogin } from './mint-client';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const hex = () => randomBytes(16).toString('hex');

void describe('housekeeping', () => {
  void test('the purge drops expired replay-guard, session, logged-out TEE token and spent refresh-family rows and keeps live ones', async () => {
    const [oldProof, liveProof, oldSession, liveSession] = [hex(), hex(), hex(), hex()];
    await stack.db.query(
      `INSERT INTO used_signatures (signature_hash, purpose, expires_at) VALUES ($1, 'test', now() - interval '1 minute'), ($2, 'test', now() + interval '1 hour')`,
      [oldProof, liveProof],
    );
    await stack.db.query(
      `INSERT INTO sessions (jti, omni_account, method, expires_at) VALUES ($1, '0xabc', 'email', now() - interval '1 minute'), ($2, '0xabc', 'email', now() + interval '1 hour')`,
      [oldSession, liveSession],
    );
    const [oldTee, liveTee] = [hex(), hex()];
    await stack.db.query(
      `INSERT INTO revoked_tee_tokens (token_digest, omni_account, expires_at) VALUES ($1, '0xabc', now() - interval '1 minute'), ($2, '0xabc', now() + interval '1 hour')`,
      [oldTee, liveTee],
    );
    const [oldFamily, liveFamily] = [hex(), hex()];
    await stack.db.query(
      `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, session_jti, family_started_at)
       VALUES ($1, $1, '0xabc', 'email', $1, now() - make_interval(secs => $3) - interval '1 minute'), ($2, $2, '0xabc', 'email', $2, now() - interval '1 day')`,
      [oldFamily, liveFamily, stack.config.BROKER_REFRESH_MAX_SECONDS],
    );
    const result = await stack.temporal.workflow.execute<typeof purgeExpiredWorkflow>('purgeExpiredWorkflow', {
      workflowId: `maintenance/purge-test-${hex()}`,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
    });
    assert.ok(result.proofs >= 1 && result.sessions >= 1 && result.revokedTeeTokens >= 1 && (result.refreshTokens ?? 0) >= 1, JSON.stringify(result));
    assert.equal(typeof result.approvals, 'number', 'the run reports the approvals it purged');
    const families = await stack.db.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE family_id = ANY($1)', [[oldFamily, liveFamily]]);
    assert.deepEqual(
      families.rows.map((r) => r.family_id),
      [liveFamily],
    );
    const tees = await stack.db.query<{ token_digest: string }>('SELECT token_digest FROM revoked_tee_tokens WHERE token_digest = ANY($1)', [
      [oldTee, liveTee],
    ]);
    assert.deepEqual(
      tees.rows.map((r) => r.token_digest),
      [liveTee],
    );
    const proofs = await stack.db.query<{ signature_hash: string }>('SELECT signature_hash FROM used_signatures WHERE signature_hash = ANY($1)', [
      [oldProof, liveProof],
    ]);
    assert.deepEqual(
      proofs.rows.map((r) => r.signature_hash),
      [liveProof],
    );
    const sessions = await stack.db.query<{ jti: string }>('SELECT jti FROM sessions WHERE jti = ANY($1)', [[oldSession, liveSession]]);
    assert.deepEqual(
      sessions.rows.map((r) => r.jti),
      [liveSession],
    );
  });

  void test('the purge drops approval requests finished more than BROKER_APPROVAL_RETENTION_DAYS ago, never an open one', async () => {
    const retentionDays = 7;
    const day = 86_400_000;
    const minute = 60_000;
    // The purge's clock; every row is placed relative to it.
    const at = Date.now();
    const t = (ms: number) => new Date(at + ms);
    const holder = await walletLogin(stack);
    const agent = await walletLogin(stack);
    const grantId = await bindAgent(stack, holder.token, agent.wallet);
    const open = async (requestedAt: Date, expiresAt: Date): Promise<string> => {
      const approvalId = `apr_${hex()}`;
      await insertApproval(stack.db, {
        approval_id: approvalId,
        grant_id: grantId,
        main_account: holder.omni_account,
        main_address: holder.wallet.lower,
        agent_address: agent.wallet.lower,
        agent_account: agent.omni_account,
        target: 'oidc',
        params: {},
        scope: {},
        reason: 'purge test',
        request_hash: `0x${'0'.repeat(64)}`,
        requested_at: requestedAt,
        expires_at: expiresAt,
      });
      return approvalId;
    };
    const receipt = { via: 'test' };
    const decide = async (id: string, status: 'approved' | 'denied', when: Date) =>
      assert.ok(await decideApproval(stack.db, { approvalId: id, status, at: when, via: 'fresh-session', receipt }), `decided ${id}`);
    /** Each state of a request whose window started `ago` before the clock (a 5-minute decision window, as the default policy's). */
    const seed = async (ago: number) => {
      const requested = t(-ago);
      const expires = t(-ago + 5 * minute);
      const ids = {
        expired: await open(requested, expires),
        denied: await open(requested, expires),
        collected: await open(requested, expires),
        uncollected: await open(requested, expires),
        // The flow's expiry never landed (e.g. its run was terminated): pending, but its window is long over.
        staleUnmarked: await open(requested, expires),
      };
      assert.ok(await expireApproval(stack.db, ids.expired, expires));
      await decide(ids.denied, 'denied', t(-ago + minute));
      await decide(ids.collected, 'approved', t(-ago + minute));
      assert.ok(await markApprovalCollected(stack.db, ids.collected, grantId, t(-ago + 2 * minute)));
      await decide(ids.uncollected, 'approved', t(-ago + minute));
      return ids;
    };
    const old = await seed((retentionDays + 1) * day);
    const recent = await seed((retentionDays - 1) * day);
    // Open requests: one waiting for its decision, one approved and not yet collected, both inside their windows.
    const pending = await open(t(-minute), t(4 * minute));
    const approvedOpen = await open(t(-2 * minute), t(3 * minute));
    await decide(approvedOpen, 'approved', t(-30_000));
    // A request opened just before the clock whose window ends at it: nothing can change it any more, but it ended now, not a week ago.
    const justEnded = await open(t(-5 * minute), t(0));

    const mailer = new SesMailer(stack.config.BROKER_EMAIL_FROM, { region: stack.config.AWS_REGION, endpoint: stack.ses.url });
    try {
      const activities = createMaintenanceActivities({
        config: { ...stack.config, BROKER_APPROVAL_RETENTION_DAYS: retentionDays },
        db: stack.db,
        secrets: stack.secrets,
        mailer,
        now: () => at,
      });
      const result = await activities.purgeExpiredRows();
      assert.equal(result.approvals, Object.keys(old).length, JSON.stringify(result));
      const mine = [...Object.values(old), ...Object.values(recent), pending, approvedOpen, justEnded];
      const left = await stack.db.query<{ approval_id: string }>('SELECT approval_id FROM approvals WHERE approval_id = ANY($1) ORDER BY approval_id', [mine]);
      assert.deepEqual(
        left.rows.map((r) => r.approval_id),
        [...Object.values(recent), pending, approvedOpen, justEnded].sort(),
      );
      // Idempotent: a retry of the activity deletes nothing more.
      assert.equal((await activities.purgeExpiredRows()).approvals, 0);
    } finally {
      mailer.destroy();
    }
  });

  void test('the approvals purge finds its rows through the approvals_finished_by index, not by reading the table', async () => {
    const client = await stack.db.connect();
    try {
      await client.query('BEGIN');
      // The test table is small, so the planner would scan it anyway; forbid that to see whether the index can serve.
      await client.query('SET LOCAL enable_seqscan = off');
      const plan = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${PURGE_FINISHED_APPROVALS_SQL}`, [new Date(), 30]);
      assert.match(
        plan.rows.map((r) => r['QUERY PLAN']).join('\n'),
        /Index (Only )?Scan using approvals_finished_by|Bitmap Index Scan on approvals_finished_by/,
      );
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  void test('the hourly schedule is registered once, on the broker task queue', async () => {
    await stack.temporal.schedule
      .getHandle(PURGE_SCHEDULE_ID)
      .delete()
      .catch(() => undefined);
    try {
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'created');
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
      const d = await stack.temporal.schedule.getHandle(PURGE_SCHEDULE_ID).describe();
      assert.equal(d.action.type, 'startWorkflow');
      assert.equal(d.action.type === 'startWorkflow' ? d.action.taskQueue : '', stack.config.BROKER_TASK_QUEUE);
      assert.equal(d.spec.intervals?.[0]?.every, 3_600_000);
      assert.equal(d.action.staticSummary, FLOW_METADATA.maintenance.staticSummary);
      // A run nobody can finish (a payload key this broker does not hold) ends instead of blocking the Schedule.
      const timeout = (a: typeof d.action): unknown => (a.type === 'startWorkflow' ? (a.workflowExecutionTimeout as unknown) : undefined);
      assert.equal(timeout(d.action), 30 * 60_000);
      // A Schedule registered before the action carried a summary and a timeout gets them at the next start-up.
      const handle = stack.temporal.schedule.getHandle(PURGE_SCHEDULE_ID);
      await handle.update((previous) => ({
        ...previous,
        action: { ...previous.action, staticSummary: undefined, staticDetails: undefined, workflowExecutionTimeout: undefined },
      }));
      assert.equal((await handle.describe()).action.staticSummary, undefined);
      assert.equal(timeout((await handle.describe()).action), undefined);
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
      assert.equal((await handle.describe()).action.staticSummary, FLOW_METADATA.maintenance.staticSummary);
      assert.equal(timeout((await handle.describe()).action), 30 * 60_000);
      // Details of an older text (the summary unchanged) are brought up to date too.
      await handle.update((previous) => ({ ...previous, action: { ...previous.action, staticDetails: 'Hourly Schedule: drops expired rows.' } }));
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
      assert.equal((await handle.describe()).action.staticDetails, FLOW_METADATA.maintenance.staticDetails);
    } finally {
      await stack.temporal.schedule.getHandle(PURGE_SCHEDULE_ID).delete();
    }
  });

  void test('a schedule written under a payload key this broker does not hold is replaced, not a failed start-up', async () => {
    const schedules = stack.temporal.schedule;
    await schedules
      .getHandle(PURGE_SCHEDULE_ID)
      .delete()
      .catch(() => undefined);
    // Another deployment (or a key since dropped): same namespace, same Schedule id, another payload key.
    const foreign = new Client({
      connection: stack.temporal.connection,
      namespace: stack.config.TEMPORAL_NAMESPACE,
      dataConverter: brokerDataConverter({ ...stack.secrets, payloadKey: randomBytes(32), retiredPayloadKeys: [] }),
    });
    const foreignConfig = { ...stack.config, BROKER_TASK_QUEUE: `foreign-${randomBytes(4).toString('hex')}` };
    try {
      assert.equal(await ensureMaintenanceSchedule(foreign, foreignConfig), 'created');
      await assert.rejects(schedules.getHandle(PURGE_SCHEDULE_ID).describe(), CodecError, 'this broker cannot read it');
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'replaced');
      const d = await schedules.getHandle(PURGE_SCHEDULE_ID).describe();
      assert.equal(d.action.type === 'startWorkflow' ? d.action.taskQueue : '', stack.config.BROKER_TASK_QUEUE);
      assert.equal(d.action.staticSummary, FLOW_METADATA.maintenance.staticSummary);
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
    } finally {
      await schedules.getHandle(PURGE_SCHEDULE_ID).delete();
    }
  });
});
