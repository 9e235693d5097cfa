import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { temporal } from '@temporalio/proto';
import { generateTeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { AkAccount, AkFlow, AkOmniAccount } from '../lib/search-attributes';
import { accountTag } from '../lib/digest';
import { TEE_ACCOUNT_ID_PREFIX } from '../workflows/tee-account.definitions';
import { startStack, type TestStack } from './harness';

const run = promisify(execFile);

/**
 * The per-account bookkeeping workflow behind the TEE callbacks (tee-account/<tag>): continues as
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

void describe('tee-account/<tag> workflow', () => {
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

    // Listed by the account's keyed tag: neither its id nor its attributes carry the OmniAccount.
    const tag = accountTag(stack.secrets.hmacSecret, omni);
    assert.match(tag, /^[0-9a-f]{32}$/);
    const handle = stack.temporal.workflow.getHandle(TEE_ACCOUNT_ID_PREFIX + tag);
    const description = await handle.describe();
    assert.equal(description.workflowId, `tee-account/${tag}`);
    assert.equal(description.typedSearchAttributes.get(AkFlow), 'tee_account');
    assert.equal(description.typedSearchAttributes.get(AkAccount), tag);
    assert.equal(description.typedSearchAttributes.get(AkOmniAccount), undefined);
    assert.ok(!JSON.stringify(description.raw.workflowExecutionInfo).includes(omni.slice(2)), 'the OmniAccount is not in the listing');
    // result() follows the continue-as-new chain to the run that completes after the idle period.
    await handle.result();
    // describe() reads the execution itself (visibility, as list() would, lags behind).
    const latest = await handle.describe();
    assert.equal(latest.status.name, 'COMPLETED');
    const firstRunId = latest.raw.workflowExecutionInfo?.firstRunId;
    assert.ok(firstRunId && firstRunId !== latest.runId, 'the chain has more than one run');
    const firstRun = await stack.temporal.workflow.getHandle(TEE_ACCOUNT_ID_PREFIX + tag, firstRunId).describe();
    assert.equal(firstRun.status.name, 'CONTINUED_AS_NEW');

    // The completed workflow starts again on the next callback, same user.
    const fourth = await login(identity);
    assert.equal(fourth.userId, first.userId);
    const users = await stack.db.query('SELECT 1 FROM users WHERE omni_account = $1', [omni]);
    assert.equal(users.rowCount, 1);

    // No plaintext email or token anywhere in the history (payloads go through the codec).
    const history = await stack.temporal.workflow.getHandle(TEE_ACCOUNT_ID_PREFIX + tag).fetchHistory();
    const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish()).toString('latin1');
    assert.ok(bytes.length > 1000);
    assert.ok(bytes.includes(tag), 'the history is searchable by the account tag');
    assert.ok(!bytes.toLowerCase().includes(omni.slice(2)), 'no OmniAccount in clear');
    assert.ok(!bytes.toLowerCase().includes(identity.value.toLowerCase()), 'no plaintext email');
    assert.ok(!bytes.includes(fourth.token.split('.')[2] ?? 'x'), 'no token');
  });

  void test('npm run account:tag gives an operator the tag Temporal lists the account under', async () => {
    const identity: Identity = { type: 'email', value: `tag.${Date.now()}@example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const tag = accountTag(stack.secrets.hmacSecret, omni);
    const c = stack.config;
    const env = {
      ...process.env,
      NODE_ENV: 'test',
      BROKER_DATA_DIR: c.BROKER_DATA_DIR,
      BROKER_CLIENT_ID: c.BROKER_CLIENT_ID,
      ...(c.BROKER_SECRET ? { BROKER_SECRET: c.BROKER_SECRET } : {}),
      ...(c.BROKER_PAYLOAD_KEY ? { BROKER_PAYLOAD_KEY: c.BROKER_PAYLOAD_KEY } : {}),
    };
    // The same account named three ways (its address respelled, its OmniAccount), and a stranger's.
    const { stdout } = await run(
      'npx',
      [
        'tsx',
        'scripts/account-tag.ts',
        '--json',
        ` TAG.${identity.value.slice(4)}`,
        `email:${identity.value}`,
        omni.toUpperCase().replace('0X', '0x'),
        'nobody@example.com',
      ],
      {
        env,
      },
    );
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { omni_account: string; account_tag: string; query: string; tee_workflow_id: string });
    assert.equal(lines.length, 4);
    for (const l of lines.slice(0, 3)) {
      assert.equal(l.omni_account, omni);
      assert.equal(l.account_tag, tag);
      assert.equal(l.query, `AkAccount="${tag}"`);
      assert.equal(l.tee_workflow_id, TEE_ACCOUNT_ID_PREFIX + tag);
    }
    assert.notEqual(lines[3]?.account_tag, tag);
    // Without the broker's secret the tag is not what a namespace reader could compute from the address.
    assert.notEqual(accountTag(Buffer.alloc(32), omni), tag);
  });
});
