import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { idempotencyKeyBits } from '../api/schemas';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { mintIntentSigningInput } from '../lib/mint-intent';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type HttpAnswer, type WorkflowStartSpy } from './adversarial-probes';
import { devMail, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';

/**
 * Input that reached too far: NUL characters (a 500 and a spent intent request_id before; now a
 * 400 at the schema layer, api/schemas.ts) and guessable Idempotency-Keys on the email routes
 * (a stranger could join the owner's request). Each refusal changes nothing and starts nothing.
 */

let stack: TestStack;
let tee: TeeKeyPair;
let agent: WalletSession;
let starts: WorkflowStartSpy;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_RATE_LIMIT_MINT_PER_MINUTE: '100000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  agent = await walletLogin(stack);
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const nowS = () => Math.floor(Date.now() / 1000);

/** Sends each request and checks its refusal; afterwards no row changed and no workflow started. */
async function refusedAll(sends: [string, () => Promise<HttpAnswer>, (res: HttpAnswer, what: string) => void][]): Promise<void> {
  const before = await dbSnapshot(stack.db);
  const started = starts.count();
  for (const [what, send, check] of sends) check(await send(), what);
  await assertUnchanged(stack.db, before, 'after the refusals');
  assert.equal(starts.count(), started, 'a refused request started a workflow');
}

interface IntentBody {
  request_id: string;
  issued_at: string;
  intent: Record<string, string>;
  auth: { address: string; signature?: string };
}

async function signedIntent(intent: Record<string, string>, requestId = `mnt_${randomBytes(8).toString('hex')}`): Promise<IntentBody> {
  const body: IntentBody = { request_id: requestId, issued_at: new Date().toISOString(), intent, auth: { address: agent.wallet.address } };
  return { ...body, auth: { ...body.auth, signature: await agent.wallet.sign(mintIntentSigningInput(JSON.stringify(body))) } };
}

const mintAws = (body: unknown) => stack.request('POST', '/v1/mint-aws-creds', { token: agent.token, body });

void describe('NUL characters are refused at the edge', () => {
  void test('a signed mint intent with NUL in a field → 400 naming it; nothing written, no workflow, and its request_id is still unspent', async () => {
    const clean = { agent_id: agent.wallet.lower, service: 's3', scope_path: 'bots/' };
    const requestId = `mnt_${randomBytes(8).toString('hex')}`;
    const cases: [string, Promise<IntentBody>, RegExp][] = [
      ['intent.agent_id', signedIntent({ ...clean, agent_id: `${agent.wallet.lower}\u0000` }, requestId), /body\.intent\.agent_id: must not contain a NUL/],
      ['intent.service', signedIntent({ ...clean, service: 's\u00003' }, requestId), /body\.intent\.service: must not contain a NUL/],
      ['intent.scope_path', signedIntent({ ...clean, scope_path: 'bots/\u0000' }, requestId), /body\.intent\.scope_path: must not contain a NUL/],
      ['a key of intent', signedIntent({ ...clean, 'x\u0000': '1' }, requestId), /body\.intent\.x\u0000: must not contain a NUL/],
      ['request_id', signedIntent(clean, `${requestId}\u0000`), /body\.request_id: must not contain a NUL/],
    ];
    const bodies = await Promise.all(cases.map(([, b]) => b));
    await refusedAll(
      cases.map(([what, , message], i) => [what, () => mintAws(bodies[i]), (res, label) => assertRefused(res, 400, 'bad_request', message, label)]),
    );
    // The request_id those intents carried was not consumed: the clean intent under it mints.
    const ok = await mintAws(await signedIntent(clean, requestId));
    assert.equal(ok.status, 200, ok.text);
  });

  void test('a TEE-signed identity with NUL → 400 (40000) at post_heima_login; the email lookup too', async () => {
    const identity: Identity = { type: 'email', value: `nul\u0000.${randomBytes(4).toString('hex')}@example.com` };
    const token = signTeeJwt(tee.privateKey, teeClaims(deriveOmniAccount('agentkeys', identity), 'access', 'agentkeys', nowS()));
    const envelope400 = (res: HttpAnswer, what: string) => {
      assert.equal(res.status, 400, `${what}: ${res.text}`);
      const b = res.body as { code: number; message: string; data: unknown };
      assert.deepEqual([b.code, b.data], [40000, null], what);
      assert.match(b.message, /NUL/, what);
    };
    await refusedAll([
      [
        'post_heima_login',
        () =>
          stack.request('POST', '/v3/account/post_heima_login', {
            token,
            body: { userId: identity, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true },
          }),
        envelope400,
      ],
      [
        'post_heima_login, NUL in clientAuth',
        () =>
          stack.request('POST', '/v3/account/post_heima_login', {
            token,
            body: { userId: identity, clientId: 'agentkeys', clientAuth: { type: 'wildmeta', invite_code: '\u0000' }, heimaLoginSuccess: true },
          }),
        envelope400,
      ],
      ['get_account_user_id', () => stack.request('GET', '/v3/account/get_account_user_id?email=a%00b%40example.com'), envelope400],
    ]);
  });

  void test('NUL anywhere in other bodies and queries → 400, the deepest too', async () => {
    let deep: unknown = 'x\u0000';
    for (let i = 0; i < 2000; i += 1) deep = { a: deep };
    await refusedAll([
      [
        'email_code address',
        () => stack.request('POST', '/v1/session/email_code', { body: { email: 'a\u0000@example.com' } }),
        (r, w) => assertRefused(r, 400, 'bad_request', /body\.email: must not contain a NUL/, w),
      ],
      [
        'grant agent_address',
        () => stack.request('POST', '/v1/grants', { token: agent.token, body: { agent_address: `0x${'1'.repeat(39)}\u0000` } }),
        (r, w) => assertRefused(r, 400, 'bad_request', /NUL/, w),
      ],
      ['2000 levels deep', () => mintAws({ deep }), (r, w) => assertRefused(r, 400, 'bad_request', /body\.deep(\.a){2000}: must not contain a NUL/, w)],
    ]);
  });
});

void describe('Idempotency-Keys a stranger could guess', () => {
  void test('the estimate: repeated characters and short patterns carry little, random keys much', () => {
    assert.equal(idempotencyKeyBits('0'.repeat(32)), 0);
    assert.equal(idempotencyKeyBits('01'.repeat(16)), 2);
    assert.ok(idempotencyKeyBits('0123456789abcdef'.repeat(2)) <= 64);
    for (let i = 0; i < 1000; i += 1) {
      assert.ok(idempotencyKeyBits(randomUUID()) >= 80);
      assert.ok(idempotencyKeyBits(randomBytes(16).toString('hex')) >= 80);
    }
  });

  void test('"0"×32 and other guessable keys → 400 from the owner and from a stranger: nothing to join, nothing mailed, the owner\'s request id never leaks', async () => {
    const email = uniqueEmail('guessable-key');
    const ask = (key: string) => stack.request('POST', '/v1/session/email_code', { body: { email }, headers: { 'idempotency-key': key } });
    const guessable = ['0'.repeat(32), '01'.repeat(16), `${'a'.repeat(31)}b`, '0123456789abcdef'.repeat(2), '00000000-0000-0000-0000-000000000000'];
    await refusedAll(guessable.map((key) => [key, () => ask(key), (r, w) => assertRefused(r, 400, 'bad_request', /Idempotency-Key is not random enough/, w)]));
    assert.deepEqual(await devMail(stack, email.toLowerCase()), [], 'no code was mailed');
    // The owner with a random key gets a request; the stranger's guesses still reach nothing of it.
    const owner = await ask(randomUUID());
    assert.equal(owner.status, 202, owner.text);
    const ownerRequest = (owner.body as { request_id: string }).request_id;
    await refusedAll(
      guessable.map((key) => [
        `stranger ${key}`,
        () => ask(key),
        (r, w) => {
          assertRefused(r, 400, 'bad_request', /not random enough/, w);
          assert.ok(!r.text.includes(ownerRequest), `${w}: the owner's request id leaked`);
        },
      ]),
    );
    // email_login takes keys under the same rule.
    const login = await stack.request('POST', '/v1/session/email_login', {
      body: { request_id: ownerRequest, code: '000000' },
      headers: { 'idempotency-key': '0'.repeat(32) },
    });
    assertRefused(login, 400, 'bad_request', /not random enough/);
  });
});
