import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SESv2Client, SESv2ServiceException, SendEmailCommand, type SendEmailCommandInput } from '@aws-sdk/client-sesv2';
import {
  AssumeRoleWithWebIdentityCommand,
  GetCallerIdentityCommand,
  STSClient,
  STSServiceException,
  type AssumeRoleWithWebIdentityCommandInput,
} from '@aws-sdk/client-sts';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { startSesFixture, type SesFixture } from '../fixtures/ses';
import { startStsFixture, type StsFailureCode, type StsFixture } from '../fixtures/sts';

const STATIC_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
const ROLE_ARN = 'arn:aws:iam::111122223333:role/service/agentkeys-broker';

async function ses(t: TestContext): Promise<SesFixture> {
  const fixture = await startSesFixture();
  t.after(() => fixture.close());
  return fixture;
}

function sesClient(t: TestContext, fixture: SesFixture, maxAttempts?: number): SESv2Client {
  const client = new SESv2Client({ endpoint: fixture.url, region: 'us-east-1', credentials: STATIC_CREDENTIALS, maxAttempts });
  t.after(() => client.destroy());
  return client;
}

async function sts(t: TestContext, jwksUrl?: string): Promise<StsFixture> {
  const fixture = await startStsFixture(jwksUrl === undefined ? {} : { jwksUrl });
  t.after(() => fixture.close());
  return fixture;
}

/** No credentials: AssumeRoleWithWebIdentity is an unsigned (noAuth) operation. */
function stsClient(t: TestContext, fixture: StsFixture, opts: { maxAttempts?: number; credentials?: typeof STATIC_CREDENTIALS } = {}): STSClient {
  const client = new STSClient({ endpoint: fixture.url, region: 'us-east-1', ...opts });
  t.after(() => client.destroy());
  return client;
}

function mail(to: string, code: string, html?: string): SendEmailCommandInput {
  return {
    FromEmailAddress: 'AgentKeys <no-reply@agentkeys.test>',
    Destination: { ToAddresses: [to] },
    Content: {
      Simple: {
        Subject: { Data: 'Your AgentKeys login code', Charset: 'UTF-8' },
        Body: { Text: { Data: `Your code is ${code}` }, ...(html === undefined ? {} : { Html: { Data: html } }) },
      },
    },
  };
}

async function rejection<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    return err;
  }
  assert.fail(`expected the call to fail with ${type.name}`);
}

// ---------------------------------------------------------------- SES v2

void test('SES: SendEmail through the real SDK is captured with its fields', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture);

  const before = Date.now();
  const first = await client.send(new SendEmailCommand(mail('Alice@Example.com', '111111', '<p>Your code is <b>111111</b></p>')));
  const second = await client.send(new SendEmailCommand(mail('bob@example.com', '222222')));

  assert.match(first.MessageId ?? '', /^0100[0-9a-f]{12}-[0-9a-f-]{36}-000000$/);
  assert.equal(fixture.requestCount(), 2);
  const all = fixture.messages();
  assert.deepEqual(
    all.map((m) => m.to),
    ['bob@example.com', 'Alice@Example.com'],
    'newest first',
  );

  const [alice] = fixture.mailTo('alice@EXAMPLE.com');
  assert.ok(alice, 'mailTo matches case-insensitively');
  assert.equal(alice.from, 'AgentKeys <no-reply@agentkeys.test>');
  assert.equal(alice.subject, 'Your AgentKeys login code');
  assert.equal(alice.text, 'Your code is 111111');
  assert.equal(alice.html, '<p>Your code is <b>111111</b></p>');
  assert.equal(alice.message_id, first.MessageId);
  const receivedAt = Date.parse(alice.received_at);
  assert.ok(receivedAt >= before - 1000 && receivedAt <= Date.now(), `received_at ${alice.received_at} is now`);
  assert.equal(new Date(receivedAt).toISOString(), alice.received_at, 'received_at is ISO-8601');

  const [bob] = fixture.mailTo('bob@example.com');
  assert.equal(bob?.html, undefined);
  assert.equal(bob?.message_id, second.MessageId);

  fixture.clear();
  assert.deepEqual(fixture.messages(), []);
  assert.equal(fixture.requestCount(), 0);
});

void test('SES: one capture per recipient, display-name addresses reduced to the address', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture);
  await client.send(
    new SendEmailCommand({
      ...mail('x@example.com', '1'),
      Destination: { ToAddresses: ['Carol <carol@example.com>'], CcAddresses: ['dave@example.com'] },
    }),
  );
  assert.deepEqual(
    fixture
      .messages()
      .map((m) => m.to)
      .sort(),
    ['carol@example.com', 'dave@example.com'],
  );
});

void test('SES: waitForMail resolves on arrival, honours `after`, and times out precisely', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture);

  const waiting = fixture.waitForMail('Erin@example.com', { timeoutMs: 2000 });
  await client.send(new SendEmailCommand(mail('erin@example.com', '333333')));
  assert.equal((await waiting).text, 'Your code is 333333');

  const seen = fixture.mailTo('erin@example.com').length;
  const next = fixture.waitForMail('erin@example.com', { after: seen, timeoutMs: 2000 });
  await client.send(new SendEmailCommand(mail('erin@example.com', '444444')));
  assert.equal((await next).text, 'Your code is 444444');

  // Already there: resolves immediately with the mail at chronological index `after`.
  assert.equal((await fixture.waitForMail('erin@example.com', { after: 0 })).text, 'Your code is 333333');

  await assert.rejects(
    fixture.waitForMail('erin@example.com', { after: 2, timeoutMs: 30 }),
    /no mail beyond the 2 already seen within 30 ms \(2 to that address/,
  );

  const pending = fixture.waitForMail('nobody@example.com', { timeoutMs: 5000 });
  await fixture.close();
  await assert.rejects(pending, /closed before a mail arrived/);
});

void test('SES: an injected throttle is retried by the SDK default retry strategy', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture);
  fixture.failNext(1, 'throttle');
  const out = await client.send(new SendEmailCommand(mail('frank@example.com', '555555')));
  assert.equal(out.$metadata.attempts, 2);
  assert.equal(fixture.requestCount(), 2);
  assert.equal(fixture.mailTo('frank@example.com').length, 1);
});

void test('SES: injected failures surface with the SESv2 exception names', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture, 1);

  fixture.failNext(1, 'reject');
  const rejected = await rejection(client.send(new SendEmailCommand(mail('gina@example.com', '1'))), SESv2ServiceException);
  assert.equal(rejected.name, 'MessageRejected');
  assert.equal(rejected.$metadata.httpStatusCode, 400);
  assert.equal(rejected.$fault, 'client');

  fixture.failNext(1, 'throttle');
  const throttled = await rejection(client.send(new SendEmailCommand(mail('gina@example.com', '2'))), SESv2ServiceException);
  assert.equal(throttled.name, 'TooManyRequestsException');
  assert.equal(throttled.$metadata.httpStatusCode, 429);

  fixture.failNext(1, 'server');
  const server = await rejection(client.send(new SendEmailCommand(mail('gina@example.com', '3'))), SESv2ServiceException);
  assert.equal(server.name, 'InternalFailure');
  assert.equal(server.$metadata.httpStatusCode, 500);
  assert.equal(server.$fault, 'server');

  assert.equal(fixture.requestCount(), 3);
  assert.equal(fixture.messages().length, 0);
});

void test('SES: a rejection is not retried; failAlways persists until cleared', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture); // default: 3 attempts

  fixture.failNext(1, 'reject');
  await rejection(client.send(new SendEmailCommand(mail('hank@example.com', '1'))), SESv2ServiceException);
  assert.equal(fixture.requestCount(), 1, 'MessageRejected is a non-retryable client error');

  fixture.failAlways('server');
  const err = await rejection(client.send(new SendEmailCommand(mail('hank@example.com', '2'))), SESv2ServiceException);
  assert.equal(err.name, 'InternalFailure');
  assert.equal(err.$metadata.attempts, 3);
  assert.equal(fixture.requestCount(), 4);

  fixture.failAlways(null);
  await client.send(new SendEmailCommand(mail('hank@example.com', '3')));
  assert.equal(fixture.mailTo('hank@example.com').length, 1);
  assert.throws(() => fixture.failNext(-1, 'server'), RangeError);
});

void test('SES: malformed requests get a BadRequestException', async (t) => {
  const fixture = await ses(t);
  const client = sesClient(t, fixture, 1);

  const noRecipient = await rejection(
    client.send(new SendEmailCommand({ ...mail('x@example.com', '1'), Destination: { ToAddresses: [] } })),
    SESv2ServiceException,
  );
  assert.equal(noRecipient.name, 'BadRequestException');
  assert.equal(noRecipient.$metadata.httpStatusCode, 400);
  assert.match(noRecipient.message, /at least one recipient/);

  const badAddress = await rejection(client.send(new SendEmailCommand(mail('not-an-address', '1'))), SESv2ServiceException);
  assert.equal(badAddress.name, 'BadRequestException');
  assert.match(badAddress.message, /Illegal address in Destination\.ToAddresses: not-an-address/);

  const raw = await rejection(
    client.send(new SendEmailCommand({ ...mail('x@example.com', '1'), Content: { Raw: { Data: new TextEncoder().encode('Subject: x\r\n\r\nhi') } } })),
    SESv2ServiceException,
  );
  assert.equal(raw.name, 'BadRequestException');
  assert.match(raw.message, /Content\.Raw is not supported/);

  const notJson = await fetch(`${fixture.url}/v2/email/outbound-emails`, { method: 'POST', body: '{oops', headers: { 'content-type': 'application/json' } });
  assert.equal(notJson.status, 400);
  assert.match(notJson.headers.get('x-amzn-errortype') ?? '', /^BadRequestException/);
  assert.deepEqual(await notJson.json(), { message: 'Request body is not valid JSON' });

  assert.equal(fixture.requestCount(), 4);
  assert.equal(fixture.messages().length, 0);
});

// ---------------------------------------------------------------- STS

async function signingKey(): Promise<{ privateKey: CryptoKey; jwk: Record<string, unknown> }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } };
}

async function idToken(key: CryptoKey, claims: JWTPayload = {}, expiresIn: string | number = '5m'): Promise<string> {
  return new SignJWT({ sub: 'agent-42', aud: 'sts.amazonaws.com', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://broker.agentkeys.test')
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
}

async function jwksServer(t: TestContext, jwk: Record<string, unknown>): Promise<string> {
  const body = JSON.stringify({ keys: [jwk] });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
}

function assume(token: string, extra: Partial<AssumeRoleWithWebIdentityCommandInput> = {}): AssumeRoleWithWebIdentityCommand {
  return new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE_ARN, RoleSessionName: 'agent-42@broker', WebIdentityToken: token, ...extra });
}

void test('STS: AssumeRoleWithWebIdentity returns credentials the SDK parses', async (t) => {
  const fixture = await sts(t);
  const client = stsClient(t, fixture);
  const { privateKey } = await signingKey();
  const token = await idToken(privateKey);

  const before = Date.now();
  const out = await client.send(assume(token, { DurationSeconds: 900 }));
  const creds = out.Credentials;
  assert.ok(creds);
  assert.match(creds.AccessKeyId ?? '', /^ASIA[A-Z2-7]{16}$/);
  assert.equal(creds.SecretAccessKey?.length, 40);
  assert.ok((creds.SessionToken?.length ?? 0) > 100);
  assert.ok(creds.Expiration instanceof Date, 'Expiration is parsed into a Date');
  const drift = creds.Expiration.getTime() - (before + 900_000);
  assert.ok(Math.abs(drift) < 5000, `Expiration is now + 900 s (drift ${drift} ms)`);

  assert.equal(out.SubjectFromWebIdentityToken, 'agent-42');
  assert.equal(out.Audience, 'sts.amazonaws.com');
  assert.equal(out.Provider, 'https://broker.agentkeys.test');
  assert.equal(out.AssumedRoleUser?.Arn, 'arn:aws:sts::111122223333:assumed-role/agentkeys-broker/agent-42@broker');
  assert.match(out.AssumedRoleUser?.AssumedRoleId ?? '', /^AROA[A-Z2-7]{17}:agent-42@broker$/);
  assert.match(out.$metadata.requestId ?? '', /^[0-9a-f-]{36}$/);

  const [call] = fixture.calls();
  assert.ok(call);
  assert.equal(call.action, 'AssumeRoleWithWebIdentity');
  assert.equal(call.signed, false, 'the SDK sends AssumeRoleWithWebIdentity unsigned');
  assert.deepEqual(call.fields, { RoleArn: ROLE_ARN, RoleSessionName: 'agent-42@broker', WebIdentityToken: token, DurationSeconds: '900' });
  assert.ok(!Number.isNaN(Date.parse(call.received_at)));

  // A second session gets fresh credentials; the role id is stable per role.
  const again = await client.send(assume(token));
  assert.notEqual(again.Credentials?.AccessKeyId, creds.AccessKeyId);
  assert.equal(again.AssumedRoleUser?.AssumedRoleId, out.AssumedRoleUser?.AssumedRoleId);
  const defaultDrift = (again.Credentials?.Expiration?.getTime() ?? 0) - (Date.now() + 3_600_000);
  assert.ok(Math.abs(defaultDrift) < 5000, 'DurationSeconds defaults to 3600');
});

void test('STS: each injected failure surfaces in the SDK under its exception name', async (t) => {
  const fixture = await sts(t);
  const client = stsClient(t, fixture, { maxAttempts: 1 });
  const { privateKey } = await signingKey();
  const token = await idToken(privateKey);

  const expected: Record<StsFailureCode, { name: string; status: number; retryable: boolean }> = {
    InvalidIdentityToken: { name: 'InvalidIdentityTokenException', status: 400, retryable: false },
    ExpiredTokenException: { name: 'ExpiredTokenException', status: 400, retryable: false },
    AccessDenied: { name: 'AccessDenied', status: 403, retryable: false },
    IDPCommunicationError: { name: 'IDPCommunicationErrorException', status: 400, retryable: true },
    Throttling: { name: 'Throttling', status: 400, retryable: false },
    RegionDisabledException: { name: 'RegionDisabledException', status: 403, retryable: false },
  };
  for (const [code, want] of Object.entries(expected) as [StsFailureCode, (typeof expected)[StsFailureCode]][]) {
    fixture.failNext(1, code);
    const err = await rejection(client.send(assume(token)), STSServiceException);
    assert.equal(err.name, want.name, code);
    assert.equal(err.$metadata.httpStatusCode, want.status, code);
    assert.equal(err.$fault, 'client', code);
    assert.equal(err.$retryable !== undefined, want.retryable, `${code} $retryable`);
  }
  assert.equal(fixture.calls().length, 6);
  await client.send(assume(token)); // the queue is drained
});

void test('STS: Throttling and IDPCommunicationError are retried by the SDK; the rest are not', async (t) => {
  const fixture = await sts(t);
  const client = stsClient(t, fixture); // default: 3 attempts
  const { privateKey } = await signingKey();
  const token = await idToken(privateKey);

  fixture.failNext(1, 'Throttling');
  assert.equal((await client.send(assume(token))).$metadata.attempts, 2);
  fixture.failNext(1, 'IDPCommunicationError');
  assert.equal((await client.send(assume(token))).$metadata.attempts, 2);
  assert.equal(fixture.calls().length, 4);

  fixture.clear();
  fixture.failNext(1, 'InvalidIdentityToken');
  await rejection(client.send(assume(token)), STSServiceException);
  assert.equal(fixture.calls().length, 1);

  fixture.failAlways('Throttling');
  const err = await rejection(client.send(assume(token)), STSServiceException);
  assert.equal(err.name, 'Throttling');
  assert.equal(err.$metadata.attempts, 3);
  fixture.failAlways(null);
  await client.send(assume(token));
});

void test('STS: request validation answers ValidationError / InvalidIdentityToken', async (t) => {
  const fixture = await sts(t);
  const client = stsClient(t, fixture, { maxAttempts: 1 });
  const { privateKey } = await signingKey();
  const token = await idToken(privateKey);

  const cases: [AssumeRoleWithWebIdentityCommand, string, RegExp][] = [
    [assume(token, { RoleArn: 'not-an-arn-but-long-enough' }), 'ValidationError', /Request ARN is invalid/],
    [assume(token, { RoleSessionName: 'x' }), 'ValidationError', /'roleSessionName'/],
    [assume(token, { RoleSessionName: 'has space' }), 'ValidationError', /'roleSessionName'/],
    [assume(token, { DurationSeconds: 899 }), 'ValidationError', /'durationSeconds'.*between 900 and 43200/],
    [assume(token, { DurationSeconds: 43201 }), 'ValidationError', /'durationSeconds'/],
    [assume('definitely-not-a-jwt'), 'InvalidIdentityTokenException', /not a well-formed JWT/],
  ];
  for (const [command, name, message] of cases) {
    const err = await rejection(client.send(command), STSServiceException);
    assert.equal(err.name, name);
    assert.equal(err.$metadata.httpStatusCode, 400);
    assert.match(err.message, message);
  }
  await client.send(assume(token, { DurationSeconds: 43200 }));
});

void test('STS: with a JWKS URL the token signature, audience and expiry are verified', async (t) => {
  const { privateKey, jwk } = await signingKey();
  const jwksUrl = await jwksServer(t, jwk);
  const fixture = await sts(t, jwksUrl);
  const client = stsClient(t, fixture, { maxAttempts: 1 });

  const ok = await client.send(assume(await idToken(privateKey)));
  assert.equal(ok.SubjectFromWebIdentityToken, 'agent-42');
  assert.equal(ok.Provider, 'https://broker.agentkeys.test');
  assert.equal(ok.Audience, 'sts.amazonaws.com');

  const multiAud = await client.send(assume(await idToken(privateKey, { aud: ['other', 'sts.amazonaws.com'] })));
  assert.equal(multiAud.Audience, 'sts.amazonaws.com');

  const wrongAud = await rejection(client.send(assume(await idToken(privateKey, { aud: 'api.agentkeys.test' }))), STSServiceException);
  assert.equal(wrongAud.name, 'InvalidIdentityTokenException');
  assert.match(wrongAud.message, /Incorrect token audience/);

  const other = await signingKey(); // same kid, different key
  const wrongKey = await rejection(client.send(assume(await idToken(other.privateKey))), STSServiceException);
  assert.equal(wrongKey.name, 'InvalidIdentityTokenException');
  assert.match(wrongKey.message, /signature could not be verified/);

  const expired = await rejection(client.send(assume(await idToken(privateKey, {}, Math.floor(Date.now() / 1000) - 60))), STSServiceException);
  assert.equal(expired.name, 'ExpiredTokenException');
  assert.match(expired.message, /^Token expired: current date\/time \S+Z must be before the expiration date\/time \S+Z$/);

  // Switching verification off and on at run time.
  fixture.setJwksUrl(null);
  await client.send(assume(await idToken(other.privateKey)));
  fixture.setJwksUrl('http://127.0.0.1:9/unreachable-jwks.json');
  const unreachable = await rejection(client.send(assume(await idToken(privateKey))), STSServiceException);
  assert.equal(unreachable.name, 'InvalidIdentityTokenException');
  assert.match(unreachable.message, /Couldn't retrieve verification key/);
});

void test('STS: GetCallerIdentity answers for static and for vended credentials', async (t) => {
  const fixture = await sts(t);

  const staticClient = stsClient(t, fixture, { credentials: STATIC_CREDENTIALS });
  const me = await staticClient.send(new GetCallerIdentityCommand({}));
  assert.equal(me.Account, '123456789012');
  assert.equal(me.Arn, 'arn:aws:iam::123456789012:user/fixture');
  assert.match(me.UserId ?? '', /^AIDA[A-Z2-7]{17}$/);
  const [call] = fixture.calls();
  assert.equal(call?.action, 'GetCallerIdentity');
  assert.equal(call?.signed, true);

  const { privateKey } = await signingKey();
  const assumed = await stsClient(t, fixture).send(assume(await idToken(privateKey)));
  const c = assumed.Credentials;
  assert.ok(c?.AccessKeyId && c.SecretAccessKey && c.SessionToken);
  const vendedClient = new STSClient({
    endpoint: fixture.url,
    region: 'us-east-1',
    credentials: { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken },
  });
  t.after(() => vendedClient.destroy());
  const who = await vendedClient.send(new GetCallerIdentityCommand({}));
  assert.equal(who.Account, '111122223333');
  assert.equal(who.Arn, assumed.AssumedRoleUser?.Arn);
  assert.equal(who.UserId, assumed.AssumedRoleUser?.AssumedRoleId);

  const forged = new STSClient({
    endpoint: fixture.url,
    region: 'us-east-1',
    maxAttempts: 1,
    credentials: { accessKeyId: 'ASIAAAAAAAAAAAAAAAAA', secretAccessKey: 'x'.repeat(40), sessionToken: 'nope' },
  });
  t.after(() => forged.destroy());
  const err = await rejection(forged.send(new GetCallerIdentityCommand({})), STSServiceException);
  assert.equal(err.name, 'InvalidClientTokenId');
  assert.equal(err.$metadata.httpStatusCode, 403);

  const unsigned = await fetch(fixture.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'Action=GetCallerIdentity&Version=2011-06-15',
  });
  assert.equal(unsigned.status, 403);
  assert.match(
    await unsigned.text(),
    /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/"><Error><Type>Sender<\/Type><Code>MissingAuthenticationToken<\/Code>/,
  );
});
