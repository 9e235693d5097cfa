/**
 * A mint in flight across an agent revocation (docs/kill-switch.md, "A mint in flight"): authorised
 * while its grant was active, its grant then expired (or left by the agent) — so the revocation
 * revokes no grant and records no grant entry — and the agent revoked, before the mint signs. The
 * credential must carry the epoch read with the authorisation, the one the revocation ended, so the
 * agent's deny statement covers it. The mint activity is run directly (as test/mint-one-step.test.ts
 * does) with a signing keyset that holds the mint at its signing step (ActivityDeps.oidcKeys).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createMintActivities } from '../activities/mint';
import { OidcKeyStore } from '../adapters/oidc-keys';
import { startIamFixture, type IamFixture } from '../fixtures/iam';
import { EPOCH_TAG, GRANT_TAG } from '../lib/oidc-claims';
import { createSealKeyPair } from '../lib/seal';
import { killSwitchWorkflowId } from '../workflows/kill-switch.definitions';
import { MINT_ID_PREFIX, type MintOutcome, type MintRequest } from '../workflows/mint.definitions';
import { bindAgent } from './grant-client';
import { waitFor } from './support/wait-for';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';

const ROLE = 'agentkeys-data';
let stack: TestStack;
let iam: IamFixture;

before(async () => {
  // The IAM client signs its requests: the worker's default credential chain reads these.
  process.env.AWS_ACCESS_KEY_ID = 'AKIAKILLSWITCHRACE01';
  process.env.AWS_SECRET_ACCESS_KEY = 'kill-switch-race-secret-key-00000000000';
  iam = await startIamFixture({ roles: [ROLE] });
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_KILL_SWITCH: 'iam', BROKER_IAM_ENDPOINT: iam.url },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
});
after(async () => {
  await stack?.temporal.workflow
    .getHandle(killSwitchWorkflowId(stack.config.BROKER_TASK_QUEUE))
    .terminate('test over')
    .catch(() => undefined);
  await stack?.stop();
  await iam?.close();
});

/** A signing keyset that tells when the mint reaches its signing step and holds it there until released. */
function heldKeys(): { keys: OidcKeyStore; reached: Promise<void>; release: () => void } {
  const real = OidcKeyStore.fromConfig(stack.config);
  let reach!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  const gate = new Promise<void>((r) => (release = r));
  const keys = {
    current: async () => {
      reach();
      await gate;
      return real.current();
    },
  } as unknown as OidcKeyStore;
  return { keys, reached, release };
}

/** Runs one mint of `agent` (AWS unless told) through the mint activity, as the mint workflow runs it. */
async function startMint(
  agent: WalletSession,
  deps: { oidcKeys?: OidcKeyStore; now?: () => number },
  mint: Pick<MintRequest, 'target' | 'params'> = { target: 'aws', params: { duration_seconds: 900 } },
): Promise<{ requestId: string; outcome: Promise<MintOutcome> }> {
  const activities = createMintActivities({ ...stack.activityDeps, ...deps });
  const requestId = randomBytes(16).toString('hex');
  const req: MintRequest = {
    requestId,
    ...mint,
    caller: { omniAccount: agent.omni_account, authKind: 'session', method: 'wallet', wallet: agent.wallet.lower, bearerHash: 'r'.repeat(32) },
    sealTo: (await createSealKeyPair()).publicJwk,
  };
  const env = new MockActivityEnvironment({ workflowExecution: { workflowId: MINT_ID_PREFIX + requestId, runId: 'run-1' }, isLocal: true });
  return { requestId, outcome: env.run((r: MintRequest) => activities.mint(r), req) };
}

void describe('a mint authorised before its grant ended and its agent was revoked, signed after', () => {
  for (const [how, end] of [
    ['expired', (grantId: string) => stack.db.query(`UPDATE grants SET expires_at = now() - interval '1 second' WHERE grant_id = $1`, [grantId])],
    [
      'left by the agent',
      async (grantId: string, agent: WalletSession) => {
        const res = await stack.request('DELETE', `/v1/grants/${grantId}`, { token: agent.token });
        assert.equal(res.status, 204, res.text);
      },
    ],
  ] as const) {
    void test(`grant ${how}: the credential carries the epoch the revocation ended, its ok row says so, and the deny covers it`, async () => {
      const [main, agent] = await Promise.all([walletLogin(stack), walletLogin(stack)]);
      const grantId = await bindAgent(stack, main.token, agent.wallet);
      const held = heldKeys();
      const { requestId, outcome } = await startMint(agent, { oidcKeys: held.keys });
      try {
        await held.reached; // authorised, its intent row durable, about to sign
        await end(grantId, agent);
        const res = await stack.request('POST', `/v1/agents/${agent.wallet.lower}/revoke`, { token: main.token });
        assert.equal(res.status, 200, res.text);
        const body = res.body as { revoked_grants: string[]; ended_epochs: { user_wallet: string; epoch: number }[] };
        assert.deepEqual(body.revoked_grants, [], `the grant is ${how}: nothing to revoke, no grant entry`);
        assert.deepEqual(body.ended_epochs, [{ user_wallet: main.wallet.lower, epoch: 0 }]);
      } finally {
        held.release();
      }
      const minted = await outcome;
      assert.ok('minted' in minted && minted.minted, JSON.stringify(minted));
      const accessKeyId = String(minted.minted.public.access_key_id);
      const session = stack.sts.session(accessKeyId);
      assert.ok(session, accessKeyId);
      assert.equal(session.tags[GRANT_TAG], grantId);
      assert.equal(session.tags[EPOCH_TAG], '0', 'the epoch current when the mint was authorised, not the one the revocation opened');

      const ok = await stack.db.query<{ details: Record<string, unknown> }>(`SELECT details FROM audit_log WHERE request_id = $1 AND event = 'mint.aws'`, [
        requestId,
      ]);
      assert.equal(ok.rows[0]?.details.revocation_epoch, 0, 'the ok row records the epoch the credential carries');

      const context = {
        principalTags: session.tags,
        keys: { 'aws:TokenIssueTime': session.issuedAt },
        action: 's3:GetObject',
        resource: 'arn:aws:s3:::data/x',
      };
      const sid = await waitFor('the agent’s deny on the role', () => iam.evaluate(ROLE, context));
      assert.match(sid, /^AgentKeysRevokedAgent/, 'denied by the agent’s ended epoch (the grant has no entry)');
    });
  }
});

void describe("a mint on a clock behind the revocation's", () => {
  void test('a grant that expired before the agent was revoked authorises nothing, however late the clock: its epoch would outlive every later revocation', async () => {
    const [main, agent] = await Promise.all([walletLogin(stack), walletLogin(stack)]);
    const grantId = await bindAgent(stack, main.token, agent.wallet);
    await stack.db.query(`UPDATE grants SET expires_at = now() - interval '10 minutes' WHERE grant_id = $1`, [grantId]);
    const res = await stack.request('POST', `/v1/agents/${agent.wallet.lower}/revoke`, { token: main.token });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((res.body as { ended_epochs: unknown }).ended_epochs, [{ user_wallet: main.wallet.lower, epoch: 0 }]);
    // A worker whose clock is 20 minutes behind sees the grant still active. Were it to mint, the
    // credential would carry epoch 1, and the next revocation would not end it: the grant expired
    // before epoch 1 began, so nothing could have minted under it since (mayHaveMintedSince).
    const { requestId, outcome: running } = await startMint(agent, { now: () => Date.now() - 20 * 60_000 }, { target: 'oidc', params: {} });
    const outcome = await running;
    assert.ok(outcome.denied, JSON.stringify(outcome));
    const rows = await stack.db.query<{ event: string; outcome: string }>(`SELECT event, outcome FROM audit_log WHERE request_id = $1 ORDER BY seq`, [
      requestId,
    ]);
    assert.deepEqual(
      rows.rows.map((r) => [r.event, r.outcome]),
      [['mint.oidc', 'denied']],
    );
  });
});
