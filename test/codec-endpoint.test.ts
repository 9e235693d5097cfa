import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { buildApp } from '../api/app';
import { findOrInstallTemporalCli } from '../scripts/temporal-cli';
import { ENCODING } from '../lib/codec';
import { requestCode, uniqueEmail, workflowIdOf } from './email-login-client';
import { payloadToJson, type JsonPayload } from './codec-client';
import { startStack, type TestStack } from './harness';

const OPS_TOKEN = `ops-${randomBytes(24).toString('hex')}`;
const UI = 'http://localhost:8233';
// Async on purpose: the API answering the CLI runs in this very process.
const run = promisify(execFile);

let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_OPS_TOKEN: OPS_TOKEN } });
});
after(async () => {
  await stack?.stop();
});

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();

function codecCall(op: 'decode' | 'encode', payloads: unknown, headers: Record<string, string> = {}) {
  return stack.request('POST', `/codec/${op}`, {
    body: { payloads },
    headers: { authorization: `Bearer ${OPS_TOKEN}`, 'x-namespace': 'default', origin: UI, ...headers },
  });
}

/** The codec's audit rows by event: an accepted call leaves one before anything is decoded, a refused one none. */
const codecRows = async () =>
  (
    await stack.db.query<{ event: string; n: number }>(
      `SELECT event, count(*)::int AS n FROM audit_log WHERE event IN ('ops.codec.decode', 'ops.codec.encode') GROUP BY event ORDER BY event`,
    )
  ).rows;

void describe('codec endpoint for the Temporal Web UI', () => {
  void test('decodes a flow input from real history with the ops token', async () => {
    const email = uniqueEmail('Decoded');
    const sent = await requestCode(stack, email);
    const history = await stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id)).fetchHistory();
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    const input = started?.input?.payloads?.[0];
    assert.ok(input?.data && input.metadata, 'the started event has an input payload');
    const asJson = payloadToJson(input);
    assert.equal(unb64(asJson.metadata.encoding), ENCODING, 'history holds the encrypted form');

    const res = await codecCall('decode', [asJson]);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('access-control-allow-origin'), UI);
    const [decoded] = (res.body as { payloads: JsonPayload[] }).payloads;
    assert.equal(unb64(decoded?.metadata.encoding), 'json/plain');
    const arg = JSON.parse(unb64(decoded?.data)) as { email: string; settings: { ttlSeconds: number } };
    assert.equal(arg.email, email.toLowerCase());
    assert.equal(arg.settings.ttlSeconds, 600);
  });

  void test('encode then decode round-trips, and payloads that are not encrypted pass through decode', async () => {
    const plain = defaultPayloadConverter.toPayload({ hello: 'world', big: 'x'.repeat(64 * 1024) });
    const plainJson = payloadToJson(plain);
    // Bigger than BROKER_BODY_LIMIT_BYTES: the codec routes take UI-sized batches.
    const enc = await codecCall('encode', [plainJson]);
    assert.equal(enc.status, 200, enc.text.slice(0, 300));
    const [encrypted] = (enc.body as { payloads: JsonPayload[] }).payloads;
    assert.equal(unb64(encrypted?.metadata.encoding), ENCODING);
    assert.ok(!unb64(encrypted?.data).includes('world'));

    const dec = await codecCall('decode', [encrypted, plainJson]);
    assert.equal(dec.status, 200, dec.text.slice(0, 300));
    assert.deepEqual((dec.body as { payloads: JsonPayload[] }).payloads, [plainJson, plainJson]);

    const empty = await codecCall('decode', []);
    assert.equal(empty.status, 200);
    assert.deepEqual(empty.body, { payloads: [] });
    // What the Temporal CLI sends for no payloads (proto3 JSON drops the empty list), with its empty X-Namespace.
    const cliEmpty = await stack.request('POST', '/codec/decode', { body: {}, headers: { authorization: `Bearer ${OPS_TOKEN}`, 'x-namespace': '' } });
    assert.equal(cliEmpty.status, 200, cliEmpty.text);
    assert.deepEqual(cliEmpty.body, { payloads: [] });
  });

  void test('no bearer: 401; another bearer: 403; never a decoded payload', async () => {
    const [encrypted] = (
      (await codecCall('encode', [{ metadata: { encoding: b64('json/plain') }, data: b64('"secret"') }])).body as { payloads: JsonPayload[] }
    ).payloads;
    // Each accepted call leaves its audit row before anything is decoded; a refused one leaves none.
    const before = await codecRows();
    assert.ok(
      before.some((r) => r.event === 'ops.codec.encode'),
      'the accepted encode above has its audit row',
    );
    const none = await stack.request('POST', '/codec/decode', { body: { payloads: [encrypted] }, headers: { origin: UI } });
    assert.equal(none.status, 401, none.text);
    assert.equal((none.body as { error: string }).error, 'unauthorized');
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal(none.headers.get('access-control-allow-origin'), UI, 'the UI can read the refusal');

    for (const authorization of [`Bearer ${OPS_TOKEN}x`, `Bearer ${OPS_TOKEN.slice(0, -1)}`, `Basic ${b64(`ops:${OPS_TOKEN}`)}`, 'Bearer ', OPS_TOKEN]) {
      const res = await codecCall('decode', [encrypted], { authorization });
      assert.equal(res.status, 403, `${authorization}: ${res.text}`);
      assert.equal((res.body as { error: string }).error, 'forbidden');
      assert.ok(!res.text.includes(b64('"secret"')) && !res.text.includes('secret"'));
    }
    // A session token of a user is not the ops token either.
    const enc = await codecCall('encode', [], { authorization: 'Bearer a.b.c' });
    assert.equal(enc.status, 403);
    assert.deepEqual(await codecRows(), before, 'a refused codec call was audited as an accepted one');
  });

  void test('CORS: the preflight answers the UI origins only', async () => {
    for (const origin of [UI, 'http://127.0.0.1:8233']) {
      for (const op of ['decode', 'encode']) {
        const res = await stack.request('OPTIONS', `/codec/${op}`, {
          headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-namespace' },
        });
        assert.equal(res.status, 204, res.text);
        assert.equal(res.headers.get('access-control-allow-origin'), origin);
        assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
        assert.match(res.headers.get('access-control-allow-methods') ?? '', /POST/);
        const allowed = (res.headers.get('access-control-allow-headers') ?? '').split(',').map((h) => h.trim());
        for (const h of ['authorization', 'content-type', 'x-namespace']) assert.ok(allowed.includes(h), h);
      }
    }
    const evil = await stack.request('OPTIONS', '/codec/decode', { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
    // With the right token, from a page of another origin (a name rebound to a local codec proxy): refused, nothing audited or decoded.
    const before = await codecRows();
    for (const origin of ['https://evil.example', 'http://evil.example:8095', 'null']) {
      const post = await codecCall('decode', [], { origin });
      assert.equal(post.status, 403, `${origin}: ${post.text}`);
      assert.match((post.body as { message: string }).message, /origin not allowed/);
      assert.equal(post.headers.get('access-control-allow-origin'), null, 'no CORS grant for other origins');
    }
    assert.deepEqual(await codecRows(), before, 'a refused origin was audited as an accepted call');
    // The CLI sends no Origin.
    const cli = await stack.request('POST', '/codec/decode', { body: { payloads: [] }, headers: { authorization: `Bearer ${OPS_TOKEN}`, 'x-namespace': '' } });
    assert.equal(cli.status, 200, cli.text);
  });

  void test('bad bodies, tampered payloads and another namespace get a clear 4xx', async () => {
    const [encrypted] = ((await codecCall('encode', [{ metadata: { encoding: b64('json/plain') }, data: b64('"x"') }])).body as { payloads: JsonPayload[] })
      .payloads;
    assert.ok(encrypted?.data);
    const data = Buffer.from(encrypted.data, 'base64');
    data[20] = (data[20] ?? 0) ^ 0xff;
    const tampered = await codecCall('decode', [{ ...encrypted, data: data.toString('base64') }]);
    assert.equal(tampered.status, 400, tampered.text);
    assert.match((tampered.body as { message: string }).message, /failed authentication/);

    const unknownKey = await codecCall('decode', [{ metadata: { ...encrypted.metadata, 'encryption-key-id': b64('0123456789abcdef') }, data: encrypted.data }]);
    assert.equal(unknownKey.status, 400);
    assert.match((unknownKey.body as { message: string }).message, /no payload key with id 0123456789abcdef/);

    const notBase64 = await codecCall('decode', [{ metadata: { encoding: 'not base64!' }, data: 'AAAA' }]);
    assert.equal(notBase64.status, 400, notBase64.text);
    const notAList = await stack.request('POST', '/codec/decode', { body: { payloads: 'x' }, headers: { authorization: `Bearer ${OPS_TOKEN}` } });
    assert.equal(notAList.status, 400);
    const otherNamespace = await codecCall('decode', [encrypted], { 'x-namespace': 'someone-else' });
    assert.equal(otherNamespace.status, 403);
    assert.match((otherNamespace.body as { message: string }).message, /namespace default/);
  });

  void test('the Temporal CLI decodes a flow through the endpoint (--codec-endpoint, --codec-auth)', async () => {
    const email = uniqueEmail('Cli');
    const sent = await requestCode(stack, email);
    const cli = await findOrInstallTemporalCli({ log: () => undefined });
    const args = [
      'workflow',
      'show',
      '--address',
      stack.config.TEMPORAL_ADDRESS ?? '',
      '--namespace',
      'default',
      '--workflow-id',
      workflowIdOf(stack, sent.request_id),
      '--output',
      'json',
    ];
    const raw = await run(cli, args, { timeout: 30_000 });
    assert.ok(!raw.stdout.includes(email.toLowerCase()), 'without the codec the CLI sees ciphertext');
    const decoded = await run(cli, [...args, '--codec-endpoint', `${stack.url}/codec`, '--codec-auth', `Bearer ${OPS_TOKEN}`], { timeout: 30_000 });
    const shown = JSON.parse(decoded.stdout) as { events: { workflowExecutionStartedEventAttributes?: { input?: { payloads?: JsonPayload[] } } }[] };
    const input = shown.events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    assert.equal(unb64(input?.metadata.encoding), 'json/plain', 'with the codec the CLI shows the decoded payload');
    assert.equal((JSON.parse(unb64(input?.data)) as { email: string }).email, email.toLowerCase());
  });

  void test('without BROKER_OPS_TOKEN the codec routes do not exist', async () => {
    const app = await buildApp({ ...stack.deps, config: { ...stack.config, BROKER_OPS_TOKEN: undefined } }, { logLevel: 'silent' });
    try {
      for (const method of ['POST', 'OPTIONS'] as const) {
        const res = await app.inject({
          method,
          url: '/codec/decode',
          headers: { authorization: 'Bearer anything', origin: UI },
          payload: method === 'POST' ? { payloads: [] } : undefined,
        });
        assert.equal(res.statusCode, 404, `${method}: ${res.body}`);
      }
    } finally {
      await app.close();
    }
  });
});
