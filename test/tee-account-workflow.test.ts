import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { generateTeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { AkFlow, AkOmniAccount } from '../lib/search-attributes';
import { startStack, type TestStack } from './harness';

/**
 * The per-account bookkeeping workflow behind the TEE callbacks (account/<omni>): continues as
 * new after BROKER_TEE_ACCOUNT_MAX_UPDATES, completes when idle, starts again on the next
 * callback, and keeps no plaintext email or token in its history.
 */

let stack: TestStack;
let tee: TeeFixture;
before(async () => {
  const key = await generateTeeKeyPair();
  // The idle window (1 s) outlasts the gaps between this test's callbacks (one HTTP call each,
  // ~0.1 s here) on a loaded machine, so the budget (not idleness) ends the first run.
  stack = await startStack({
    env: { BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyPem, BROKER_TEE_ACCOUNT_IDLE_SECONDS: '1', BROKER_TEE_ACCOUNT_MAX_UPDATES: '2' },
  });
  tee = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem });
});
after(async () => {
  await tee?.close();
  await stack?.stop();
});

let tokenSerial = 0;
async function login(identity: Identity): Promise<{ token: string; userId: string }> {
  const omni = deriveOmniAccount('agentkeys', identity);
  // A distinct exp makes a distinct token: a new login, not a retry of the last one.
  const token = tee.issueToken({ sub: omni, typ: 'access', exp: Math.floor(Date.now() / 1000) + 86400 + ++tokenSerial, aud: 'agentkeys' });
  const r = await stack.request('POST', '/v3/account/post_heima_login', {
    token,
    body: { userId: identity, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true },
  });
  assert.equal(r.status, 200, r.text);
  return { token, userId: (r.body as { data: { user_id: string } }).data.user_id };
}

void describe('account/<omni> workflow', () => {
  void test('continues as new after the update budget, completes when idle, restarts on the next callback', async () => {
    const identity: Identity = { type: 'email', value: `Lifecycle.${Date.now()}@Example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const first = await login(identity);
    const second = await login(identity);
    const third = await login(identity);
    assert.equal(second.userId, first.userId);
    assert.equal(third.userId, first.userId);
    const wallet = await stack.request('POST', '/v3/account/add_wallet', { token: third.token });
    assert.equal(wallet.status, 200, wallet.text);

    const handle = stack.temporal.workflow.getHandle(`account/${omni}`);
    const description = await handle.describe();
    assert.equal(description.typedSearchAttributes.get(AkFlow), 'tee_account');
    assert.equal(description.typedSearchAttributes.get(AkOmniAccount), omni);
    // result() follows the continue-as-new chain to the run that completes after the idle period.
    await handle.result();
    // describe() reads the execution itself (visibility, as list() would, lags behind).
    const latest = await handle.describe();
    assert.equal(latest.status.name, 'COMPLETED');
    const firstRunId = latest.raw.workflowExecutionInfo?.firstRunId;
    assert.ok(firstRunId && firstRunId !== latest.runId, 'the chain has more than one run');
    const firstRun = await stack.temporal.workflow.getHandle(`account/${omni}`, firstRunId).describe();
    assert.equal(firstRun.status.name, 'CONTINUED_AS_NEW');

    // The completed workflow starts again on the next callback, same user.
    const fourth = await login(identity);
    assert.equal(fourth.userId, first.userId);
    const users = await stack.db.query('SELECT 1 FROM users WHERE omni_account = $1', [omni]);
    assert.equal(users.rowCount, 1);

    // No plaintext email or token anywhere in the history (payloads go through the codec).
    const history = await stack.temporal.workflow.getHandle(`account/${omni}`).fetchHistory();
    const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish()).toString('latin1');
    assert.ok(bytes.length > 1000);
    assert.ok(bytes.includes(omni), 'the history is searchable for what is not secret');
    assert.ok(!bytes.toLowerCase().includes(identity.value.toLowerCase()), 'no plaintext email');
    assert.ok(!bytes.includes(fourth.token.split('.')[2] ?? 'x'), 'no token');
  });
});
