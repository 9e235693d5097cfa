import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VerifiedSessions } from '../api/plugins/auth';
import type { SessionClaims } from '../lib/session-token';

/**
 * The auth plugin's reuse of verified session tokens (api/plugins/auth.ts): a token verified once
 * is not verified again while fresh, but never outlives its exp, its reuse window or the cache's
 * size; a refusal is never kept. Logout still refuses a cached token
 * (test/adversarial-session.test.ts, "logout twice").
 */
const claims = (expSeconds: number, jti = 'j'): SessionClaims => ({ sub: 'omni', jti, exp: expSeconds, iat: expSeconds - 60, amr: 'wallet' });

function counting(answer: (token: string) => SessionClaims) {
  const calls: string[] = [];
  return {
    calls,
    check: async (token: string) => {
      calls.push(token);
      return answer(token);
    },
  };
}

void describe('verified session tokens are reused briefly, never past their expiry', () => {
  void test('a token verified once is answered from the cache; another token is verified', async () => {
    const cache = new VerifiedSessions();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const c = counting((t) => claims(exp, t));
    assert.equal((await cache.verify('a.b.c', c.check)).jti, 'a.b.c');
    assert.equal((await cache.verify('a.b.c', c.check)).jti, 'a.b.c');
    assert.equal((await cache.verify('d.e.f', c.check)).jti, 'd.e.f');
    assert.deepEqual(c.calls, ['a.b.c', 'd.e.f']);
  });

  void test('a refusal is not kept: the next use verifies again', async () => {
    const cache = new VerifiedSessions();
    let calls = 0;
    const refuse = async () => {
      calls++;
      throw new Error('invalid token');
    };
    await assert.rejects(cache.verify('x.y.z', refuse), /invalid token/);
    await assert.rejects(cache.verify('x.y.z', refuse), /invalid token/);
    assert.equal(calls, 2);
  });

  void test('a cached token whose exp has passed is verified again (and refused there)', async () => {
    const cache = new VerifiedSessions();
    // exp at the next whole second: cached now, expired within a second.
    const exp = Math.floor(Date.now() / 1000) + 1;
    let calls = 0;
    const check = async () => {
      calls++;
      if (exp * 1000 <= Date.now()) throw new Error('token expired');
      return claims(exp);
    };
    await cache.verify('a.b.c', check);
    await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 5));
    await assert.rejects(cache.verify('a.b.c', check), /token expired/);
    assert.equal(calls, 2);
  });

  void test('the reuse window and the size bound: past either, the token is verified again', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const c = counting(() => claims(exp));
    const short = new VerifiedSessions(20);
    await short.verify('a.b.c', c.check);
    await new Promise((r) => setTimeout(r, 30));
    await short.verify('a.b.c', c.check);
    assert.equal(c.calls.length, 2, 'verified again after the window');

    const small = new VerifiedSessions(60_000, 2);
    const d = counting(() => claims(exp));
    for (const t of ['t1', 't2', 't3', 't1']) await small.verify(t, d.check);
    assert.deepEqual(d.calls, ['t1', 't2', 't3', 't1'], 'the oldest entry was dropped for the third');
  });
});
