/**
 * The TEE's check_hyper_agent_address callback answers "bound" only for a grant that lets the agent
 * act as the main wallet without limit: active, unscoped and without an approval policy. The TEE
 * runs whatever a bound agent asks from the main wallet, where neither a scope nor the holder's
 * decision can be held.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bindAgent } from './grant-client';
import { startStack, type TestStack } from './harness';
import { walletLogin } from './mint-client';

const GCP_AUDIENCE = '//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/bound-pool/providers/bound-provider';

let stack: TestStack;
const mixedCase = (a: string) => `0x${[...a.slice(2)].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('')}`;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
});
after(async () => {
  await stack?.stop();
});

async function isBound(main: string, agent: string): Promise<boolean> {
  const r = await stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { main_address: main, agent_address: agent, login_type: 0 } });
  assert.equal(r.status, 200, r.text);
  return (r.body as { data: { isBound: boolean } }).data.isBound;
}

void describe('check_hyper_agent_address and what a grant allows', () => {
  void test('an accepted grant binds for the TEE only when unscoped and without an approval policy', async () => {
    const holder = await walletLogin(stack);
    const cases: { name: string; grants: Record<string, unknown>[]; bound: boolean }[] = [
      { name: 'scoped to services s3', grants: [{ scope: { services: ['s3'] } }], bound: false },
      { name: 'scoped to a role', grants: [{ scope: { roles: ['arn:aws:iam::123456789012:role/agentkeys-data'] } }], bound: false },
      { name: 'scoped to a Google audience', grants: [{ scope: { gcp: { audiences: [GCP_AUDIENCE] } } }], bound: false },
      { name: 'with an approval policy (always)', grants: [{ approval: { mode: 'always' } }], bound: false },
      { name: 'with an approval policy (beyond)', grants: [{ approval: { mode: 'beyond', max_duration_seconds: 900 } }], bound: false },
      { name: 'unscoped, no approval policy', grants: [{}], bound: true },
      { name: 'a scoped grant and an unscoped one', grants: [{ scope: { services: ['s3'] } }, {}], bound: true },
    ];
    for (const c of cases) {
      const agent = await walletLogin(stack);
      for (const body of c.grants) await bindAgent(stack, holder.token, agent.wallet, body);
      assert.equal(await isBound(holder.wallet.lower, agent.wallet.lower), c.bound, c.name);
      // One address, whatever the case of its hex digits.
      assert.equal(await isBound(mixedCase(holder.wallet.lower), mixedCase(agent.wallet.lower)), c.bound, `${c.name}, mixed case`);
    }
  });
});
