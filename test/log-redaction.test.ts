import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { loggerOptions } from '../api/logger';
import { codeFromMail, requestCode, submitCode, uniqueEmail, workflowIdOf, type LoginSessionBody } from './email-login-client';
import { payloadToJson } from './codec-client';
import { startStack, type TestStack } from './harness';

const OPS_TOKEN = `ops-${randomBytes(24).toString('hex')}`;
const lines: string[] = [];

let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_OPS_TOKEN: OPS_TOKEN }, logStream: { write: (line: string) => void lines.push(line) } });
});
after(async () => {
  await stack?.stop();
});

void describe('API logs', () => {
  void test('a whole login leaves no address, code, token or ops token in the log lines', async () => {
    const email = uniqueEmail('Logged');
    const lower = email.toLowerCase();
    const sent = await requestCode(stack, email);
    const mail = stack.ses.mailTo(lower)[0];
    assert.ok(mail);
    const code = codeFromMail(mail.text);
    const wrong = code === '000000' ? '000001' : '000000';
    assert.equal((await submitCode(stack, sent.request_id, wrong)).status, 401);
    const login = await submitCode(stack, sent.request_id, code);
    assert.equal(login.status, 200, login.text);
    const { token } = login.body as LoginSessionBody;
    assert.equal((await stack.request('GET', '/v1/session/me', { token })).status, 200);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token })).status, 204);
    assert.equal((await stack.request('GET', '/v1/session/me', { token })).status, 401);
    // Refused inputs that carry the secrets, and a secret in a query string.
    assert.equal((await stack.request('POST', '/v1/session/email_code', { body: { email: `${lower} ` } })).status, 400);
    assert.equal((await stack.request('POST', '/v1/session/email_login', { body: { request_id: sent.request_id, code: `${code}x` } })).status, 400);
    assert.equal((await stack.request('GET', `/v1/session/me?token=${token}&email=${encodeURIComponent(email)}`, { token })).status, 401);
    // The codec endpoint: the ops token in the header, the address in the decoded answer.
    const history = await stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id)).fetchHistory();
    const input = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    assert.ok(input?.metadata && input.data);
    const decoded = await stack.request('POST', '/codec/decode', {
      token: OPS_TOKEN,
      body: {
        payloads: [payloadToJson(input)],
      },
    });
    assert.equal(decoded.status, 200, decoded.text);
    assert.equal((await stack.request('POST', '/codec/decode', { token: `${OPS_TOKEN}-wrong`, body: { payloads: [] } })).status, 403);

    // The logs are there and are what we expect, so the absence below means something.
    const records = lines.map((l) => JSON.parse(l) as { msg?: string; req?: { url?: string } });
    assert.ok(
      records.some((r) => r.msg === 'incoming request' && r.req?.url === '/v1/session/email_code'),
      'request lines are logged',
    );
    assert.ok(
      records.some((r) => r.msg === 'login code dispatched'),
      'flow lines are logged',
    );
    assert.ok(
      records.some((r) => r.msg === 'email login succeeded'),
      'flow lines are logged',
    );
    assert.ok(
      records.some((r) => r.req?.url?.includes('token=[redacted]')),
      'query secrets are masked, not dropped',
    );

    const all = lines.join('\n');
    const secrets: Record<string, string> = {
      address: lower,
      'address as typed': email,
      'local part': lower.split('@')[0] ?? lower,
      'url-encoded address': encodeURIComponent(email),
      token,
      'token signature': token.split('.')[2] ?? token,
      'ops token': OPS_TOKEN,
    };
    for (const [name, secret] of Object.entries(secrets)) assert.ok(!all.includes(secret), `the logs contain the ${name}`);
    assert.ok(!new RegExp(`(?<!\\d)${code}(?!\\d)`).test(all), 'the logs contain the code');
    assert.ok(!new RegExp(`(?<!\\d)${wrong}(?!\\d)`).test(all), 'the logs contain a typed (wrong) code');
  });

  void test('query secrets are masked by their decoded key: percent-encoded keys, upper case, a secret as the key itself', async () => {
    const from = lines.length;
    const email = uniqueEmail('Encoded').toLowerCase();
    const token = `eyJ${randomBytes(30).toString('base64url')}.${randomBytes(30).toString('base64url')}.${randomBytes(30).toString('base64url')}`;
    const code = String(100000 + (randomBytes(3).readUIntBE(0, 3) % 900000));
    const urls = [
      `/healthz?%65mail=${encodeURIComponent(email)}`,
      `/healthz?access%5Ftoken=${token}`,
      `/healthz?ACCESS_TOKEN=${token}&limit=5`,
      `/healthz?e%6D%61il=${email}`,
      `/healthz?${encodeURIComponent(email)}`,
      `/healthz?${token}`,
      `/healthz?x=1&c%6Fde=${code}`,
      `/healthz?otp=${code}`,
      `/nope?%65mail=${encodeURIComponent(email)}`,
      '/console/device?BCDFGHJK',
    ];
    for (const url of urls) assert.ok([200, 404].includes((await stack.request('GET', url)).status), url);
    const mine = lines.slice(from).map((l) => JSON.parse(l) as { msg?: string; req?: { url?: string } });
    const logged = mine.filter((r) => r.msg === 'incoming request').map((r) => r.req?.url);
    // Every request was logged, by its path and masked query (the plain paging field `limit` is kept).
    assert.deepEqual(logged, [
      '/healthz?email=[redacted]',
      '/healthz?access_token=[redacted]',
      '/healthz?access_token=[redacted]&limit=5',
      '/healthz?email=[redacted]',
      '/healthz?[redacted]',
      '/healthz?[redacted]',
      '/healthz?x=[redacted]&code=[redacted]',
      '/healthz?otp=[redacted]',
      '/nope?email=[redacted]',
      '/console/device?[redacted]',
    ]);
    const all = lines.slice(from).join('\n');
    for (const [name, secret] of Object.entries({
      address: email,
      'encoded address': encodeURIComponent(email),
      'local part': email.split('@')[0] ?? email,
      token,
      'token part': token.split('.')[1] ?? token,
    })) {
      assert.ok(!all.includes(secret), `the logs contain the ${name}`);
    }
    assert.ok(!new RegExp(`(?<!\\d)${code}(?!\\d)`).test(all), 'the logs contain the code');
  });

  void test("an HTTP parse error's raw bytes (its Authorization header, its body) are not logged, even at trace level", () => {
    const out: string[] = [];
    const logger = pino({ ...(loggerOptions('trace') as pino.LoggerOptions) }, { write: (l: string) => void out.push(l) });
    const secret = `Bearer ${randomBytes(24).toString('hex')}`;
    const err = Object.assign(new Error('Parse Error: Header overflow'), {
      code: 'HPE_HEADER_OVERFLOW',
      rawPacket: Buffer.from(`POST /v1/session/refresh HTTP/1.1\r\nAuthorization: ${secret}\r\n\r\n{"refresh_token":"akr_x"}`),
    });
    logger.trace({ err }, 'client error');
    assert.equal(out.length, 1);
    assert.ok(!out[0]?.includes(secret.slice(7)), out[0]);
    assert.ok(!out[0]?.includes(Buffer.from(secret).toString('base64').slice(0, 16)), 'nor in base64');
    assert.match(out[0] ?? '', /"rawPacket":"\[redacted\]"/);
  });

  void test("a caller-chosen X-Request-Id is logged as client_request_id; the request id is the broker's own", async () => {
    const from = lines.length;
    const res = await stack.request('GET', '/healthz', { headers: { 'x-request-id': 'caller-chosen.42' } });
    const brokerId = res.headers.get('x-request-id') ?? '';
    assert.match(brokerId, /^[0-9a-f-]{36}$/);
    const mine = lines.slice(from).map((l) => JSON.parse(l) as { reqId?: string; client_request_id?: string; msg?: string });
    assert.ok(mine.length >= 2, 'request and response lines');
    for (const r of mine) {
      assert.equal(r.reqId, brokerId, r.msg);
      assert.equal(r.client_request_id, 'caller-chosen.42', r.msg);
    }
  });
});
