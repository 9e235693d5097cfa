import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { spyWorkflowStarts } from './adversarial-probes';
import { requestCode, rowCounts, workflowIdOf } from './email-login-client';
import { startStack, type TestStack } from './harness';

let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000' } });
});
after(async () => {
  await stack?.stop();
});

interface Case {
  name: string;
  path: '/v1/session/email_code' | '/v1/session/email_login';
  body: string;
  contentType?: string;
  status: number;
  error: string;
  /** A word the message must contain, so the caller learns what was wrong. */
  says?: RegExp;
}

const hex32 = () => randomBytes(16).toString('hex');
const limit = 16 * 1024; // BROKER_BODY_LIMIT_BYTES default

const cases: Case[] = [
  // POST /v1/session/email_code
  { name: 'malformed JSON', path: '/v1/session/email_code', body: '{"email": "a@example.com"', status: 400, error: 'bad_request', says: /json/i },
  { name: 'empty JSON body', path: '/v1/session/email_code', body: '', status: 400, error: 'bad_request' },
  { name: 'a JSON array', path: '/v1/session/email_code', body: '[]', status: 400, error: 'bad_request' },
  { name: 'missing email', path: '/v1/session/email_code', body: '{}', status: 400, error: 'bad_request', says: /email/ },
  { name: 'email not a string', path: '/v1/session/email_code', body: '{"email": 42}', status: 400, error: 'bad_request', says: /email/ },
  { name: 'invalid email', path: '/v1/session/email_code', body: '{"email": "not-an-address"}', status: 400, error: 'bad_request', says: /email/ },
  { name: 'email with two @', path: '/v1/session/email_code', body: '{"email": "a@b@example.com"}', status: 400, error: 'bad_request', says: /email/ },
  {
    name: '10 KB email',
    path: '/v1/session/email_code',
    body: JSON.stringify({ email: `${'a'.repeat(10 * 1024)}@example.com` }),
    status: 400,
    error: 'bad_request',
    says: /email/,
  },
  {
    name: 'local part of 65 octets (RFC 5321 allows 64)',
    path: '/v1/session/email_code',
    body: JSON.stringify({ email: `${'a'.repeat(65)}@example.com` }),
    status: 400,
    error: 'bad_request',
    says: /local part.*64 octets/,
  },
  {
    name: 'address of 65 bytes (an OmniAccount keeps 64)',
    path: '/v1/session/email_code',
    body: JSON.stringify({ email: `${'a'.repeat(65 - '@example.com'.length)}@example.com` }),
    status: 400,
    error: 'bad_request',
    says: /longer than 64 bytes/,
  },
  {
    name: 'request_id of the retired form on email_code',
    path: '/v1/session/email_code',
    body: JSON.stringify({ email: 'a@example.com', request_id: `${hex32()}.${hex32()}` }),
    status: 400,
    error: 'bad_request',
    says: /request_id/,
  },
  {
    name: 'request_id not a string',
    path: '/v1/session/email_code',
    body: JSON.stringify({ email: 'a@example.com', request_id: 7 }),
    status: 400,
    error: 'bad_request',
    says: /request_id/,
  },
  {
    // 413 is the honest status for a body over BROKER_BODY_LIMIT_BYTES (documented in the README section).
    name: 'body over BROKER_BODY_LIMIT_BYTES',
    path: '/v1/session/email_code',
    body: JSON.stringify({ email: 'big@example.com', padding: 'x'.repeat(limit) }),
    status: 413,
    error: 'payload_too_large',
  },
  { name: 'text/plain', path: '/v1/session/email_code', body: 'a@example.com', contentType: 'text/plain', status: 415, error: 'bad_request', says: /JSON/ },
  {
    name: 'form encoded',
    path: '/v1/session/email_code',
    body: 'email=a%40example.com',
    contentType: 'application/x-www-form-urlencoded',
    status: 415,
    error: 'bad_request',
    says: /JSON/,
  },
  // POST /v1/session/email_login
  {
    name: 'missing code',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: hex32() }),
    status: 400,
    error: 'bad_request',
    says: /code/,
  },
  {
    name: 'missing request_id',
    path: '/v1/session/email_login',
    body: JSON.stringify({ code: '123456' }),
    status: 400,
    error: 'bad_request',
    says: /request_id/,
  },
  {
    name: 'code with letters',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: hex32(), code: '12a456' }),
    status: 400,
    error: 'bad_request',
    says: /code/,
  },
  {
    name: 'code of 5 digits',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: hex32(), code: '12345' }),
    status: 400,
    error: 'bad_request',
    says: /code/,
  },
  {
    name: 'code as a number',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: hex32(), code: 123456 }),
    status: 400,
    error: 'bad_request',
    says: /code/,
  },
  {
    name: 'malformed request_id',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: 'abc', code: '123456' }),
    status: 400,
    error: 'bad_request',
    says: /request_id/,
  },
  {
    name: 'request_id with a path',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: `../${hex32()}.${hex32()}`, code: '123456' }),
    status: 400,
    error: 'bad_request',
    says: /request_id/,
  },
  {
    name: 'upper-case request_id',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: `${hex32()}.${hex32()}`.toUpperCase(), code: '123456' }),
    status: 400,
    error: 'bad_request',
    says: /request_id/,
  },
  {
    name: 'unknown request_id',
    path: '/v1/session/email_login',
    body: JSON.stringify({ request_id: hex32(), code: '123456' }),
    status: 410,
    error: 'expired',
  },
  { name: 'email_login malformed JSON', path: '/v1/session/email_login', body: '{"request_id":', status: 400, error: 'bad_request', says: /json/i },
];

const emailSends = async (): Promise<number> => Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM email_sends')).rows[0]?.n);

void describe('email login input validation', () => {
  void test('bad input gets a clear 4xx and changes nothing', async () => {
    const starts = spyWorkflowStarts(stack.temporal);
    try {
      for (const c of cases) {
        const res = await stack.request('POST', c.path, { body: c.body, headers: { 'content-type': c.contentType ?? 'application/json' } });
        assert.equal(res.status, c.status, `${c.name}: ${res.text}`);
        const body = res.body as { error: string; message: string };
        assert.equal(body.error, c.error, `${c.name}: ${res.text}`);
        assert.equal(typeof body.message, 'string', c.name);
        if (c.says) assert.match(body.message, c.says, c.name);
        assert.ok(!res.text.includes('    at '), `${c.name}: no stack trace`);
        assert.ok(res.text.length < 1000, `${c.name}: the answer does not echo the input`);
      }

      assert.deepEqual(await rowCounts(stack.db), { users: 0, sessions: 0, audit: 0 });
      assert.equal(await emailSends(), 0, 'an email send was recorded');
      assert.equal(stack.ses.requestCount(), 0, 'no mail sent');
      assert.equal(starts.count(), 0, 'a refused request started a workflow');

      // Positive control: a valid request (the whole address at the 64-byte identity limit) is
      // counted as one start, of its own flow, and records its send, so the zeros above mean something.
      const sent = await requestCode(stack, `${'c'.repeat(64 - '@example.com'.length)}@example.com`);
      assert.equal(starts.count(), 1);
      const described = await stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id)).describe();
      assert.equal(described.taskQueue, stack.config.BROKER_TASK_QUEUE);
      assert.equal(await emailSends(), 1);
    } finally {
      starts.restore();
    }
  });
});
