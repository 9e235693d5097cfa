/**
 * One mint, one outcome: the mint activity run again for the same mint (its worker died after the
 * first try's rows committed and before the workflow recorded the answer, so the local activity
 * runs anew — here: MockActivityEnvironment with the same workflow and run) decides nothing again
 * and reaches nothing outside. It answers what the recorded outcome says, whatever has changed
 * since (the grant, STS), and writes no second outcome row. Also the login completion: a retry
 * answers the times its session row was recorded with.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createMintActivities } from '../activities/mint';
import { createLoginActivities } from '../activities/login-completion';
import { FailureType } from '../lib/errors';
import { createSealKeyPair, type SealPublicJwk } from '../lib/seal';
import { MINT_ID_PREFIX, type MintOutcome, type MintRequest } from '../workflows/mint.definitions';
import { bindAgentWithApproval } from './approval-client';
import { acceptGrant, bindAgent, offerGrant } from './grant-client';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';

let stack: TestStack;
let main: WalletSession;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_DATA_ROLE_ARN: 'arn:aws:iam::123456789012:role/agentkeys-data' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  main = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
});

async function mintRequest(who: WalletSession, target: string, params: MintRequest['params'], more: Partial<MintRequest> = {}): Promise<MintRequest> {
  return {
    requestId: randomBytes(16).toString('hex'),
    target,
    params,
    caller: { omniAccount: who.omni_account, authKind: 'session', method: 'wallet', wallet: who.wallet.lower, bearerHash: 'b'.repeat(32) },
    sealTo: (await createSealKeyPair()).publicJwk,
    ...more,
  };
}

/** Each call runs the mint activity once more for the same mint (same workflow and run). */
function tries(req: MintRequest): () => Promise<MintOutcome | ApplicationFailure> {
  const activities = createMintActivities(stack.activityDeps);
  return async () => {
    const env = new MockActivityEnvironment({ workflowExecution: { workflowId: MINT_ID_PREFIX + req.requestId, runId: 'run-1' }, isLocal: true });
    try {
      return await env.run<[MintRequest], MintOutcome, (r: MintRequest) => Promise<MintOutcome>>((r) => activities.mint(r), req);
    } catch (e) {
      if (e instanceof ApplicationFailure) return e;
      throw e;
    }
  };
}

async function rowsOf(requestId: string): Promise<string[]> {
  const r = await stack.db.query<{ event: string; outcome: string }>('SELECT event, outcome FROM audit_log WHERE request_id = $1 ORDER BY seq', [requestId]);
  return r.rows.map((x) => `${x.event}/${x.outcome}`);
}

const stsCalls = () => stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity').length;

void describe('the mint activity run again for the same mint', () => {
  void test('after ok: no second exchange, however STS would answer now; a failure, and no second outcome row', async () => {
    const req = await mintRequest(main, 'aws', { duration_seconds: 900 });
    const mint = tries(req);
    stack.sts.clear();
    const first = await mint();
    assert.ok(!(first instanceof ApplicationFailure) && !first.denied && 'minted' in first, JSON.stringify(first));
    stack.sts.failNext(1, 'AccessDenied');
    for (let i = 0; i < 2; i++) {
      const again = await mint();
      assert.ok(again instanceof ApplicationFailure, JSON.stringify(again));
      assert.equal(again.type, FailureType.auditError);
      assert.equal(again.nonRetryable, true);
      assert.match(again.message, /earlier try of this mint was recorded/);
    }
    assert.equal(stsCalls(), 1, 'AssumeRoleWithWebIdentity once');
    assert.deepEqual(await rowsOf(req.requestId), ['mint.aws.intent/ok', 'mint.aws/ok']);
  });

  void test('after ok under a grant that has since expired: the same failure, no denied row beside the ok one', async () => {
    const agent = await walletLogin(stack);
    const grantId = await bindAgent(stack, main.token, agent.wallet);
    const req = await mintRequest(agent, 'oidc', {});
    const mint = tries(req);
    const first = await mint();
    assert.ok(!(first instanceof ApplicationFailure) && 'minted' in first, JSON.stringify(first));
    await stack.db.query(`UPDATE grants SET expires_at = now() - interval '1 second' WHERE grant_id = $1`, [grantId]);
    const again = await mint();
    assert.ok(again instanceof ApplicationFailure, JSON.stringify(again));
    assert.match(again.message, /earlier try of this mint was recorded/);
    assert.deepEqual(await rowsOf(req.requestId), ['mint.oidc.intent/ok', 'mint.oidc/ok']);
  });

  void test('after denied: the same refusal, though the grant was accepted since; nothing signed', async () => {
    const agent = await walletLogin(stack);
    const offered = await offerGrant(stack, main.token, { agent_address: agent.wallet.lower });
    const req = await mintRequest(agent, 'oidc', {}, { grantId: offered.grant_id });
    const mint = tries(req);
    const first = await mint();
    assert.ok(!(first instanceof ApplicationFailure) && first.denied, JSON.stringify(first));
    await acceptGrant(stack, agent.wallet, offered);
    const again = await mint();
    assert.deepEqual(again, first);
    assert.deepEqual(await rowsOf(req.requestId), ['mint.oidc/denied']);
  });

  void test('after failed: the same failure (type, message, outcome), no second exchange though STS would answer now', async () => {
    const req = await mintRequest(main, 'aws', { duration_seconds: 900 });
    const mint = tries(req);
    stack.sts.clear();
    stack.sts.failNext(1, 'AccessDenied');
    const first = await mint();
    assert.ok(first instanceof ApplicationFailure, JSON.stringify(first));
    const again = await mint();
    assert.ok(again instanceof ApplicationFailure, JSON.stringify(again));
    assert.deepEqual([again.type, again.message, again.nonRetryable, again.details], [first.type, first.message, true, first.details]);
    assert.equal(stsCalls(), 1);
    assert.deepEqual(await rowsOf(req.requestId), ['mint.aws.intent/ok', 'mint.aws/failed']);
  });

  void test('after an approval request was opened: the same request, though the grant has since expired', async () => {
    const agent = await walletLogin(stack);
    const grantId = await bindAgentWithApproval(stack, main, agent);
    const req = await mintRequest(agent, 'oidc', {}, { approvals: true });
    const mint = tries(req);
    const first = await mint();
    assert.ok(!(first instanceof ApplicationFailure) && !first.denied && 'pending' in first, JSON.stringify(first));
    await stack.db.query(`UPDATE grants SET expires_at = now() - interval '1 second' WHERE grant_id = $1`, [grantId]);
    const again = await mint();
    assert.deepEqual(again, first);
    assert.deepEqual(await rowsOf(req.requestId), ['approval.request/ok'], 'no mint row and one request: the mint is the approval flow’s now');
  });

  void test('a key the answer cannot be sealed to: one exchange, a failed row, a final failure (no retry that would exchange again)', async () => {
    const unusable = { kty: 'OKP', crv: 'X25519', x: 'AA' } as SealPublicJwk;
    const req = await mintRequest(main, 'aws', { duration_seconds: 900 }, { sealTo: unusable });
    const mint = tries(req);
    stack.sts.clear();
    for (let i = 0; i < 2; i++) {
      const failed = await mint();
      assert.ok(failed instanceof ApplicationFailure, JSON.stringify(failed));
      assert.equal(failed.nonRetryable, true);
      assert.equal(failed.type, FailureType.badRequest);
      assert.match(failed.message, /could not be sealed/);
    }
    assert.equal(stsCalls(), 1);
    assert.deepEqual(await rowsOf(req.requestId), ['mint.aws.intent/ok', 'mint.aws/failed']);
  });
});

void describe('the login completion run again', () => {
  void test('answers the times its session row was recorded with, not its own', async () => {
    let shiftMs = 0;
    const login = createLoginActivities({ ...stack.activityDeps, now: () => Date.now() + shiftMs });
    const workflowExecution = { workflowId: `email-login/${randomBytes(16).toString('hex')}`, runId: 'run-1' };
    const input = {
      method: 'email' as const,
      identity: { type: 'email' as const, value: `rerun-${randomBytes(4).toString('hex')}@example.com` },
      requestId: 'r1',
    };
    type Completed = Awaited<ReturnType<typeof login.completeLogin>>;
    const complete = () =>
      new MockActivityEnvironment({ workflowExecution, isLocal: true }).run<[typeof input], Completed, (i: typeof input) => Promise<Completed>>(
        (i) => login.completeLogin(i),
        input,
      );
    const first = await complete();
    shiftMs = 7_000;
    const again = await complete();
    assert.equal(again.jti, first.jti);
    assert.deepEqual([again.issued_at, again.expires_at], [first.issued_at, first.expires_at]);
    const row = await stack.db.query<{ exp: string }>('SELECT extract(epoch FROM expires_at)::bigint::text AS exp FROM sessions WHERE jti = $1', [first.jti]);
    assert.equal(Number(row.rows[0]?.exp), again.expires_at, 'the token expires with its row');
  });
});
