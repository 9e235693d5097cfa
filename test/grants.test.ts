import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { getAddress } from 'viem';
import { findActiveGrantForAgent, hasAcceptedGrantForAgent } from '../db/grants';
import { generateTeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { acceptGrant, type GrantView } from './grant-client';
import { startStack, type TestStack } from './harness';
import { newWallet } from './wallet-client';

/** Grants (docs/contracts.md §6) and what check_hyper_agent_address answers from them. */

/** Grant revocations per account per minute here: above the two any other test below makes. */
const REVOKES_PER_MINUTE = 5;
let stack: TestStack;
let tee: TeeFixture;
let shiftMs = 0;
const clock = () => Date.now() + shiftMs;

before(async () => {
  const key = await generateTeeKeyPair();
  stack = await startStack({
    env: { BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyPem, BROKER_RATE_LIMIT_REVOKE_PER_MINUTE: String(REVOKES_PER_MINUTE) },
    apiDeps: { now: clock },
  });
  tee = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem });
});
after(async () => {
  await tee?.close();
  await stack?.stop();
});

const evmAddress = () => `0x${randomBytes(20).toString('hex')}`;
/** An address with mixed case, as wallets print them. */
const mixedCase = (a: string) => `0x${[...a.slice(2)].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('')}`;

interface Account {
  omni: string;
  token: string;
  address?: string;
}

/** An account logged in through the TEE callback; an EVM identity becomes its main wallet. */
async function teeAccount(identity: Identity): Promise<Account> {
  const omni = deriveOmniAccount('agentkeys', identity);
  const token = tee.issueToken({ sub: omni, typ: 'access', exp: Math.floor(Date.now() / 1000) + 7 * 86400, aud: 'agentkeys' });
  const r = await stack.request('POST', '/v3/account/post_heima_login', {
    token,
    body: { userId: identity, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true },
  });
  assert.equal(r.status, 200, r.text);
  return { omni, token, address: identity.type === 'evm' ? identity.value.toLowerCase() : undefined };
}

const evmAccount = () => teeAccount({ type: 'evm', value: evmAddress() });

async function isBound(main: string, agent: string): Promise<boolean> {
  const r = await stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { main_address: main, agent_address: agent, login_type: 0 } });
  assert.equal(r.status, 200, r.text);
  return (r.body as { data: { isBound: boolean } }).data.isBound;
}

async function counts(): Promise<{ grants: number; audit: number }> {
  const r = await stack.db.query<{ grants: string; audit: string }>(
    `SELECT (SELECT count(*) FROM grants)::text AS grants, (SELECT count(*) FROM audit_log)::text AS audit`,
  );
  return { grants: Number(r.rows[0]?.grants), audit: Number(r.rows[0]?.audit) };
}

type Grant = GrantView;

void describe('grants', () => {
  void test('create (pending), accept, list, revoke by the owner only; a scoped grant binds no TEE operation; every change audited', async () => {
    const a = await evmAccount();
    const b = await evmAccount();
    const agentWallet = newWallet();
    const agent = agentWallet.lower;
    const scope = { services: ['s3'], roles: ['arn:aws:iam::123456789012:role/agentkeys-data'] };
    const created = await stack.request('POST', '/v1/grants', { token: a.token, body: { agent_address: getAddress(agent), scope, expires_in: 3600 } });
    assert.equal(created.status, 201, created.text);
    const g = created.body as Grant;
    assert.deepEqual(Object.keys(g), [
      'grant_id',
      'main_address',
      'agent_address',
      'scope',
      'expires_at',
      'status',
      'active',
      'created_at',
      'accepted_at',
      'revoked_at',
      'acceptance_message',
    ]);
    assert.equal(g.status, 'pending');
    assert.equal(g.active, false);
    assert.equal(g.accepted_at, null);
    assert.equal(
      g.acceptance_message,
      [
        'AgentKeys: accept a grant.',
        'Signing this lets the main wallet below use this agent wallet to mint credentials for it. It sends no transaction and costs no gas.',
        `Broker: ${new URL(stack.url).host}`,
        `Grant: ${g.grant_id}`,
        `Main wallet: ${a.address ?? ''}`,
        `Agent wallet: ${agent}`,
        'Services: s3',
        'Roles: arn:aws:iam::123456789012:role/agentkeys-data',
        `Expires at: ${g.expires_at}`,
      ].join('\n'),
    );
    assert.match(g.grant_id, /^grt_[0-9a-f]{32}$/);
    assert.equal(g.main_address, a.address);
    assert.equal(g.agent_address, agent);
    assert.deepEqual(g.scope, scope);
    assert.ok(Math.abs(g.expires_at - (Math.floor(clock() / 1000) + 3600)) <= 2);
    assert.equal(await isBound(a.address ?? '', agent), false, 'pending: the agent has not accepted');
    assert.equal(await findActiveGrantForAgent(stack.db, agent), undefined);
    assert.equal(await hasAcceptedGrantForAgent(stack.db, agent), false);
    const accepted = await acceptGrant(stack, agentWallet, g);
    assert.equal(accepted.acceptance_message, undefined);
    assert.equal(typeof accepted.accepted_at, 'number');
    // A scoped grant lets the agent mint within its scope, and binds no TEE user operation (test/grant-bound-scope.test.ts).
    assert.equal(await isBound(mixedCase(a.address ?? ''), agent), false, 'scoped: not bound for the TEE');
    assert.equal(await isBound(b.address ?? '', agent), false, 'bound to A, not to B');

    const active = await findActiveGrantForAgent(stack.db, agent);
    assert.equal(active?.grant_id, g.grant_id);
    assert.equal((await findActiveGrantForAgent(stack.db, agent, g.grant_id))?.main_account, a.omni);
    assert.equal(await findActiveGrantForAgent(stack.db, agent, `grt_${'0'.repeat(32)}`), undefined);

    const listed = await stack.request('GET', '/v1/grants', { token: a.token });
    const grants = (listed.body as { grants: (Grant & { active: boolean; revoked_at: number | null })[] }).grants;
    assert.deepEqual(
      grants.map((x) => [x.grant_id, x.status, x.active, x.revoked_at]),
      [[g.grant_id, 'active', true, null]],
    );
    assert.deepEqual((await stack.request('GET', '/v1/grants', { token: b.token })).body, { grants: [] });

    // B cannot revoke A's grant: 404, nothing changes.
    const before = await counts();
    const foreign = await stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: b.token });
    assert.equal(foreign.status, 404, foreign.text);
    assert.deepEqual(await counts(), before);
    assert.equal((await findActiveGrantForAgent(stack.db, agent))?.grant_id, g.grant_id, 'still active');

    const revoked = await stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: a.token });
    assert.equal(revoked.status, 204, revoked.text);
    assert.equal(await isBound(a.address ?? '', agent), false);
    assert.equal(await findActiveGrantForAgent(stack.db, agent), undefined);
    assert.equal(await hasAcceptedGrantForAgent(stack.db, agent), true);
    assert.equal((await stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: a.token })).status, 204, 'revoking twice is fine');
    const after = (await stack.request('GET', '/v1/grants', { token: a.token })).body as { grants: { active: boolean; revoked_at: number | null }[] };
    assert.equal(after.grants[0]?.active, false);
    assert.equal(typeof after.grants[0]?.revoked_at, 'number');

    const audit = await stack.db.query<{ event: string }>(`SELECT event FROM audit_log WHERE omni_account = $1 AND event LIKE 'grant.%' ORDER BY seq`, [
      a.omni,
    ]);
    assert.deepEqual(
      audit.rows.map((r) => r.event),
      ['grant.create', 'grant.accept', 'grant.revoke'],
    );
  });

  void test('an expired grant is no longer bound (broker clock)', async () => {
    const a = await evmAccount();
    const agentWallet = newWallet();
    const agent = agentWallet.lower;
    const created = await stack.request('POST', '/v1/grants', { token: a.token, body: { agent_address: agent, expires_in: 60 } });
    assert.equal(created.status, 201, created.text);
    await acceptGrant(stack, agentWallet, created.body as Grant);
    assert.equal(await isBound(a.address ?? '', agent), true);
    shiftMs = 61_000;
    try {
      assert.equal(await isBound(a.address ?? '', agent), false);
      assert.equal(await findActiveGrantForAgent(stack.db, agent, undefined, new Date(clock())), undefined);
      const listed = (await stack.request('GET', '/v1/grants', { token: a.token })).body as { grants: Grant[] };
      assert.deepEqual(
        listed.grants.map((x) => [x.status, x.active, x.revoked_at]),
        [['expired', false, null]],
      );
    } finally {
      shiftMs = 0;
    }
  });

  void test('defaults and Idempotency-Key: no expires_in is 30 days; a retried POST answers the same grant (200, as it is now)', async () => {
    const a = await evmAccount();
    const agent = evmAddress();
    const first = await stack.request('POST', '/v1/grants', { token: a.token, body: { agent_address: agent }, headers: { 'idempotency-key': 'create-1' } });
    assert.equal(first.status, 201, first.text);
    const g = first.body as Grant;
    assert.deepEqual(g.scope, {});
    assert.ok(Math.abs(g.expires_at - (Math.floor(clock() / 1000) + 30 * 86400)) <= 2);
    const before = await counts();
    const retry = await stack.request('POST', '/v1/grants', { token: a.token, body: { agent_address: agent }, headers: { 'idempotency-key': 'create-1' } });
    assert.equal(retry.status, 200, retry.text);
    assert.deepEqual(retry.body, first.body);
    assert.deepEqual(await counts(), before);
  });

  void test('bad input: 4xx with a clear message, nothing written', async () => {
    const a = await evmAccount();
    const emailOnly = await teeAccount({ type: 'email', value: `nomain.${Date.now()}@example.com` });
    const agent = evmAddress();
    const before = await counts();
    const cases: { name: string; token?: string; body?: unknown; status: number; message: RegExp }[] = [
      { name: 'no bearer', body: { agent_address: agent }, status: 401, message: /Authorization/ },
      { name: 'no main wallet', token: emailOnly.token, body: { agent_address: agent }, status: 403, message: /no main EVM wallet/ },
      { name: 'bad agent address', token: a.token, body: { agent_address: '0x1234' }, status: 400, message: /agent_address/ },
      { name: 'agent is the main wallet', token: a.token, body: { agent_address: a.address }, status: 400, message: /differ from the main/ },
      { name: 'expires_in too short', token: a.token, body: { agent_address: agent, expires_in: 10 }, status: 400, message: /at least 60/ },
      { name: 'expires_in beyond the maximum', token: a.token, body: { agent_address: agent, expires_in: 366 * 86400 }, status: 400, message: /at most/ },
      { name: 'unknown scope key', token: a.token, body: { agent_address: agent, scope: { buckets: ['x'] } }, status: 400, message: /scope/ },
      { name: 'scope entry with a space', token: a.token, body: { agent_address: agent, scope: { services: ['s 3'] } }, status: 400, message: /scope/ },
    ];
    for (const c of cases) {
      const r = await stack.request('POST', '/v1/grants', { token: c.token, body: c.body });
      assert.equal(r.status, c.status, `${c.name}: ${r.text}`);
      assert.match((r.body as { message: string }).message, c.message, c.name);
    }
    const badId = await stack.request('DELETE', '/v1/grants/not-a-grant', { token: a.token });
    assert.equal(badId.status, 400, badId.text);
    const unknown = await stack.request('DELETE', `/v1/grants/grt_${'a'.repeat(32)}`, { token: a.token });
    assert.equal(unknown.status, 404, unknown.text);
    assert.deepEqual(await counts(), before);
  });

  void test(`revocations are limited per account (${REVOKES_PER_MINUTE} a minute): then 429 with Retry-After and nothing changes; another account, and the account's agent revocations, unaffected`, async () => {
    const a = await evmAccount();
    const b = await evmAccount();
    const offer = async (account: Account, agent: string): Promise<Grant> => {
      const r = await stack.request('POST', '/v1/grants', { token: account.token, body: { agent_address: agent } });
      assert.equal(r.status, 201, r.text);
      return r.body as Grant;
    };
    const revoke = (account: Account, g: Grant) => stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: account.token });
    const entries = async () => (await stack.db.query('SELECT 1 FROM kill_switch_entries WHERE main_account = $1', [a.omni])).rowCount;
    const looped = await offer(a, evmAddress());
    const agentWallet = newWallet();
    const target = await acceptGrant(stack, agentWallet, await offer(a, agentWallet.lower));
    // The same revoked grant again and again: each call a transaction and a wake-up of the kill switch.
    for (let i = 0; i < REVOKES_PER_MINUTE; i++) {
      const r = await revoke(a, looped);
      assert.equal(r.status, 204, `revocation ${i}: ${r.text}`);
    }
    const before = await counts();
    const entriesBefore = await entries();
    const over = await revoke(a, target);
    assert.equal(over.status, 429, over.text);
    assert.equal((over.body as { error: string }).error, 'rate_limited');
    assert.ok(Number(over.headers.get('retry-after')) > 0, 'Retry-After');
    assert.deepEqual(await counts(), before, 'no row, no audit row');
    assert.equal(await entries(), entriesBefore, 'no deny entry');
    assert.equal((await findActiveGrantForAgent(stack.db, agentWallet.lower))?.grant_id, target.grant_id, 'the grant is still active');

    assert.equal((await revoke(b, await offer(b, evmAddress()))).status, 204, 'another account');
    const agentRevoke = await stack.request('POST', `/v1/agents/${agentWallet.lower}/revoke`, { token: a.token });
    assert.equal(agentRevoke.status, 200, agentRevoke.text);
    assert.deepEqual((agentRevoke.body as { revoked_grants: string[] }).revoked_grants, [target.grant_id]);
  });
});
