import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { MAX_CLIENT_AUTH_DEPTH } from '../lib/client-auth';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { startStack, type TestStack } from './harness';
import { assertUnchanged, dbSnapshot, spyWorkflowStarts, type HttpAnswer, type WorkflowStartSpy } from './adversarial-probes';
import { walletLogin } from './mint-client';

/**
 * The edge of the broker against a hostile caller: ClientAuth built to crash or smuggle secrets
 * into storage, caller-chosen request ids, what /readyz tells a stranger, and the security
 * headers of every kind of answer (JSON, errors, the TEE envelope, the /docs UI and its assets).
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

function teeLogin(clientAuth: unknown): { identity: Identity; omni: string; token: string; send: () => ReturnType<TestStack['request']> } {
  const identity: Identity = { type: 'email', value: `edge.${randomBytes(6).toString('hex')}@example.com` };
  const omni = deriveOmniAccount('agentkeys', identity);
  const token = signTeeJwt(tee.privateKey, teeClaims(omni, 'access', 'agentkeys', nowS()));
  const body =
    typeof clientAuth === 'string'
      ? `{"userId":${JSON.stringify(identity)},"clientId":"agentkeys","clientAuth":${clientAuth},"heimaLoginSuccess":true}`
      : { userId: identity, clientId: 'agentkeys', clientAuth, heimaLoginSuccess: true };
  return { identity, omni, token, send: () => stack.request('POST', '/v3/account/post_heima_login', { token, body }) };
}

function assertEnvelopeRefusal(res: HttpAnswer, status: number, message: RegExp, what: string): void {
  assert.equal(res.status, status, `${what}: ${res.text.slice(0, 300)}`);
  const b = res.body as { code: number; message: string; data: unknown };
  assert.equal(b.code, status * 100, what);
  assert.equal(b.data, null, what);
  assert.match(b.message, message, what);
  assert.ok(!res.text.includes('    at '), `${what}: a stack trace in the answer`);
}

/** Nested arrays `depth` deep around a string. */
const nestedArrays = (depth: number) => `${'['.repeat(depth)}"x"${']'.repeat(depth)}`;

void describe('ClientAuth: too deep, unknown keys, secrets', () => {
  void test('nested 5000 deep (within the body limit) → 400 with a clear message, nothing recorded, no workflow; deeper than the bound → 400', async () => {
    const cases: [string, string][] = [
      ['5000 deep in value', `{"type":"wildmeta","value":{"google_code":${nestedArrays(5000)}}}`],
      ['5000 deep beside value', `{"type":"wildmeta","extra":${nestedArrays(5000)}}`],
      [`${MAX_CLIENT_AUTH_DEPTH + 1} deep`, `{"type":"wildmeta","value":${nestedArrays(MAX_CLIENT_AUTH_DEPTH)}}`],
    ];
    const snapshot = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const [name, clientAuth] of cases) {
      assertEnvelopeRefusal(await teeLogin(clientAuth).send(), 400, new RegExp(`clientAuth is nested deeper than ${MAX_CLIENT_AUTH_DEPTH} levels`), name);
    }
    await assertUnchanged(stack.db, snapshot, 'deep clientAuth');
    assert.equal(starts.count(), started, 'a refused callback started a workflow');
    // Exactly at the bound it is accepted (and, an unknown shape, stored as a digest).
    const atBound = teeLogin(`{"type":"wildmeta","value":${nestedArrays(MAX_CLIENT_AUTH_DEPTH - 1)}}`);
    const res = await atBound.send();
    assert.equal(res.status, 200, res.text);
    const stored = await stack.db.query<{ client_auth: unknown }>('SELECT client_auth FROM tee_logins WHERE omni_account = $1', [atBound.omni]);
    assert.deepEqual(stored.rows[0]?.client_auth, { type: 'wildmeta', value: (stored.rows[0]?.client_auth as { value: unknown }).value });
    assert.match(JSON.stringify(stored.rows[0]?.client_auth), /^\{"type":"wildmeta","value":"hmac:[0-9a-f]{32}"\}$/);
  });

  void test('known fields are kept, secrets and unknown keys (otp, pin, mnemonic, api_key, jwt, credential, …) are only digests; odd key names are dropped', async () => {
    const secrets = {
      signature: `0x${randomBytes(65).toString('hex')}`,
      otp: '493817',
      pin: '80417',
      mnemonic: 'abandon ability able about above absent absorb abstract absurd abuse access accident',
      api_key: `sk_live_${randomBytes(12).toString('hex')}`,
      jwt: `eyJhbGciOiJIUzI1NiJ9.${randomBytes(12).toString('base64url')}.${randomBytes(12).toString('base64url')}`,
      password: `pw-${randomBytes(8).toString('hex')}`,
      outer: `outer-${randomBytes(8).toString('hex')}`,
      odd: `odd-${randomBytes(8).toString('hex')}`,
    };
    const main = `0x${randomBytes(20).toString('hex')}`;
    const agent = `0x${randomBytes(20).toString('hex')}`;
    const clientAuth = {
      type: 'wildmeta_hl',
      value: {
        agent_address: agent,
        main_address: main,
        business_json: '{"builder":"0x0"}',
        login_type: 1,
        signature: secrets.signature,
        otp: secrets.otp,
        pin: secrets.pin,
        mnemonic: secrets.mnemonic,
        api_key: secrets.api_key,
        jwt: secrets.jwt,
        credential: { password: secrets.password },
        'not a plain name!': secrets.odd,
      },
      session_secret: secrets.outer,
    };
    const login = teeLogin(clientAuth);
    const res = await login.send();
    assert.equal(res.status, 200, res.text);
    const stored = await stack.db.query<{ client_auth: { type: string; value: Record<string, unknown>; [k: string]: unknown } }>(
      'SELECT client_auth FROM tee_logins WHERE omni_account = $1',
      [login.omni],
    );
    const auth = stored.rows[0]?.client_auth;
    assert.ok(auth);
    assert.equal(auth.type, 'wildmeta_hl');
    assert.deepEqual(
      {
        agent_address: auth.value.agent_address,
        main_address: auth.value.main_address,
        business_json: auth.value.business_json,
        login_type: auth.value.login_type,
      },
      { agent_address: agent, main_address: main, business_json: '{"builder":"0x0"}', login_type: 1 },
    );
    for (const key of ['signature', 'otp', 'pin', 'mnemonic', 'api_key', 'jwt', 'credential'])
      assert.match(String(auth.value[key]), /^hmac:[0-9a-f]{32}$/, key);
    assert.match(String(auth.session_secret), /^hmac:[0-9a-f]{32}$/);
    assert.deepEqual(Object.keys(auth.value).sort(), [
      'agent_address',
      'api_key',
      'business_json',
      'credential',
      'jwt',
      'login_type',
      'main_address',
      'mnemonic',
      'otp',
      'pin',
      'signature',
    ]);
    // No raw secret anywhere in the database.
    const everything = await stack.db.query<{ t: string }>(
      "SELECT (SELECT coalesce(string_agg(x::text, '|'), '') FROM tee_logins x) || (SELECT coalesce(string_agg(a::text, '|'), '') FROM audit_log a) AS t",
    );
    const text = everything.rows[0]?.t ?? '';
    for (const [name, secret] of Object.entries(secrets)) assert.ok(!text.includes(secret), `the database holds the raw ${name}`);
  });
});

void describe('request ids', () => {
  void test('a caller-chosen X-Request-Id never becomes the request id of an audit row', async () => {
    const chosen = `forged-${randomBytes(4).toString('hex')}`;
    const session = await walletLogin(stack);
    const mint = await stack.request('POST', '/v1/mint-oidc-jwt', { token: session.token, headers: { 'x-request-id': chosen } });
    assert.equal(mint.status, 200, mint.text);
    const mintId = mint.headers.get('x-request-id');
    assert.match(mintId ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(mint.headers.get('x-client-request-id'), chosen);
    const logout = await stack.request('POST', '/v1/session/logout', { token: session.token, headers: { 'x-request-id': chosen } });
    assert.equal(logout.status, 204);
    const logoutId = logout.headers.get('x-request-id');
    const rows = await stack.db.query<{ event: string; request_id: string | null; details: Record<string, unknown> }>(
      'SELECT event, request_id, details FROM audit_log WHERE omni_account = $1 ORDER BY audit_log.seq',
      [session.omni_account],
    );
    assert.ok(!JSON.stringify(rows.rows).includes(chosen), `the caller's id is in an audit row: ${JSON.stringify(rows.rows)}`);
    assert.equal(rows.rows.find((r) => r.event === 'session.logout')?.request_id, logoutId);
    const mintRows = rows.rows.filter((r) => r.event.startsWith('mint.'));
    assert.ok(mintRows.length > 0);
    // The intent row names the HTTP request that asked for the mint: the broker's id.
    assert.ok(
      mintRows.some((r) => r.details.http_request_id === mintId),
      JSON.stringify(mintRows),
    );
    for (const r of mintRows) if ('http_request_id' in r.details) assert.equal(r.details.http_request_id, mintId);
  });
});

void describe('/readyz to strangers', () => {
  void test('ready or not and nothing else: no key thumbprint, namespace or task queue, whatever bearer is sent', async () => {
    const session = await walletLogin(stack);
    const teeToken = signTeeJwt(tee.privateKey, teeClaims(session.omni_account, 'access', 'agentkeys', nowS()));
    for (const [name, headers] of Object.entries({
      none: {} as Record<string, string>,
      session: { authorization: `Bearer ${session.token}` },
      'TEE token': { authorization: `Bearer ${teeToken}` },
      'ops token, lower-case scheme and a space too many': { authorization: `bearer  ${stack.config.BROKER_OPS_TOKEN ?? ''}` },
      'ops token prefix': { authorization: `Bearer ${(stack.config.BROKER_OPS_TOKEN ?? '').slice(0, -1)}` },
    })) {
      const r = await stack.request('GET', '/readyz', { headers });
      assert.equal(r.status, 200, name);
      assert.equal(r.text, '{"status":"ready"}', name);
    }
    const full = await stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
    assert.match(full.text, /thumbprint/, 'control: the ops token sees the detail');
    assert.match(full.text, new RegExp(stack.config.BROKER_TASK_QUEUE));
  });
});

/** The API's policy: a JSON answer loads nothing and is framed by no one. */
function assertApiHeaders(headers: Headers, what: string): void {
  assert.equal(headers.get('x-content-type-options'), 'nosniff', what);
  assert.equal(headers.get('x-frame-options'), 'DENY', what);
  assert.equal(headers.get('referrer-policy'), 'no-referrer', what);
  const csp = headers.get('content-security-policy') ?? '';
  for (const d of ["default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"])
    assert.ok(csp.includes(d), `${what}: CSP ${csp} lacks ${d}`);
  // The dev broker is plain http: no HSTS (it would pin a browser to https for this host).
  assert.equal(headers.get('strict-transport-security'), null, what);
}

void describe('security headers', () => {
  void test('every kind of answer: JSON, text, errors, 404, the TEE envelope, the OIDC documents', async () => {
    const session = await walletLogin(stack);
    const answers: [string, Awaited<ReturnType<TestStack['request']>>][] = [
      ['/healthz', await stack.request('GET', '/healthz')],
      ['/v1/session/me', await stack.request('GET', '/v1/session/me', { token: session.token })],
      ['401', await stack.request('GET', '/v1/session/me')],
      ['400', await stack.request('POST', '/v1/session/wallet_login', { body: { nope: 1 } })],
      ['404', await stack.request('GET', '/nope')],
      ['TEE envelope 401', await stack.request('POST', '/v3/account/add_wallet')],
      ['jwks', await stack.request('GET', '/.well-known/jwks.json')],
      ['openid-configuration', await stack.request('GET', '/.well-known/openid-configuration')],
    ];
    for (const [what, res] of answers) assertApiHeaders(res.headers, `${what} (${res.status})`);
  });

  void test('/docs: its own policy lets the UI load its scripts, styles and images from this origin, and nothing else; every asset it names is served with the right type', async () => {
    const page = await stack.request('GET', '/docs/');
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    const csp = Object.fromEntries(
      (page.headers.get('content-security-policy') ?? '')
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0])
        .map(([name, ...sources]) => [name, sources]),
    ) as Record<string, string[]>;
    assert.deepEqual(csp['script-src'], ["'self'"], 'scripts from this origin only, no inline, no eval');
    assert.deepEqual(csp['frame-ancestors'], ["'none'"]);
    assert.deepEqual(csp['object-src'], ["'none'"]);
    assert.ok(csp['img-src']?.includes('data:') && csp['img-src'].includes("'self'"), 'swagger-ui draws its icons from data: URIs');
    assert.ok(csp['connect-src']?.includes("'self'"), 'the UI fetches the OpenAPI document');

    // No inline script the policy would block; every script, stylesheet and icon is same-origin and served.
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(page.text), 'an inline <script> the CSP blocks');
    const assets = [...page.text.matchAll(/<(?:script[^>]*\bsrc|link[^>]*\bhref)="([^"]+)"/g)].map((m) => m[1] ?? '');
    assert.ok(assets.length >= 5, assets.join(', '));
    const expectedType: [RegExp, RegExp][] = [
      [/\.js$/, /^application\/javascript/],
      [/\.css$/, /^text\/css/],
      [/\.png$/, /^image\/png/],
    ];
    for (const asset of assets) {
      const url = new URL(asset, `${stack.url}/docs/`);
      assert.equal(url.origin, stack.url, `${asset} is not same-origin`);
      const res = await fetch(url);
      assert.equal(res.status, 200, asset);
      const type = expectedType.find(([ext]) => ext.test(url.pathname))?.[1];
      assert.ok(type, `unexpected asset ${asset}`);
      // With nosniff a browser refuses a script or stylesheet served under another type.
      assert.match(res.headers.get('content-type') ?? '', type, asset);
      await res.arrayBuffer();
    }
    // The initializer fetches the OpenAPI document from this origin.
    const initializer = await (await fetch(`${stack.url}/docs/static/swagger-initializer.js`)).text();
    assert.match(initializer, /url: '\.\/json'|"url":"\.\/json"|\/docs\/json|\.\/json/);
    const doc = await stack.request('GET', '/docs/json');
    assert.equal(doc.status, 200);
  });
});
