import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { startStack, type TestStack } from './harness';
import {
  assertRefused,
  assertUnchanged,
  dbSnapshot,
  expectAllRefused as expectRefusals,
  spyWorkflowStarts,
  type RefusalCase,
  type WorkflowStartSpy,
} from './adversarial-probes';
import { expiredSession, forgedBearers, otherSpellings } from './adversarial-tokens';
import { type WalletSession, walletLogin } from './mint-client';

/**
 * GET /v1/session/me and POST /v1/session/logout against malformed, oversized, expired,
 * replayed, forged and concurrent bearers. A refused logout must not revoke anything: a forgery
 * carrying a victim's jti cannot log the victim out.
 */

let stack: TestStack;
let tee: TeeKeyPair;
let starts: WorkflowStartSpy;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem } });
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const nowS = () => Math.floor(Date.now() / 1000);
const ROUTES = [
  { method: 'GET', path: '/v1/session/me' },
  { method: 'POST', path: '/v1/session/logout' },
] as const;

const expectAllRefused = (cases: RefusalCase[]) => expectRefusals({ stack, starts }, cases);

/** Each route with each spelling: a 401 that names the spelling. */
function spellingRefusals(routes: readonly { method: string; path: string }[], spellings: string[]): RefusalCase[] {
  return routes.flatMap((r) =>
    spellings.map((token, i) => ({ ...r, name: `spelling ${i + 1}`, token, status: 401, error: 'unauthorized', message: /not canonical base64url/ })),
  );
}

async function isRevoked(token: string): Promise<boolean> {
  const jti = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { jti: string };
  const r = await stack.db.query<{ revoked: boolean }>('SELECT revoked_at IS NOT NULL AS revoked FROM sessions WHERE jti = $1', [jti.jti]);
  assert.equal(r.rowCount, 1, 'no session row');
  return r.rows[0]?.revoked ?? false;
}

async function me(token: string): Promise<number> {
  return (await stack.request('GET', '/v1/session/me', { token })).status;
}

void describe('session: malformed and oversized bearers and bodies', () => {
  void test('malformed Authorization headers → 401 on /me and /logout; nothing revoked', async () => {
    const victim: WalletSession = await walletLogin(stack);
    const [h, p, s] = victim.token.split('.');
    const headers: [string, string, RegExp][] = [
      ['empty', '', /missing/],
      ['scheme only', 'Bearer', /malformed/],
      ['Basic', `Basic ${Buffer.from('a:b').toString('base64')}`, /malformed/],
      ['two spaces', `Bearer  ${victim.token}`, /malformed/],
      ['trailing junk', `Bearer ${victim.token} x`, /malformed/],
      ['two segments', `Bearer ${h}.${p}`, /malformed/],
      ['five segments (JWE shape)', `Bearer ${h}.${p}.${s}.${s}.${s}`, /malformed/],
      ['a tab inside', `Bearer ${h}.${p}\t.${s}`, /malformed/],
      ['header not JSON', `Bearer ${Buffer.from('not json').toString('base64url')}.${p}.${s}`, /not a JWT/],
      ['header alg an object', `Bearer ${Buffer.from('{"alg":{"x":1}}').toString('base64url')}.${p}.${s}`, /unsupported token algorithm/],
      ['header without alg', `Bearer ${Buffer.from('{"typ":"at+jwt"}').toString('base64url')}.${p}.${s}`, /unsupported token algorithm \(none\)/],
      ['9 KB', `Bearer ${'a'.repeat(9000)}.${p}.${s}`, /too long/],
    ];
    await expectAllRefused(
      ROUTES.flatMap((r) =>
        headers.map(([name, authorization, message]): RefusalCase => ({
          ...r,
          name,
          headers: authorization ? { authorization } : {},
          status: 401,
          error: 'unauthorized',
          message,
        })),
      ),
    );
    assert.equal(await isRevoked(victim.token), false);
    assert.equal(await me(victim.token), 200);
  });

  void test('logout with a malformed or oversized body → 4xx and the session stays live', async () => {
    const session = await walletLogin(stack);
    const path = '/v1/session/logout';
    await expectAllRefused([
      { name: 'malformed JSON', method: 'POST', path, token: session.token, body: '{"all":', status: 400, error: 'bad_request', message: /JSON/i },
      { name: '__proto__', method: 'POST', path, token: session.token, body: '{"__proto__":{"x":1}}', status: 400, error: 'bad_request' },
      { name: 'a 1 MB body', method: 'POST', path, token: session.token, body: { pad: 'x'.repeat(1024 * 1024) }, status: 413, error: 'payload_too_large' },
      { name: 'a 20 KB body', method: 'POST', path, token: session.token, body: { pad: 'x'.repeat(20 * 1024) }, status: 413, error: 'payload_too_large' },
    ]);
    assert.equal(await isRevoked(session.token), false);
    assert.equal(await me(session.token), 200);
  });
});

void describe('session: expired and forged bearers', () => {
  void test('an expired session (broker-signed, row live) → 401 on /me and /logout; its row is not touched', async () => {
    const session = await walletLogin(stack);
    const expired = await expiredSession(stack, { omniAccount: session.omni_account, wallet: session.wallet.lower, ageSeconds: 61, ttlSeconds: 60 });
    await expectAllRefused(
      ROUTES.map((r) => ({ ...r, name: 'expired a second ago', token: expired, status: 401, error: 'unauthorized', message: /token expired/ })),
    );
    assert.equal(await isRevoked(expired), false);
    // Control: the same construction one minute younger is accepted, so only exp refused it.
    const fresh = await expiredSession(stack, { omniAccount: session.omni_account, wallet: session.wallet.lower, ageSeconds: 1, ttlSeconds: 60 });
    assert.equal(await me(fresh), 200);
  });

  void test('forgeries and look-alikes → 401; a forgery carrying the victim’s jti cannot log the victim out', async () => {
    const victim = await walletLogin(stack);
    const teeId = signTeeJwt(tee.privateKey, teeClaims(victim.omni_account, 'id', 'agentkeys', nowS()));
    const teeWrongAud = signTeeJwt(tee.privateKey, teeClaims(victim.omni_account, 'access', 'wildmeta', nowS()));
    const bearers = [
      ...(await forgedBearers(stack, victim.token)),
      { name: 'a TEE id token', token: teeId, message: /typ "id"/ },
      { name: 'a TEE access token for another client', token: teeWrongAud, message: /TEE token refused/ },
    ];
    await expectAllRefused(
      ROUTES.flatMap((r) => bearers.map((b) => ({ ...r, name: b.name, token: b.token, status: 401, error: 'unauthorized', message: b.message }))),
    );
    assert.equal(await isRevoked(victim.token), false);
    assert.equal(await me(victim.token), 200);
  });
});

void describe('session: replayed', () => {
  void test('logout twice: 204 then 401; /me after logout 401; revoked_at is not moved by the replay', async () => {
    const session = await walletLogin(stack);
    const other = await walletLogin(stack, session.wallet);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: session.token })).status, 204);
    assert.equal(await isRevoked(session.token), true);
    assert.equal(await logoutRows(session.omni_account), 1, 'the logout is audited');
    await expectAllRefused(
      ROUTES.map((r) => ({ ...r, name: 'after logout', token: session.token, status: 401, error: 'unauthorized', message: /logged out/ })),
    );
    // Only that session: another session of the same account is still live.
    assert.equal(await me(other.token), 200);
    assert.equal(await isRevoked(other.token), false);
  });

  void test('a TEE access token logs out: 204, recorded by digest until its exp, refused afterwards everywhere; another TEE token of the account still works', async () => {
    const session = await walletLogin(stack);
    const teeAccess = signTeeJwt(tee.privateKey, teeClaims(session.omni_account, 'access', 'agentkeys', nowS()));
    const otherTee = signTeeJwt(tee.privateKey, teeClaims(session.omni_account, 'access', 'agentkeys', nowS() - 5));
    assert.equal(await me(teeAccess), 200);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: teeAccess })).status, 204);
    const rows = await stack.db.query<{ omni_account: string; exp: number }>(
      'SELECT omni_account, extract(epoch FROM expires_at)::int AS exp FROM revoked_tee_tokens WHERE omni_account = $1',
      [session.omni_account],
    );
    const claims = JSON.parse(Buffer.from(teeAccess.split('.')[1] ?? '', 'base64url').toString()) as { exp: number };
    assert.deepEqual(rows.rows, [{ omni_account: session.omni_account, exp: claims.exp }]);
    const dump = await stack.db.query("SELECT string_agg(t::text, '|') AS all FROM revoked_tee_tokens t");
    assert.doesNotMatch(JSON.stringify(dump.rows), new RegExp(teeAccess.split('.')[2] ?? 'x'), 'the token itself is not stored');
    assert.equal(await logoutRows(session.omni_account), 1, 'the logout is audited');
    // Refused afterwards on every route that takes it: /me, logout again, a mint, the TEE callback.
    await expectAllRefused([
      ...ROUTES.map((r) => ({ ...r, name: 'logged-out TEE token', token: teeAccess, status: 401, error: 'unauthorized', message: /logged out/ })),
      {
        name: 'mint with a logged-out TEE token',
        method: 'POST',
        path: '/v1/mint-oidc-jwt',
        token: teeAccess,
        status: 401,
        error: 'unauthorized',
        message: /logged out/,
      },
    ]);
    const callback = await stack.request('POST', '/v3/account/add_wallet', { token: teeAccess });
    assert.equal(callback.status, 401, callback.text);
    assert.match((callback.body as { message: string }).message, /logged out/);
    assert.equal(await me(otherTee), 200, 'only that token');
    assert.equal(await me(session.token), 200, 'the broker session is untouched');
  });

  void test('every other spelling of a logged-out TEE access token (its 15 signature endings) → 401 on /me, logout, both mints and post_heima_login; nothing changed', async () => {
    const session = await walletLogin(stack);
    const teeAccess = signTeeJwt(tee.privateKey, teeClaims(session.omni_account, 'access', 'agentkeys', nowS()));
    const spellings = otherSpellings(teeAccess);
    assert.equal(spellings.length, 15, 'a 256-byte signature leaves 4 unused bits: 16 spellings in all');
    assert.equal(await me(teeAccess), 200);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: teeAccess })).status, 204);
    await expectAllRefused(
      spellingRefusals([...ROUTES, { method: 'POST', path: '/v1/mint-oidc-jwt' }, { method: 'POST', path: '/v1/mint-aws-creds' }], spellings),
    );
    // The TEE callback answers in its envelope; the same bearers, the body it would accept from this token.
    const body = { userId: { type: 'evm', value: session.wallet.lower }, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true };
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const token of [teeAccess, ...spellings]) {
      const res = await stack.request('POST', '/v3/account/post_heima_login', { token, body });
      assert.equal(res.status, 401, res.text);
      assert.deepEqual({ ...(res.body as object), message: undefined }, { code: 40100, message: undefined, data: null }, res.text);
      assert.match((res.body as { message: string }).message, token === teeAccess ? /logged out/ : /not canonical base64url/);
    }
    await assertUnchanged(stack.db, before, 'post_heima_login with a logged-out token');
    assert.equal(starts.count(), started, 'a refused callback started a workflow');
  });

  void test('other spellings of a live TEE token and of a live session → 401 before anything is read; a logout under one records nothing', async () => {
    const session = await walletLogin(stack);
    const teeAccess = signTeeJwt(tee.privateKey, teeClaims(session.omni_account, 'access', 'agentkeys', nowS()));
    const spellings = [...otherSpellings(teeAccess), ...otherSpellings(session.token)];
    assert.equal(spellings.length, 30, '15 for the RS256 token, 15 for the ES256 session (64-byte signature)');
    await expectAllRefused(spellingRefusals(ROUTES, spellings));
    // Padding, the standard alphabet, a dangling character: refused as well, on both kinds of token.
    const [h, p, sig] = teeAccess.split('.') as [string, string, string];
    const variants: [string, string][] = [
      ['padded signature', `${h}.${p}.${sig}==`],
      ['padded payload', `${h}.${p}=.${sig}`],
      ["'+' and '/' for '-' and '_'", `${h}.${p}.${sig.replace(/-/g, '+').replace(/_/g, '/')}`],
      ['a dangling character (length 1 mod 4)', `${h}.${p}.${sig}AAA`],
      ['a dangling character on the session', `${session.token}AAA`],
    ];
    await expectAllRefused(
      variants
        .filter(([, token]) => token !== teeAccess)
        .map(([name, token]) => ({
          method: 'GET',
          path: '/v1/session/me',
          name,
          token,
          status: 401,
          error: 'unauthorized',
          message: /malformed|not canonical base64url/,
        })),
    );
    assert.equal(await me(teeAccess), 200, 'the token as issued still works');
    assert.equal(await me(session.token), 200);
    assert.equal(await isRevoked(session.token), false);
  });

  void test('10 concurrent logouts of one TEE token: all 204 or 401, one record, one audit row', async () => {
    const session = await walletLogin(stack);
    const teeAccess = signTeeJwt(tee.privateKey, teeClaims(session.omni_account, 'access', 'agentkeys', nowS()));
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('POST', '/v1/session/logout', { token: teeAccess })));
    for (const r of results) if (r.status !== 204) assertRefused(r, 401, 'unauthorized', /logged out/);
    assert.ok(results.some((r) => r.status === 204));
    const rows = await stack.db.query('SELECT 1 FROM revoked_tee_tokens WHERE omni_account = $1', [session.omni_account]);
    assert.equal(rows.rowCount, 1);
    assert.equal(await logoutRows(session.omni_account), 1);
    assert.equal(await me(teeAccess), 401);
  });
});

async function logoutRows(omniAccount: string): Promise<number> {
  const r = await stack.db.query(`SELECT 1 FROM audit_log WHERE event = 'session.logout' AND omni_account = $1`, [omniAccount]);
  return r.rowCount ?? 0;
}

void describe('session: concurrent', () => {
  void test('10 concurrent logouts of one session: each 204 or 401, at least one 204, the session revoked once and refused after', async () => {
    const session = await walletLogin(stack);
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('POST', '/v1/session/logout', { token: session.token })));
    for (const r of results) if (r.status !== 204) assertRefused(r, 401, 'unauthorized', /logged out/);
    assert.ok(
      results.some((r) => r.status === 204),
      results.map((r) => r.status).join(','),
    );
    assert.equal(await isRevoked(session.token), true);
    const revokedAt = await stack.db.query('SELECT revoked_at FROM sessions WHERE omni_account = $1 AND revoked_at IS NOT NULL', [session.omni_account]);
    assert.equal(revokedAt.rowCount, 1);
    assert.equal(await logoutRows(session.omni_account), 1, 'one audit row however many logouts raced');
    assert.equal(await me(session.token), 401);
  });

  void test('/me and logouts of 10 sessions of one account at once: every session revoked, nothing else', async () => {
    const first = await walletLogin(stack);
    const sessions = [first, ...(await Promise.all(Array.from({ length: 9 }, () => walletLogin(stack, first.wallet))))];
    const keeper = await walletLogin(stack, first.wallet);
    const results = await Promise.all([
      ...sessions.map((s) => stack.request('POST', '/v1/session/logout', { token: s.token })),
      ...Array.from({ length: 10 }, () => stack.request('GET', '/v1/session/me', { token: keeper.token })),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      [...Array.from({ length: 10 }, () => 204), ...Array.from({ length: 10 }, () => 200)],
    );
    for (const r of results.slice(10)) assert.equal((r.body as { omni_account: string }).omni_account, first.omni_account);
    for (const s of sessions) assert.equal(await isRevoked(s.token), true);
    assert.equal(await isRevoked(keeper.token), false);
  });
});
