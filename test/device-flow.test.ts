/**
 * The device authorization grant (RFC 8628) end to end over HTTP: a real Temporal dev server,
 * Postgres and the API. What a stranger can do to someone else's request is refused with a clear
 * 4xx and changes nothing; each §3.5 error code has a test.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { AkFlow } from '../lib/search-attributes';
import { REAUTH_SECONDS } from '../services/sessions';
import { hmacHex } from '../lib/digest';
import { DEVICE_AUTHORIZATION_ID_PREFIX, deviceDecisionUpdate, type DeviceAuthorizationInput } from '../workflows/device-authorization.definitions';
import { ageLogins } from './approval-client';
import { startStack, type TestStack } from './harness';
import { acceptedUpdates } from './support/workflow-env';
import { deviceCode, deviceRows, lookUp, otherUserCode, pollError, pollToken, signedIn, verify } from './device-client';

const USER_CODE_SHOWN = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/;
const logLines: string[] = [];
let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' }, logStream: { write: (line) => void logLines.push(line) } });
});
after(async () => {
  await stack?.stop();
});

const requestIdOf = (deviceCodeText: string) => deviceCodeText.split('.')[0] ?? '';

/**
 * What a device approval can leave in the database, row for row: device sessions, the audit rows
 * of device logins, and the sessions and audit rows of the accounts involved. (The request itself
 * lives in its workflow; the broker has no device table.)
 */
async function deviceState(accounts: string[] = []) {
  const [sessions, audit] = await Promise.all([
    stack.db.query<Record<string, unknown>>(`SELECT * FROM sessions WHERE method = 'device' OR omni_account = ANY($1) ORDER BY jti`, [accounts]),
    stack.db.query<Record<string, unknown>>(
      `SELECT seq::text, event, outcome, omni_account, details FROM audit_log WHERE event LIKE '%device%' OR omni_account = ANY($1) ORDER BY seq`,
      [accounts],
    ),
  ]);
  return { sessions: sessions.rows, audit: audit.rows };
}

void describe('device authorization grant', () => {
  void test('code → pending → the person approves (code typed any way) → the session once, then invalid_grant', async () => {
    const person = await signedIn(stack);
    const before = await deviceRows(stack.db);
    const dc = await deviceCode(stack, { client_id: 'agentkeys-cli', scope: 'session' });
    assert.match(dc.user_code, USER_CODE_SHOWN);
    assert.match(dc.device_code, /^[0-9a-f]{32}\.[\w-]{43}$/);
    assert.equal(dc.verification_uri, `${stack.config.publicUrl}/console/device`);
    assert.equal(dc.verification_uri_complete, `${stack.config.publicUrl}/console/device?user_code=${dc.user_code}`);
    assert.ok(dc.expires_in > 590 && dc.expires_in <= 600, String(dc.expires_in));
    assert.equal(dc.interval, 5);

    const pending = await pollToken(stack, dc.device_code);
    assert.equal(pending.status, 400);
    assert.equal((pending.body as { error: string }).error, 'authorization_pending');

    // Lower case, spaces, no dash: the same code (RFC 8628 §6.1).
    const typed = ` ${dc.user_code.replace('-', ' ').toLowerCase()} `;
    const seen = await lookUp(stack, person.token, typed);
    assert.equal(seen.status, 200, seen.text);
    const view = seen.body as Record<string, unknown>;
    assert.equal(view.user_code, dc.user_code);
    assert.equal(view.status, 'pending');
    assert.equal(view.client_id, 'agentkeys-cli');
    assert.equal(view.scope, 'session');
    assert.ok(typeof view.expires_at === 'number' && typeof view.requested_at === 'number' && view.expires_at > view.requested_at);

    const approved = await verify(stack, person.token, dc.user_code.replace('-', '').toLowerCase());
    assert.equal(approved.status, 200, approved.text);
    assert.deepEqual(approved.body, { status: 'approved' });

    const got = await pollToken(stack, dc.device_code);
    assert.equal(got.status, 200, got.text);
    const session = got.body as { token: string; token_type: string; omni_account: string; user_id: string; identity: { type: string } };
    assert.equal(session.token_type, 'Bearer');
    assert.equal(session.omni_account, person.omni_account);
    assert.equal(session.identity.type, 'evm');
    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200, me.text);
    assert.equal((me.body as { omni_account: string }).omni_account, person.omni_account);
    const claims = JSON.parse(Buffer.from(session.token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { amr: string };
    assert.equal(claims.amr, 'device');

    // Issued once: the next poll (with the right secret) is invalid_grant, and no second session exists.
    assert.equal(await pollError(stack, dc.device_code), 'invalid_grant');
    assert.deepEqual(await deviceRows(stack.db), { sessions: before.sessions + 1, audit: before.audit + 1 });
    const audit = await stack.db.query<{ omni_account: string }>("SELECT omni_account FROM audit_log WHERE event = 'login.device' ORDER BY seq DESC LIMIT 1");
    assert.equal(audit.rows[0]?.omni_account, person.omni_account);

    const handle = stack.temporal.workflow.getHandle(DEVICE_AUTHORIZATION_ID_PREFIX + requestIdOf(dc.device_code));
    assert.equal(await handle.result(), 'succeeded');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkFlow), 'device_authorization');
    // Neither secret is readable anywhere the broker writes: ids, history, logs.
    const secret = dc.device_code.split('.')[1] ?? '';
    const history = JSON.stringify(await handle.fetchHistory());
    const raw = dc.user_code.replace('-', '');
    for (const where of [history, logLines.join('\n'), handle.workflowId]) {
      assert.ok(!where.includes(secret), 'device_code secret leaked');
      assert.ok(!where.includes(raw) && !where.includes(dc.user_code), 'user code leaked');
    }
  });

  void test('access_denied: deny, then an approval is 409 and the device hears access_denied', async () => {
    const person = await signedIn(stack);
    const before = await deviceRows(stack.db);
    const dc = await deviceCode(stack);
    const denied = await verify(stack, person.token, dc.user_code, 'deny');
    assert.equal(denied.status, 200, denied.text);
    assert.deepEqual(denied.body, { status: 'denied' });
    const late = await verify(stack, person.token, dc.user_code);
    assert.equal(late.status, 409, late.text);
    assert.equal((await lookUp(stack, person.token, dc.user_code)).status, 409);
    assert.equal(await pollError(stack, dc.device_code), 'access_denied');
    assert.deepEqual(await deviceRows(stack.db), before);
  });

  void test('approving twice, or denying after approving, is 409 and unrecorded in the run; the device still gets one session', async () => {
    const person = await signedIn(stack);
    const dc = await deviceCode(stack);
    assert.equal((await verify(stack, person.token, dc.user_code)).status, 200);
    const handle = stack.temporal.workflow.getHandle(DEVICE_AUTHORIZATION_ID_PREFIX + requestIdOf(dc.device_code));
    const decided = await acceptedUpdates(handle);
    const again = await verify(stack, person.token, dc.user_code);
    assert.equal(again.status, 409, again.text);
    assert.equal((again.body as { error: string }).error, 'conflict');
    assert.equal((await verify(stack, person.token, dc.user_code, 'deny')).status, 409);
    assert.equal(await acceptedUpdates(handle), decided, "a refused decision took one of the run's Updates");
    const got = await pollToken(stack, dc.device_code);
    assert.equal(got.status, 200, got.text);
    assert.equal((got.body as { omni_account: string }).omni_account, person.omni_account);
  });

  void test('16 accounts approve one code at once: exactly one wins and the session is that account’s', async () => {
    const people = await Promise.all(Array.from({ length: 16 }, () => signedIn(stack)));
    const before = await deviceRows(stack.db);
    const dc = await deviceCode(stack);
    const answers = await Promise.all(people.map((p) => verify(stack, p.token, dc.user_code)));
    const winners = answers.flatMap((a, i) => (a.status === 200 ? [people[i]] : []));
    assert.equal(winners.length, 1, answers.map((a) => `${a.status} ${a.text}`).join('\n'));
    assert.ok(
      answers.every((a) => a.status === 200 || a.status === 409),
      answers.map((a) => `${a.status} ${a.text}`).join('\n'),
    );
    const got = await pollToken(stack, dc.device_code);
    assert.equal(got.status, 200, got.text);
    const winner = winners[0]?.omni_account;
    assert.equal((got.body as { omni_account: string }).omni_account, winner);
    // The token's session row is the winner's own: it lists it, ends it, and its audit row says so.
    const row = await stack.db.query<{ omni_account: string }>('SELECT omni_account FROM sessions WHERE jti = $1', [
      decodeJwt((got.body as { token: string }).token).jti,
    ]);
    assert.equal(row.rows[0]?.omni_account, winner);
    assert.deepEqual(await deviceRows(stack.db, winner), { sessions: 1, audit: 1 });
    // Concurrent Updates can make Temporal run a workflow task again (the first one's result lost):
    // an approval whose completion committed there keeps its own rows, never handed out. Each
    // session row has its audit row, and every one is an approver's.
    const after = await deviceRows(stack.db);
    assert.ok(after.sessions >= before.sessions + 1);
    assert.equal(after.audit - before.audit, after.sessions - before.sessions);
    const approvers = new Set(people.map((p) => p.omni_account));
    const added = await stack.db.query<{ omni_account: string }>(
      "SELECT omni_account FROM sessions WHERE method = 'device' AND created_at >= now() - interval '1 minute' AND omni_account = ANY($1)",
      [[...approvers]],
    );
    assert.equal(added.rows.length, after.sessions - before.sessions, 'no device session of anyone but an approver');
  });

  void test('approving needs a login at most 300 s old (as an approval without a signature does): older is 401 reauthenticate, nothing recorded; denying does not', async () => {
    const person = await signedIn(stack);
    const dc = await deviceCode(stack);
    const handle = stack.temporal.workflow.getHandle(DEVICE_AUTHORIZATION_ID_PREFIX + requestIdOf(dc.device_code));
    await ageLogins(stack, person.omni_account, REAUTH_SECONDS + 10);
    const before = await deviceRows(stack.db);
    const events = (await handle.fetchHistory()).events?.length;
    const stale = await verify(stack, person.token, dc.user_code);
    assert.equal(stale.status, 401, stale.text);
    const body = stale.body as { error: string; message: string; reauthenticate?: unknown };
    assert.equal(body.error, 'unauthorized');
    assert.equal(body.reauthenticate, true, stale.text);
    assert.match(body.message, /approving a device needs a login at most 300 s old: sign in again, then approve it/);
    assert.equal((await handle.fetchHistory()).events?.length, events, 'the request saw a decision');
    assert.deepEqual(await deviceRows(stack.db), before);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    // The session still works, and still shows what the code asks for.
    assert.equal((await lookUp(stack, person.token, dc.user_code)).status, 200);

    // A login 290 s old approves; the device gets its session.
    await ageLogins(stack, person.omni_account, REAUTH_SECONDS - 10);
    const approved = await verify(stack, person.token, dc.user_code);
    assert.equal(approved.status, 200, approved.text);
    const got = await pollToken(stack, dc.device_code);
    assert.equal(got.status, 200, got.text);
    assert.equal((got.body as { omni_account: string }).omni_account, person.omni_account);

    // Denying binds nothing: a stale login may still turn a code away.
    const other = await deviceCode(stack);
    await ageLogins(stack, person.omni_account, REAUTH_SECONDS + 10);
    const denied = await verify(stack, person.token, other.user_code, 'deny');
    assert.equal(denied.status, 200, denied.text);
    assert.equal(await pollError(stack, other.device_code), 'access_denied');
  });

  void test('no session: looking up or approving without a bearer is 401 and the request stays pending', async () => {
    const dc = await deviceCode(stack);
    const before = await deviceState();
    for (const res of [await verify(stack, undefined, dc.user_code), await lookUp(stack, undefined, dc.user_code)]) {
      assert.equal(res.status, 401, res.text);
    }
    const forged = await verify(stack, 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', dc.user_code);
    assert.equal(forged.status, 401, forged.text);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    assert.deepEqual(await deviceState(), before, 'a refused approval wrote device rows');
  });

  void test("polling someone else's request needs its device_code: another secret, or a respelled one, is invalid_grant and changes nothing", async () => {
    const person = await signedIn(stack);
    const dc = await deviceCode(stack);
    const [requestId, secret = ''] = dc.device_code.split('.');
    const respelled = [
      `${requestId}.${randomBytes(32).toString('base64url')}`,
      `${requestId}.${secret.toUpperCase() === secret ? secret.toLowerCase() : secret.toUpperCase()}`,
      `${requestId?.toUpperCase()}.${secret}`,
      ` ${dc.device_code}`,
      `${dc.device_code}\n`,
      `${dc.device_code} `,
      `${requestId}.${secret}=`,
      '',
    ];
    for (const code of respelled) assert.equal(await pollError(stack, code), 'invalid_grant', JSON.stringify(code));
    // The holder's request is untouched: its first poll is pending (no slow_down from the strangers' polls).
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    assert.equal((await verify(stack, person.token, dc.user_code)).status, 200);
    for (const code of respelled.slice(0, 4)) assert.equal(await pollError(stack, code), 'invalid_grant');
    assert.equal((await pollToken(stack, dc.device_code)).status, 200);
  });

  void test('slow_down: polling faster than interval answers slow_down and adds 5 s for that device only', async () => {
    const dc = await deviceCode(stack);
    const other = await deviceCode(stack);
    const first = await pollToken(stack, dc.device_code);
    assert.deepEqual(
      [first.status, (first.body as { error: string; interval: number }).error, (first.body as { interval: number }).interval],
      [400, 'authorization_pending', 5],
    );
    const second = await pollToken(stack, dc.device_code);
    assert.equal((second.body as { error: string }).error, 'slow_down');
    assert.equal((second.body as { interval: number }).interval, 10);
    const third = await pollToken(stack, dc.device_code);
    assert.equal((third.body as { error: string }).error, 'slow_down');
    assert.equal((third.body as { interval: number }).interval, 15);
    const theirs = await pollToken(stack, other.device_code);
    assert.equal((theirs.body as { error: string; interval: number }).error, 'authorization_pending');
    assert.equal((theirs.body as { interval: number }).interval, 5);
  });

  void test("past its run's poll budget a waiting poll hears authorization_pending at its interval, unrecorded in the run; the approval and the hand-out still land", async () => {
    // A request as the code route opens one, with a budget of 2 polls (1,500 in the product).
    const requestId = randomBytes(16).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const workflowId = DEVICE_AUTHORIZATION_ID_PREFIX + requestId;
    const requestedAt = Math.floor(Date.now() / 1000);
    const input: DeviceAuthorizationInput = {
      device_code_digest: hmacHex(stack.secrets.hmacSecret, 'device-code', workflowId, secret),
      requested_at: requestedAt,
      expires_at: requestedAt + 600,
      settings: { ttlSeconds: 600, intervalSeconds: 5, graceSeconds: 10, pollsPerRun: 2 },
    };
    const handle = await stack.temporal.workflow.start('deviceAuthorizationWorkflow', { workflowId, taskQueue: stack.config.BROKER_TASK_QUEUE, args: [input] });
    const deviceCodeText = `${requestId}.${secret}`;
    const errors = [];
    for (let i = 0; i < 4; i++) errors.push(await pollToken(stack, deviceCodeText));
    assert.deepEqual(
      errors.map((r) => [r.status, (r.body as { error: string }).error]),
      [
        [400, 'authorization_pending'],
        [400, 'slow_down'],
        [400, 'authorization_pending'],
        [400, 'authorization_pending'],
      ],
    );
    // The refused polls say why, and to wait the interval the accepted ones grew to (not 5 s more each: no slow_down).
    for (const r of errors.slice(2)) {
      assert.match((r.body as { error_description: string }).error_description, /answered 2 polls while it waits/);
      assert.equal((r.body as { interval: number }).interval, 10);
    }
    assert.equal(await acceptedUpdates(handle), 2, 'a refused poll was recorded');
    // The person approves (the decision is not a poll), and the device's next poll collects the session.
    await handle.executeUpdate(deviceDecisionUpdate, { args: [{ action: 'approve', omni_account: (await signedIn(stack)).omni_account }] });
    const got = await pollToken(stack, deviceCodeText);
    assert.equal(got.status, 200, got.text);
    assert.equal(await acceptedUpdates(handle), 4);
  });

  void test('invalid_request and unsupported_grant_type: a malformed token request is refused in the RFC shape', async () => {
    const dc = await deviceCode(stack);
    const missing = await stack.request('POST', '/v1/device/token', { body: { grant_type: 'urn:ietf:params:oauth:grant-type:device_code' } });
    assert.equal(missing.status, 400);
    assert.equal((missing.body as { error: string }).error, 'invalid_request');
    const grant = await stack.request('POST', '/v1/device/token', { body: { device_code: dc.device_code, grant_type: 'authorization_code' } });
    assert.equal(grant.status, 400);
    assert.equal((grant.body as { error: string }).error, 'unsupported_grant_type');
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
  });

  void test('the code request refuses a malformed client_id, scope or an unknown field', async () => {
    for (const body of [{ client_id: 'a b' }, { client_id: 'x'.repeat(65) }, { scope: 'a"b' }, { scope: 'x'.repeat(257) }, { user_code: 'BCDF-GHJK' }]) {
      const res = await stack.request('POST', '/v1/device/code', { body });
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
    }
    const none = await stack.request('POST', '/v1/device/code', {});
    assert.equal(none.status, 200, none.text);
  });

  void test('a wrong or malformed user code is 404, alike, and approves nothing', async () => {
    const person = await signedIn(stack);
    const dc = await deviceCode(stack);
    const before = await deviceState([person.omni_account]);
    const wrong = otherUserCode(dc.user_code);
    const answers = [
      await lookUp(stack, person.token, wrong),
      await verify(stack, person.token, wrong),
      await verify(stack, person.token, 'AEIO-UAEI'),
      await verify(stack, person.token, '1234-5678'),
      await verify(stack, person.token, dc.user_code.slice(0, 8)),
    ];
    for (const a of answers) {
      assert.equal(a.status, 404, a.text);
      assert.deepEqual(a.body, answers[0]?.body);
    }
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    assert.deepEqual(await deviceState([person.omni_account]), before, 'a wrong code wrote device rows');
  });

  // Last: these spend the per-account and per-network guess budgets of this process (RFC 8628 §5.1).
  void test('guessing user codes: after 10 wrong codes an account is refused (429), even with a right code; another account still approves', async () => {
    const guesser = await signedIn(stack);
    const dc = await deviceCode(stack);
    const before = await deviceState([guesser.omni_account]);
    for (let i = 0; i < 9; i++) assert.equal((await verify(stack, guesser.token, otherUserCode(dc.user_code))).status, 404);
    const tenth = await verify(stack, guesser.token, otherUserCode(dc.user_code));
    assert.equal(tenth.status, 404, tenth.text);
    const eleventh = await lookUp(stack, guesser.token, otherUserCode(dc.user_code));
    assert.equal(eleventh.status, 429, eleventh.text);
    const right = await verify(stack, guesser.token, dc.user_code);
    assert.equal(right.status, 429, right.text);
    assert.ok(Number(right.headers.get('retry-after')) >= 1);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    assert.deepEqual(await deviceState([guesser.omni_account]), before, 'the guesses or the refused right code wrote device rows');
    const owner = await signedIn(stack);
    assert.equal((await verify(stack, owner.token, dc.user_code)).status, 200);
  });

  void test('guessing from many accounts on one network: the network budget runs out (429) while each account has some left', async () => {
    const dc = await deviceCode(stack);
    // Each guesser's rows as its own login left them, before its guesses.
    const guessers: { omni_account: string; rows: Awaited<ReturnType<typeof deviceState>> }[] = [];
    const signedInGuesser = async () => {
      const guesser = await signedIn(stack);
      guessers.push({ omni_account: guesser.omni_account, rows: await deviceState([guesser.omni_account]) });
      return guesser;
    };
    let refused = 0;
    let tries = 0;
    for (let round = 0; round < 10 && refused === 0; round++) {
      const guesser = await signedInGuesser();
      for (let i = 0; i < 5; i++) {
        tries++;
        const res = await verify(stack, guesser.token, otherUserCode(dc.user_code));
        if (res.status === 429) {
          refused++;
          break;
        }
        assert.equal(res.status, 404, res.text);
      }
    }
    assert.equal(refused, 1);
    assert.ok(tries <= 31, String(tries));
    const fresh = await signedInGuesser();
    assert.equal((await verify(stack, fresh.token, dc.user_code)).status, 429);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    for (const g of guessers) assert.deepEqual(await deviceState([g.omni_account]), g.rows, `the guesses of ${g.omni_account} wrote device rows`);
  });
});
