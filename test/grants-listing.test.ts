/**
 * GET /v1/grants: the status filter and the `before` cursor (docs/contracts.md §6). Anyone can
 * offer any wallet a grant and revoke it, as often as it likes (a revoked offer counts against no
 * cap), so an agent's unfiltered listing can be all junk; status=pending still finds the real offer,
 * and `before` pages through everything. The filter runs in SQL and must agree with the state each
 * grant is shown in (db/grants.ts grantStatus).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { acceptGrant, offerGrant, type GrantView } from './grant-client';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';

const STATUSES = ['pending', 'active', 'revoked', 'declined', 'left', 'expired'] as const;
const JUNK = 201;

let stack: TestStack;
/** The account that makes the agent its real offer. */
let holder: WalletSession;
/** Another account, offering the agent junk and revoking it. */
let spammer: WalletSession;
let agent: WalletSession;
let realOffer: GrantView;
let junk: string[];

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_RATE_LIMIT_REVOKE_PER_MINUTE: '100000' } });
  [holder, spammer, agent] = await Promise.all([walletLogin(stack), walletLogin(stack), walletLogin(stack)]);
  realOffer = await offerGrant(stack, holder.token, { agent_address: agent.wallet.lower });
  junk = [];
  // Offered and revoked, a few at a time: each is newer than the real offer.
  for (let i = 0; i < JUNK; i += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, JUNK - i) }, async () => {
        const g = await offerGrant(stack, spammer.token, { agent_address: agent.wallet.lower });
        const del = await stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: spammer.token });
        assert.equal(del.status, 204, del.text);
        return g.grant_id;
      }),
    );
    junk.push(...batch);
  }
  // Thirty of them share one created_at (offers in the same millisecond): pages must split such a tie cleanly.
  await stack.db.query(`UPDATE grants SET created_at = (SELECT created_at FROM grants WHERE grant_id = $1) WHERE grant_id = ANY($2::text[])`, [
    junk[100],
    junk.slice(90, 120),
  ]);
});
after(async () => {
  await stack?.stop();
});

const list = (token: string, query: string) => stack.request('GET', `/v1/grants?${query}`, { token });

async function grantsOf(token: string, query: string): Promise<GrantView[]> {
  const res = await list(token, query);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(Object.keys(res.body as object), ['grants'], res.text);
  return (res.body as { grants: GrantView[] }).grants;
}

/** Every page of a listing, following `before` from the last grant of each page until a short page. */
async function allPages(token: string, query: string, limit: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (let pages = 1; pages < 1000; pages++) {
    const page = await grantsOf(token, `${query}&limit=${limit}${cursor ? `&before=${cursor}` : ''}`);
    ids.push(...page.map((g) => g.grant_id));
    if (page.length < limit) return { ids, pages };
    cursor = page[page.length - 1]!.grant_id;
  }
  throw new Error('paging did not end');
}

/** The grants as stored, in the listing's order (newest first, then grant_id). */
async function storedOrder(where: string, param: string): Promise<string[]> {
  const r = await stack.db.query<{ grant_id: string }>(`SELECT grant_id FROM grants WHERE ${where} = $1 ORDER BY created_at DESC, grant_id`, [param]);
  return r.rows.map((row) => row.grant_id);
}

async function expectBadRequest(token: string, query: string, message: RegExp): Promise<void> {
  const res = await list(token, query);
  assert.equal(res.status, 400, `${query}: ${res.text}`);
  assert.equal((res.body as { error: string }).error, 'bad_request', res.text);
  assert.match((res.body as { message: string }).message, message, `${query}: ${res.text}`);
}

void describe('an agent flooded with revoked offers', () => {
  void test('unfiltered, the listing is as before: every state, newest first, the real offer pushed out', async () => {
    const all = await grantsOf(agent.token, 'role=agent&limit=200');
    assert.equal(all.length, 200);
    assert.ok(
      all.every((g) => g.status === 'revoked'),
      'the newest 200 are the revoked junk',
    );
    assert.ok(!all.some((g) => g.grant_id === realOffer.grant_id), 'the real offer is in the first 200');
    assert.deepEqual(
      all.map((g) => g.grant_id),
      (await storedOrder('agent_address', agent.wallet.lower)).slice(0, 200),
    );
    assert.equal((await grantsOf(agent.token, 'role=agent')).length, 100, 'the default limit is still 100');
  });

  void test('status=pending shows the real offer, with the text to sign', async () => {
    const pending = await grantsOf(agent.token, 'role=agent&status=pending');
    assert.deepEqual(
      pending.map((g) => g.grant_id),
      [realOffer.grant_id],
    );
    assert.equal(pending[0]?.status, 'pending');
    assert.equal(pending[0]?.acceptance_message, realOffer.acceptance_message);
    // Comma-separated and repeated name the same states.
    for (const query of ['status=pending,active', 'status=pending&status=active', 'status=active,pending,pending']) {
      assert.deepEqual(
        (await grantsOf(agent.token, `role=agent&${query}`)).map((g) => g.grant_id),
        [realOffer.grant_id],
        query,
      );
    }
    assert.equal((await grantsOf(agent.token, 'role=agent&status=revoked&limit=200')).length, 200);
  });

  void test('before pages the whole listing without gaps or repeats, across a tie of created_at', async () => {
    const stored = await storedOrder('agent_address', agent.wallet.lower);
    assert.equal(stored.length, JUNK + 1);
    for (const limit of [7, 50, 200]) {
      const { ids, pages } = await allPages(agent.token, 'role=agent', limit);
      assert.equal(new Set(ids).size, ids.length, `limit ${limit}: a grant was listed twice`);
      assert.deepEqual(ids, stored, `limit ${limit}: the pages are not the listing`);
      assert.equal(pages, Math.floor(stored.length / limit) + 1);
    }
    // Filtered pages: only the filter's grants, all of them.
    const revoked = await allPages(agent.token, 'role=agent&status=revoked', 13);
    assert.deepEqual(
      revoked.ids,
      stored.filter((id) => id !== realOffer.grant_id),
    );
    // The spammer's own listing (role=main) pages the same way.
    const own = await allPages(spammer.token, 'role=main&status=revoked', 9);
    assert.deepEqual(own.ids, await storedOrder('main_account', spammer.omni_account));
  });

  void test('the real offer, once past, is the next page: before names a grant of the listing, whatever its state', async () => {
    const newest200 = await grantsOf(agent.token, 'role=agent&limit=200');
    const next = await grantsOf(agent.token, `role=agent&limit=200&before=${newest200[199]!.grant_id}`);
    assert.deepEqual(
      next.map((g) => g.grant_id),
      (await storedOrder('agent_address', agent.wallet.lower)).slice(200),
    );
    assert.equal(next[next.length - 1]?.grant_id, realOffer.grant_id, 'the real offer is not on the second page');
    // A revoked grant is a cursor of a status=pending listing too.
    assert.deepEqual(
      (await grantsOf(agent.token, `role=agent&status=pending&before=${newest200[0]!.grant_id}`)).map((g) => g.grant_id),
      [realOffer.grant_id],
    );
    assert.deepEqual(await grantsOf(agent.token, `role=agent&before=${realOffer.grant_id}`), [], 'nothing is older than the oldest');
  });

  void test('an unknown status, an empty one, or a cursor outside the listing is a 400', async () => {
    await expectBadRequest(
      agent.token,
      'role=agent&status=bogus',
      /status "bogus" is unknown: one or more of pending, active, revoked, declined, left, expired/,
    );
    await expectBadRequest(agent.token, 'role=agent&status=pending,bogus', /status "bogus" is unknown/);
    await expectBadRequest(agent.token, 'role=agent&status=pending&status=Active', /status "Active" is unknown/);
    await expectBadRequest(agent.token, 'role=agent&status=', /status "" is unknown/);
    await expectBadRequest(agent.token, 'role=agent&status=pending,', /status "" is unknown/);
    await expectBadRequest(agent.token, 'role=agent&before=garbage', /grant_id is malformed/);
    await expectBadRequest(agent.token, `role=agent&before=grt_${'0'.repeat(32)}`, /before names no grant of this listing/);
    // A grant of another listing: the holder's offer is not the spammer's own, the spammer's is no grant naming the holder's wallet.
    await expectBadRequest(spammer.token, `role=main&before=${realOffer.grant_id}`, /before names no grant of this listing \(role=main\)/);
    await expectBadRequest(holder.token, `role=agent&before=${junk[0]}`, /before names no grant of this listing \(role=agent\)/);
  });
});

void describe('the status filter (SQL) and the status shown (grantStatus) agree', () => {
  let owner: WalletSession;
  let wallet: WalletSession;
  /** The state each grant must be in, by id. */
  const expected = new Map<string, (typeof STATUSES)[number]>();

  const offer = () => offerGrant(stack, owner.token, { agent_address: wallet.wallet.lower });
  const accept = (g: GrantView) => acceptGrant(stack, wallet.wallet, g);
  async function call(method: string, path: string, token: string, status: number): Promise<void> {
    const res = await stack.request(method, path, { token });
    assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
  }
  const revoke = (g: GrantView) => call('DELETE', `/v1/grants/${g.grant_id}`, owner.token, 204);
  const leave = (g: GrantView) => call('DELETE', `/v1/grants/${g.grant_id}`, wallet.token, 204);
  const decline = (g: GrantView) => call('POST', `/v1/grants/${g.grant_id}/decline`, wallet.token, 200);
  /** Its expiry a second ago (no grant can be offered for less than 60 s). */
  const expire = async (g: GrantView) => {
    await stack.db.query(`UPDATE grants SET expires_at = now() - interval '1 second' WHERE grant_id = $1`, [g.grant_id]);
  };

  before(async () => {
    [owner, wallet] = await Promise.all([walletLogin(stack), walletLogin(stack)]);
    // Every state, and every pair of recorded facts whose order of precedence decides the state.
    const cases: [(typeof STATUSES)[number], (g: GrantView) => Promise<unknown>][] = [
      ['pending', async () => undefined],
      ['active', accept],
      ['revoked', revoke],
      ['revoked', async (g) => (await accept(g), revoke(g))],
      ['revoked', async (g) => (await decline(g), revoke(g))],
      ['revoked', async (g) => (await accept(g), await leave(g), revoke(g))],
      ['revoked', async (g) => (await revoke(g), expire(g))],
      ['declined', decline],
      ['declined', async (g) => (await decline(g), expire(g))],
      ['left', async (g) => (await accept(g), leave(g))],
      ['left', async (g) => (await accept(g), await leave(g), expire(g))],
      ['expired', expire],
      ['expired', async (g) => (await accept(g), expire(g))],
    ];
    for (const [status, make] of cases) {
      const g = await offer();
      await make(g);
      expected.set(g.grant_id, status);
    }
  });

  for (const role of ['main', 'agent'] as const) {
    void test(`role=${role}: each status lists exactly the grants shown in it, and every state is there`, async () => {
      const token = role === 'main' ? owner.token : wallet.token;
      const shown = new Map((await grantsOf(token, `role=${role}`)).map((g) => [g.grant_id, g.status]));
      assert.deepEqual(shown, expected, 'a grant is shown in another state than the one it was put in');
      for (const status of STATUSES) {
        const filtered = await grantsOf(token, `role=${role}&status=${status}`);
        assert.ok(filtered.length > 0, `no grant is ${status}`);
        assert.deepEqual(
          filtered.map((g) => g.grant_id).sort(),
          [...expected]
            .filter(([, s]) => s === status)
            .map(([id]) => id)
            .sort(),
          `status=${status}`,
        );
        for (const g of filtered) assert.equal(g.status, status, `status=${status} listed a grant shown as ${g.status}`);
      }
      const every = await grantsOf(token, `role=${role}&status=${STATUSES.join(',')}`);
      assert.equal(every.length, expected.size, 'all six states are not the whole listing');
    });
  }
});
