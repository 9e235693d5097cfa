import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { verifyAuditChain } from '../db/audit-query';
import { deriveOmniAccount } from '../lib/omni';
import { REAUTH_SECONDS } from '../services/sessions';
import { PASSKEY_CEREMONY_ID_PREFIX } from '../workflows/passkey-ceremony.definitions';
import { spyWorkflowStarts } from './adversarial-probes';
import { ageLogins } from './approval-client';
import type { LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { walletLogin } from './mint-client';
import { passkeyCounts, SoftAuthenticator, type CeremonyOptions, type CreationOptions, type Issued, type RequestOptions } from './passkey-client';

const TTL_SECONDS = 5; // the configuration's minimum
/** How long after its expires_at second a challenge is surely gone: the ceremony's timer fired and its run closed. */
const EXPIRY_MARGIN_MS = 1500;
let stack: TestStack;
let origin: string;
let tee: TeeKeyPair;
/** A login challenge of a signed-up authenticator, taken before the first test: the expiry test's (the last), which so waits for no timer of its own. */
let early: { a: SoftAuthenticator; o: Issued<RequestOptions>; answeredAt: number };
before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      BROKER_PASSKEY_CHALLENGE_TTL_SECONDS: String(TTL_SECONDS),
      BROKER_PASSKEY_ORIGINS: 'https://app.example.test',
      BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem,
    },
  });
  origin = new URL(stack.url).origin;
  const a = new SoftAuthenticator();
  await signUp(a);
  const o = await loginOptions();
  early = { a, o, answeredAt: Date.now() / 1000 };
});
after(async () => {
  await stack?.stop();
});

async function ok<T>(method: string, path: string, status: number, opts: { body?: unknown; token?: string } = {}): Promise<T> {
  const res = await stack.request(method, path, opts);
  assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
  return res.body as T;
}

/** Sends a request that must be refused with `status`/`error` and must change no row. */
async function refused(path: string, body: unknown, status: number, error: string, message?: RegExp, token?: string) {
  const before = await passkeyCounts(stack.db);
  const res = await stack.request('POST', path, { body, ...(token ? { token } : {}) });
  assert.equal(res.status, status, res.text);
  assert.equal((res.body as { error: string }).error, error, res.text);
  if (message) assert.match((res.body as { message: string }).message, message);
  assert.deepEqual(await passkeyCounts(stack.db), before, 'a refused request wrote rows');
}

const signupOptions = () => ok<Issued<CreationOptions>>('POST', '/v1/session/passkey/options', 200, { body: { mode: 'signup' } });
const loginOptions = () => ok<Issued<RequestOptions>>('POST', '/v1/session/passkey/options', 200, { body: {} });
const registrationOptions = (token: string) => ok<Issued<CreationOptions>>('POST', '/v1/passkeys/registration/options', 200, { token });

async function signUp(a: SoftAuthenticator, c: Partial<CeremonyOptions> = {}): Promise<{ session: LoginSessionBody; handle: string }> {
  const o = await signupOptions();
  const session = await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, {
    body: { response: a.register(o.options, { origin, ...c }), name: 'Phone' },
  });
  return { session, handle: o.options.user.id };
}

async function logIn(a: SoftAuthenticator, c: Partial<CeremonyOptions> & { counter?: number } = {}): Promise<LoginSessionBody> {
  const o = await loginOptions();
  return ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: a.assert(o.options, { origin, ...c }) } });
}

/** Registers a new passkey of `a` on the account of `token` (a login at most 300 s old); answers its id. */
async function addPasskey(token: string, a: SoftAuthenticator): Promise<string> {
  const o = await registrationOptions(token);
  return (await ok<{ id: string }>('POST', '/v1/passkeys/registration', 201, { token, body: { response: a.register(o.options, { origin }) } })).id;
}

const passkeyIds = async (omniAccount: string): Promise<string[]> =>
  (
    await stack.db.query<{ credential_id: string }>('SELECT credential_id FROM passkeys WHERE omni_account = $1 ORDER BY credential_id', [omniAccount])
  ).rows.map((r) => r.credential_id);

void describe('passkeys: sign-up, login, registration on an account', () => {
  void test('sign-up with a passkey alone: a new account whose identity is the user handle, as the Heima TEE derives it; one session and audit rows', async () => {
    const a = new SoftAuthenticator();
    const before = await passkeyCounts(stack.db);
    const o = await signupOptions();
    assert.equal(o.options.rp.id, '127.0.0.1');
    assert.equal(
      (o.options as unknown as { authenticatorSelection: { userVerification: string; residentKey: string } }).authenticatorSelection.userVerification,
      'required',
    );
    assert.equal((o.options as unknown as { authenticatorSelection: { residentKey: string } }).authenticatorSelection.residentKey, 'required');
    const session = await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: a.register(o.options, { origin }), name: 'Phone' } });
    const handle = o.options.user.id;
    assert.match(handle, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(session.identity, { type: 'passkey', value: handle });
    assert.equal(session.omni_account, deriveOmniAccount('agentkeys', { type: 'passkey', value: handle }));
    assert.equal(decodeJwt(session.token).amr, 'passkey');
    assert.deepEqual(await passkeyCounts(stack.db), {
      ...before,
      users: before.users! + 1,
      sessions: before.sessions! + 1,
      used_signatures: before.used_signatures! + 1,
      audit_log: before.audit_log! + 2,
      passkeys: before.passkeys! + 1,
    });
    const events = await stack.db.query<{ event: string }>('SELECT event FROM audit_log WHERE omni_account = $1 ORDER BY seq', [session.omni_account]);
    assert.deepEqual(
      events.rows.map((r) => r.event),
      ['passkey.registered', 'login.passkey'],
    );
    const list = await ok<{ passkeys: { id: string; name: string; backup_eligible: boolean; backed_up: boolean }[] }>('GET', '/v1/passkeys', 200, {
      token: session.token,
    });
    assert.equal(list.passkeys.length, 1);
    assert.equal(list.passkeys[0]?.name, 'Phone');
    assert.equal(list.passkeys[0]?.backup_eligible, true);
    assert.equal((await verifyAuditChain(stack.db)).ok, true);
  });

  void test('login with a discoverable passkey signs in its account, stores the counter, and each challenge is used once (409 on reuse)', async () => {
    const a = new SoftAuthenticator();
    const { session: first } = await signUp(a);
    const o = await loginOptions();
    assert.equal(o.options.userVerification, 'required');
    assert.deepEqual(o.options.allowCredentials ?? [], []);
    const response = a.assert(o.options, { origin });
    const again = await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response } });
    assert.equal(again.omni_account, first.omni_account);
    const row = await stack.db.query<{ counter: string; last_used_at: Date | null }>('SELECT counter, last_used_at FROM passkeys WHERE credential_id = $1', [
      response.id,
    ]);
    assert.equal(row.rows[0]?.counter, '1');
    assert.ok(row.rows[0]?.last_used_at);
    await refused('/v1/session/passkey', { response }, 409, 'conflict', /already been used/);
  });

  void test('a signed-in account registers passkeys (one user handle for all), lists them, and signs in with one as its own identity', async () => {
    const wallet = await walletLogin(stack);
    const a = new SoftAuthenticator();
    const o1 = await registrationOptions(wallet.token);
    const p1 = await ok<{ id: string; name: string }>('POST', '/v1/passkeys/registration', 201, {
      token: wallet.token,
      body: { response: a.register(o1.options, { origin }), name: 'Laptop' },
    });
    assert.equal(p1.name, 'Laptop');
    const o2 = await registrationOptions(wallet.token);
    assert.equal(o2.options.user.id, o1.options.user.id, 'the account keeps one user handle');
    assert.deepEqual(
      o2.options.excludeCredentials?.map((c) => c.id),
      [p1.id],
    );
    const b = new SoftAuthenticator({ backupEligible: false });
    await ok('POST', '/v1/passkeys/registration', 201, {
      token: wallet.token,
      body: { response: b.register(o2.options, { origin: 'https://app.example.test' }) },
    });
    const list = await ok<{ passkeys: { id: string; backup_eligible: boolean }[] }>('GET', '/v1/passkeys', 200, { token: wallet.token });
    assert.equal(list.passkeys.length, 2);
    const session = await logIn(b);
    assert.equal(session.omni_account, wallet.omni_account);
    assert.deepEqual(session.identity, { type: 'evm', value: wallet.wallet.lower });
    assert.equal(decodeJwt(session.token).amr, 'passkey');
  });

  void test('an authenticator whose counter is always 0 signs in again and again (both sides 0: no counter to compare)', async () => {
    const a = new SoftAuthenticator({ counterStep: 0 });
    const { session } = await signUp(a);
    for (let i = 0; i < 2; i++) assert.equal((await logIn(a)).omni_account, session.omni_account);
  });
});

void describe('passkeys: refusals (a clear 4xx and nothing changed)', () => {
  void test('login: unknown credential, counter regression, user not verified, foreign origin, wrong rp id, wrong ceremony type, user handle, backup eligibility', async () => {
    const stranger = new SoftAuthenticator();
    stranger.register({ challenge: 'x', rp: { id: '127.0.0.1' }, user: { id: 'AAAA' } }, { origin });
    await refused('/v1/session/passkey', { response: stranger.assert((await loginOptions()).options, { origin }) }, 401, 'unauthorized', /not registered/);

    const a = new SoftAuthenticator();
    await signUp(a);
    await logIn(a, { counter: 5 });
    await refused('/v1/session/passkey', { response: a.assert((await loginOptions()).options, { origin, counter: 3 }) }, 401, 'unauthorized', /counter/i);
    await refused(
      '/v1/session/passkey',
      { response: a.assert((await loginOptions()).options, { origin, userVerified: false }) },
      401,
      'unauthorized',
      /verif/i,
    );
    await refused(
      '/v1/session/passkey',
      { response: a.assert((await loginOptions()).options, { origin: 'https://evil.example' }) },
      401,
      'unauthorized',
      /origin/i,
    );
    await refused(
      '/v1/session/passkey',
      { response: a.assert((await loginOptions()).options, { origin, rpId: 'evil.example' }) },
      401,
      'unauthorized',
      /rp ?id/i,
    );
    await refused('/v1/session/passkey', { response: a.assert((await loginOptions()).options, { origin, type: 'webauthn.create' }) }, 401, 'unauthorized');
    const good = a.assert((await loginOptions()).options, { origin });
    await refused('/v1/session/passkey', { response: { ...good, response: { ...good.response, userHandle: undefined } } }, 401, 'unauthorized', /user handle/);
    const other = a.assert((await loginOptions()).options, { origin });
    await refused(
      '/v1/session/passkey',
      { response: { ...other, response: { ...other.response, userHandle: 'c29tZW9uZS1lbHNl' } } },
      401,
      'unauthorized',
      /user handle/,
    );
    a.backupEligible = false;
    await refused('/v1/session/passkey', { response: a.assert((await loginOptions()).options, { origin }) }, 401, 'unauthorized', /backup eligibility/);
    a.backupEligible = true;
    // Still usable after all that.
    await logIn(a, { counter: 60 });
  });

  void test('registration: foreign origin, wrong rp id, user not verified, a credential registered to another account', async () => {
    const owner = await walletLogin(stack);
    const other = await walletLogin(stack);
    const a = new SoftAuthenticator();
    const reg = async (
      token: string,
      c: Partial<CeremonyOptions> & { credential?: (typeof a.credentials)[number] },
      status: number,
      error: string,
      message?: RegExp,
    ) =>
      refused(
        '/v1/passkeys/registration',
        { response: a.register((await registrationOptions(token)).options, { origin, ...c }) },
        status,
        error,
        message,
        token,
      );
    await reg(owner.token, { origin: 'https://evil.example' }, 401, 'unauthorized', /origin/i);
    await reg(owner.token, { rpId: 'evil.example' }, 401, 'unauthorized', /rp ?id/i);
    await reg(owner.token, { userVerified: false }, 401, 'unauthorized', /verif/i);
    const o = await registrationOptions(owner.token);
    const response = a.register(o.options, { origin });
    await ok('POST', '/v1/passkeys/registration', 201, { token: owner.token, body: { response } });
    const credential = a.credentials.at(-1);
    assert.ok(credential);
    const ownerIds = await passkeyIds(owner.omni_account);
    assert.deepEqual(ownerIds, [response.id]);
    // The stored credential (its account, user handle and public key) as the owner registered it.
    const stored = async () =>
      (
        await stack.db.query<Record<string, unknown>>(
          'SELECT omni_account, user_handle, public_key, counter, created_at FROM passkeys WHERE credential_id = $1',
          [response.id],
        )
      ).rows;
    const ownerRow = await stored();
    await reg(other.token, { credential }, 409, 'conflict', /another account/);
    await reg(owner.token, { credential }, 409, 'conflict', /already registered/);
    // A sign-up cannot take it either.
    await refused('/v1/session/passkey', { response: a.register((await signupOptions()).options, { origin, credential }) }, 409, 'conflict');
    assert.deepEqual(await passkeyIds(owner.omni_account), ownerIds, "the owner's passkeys changed");
    assert.deepEqual(await passkeyIds(other.omni_account), [], 'the other account got a passkey');
    assert.deepEqual(await stored(), ownerRow, 'the credential was moved or rewritten');
    // The passkey (the authenticator's newest credential) still signs in to its owner's account.
    const session = await logIn(a);
    assert.equal(session.omni_account, owner.omni_account);
    assert.deepEqual(session.identity, { type: 'evm', value: owner.wallet.lower });
  });

  void test("a registration challenge answered with another account's session is refused (403) and stays usable", async () => {
    const owner = await walletLogin(stack);
    const other = await walletLogin(stack);
    const a = new SoftAuthenticator();
    const o = await registrationOptions(owner.token);
    const response = a.register(o.options, { origin });
    await refused('/v1/passkeys/registration', { response }, 403, 'forbidden', /another account/, other.token);
    await refused('/v1/session/passkey', { response }, 400, 'bad_request', /adding a passkey/);
    await ok('POST', '/v1/passkeys/registration', 201, { token: owner.token, body: { response } });
    await refused('/v1/passkeys/registration', { response }, 409, 'conflict', /already been used/, owner.token);
  });

  void test("a stranger deleting someone else's passkey gets 404 and nothing is removed; the owner removes it and it no longer signs in", async () => {
    const a = new SoftAuthenticator();
    const { session } = await signUp(a);
    // A second passkey first: the account's identity is a passkey, and its last one is never removed.
    await addPasskey(session.token, new SoftAuthenticator());
    const stranger = await walletLogin(stack);
    const [mine] = (await ok<{ passkeys: { id: string }[] }>('GET', '/v1/passkeys', 200, { token: session.token })).passkeys;
    assert.ok(mine);
    const before = await passkeyCounts(stack.db);
    const res = await stack.request('DELETE', `/v1/passkeys/${mine.id}`, { token: stranger.token });
    assert.equal(res.status, 404, res.text);
    assert.deepEqual(await passkeyCounts(stack.db), before);
    const unauth = await stack.request('GET', '/v1/passkeys');
    assert.equal(unauth.status, 401);
    const del = await stack.request('DELETE', `/v1/passkeys/${mine.id}`, { token: session.token });
    assert.equal(del.status, 204, del.text);
    const removed = await stack.db.query<{ event: string }>("SELECT event FROM audit_log WHERE omni_account = $1 AND event = 'passkey.removed'", [
      session.omni_account,
    ]);
    assert.equal(removed.rowCount, 1);
    await refused('/v1/session/passkey', { response: a.assert((await loginOptions()).options, { origin }) }, 401, 'unauthorized', /not registered/);
  });
});

void describe('passkeys: a recent login adds one (the freshness approvals ask for)', () => {
  void test('registration options for a login older than 300 s: 401 reauthenticate, nothing started or written; 290 s old and a new login are served', async () => {
    const owner = await walletLogin(stack);
    await ageLogins(stack, owner.omni_account, REAUTH_SECONDS + 10);
    const starts = spyWorkflowStarts(stack.temporal);
    try {
      const before = await passkeyCounts(stack.db);
      const res = await stack.request('POST', '/v1/passkeys/registration/options', { token: owner.token });
      assert.equal(res.status, 401, res.text);
      const body = res.body as { error: string; message: string; reauthenticate?: unknown };
      assert.equal(body.error, 'unauthorized');
      assert.equal(body.reauthenticate, true, res.text);
      assert.match(body.message, /adding a passkey needs a login at most 300 s old: sign in again, then add it/);
      assert.equal(starts.count(), 0, 'a ceremony was started');
      assert.deepEqual(await passkeyCounts(stack.db), before, 'a refused request wrote rows');
      // The session itself still works: only this step wants a recent login.
      assert.equal((await stack.request('GET', '/v1/passkeys', { token: owner.token })).status, 200);
    } finally {
      starts.restore();
    }

    await ageLogins(stack, owner.omni_account, REAUTH_SECONDS - 10);
    const a = new SoftAuthenticator();
    const o = await registrationOptions(owner.token);
    // The check is at the options: a challenge issued to a recent login may be answered within its window (5 s here).
    await ageLogins(stack, owner.omni_account, REAUTH_SECONDS + 10);
    await ok('POST', '/v1/passkeys/registration', 201, { token: owner.token, body: { response: a.register(o.options, { origin }) } });

    // Signing in again (any method) makes a recent login of the same account.
    const again = await walletLogin(stack, owner.wallet);
    assert.equal(again.omni_account, owner.omni_account);
    const b = new SoftAuthenticator();
    const o2 = await registrationOptions(again.token);
    await ok('POST', '/v1/passkeys/registration', 201, { token: again.token, body: { response: b.register(o2.options, { origin }) } });
  });
});

void describe('passkeys: removing one needs a recent login, and never takes the last of an account that signs in only with passkeys', () => {
  /** A DELETE that must be refused with `status`/`error` (and `message`), changing no row. */
  async function removalRefused(token: string, id: string, status: number, error: string, message: RegExp): Promise<{ reauthenticate?: unknown }> {
    const before = await passkeyCounts(stack.db);
    const res = await stack.request('DELETE', `/v1/passkeys/${id}`, { token });
    assert.equal(res.status, status, res.text);
    const body = res.body as { error: string; message: string; reauthenticate?: unknown };
    assert.equal(body.error, error, res.text);
    assert.match(body.message, message);
    assert.deepEqual(await passkeyCounts(stack.db), before, 'a refused removal changed rows');
    return body;
  }

  void test('a login older than 300 s: 401 reauthenticate before the passkey is looked up, nothing removed; signed in again, it is removed', async () => {
    const a = new SoftAuthenticator();
    const { session } = await signUp(a);
    const second = await addPasskey(session.token, new SoftAuthenticator());
    const ids = await passkeyIds(session.omni_account);
    await ageLogins(stack, session.omni_account, REAUTH_SECONDS + 10);
    const stale = /removing a passkey needs a login at most 300 s old: sign in again, then remove it/;
    assert.equal((await removalRefused(session.token, second, 401, 'unauthorized', stale)).reauthenticate, true);
    // Before the passkey is looked up: an id this account does not have answers the same, not 404.
    assert.equal((await removalRefused(session.token, 'bm90LWEtcGFzc2tleS1vZi1vdXJz', 401, 'unauthorized', stale)).reauthenticate, true);
    assert.deepEqual(await passkeyIds(session.omni_account), ids);
    // The session itself still works: only this step wants a recent login.
    assert.equal((await stack.request('GET', '/v1/passkeys', { token: session.token })).status, 200);

    const again = await logIn(a);
    assert.equal(again.omni_account, session.omni_account);
    const res = await stack.request('DELETE', `/v1/passkeys/${second}`, { token: again.token });
    assert.equal(res.status, 204, res.text);
    assert.deepEqual(
      await passkeyIds(session.omni_account),
      ids.filter((id) => id !== second),
    );
  });

  void test('a TEE bearer is 403 (it cannot show when its login was), nothing removed', async () => {
    const owner = await walletLogin(stack);
    const id = await addPasskey(owner.token, new SoftAuthenticator());
    const token = signTeeJwt(tee.privateKey, teeClaims(owner.omni_account, 'access', 'agentkeys', Math.floor(Date.now() / 1000)));
    await removalRefused(token, id, 403, 'forbidden', /removing a passkey needs a broker session/);
    assert.deepEqual(await passkeyIds(owner.omni_account), [id]);
  });

  void test('the last passkey of an account whose identity is a passkey: 409 saying to add another first, and it still signs in', async () => {
    const a = new SoftAuthenticator();
    const { session } = await signUp(a);
    const [only] = await passkeyIds(session.omni_account);
    assert.ok(only);
    await removalRefused(
      session.token,
      only,
      409,
      'conflict',
      /^this is the last passkey of an account that signs in only with passkeys: add another passkey first, or the account can never sign in again$/,
    );
    assert.deepEqual(await passkeyIds(session.omni_account), [only]);
    assert.equal((await logIn(a)).omni_account, session.omni_account);
    // With another passkey added, the first goes; the one left is then the last.
    const b = new SoftAuthenticator();
    const second = await addPasskey(session.token, b);
    assert.equal((await stack.request('DELETE', `/v1/passkeys/${only}`, { token: session.token })).status, 204);
    await removalRefused(session.token, second, 409, 'conflict', /last passkey/);
    assert.equal((await logIn(b)).omni_account, session.omni_account);
  });

  void test('two removals racing for the last two passkeys of such an account: one 204, one 409, one passkey left', async () => {
    // Several accounts at once, so the two removals of each meet in the database more than once.
    const rounds = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const { session } = await signUp(new SoftAuthenticator());
        await addPasskey(session.token, new SoftAuthenticator());
        return { session, ids: await passkeyIds(session.omni_account) };
      }),
    );
    const answers = await Promise.all(
      rounds.map(({ session, ids }) => Promise.all(ids.map((id) => stack.request('DELETE', `/v1/passkeys/${id}`, { token: session.token })))),
    );
    for (const [i, { session, ids }] of rounds.entries()) {
      assert.equal(ids.length, 2);
      const statuses = (answers[i] ?? []).map((r) => r.status).sort();
      assert.deepEqual(statuses, [204, 409], (answers[i] ?? []).map((r) => r.text).join(' | '));
      const left = await passkeyIds(session.omni_account);
      assert.equal(left.length, 1, 'both passkeys were removed');
      const removed = await stack.db.query("SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'passkey.removed'", [session.omni_account]);
      assert.equal(removed.rowCount, 1);
    }
  });

  void test('an account whose identity is a wallet removes its last passkey: it still signs in with the wallet', async () => {
    const owner = await walletLogin(stack);
    const id = await addPasskey(owner.token, new SoftAuthenticator());
    const res = await stack.request('DELETE', `/v1/passkeys/${id}`, { token: owner.token });
    assert.equal(res.status, 204, res.text);
    assert.deepEqual(await passkeyIds(owner.omni_account), []);
    assert.equal((await walletLogin(stack, owner.wallet)).omni_account, owner.omni_account);
  });
});

void describe('passkeys: nesting', () => {
  /** The body's JSON text with `DEEP` (JSON.stringify cannot write it) where the marker string is. */
  const DEEP = '['.repeat(10_000) + ']'.repeat(10_000);
  const withDeep = (body: unknown): string => JSON.stringify(body).replace('"__deep__"', DEEP);
  const historyLength = async (requestId: string) =>
    (await stack.temporal.workflow.getHandle(PASSKEY_CEREMONY_ID_PREFIX + requestId).fetchHistory()).events?.length ?? 0;

  void test('a response nested 10,000 deep (under the body limit) is a 400 at both answer routes; nothing reaches the ceremony, whose challenge still works', async () => {
    const owner = await walletLogin(stack);
    const a = new SoftAuthenticator();
    const o = await registrationOptions(owner.token);
    const response = a.register(o.options, { origin });
    const events = await historyLength(o.request_id);
    const before = await passkeyCounts(stack.db);
    for (const deep of [
      { ...response, clientExtensionResults: { credProps: '__deep__' } },
      { ...response, response: { ...response.response, extra: '__deep__' } },
    ]) {
      const text = withDeep({ response: deep });
      assert.ok(text.length < 32 * 1024, `${text.length} bytes: under the passkey body limit`);
      const res = await stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: text });
      assert.equal(res.status, 400, res.text);
      assert.equal((res.body as { error: string }).error, 'bad_request', res.text);
      assert.match((res.body as { message: string }).message, /^body\.response: is nested deeper than 128 levels/);
    }
    assert.equal(await historyLength(o.request_id), events, 'the ceremony saw an Update');
    assert.deepEqual(await passkeyCounts(stack.db), before, 'a refused request wrote rows');
    await ok('POST', '/v1/passkeys/registration', 201, { token: owner.token, body: { response } });

    const s = await signupOptions();
    const signup = a.register(s.options, { origin });
    const signupEvents = await historyLength(s.request_id);
    const res = await stack.request('POST', '/v1/session/passkey', { body: withDeep({ response: { ...signup, clientExtensionResults: { x: '__deep__' } } }) });
    assert.equal(res.status, 400, res.text);
    assert.equal(await historyLength(s.request_id), signupEvents, 'the sign-up ceremony saw an Update');
    await ok('POST', '/v1/session/passkey', 200, { body: { response: signup } });
  });
});

void describe('passkeys: expiry', () => {
  // Last in this file: the challenge taken before the first test has had the whole file to expire.
  void test('an expired challenge is refused (410), and a response naming no challenge of ours is a 400', async () => {
    const { a, o, answeredAt } = early;
    assert.ok(o.expires_at - answeredAt <= TTL_SECONDS);
    const wait = o.expires_at * 1000 + EXPIRY_MARGIN_MS - Date.now();
    if (wait > 0) await delay(wait);
    await refused('/v1/session/passkey', { response: a.assert(o.options, { origin }) }, 410, 'expired');
    await refused('/v1/session/passkey', { response: a.assert({ challenge: 'not-ours' }, { origin }) }, 400, 'bad_request', /challenge/);
  });
});
