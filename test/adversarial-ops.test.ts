import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { ENCODING, keyId } from '../lib/codec';
import { oidcKeysetPath, retiredKeyRetentionSeconds, rotateOidcKeyset } from '../adapters/oidc-keys';
import type { JsonPayload } from './codec-client';
import { startStack, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type WorkflowStartSpy } from './adversarial-probes';
import { walletLogin } from './mint-client';

/**
 * The operator and issuer surfaces: /codec/decode|encode (ops token), /.well-known/* and the dev
 * mail route, against malformed, oversized, forged and concurrent requests and a broken keyset.
 */

const OPS_TOKEN = `ops-${randomBytes(24).toString('hex')}`;
const IP_LIMIT = 20;
/** Accepted codec calls per source address and minute (BROKER_RATE_LIMIT_CODEC_PER_MINUTE). */
const CODEC_LIMIT = 150;
let stack: TestStack;
let starts: WorkflowStartSpy;

before(async () => {
  stack = await startStack({
    env: {
      BROKER_OPS_TOKEN: OPS_TOKEN,
      BROKER_RATE_LIMIT_IP_PER_MINUTE: String(IP_LIMIT),
      BROKER_RATE_LIMIT_CODEC_PER_MINUTE: String(CODEC_LIMIT),
      BROKER_OIDC_KEY_RECHECK_MS: '0',
    },
  });
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const ops = { authorization: `Bearer ${OPS_TOKEN}` };

function codec(op: 'decode' | 'encode', body: unknown, headers: Record<string, string> = ops) {
  return stack.request('POST', `/codec/${op}`, { body, headers });
}

void describe('codec: malformed, oversized, forged, concurrent', () => {
  void test('malformed bodies and payloads → 4xx naming the problem, never a decoded byte', async () => {
    const activeKeyId = b64(keyId(stack.secrets.payloadKey));
    const enc = b64(ENCODING);
    const cases: [string, unknown, number, RegExp?][] = [
      ['a JSON array', '[]', 400],
      ['JSON null', 'null', 400],
      ['payloads null', { payloads: null }, 400],
      ['payloads of null', { payloads: [null] }, 400],
      ['metadata an array', { payloads: [{ metadata: ['x'] }] }, 400],
      ['data a number', { payloads: [{ metadata: {}, data: 7 }] }, 400],
      ['data not base64', { payloads: [{ metadata: {}, data: 'a b' }] }, 400, /base64/],
      ['__proto__ in metadata', '{"payloads":[{"metadata":{"__proto__":"eA=="}}]}', 400],
      ['encrypted, no key id', { payloads: [{ metadata: { encoding: enc }, data: b64(randomBytes(40)) }] }, 400, /no payload key with id \(missing\)/],
      ['encrypted, truncated', { payloads: [{ metadata: { encoding: enc, 'encryption-key-id': activeKeyId }, data: b64(randomBytes(10)) }] }, 400, /truncated/],
      ['encrypted, no data', { payloads: [{ metadata: { encoding: enc, 'encryption-key-id': activeKeyId } }] }, 400, /truncated/],
      [
        'encrypted, random bytes',
        { payloads: [{ metadata: { encoding: enc, 'encryption-key-id': activeKeyId }, data: b64(randomBytes(64)) }] },
        400,
        /failed authentication/,
      ],
    ];
    for (const [name, body, status, message] of cases) {
      const res = await codec('decode', body);
      assertRefused(res, status, 'bad_request', message, name);
    }
    const text = await stack.request('POST', '/codec/decode', { body: 'payloads', headers: { ...ops, 'content-type': 'text/plain' } });
    assertRefused(text, 415, 'bad_request', /JSON/, 'text/plain');
  });

  void test('oversized: over 4 MB → 413 with the token, 401 without (the body is never read); 10 001 payloads → 400', async () => {
    const huge = { payloads: [{ metadata: {}, data: 'A'.repeat(4 * 1024 * 1024 + 4) }] };
    assertRefused(await codec('encode', huge), 413, 'payload_too_large', undefined, 'over 4 MB');
    const stranger = await codec('encode', huge, {});
    assertRefused(stranger, 401, 'unauthorized', /missing Authorization/, 'over 4 MB, no bearer');
    const many = { payloads: Array.from({ length: 10_001 }, () => ({ metadata: {} })) };
    assertRefused(await codec('decode', many), 400, 'bad_request', /payloads/, '10 001 payloads');
    // Just under the limit it works: UI-sized batches are the point of the higher limit.
    const ok = await codec('encode', { payloads: Array.from({ length: 10_000 }, () => ({ metadata: {} })) });
    assert.equal(ok.status, 200, ok.text.slice(0, 200));
  });

  void test('forged bearers: 403; a 5 KB bearer 403; bad tokens from one address are rate limited (429 + Retry-After), then so is the real token from it', async () => {
    for (const authorization of [
      `Bearer ${'x'.repeat(5000)}`,
      `Bearer ${OPS_TOKEN.toUpperCase()}`,
      `Bearer ${OPS_TOKEN}\t${OPS_TOKEN}`,
      `Basic ${OPS_TOKEN}`,
    ]) {
      assertRefused(await codec('decode', { payloads: [] }, { authorization }), 403, 'forbidden', /ops token/, authorization.slice(0, 20));
    }
    // The scheme name is case-insensitive (RFC 9110 §11.1), as everywhere an ops token is read (/readyz too).
    assert.equal((await codec('decode', { payloads: [] }, { authorization: `bearer ${OPS_TOKEN}` })).status, 200);
    // A fresh source address (inject), so the count starts at zero.
    const from = { method: 'POST' as const, url: '/codec/decode', remoteAddress: '198.51.100.7', payload: { payloads: [] } };
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < IP_LIMIT + 2; i++) {
      const res = await stack.app.inject({ ...from, headers: { authorization: `Bearer guess-${i}` } });
      statuses.push(res.statusCode);
      if (res.statusCode === 429) retryAfter = res.headers['retry-after'];
    }
    assert.deepEqual(statuses, [...Array.from({ length: IP_LIMIT }, () => 403), 429, 429]);
    assert.match(retryAfter ?? '', /^\d+$/);
    // Once limited, the source is refused whatever it sends, the right token included: a guesser
    // must not learn which guess would have worked (issue 8 item 13).
    const real = await stack.app.inject({ ...from, headers: ops });
    assert.equal(real.statusCode, 429, real.body);
    // Another source with the right token is not affected.
    const other = await stack.app.inject({ ...from, remoteAddress: '198.51.100.8', headers: ops });
    assert.equal(other.statusCode, 200, other.body);
  });

  void test('/readyz detail shares the budget of ops-token guesses: past it 429 there (the right token too), the codec locked as well; a source locked at the codec gets 429 at /readyz; another source and tokenless probes unaffected', async () => {
    const readyz = (remoteAddress: string, authorization?: string) =>
      stack.app.inject({ method: 'GET', url: '/readyz', remoteAddress, headers: authorization ? { authorization } : {} });
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    // Guesses at /readyz from a fresh source: the public answer (no parts) until the budget is spent, then 429.
    const guesser = '198.51.100.60';
    for (let i = 0; i < IP_LIMIT; i++) {
      const res = await readyz(guesser, `Bearer guess-${i}`);
      assert.notEqual(res.statusCode, 429, `guess ${i}: ${res.body}`);
      assert.deepEqual(Object.keys(res.json<object>()), ['status'], 'a wrong token sees the public answer only');
    }
    const over = await readyz(guesser, `Bearer guess-${IP_LIMIT}`);
    assert.equal(over.statusCode, 429, over.body);
    assert.equal(over.json<{ error: string }>().error, 'rate_limited');
    assert.match(over.headers['retry-after']?.toString() ?? '', /^\d+$/);
    // Whatever it sends now, the right token included, at /readyz and at the codec: the limit tells no guess apart.
    const real = await readyz(guesser, `Bearer ${OPS_TOKEN}`);
    assert.equal(real.statusCode, 429, real.body);
    assert.ok(!real.body.includes('parts'), 'a limited source saw the detail');
    const atCodec = await stack.app.inject({ method: 'POST', url: '/codec/decode', remoteAddress: guesser, headers: ops, payload: { payloads: [] } });
    assert.equal(atCodec.statusCode, 429, atCodec.body);
    // A load balancer's probe sends no bearer: it still reads ready or not.
    const probe = await readyz(guesser);
    assert.notEqual(probe.statusCode, 429, probe.body);
    assert.deepEqual(Object.keys(probe.json<object>()), ['status']);

    // A source locked out at the codec is locked out of /readyz detail.
    const codecGuesser = '198.51.100.61';
    for (let i = 0; i <= IP_LIMIT; i++) {
      await stack.app.inject({
        method: 'POST',
        url: '/codec/decode',
        remoteAddress: codecGuesser,
        headers: { authorization: `Bearer guess-${i}` },
        payload: { payloads: [] },
      });
    }
    const lockedOut = await readyz(codecGuesser, `Bearer ${OPS_TOKEN}`);
    assert.equal(lockedOut.statusCode, 429, lockedOut.body);

    // Another source with the right token gets the detail.
    const operator = await readyz('198.51.100.62', `Bearer ${OPS_TOKEN}`);
    assert.notEqual(operator.statusCode, 429, operator.body);
    assert.ok(operator.json<{ parts?: object }>().parts, operator.body);
    await assertUnchanged(stack.db, before, 'after the /readyz guesses');
    assert.equal(starts.count(), started, 'a /readyz guess started a workflow');
  });

  void test('accepted calls are limited per source address: past the limit 429 + Retry-After, no audit row, nothing decoded; another source is not affected', async () => {
    const from = { method: 'POST' as const, url: '/codec/decode', remoteAddress: '198.51.100.40', headers: ops };
    const payload = { payloads: [{ metadata: { encoding: b64('json/plain') }, data: b64('"x"') }] };
    const auditedFrom = async (address: string) =>
      Number(
        (
          await stack.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_log WHERE event = 'ops.codec.decode' AND details->>'address' = $1`, [
            address,
          ])
        ).rows[0]?.n,
      );
    const statuses = new Map<number, number>();
    for (let i = 0; i < CODEC_LIMIT; i++) {
      const res = await stack.app.inject({ ...from, payload });
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    }
    assert.deepEqual([...statuses], [[200, CODEC_LIMIT]]);
    assert.equal(await auditedFrom(from.remoteAddress), CODEC_LIMIT, 'one audit row per accepted call');
    const over = await stack.app.inject({ ...from, payload });
    assert.equal(over.statusCode, 429, over.body);
    assert.match(over.headers['retry-after']?.toString() ?? '', /^\d+$/);
    assert.ok(!over.body.includes('"x"') && !over.body.includes(b64('"x"')), 'a refused call decodes nothing');
    assert.equal(await auditedFrom(from.remoteAddress), CODEC_LIMIT, 'a refused call writes no audit row');
    const other = await stack.app.inject({ ...from, remoteAddress: '198.51.100.41', payload });
    assert.equal(other.statusCode, 200, other.body);
  });

  void test('20 concurrent encodes and decodes: each answer is its own payload, nothing crossed', async () => {
    const values = Array.from({ length: 20 }, (_, i) => `value-${i}-${randomBytes(8).toString('hex')}`);
    const encoded = await Promise.all(
      values.map((v) => codec('encode', { payloads: [{ metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(v)) }] })),
    );
    const decoded = await Promise.all(encoded.map((r) => codec('decode', r.body)));
    decoded.forEach((r, i) => {
      assert.equal(r.status, 200, r.text);
      const [p] = (r.body as { payloads: JsonPayload[] }).payloads;
      assert.equal(JSON.parse(Buffer.from(p?.data ?? '', 'base64').toString()), values[i]);
    });
  });
});

void describe('/.well-known: malformed requests, a broken keyset, rotation under load', () => {
  void test('other methods and paths: JSON 404; HEAD and query strings are harmless', async () => {
    for (const path of ['/.well-known/jwks.json', '/.well-known/openid-configuration']) {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'])
        assertRefused(await stack.request(method, path, { body: {} }), 404, 'not_found', /no route/, `${method} ${path}`);
      assertRefused(await stack.request('GET', `${path}/`), 404, 'not_found', undefined, `${path}/`);
      const head = await stack.request('HEAD', path);
      assert.equal(head.status, 200);
      assert.equal(head.text, '');
      const q = await stack.request('GET', `${path}?kid=../../secrets&x=${'y'.repeat(2000)}`);
      assert.equal(q.status, 200);
      assert.deepEqual(q.body, (await stack.request('GET', path)).body);
    }
    assertRefused(await stack.request('GET', '/.well-known/oidc-keys.json'), 404, 'not_found', undefined, 'the keyset file by name');
    assertRefused(await stack.request('GET', '/.well-known/../secrets.json'), 404, 'not_found', undefined, 'dot segments');
  });

  void test('an unreadable keyset: JWKS 503 unavailable, /readyz 503 naming it, a mint refused with no token; restored, all is back', async () => {
    const session = await walletLogin(stack);
    const path = oidcKeysetPath(stack.config);
    const original = await readFile(path, 'utf8');
    const jwksBefore = (await stack.request('GET', '/.well-known/jwks.json')).body;
    await writeFile(path, '{"version":1,"active_kid":"gone","keys":[]}');
    try {
      const jwks = await stack.request('GET', '/.well-known/jwks.json');
      assertRefused(jwks, 503, 'unavailable', /keyset is not readable/);
      assert.ok(!jwks.text.includes(path), 'the file path leaks');
      const discovery = await stack.request('GET', '/.well-known/openid-configuration');
      assert.equal(discovery.status, 200, 'discovery does not depend on the keys');
      const ready = await stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
      assert.equal(ready.status, 503);
      assert.equal((ready.body as { parts: Record<string, { ok: boolean }> }).parts.oidc_keys?.ok, false);
      const mint = await stack.request('POST', '/v1/mint-oidc-jwt', { token: session.token });
      assertRefused(mint, 503, 'unavailable', /signing key/);
      assert.ok(!/eyJ[\w-]+\.[\w-]+\.[\w-]+/.test(mint.text));
      const rows = await stack.db.query<{ event: string; outcome: string }>(
        "SELECT event, outcome FROM audit_log WHERE omni_account = $1 AND event LIKE 'mint.%' ORDER BY audit_log.seq",
        [session.omni_account],
      );
      assert.deepEqual(
        rows.rows.map((r) => [r.event, r.outcome]),
        [
          ['mint.oidc.intent', 'ok'],
          ['mint.oidc', 'failed'],
        ],
      );
    } finally {
      await writeFile(path, original);
    }
    assert.deepEqual((await stack.request('GET', '/.well-known/jwks.json')).body, jwksBefore);
    assert.equal((await stack.request('POST', '/v1/mint-oidc-jwt', { token: session.token })).status, 200);
  });

  void test('50 concurrent JWKS reads across a rotation: every answer is 200 and is the old set or the new one', async () => {
    const oldKids = ((await stack.request('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    const reads = Array.from({ length: 50 }, () => stack.request('GET', '/.well-known/jwks.json'));
    const rotation = rotateOidcKeyset(oidcKeysetPath(stack.config), { retentionSeconds: retiredKeyRetentionSeconds(stack.config) });
    const [answers, rotated] = await Promise.all([Promise.all(reads), rotation]);
    const newKids = [rotated.activeKid, ...oldKids];
    for (const a of answers) {
      assert.equal(a.status, 200, a.text);
      const kids = (a.body as { keys: { kid: string }[] }).keys.map((k) => k.kid);
      assert.ok(JSON.stringify(kids) === JSON.stringify(oldKids) || JSON.stringify(kids) === JSON.stringify(newKids), kids.join(','));
    }
    const after = (await stack.request('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
    assert.deepEqual(
      after.keys.map((k) => k.kid),
      newKids,
    );
  });
});

void describe('dev mail route (dev profile only)', () => {
  void test('missing, too short and too long addresses → 400; nothing written, nothing started', async () => {
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const q of ['', '?to=', '?to=ab', `?to=${'a'.repeat(250)}%40example.com`, '?to=a&to=b']) {
      assertRefused(await stack.request('GET', `/_dev/mail${q}`), 400, 'bad_request', /to/, q.slice(0, 20));
    }
    await assertUnchanged(stack.db, before, 'dev mail');
    assert.equal(starts.count(), started);
  });
});
