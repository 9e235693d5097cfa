import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildApp } from '../api/app';
import { ConfigError, loadConfig } from '../lib/config';
import { startStack, type TestStack } from './harness';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

void describe('API basics', () => {
  void test('/healthz; /readyz says ready to anyone and reports per part to the ops token only', async () => {
    const h = await stack.request('GET', '/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.text, 'ok');
    const ops = stack.config.BROKER_OPS_TOKEN ?? '';
    const r = await stack.request('GET', '/readyz', { token: ops });
    assert.equal(r.status, 200, r.text);
    const parts = (r.body as { parts: Record<string, { ok: boolean; detail?: string }> }).parts;
    for (const part of ['database', 'temporal', 'session_key']) assert.equal(parts[part]?.ok, true, part);
    assert.match(parts.temporal?.detail ?? '', /namespace/);
    // Without the token (none, another bearer, a near miss): the status and nothing else.
    for (const headers of [
      {} as Record<string, string>,
      { authorization: `Bearer ${ops}x` },
      { authorization: `Basic ${Buffer.from(`ops:${ops}`).toString('base64')}` },
    ]) {
      const pub = await stack.request('GET', '/readyz', { headers });
      assert.equal(pub.status, 200, pub.text);
      assert.deepEqual(pub.body, { status: 'ready' });
    }
  });

  void test('/readyz is 503 naming the part that is down, to the ops token only', async () => {
    const broken = { ...stack.deps.readiness, broken_part: () => Promise.resolve({ ok: false, detail: 'unplugged' }) };
    // readiness checks are read when the app is built: build a second app over the same deps
    const lines: string[] = [];
    const app = await buildApp({ ...stack.deps, readiness: broken }, { logLevel: 'info', logStream: { write: (l: string) => void lines.push(l) } });
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz', headers: { authorization: `Bearer ${stack.config.BROKER_OPS_TOKEN ?? ''}` } });
      assert.equal(res.statusCode, 503);
      const body = res.json<{ status: string; parts: Record<string, { ok: boolean; detail?: string }> }>();
      assert.equal(body.status, 'not_ready');
      assert.deepEqual(body.parts.broken_part, { ok: false, detail: 'unplugged' });
      assert.equal(body.parts.database?.ok, true);
      const pub = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(pub.statusCode, 503);
      assert.deepEqual(pub.json(), { status: 'not_ready' });
      // Operators without the token see which part in the log, once per change.
      const warnings = lines.map((l) => JSON.parse(l) as { msg: string; part?: string }).filter((l) => l.msg === 'readiness: broken_part is not ready');
      assert.equal(warnings.length, 1, lines.join('\n'));
    } finally {
      await app.close();
    }
  });

  void test('OpenAPI document lists the session routes; /docs serves the UI', async () => {
    const doc = await stack.request('GET', '/docs/json');
    assert.equal(doc.status, 200);
    const paths = Object.keys((doc.body as { paths: Record<string, unknown> }).paths);
    for (const p of ['/v1/session/email_code', '/v1/session/email_login', '/v1/session/me', '/v1/session/logout']) assert.ok(paths.includes(p), p);
    const ui = await stack.request('GET', '/docs/');
    assert.equal(ui.status, 200);
    assert.match(ui.text, /swagger/i);
  });

  void test("unknown route: JSON 404; every response carries the broker's request id, a caller's own id beside it", async () => {
    const res = await stack.request('GET', '/nope', { headers: { 'x-request-id': 'trace-abc.1' } });
    assert.equal(res.status, 404);
    assert.deepEqual(Object.keys(res.body as object).sort(), ['error', 'message']);
    assert.match(res.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get('x-client-request-id'), 'trace-abc.1');
    const other = await stack.request('GET', '/healthz');
    assert.match(other.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(other.headers.get('x-client-request-id'), null);
    // Not a plain token: not echoed at all.
    const odd = await stack.request('GET', '/healthz', { headers: { 'x-request-id': 'a b<script>' } });
    assert.equal(odd.headers.get('x-client-request-id'), null);
  });

  void test('the Bearer scheme name is case-insensitive', async () => {
    const email = `Scheme.${Date.now()}@example.com`;
    const sent = await stack.request('POST', '/v1/session/email_code', { body: { email } });
    assert.equal(sent.status, 202, sent.text);
    const mail = await stack.ses.waitForMail(email.toLowerCase());
    const code = /\b(\d{6})\b/.exec(mail.text)?.[1] ?? '';
    const login = await stack.request('POST', '/v1/session/email_login', { body: { request_id: (sent.body as { request_id: string }).request_id, code } });
    assert.equal(login.status, 200, login.text);
    const { token } = login.body as { token: string };
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      const res = await stack.request('GET', '/v1/session/me', { headers: { authorization: `${scheme} ${token}` } });
      assert.equal(res.status, 200, scheme);
    }
  });

  void test('bearer problems are 401 with a message', async () => {
    for (const authorization of ['', 'Bearer', 'Basic abc', 'Bearer not-a-jwt', `Bearer ${'a'.repeat(9000)}.b.c`, 'Bearer e30.e30.']) {
      const res = await stack.request('GET', '/v1/session/me', { headers: authorization ? { authorization } : {} });
      assert.equal(res.status, 401, authorization.slice(0, 20));
      assert.equal((res.body as { error: string }).error, 'unauthorized');
    }
  });
});

void describe('configuration', () => {
  void test('names the bad variable', () => {
    assert.throws(
      () => loadConfig({ PORT: 'eighty' }),
      (e: unknown) => e instanceof ConfigError && /PORT/.test(e.message),
    );
    assert.throws(() => loadConfig({ BROKER_OIDC_JWT_TTL_SECONDS: '10' }), /BROKER_OIDC_JWT_TTL_SECONDS/);
  });

  void test('a client id with whitespace or quotes is refused: it would fork every OmniAccount', () => {
    for (const bad of ['agentkeys ', ' agentkeys', '"agentkeys"', "'agentkeys'", 'agent keys', 'agentkeys\t', 'agentkeys\u0000', ''])
      assert.throws(() => loadConfig({ BROKER_CLIENT_ID: bad }), /BROKER_CLIENT_ID/, JSON.stringify(bad));
    assert.equal(loadConfig({ BROKER_CLIENT_ID: 'agentterrier' }).BROKER_CLIENT_ID, 'agentterrier');
    assert.equal(loadConfig({}).BROKER_CLIENT_ID, 'agentkeys');
  });

  void test("AgentKeys' own name for the client id, AGENTKEYS_CLIENT_ID, must agree with BROKER_CLIENT_ID: a stack moved from it derives no account under another id", () => {
    assert.throws(
      () => loadConfig({ AGENTKEYS_CLIENT_ID: 'agentterrier' }),
      /AGENTKEYS_CLIENT_ID is "agentterrier" but BROKER_CLIENT_ID is "agentkeys".*set BROKER_CLIENT_ID/,
    );
    assert.throws(() => loadConfig({ AGENTKEYS_CLIENT_ID: 'agentkeys', BROKER_CLIENT_ID: 'agentterrier' }), /AGENTKEYS_CLIENT_ID/);
    assert.equal(loadConfig({ AGENTKEYS_CLIENT_ID: 'agentterrier', BROKER_CLIENT_ID: 'agentterrier' }).BROKER_CLIENT_ID, 'agentterrier');
    assert.equal(loadConfig({ AGENTKEYS_CLIENT_ID: 'agentkeys' }).BROKER_CLIENT_ID, 'agentkeys');
    assert.equal(loadConfig({ AGENTKEYS_CLIENT_ID: '' }).BROKER_CLIENT_ID, 'agentkeys');
  });

  void test('production refuses dev fixtures, generated secrets and the embedded database', () => {
    assert.throws(
      () => loadConfig({ NODE_ENV: 'production' }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /DATABASE_URL/.test(e.message) &&
        /BROKER_SECRET/.test(e.message) &&
        /BROKER_SESSION_KEY_PATH/.test(e.message) &&
        /BROKER_AUDIT_KEY_PATH/.test(e.message) &&
        /BROKER_OIDC_KEY_PATH/.test(e.message) &&
        /TEMPORAL_ADDRESS/.test(e.message) &&
        !e.message.includes('\n'),
    );
    const prod = {
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://db/broker',
      BROKER_SECRET: 'ab'.repeat(32),
      BROKER_PAYLOAD_KEY: 'cd'.repeat(32),
      BROKER_SESSION_KEY_PATH: '/keys/session.jwk.json',
      BROKER_AUDIT_KEY_PATH: '/keys/audit.jwk.json',
      BROKER_OIDC_KEY_PATH: '/keys/oidc-keys.json',
      TEMPORAL_ADDRESS: 'temporal:7233',
    };
    assert.equal(loadConfig(prod).devFixtures, false);
    assert.throws(() => loadConfig({ ...prod, BROKER_DEV_FIXTURES: 'true' }), /BROKER_DEV_FIXTURES/);
    // Listening on every address needs the public URL spelled out: the default would name 0.0.0.0 in tokens and signatures.
    assert.throws(() => loadConfig({ ...prod, HOST: '0.0.0.0' }), /BROKER_PUBLIC_URL is required when HOST is 0\.0\.0\.0/);
    assert.throws(() => loadConfig({ ...prod, HOST: '::' }), ConfigError);
    assert.equal(loadConfig({ ...prod, HOST: '0.0.0.0', BROKER_PUBLIC_URL: 'https://broker.example.com' }).publicUrl, 'https://broker.example.com');
    // The ops token opens every flow's payloads: a short one is refused, and not echoed.
    assert.throws(
      () => loadConfig({ ...prod, BROKER_OPS_TOKEN: 'changeme' }),
      (e: unknown) =>
        e instanceof ConfigError && /BROKER_OPS_TOKEN is 8 characters; in production it must be at least 32/.test(e.message) && !e.message.includes('changeme'),
    );
    assert.equal(loadConfig({ ...prod, BROKER_OPS_TOKEN: 'ef'.repeat(16) }).BROKER_OPS_TOKEN, 'ef'.repeat(16));
  });
});
