import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { AkAccount, AkFlow, AkOmniAccount, AkOutcome, AkStage } from '../lib/search-attributes';
import { accountTag } from '../lib/digest';
import { deriveOmniAccount } from '../lib/omni';
import {
  codeFromMail,
  devMail,
  latestCode,
  requestCode,
  rowCounts,
  submitCode,
  uniqueEmail,
  watchFlowStarts,
  workflowIdOf,
  wrongCode,
  type LoginSessionBody,
} from './email-login-client';
import { startStack, type TestStack } from './harness';
import { verifyAuditChain } from '../db/audit-query';

const SEND_BACKOFF_MS = 50;

let stack: TestStack;
before(async () => {
  // Default windows except the resend cooldown (0: one address is asked again at once; the
  // cooldown is pinned in email-login-windows.test.ts) and SES's backoff (50 ms, doubling, instead
  // of 500); a high per-IP limit because this file sends many requests from one address.
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000',
      BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0',
      BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '100',
      BROKER_EMAIL_SEND_BACKOFF_MS: String(SEND_BACKOFF_MS),
    },
  });
});
after(async () => {
  await stack?.stop();
});

const loginRows = async (omni: string) => {
  const r = await stack.db.query<{ sessions: string; audit: string; users: string }>(
    `SELECT (SELECT count(*) FROM sessions WHERE omni_account = $1) AS sessions,
            (SELECT count(*) FROM audit_log WHERE omni_account = $1 AND event = 'login.email') AS audit,
            (SELECT count(*) FROM users WHERE omni_account = $1) AS users`,
    [omni],
  );
  const row = r.rows[0];
  assert.ok(row);
  return { sessions: Number(row.sessions), audit: Number(row.audit), users: Number(row.users) };
};

/**
 * The whole history as bytes (proto wire format) and as JSON (bytes fields in base64). The SDK's
 * historyToJSON is not used: with two protobufjs copies installed it throws "type must be a Type".
 */
async function historyForms(workflowId: string): Promise<{ bytes: string; json: string }> {
  const History = temporal.api.history.v1.History;
  const history = await stack.temporal.workflow.getHandle(workflowId).fetchHistory();
  const wire = History.encode(history).finish();
  const json = JSON.stringify(History.toObject(History.decode(wire), { bytes: String, longs: String, enums: String }));
  return { bytes: Buffer.from(wire).toString('latin1'), json };
}

/** Every base64 spelling of `needle` that survives any alignment inside a longer byte string. */
function base64Forms(needle: Buffer): string[] {
  const forms: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), needle]).toString('base64');
    const start = shift === 0 ? 0 : 4; // the first group mixes in the bytes before the needle
    const total = shift + needle.length;
    const end = total % 3 === 0 ? b64.length : Math.floor(total / 3) * 4; // so does the last partial group
    if (end - start >= 8) forms.push(b64.slice(start, end));
  }
  return forms;
}

/** Asserts none of the secrets occurs in the haystack, raw or base64 (standard and url-safe). */
function assertNoSecrets(what: string, haystack: string, secrets: Record<string, string>): void {
  for (const [name, secret] of Object.entries(secrets)) {
    // Digits-only secrets (the code) are matched as a whole number, not inside timestamps or ids.
    const raw = /^\d+$/.test(secret) ? new RegExp(`(?<!\\d)${secret}(?!\\d)`).test(haystack) : haystack.includes(secret);
    assert.equal(raw, false, `${what} contains the ${name}`);
    const quoted = /^\d+$/.test(secret) ? `"${secret}"` : secret;
    for (const form of base64Forms(Buffer.from(quoted))) {
      const urlSafe = form.replace(/\+/g, '-').replace(/\//g, '_');
      assert.equal(haystack.includes(form) || haystack.includes(urlSafe), false, `${what} contains the ${name} in base64`);
    }
  }
}

void describe('email code login', () => {
  void test('happy path: code by mail (GET /_dev/mail), session, /me, logout', async () => {
    const email = uniqueEmail('Happy');
    const lower = email.toLowerCase();
    const sesBefore = stack.ses.requestCount();
    const sent = await requestCode(stack, email);
    assert.match(sent.request_id, /^[0-9a-f]{32}$/);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(sent.expires_at > now + 500 && sent.expires_at <= now + 601, `expires_at ${sent.expires_at} is ~10 minutes out`);
    assert.ok(sent.resend_after >= now - 1 && sent.resend_after <= now + 1, `resend_after ${sent.resend_after} is now (no cooldown configured)`);
    assert.equal(stack.ses.requestCount() - sesBefore, 1);

    const mails = await devMail(stack, lower);
    assert.equal(mails.length, 1);
    const mail = mails[0];
    assert.ok(mail);
    assert.deepEqual(Object.keys(mail).sort(), ['received_at', 'subject', 'text', 'to']);
    assert.equal(mail.to, lower);
    assert.ok(!Number.isNaN(Date.parse(mail.received_at)));
    const code = codeFromMail(mail.text);
    // The dev route matches the address case-insensitively, like the SES stand-in.
    assert.equal((await devMail(stack, email)).length, 1);

    const login = await submitCode(stack, sent.request_id, code);
    assert.equal(login.status, 200, login.text);
    const session = login.body as LoginSessionBody;
    assert.equal(session.token_type, 'Bearer');
    assert.deepEqual(session.identity, { type: 'email', value: lower });
    assert.equal(session.omni_account, deriveOmniAccount('agentkeys', { type: 'email', value: lower }));
    assert.deepEqual(await loginRows(session.omni_account), { sessions: 1, audit: 1, users: 1 });

    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200, me.text);
    const meBody = me.body as { omni_account: string; user_id: string; identity: { type: string; value: string } };
    assert.equal(meBody.omni_account, session.omni_account);
    assert.equal(meBody.user_id, session.user_id);
    assert.deepEqual(meBody.identity, { type: 'email', value: lower });

    // The code is spent: a second use is refused.
    const reuse = await submitCode(stack, sent.request_id, code);
    assert.equal(reuse.status, 410, reuse.text);
    assert.equal((reuse.body as { error: string }).error, 'expired');

    const out = await stack.request('POST', '/v1/session/logout', { token: session.token });
    assert.equal(out.status, 204);
    const again = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(again.status, 401);
    assert.equal((again.body as { error: string }).error, 'unauthorized');

    // A second login for the same address reuses the account.
    const second = await requestCode(stack, email);
    const login2 = await submitCode(stack, second.request_id, await latestCode(stack, email));
    assert.equal(login2.status, 200, login2.text);
    assert.equal((login2.body as LoginSessionBody).user_id, session.user_id);
    assert.deepEqual(await loginRows(session.omni_account), { sessions: 2, audit: 2, users: 1 });
  });

  void test('history, workflow id and search attributes hold no address, code or token', async () => {
    const email = uniqueEmail('Private');
    const lower = email.toLowerCase();
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const login = await submitCode(stack, sent.request_id, code);
    assert.equal(login.status, 200, login.text);
    const session = login.body as LoginSessionBody;

    const workflowId = workflowIdOf(stack, sent.request_id);
    assert.match(workflowId, /^email-login\/[0-9a-f]{64}$/);
    const handle = stack.temporal.workflow.getHandle(workflowId);
    assert.equal(await handle.result(), 'succeeded');

    const { bytes, json } = await historyForms(workflowId);
    assert.ok(json.includes('emailCodeLoginWorkflow') && json.includes('submitCode'), 'the history is the flow we expect');
    const secrets = {
      address: lower,
      'address as typed': email,
      'local part': lower.split('@')[0] ?? lower,
      code,
      token: session.token,
      'request id': sent.request_id,
    };
    assertNoSecrets('history (proto bytes)', bytes, secrets);
    assertNoSecrets('history (proto JSON)', json, secrets);

    const desc = await handle.describe();
    assert.equal(desc.typedSearchAttributes.get(AkFlow), 'email_login');
    assert.equal(desc.typedSearchAttributes.get(AkOutcome), 'succeeded');
    assert.equal(desc.typedSearchAttributes.get(AkStage), 'done');
    // The account by its keyed tag only: a namespace reader cannot hash an address to find it.
    assert.equal(desc.typedSearchAttributes.get(AkAccount), accountTag(stack.secrets.hmacSecret, session.omni_account));
    assert.equal(desc.typedSearchAttributes.get(AkOmniAccount), undefined);
    assert.match(session.omni_account, /^0x[0-9a-f]{64}$/);
    assert.ok(!desc.memo || Object.keys(desc.memo).length === 0, 'no memo');
    const describeBytes = Buffer.from(temporal.api.workflowservice.v1.DescribeWorkflowExecutionResponse.encode(desc.raw).finish()).toString('latin1');
    assertNoSecrets('describe()', describeBytes, secrets);
    assertNoSecrets('workflow id', workflowId, secrets);
  });

  void test('wrong codes spend the attempt budget of that request, then even its right code is refused', async () => {
    const email = uniqueEmail('Guess');
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const wrong = wrongCode(code);
    for (let left = 4; left >= 1; left--) {
      const res = await submitCode(stack, sent.request_id, wrong);
      assert.equal(res.status, 401, res.text);
      assert.equal((res.body as { error: string }).error, 'invalid_code');
      assert.equal((res.body as { attempts_left: number }).attempts_left, left);
    }
    const fifth = await submitCode(stack, sent.request_id, wrong);
    assert.equal(fifth.status, 429, fifth.text);
    assert.equal((fifth.body as { error: string }).error, 'too_many_attempts');

    const right = await submitCode(stack, sent.request_id, code);
    assert.equal(right.status, 429, right.text);
    assert.equal((right.body as { error: string }).error, 'too_many_attempts');

    // A resend on the locked request is refused too, with a hint when to come back, and nothing is mailed.
    const sesBefore = stack.ses.requestCount();
    const resend = await stack.request('POST', '/v1/session/email_code', { body: { email, request_id: sent.request_id } });
    assert.equal(resend.status, 429, resend.text);
    assert.equal((resend.body as { error: string }).error, 'too_many_attempts');
    assert.match(resend.headers.get('retry-after') ?? '', /^\d+$/);
    assert.equal(stack.ses.requestCount(), sesBefore);

    const omni = deriveOmniAccount('agentkeys', { type: 'email', value: email.toLowerCase() });
    assert.deepEqual(await loginRows(omni), { sessions: 0, audit: 0, users: 0 });
    const desc = await stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id)).describe();
    assert.equal(desc.typedSearchAttributes.get(AkStage), 'locked');

    // The lock belongs to that request: a new request for the address gets its own code and budget.
    const fresh = await requestCode(stack, email);
    assert.notEqual(fresh.request_id, sent.request_id);
    const login = await submitCode(stack, fresh.request_id, await latestCode(stack, email));
    assert.equal(login.status, 200, login.text);
  });

  void test('every request mails a fresh code: after a login, a new request for the address gets another code and the old one is refused', async () => {
    const email = uniqueEmail('Fresh');
    const first = await requestCode(stack, email);
    const firstCode = await latestCode(stack, email);
    const login = await submitCode(stack, first.request_id, firstCode);
    assert.equal(login.status, 200, login.text);

    const second = await requestCode(stack, email);
    assert.notEqual(second.request_id, first.request_id, 'a new request is a new flow');
    const secondCode = await latestCode(stack, email);
    assert.notEqual(secondCode, firstCode, 'the new mail carries another code');
    const rows = await rowCounts(stack.db);

    // The earlier code logs in nowhere: not on the new request, not again on its own.
    const oldOnNew = await submitCode(stack, second.request_id, firstCode);
    assert.equal(oldOnNew.status, 401, oldOnNew.text);
    assert.equal((oldOnNew.body as { error: string }).error, 'invalid_code');
    const oldAgain = await submitCode(stack, first.request_id, firstCode);
    assert.equal(oldAgain.status, 410, oldAgain.text);
    assert.deepEqual(await rowCounts(stack.db), rows, 'the old code wrote nothing');

    // A third request, without logging in on the second: three distinct codes, and only the newest request's works on it.
    const third = await requestCode(stack, email);
    const thirdCode = await latestCode(stack, email);
    assert.equal(new Set([firstCode, secondCode, thirdCode]).size, 3, 'three requests, three codes');
    const crossed = await submitCode(stack, third.request_id, secondCode);
    assert.equal(crossed.status, 401, crossed.text);
    const ok = await submitCode(stack, third.request_id, thirdCode);
    assert.equal(ok.status, 200, ok.text);
    // The second request's own code still works on it: no request kills another's code.
    const secondOk = await submitCode(stack, second.request_id, secondCode);
    assert.equal(secondOk.status, 200, secondOk.text);
  });

  void test("a stranger can neither lock the owner out nor invalidate the owner's code", async () => {
    const email = uniqueEmail('Owner');
    const owner = await requestCode(stack, email);
    const ownerCode = await latestCode(stack, email);

    // The stranger asks for the same address: their own request, not the owner's.
    const stranger = await requestCode(stack, email);
    assert.notEqual(stranger.request_id, owner.request_id, "the stranger does not learn the owner's request_id");
    const strangerCode = await latestCode(stack, email); // mailed to the owner's inbox
    assert.notEqual(strangerCode, ownerCode);

    // Five wrong codes lock the stranger's request, and only that one.
    const wrong = ['000000', '000001', '000002'].find((c) => c !== ownerCode && c !== strangerCode) ?? '';
    for (let left = 4; left >= 1; left--) {
      const res = await submitCode(stack, stranger.request_id, wrong);
      assert.equal(res.status, 401, res.text);
      assert.equal((res.body as { attempts_left: number }).attempts_left, left);
    }
    const locked = await submitCode(stack, stranger.request_id, wrong);
    assert.equal(locked.status, 429, locked.text);
    assert.equal((locked.body as { error: string }).error, 'too_many_attempts');
    // The owner's code on the stranger's request: refused (the code is bound to its request).
    const crossed = await submitCode(stack, stranger.request_id, ownerCode);
    assert.equal(crossed.status, 429, crossed.text);

    // The owner's request has its full attempt budget and its code.
    const ownerWrong = await submitCode(stack, owner.request_id, wrong);
    assert.equal(ownerWrong.status, 401, ownerWrong.text);
    assert.equal((ownerWrong.body as { attempts_left: number }).attempts_left, 4, "the stranger's guesses did not spend the owner's budget");
    const login = await submitCode(stack, owner.request_id, ownerCode);
    assert.equal(login.status, 200, login.text);
    assert.deepEqual((login.body as LoginSessionBody).identity, { type: 'email', value: email.toLowerCase() });
  });

  void test('resend: email_code with the request_id mails that request a new code; a request_id of another address or an unknown one is refused', async () => {
    const email = uniqueEmail('Resend');
    const other = uniqueEmail('Other');
    const sent = await requestCode(stack, email);
    const firstCode = await latestCode(stack, email);

    const again = await requestCode(stack, email, sent.request_id);
    assert.equal(again.request_id, sent.request_id, 'a resend continues the same request');
    const mails = await devMail(stack, email.toLowerCase());
    assert.equal(mails.length, 2);
    const secondCode = codeFromMail(mails[0]?.text ?? '');
    assert.notEqual(secondCode, firstCode, 'a resend mails another code');

    const sesBefore = stack.ses.requestCount();
    const rows = await rowCounts(stack.db);
    // Someone holding this request_id cannot point it at another address.
    const foreign = await stack.request('POST', '/v1/session/email_code', { body: { email: other, request_id: sent.request_id } });
    assert.equal(foreign.status, 400, foreign.text);
    assert.equal((foreign.body as { error: string }).error, 'bad_request');
    assert.match((foreign.body as { message: string }).message, /another address/);
    // A request that does not exist (or has ended) is not revived.
    const unknown = await stack.request('POST', '/v1/session/email_code', { body: { email, request_id: 'f'.repeat(32) } });
    assert.equal(unknown.status, 410, unknown.text);
    assert.equal((unknown.body as { error: string }).error, 'expired');
    assert.equal(stack.ses.requestCount(), sesBefore, 'nothing mailed');
    assert.equal((await devMail(stack, other.toLowerCase())).length, 0);

    // The previous code of the request is dead; the resent one logs in; then the request is over.
    const old = await submitCode(stack, sent.request_id, firstCode);
    assert.equal(old.status, 401, old.text);
    assert.equal((old.body as { error: string }).error, 'invalid_code');
    const login = await submitCode(stack, sent.request_id, secondCode);
    assert.equal(login.status, 200, login.text);
    assert.equal((await rowCounts(stack.db)).sessions, rows.sessions + 1);
    const afterLogin = await stack.request('POST', '/v1/session/email_code', { body: { email, request_id: sent.request_id } });
    assert.equal(afterLogin.status, 410, afterLogin.text);
  });

  void test('16 concurrent submissions of the right code make exactly one session', async () => {
    const email = uniqueEmail('Race');
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const results = await Promise.all(Array.from({ length: 16 }, () => submitCode(stack, sent.request_id, code)));
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, results.map((r) => `${r.status} ${r.text}`).join('\n'));
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 410, r.text);
      assert.equal((r.body as { error: string }).error, 'expired');
    }
    const session = ok[0]?.body as LoginSessionBody;
    assert.deepEqual(await loginRows(session.omni_account), { sessions: 1, audit: 1, users: 1 });
    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200);
  });

  void test('SES throttling and 5xx are retried with backoff by the activity; the caller still gets 202', async () => {
    for (const kind of ['throttle', 'server'] as const) {
      const email = uniqueEmail(`Retry-${kind}`);
      const before = stack.ses.requestCount();
      stack.ses.failNext(2, kind);
      const sent = await requestCode(stack, email);
      assert.equal(stack.ses.requestCount() - before, 3, `${kind}: two failures and one success`);
      // Between the three attempts SES saw the configured backoff, 50 ms then 100 ms (the default
      // 500 ms would have made the second gap a second).
      const [a, b, c] = stack.ses.requestTimes().slice(before);
      const gaps = [b! - a!, c! - b!];
      assert.ok(gaps[0]! >= SEND_BACKOFF_MS - 2 && gaps[1]! >= 2 * SEND_BACKOFF_MS - 2, `${kind}: retried with backoff (gaps ${gaps.join(', ')} ms)`);
      assert.ok(gaps[1]! < 10 * SEND_BACKOFF_MS, `${kind}: the configured backoff, not the default (gaps ${gaps.join(', ')} ms)`);
      assert.equal((await devMail(stack, email.toLowerCase())).length, 1, 'exactly one mail delivered');
      const login = await submitCode(stack, sent.request_id, await latestCode(stack, email));
      assert.equal(login.status, 200, login.text);
    }
  });

  void test('a permanent SES refusal ends the flow cleanly: 503, outcome delivery_failed, no session', async () => {
    const email = uniqueEmail('Rejected');
    const lower = email.toLowerCase();
    const before = stack.ses.requestCount();
    stack.ses.failNext(1, 'reject');
    const starts = watchFlowStarts(stack.temporal);
    const res = await stack.request('POST', '/v1/session/email_code', { body: { email } }).finally(() => starts.restore());
    assert.equal(res.status, 503, res.text);
    assert.equal((res.body as { error: string }).error, 'unavailable');
    assert.equal(stack.ses.requestCount() - before, 1, 'a refusal is not retried');

    assert.equal(starts.workflowIds.length, 1, 'one flow started');
    const handle = stack.temporal.workflow.getHandle(starts.workflowIds[0] ?? '');
    assert.equal(await handle.result(), 'delivery_failed');
    const desc = await handle.describe();
    assert.equal(desc.status.name, 'COMPLETED');
    assert.equal(desc.typedSearchAttributes.get(AkOutcome), 'delivery_failed');
    assert.equal(desc.typedSearchAttributes.get(AkFlow), 'email_login');
    const history = await historyForms(handle.workflowId);
    assertNoSecrets('history of a failed delivery', history.bytes + history.json, { address: lower });
    const omni = deriveOmniAccount('agentkeys', { type: 'email', value: lower });
    assert.deepEqual(await loginRows(omni), { sessions: 0, audit: 0, users: 0 });

    // The address is not stuck: the next request starts a fresh flow and succeeds.
    const sent = await requestCode(stack, email);
    const login = await submitCode(stack, sent.request_id, await latestCode(stack, email));
    assert.equal(login.status, 200, login.text);
  });

  void test('logins keep chaining the audit log past ten rows', async () => {
    // Regression: the previous row was once found by ORDER BY the text alias of seq ('9' > '10').
    for (let n = (await rowCounts(stack.db)).audit; n < 12; n++) {
      const email = uniqueEmail(`Chain${n}`);
      const sent = await requestCode(stack, email);
      const login = await submitCode(stack, sent.request_id, await latestCode(stack, email));
      assert.equal(login.status, 200, `login ${n + 1}: ${login.text}`);
    }
    const rows = (
      await stack.db.query<{ shard: number; shard_seq: string; prev_hash: string; hash: string }>(
        'SELECT shard, shard_seq::text AS shard_seq, prev_hash, hash FROM audit_log ORDER BY shard, audit_log.shard_seq',
      )
    ).rows;
    assert.ok(rows.length >= 12);
    rows.forEach((row, i) => {
      const prev = rows[i - 1];
      if (prev?.shard !== row.shard) return assert.equal(row.shard_seq, '1', `shard ${row.shard} starts at row 1`);
      assert.equal(row.shard_seq, String(BigInt(prev.shard_seq) + 1n), `shard ${row.shard} has no gap`);
      assert.equal(row.prev_hash, prev.hash, `shard ${row.shard} row ${row.shard_seq} chains to the row before it`);
    });
    // The reading side must order numerically too: the verify walk and the per-account listing.
    const verdict = await verifyAuditChain(stack.db, { batchSize: 5 });
    assert.deepEqual(verdict.ok ? { ok: true, rows: verdict.rows } : verdict, { ok: true, rows: rows.length });
  });

  void test('SES failing on every attempt exhausts the retries and answers 503, not a hang', async () => {
    const email = uniqueEmail('Down');
    const before = stack.ses.requestCount();
    stack.ses.failAlways('server');
    try {
      const res = await stack.request('POST', '/v1/session/email_code', { body: { email } });
      assert.equal(res.status, 503, res.text);
      assert.equal((res.body as { error: string }).error, 'unavailable');
    } finally {
      stack.ses.failAlways(null);
    }
    assert.equal(stack.ses.requestCount() - before, 4, 'four attempts (the retry policy maximum)');
    assert.equal((await devMail(stack, email.toLowerCase())).length, 0);
  });
});
