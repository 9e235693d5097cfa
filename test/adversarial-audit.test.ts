import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { startStack, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot } from './adversarial-probes';
import { expiredSession, forgedBearers } from './adversarial-tokens';
import { mintOidc, type WalletSession, walletLogin } from './mint-client';

/** GET /v1/audit against malformed paging, forged / expired / logged-out bearers and concurrent appends. */

let stack: TestStack;
let tee: TeeKeyPair;
let alice: WalletSession;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem } });
  alice = await walletLogin(stack);
  await mintOidc(stack, alice.token);
});
after(async () => {
  await stack?.stop();
});

interface Entry {
  seq: string;
  event: string;
}
interface Page {
  entries: Entry[];
  next_before: string | null;
}

async function page(token: string, query = ''): Promise<Page> {
  const res = await stack.request('GET', `/v1/audit${query}`, { token });
  assert.equal(res.status, 200, res.text);
  return res.body as Page;
}

/** Every entry of the caller, paging backwards with `limit`. */
async function allEntries(token: string, limit: number): Promise<Entry[]> {
  const out: Entry[] = [];
  let before: string | null = null;
  for (let i = 0; i < 1000; i++) {
    const p: Page = await page(token, `?limit=${limit}${before ? `&before=${before}` : ''}`);
    out.push(...p.entries);
    if (!p.next_before) return out;
    before = p.next_before;
  }
  throw new Error('paging did not end');
}

void describe('audit: malformed and oversized paging', () => {
  void test('bad limit and before values → 400 bad_request naming the parameter (never a 500); nothing written', async () => {
    const cases: [string, RegExp][] = [
      ['limit=0', /limit/],
      ['limit=201', /limit/],
      ['limit=-1', /limit/],
      ['limit=1.5', /limit/],
      ['limit=abc', /limit/],
      ['limit=Infinity', /limit/],
      ['limit=1&limit=2', /limit/],
      ['before=abc', /before/],
      ['before=0', /before/],
      ['before=-5', /before/],
      ['before=01', /before/],
      ['before=1.0', /before/],
      ['before=%201', /before/],
      ['before=1e3', /before/],
      ['before=0x10', /before/],
      // Past the largest seq Postgres can hold (bigint): a clear 400, not a database error.
      ['before=9223372036854775808', /before/],
      ['before=9999999999999999999', /before/],
      ['before=12345678901234567890', /before/],
      [`before=${'9'.repeat(5000)}`, /before/],
      ['before=1&before=2', /before/],
    ];
    const before = await dbSnapshot(stack.db);
    for (const [query, message] of cases) {
      const res = await stack.request('GET', `/v1/audit?${query}`, { token: alice.token });
      assertRefused(res, 400, 'bad_request', message, query.slice(0, 40));
    }
    await assertUnchanged(stack.db, before, 'after the refusals');
    // The largest seq that exists as a bigint is a valid (empty-below-it) cursor: the newest rows.
    const top = await page(alice.token, '?before=9223372036854775807');
    assert.deepEqual(top.entries, (await page(alice.token)).entries);
  });
});

void describe('audit: expired, forged and logged-out bearers', () => {
  void test('every refused bearer → 401 with no rows in the answer', async () => {
    const expired = await expiredSession(stack, { omniAccount: alice.omni_account, wallet: alice.wallet.lower });
    const loggedOut = await walletLogin(stack, alice.wallet);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: loggedOut.token })).status, 204);
    const teeId = signTeeJwt(tee.privateKey, teeClaims(alice.omni_account, 'id', 'agentkeys', Math.floor(Date.now() / 1000)));
    const bearers = [
      ...(await forgedBearers(stack, alice.token)),
      { name: 'expired', token: expired, message: /token expired/ },
      { name: 'logged out', token: loggedOut.token, message: /logged out/ },
      { name: 'a TEE id token', token: teeId, message: /typ "id"/ },
    ];
    const before = await dbSnapshot(stack.db);
    for (const b of bearers) {
      const res = await stack.request('GET', '/v1/audit', { token: b.token });
      assertRefused(res, 401, 'unauthorized', b.message, b.name);
      assert.ok(!res.text.includes(alice.omni_account), `${b.name}: rows of the victim in a refusal`);
    }
    await assertUnchanged(stack.db, before, 'after the refusals');
    // A TEE access token of the same account reads the same rows as its session.
    const teeAccess = signTeeJwt(tee.privateKey, teeClaims(alice.omni_account, 'access', 'agentkeys', Math.floor(Date.now() / 1000)));
    assert.deepEqual(await page(teeAccess), await page(alice.token));
  });
});

void describe('audit: concurrent', () => {
  void test('paging while mints append: pages are the caller’s own, newest first, disjoint; a full walk afterwards has every row once', async () => {
    const bob = await walletLogin(stack);
    const reads = Array.from({ length: 10 }, () => stack.request('GET', '/v1/audit?limit=3', { token: bob.token }));
    const mints = Array.from({ length: 10 }, () => stack.request('POST', '/v1/mint-oidc-jwt', { token: bob.token }));
    const aliceMints = Array.from({ length: 5 }, () => stack.request('POST', '/v1/mint-oidc-jwt', { token: alice.token }));
    const results = await Promise.all([...reads, ...mints, ...aliceMints]);
    for (const r of results) assert.equal(r.status, 200, r.text);
    for (const r of results.slice(0, 10)) {
      const seqs = (r.body as Page).entries.map((e) => BigInt(e.seq));
      assert.deepEqual(
        seqs,
        [...seqs].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0)),
      );
      assert.ok(!r.text.includes(alice.omni_account));
    }
    const own = await stack.db.query<{ seq: string }>('SELECT seq::text AS seq FROM audit_log WHERE omni_account = $1 ORDER BY audit_log.seq DESC', [
      bob.omni_account,
    ]);
    assert.equal(own.rowCount, 1 + 20, 'the login and an intent + ok pair per mint');
    for (const limit of [1, 3, 7, 200]) {
      const walked = (await allEntries(bob.token, limit)).map((e) => e.seq);
      assert.deepEqual(
        walked,
        own.rows.map((r) => r.seq),
        `limit ${limit}`,
      );
    }
  });
});
