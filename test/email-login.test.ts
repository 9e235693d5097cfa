import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startStack, type TestStack } from './harness';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const codeFrom = (text: string): string => {
  const m = /\b(\d{6})\b/.exec(text);
  assert.ok(m?.[1], `no code in mail: ${text}`);
  return m[1];
};

void describe('email code login', () => {
  void test('happy path: code by mail, session, /me, logout', async () => {
    const email = `User.${Date.now()}@Example.com`;
    const sent = await stack.request('POST', '/v1/session/email_code', { body: { email } });
    assert.equal(sent.status, 202, sent.text);
    const { request_id } = sent.body as { request_id: string };
    const mail = await stack.ses.waitForMail(email.toLowerCase());
    const code = codeFrom(mail.text);
    const login = await stack.request('POST', '/v1/session/email_login', { body: { request_id, code } });
    assert.equal(login.status, 200, login.text);
    const session = login.body as { token: string; omni_account: string; identity: { type: string; value: string } };
    assert.deepEqual(session.identity, { type: 'email', value: email.toLowerCase() });
    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200, me.text);
    assert.equal((me.body as { omni_account: string }).omni_account, session.omni_account);
    const out = await stack.request('POST', '/v1/session/logout', { token: session.token });
    assert.equal(out.status, 204);
    const again = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(again.status, 401);
  });
});
