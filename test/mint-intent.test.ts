import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { canonicalJson } from '../lib/canonical-json';
import { mintIntentSigningInput } from '../lib/mint-intent';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type WorkflowStartSpy } from './adversarial-probes';
import { startStack, type TestStack } from './harness';
import { auditRowsOf, emailLogin, walletLogin, type WalletSession } from './mint-client';
import { newWallet, type TestWallet } from './wallet-client';

/**
 * The signed-intent (v2) body of POST /v1/mint-aws-creds, as the later AgentKeys broker takes it
 * (litentry/agent-terrier, crates/agentkeys-broker-server/src/handlers/mint.rs): per-mint EIP-191
 * proof of possession by the session's wallet, replay-guarded and audited; today's body keeps working.
 */

const WINDOW = 300;
let stack: TestStack;
let agent: WalletSession;
let starts: WorkflowStartSpy;

before(async () => {
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_RATE_LIMIT_MINT_PER_MINUTE: '100000', BROKER_MINT_INTENT_WINDOW_SECONDS: String(WINDOW) },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  agent = await walletLogin(stack);
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

interface IntentBody {
  request_id: string;
  issued_at: string;
  intent: { agent_id: string; service: string; scope_path?: string };
  auth: { address: string; signature?: string };
  [k: string]: unknown;
}

function unsignedIntent(w: TestWallet, over: Partial<IntentBody> = {}): IntentBody {
  return {
    request_id: `mnt_${randomBytes(8).toString('hex')}`,
    issued_at: new Date().toISOString(),
    intent: { agent_id: w.lower, service: 's3', scope_path: 'bots/' },
    auth: { address: w.address },
    ...over,
  };
}

async function signIntent(signer: TestWallet, body: IntentBody): Promise<IntentBody> {
  const signature = await signer.sign(mintIntentSigningInput(body));
  return { ...body, auth: { ...body.auth, signature } };
}

const mint = (token: string, body: unknown) => stack.request('POST', '/v1/mint-aws-creds', { token, body });

void describe('signed mint intents (v2 body of mint-aws-creds)', () => {
  void test('canonical form: keys sorted at every depth, no whitespace, auth.signature left out (upstream test vector)', () => {
    const body = {
      request_id: 'mnt_1',
      issued_at: '2026-05-05T14:00:00Z',
      intent: { agent_id: '0xabc', service: 's3', scope_path: 'bots/' },
      auth: { address: '0xabc', signature: '0xdeadbeef' },
    };
    assert.equal(
      mintIntentSigningInput(body),
      '{"auth":{"address":"0xabc"},"intent":{"agent_id":"0xabc","scope_path":"bots/","service":"s3"},"issued_at":"2026-05-05T14:00:00Z","request_id":"mnt_1"}',
    );
    assert.equal(canonicalJson({ b: [2, { d: 1, c: 'x' }], a: null }), '{"a":null,"b":[2,{"c":"x","d":1}]}');
    assert.throws(() => canonicalJson({ n: 1.5 }, true), /whole/);
    assert.throws(() => mintIntentSigningInput({ n: 1.5, auth: {} }), /whole/);
  });

  void test('a signed intent mints, the audit row records the proof, and the same intent again is 409 with nothing changed', async () => {
    const body = await signIntent(agent.wallet, unsignedIntent(agent.wallet));
    const res = await mint(agent.token, body);
    assert.equal(res.status, 200, res.text);
    const creds = res.body as { access_key_id: string; wallet: string };
    assert.equal(creds.wallet, agent.wallet.lower);
    const intentRow = (await auditRowsOf(stack, agent.omni_account)).find(
      (r) => r.event === 'mint.aws.intent' && r.details.intent_request_id === body.request_id,
    );
    assert.ok(intentRow, 'the intent row names the signed request');
    assert.equal(intentRow.details.proof, 'eip191-intent');
    assert.equal(intentRow.details.intent_service, 's3');
    assert.match(String(intentRow.details.intent_hash), /^[0-9a-f]{64}$/);

    const snap = await dbSnapshot(stack.db);
    const startsBefore = starts.count();
    assertRefused(await mint(agent.token, body), 409, 'conflict', /already used/);
    await assertUnchanged(stack.db, snap, 'replayed intent');
    assert.equal(starts.count(), startsBefore, 'no mint workflow for a replay');
  });

  void test('eight concurrent copies of one signed intent: exactly one mints', async () => {
    const body = await signIntent(agent.wallet, unsignedIntent(agent.wallet));
    const answers = await Promise.all(Array.from({ length: 8 }, () => mint(agent.token, body)));
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [200, 409, 409, 409, 409, 409, 409, 409], answers.map((a) => a.text).join('\n'));
  });

  void test('forged, tampered, foreign, expired, future and malformed intents are refused and change nothing', async () => {
    const stranger = newWallet();
    const email = await emailLogin(stack);
    const good = unsignedIntent(agent.wallet);
    const cases: [string, string, unknown, number, string, RegExp][] = [
      ['signed by another wallet', agent.token, await signIntent(stranger, good), 401, 'unauthorized', /not made by auth.address/],
      [
        'tampered after signing',
        agent.token,
        { ...(await signIntent(agent.wallet, good)), intent: { ...good.intent, service: 'iam' } },
        401,
        'unauthorized',
        /not made by/,
      ],
      [
        'an extra field added after signing',
        agent.token,
        { ...(await signIntent(agent.wallet, unsignedIntent(agent.wallet))), duration_seconds: 900 },
        401,
        'unauthorized',
        /not made by/,
      ],
      [
        'another wallet than the session',
        agent.token,
        await signIntent(stranger, unsignedIntent(stranger)),
        401,
        'unauthorized',
        /not the wallet this session/,
      ],
      ['an email session', email.token, await signIntent(agent.wallet, unsignedIntent(agent.wallet)), 403, 'forbidden', /wallet-login session/],
      [
        'issued too long ago',
        agent.token,
        await signIntent(agent.wallet, unsignedIntent(agent.wallet, { issued_at: new Date(Date.now() - (WINDOW + 30) * 1000).toISOString() })),
        410,
        'expired',
        /old/,
      ],
      [
        'issued in the future',
        agent.token,
        await signIntent(agent.wallet, unsignedIntent(agent.wallet, { issued_at: new Date(Date.now() + (WINDOW + 30) * 1000).toISOString() })),
        401,
        'unauthorized',
        /ahead/,
      ],
      [
        'issued_at not RFC 3339',
        agent.token,
        await signIntent(agent.wallet, unsignedIntent(agent.wallet, { issued_at: String(Math.floor(Date.now() / 1000)) })),
        400,
        'bad_request',
        /RFC 3339/,
      ],
      ['only some v2 fields', agent.token, { request_id: 'mnt_x' }, 400, 'bad_request', /needs all/],
      // No canonical form to sign (JSON writers spell floats differently), so it is refused before the signature is looked at.
      ['a float in the body', agent.token, { ...(await signIntent(agent.wallet, unsignedIntent(agent.wallet))), weight: 0.5 }, 400, 'bad_request', /whole/],
      ['signature not 65 bytes', agent.token, { ...good, auth: { address: good.auth.address, signature: '0x1234' } }, 400, 'bad_request', /65 bytes/],
      [
        'a 4 KB service',
        agent.token,
        { ...good, intent: { ...good.intent, service: 'x'.repeat(4096) }, auth: { ...good.auth, signature: '0x00' } },
        400,
        'bad_request',
        /service/,
      ],
    ];
    for (const [what, token, body, status, error, message] of cases) {
      const snap = await dbSnapshot(stack.db);
      const startsBefore = starts.count();
      assertRefused(await mint(token, body), status, error, message, what);
      await assertUnchanged(stack.db, snap, what);
      assert.equal(starts.count(), startsBefore, `${what}: no mint workflow`);
    }
  });

  void test("today's body (no intent) keeps minting", async () => {
    const res = await mint(agent.token, { duration_seconds: 900 });
    assert.equal(res.status, 200, res.text);
  });
});
