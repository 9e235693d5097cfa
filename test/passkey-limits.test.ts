/**
 * Passkey limits, over HTTP against real Temporal and Postgres: a sign-in whose counter was
 * recorded but whose login was not (the ceremony takes answers again) signs in only for the same
 * assertion sent again, never for one that merely names the challenge; and an account holds at
 * most MAX_PASSKEYS_PER_ACCOUNT passkeys, all of which its listing shows.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { MAX_PASSKEYS_PER_ACCOUNT } from '../services/passkeys';
import { spyWorkflowStarts } from './adversarial-probes';
import type { LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { withFailingAuditEvent } from './support/audit-faults';
import { walletLogin } from './mint-client';
import { FLAGS, passkeyCounts, SoftAuthenticator, type CreationOptions, type Issued, type RequestOptions } from './passkey-client';

let stack: TestStack;
let origin: string;
before(async () => {
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      // Long enough for a login that fails through all its attempts and the answers sent after it.
      BROKER_PASSKEY_CHALLENGE_TTL_SECONDS: '120',
      BROKER_PASSKEY_ORIGINS: 'https://app.example.test',
    },
  });
  origin = new URL(stack.url).origin;
});
after(async () => {
  await stack?.stop();
});

type Answer = { status: number; body: unknown; text: string };

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest();

async function ok<T>(method: string, path: string, status: number, opts: { body?: unknown; token?: string } = {}): Promise<T> {
  const res = await stack.request(method, path, opts);
  assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
  return res.body as T;
}

function assertRefused(res: Answer, status: number, error: string, message?: RegExp): void {
  assert.equal(res.status, status, res.text);
  assert.equal((res.body as { error: string }).error, error, res.text);
  if (message) assert.match((res.body as { message: string }).message, message);
}

/** Sends a request that must be refused with `status`/`error` and must change no row. */
async function refused(method: string, path: string, opts: { body?: unknown; token?: string }, status: number, error: string, message?: RegExp) {
  const before = await passkeyCounts(stack.db);
  assertRefused(await stack.request(method, path, opts), status, error, message);
  assert.deepEqual(await passkeyCounts(stack.db), before, 'a refused request wrote rows');
}

const signupOptions = () => ok<Issued<CreationOptions>>('POST', '/v1/session/passkey/options', 200, { body: { mode: 'signup' } });
const loginOptions = () => ok<Issued<RequestOptions>>('POST', '/v1/session/passkey/options', 200, { body: {} });
const registrationOptions = (token: string) => ok<Issued<CreationOptions>>('POST', '/v1/passkeys/registration/options', 200, { token });
const signIn = (response: unknown): Promise<Answer> => stack.request('POST', '/v1/session/passkey', { body: { response } });

async function signUp(a: SoftAuthenticator): Promise<LoginSessionBody> {
  const o = await signupOptions();
  return ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: a.register(o.options, { origin }) } });
}

const passkeyIds = async (omniAccount: string): Promise<string[]> =>
  (
    await stack.db.query<{ credential_id: string }>('SELECT credential_id FROM passkeys WHERE omni_account = $1 ORDER BY credential_id', [omniAccount])
  ).rows.map((r) => r.credential_id);

const storedUse = async (credentialId: string) =>
  (await stack.db.query<{ counter: string; last_challenge: string }>('SELECT counter, last_challenge FROM passkeys WHERE credential_id = $1', [credentialId]))
    .rows[0];

/**
 * A genuine sign-in of `a` with counter `counter` whose passkey check passed (the counter is
 * recorded) and whose login then could not be recorded: the ceremony answers audit_error and takes
 * answers again. Answers the challenge and the assertion that was sent.
 */
async function signInRecordedButNotLoggedIn(a: SoftAuthenticator, counter: number) {
  const o = await loginOptions();
  const genuine = a.assert(o.options, { origin, counter });
  const stored = Number((await storedUse(genuine.id))?.counter);
  const before = await passkeyCounts(stack.db);
  const res = await withFailingAuditEvent(stack.db, 'login.passkey', () => signIn(genuine));
  assertRefused(res, 500, 'audit_error', /try again/);
  const use = await storedUse(genuine.id);
  assert.equal(use?.counter, String(counter), 'the counter of the first answer is recorded');
  assert.equal(use?.last_challenge, sha256(o.options.challenge).toString('hex'));
  // Only the counter moved: no session, no used proof, no audit row.
  assert.deepEqual(await passkeyCounts(stack.db), { ...before, counters: before.counters! + counter - stored });
  return { o, genuine };
}

/**
 * An assertion made without the credential's private key: the challenge, credential id, user
 * handle, rp id hash and flags are all public or guessable; the signature is `signature`.
 */
function forged(challenge: string, credentialId: string, userHandle: string, counter: number, signature: Buffer) {
  const c = Buffer.alloc(4);
  c.writeUInt32BE(counter);
  const authData = Buffer.concat([sha256(stack.config.passkeyRpId), Buffer.from([FLAGS.UP | FLAGS.UV | FLAGS.BE | FLAGS.BS]), c]);
  const clientDataJSON = Buffer.from(JSON.stringify({ type: 'webauthn.get', challenge, origin, crossOrigin: false }));
  return {
    id: credentialId,
    rawId: credentialId,
    type: 'public-key' as const,
    response: {
      clientDataJSON: clientDataJSON.toString('base64url'),
      authenticatorData: authData.toString('base64url'),
      signature: signature.toString('base64url'),
      userHandle,
    },
    clientExtensionResults: {},
    authenticatorAttachment: 'platform',
  };
}

/** A well-formed ES256 signature over the assertion's bytes, by a key that is not the credential's. */
function signedByAnotherKey(assertion: ReturnType<typeof forged>): Buffer {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const data = Buffer.concat([
    Buffer.from(assertion.response.authenticatorData, 'base64url'),
    sha256(Buffer.from(assertion.response.clientDataJSON, 'base64url')),
  ]);
  return sign('sha256', data, privateKey);
}

void describe('passkeys: a sign-in answered again after its counter was recorded and its login was not', () => {
  let a: SoftAuthenticator;
  let owner: LoginSessionBody;
  before(async () => {
    a = new SoftAuthenticator();
    owner = await signUp(a);
    // A stored counter well above 0, so a forger has lower values to pick.
    assert.equal(
      (await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: a.assert((await loginOptions()).options, { origin, counter: 5 }) } }))
        .omni_account,
      owner.omni_account,
    );
  });

  void test('an assertion with a zeroed signature and a lower counter is refused (401), no session written', async () => {
    const { o, genuine } = await signInRecordedButNotLoggedIn(a, 10);
    const before = await passkeyCounts(stack.db);
    const res = await signIn(forged(o.options.challenge, genuine.id, genuine.response.userHandle, 1, Buffer.alloc(64)));
    assertRefused(res, 401, 'unauthorized');
    assert.deepEqual(await passkeyCounts(stack.db), before, 'the refusal wrote rows');
    // The ceremony is used up by the refusal: the genuine assertion now hears so.
    assertRefused(await signIn(genuine), 409, 'conflict', /already been used/);
  });

  void test('an assertion signed by another key, counter equal to the stored one, is refused (401)', async () => {
    const { o, genuine } = await signInRecordedButNotLoggedIn(a, 11);
    const forgery = forged(o.options.challenge, genuine.id, genuine.response.userHandle, 11, Buffer.alloc(0));
    forgery.response.signature = signedByAnotherKey(forgery).toString('base64url');
    const before = await passkeyCounts(stack.db);
    assertRefused(await signIn(forgery), 401, 'unauthorized', /did not verify/);
    assert.deepEqual(await passkeyCounts(stack.db), before, 'the refusal wrote rows');
  });

  void test('another genuine assertion over the same challenge with another counter is refused (401): only the same assertion is a retry', async () => {
    const { o, genuine } = await signInRecordedButNotLoggedIn(a, 20);
    const before = await passkeyCounts(stack.db);
    assertRefused(await signIn(a.assert(o.options, { origin, counter: 19 })), 401, 'unauthorized', /counter/);
    assert.deepEqual(await passkeyCounts(stack.db), before, 'the refusal wrote rows');
    assert.equal((await storedUse(genuine.id))?.counter, '20');
  });

  void test('the genuine assertion sent again signs the owner in (the retry the branch is for), once', async () => {
    const { genuine } = await signInRecordedButNotLoggedIn(a, 30);
    const before = await passkeyCounts(stack.db);
    const res = await signIn(genuine);
    assert.equal(res.status, 200, res.text);
    const session = res.body as LoginSessionBody;
    assert.equal(session.omni_account, owner.omni_account);
    assert.equal((await passkeyCounts(stack.db)).sessions, before.sessions! + 1);
    assert.equal((await storedUse(genuine.id))?.counter, '30');
    assertRefused(await signIn(genuine), 409, 'conflict', /already been used/);
    // The authenticator goes on from there.
    assert.equal(
      (await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: a.assert((await loginOptions()).options, { origin }) } }))
        .omni_account,
      owner.omni_account,
    );
  });
});

void describe(`passkeys: an account holds at most ${MAX_PASSKEYS_PER_ACCOUNT}`, () => {
  /** Registers a new passkey on the account of `token`; answers its id. */
  async function addPasskey(token: string): Promise<string> {
    const o = await registrationOptions(token);
    return (
      await ok<{ id: string }>('POST', '/v1/passkeys/registration', 201, { token, body: { response: new SoftAuthenticator().register(o.options, { origin }) } })
    ).id;
  }
  const full = new RegExp(
    `^this account already has ${MAX_PASSKEYS_PER_ACCOUNT} passkeys, the most allowed \\(${MAX_PASSKEYS_PER_ACCOUNT}\\): remove one it no longer uses first, then add the new one$`,
  );

  void test('one past the cap: the registration is 409 with nothing written, the options step is 409 with no ceremony, and the listing shows them all', async () => {
    const owner = await walletLogin(stack);
    for (let i = 0; i < MAX_PASSKEYS_PER_ACCOUNT - 1; i++) await addPasskey(owner.token);
    // Two challenges taken while one place is left: the first answer takes it.
    const last = await registrationOptions(owner.token);
    const extra = await registrationOptions(owner.token);
    await ok('POST', '/v1/passkeys/registration', 201, { token: owner.token, body: { response: new SoftAuthenticator().register(last.options, { origin }) } });
    const ids = await passkeyIds(owner.omni_account);
    assert.equal(ids.length, MAX_PASSKEYS_PER_ACCOUNT);

    const b = new SoftAuthenticator();
    await refused(
      'POST',
      '/v1/passkeys/registration',
      { token: owner.token, body: { response: b.register(extra.options, { origin }) } },
      409,
      'conflict',
      full,
    );
    const credential = b.credentials.at(-1);
    assert.ok(credential);
    assert.equal((await stack.db.query('SELECT 1 FROM passkeys WHERE credential_id = $1', [credential.id.toString('base64url')])).rowCount, 0);
    const registered = await stack.db.query("SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'passkey.registered'", [owner.omni_account]);
    assert.equal(registered.rowCount, MAX_PASSKEYS_PER_ACCOUNT);

    const starts = spyWorkflowStarts(stack.temporal);
    try {
      await refused('POST', '/v1/passkeys/registration/options', { token: owner.token }, 409, 'conflict', full);
      assert.equal(starts.count(), 0, 'a ceremony was started');
    } finally {
      starts.restore();
    }

    const list = await ok<{ passkeys: { id: string }[] }>('GET', '/v1/passkeys', 200, { token: owner.token });
    assert.deepEqual(list.passkeys.map((p) => p.id).sort(), [...ids].sort());

    // Removing one makes room for one.
    assert.equal((await stack.request('DELETE', `/v1/passkeys/${ids[0]}`, { token: owner.token })).status, 204);
    await addPasskey(owner.token);
    await refused('POST', '/v1/passkeys/registration/options', { token: owner.token }, 409, 'conflict', full);
  });

  void test('registrations racing for the last places: exactly the cap is stored, the others are 409', async () => {
    const owner = await walletLogin(stack);
    const left = 3;
    const racing = 6;
    for (let i = 0; i < MAX_PASSKEYS_PER_ACCOUNT - left; i++) await addPasskey(owner.token);
    const issued = await Promise.all(Array.from({ length: racing }, () => registrationOptions(owner.token)));
    const answers = await Promise.all(
      issued.map((o) =>
        stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response: new SoftAuthenticator().register(o.options, { origin }) } }),
      ),
    );
    const texts = answers.map((r) => `${r.status} ${r.text}`).join(' | ');
    assert.equal(answers.filter((r) => r.status === 201).length, left, texts);
    for (const r of answers.filter((x) => x.status !== 201)) assertRefused(r, 409, 'conflict', full);
    assert.equal((await passkeyIds(owner.omni_account)).length, MAX_PASSKEYS_PER_ACCOUNT);
    const registered = await stack.db.query("SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'passkey.registered'", [owner.omni_account]);
    assert.equal(registered.rowCount, MAX_PASSKEYS_PER_ACCOUNT);
  });
});
