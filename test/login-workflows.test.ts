/**
 * Each login workflow, and the scheduled ones, with mocked activities on a dev server of their own
 * (test/support/workflow-env.ts): no Postgres, no API, windows shortened by the workflow input.
 * The HTTP and database behaviour of the same flows is the integration suite's (email-login*,
 * wallet-*, google-login*, tee-account*, maintenance, audit-anchor).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities } from '../activities';
import type { CompleteLoginInput } from '../services/logins';
import { AkOutcome } from '../lib/search-attributes';
import { FailureType, type LoginOutcome } from '../workflows/definitions';
import { requestCodeUpdate, submitCodeUpdate, type EmailCodeLoginInput } from '../workflows/email-login.definitions';
import { collectSessionUpdate, googleCallbackUpdate, type GoogleLoginInput } from '../workflows/google-login.definitions';
import { addWalletSlotUpdate, recordHeimaLoginUpdate } from '../workflows/tee-account.definitions';
import {
  openPasskeyChallengeUpdate,
  submitPasskeyResponseUpdate,
  type PasskeyCeremonyInput,
  type PasskeyCeremonyKind,
} from '../workflows/passkey-ceremony.definitions';
import { issueWalletChallengeUpdate, submitWalletSignatureUpdate, type WalletChallengeRequest } from '../workflows/wallet-login.definitions';
import { acceptedUpdates, startWorkflowTestEnv, updateRefusal, withWorker } from './support/workflow-env';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startWorkflowTestEnv();
});
after(async () => {
  await env?.teardown();
});

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** A completeLogin mock: records its inputs, answers the session a real one would describe. */
function completeLoginMock() {
  const calls: CompleteLoginInput[] = [];
  const completeLogin = async (input: CompleteLoginInput): Promise<LoginOutcome> => {
    calls.push(input);
    return {
      jti: hex(16),
      method: input.method,
      ...(input.wallet ? { wallet: input.wallet } : {}),
      issued_at: 1,
      expires_at: 2,
      omni_account: `0x${'ab'.repeat(32)}`,
      user_id: 'u-1',
      identity: input.identity,
    };
  };
  return { calls, completeLogin };
}

/** The ApplicationFailure type an Update was refused with. */
async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  const e = await p.then(
    () => assert.fail('the update was accepted'),
    (err: unknown) => err,
  );
  assert.ok(e instanceof WorkflowUpdateFailedError, String(e));
  return e.cause instanceof ApplicationFailure ? (e.cause.type ?? undefined) : undefined;
}

void describe('emailCodeLoginWorkflow (mocked activities)', () => {
  const emailInput = (settings: Partial<EmailCodeLoginInput['settings']> = {}): EmailCodeLoginInput => ({
    email: 'person@example.com',
    email_key: hex(32),
    code_salt: hex(16),
    request_id: hex(16),
    settings: { ttlSeconds: 60, maxAttempts: 2, resendCooldownSeconds: 0, maxSends: 3, firstDispatchSeconds: 60, retryWindowSeconds: 1, ...settings },
  });
  const network_key = hex(16);

  function start(taskQueue: string, input: EmailCodeLoginInput, workflowType = 'emailCodeLoginWorkflow', workflowId = `email-login/${hex(32)}`) {
    const startWorkflowOperation = new WithStartWorkflowOperation(workflowType, {
      workflowId,
      taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
    });
    return {
      startWorkflowOperation,
      dispatched: env.client.workflow.executeUpdateWithStart(requestCodeUpdate, {
        args: [{ email_key: input.email_key, network_key }],
        startWorkflowOperation,
      }),
    };
  }

  void test('a wrong code spends an attempt, the right one logs in once; a keyed repeat inside the retry window gets a reissued session', async () => {
    const right = hex(32);
    const sends: unknown[] = [];
    const login = completeLoginMock();
    const activities: Partial<Activities> = {
      sendEmailLoginCode: async (i) => {
        sends.push(i);
        return { codeDigest: right, sentAtMs: Date.now() };
      },
      completeLogin: login.completeLogin,
    };
    await withWorker(env, activities, async (taskQueue) => {
      const input = emailInput();
      const { startWorkflowOperation, dispatched } = start(taskQueue, input);
      const sent = await dispatched;
      const handle = await startWorkflowOperation.workflowHandle();
      const request_id = sent.request_id;
      // The request id is the input's, not the workflow id's (which is only a digest of it).
      assert.equal(request_id, input.request_id);
      assert.ok(!handle.workflowId.includes(request_id));
      const idSuffix = handle.workflowId.slice('email-login/'.length);
      assert.equal(await refusal(handle.executeUpdate(submitCodeUpdate, { args: [{ request_id: idSuffix, code_digest: right }] })), FailureType.badRequest);
      assert.equal(await refusal(handle.executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest: hex(32) }] })), FailureType.invalidCode);
      const key = hex(32);
      const session = await handle.executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest: right, retry_key_digest: key }] });
      assert.deepEqual(session.identity, { type: 'email', value: 'person@example.com' });
      const again = await handle.executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest: right, retry_key_digest: key }] });
      assert.equal(again.omni_account, session.omni_account);
      assert.equal(await refusal(handle.executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest: right }] })), FailureType.expired);
      assert.equal(await handle.result(), 'succeeded'); // after the 1 s retry window
      assert.deepEqual(
        login.calls.map((c) => c.reissue ?? false),
        [false, true],
      );
      assert.equal(sends.length, 1);
      assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'succeeded');
    });
  });

  void test('the retired emailLoginRequestWorkflow (runs 1.1.0 started) still reads its request id from its workflow id and logs in', async () => {
    const right = hex(32);
    const login = completeLoginMock();
    const activities: Partial<Activities> = {
      sendEmailLoginCode: async () => ({ codeDigest: right, sentAtMs: Date.now() }),
      completeLogin: login.completeLogin,
    };
    await withWorker(env, activities, async (taskQueue) => {
      const { request_id: _unused, ...retiredInput } = emailInput();
      const requestId = hex(16);
      const { startWorkflowOperation, dispatched } = start(
        taskQueue,
        retiredInput as EmailCodeLoginInput,
        'emailLoginRequestWorkflow',
        `email-login/${requestId}`,
      );
      assert.equal((await dispatched).request_id, requestId);
      const handle = await startWorkflowOperation.workflowHandle();
      const session = await handle.executeUpdate(submitCodeUpdate, { args: [{ request_id: requestId, code_digest: right }] });
      assert.deepEqual(session.identity, { type: 'email', value: 'person@example.com' });
      assert.equal(login.calls[0]?.requestId, requestId);
      assert.equal(await handle.result(), 'succeeded');
    });
  });

  void test('a resend repeated under one Update id (what the API derives from an Idempotency-Key) answers the first resend and mails once', async () => {
    let sends = 0;
    const activities: Partial<Activities> = {
      sendEmailLoginCode: async () => {
        sends += 1;
        return { codeDigest: hex(32), sentAtMs: Date.now() };
      },
    };
    await withWorker(env, activities, async (taskQueue) => {
      const input = emailInput();
      const { startWorkflowOperation, dispatched } = start(taskQueue, input);
      await dispatched;
      const handle = await startWorkflowOperation.workflowHandle();
      const resend = { args: [{ email_key: input.email_key, network_key }] as [{ email_key: string; network_key: string }], updateId: 'resend-1' };
      const first = await handle.executeUpdate(requestCodeUpdate, resend);
      const again = await handle.executeUpdate(requestCodeUpdate, resend);
      assert.deepEqual(again, first);
      assert.equal(sends, 2, 'the first code and one resend');
      await handle.terminate();
    });
  });

  void test('too many wrong codes lock the request until its code would have expired', async () => {
    const activities: Partial<Activities> = { sendEmailLoginCode: async () => ({ codeDigest: hex(32), sentAtMs: Date.now() }) };
    await withWorker(env, activities, async (taskQueue) => {
      const { startWorkflowOperation, dispatched } = start(taskQueue, emailInput({ ttlSeconds: 1, maxAttempts: 1 }));
      const { request_id } = await dispatched;
      const handle = await startWorkflowOperation.workflowHandle();
      assert.equal(await refusal(handle.executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest: hex(32) }] })), FailureType.tooManyAttempts);
      assert.equal(await refusal(handle.executeUpdate(requestCodeUpdate, { args: [{ email_key: hex(32), network_key }] })), FailureType.badRequest);
      assert.equal(await handle.result(), 'too_many_attempts');
    });
  });

  void test('a code past its TTL is refused and the run ends expired; a run never dispatched ends expired having sent nothing', async () => {
    let sends = 0;
    const activities: Partial<Activities> = {
      sendEmailLoginCode: async () => {
        sends += 1;
        return { codeDigest: 'c'.repeat(64), sentAtMs: Date.now() };
      },
    };
    await withWorker(env, activities, async (taskQueue) => {
      // The two runs wait out their 1-s windows side by side.
      const { startWorkflowOperation, dispatched } = start(taskQueue, emailInput({ ttlSeconds: 1 }));
      const never = await env.client.workflow.start('emailCodeLoginWorkflow', {
        workflowId: `email-login/${hex(32)}`,
        taskQueue,
        args: [emailInput({ firstDispatchSeconds: 1 })],
      });
      await dispatched;
      const handle = await startWorkflowOperation.workflowHandle();
      assert.deepEqual(await Promise.all([handle.result(), never.result()]), ['expired', 'expired']);
      assert.equal(sends, 1);
    });
  });

  void test('a send refused by the mailbox budget is a rate_limited run, nothing kept', async () => {
    const activities: Partial<Activities> = {
      sendEmailLoginCode: async () => {
        throw ApplicationFailure.create({ type: FailureType.rateLimited, message: 'budget spent', nonRetryable: true, details: [{ retry_after: 7 }] });
      },
    };
    await withWorker(env, activities, async (taskQueue) => {
      const { startWorkflowOperation, dispatched } = start(taskQueue, emailInput());
      assert.equal(await refusal(dispatched), FailureType.rateLimited);
      assert.equal(await (await startWorkflowOperation.workflowHandle()).result(), 'rate_limited');
    });
  });
});

void describe('walletLoginWorkflow (mocked activities)', () => {
  const input = (taskQueueRequestId: string, windowSeconds = 60): WalletChallengeRequest => ({
    kind: 'challenge',
    requestId: taskQueueRequestId,
    format: 'siwe',
    address: '0x' + '11'.repeat(20),
    checksumAddress: '0x' + '11'.repeat(20),
    chainId: 1,
    domain: 'broker.example',
    uri: 'https://broker.example',
    settings: { windowSeconds, contractWallets: false },
  });

  function start(taskQueue: string, windowSeconds?: number) {
    const requestId = hex(16);
    const startWorkflowOperation = new WithStartWorkflowOperation('walletLoginWorkflow', {
      workflowId: `wallet-login/${requestId}`,
      taskQueue,
      args: [input(requestId, windowSeconds)],
      workflowIdConflictPolicy: 'FAIL',
    });
    return { requestId, startWorkflowOperation, challenge: env.client.workflow.executeUpdateWithStart(issueWalletChallengeUpdate, { startWorkflowOperation }) };
  }
  const signature = `0x${'22'.repeat(64)}1b`;

  void test('a wrong signature leaves the challenge open; the right one logs in as siwe, consuming its proof, and ends the run', async () => {
    const login = completeLoginMock();
    let valid = false;
    const activities: Partial<Activities> = {
      verifyWalletSignature: async () =>
        valid ? { valid: true, via: 'ecrecover', replayKey: 'r'.repeat(64) } : { valid: false, malformed: false, reason: 'not made by this address' },
      completeLogin: login.completeLogin,
    };
    await withWorker(env, activities, async (taskQueue) => {
      const { requestId, startWorkflowOperation, challenge } = start(taskQueue);
      const issued = await challenge;
      assert.match(issued.message, /wants you to sign in/);
      const handle = await startWorkflowOperation.workflowHandle();
      assert.equal(
        await refusal(handle.executeUpdate(submitWalletSignatureUpdate, { args: [{ request_id: requestId, signature }] })),
        FailureType.unauthorized,
      );
      valid = true;
      const session = await handle.executeUpdate(submitWalletSignatureUpdate, { args: [{ request_id: requestId, signature }] });
      assert.equal(session.method, 'siwe');
      assert.equal(login.calls[0]?.consumeProof?.purpose, 'wallet_challenge_siwe');
      // The challenge is consumed: the run ends with the login, so no second use can reach it.
      assert.equal(await handle.result(), 'succeeded');
    });
  });

  void test('an unanswered challenge expires with its window', async () => {
    await withWorker(env, {}, async (taskQueue) => {
      const { startWorkflowOperation, challenge } = start(taskQueue, 1);
      await challenge;
      assert.equal(await (await startWorkflowOperation.workflowHandle()).result(), 'expired');
    });
  });
});

void describe('googleLoginWorkflow (mocked activities)', () => {
  const state = hex(16);
  const pollSecret = 'd'.repeat(64);
  const input = (ttlSeconds: number): GoogleLoginInput => ({
    state,
    nonce: hex(16),
    code_verifier: hex(32),
    format: 'cli',
    poll_secret_digest: pollSecret,
    expires_at: Math.floor(Date.now() / 1000) + ttlSeconds,
    settings: { ttlSeconds, maxAttempts: 3, httpTimeoutSeconds: 1 },
  });

  const confirmation = 'c'.repeat(64);
  const googleActivities = (): Partial<Activities> => ({
    exchangeGoogleCode: async () => ({ access_token_sealed: 'sealed', sub: 'google-sub', email: 'p@example.com', email_verified: true }),
    fetchGoogleUserinfo: async () => ({ sub: 'google-sub', email: 'p@example.com', email_verified: true }),
    completeGoogleLogin: async (i) => ({
      ...(await completeLoginMock().completeLogin({ method: 'google', identity: { type: 'google', value: i.sub }, requestId: i.requestId })),
    }),
  });

  void test('callback → exchange → session, collected once by the poll secret with the confirmation code', async () => {
    await withWorker(env, googleActivities(), async (taskQueue) => {
      const handle = await env.client.workflow.start('googleLoginWorkflow', { workflowId: `google-login/${hex(16)}`, taskQueue, args: [input(60)] });
      assert.equal(await refusal(handle.executeUpdate(googleCallbackUpdate, { args: [{ params: { state: hex(16), code: 'c' } }] })), FailureType.badRequest);
      const callback = { params: { state, code: 'c' }, confirmation_digest: confirmation };
      assert.deepEqual(await handle.executeUpdate(googleCallbackUpdate, { args: [callback] }), { format: 'cli' });
      const collect = (secret: string, code?: string) =>
        handle.executeUpdate(collectSessionUpdate, { args: [{ secret_digest: secret, ...(code !== undefined ? { confirmation_digest: code } : {}) }] });
      assert.equal(await refusal(collect('e'.repeat(64), confirmation)), FailureType.forbidden);
      assert.equal(await refusal(collect(pollSecret)), FailureType.badRequest, 'the poll secret alone');
      assert.equal(await refusal(collect(pollSecret, 'f'.repeat(64))), FailureType.invalidCode);
      const got = await collect(pollSecret, confirmation);
      assert.equal(got.status, 'ready');
      assert.equal(await handle.result(), 'succeeded');
    });
  });

  void test('five wrong confirmation codes: refused for good, the run ends failed without waiting out its window', async () => {
    await withWorker(env, googleActivities(), async (taskQueue) => {
      const handle = await env.client.workflow.start('googleLoginWorkflow', { workflowId: `google-login/${hex(16)}`, taskQueue, args: [input(600)] });
      await handle.executeUpdate(googleCallbackUpdate, { args: [{ params: { state, code: 'c' }, confirmation_digest: confirmation }] });
      const wrong = () => handle.executeUpdate(collectSessionUpdate, { args: [{ secret_digest: pollSecret, confirmation_digest: 'f'.repeat(64) }] });
      for (let i = 0; i < 4; i++) assert.equal(await refusal(wrong()), FailureType.invalidCode);
      assert.equal(await refusal(wrong()), FailureType.tooManyAttempts);
      assert.equal(await handle.result(), 'failed');
    });
  });

  void test('past its collect budget a collect while the sign-in waits is refused unrecorded (429); the callback and the collect that hands out land', async () => {
    await withWorker(env, googleActivities(), async (taskQueue) => {
      const budgeted: GoogleLoginInput = { ...input(60), settings: { ...input(60).settings, pollsPerRun: 2 } };
      const handle = await env.client.workflow.start('googleLoginWorkflow', { workflowId: `google-login/${hex(16)}`, taskQueue, args: [budgeted] });
      const collect = () => handle.executeUpdate(collectSessionUpdate, { args: [{ secret_digest: pollSecret, confirmation_digest: confirmation }] });
      for (let i = 0; i < 2; i++) assert.equal((await collect()).status, 'pending');
      const refused = await updateRefusal(collect());
      assert.equal(refused.type, FailureType.rateLimited);
      assert.deepEqual(refused.details?.[0], { retry_after: 1 });
      assert.equal(await acceptedUpdates(handle), 2, 'a refused collect was recorded');
      assert.deepEqual(await handle.executeUpdate(googleCallbackUpdate, { args: [{ params: { state, code: 'c' }, confirmation_digest: confirmation }] }), {
        format: 'cli',
      });
      assert.equal((await collect()).status, 'ready');
      assert.equal(await handle.result(), 'succeeded');
    });
  });

  void test('no callback within the sign-in window: expired', async () => {
    await withWorker(env, {}, async (taskQueue) => {
      const handle = await env.client.workflow.start('googleLoginWorkflow', { workflowId: `google-login/${hex(16)}`, taskQueue, args: [input(1)] });
      assert.equal(await handle.result(), 'expired');
    });
  });
});

void describe('teeAccountWorkflow (mocked activities)', () => {
  void test('identical logins share one recording; a wallet slot follows; the run ends when idle', async () => {
    let logins = 0;
    const activities: Partial<Activities> = {
      recordHeimaLogin: async () => {
        logins += 1;
        return { user_id: 'u-1', first_login: true };
      },
      recordTeeWalletSlot: async () => ({ wallet_index: 1, created: true }),
    };
    await withWorker(env, activities, async (taskQueue) => {
      const omniAccount = `0x${hex(32)}`;
      const handle = await env.client.workflow.start('teeAccountWorkflow', {
        workflowId: `tee-account/${hex(16)}`,
        taskQueue,
        args: [{ omniAccount, settings: { idleSeconds: 1, maxUpdatesPerRun: 100 } }],
      });
      const record = {
        clientId: 'agentkeys',
        identity: { type: 'email' as const, value: 'p@example.com' },
        clientAuth: null,
        tokenDigest: 'f'.repeat(64),
        requestId: 'r1',
      };
      const [a, b] = await Promise.all([
        handle.executeUpdate(recordHeimaLoginUpdate, { args: [record] }),
        handle.executeUpdate(recordHeimaLoginUpdate, { args: [record] }),
      ]);
      assert.deepEqual(a, b);
      assert.equal(logins, 1);
      assert.deepEqual(await handle.executeUpdate(addWalletSlotUpdate, { args: [{ requestKey: 'k'.repeat(64), requestId: 'r2' }] }), {
        wallet_index: 1,
        created: true,
      });
      await handle.result();
    });
  });
});

void describe('scheduled workflows (mocked activities)', () => {
  void test('purgeExpiredWorkflow returns what its activity purged', async () => {
    const purged = { used_signatures: 3, sessions: 2 };
    await withWorker(env, { purgeExpiredRows: async () => purged } as unknown as Partial<Activities>, async (taskQueue) => {
      const result: unknown = await env.client.workflow.execute('purgeExpiredWorkflow', { workflowId: `maintenance/${hex(8)}`, taskQueue });
      assert.deepEqual(result, purged);
    });
  });

  void test('auditAnchorWorkflow returns the signed head (and null on an empty log)', async () => {
    const head = { seq: '7', hash: 'h'.repeat(64), signed_at: new Date(0).toISOString(), kid: 'k1', jws: 'a.b.c', version: 2, root: 'r' };
    let next: typeof head | null = head;
    await withWorker(env, { anchorAuditHead: async () => next }, async (taskQueue) => {
      assert.deepEqual(await env.client.workflow.execute('auditAnchorWorkflow', { workflowId: `audit/${hex(8)}`, taskQueue }), head);
      next = null;
      assert.equal(await env.client.workflow.execute('auditAnchorWorkflow', { workflowId: `audit/${hex(8)}`, taskQueue }), null);
    });
  });
});

void describe('passkeyCeremonyWorkflow (mocked activities)', () => {
  const passkey = { id: 'cred', name: 'Phone', created_at: 1, last_used_at: null, backup_eligible: true, backed_up: true, transports: [], aaguid: '0' };
  const response = { id: 'cred', response: {} };

  // 5 s: room for a few Updates on a loaded machine (2 s was not); each run waits out its window.
  function open(taskQueue: string, kind: PasskeyCeremonyKind, ttlSeconds = 5) {
    const requestId = hex(16);
    const input: PasskeyCeremonyInput = {
      kind,
      challenge: randomBytes(32).toString('base64url'),
      rpId: 'broker.example',
      origins: ['https://broker.example'],
      settings: { ttlSeconds },
      ...(kind === 'login' ? {} : { omniAccount: `0x${'cd'.repeat(32)}`, userHandle: 'handle' }),
    };
    const startWorkflowOperation = new WithStartWorkflowOperation('passkeyCeremonyWorkflow', {
      workflowId: `passkey/${requestId}`,
      taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
    });
    return {
      requestId,
      input,
      startWorkflowOperation,
      issued: env.client.workflow.executeUpdateWithStart(openPasskeyChallengeUpdate, { startWorkflowOperation }),
    };
  }

  void test('a database failure leaves the challenge open; the verified login signs in with the challenge as its proof; a second answer is Replayed', async () => {
    const login = completeLoginMock();
    let down = true;
    const activities: Partial<Activities> = {
      verifyPasskeyAssertion: async () => {
        if (down) throw ApplicationFailure.nonRetryable('database down', FailureType.auditError);
        return { ok: true, identity: { type: 'passkey', value: 'handle' }, omniAccount: `0x${'ab'.repeat(32)}`, credentialId: 'cred' };
      },
      completeLogin: login.completeLogin,
    };
    await withWorker(env, activities, async (taskQueue) => {
      const { requestId, startWorkflowOperation, issued } = open(taskQueue, 'login');
      assert.equal((await issued).request_id, requestId);
      const handle = await startWorkflowOperation.workflowHandle();
      const submit = () => handle.executeUpdate(submitPasskeyResponseUpdate, { args: [{ door: 'session', response }] });
      assert.equal(await refusal(submit()), FailureType.auditError);
      down = false;
      const r = await submit();
      assert.equal(r.kind, 'session');
      assert.equal(login.calls.length, 1);
      assert.equal(login.calls[0]?.method, 'passkey');
      assert.deepEqual(login.calls[0]?.consumeProof && { hash: login.calls[0].consumeProof.hash, purpose: login.calls[0].consumeProof.purpose }, {
        hash: `passkey:${requestId}`,
        purpose: 'passkey_login',
      });
      assert.equal(await refusal(submit()), FailureType.replayed);
      assert.equal(await handle.result(), 'succeeded');
    });
  });

  void test('a refused response uses the challenge up: the next answer is Replayed and the run ends refused', async () => {
    const activities: Partial<Activities> = { verifyPasskeyAssertion: async () => ({ ok: false, code: 'unauthorized', reason: 'origin' }) };
    await withWorker(env, activities, async (taskQueue) => {
      const { startWorkflowOperation, issued } = open(taskQueue, 'login');
      await issued;
      const handle = await startWorkflowOperation.workflowHandle();
      const submit = () => handle.executeUpdate(submitPasskeyResponseUpdate, { args: [{ door: 'session', response }] });
      assert.equal(await refusal(submit()), FailureType.unauthorized);
      assert.equal(await refusal(submit()), FailureType.replayed);
      assert.equal(await handle.result(), 'refused');
    });
  });

  void test('a registration is answered only by its account and through its own door; it signs nobody in', async () => {
    const login = completeLoginMock();
    const activities: Partial<Activities> = {
      verifyPasskeyRegistration: async () => ({ ok: true, passkey, credentialId: 'cred' }),
      completeLogin: login.completeLogin,
    };
    await withWorker(env, activities, async (taskQueue) => {
      const { input, startWorkflowOperation, issued } = open(taskQueue, 'register');
      await issued;
      const handle = await startWorkflowOperation.workflowHandle();
      const submit = (door: 'register' | 'session', omniAccount?: string) =>
        handle.executeUpdate(submitPasskeyResponseUpdate, { args: [{ door, response, ...(omniAccount ? { omniAccount } : {}) }] });
      assert.equal(await refusal(submit('register', `0x${'ef'.repeat(32)}`)), FailureType.forbidden);
      assert.equal(await refusal(submit('session', input.omniAccount)), FailureType.badRequest);
      const r = await submit('register', input.omniAccount);
      assert.deepEqual(r, { kind: 'registered', passkey });
      assert.equal(login.calls.length, 0);
      assert.equal(await handle.result(), 'succeeded');
    });
  });

  void test('an unanswered challenge expires with its window; a late answer is Expired', async () => {
    await withWorker(env, {}, async (taskQueue) => {
      const { startWorkflowOperation, issued } = open(taskQueue, 'signup', 1);
      await issued;
      const handle = await startWorkflowOperation.workflowHandle();
      assert.equal(await handle.result(), 'expired');
    });
  });
});
