import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { emailKey } from '../lib/email-login-code';
import { emailSendKey } from '../lib/email-send-budget';
import { AkOutcome } from '../lib/search-attributes';
import { FailureType } from '../workflows/definitions';
import { requestCodeUpdate, type EmailCodeLoginInput } from '../workflows/email-login.definitions';
import type { emailCodeLoginWorkflow } from '../workflows/email-login';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { devMail, latestCode, requestCode, submitCode, uniqueEmail, workflowIdOf } from './email-login-client';
import { startStack, type TestStack } from './harness';

// Two codes per mailbox per requester network per hour, twelve per mailbox in all, and no
// cooldown, so the hourly budgets are what refuse (an attacker waiting out each cooldown, without
// the wait). The test client is 127.0.0.1, the trusted load balancer: X-Forwarded-For names the
// requester, so one test presents many networks.
const PER_HOUR = 2;
const CEILING = 12;

let stack: TestStack;
before(async () => {
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: String(PER_HOUR),
      BROKER_RATE_LIMIT_EMAIL_PER_HOUR: String(CEILING),
      BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0',
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000',
      BROKER_TRUST_PROXY: '127.0.0.1/32',
    },
  });
});
after(async () => {
  await stack?.stop();
});

const sendsOf = async (email: string) =>
  (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM email_sends WHERE address_key = $1', [emailSendKey(stack.secrets.hmacSecret, email)]))
    .rows[0]?.n;

/** email_code as a requester at `from` (an X-Forwarded-For entry the trusted balancer passes on). */
const askFrom = (email: string, from?: string, requestId?: string) =>
  stack.request('POST', '/v1/session/email_code', {
    body: requestId === undefined ? { email } : { email, request_id: requestId },
    headers: from === undefined ? {} : { 'x-forwarded-for': from },
  });

/** A refusal by the hourly budget: 429, Retry-After is the hour (not a cooldown), nothing mailed, no row, no flow. */
async function assertHourRefusal(email: string, from: string, message: RegExp, what: string): Promise<void> {
  const starts = spyWorkflowStarts(stack.temporal);
  const rows = await dbSnapshot(stack.db);
  const ses = stack.ses.requestCount();
  try {
    const res = await askFrom(email, from);
    assertRefused(res, 429, 'rate_limited', message, what);
    const retryAfter = Number(res.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter > 3500 && retryAfter <= 3600, `${what}: Retry-After ${retryAfter}`);
    assert.equal(starts.count(), 0, `${what}: a refused request started a flow`);
  } finally {
    starts.restore();
  }
  await assertUnchanged(stack.db, rows, what);
  assert.equal(stack.ses.requestCount(), ses, `${what}: nothing mailed`);
}

/** Mails the SES stand-in accepted for any of `addresses`. */
const mailsTo = (addresses: readonly string[]) => addresses.reduce((n, a) => n + stack.ses.mailTo(a.toLowerCase()).length, 0);

void describe('email login: the per-address send budget holds across requests', () => {
  void test('from one network, new requests and resends share the budget: 429 rate_limited with Retry-After, nothing mailed, no flow started, the earlier codes still work', async () => {
    const email = uniqueEmail('Budget');
    const a = await requestCode(stack, email);
    const aCode = await latestCode(stack, email);
    const b = await requestCode(stack, email);
    const bCode = await latestCode(stack, email);
    assert.equal(await sendsOf(email), PER_HOUR);

    const starts = spyWorkflowStarts(stack.temporal);
    const rows = await dbSnapshot(stack.db);
    const ses = stack.ses.requestCount();
    try {
      for (const body of [{ email }, { email: email.toUpperCase() }, { email, request_id: a.request_id }, { email, request_id: b.request_id }]) {
        const res = await stack.request('POST', '/v1/session/email_code', { body });
        assertRefused(res, 429, 'rate_limited', /too many codes/, JSON.stringify(body));
        const retryAfter = Number(res.headers.get('retry-after'));
        // The hour is what is waited out, not a cooldown.
        assert.ok(Number.isInteger(retryAfter) && retryAfter > 3500 && retryAfter <= 3600, `Retry-After ${retryAfter}`);
      }
      assert.equal(starts.count(), 0, 'a refused request started a flow');
    } finally {
      starts.restore();
    }
    await assertUnchanged(stack.db, rows, 'budget refusals');
    assert.equal(stack.ses.requestCount(), ses, 'nothing mailed');
    assert.equal((await devMail(stack, email.toLowerCase())).length, PER_HOUR);

    // Another address is not affected.
    await requestCode(stack, uniqueEmail('Neighbour'));

    // The refusals did not touch the requests already mailed.
    assert.equal((await submitCode(stack, a.request_id, aCode)).status, 200);
    assert.equal((await submitCode(stack, b.request_id, bCode)).status, 200);
  });

  void test('concurrent requests for one address cannot overdraw the budget: exactly the budget is mailed', async () => {
    const email = uniqueEmail('Overdraw');
    const results = await Promise.all(Array.from({ length: 8 }, () => stack.request('POST', '/v1/session/email_code', { body: { email } })));
    const accepted = results.filter((r) => r.status === 202);
    assert.equal(accepted.length, PER_HOUR, results.map((r) => `${r.status} ${r.text}`).join('\n'));
    for (const r of results.filter((x) => x.status !== 202)) {
      assertRefused(r, 429, 'rate_limited', /too many codes/);
      assert.match(r.headers.get('retry-after') ?? '', /^\d+$/);
    }
    assert.equal((await devMail(stack, email.toLowerCase())).length, PER_HOUR);
    assert.equal(await sendsOf(email), PER_HOUR);
  });

  void test('the send activity is the authority: a flow started past the API check mails nothing and ends rate_limited', async () => {
    const email = uniqueEmail('Authority').toLowerCase();
    const key = emailKey(stack.secrets.hmacSecret, email);
    const network = 'ab'.repeat(16);
    // The budget of this network is spent (by flows the API check did not see yet).
    for (let i = 0; i < PER_HOUR; i++) {
      await stack.db.query('INSERT INTO email_sends (dispatch_key, address_key, network_key, sent_at) VALUES ($1, $2, $3, now())', [
        randomBytes(16).toString('hex'),
        key,
        network,
      ]);
    }
    const request_id = randomBytes(16).toString('hex');
    const input: EmailCodeLoginInput = {
      request_id,
      email,
      email_key: key,
      code_salt: randomBytes(16).toString('hex'),
      settings: { ttlSeconds: 60, maxAttempts: 5, resendCooldownSeconds: 0, maxSends: 5, firstDispatchSeconds: 60, retryWindowSeconds: 120 },
    };
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof emailCodeLoginWorkflow>('emailCodeLoginWorkflow', {
      workflowId: workflowIdOf(stack, request_id),
      taskQueue: stack.config.BROKER_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
    });
    const ses = stack.ses.requestCount();
    const refused = await stack.temporal.workflow
      .executeUpdateWithStart(requestCodeUpdate, { args: [{ email_key: key, network_key: network }], startWorkflowOperation })
      .then(
        () => assert.fail('the update was accepted'),
        (e: unknown) => e,
      );
    assert.ok(refused instanceof WorkflowUpdateFailedError, String(refused));
    assert.ok(refused.cause instanceof ApplicationFailure && refused.cause.type === FailureType.rateLimited, String(refused.cause));
    assert.equal(stack.ses.requestCount(), ses, 'nothing mailed');
    const handle = await startWorkflowOperation.workflowHandle();
    assert.equal(await handle.result(), 'rate_limited');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'rate_limited');
    assert.equal(await sendsOf(email), PER_HOUR, 'a refusal reserves nothing');
  });

  void test('the ledger holds keyed digests only, and the hourly purge drops what can no longer decide anything', async () => {
    const email = uniqueEmail('Ledger');
    await requestCode(stack, email);
    const rows = (await stack.db.query<{ dispatch_key: string; address_key: string }>('SELECT dispatch_key, address_key FROM email_sends')).rows;
    const text = JSON.stringify(rows).toLowerCase();
    assert.ok(!text.includes(email.toLowerCase()) && !text.includes(email.split('@')[0]?.toLowerCase() ?? email), 'no address in the ledger');
    for (const r of rows) assert.match(`${r.dispatch_key} ${r.address_key}`, /^[0-9a-f]{32} [0-9a-f]{32}$/);

    const stale = randomBytes(16).toString('hex');
    await stack.db.query("INSERT INTO email_sends (dispatch_key, address_key, sent_at) VALUES ($1, $2, now() - interval '61 minutes')", [stale, stale]);
    const result = await stack.temporal.workflow.execute<typeof purgeExpiredWorkflow>('purgeExpiredWorkflow', {
      workflowId: `maintenance/purge-test-${randomBytes(4).toString('hex')}`,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
    });
    assert.ok(result.emailSends >= 1, JSON.stringify(result));
    const left = await stack.db.query('SELECT 1 FROM email_sends WHERE dispatch_key = $1', [stale]);
    assert.equal(left.rowCount, 0, 'the stale row is purged');
    assert.equal(await sendsOf(email), 1, 'the live row stays');
  });
});

void describe('email login: strangers cannot spend the owner’s allowance (issue 21, item 4)', () => {
  void test('ten strangers keep asking for the owner’s address: they spend their own networks’ allowances, and the owner still gets a code and logs in', async () => {
    const email = uniqueEmail('Owner');
    // The attack: ten strangers (ten addresses in five /24s) each ask twice, "one past the
    // cooldown" (there is none to wait out here). Under a budget per address alone the first
    // CEILING of these calls spent it and the owner got 429 for the rest of the hour.
    const strangers = Array.from({ length: 10 }, (_, i) => `198.51.${101 + (i % 5)}.${7 + i}`);
    const answers = [];
    for (let round = 0; round < 2; round++) {
      for (const from of strangers) answers.push(await askFrom(email, from));
    }
    const served = answers.filter((r) => r.status === 202);
    assert.equal(served.length, 5 * PER_HOUR, answers.map((r) => `${r.status} ${r.text}`).join('\n'));
    for (const r of answers.filter((x) => x.status !== 202)) assertRefused(r, 429, 'rate_limited', /from your network/);

    const owner = await askFrom(email, '203.0.113.5');
    assert.equal(owner.status, 202, `the owner is served: ${owner.text}`);
    const { request_id } = owner.body as { request_id: string };
    const session = await submitCode(stack, request_id, await latestCode(stack, email));
    assert.equal(session.status, 200, session.text);
    assert.deepEqual((session.body as { identity: unknown }).identity, { type: 'email', value: email.toLowerCase() });
    assert.equal(await sendsOf(email), 5 * PER_HOUR + 1);
  });

  void test('a stranger asking over and over from one network spends that network’s allowance only: 429, nothing changed; the owner is served', async () => {
    const email = uniqueEmail('Pressed');
    // One IPv6 site is one requester: two /64s of the same /48 share the allowance.
    assert.equal((await askFrom(email, '2001:db8:77:1::1')).status, 202);
    assert.equal((await askFrom(email, '2001:db8:77:2::9')).status, 202);
    await assertHourRefusal(email, '2001:db8:77:ffff::5', /too many codes were sent to this address from your network/, 'a third code for the /48');
    await assertHourRefusal(email, '2001:db8:77:1::1', /from your network/, 'the first /64 again');
    assert.equal(mailsTo([email]), PER_HOUR);
    // The owner, on a network of their own.
    const owner = await askFrom(email, '192.0.2.44');
    assert.equal(owner.status, 202, owner.text);
    assert.equal((await submitCode(stack, (owner.body as { request_id: string }).request_id, await latestCode(stack, email))).status, 200);
  });

  void test('the bound that is left: networks enough to fill the ceiling refuse everyone for the hour, the owner too; codes already mailed still work', async () => {
    const email = uniqueEmail('Ceiling');
    const owner = await askFrom(email, '192.0.2.10');
    assert.equal(owner.status, 202, owner.text);
    const ownerCode = await latestCode(stack, email);
    // A distributed attacker: CEILING / PER_HOUR networks, each spending its whole allowance.
    let sent = 1;
    for (let net = 1; sent < CEILING; net++) {
      for (let i = 0; i < PER_HOUR && sent < CEILING; i++, sent++) assert.equal((await askFrom(email, `100.64.${net}.${i + 1}`)).status, 202);
    }
    assert.equal(await sendsOf(email), CEILING);
    await assertHourRefusal(email, '192.0.2.10', /too many codes were sent to this address; try again later/, 'the owner past the ceiling');
    await assertHourRefusal(email, '100.64.200.1', /too many codes were sent to this address; try again/, 'a fresh network past the ceiling');
    assert.equal(mailsTo([email]), CEILING, 'the ceiling bounds what the inbox gets');
    // The owner's code from before the pressure still logs in.
    assert.equal((await submitCode(stack, (owner.body as { request_id: string }).request_id, ownerCode)).status, 200);
  });
});

void describe('email login: one mailbox, one budget, whatever the spelling (issue 21, item 11)', () => {
  const gmailBox = (label: string) => `${label}${process.pid}${Date.now()}`.toLowerCase();

  void test('20 spellings of one Gmail mailbox (dots, +tags, googlemail.com) at once: the budget of one mailbox is mailed, the rest 429', async () => {
    const box = gmailBox('spellings');
    // Ten places for a dot (none at all for the first), then ten +tags; every third at googlemail.com.
    const spellings = Array.from({ length: 20 }, (_, i) => {
      const dot = i % 10;
      const local = dot === 0 ? box : `${box.slice(0, dot)}.${box.slice(dot)}`;
      return `${local}${i >= 10 ? `+tag${i}` : ''}@${i % 3 === 0 ? 'googlemail.com' : 'gmail.com'}`;
    });
    assert.equal(new Set(spellings).size, 20);
    const ses = stack.ses.requestCount();
    const results = await Promise.all(spellings.map((email) => askFrom(email, '198.18.0.9')));
    const accepted = results.filter((r) => r.status === 202);
    assert.equal(accepted.length, PER_HOUR, results.map((r) => `${r.status} ${r.text}`).join('\n'));
    for (const r of results.filter((x) => x.status !== 202)) assertRefused(r, 429, 'rate_limited', /too many codes/);
    assert.equal(stack.ses.requestCount() - ses, PER_HOUR, 'the inbox got the budget of one mailbox');
    assert.equal(mailsTo(spellings), PER_HOUR);
    assert.equal(await sendsOf(`${box}@gmail.com`), PER_HOUR, 'one ledger key for every spelling');
  });

  void test('the identity stays the address as typed: two spellings of one mailbox are two accounts', async () => {
    const box = gmailBox('identity');
    const plain = `${box}@gmail.com`;
    const tagged = `${box.slice(0, 4)}.${box.slice(4)}+work@gmail.com`;
    const sessions: { omni_account: string; identity: { value: string } }[] = [];
    for (const [email, from] of [
      [plain, '198.18.1.1'],
      [tagged, '198.18.2.1'],
    ] as const) {
      const res = await askFrom(email, from);
      assert.equal(res.status, 202, res.text);
      const login = await submitCode(stack, (res.body as { request_id: string }).request_id, await latestCode(stack, email));
      assert.equal(login.status, 200, login.text);
      sessions.push(login.body as { omni_account: string; identity: { value: string } });
    }
    assert.deepEqual(
      sessions.map((s) => s.identity.value),
      [plain, tagged],
    );
    assert.notEqual(sessions[0]?.omni_account, sessions[1]?.omni_account, 'another spelling is another account');
    assert.equal(await sendsOf(plain), 2, 'while both sends counted against the one mailbox');
  });

  void test('elsewhere a +tag or a dot is part of the mailbox: each spelling keeps its own budget', async () => {
    const box = gmailBox('other');
    const spellings = [`${box}@example.org`, `${box}+a@example.org`, `${box.slice(0, 3)}.${box.slice(3)}@example.org`];
    for (const email of spellings) {
      for (let i = 0; i < PER_HOUR; i++) assert.equal((await askFrom(email, '198.18.3.1')).status, 202, email);
    }
    assert.equal(mailsTo(spellings), PER_HOUR * spellings.length);
  });
});

void describe('email login: a keyed resend after its request ended (issue 21, item 12)', () => {
  void test('is 409 conflict as documented, from any network: no mail, no row, no flow', async () => {
    const email = uniqueEmail('KeyedResend');
    const first = await requestCode(stack, email);
    const key = `resend-${randomBytes(16).toString('hex')}`;
    const resend = () =>
      stack.request('POST', '/v1/session/email_code', { body: { email, request_id: first.request_id }, headers: { 'idempotency-key': key } });
    const again = await resend();
    assert.equal(again.status, 202, again.text);
    assert.equal((await submitCode(stack, first.request_id, await latestCode(stack, email))).status, 200);
    assert.equal(await stack.temporal.workflow.getHandle(workflowIdOf(stack, first.request_id)).result(), 'succeeded');

    const starts = spyWorkflowStarts(stack.temporal);
    const rows = await dbSnapshot(stack.db);
    const ses = stack.ses.requestCount();
    try {
      // From the same network its allowance is spent (the budget path); from another it is not (the resend path).
      assertRefused(await resend(), 409, 'conflict', /has ended; use a new key/, 'same network');
      const elsewhere = await stack.request('POST', '/v1/session/email_code', {
        body: { email, request_id: first.request_id },
        headers: { 'idempotency-key': key, 'x-forwarded-for': '192.0.2.200' },
      });
      assertRefused(elsewhere, 409, 'conflict', /has ended; use a new key/, 'another network');
      assert.equal(starts.count(), 0);
    } finally {
      starts.restore();
    }
    await assertUnchanged(stack.db, rows, 'a spent key');
    assert.equal(stack.ses.requestCount(), ses, 'nothing mailed');
  });
});
