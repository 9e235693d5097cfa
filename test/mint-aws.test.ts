import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { temporal } from '@temporalio/proto';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { StsFailureCode } from '../fixtures/sts';
import { AesGcmPayloadCodec } from '../lib/codec';
import { AkAccount, AkFlow, AkOmniAccount, AkOutcome, AkStage } from '../lib/search-attributes';
import { accountTag } from '../lib/digest';
import { MINT_ID_PREFIX } from '../workflows/mint.definitions';
import { startStack, type TestStack } from './harness';
import { agentKeysActorOf, auditCount, emailLogin, lastMintRows, mintAws, walletLogin, type WalletSession } from './mint-client';

const ROLE = 'arn:aws:iam::123456789012:role/agentkeys-data';
const MAX_DURATION = 7200;

let stack: TestStack;
let main: WalletSession;
const logLines: string[] = [];

before(async () => {
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_DATA_ROLE_ARN: ROLE, BROKER_STS_SESSION_DURATION_SECONDS: String(MAX_DURATION) },
    logStream: { write: (line) => void logLines.push(line) },
  });
  // The STS stand-in verifies every WebIdentityToken against the broker's published JWKS, as STS does.
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  main = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
});

const assumeCalls = () => stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity');

void describe('POST /v1/mint-aws-creds', () => {
  void test('STS gets the expected form fields; the credentials come back in the contract shape and work', async () => {
    stack.sts.clear();
    const before = Math.floor(Date.now() / 1000);
    const creds = await mintAws(stack, main.token);
    const w = main.wallet.lower;
    assert.deepEqual(Object.keys(creds).sort(), ['access_key_id', 'expiration', 'secret_access_key', 'session_token', 'wallet']);
    assert.equal(creds.wallet, w);
    assert.match(creds.access_key_id, /^ASIA[A-Z2-7]{16}$/);
    assert.equal(creds.secret_access_key.length, 40);
    assert.ok(creds.session_token.length > 100);
    assert.ok(creds.expiration >= before + MAX_DURATION - 1 && creds.expiration <= Math.floor(Date.now() / 1000) + MAX_DURATION + 1);

    const calls = assumeCalls();
    assert.equal(calls.length, 1);
    const f = calls[0]?.fields ?? {};
    assert.deepEqual(Object.keys(f).sort(), ['DurationSeconds', 'RoleArn', 'RoleSessionName', 'WebIdentityToken']);
    assert.equal(f.RoleArn, ROLE);
    assert.equal(f.DurationSeconds, String(MAX_DURATION));
    assert.match(f.RoleSessionName ?? '', new RegExp(`^agentkeys-${w}-\\d{10}$`));
    assert.ok((f.RoleSessionName ?? '').length <= 64);
    // The broker's own OIDC JWT, verifiable against its JWKS, with the docs/contracts.md §4 claims.
    const { payload } = await jwtVerify(f.WebIdentityToken ?? '', createRemoteJWKSet(new URL(`${stack.url}/.well-known/jwks.json`)), {
      audience: 'sts.amazonaws.com',
      issuer: stack.url,
    });
    assert.equal(payload.sub, `agentkeys:agent:${w}`);
    assert.equal(f.RoleSessionName, `agentkeys-${w}-${payload.iat}`);
    assert.deepEqual(payload['https://aws.amazon.com/tags'], {
      principal_tags: { agentkeys_user_wallet: [w], agentkeys_actor_omni: [agentKeysActorOf('evm', w)] },
      transitive_tag_keys: ['agentkeys_user_wallet', 'agentkeys_actor_omni'],
    });

    // The credentials are the ones STS issued: the stand-in recognises them.
    const vended = new STSClient({
      endpoint: stack.sts.url,
      region: 'us-east-1',
      credentials: { accessKeyId: creds.access_key_id, secretAccessKey: creds.secret_access_key, sessionToken: creds.session_token },
    });
    const who = await vended.send(new GetCallerIdentityCommand({}));
    vended.destroy();
    assert.equal(who.Arn, `arn:aws:sts::123456789012:assumed-role/agentkeys-data/${f.RoleSessionName}`);

    const rows = await lastMintRows(stack, main.omni_account);
    assert.deepEqual(
      rows.map((r) => [r.event, r.outcome]),
      [
        ['mint.aws.intent', 'ok'],
        ['mint.aws', 'ok'],
      ],
    );
    const ok = rows[1]?.details ?? {};
    assert.equal(ok.access_key_id, creds.access_key_id);
    assert.equal(ok.session_name, f.RoleSessionName);
    assert.equal(ok.role_arn, ROLE);
    const everything = JSON.stringify(rows);
    for (const secret of [creds.secret_access_key, creds.session_token, f.WebIdentityToken ?? '-', main.token])
      assert.ok(!everything.includes(secret), 'a secret is in the audit log');

    // Search attributes name the flow and how it ended.
    const desc = await stack.temporal.workflow.getHandle(MINT_ID_PREFIX + rows[1]?.request_id).describe();
    assert.equal(desc.typedSearchAttributes.get(AkFlow), 'mint');
    assert.equal(desc.typedSearchAttributes.get(AkAccount), accountTag(stack.secrets.hmacSecret, main.omni_account));
    assert.equal(desc.typedSearchAttributes.get(AkOmniAccount), undefined);
    assert.equal(desc.typedSearchAttributes.get(AkStage), 'done');
    assert.equal(desc.typedSearchAttributes.get(AkOutcome), 'ok');
  });

  void test('duration_seconds within range is passed to STS; out of range is a 400 that calls nothing and writes nothing', async () => {
    stack.sts.clear();
    const creds = await mintAws(stack, main.token, { duration_seconds: 900 });
    assert.equal(assumeCalls()[0]?.fields.DurationSeconds, '900');
    assert.ok(Math.abs(creds.expiration - (Math.floor(Date.now() / 1000) + 900)) <= 2);

    stack.sts.clear();
    const rows = await auditCount(stack);
    for (const duration_seconds of [899, MAX_DURATION + 1, 1000.5, '3600']) {
      const res = await stack.request('POST', '/v1/mint-aws-creds', { token: main.token, body: { duration_seconds } });
      assert.equal(res.status, 400, res.text);
      assert.equal((res.body as { error: string }).error, 'bad_request');
      assert.match((res.body as { message: string }).message, /duration_seconds/);
    }
    assert.equal(assumeCalls().length, 0);
    assert.equal(await auditCount(stack), rows);
  });

  void test('an account without a wallet gets the session name from its OmniAccount, cut to 64 characters; the answer names its actor identifier', async () => {
    stack.sts.clear();
    const session = await emailLogin(stack);
    const creds = await mintAws(stack, session.token);
    assert.equal(creds.wallet, agentKeysActorOf('email', session.email.toLowerCase()));
    const name = assumeCalls()[0]?.fields.RoleSessionName ?? '';
    assert.equal(name.length, 64);
    assert.equal(name, `agentkeys-${session.omni_account}`.slice(0, 64));
  });

  const finalErrors: [StsFailureCode, RegExp][] = [
    ['InvalidIdentityToken', /InvalidIdentityToken.*OIDC provider/],
    ['ExpiredTokenException', /ExpiredTokenException.*clock/],
    ['AccessDenied', /AccessDenied.*trust policy/],
    ['IDPCommunicationError', /IDPCommunicationError/],
  ];
  for (const [code, message] of finalErrors) {
    void test(`STS ${code}: 502 sts_error with a clear message, not retried, audited as failed`, async () => {
      stack.sts.clear();
      stack.sts.failNext(1, code);
      const res = await stack.request('POST', '/v1/mint-aws-creds', { token: main.token });
      assert.equal(res.status, 502, res.text);
      assert.deepEqual(Object.keys(res.body as object).sort(), ['error', 'message']);
      assert.equal((res.body as { error: string }).error, 'sts_error');
      assert.match((res.body as { message: string }).message, message);
      assert.equal(assumeCalls().length, 1, 'a final STS error was retried');
      const rows = await lastMintRows(stack, main.omni_account);
      assert.deepEqual(
        rows.map((r) => [r.event, r.outcome]),
        [
          ['mint.aws.intent', 'ok'],
          ['mint.aws', 'failed'],
        ],
      );
      assert.equal(rows[1]?.details.sts_code, code);
    });
  }

  void test('throttling is retried with backoff, then succeeds', async () => {
    stack.sts.clear();
    stack.sts.failNext(2, 'Throttling');
    const creds = await mintAws(stack, main.token);
    assert.match(creds.access_key_id, /^ASIA/);
    const calls = assumeCalls();
    assert.equal(calls.length, 3);
    const gaps = calls.slice(1).map((c, i) => Date.parse(c.received_at) - Date.parse(calls[i]?.received_at ?? ''));
    assert.ok((gaps[1] ?? 0) > (gaps[0] ?? 0), `no backoff between retries: ${gaps.join(', ')} ms`);
    const rows = await lastMintRows(stack, main.omni_account);
    assert.equal(rows[1]?.details.sts_attempt, 3);
  });

  void test('throttling that does not stop: 502 sts_error after the retry budget', async () => {
    stack.sts.clear();
    stack.sts.failAlways('Throttling');
    try {
      const res = await stack.request('POST', '/v1/mint-aws-creds', { token: main.token });
      assert.equal(res.status, 502, res.text);
      assert.equal((res.body as { error: string }).error, 'sts_error');
      assert.match((res.body as { message: string }).message, /throttling.*gave up after retrying/i);
      assert.equal(assumeCalls().length, 3);
    } finally {
      stack.sts.failAlways(null);
    }
  });

  void test('no secret in the workflow history or the API log after a mint', async () => {
    stack.sts.clear();
    logLines.length = 0;
    const creds = await mintAws(stack, main.token);
    const jwt = assumeCalls()[0]?.fields.WebIdentityToken;
    assert.ok(jwt);
    const requestId = (await lastMintRows(stack, main.omni_account))[1]?.request_id;
    assert.ok(requestId);

    const history = await stack.temporal.workflow.getHandle(MINT_ID_PREFIX + requestId).fetchHistory();
    const raw = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
    assert.ok(raw.includes(Buffer.from(accountTag(stack.secrets.hmacSecret, main.omni_account))), 'history fetched is not this mint');
    assert.ok(!raw.includes(Buffer.from(main.omni_account.slice(2))), 'the OmniAccount is in the history in clear');
    const secrets = { secret_access_key: creds.secret_access_key, session_token: creds.session_token, jwt, bearer: main.token };
    for (const [name, value] of Object.entries(secrets)) {
      assert.ok(!raw.includes(Buffer.from(value)), `${name} is in the workflow history`);
      assert.ok(!raw.includes(Buffer.from(value.slice(-24))), `part of ${name} is in the workflow history`);
    }
    // Positive control: the result is there, encrypted: decoding it with the broker's codec shows
    // it — and even decoded, the secret parts are only a JWE sealed to the API's one-request key.
    const completed = history.events?.find((e) => e.workflowExecutionCompletedEventAttributes)?.workflowExecutionCompletedEventAttributes;
    const decoded = await new AesGcmPayloadCodec(stack.secrets.payloadKey).decode(completed?.result?.payloads ?? []);
    const result = JSON.parse(Buffer.from(decoded?.[0]?.data ?? new Uint8Array()).toString()) as Record<string, unknown>;
    assert.equal((result.public as Record<string, unknown> | undefined)?.access_key_id, creds.access_key_id, 'the codec control failed');
    assert.match(String(result.sealed), /^[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+$/, 'the secret parts are a compact JWE');
    assert.ok(!JSON.stringify(result).includes(creds.secret_access_key) && !JSON.stringify(result).includes(creds.session_token));

    const log = logLines.join('');
    assert.match(log, /"kind":"aws".*credential minted/, 'the API log was not captured');
    for (const [name, value] of Object.entries(secrets)) assert.ok(!log.includes(value), `${name} is in the API log`);
  });

  void test('no data role configured: 503, nothing called', async () => {
    const bare = await startStack({ env: { BROKER_DATA_ROLE_ARN: '' } });
    try {
      const session = await walletLogin(bare);
      const res = await bare.request('POST', '/v1/mint-aws-creds', { token: session.token });
      assert.equal(res.status, 503, res.text);
      assert.equal((res.body as { error: string }).error, 'unavailable');
      assert.equal(bare.sts.calls().length, 0);
    } finally {
      await bare.stop();
    }
  });
});
