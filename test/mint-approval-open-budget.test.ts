/**
 * The approval-open budget (`approval_open:ip`, docs/approvals.md) is spent by the API before a
 * mint starts, from the API's own read of the agent's grants; the mint activity reads them again.
 * When the grant the activity finds asks for approval but the API's did not (a newer grant without
 * a policy revoked in between, or a grant with one accepted in between), the mint spent nothing,
 * so it opens nothing: it is refused with "try again", and the retry, which meets the policy at the
 * API, spends the budget. Mints are held between the API's check and the start of their flow by
 * wrapping the Temporal client's start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { bindAgentWithApproval, holderLogin, type Holder } from './approval-client';
import { bindAgent } from './grant-client';
import { apiRequest, startStack, withApiUnder, type ApiRequest, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';
import { holdWorkflowClientCalls } from './support/hold-calls';
import { waitFor } from './support/wait-for';

let stack: TestStack;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
});
after(async () => {
  await stack?.stop();
});

/**
 * Holds every mint flow the client would start (workflow id mint/…) until release(): the API has
 * then made its checks, the approval-open budget's among them, and nothing of the mint has run.
 */
const holdMintStarts = (client: Client) =>
  holdWorkflowClientCalls(client, 'execute', async (execute, args, wait) => {
    if ((args[1] as { workflowId?: string } | undefined)?.workflowId?.startsWith('mint/')) await wait();
    return execute(...args);
  });

const approvalsOf = async (agent: WalletSession) =>
  (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM approvals WHERE agent_account = $1', [agent.omni_account])).rows[0]?.n;

const LIMIT = 1;
const MINTS = 3;

/** The API with an approval-open budget of LIMIT a minute (its own limits), on the stack's database and Temporal. */
const withBudget = <T>(run: (request: ApiRequest) => Promise<T>): Promise<T> =>
  withApiUnder(stack, { BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE: String(LIMIT) }, (url) => run(apiRequest(url)));

/**
 * MINTS mints without grant_id, held after the API's checks; `between` changes the agent's grants
 * while they are held; then they run. Returns their answers.
 */
async function heldMints(request: ApiRequest, agent: WalletSession, between: () => Promise<void>) {
  const hold = holdMintStarts(stack.temporal);
  try {
    const answers = Promise.all(Array.from({ length: MINTS }, () => request('POST', '/v1/mint-oidc-jwt', { token: agent.token })));
    await waitFor(
      `${MINTS} mints held before their flows start`,
      () => (hold.held() === MINTS ? true : undefined),
      20_000,
      () => String(hold.held()),
    );
    await between();
    hold.release();
    return await answers;
  } finally {
    hold.release();
    hold.restore();
  }
}

/** Every held mint refused with the approval's "try again", nothing opened; the retry then spends the budget, once. */
async function assertNothingOpenedThenRetrySpends(request: ApiRequest, agent: WalletSession, answers: Awaited<ReturnType<typeof heldMints>>) {
  assert.deepEqual(
    answers.map((r) => r.status),
    Array.from({ length: MINTS }, () => 403),
    `a mint that spent no approval-open budget opened a request: ${answers.map((r) => r.text).join(' | ')}`,
  );
  for (const r of answers) assert.match((r.body as { message: string }).message, /asks for the holder's approval .*; try again/, r.text);
  assert.equal(await approvalsOf(agent), 0, 'approvals rows opened without spending the budget');
  // The caller's retry meets the policy at the API: it spends the budget and opens the request; past the budget, 429.
  const retried = await request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
  assert.equal(retried.status, 202, retried.text);
  const past = await request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
  assert.equal(past.status, 429, past.text);
  assert.equal(await approvalsOf(agent), 1);
}

void describe('mints that spent no approval-open budget open no approval request', () => {
  void test('a newer grant without a policy revoked while the mints are in flight: the older grant’s policy opens nothing', async () => {
    const [holder, agent]: [Holder, WalletSession] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    const older = await bindAgentWithApproval(stack, holder, agent);
    const newer = await bindAgent(stack, holder.token, agent.wallet);
    // The agent's newest active grant (the one a mint without grant_id takes) is `newer`, whatever the clock's resolution.
    await stack.db.query(`UPDATE grants SET created_at = created_at - interval '1 minute' WHERE grant_id = $1`, [older]);
    await withBudget(async (request) => {
      const answers = await heldMints(request, agent, async () => {
        const revoked = await stack.request('DELETE', `/v1/grants/${newer}`, { token: holder.token });
        assert.equal(revoked.status, 204, revoked.text);
      });
      await assertNothingOpenedThenRetrySpends(request, agent, answers);
    });
  });

  void test('a grant with a policy accepted while the mints are in flight opens nothing', async () => {
    const [holder, agent]: [Holder, WalletSession] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    const plain = await bindAgent(stack, holder.token, agent.wallet);
    await stack.db.query(`UPDATE grants SET created_at = created_at - interval '1 minute' WHERE grant_id = $1`, [plain]);
    await withBudget(async (request) => {
      const answers = await heldMints(request, agent, async () => {
        await bindAgentWithApproval(stack, holder, agent);
      });
      await assertNothingOpenedThenRetrySpends(request, agent, answers);
    });
  });
});
