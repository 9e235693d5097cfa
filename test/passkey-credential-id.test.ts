/**
 * Passkey credential ids outside the WebAuthn bounds (16 to 1023 bytes), over HTTP against real
 * Temporal and Postgres. @simplewebauthn/server does not bound the id it reads from the
 * authenticator data: an id the passkeys table's CHECK accepts (12 or 1024 bytes) was stored, and
 * one it refuses (11 or 1025 bytes, sent under a well-formed `id`) failed the write, which the
 * ceremony retried and answered 500 `audit_error`. Each is now a 400 `bad_request` that uses the
 * challenge up and writes nothing, on registration and on sign-up; ids of 16 and 1023 bytes are
 * stored.
 *
 * The library also checks only that a registration's `id` equals its `rawId`, and answers the id of
 * the authenticator data: an `id`/`rawId` naming one credential over authenticator data naming
 * another was stored under the authenticator data's id, one the client never named. That is now a
 * 400 `bad_request`, nothing written, and so is a non-canonical spelling of the right id.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { claimedIdMismatch, CREDENTIAL_ID_MAX_BYTES, CREDENTIAL_ID_MIN_BYTES } from '../activities/passkey-ceremony';
import { startStack, type TestStack } from './harness';
import { walletLogin } from './mint-client';
import { passkeyCounts, SoftAuthenticator, type Credential, type CreationOptions, type Issued } from './passkey-client';

let stack: TestStack;
let origin: string;
before(async () => {
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      BROKER_PASSKEY_CHALLENGE_TTL_SECONDS: '120',
      BROKER_PASSKEY_ORIGINS: 'https://app.example.test',
    },
  });
  origin = new URL(stack.url).origin;
});
after(async () => {
  await stack?.stop();
});

type Answer = Awaited<ReturnType<TestStack['request']>>;

/** A credential of `bytes` bytes of id, for the authenticator to make in place of its own. */
function credentialOf(bytes: number, rpId: string, userHandle: string): Credential {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { id: randomBytes(bytes), key: privateKey, publicJwk: publicKey.export({ format: 'jwk' }) as { x: string; y: string }, rpId, userHandle, counter: 0 };
}

/**
 * The authenticator's answer to `o` for a credential id of `bytes` bytes in its authenticator data;
 * `claimedId`: a well-formed id the answer's `id` and `rawId` give instead (the library compares
 * them with each other only).
 */
function answerWithId(o: Issued<CreationOptions>, bytes: number, claimedId?: Buffer): ReturnType<SoftAuthenticator['register']> {
  const rpId = o.options.rp.id ?? new URL(origin).hostname;
  const response = new SoftAuthenticator().register(o.options, { origin, credential: credentialOf(bytes, rpId, o.options.user.id) });
  if (!claimedId) return response;
  return { ...response, id: claimedId.toString('base64url'), rawId: claimedId.toString('base64url') };
}

const registrationOptions = async (token: string): Promise<Issued<CreationOptions>> => {
  const r = await stack.request('POST', '/v1/passkeys/registration/options', { token });
  assert.equal(r.status, 200, r.text);
  return r.body as Issued<CreationOptions>;
};

const signupOptions = async (): Promise<Issued<CreationOptions>> => {
  const r = await stack.request('POST', '/v1/session/passkey/options', { body: { mode: 'signup' } });
  assert.equal(r.status, 200, r.text);
  return r.body as Issued<CreationOptions>;
};

/** `send` is refused 400 `bad_request` naming the id's length, writes no row, and the challenge is used up (an answer sent again: 409). */
async function refusedForItsId(send: () => Promise<Answer>, bytes: number, what: string): Promise<void> {
  const before = await passkeyCounts(stack.db);
  const r = await send();
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.equal((r.body as { error: string }).error, 'bad_request', `${what}: ${r.text}`);
  assert.match((r.body as { message: string }).message, new RegExp(`credential id is ${bytes} bytes; WebAuthn credential ids are 16 to 1023 bytes`), what);
  assert.deepEqual(await passkeyCounts(stack.db), before, `${what}: a refused registration wrote rows`);
  const again = await send();
  assert.equal(again.status, 409, `${what}, sent again: ${again.text}`);
  assert.deepEqual(await passkeyCounts(stack.db), before, `${what}, sent again: rows written`);
}

void describe('passkey credential ids outside 16 to 1023 bytes', () => {
  void test("the bounds are WebAuthn's", () => {
    assert.deepEqual([CREDENTIAL_ID_MIN_BYTES, CREDENTIAL_ID_MAX_BYTES], [16, 1023]);
  });

  void test('registration: a 12-, 15- or 1024-byte id (which the table would take) is 400, nothing written, the challenge used up', async () => {
    const owner = await walletLogin(stack);
    for (const bytes of [12, 15, 1024]) {
      const o = await registrationOptions(owner.token);
      const response = answerWithId(o, bytes);
      await refusedForItsId(() => stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response } }), bytes, `a ${bytes}-byte id`);
    }
  });

  void test('registration: an 11-byte or 1025-byte id (which the table refuses) under a well-formed `id` is 400, not a retried 500', async () => {
    const owner = await walletLogin(stack);
    for (const bytes of [11, 1025]) {
      const o = await registrationOptions(owner.token);
      const response = answerWithId(o, bytes, randomBytes(32));
      await refusedForItsId(
        () => stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response } }),
        bytes,
        `a ${bytes}-byte id in the authenticator data`,
      );
    }
  });

  void test('sign-up: a 12-byte or 1024-byte id is 400, no account, session or passkey written', async () => {
    for (const bytes of [12, 1024]) {
      const o = await signupOptions();
      const response = answerWithId(o, bytes);
      await refusedForItsId(() => stack.request('POST', '/v1/session/passkey', { body: { response } }), bytes, `a sign-up with a ${bytes}-byte id`);
    }
  });

  void test('ids of 16, 76 and 1023 bytes are stored, and each can be removed (a path parameter of up to 1366 characters)', async () => {
    const owner = await walletLogin(stack);
    for (const bytes of [16, 76, 1023]) {
      const o = await registrationOptions(owner.token);
      const response = answerWithId(o, bytes);
      const r = await stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response } });
      assert.equal(r.status, 201, r.text);
      const stored = await stack.db.query('SELECT 1 FROM passkeys WHERE credential_id = $1 AND omni_account = $2', [response.id, owner.omni_account]);
      assert.equal(stored.rowCount, 1, `the ${bytes}-byte id`);
      const removed = await stack.request('DELETE', `/v1/passkeys/${response.id}`, { token: owner.token });
      assert.equal(removed.status, 204, `the ${bytes}-byte id (${response.id.length} characters) removed: ${removed.text}`);
      const left = await stack.db.query('SELECT 1 FROM passkeys WHERE credential_id = $1', [response.id]);
      assert.equal(left.rowCount, 0, `the ${bytes}-byte id is gone`);
    }
    const audited = await stack.db.query("SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'passkey.removed'", [owner.omni_account]);
    assert.equal(audited.rowCount, 3);
  });

  void test('a path parameter over 1366 characters is still refused by the router, in the wire shape', async () => {
    const owner = await walletLogin(stack);
    const r = await stack.request('DELETE', `/v1/passkeys/${'A'.repeat(1367)}`, { token: owner.token });
    assert.equal(r.status, 414, r.text);
    assert.deepEqual(r.body, { error: 'bad_request', message: 'a path parameter is too long' });
  });
});

/**
 * `send` is refused 400 `bad_request` with a message matching `reason`, writes no row (and lists no
 * passkey for `token`'s account), and the challenge is used up (an answer sent again: 409).
 */
async function refusedForItsClaimedId(send: () => Promise<Answer>, reason: RegExp, what: string, token?: string): Promise<void> {
  const before = await passkeyCounts(stack.db);
  const listed = token ? ((await stack.request('GET', '/v1/passkeys', { token })).body as { passkeys: unknown[] }).passkeys.length : 0;
  const r = await send();
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.equal((r.body as { error: string }).error, 'bad_request', `${what}: ${r.text}`);
  assert.match((r.body as { message: string }).message, reason, what);
  assert.deepEqual(await passkeyCounts(stack.db), before, `${what}: a refused registration wrote rows`);
  if (token) {
    const list = await stack.request('GET', '/v1/passkeys', { token });
    assert.equal(list.status, 200, list.text);
    assert.equal((list.body as { passkeys: unknown[] }).passkeys.length, listed, `${what}: a passkey is listed`);
  }
  const again = await send();
  assert.equal(again.status, 409, `${what}, sent again: ${again.text}`);
  assert.deepEqual(await passkeyCounts(stack.db), before, `${what}, sent again: rows written`);
}

const MISMATCH = /the passkey's id does not match the credential id in its authenticator data; register it again from the browser's own WebAuthn answer/;
const NOT_CANONICAL = /the passkey's id is not canonical base64url/;

/** `id` spelled with the unused low bits of its last character set: the same bytes under Node's decoder, another string. */
function respelled(id: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const unused = { 2: 0b1111, 3: 0b11 }[id.length % 4];
  assert.ok(unused, `an id of ${id.length} characters has no unused bits`);
  const last = alphabet.indexOf(id.at(-1) ?? '');
  const other = id.slice(0, -1) + alphabet[last | unused];
  assert.notEqual(other, id);
  assert.ok(Buffer.from(other, 'base64url').equals(Buffer.from(id, 'base64url')), 'the respelling decodes to the same bytes');
  return other;
}

void describe("a passkey's id is the credential id of its authenticator data", () => {
  void test('registration: an id/rawId naming another credential than the authenticator data is 400, nothing stored', async () => {
    const owner = await walletLogin(stack);
    const o = await registrationOptions(owner.token);
    const credential = credentialOf(32, o.options.rp.id ?? new URL(origin).hostname, o.options.user.id);
    const attested = credential.id.toString('base64url');
    const claimed = randomBytes(32).toString('base64url');
    const response = { ...new SoftAuthenticator().register(o.options, { origin, credential }), id: claimed, rawId: claimed };
    assert.notEqual(attested, response.id);
    await refusedForItsClaimedId(
      () => stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response } }),
      MISMATCH,
      "an id other than the authenticator data's",
      owner.token,
    );
    const stored = await stack.db.query('SELECT credential_id FROM passkeys WHERE credential_id = ANY($1) OR omni_account = $2', [
      [response.id, attested],
      owner.omni_account,
    ]);
    assert.equal(stored.rowCount, 0, 'neither id is stored');
  });

  void test('sign-up: an id/rawId naming another credential than the authenticator data is 400, no account, session or passkey written', async () => {
    const o = await signupOptions();
    const response = answerWithId(o, 32, randomBytes(32));
    await refusedForItsClaimedId(() => stack.request('POST', '/v1/session/passkey', { body: { response } }), MISMATCH, 'a sign-up with another id');
  });

  void test('registration: a non-canonical spelling of the right id (unused bits set) is 400, nothing stored', async () => {
    const owner = await walletLogin(stack);
    for (const bytes of [16, 32]) {
      const o = await registrationOptions(owner.token);
      const honest = answerWithId(o, bytes);
      const id = respelled(honest.id);
      const response = { ...honest, id, rawId: id };
      await refusedForItsClaimedId(
        () => stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response } }),
        NOT_CANONICAL,
        `a ${bytes}-byte id respelled`,
        owner.token,
      );
    }
  });

  void test('the same answer with its own id is stored under that id (the check refuses only a mismatch)', async () => {
    const owner = await walletLogin(stack);
    const o = await registrationOptions(owner.token);
    const response = answerWithId(o, 32);
    const r = await stack.request('POST', '/v1/passkeys/registration', { token: owner.token, body: { response } });
    assert.equal(r.status, 201, r.text);
    const list = await stack.request('GET', '/v1/passkeys', { token: owner.token });
    assert.deepEqual(
      (list.body as { passkeys: { id: string }[] }).passkeys.map((p) => p.id),
      [response.id],
    );
  });

  void test('claimedIdMismatch: the same bytes canonically spelled pass; other bytes, padding, skipped characters, unused bits or a non-string do not', () => {
    const id = randomBytes(32).toString('base64url');
    assert.equal(claimedIdMismatch(id, id), undefined);
    assert.match(claimedIdMismatch(randomBytes(32).toString('base64url'), id) ?? '', MISMATCH);
    for (const spelling of [`${id}=`, `${id.slice(0, 10)}.${id.slice(10)}`, `${id.slice(0, 10)}+${id.slice(10)}`, respelled(id), ` ${id}`])
      assert.match(claimedIdMismatch(spelling, id) ?? '', NOT_CANONICAL, spelling);
    assert.match(claimedIdMismatch(undefined, id) ?? '', /not a string/);
    assert.match(claimedIdMismatch(42, id) ?? '', /not a string/);
  });
});
