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
 * The signed-intent (v2) body of POST /v1/mint-aws-creds, as AgentKeys' own broker took it at
 * litentry/agent-terrier 5f79a9f (crates/agentkeys-broker-server/src/handlers/mint.rs, retired
 * upstream in 958c375): per-mint EIP-191
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
  const signature = await signer.sign(mintIntentSigningInput(JSON.stringify(body)));
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
      mintIntentSigningInput(JSON.stringify(body, null, 2)),
      '{"auth":{"address":"0xabc"},"intent":{"agent_id":"0xabc","scope_path":"bots/","service":"s3"},"issued_at":"2026-05-05T14:00:00Z","request_id":"mnt_1"}',
    );
    assert.equal(canonicalJson({ b: [2, { d: 1, c: 'x' }], a: null }), '{"a":null,"b":[2,{"c":"x","d":1}]}');
  });

  void test('the value form the audit chain hashes keeps its spelling, and a deep value is refused instead of overflowing the stack', () => {
    // UTF-16 key order, JSON.stringify's values, undefined members dropped, undefined in arrays as null, a Date as {}.
    assert.equal(
      canonicalJson({ z: undefined, b: [undefined, 1.5, 'x\u2028', { y: null, a: true }], a: new Date(0), '\uE000': 1, '\u{1F600}': 2 }),
      '{"a":{},"b":[null,1.5,"x\u2028",{"a":true,"y":null}],"\u{1F600}":2,"\uE000":1}',
    );
    let deep: unknown = 1;
    for (let i = 0; i < 10_000; i++) deep = [deep];
    assert.throws(() => canonicalJson(deep), /nested deeper than 128 levels/);
    let fits: unknown = 1;
    for (let i = 0; i < 128; i++) fits = { k: fits };
    assert.equal(canonicalJson(fits), `${'{"k":'.repeat(128)}1${'}'.repeat(128)}`);
  });

  void test('canonical form byte for byte as canonicalize_json: keys by UTF-8 byte, numbers as serde_json spells them', () => {
    // U+E000 is EE 80 80 in UTF-8 and sorts before U+1F600 (F0 9F 98 80); in UTF-16 its surrogate D83D sorts first.
    assert.equal(mintIntentSigningInput('{"\\ud83d\\ude00":1,"auth":{},"\\ue000":2}'), '{"auth":{},"\uE000":2,"\u{1F600}":1}');
    // The broker's own value form (the audit chain's) keeps UTF-16 order: stored chains must still verify.
    assert.equal(canonicalJson({ '\uE000': 2, '\u{1F600}': 1 }), '{"\u{1F600}":1,"\uE000":2}');

    // serde_json reads a number with '.' or an exponent as an f64 through its own fast path (serde-rs/json
    // v1.0.149 src/de.rs, f64_from_parts) and writes it with zmij (dtolnay/zmij 1.0.21: 1.0, 0.0, -0.0 and
    // the e+ exponents are pinned in its tests/test.rs); integers stay integers up to u64 / down to i64::MIN.
    // Each expected spelling below is what serde_json read-then-wrote in a reference build, ryu's `e` shown as zmij's `e+`.
    const spelled: [string, string][] = [
      ['1.0', '1.0'],
      ['1', '1'],
      ['-0', '-0.0'],
      ['1E2', '100.0'],
      ['0.1', '0.1'],
      ['1e21', '1e+21'],
      ['1e-7', '1e-7'],
      ['0.0001', '0.0001'],
      ['1e15', '1000000000000000.0'],
      ['1e16', '1e+16'],
      ['18446744073709551615', '18446744073709551615'],
      ['18446744073709551616', '1.8446744073709552e+19'],
      ['-9223372036854775808', '-9223372036854775808'],
      ['-9223372036854775809', '-9.223372036854776e+18'],
      ['9007199254740993', '9007199254740993'],
      // serde_json's fast path, not the correctly rounded value (which would be 2.225073858507201e-308, 8.4862e+61).
      ['2.2250738585072011e-308', '2.2250738585072014e-308'],
      ['8.4862e+61', '8.486200000000001e+61'],
      ['5.2066112579763355561', '5.206611257976335'],
      // zmij's own pinned values.
      ['6.62607015e-34', '6.62607015e-34'],
      ['5.444310685350916e+14', '544431068535091.6'],
      ['3.439070283483335e+35', '3.439070283483335e+35'],
      ['9.061488e15', '9061488000000000.0'],
      ['4.9406564584124654e-324', '5e-324'],
    ];
    for (const [text, expected] of spelled) {
      assert.equal(mintIntentSigningInput(`{"auth":{"signature":"0x"},"n":${text}}`), `{"auth":{},"n":${expected}}`, text);
    }

    // What serde_json cannot read is refused (upstream answers 400 for it too); a repeated key is ambiguous.
    for (const [text, message] of [
      ['{"auth":{},"n":1e400}', /out of range/],
      ['{"auth":{},"s":"\\ud800"}', /unpaired surrogate/],
      ['{"auth":{},"a":1,"a":2}', /appears twice/],
      [`{"auth":{},"deep":${'['.repeat(127)}${']'.repeat(127)}}`, /nested deeper than 127/],
      ['[]', /must be a JSON object/],
      ['{"auth":"x"}', /auth must be an object/],
    ] as const) {
      assert.throws(() => mintIntentSigningInput(text), message, text.slice(0, 40));
    }
    // 127 levels in all (the object itself is one) is what serde_json reads.
    assert.equal(mintIntentSigningInput(`{"auth":{},"deep":${'['.repeat(126)}${']'.repeat(126)}}`).length, 19 + 2 * 126);
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

  void test('a body with a float and keys outside ASCII mints when signed as AgentKeys signs it (the text as sent, not as JSON.parse reads it)', async () => {
    const b = unsignedIntent(agent.wallet);
    const wire = (signature: string) =>
      `{"request_id":${JSON.stringify(b.request_id)},"issued_at":${JSON.stringify(b.issued_at)},"intent":${JSON.stringify(b.intent)},` +
      `"auth":{"address":${JSON.stringify(b.auth.address)},"signature":${JSON.stringify(signature)}},"weight":1.0,"big":1e21,"\\ud83d\\ude00":"b","\\ue000":"a"}`;
    // Written out by hand: keys in UTF-8 byte order, 1.0 and 1e+21 as serde_json writes them.
    const upstream =
      `{"auth":{"address":${JSON.stringify(b.auth.address)}},"big":1e+21,"intent":{"agent_id":${JSON.stringify(b.intent.agent_id)},"scope_path":"bots/","service":"s3"},` +
      `"issued_at":${JSON.stringify(b.issued_at)},"request_id":${JSON.stringify(b.request_id)},"weight":1.0,"\uE000":"a","\u{1F600}":"b"}`;
    assert.equal(mintIntentSigningInput(wire('0x')), upstream);
    // Signed over what the value form made of it before (1 for 1.0, UTF-16 key order): refused, nothing used up.
    const parsed = JSON.parse(wire('0x')) as { auth: Record<string, unknown> };
    delete parsed.auth.signature;
    const snap = await dbSnapshot(stack.db);
    assertRefused(await mint(agent.token, wire(await agent.wallet.sign(canonicalJson(parsed)))), 401, 'unauthorized', /not made by/);
    await assertUnchanged(stack.db, snap, 'signed over the value form');
    const res = await mint(agent.token, wire(await agent.wallet.sign(upstream)));
    assert.equal(res.status, 200, res.text);
  });

  void test('an unknown field nested 5000 to 7800 deep (under 16 KiB) is a 400 that changes nothing and leaves the request_id unused', async () => {
    for (const depth of [128, 5000, 7800]) {
      const b = unsignedIntent(agent.wallet);
      const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`;
      const wire = (signature: string) =>
        `{"request_id":${JSON.stringify(b.request_id)},"issued_at":${JSON.stringify(b.issued_at)},"intent":${JSON.stringify(b.intent)},` +
        `"auth":{"address":${JSON.stringify(b.auth.address)},"signature":${JSON.stringify(signature)}},"x":${nested}}`;
      // Signed over the shallow part: the signer's form of the text is not what is refused here.
      const body = wire(await agent.wallet.sign(`{"auth":{"address":${JSON.stringify(b.auth.address)}}}`));
      assert.ok(Buffer.byteLength(body) < 16 * 1024, `${depth}: ${Buffer.byteLength(body)} bytes`);
      const snap = await dbSnapshot(stack.db);
      const startsBefore = starts.count();
      assertRefused(await mint(agent.token, body), 400, 'bad_request', /nested deeper than 127 levels/, `depth ${depth}`);
      await assertUnchanged(stack.db, snap, `depth ${depth}`);
      assert.equal(starts.count(), startsBefore, `depth ${depth}: no mint workflow`);
      // The request_id was not consumed: a proper intent under it mints.
      const res = await mint(agent.token, await signIntent(agent.wallet, b));
      assert.equal(res.status, 200, `depth ${depth}: ${res.text}`);
    }
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
      [
        'a float added after signing',
        agent.token,
        { ...(await signIntent(agent.wallet, unsignedIntent(agent.wallet))), weight: 0.5 },
        401,
        'unauthorized',
        /not made by/,
      ],
      [
        'a number serde_json cannot read',
        agent.token,
        `{"request_id":"mnt_r","issued_at":"${new Date().toISOString()}","intent":{"agent_id":"a","service":"s3"},"auth":{"address":"${agent.wallet.lower}","signature":"0x00"},"n":1e400}`,
        400,
        'bad_request',
        /out of range/,
      ],
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
