import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../lib/config';
import { startStack, withApiUnder, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type HttpAnswer, type WorkflowStartSpy } from './adversarial-probes';
import { walletLogin } from './mint-client';
import { rawRequest } from './support/raw-http';
import { newWallet } from './wallet-client';

/**
 * The API's own limits (@fastify/rate-limit) and who the client is behind a load balancer:
 * mints per account, wallet challenges per client address (IPv6 by /64), and BROKER_TRUST_PROXY
 * deciding whose X-Forwarded-For counts — for the limits and for the TEE callback allow-list.
 * The load balancer is 127.0.0.1; 127.0.0.2 (also loopback, so reachable) is a peer nobody trusts.
 */

const MINTS = 3;
const CHALLENGES = 2;
let stack: TestStack;
let starts: WorkflowStartSpy;

before(async () => {
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_MINT_PER_MINUTE: String(MINTS),
      BROKER_RATE_LIMIT_WALLET_CHALLENGE_PER_MINUTE: String(CHALLENGES),
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      BROKER_TRUST_PROXY: '127.0.0.1/32',
      BROKER_TEE_CALLBACK_ALLOW: '10.0.0.0/8',
    },
  });
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const send = rawRequest;

const challenge = (baseUrl: string, opts: { from?: string; xff?: string } = {}) =>
  send(baseUrl, 'POST', '/v1/session/wallet_challenge', {
    from: opts.from,
    headers: opts.xff ? { 'x-forwarded-for': opts.xff } : {},
    body: { address: newWallet().address, format: 'eip191' },
  });

const allowListed = (baseUrl: string, opts: { from?: string; xff?: string }) =>
  send(baseUrl, 'GET', '/v3/account/get_account_user_id?email=nobody%40example.com', {
    from: opts.from,
    headers: opts.xff ? { 'x-forwarded-for': opts.xff } : {},
  });

function assertLimited(res: HttpAnswer & { headers: Record<string, unknown> }, what: string): void {
  assertRefused(res, 429, 'rate_limited', /too many requests/, what);
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${what}: Retry-After ${String(res.headers['retry-after'])}`);
}

/** The same deps under another BROKER_TRUST_PROXY, on a port of its own (fresh limit stores). */
function withTrustProxy<T>(trustProxy: string, run: (url: string) => Promise<T>): Promise<T> {
  return withEnv({ BROKER_TRUST_PROXY: trustProxy }, run);
}

/** The same deps under other settings, on a port of its own (fresh limit stores). */
const withEnv = <T>(env: Record<string, string>, run: (url: string) => Promise<T>): Promise<T> => withApiUnder(stack, env, run);

void describe('mints per account', () => {
  void test(`${MINTS * 2} concurrent mints on one session: ${MINTS} minted and audited, the rest 429 with Retry-After, no workflow, no row`, async () => {
    const session = await walletLogin(stack);
    const started = starts.count();
    const results = await Promise.all(
      Array.from({ length: MINTS * 2 }, () => send(stack.url, 'POST', '/v1/mint-oidc-jwt', { headers: { authorization: `Bearer ${session.token}` } })),
    );
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, MINTS, results.map((r) => r.status).join(','));
    for (const r of results.filter((x) => x.status !== 200)) assertLimited(r, 'over the mint budget');
    assert.equal(starts.count() - started, MINTS, 'one workflow per mint that went through');
    const minted = await stack.db.query<{ n: number }>(
      "SELECT count(DISTINCT request_id)::int AS n FROM audit_log WHERE omni_account = $1 AND event LIKE 'mint.%'",
      [session.omni_account],
    );
    assert.equal(minted.rows[0]?.n, MINTS, 'audit rows for the minted ones only');

    // The budget is the account's: the other kind of mint and a second session of the account are refused too; nothing moves.
    const second = await walletLogin(stack, session.wallet);
    const snapshot = await dbSnapshot(stack.db);
    const startedBefore = starts.count();
    assertLimited(await send(stack.url, 'POST', '/v1/mint-aws-creds', { headers: { authorization: `Bearer ${session.token}` } }), 'AWS mint, same session');
    assertLimited(
      await send(stack.url, 'POST', '/v1/mint-oidc-jwt', { headers: { authorization: `Bearer ${second.token}` } }),
      'another session of the account',
    );
    await assertUnchanged(stack.db, snapshot, 'refused mints');
    assert.equal(starts.count(), startedBefore, 'a refused mint started a workflow');

    // Another account on the same address is not affected.
    const other = await walletLogin(stack);
    const res = await send(stack.url, 'POST', '/v1/mint-aws-creds', { headers: { authorization: `Bearer ${other.token}` } });
    assert.equal(res.status, 200, res.text);
  });
});

void describe('mints per client address', () => {
  void test("free accounts do not multiply an address's mints: past BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE, 429 for every account there, no workflow; another address mints", async () => {
    const PER_IP = 3;
    const sessions = await Promise.all(Array.from({ length: PER_IP + 2 }, () => walletLogin(stack)));
    await withEnv({ BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE: String(PER_IP) }, async (url) => {
      const mint = (token: string, from: string) => send(url, 'POST', '/v1/mint-oidc-jwt', { from, headers: { authorization: `Bearer ${token}` } });
      for (const s of sessions.slice(0, PER_IP)) assert.equal((await mint(s.token, '127.0.0.9')).status, 200);
      const started = starts.count();
      const snapshot = await dbSnapshot(stack.db);
      for (const s of sessions.slice(PER_IP)) assertLimited(await mint(s.token, '127.0.0.9'), 'a fresh account on a spent address');
      assert.equal(starts.count(), started, 'a refused mint started a workflow');
      await assertUnchanged(stack.db, snapshot, 'mints refused by the address limit');
      assert.equal((await mint(sessions[PER_IP]?.token ?? '', '127.0.0.10')).status, 200, 'another address has its own budget');
    });
  });
});

void describe('wallet challenges per client address', () => {
  void test(`challenge number ${CHALLENGES + 1} in a minute from one address is 429, no workflow; wallet logins keep their own budget`, async () => {
    const from = '127.0.0.3'; // an untrusted peer of its own: its budget is untouched by the other tests
    for (let i = 0; i < CHALLENGES; i++) assert.equal((await challenge(stack.url, { from })).status, 200);
    const started = starts.count();
    const snapshot = await dbSnapshot(stack.db);
    assertLimited(await challenge(stack.url, { from }), 'one challenge too many');
    await assertUnchanged(stack.db, snapshot, 'a refused challenge');
    assert.equal(starts.count(), started, 'a refused challenge started a workflow');
    // The stateless wallet login is another budget (BROKER_RATE_LIMIT_IP_PER_MINUTE).
    assert.ok((await walletLogin(stack)).token);
  });

  void test('IPv6 clients (through the trusted balancer) are keyed by /64: another address in the /64 shares the budget, the next /64 has its own', async () => {
    const sameNet = ['2001:db8:aa:1::1', '2001:db8:aa:1:ffff:ffff:ffff:fffe', '2001:DB8:AA:1:0:0:0:77'];
    for (const xff of sameNet.slice(0, CHALLENGES)) assert.equal((await challenge(stack.url, { xff })).status, 200, xff);
    assertLimited(await challenge(stack.url, { xff: sameNet[2] }), 'a third address of the same /64');
    assert.equal((await challenge(stack.url, { xff: '2001:db8:aa:2::1' })).status, 200, 'the neighbouring /64');
    // IPv4 clients are keyed by address, and an IPv4-mapped IPv6 form is the same client.
    assert.equal((await challenge(stack.url, { xff: '198.51.100.7' })).status, 200);
    assert.equal((await challenge(stack.url, { xff: '::ffff:198.51.100.7' })).status, 200);
    assertLimited(await challenge(stack.url, { xff: '198.51.100.7' }), 'the IPv4 client, third time');
    assert.equal((await challenge(stack.url, { xff: '198.51.100.8' })).status, 200, 'the next IPv4 address');
  });

  void test('spellings of one client address (brackets, a port, leading zeros, the IPv4-mapped form) share one budget', async () => {
    await withTrustProxy('127.0.0.1/32', async (url) => {
      for (const [spellings, what] of [
        [['[2001:db8:cc:1::1]:443', '2001:DB8:CC:1:0::1', '[2001:db8:cc:1::1]'], 'IPv6'],
        [['198.51.100.20:5000', '198.051.100.020', '[::ffff:198.51.100.20]:80'], 'IPv4'],
        [['203.0.113.30', '::ffff:cb00:711e', '203.000.113.030:1'], 'IPv4 and its mapped hex form'],
      ] as const) {
        for (const xff of spellings.slice(0, CHALLENGES)) assert.equal((await challenge(url, { xff })).status, 200, xff);
        const started = starts.count();
        const snapshot = await dbSnapshot(stack.db);
        assertLimited(await challenge(url, { xff: spellings[CHALLENGES] }), `${what}: a third spelling of the same client`);
        await assertUnchanged(stack.db, snapshot, 'a refused challenge');
        assert.equal(starts.count(), started, 'a refused challenge started a workflow');
      }
    });
  });

  void test('a client entry that is no IP address counts as the balancer that passed it on: junk opens no budget of its own', async () => {
    await withTrustProxy('127.0.0.1/32', async (url) => {
      assert.equal((await challenge(url, { xff: 'not-an-address' })).status, 200);
      assert.equal((await challenge(url, { xff: 'unknown' })).status, 200);
      assertLimited(await challenge(url, { xff: '0x7f.0.0.1' }), 'a third string through the same balancer');
      // The balancer's own budget is the one they spent.
      assertLimited(await challenge(url, {}), 'the balancer itself');
      // A real client through the balancer still has its own.
      assert.equal((await challenge(url, { xff: '192.0.2.77' })).status, 200);
    });
  });

  void test('a spoofed X-Forwarded-For from a peer that is not a trusted balancer changes nothing: the peer is the client', async () => {
    const from = '127.0.0.2';
    for (let i = 0; i < CHALLENGES; i++) assert.equal((await challenge(stack.url, { from, xff: `203.0.113.${i + 1}` })).status, 200);
    assertLimited(await challenge(stack.url, { from, xff: '203.0.113.99' }), 'a fresh forged address');
    assertLimited(await challenge(stack.url, { from, xff: '2001:db8:ff::1' }), 'a forged IPv6 address');
  });

  void test('without BROKER_TRUST_PROXY, X-Forwarded-For is ignored even from loopback', async () => {
    await withTrustProxy('', async (url) => {
      for (let i = 0; i < CHALLENGES; i++) assert.equal((await challenge(url, { xff: `2001:db8:bb:${i}::1` })).status, 200);
      assertLimited(await challenge(url, { xff: '2001:db8:bb:99::1' }), 'a fresh forged /64');
    });
  });
});

void describe('the TEE callback allow-list behind a load balancer', () => {
  const ok = (res: HttpAnswer, what: string) => {
    assert.equal(res.status, 200, `${what}: ${res.text}`);
    assert.deepEqual(res.body, { code: 10000, message: 'OK', data: { userId: null } }, what);
  };
  const refused = (res: HttpAnswer, what: string) => {
    assert.equal(res.status, 403, `${what}: ${res.text}`);
    assert.equal((res.body as { code: number }).code, 40300, what);
  };

  void test('the real client counts: the balancer forwarding an allowed source is served; a forged hop, the balancer itself or an untrusted peer are not', async () => {
    ok(await allowListed(stack.url, { xff: '10.1.2.3' }), 'allowed client through the balancer');
    refused(await allowListed(stack.url, {}), 'the balancer itself (not on the list)');
    refused(await allowListed(stack.url, { xff: '10.1.2.3, 203.0.113.9' }), 'a client that forged 10.1.2.3 before the balancer appended its real address');
    refused(await allowListed(stack.url, { from: '127.0.0.2', xff: '10.1.2.3' }), 'an untrusted peer claiming an allowed source');
    const check = await send(stack.url, 'POST', '/v1/account/check_hyper_agent_address', {
      from: '127.0.0.2',
      headers: { 'x-forwarded-for': '10.9.9.9' },
      body: { main_address: newWallet().lower, agent_address: newWallet().lower, login_type: 0 },
    });
    refused(check, 'check_hyper_agent_address from an untrusted peer with a forged source');
  });

  void test('a hop count trusts that many balancers; without BROKER_TRUST_PROXY the TCP peer is the source', async () => {
    await withTrustProxy('1', async (url) => {
      ok(await allowListed(url, { xff: '10.1.2.3' }), 'one hop: the address the balancer saw');
      refused(await allowListed(url, { xff: '10.1.2.3, 203.0.113.9' }), 'one hop: only the last entry counts');
    });
    await withTrustProxy('2', async (url) => {
      ok(await allowListed(url, { xff: '10.1.2.3, 203.0.113.9' }), 'two hops: the entry before the outer balancer (203.0.113.9)');
    });
    await withTrustProxy('', async (url) => {
      refused(await allowListed(url, { xff: '10.1.2.3' }), 'no trusted proxy: loopback is not on the list, whatever the header says');
    });
  });
});

void describe('BROKER_TRUST_PROXY', () => {
  void test('CIDRs, names and hop counts are read; "trust everyone" and junk are refused at boot', () => {
    const read = (v: string) => loadConfig({ BROKER_TRUST_PROXY: v }).BROKER_TRUST_PROXY;
    assert.equal(read(''), false);
    assert.equal(read('0'), false);
    assert.equal(read('2'), 2);
    assert.deepEqual(read(' 10.0.0.0/8, loopback ,2001:db8::/32,192.0.2.1'), ['10.0.0.0/8', 'loopback', '2001:db8::/32', '192.0.2.1']);
    for (const bad of ['true', 'yes', '10.0.0.0/33', 'lb.internal', '10.0.0.0/8/1', '11']) {
      assert.throws(
        () => read(bad),
        (e: unknown) => e instanceof ConfigError && /BROKER_TRUST_PROXY/.test(e.message),
        bad,
      );
    }
  });
});

void describe('refused refreshes per client address', () => {
  const LIMIT = 3;
  const refresh = (url: string, from: string, token: string) => send(url, 'POST', '/v1/session/refresh', { from, body: { refresh_token: token } });
  /** A fresh refresh token of a new account (claimed with its session's bearer). */
  async function refreshToken(): Promise<string> {
    const session = await walletLogin(stack);
    const claimed = await send(stack.url, 'POST', '/v1/session/refresh_token', { headers: { authorization: `Bearer ${session.token}` } });
    assert.equal(claimed.status, 201, claimed.text);
    return (claimed.body as { refresh_token: string }).refresh_token;
  }

  void test(`past ${LIMIT} refused refreshes from one address: 429 before the lookup, a good token too; other addresses and good refreshes are not counted`, async () => {
    await withEnv({ BROKER_RATE_LIMIT_IP_PER_MINUTE: String(LIMIT) }, async (url) => {
      // Good refreshes never count here (the family's own budget, BROKER_RATE_LIMIT_REFRESH_PER_MINUTE, is 6 by default): more than the limit in a row from one address.
      let token = await refreshToken();
      for (let i = 0; i <= LIMIT; i++) {
        const r = await refresh(url, '127.0.0.6', token);
        assert.equal(r.status, 200, `good refresh ${i + 1}: ${r.text}`);
        token = (r.body as { refresh_token: string }).refresh_token;
      }
      const junk = `rt_${'A'.repeat(43)}`;
      for (let i = 0; i < LIMIT; i++) assertRefused(await refresh(url, '127.0.0.7', junk), 401, 'unauthorized', /./, `junk ${i + 1}`);
      const snapshot = await dbSnapshot(stack.db);
      assertLimited(await refresh(url, '127.0.0.7', junk), 'one refused refresh too many');
      assertLimited(await refresh(url, '127.0.0.7', token), 'a good token from the spent address');
      await assertUnchanged(stack.db, snapshot, 'refreshes refused by the limit');
      // The good token was not looked up, so not spent: it still refreshes from another address.
      assert.equal((await refresh(url, '127.0.0.8', token)).status, 200);
    });
  });
});

void describe('successful refreshes per refresh family', () => {
  const BUDGET = 2;
  const refresh = (url: string, from: string, token: string) => send(url, 'POST', '/v1/session/refresh', { from, body: { refresh_token: token } });

  void test(`past ${BUDGET} refreshes of one family in a minute, from any addresses: 429 with Retry-After, nothing changes; the refused-refresh count of the address is not touched`, async () => {
    await withEnv({ BROKER_RATE_LIMIT_REFRESH_PER_MINUTE: String(BUDGET), BROKER_RATE_LIMIT_IP_PER_MINUTE: '1' }, async (url) => {
      const session = await walletLogin(stack);
      const claimed = await send(url, 'POST', '/v1/session/refresh_token', { headers: { authorization: `Bearer ${session.token}` } });
      assert.equal(claimed.status, 201, claimed.text);
      let token = (claimed.body as { refresh_token: string }).refresh_token;
      // Each refresh from another address: the budget is the family's, not a source's.
      for (const from of ['127.0.0.9', '127.0.0.10']) {
        const r = await refresh(url, from, token);
        assert.equal(r.status, 200, r.text);
        token = (r.body as { refresh_token: string }).refresh_token;
      }
      const snapshot = await dbSnapshot(stack.db);
      for (const from of ['127.0.0.11', '127.0.0.11', '127.0.0.12']) {
        const r = await refresh(url, from, token);
        assertRefused(r, 429, 'rate_limited', /renewed 2 times in the last minute/, from);
        const retryAfter = Number(r.headers['retry-after']);
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${String(r.headers['retry-after'])}`);
      }
      await assertUnchanged(stack.db, snapshot, 'refreshes past the family budget');
      // Those 429s were no refused refresh of 127.0.0.11 (its limit here is 1): a junk token there is looked up and refused as unknown.
      assertRefused(await refresh(url, '127.0.0.11', `akr_${'A'.repeat(43)}`), 401, 'unauthorized', /unknown refresh token/);
    });
  });
});
