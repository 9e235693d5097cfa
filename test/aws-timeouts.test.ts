/**
 * The AWS clients' answer timeouts are enforced (STS for mints, IAM for the kill switch, SES for
 * login codes): a service that accepts the connection and never answers fails the call, instead of
 * holding it until the activity's own timeout while a retry runs beside it. The SDK only warns when
 * its request timeout passes unless told to throw.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { GetRolePolicyCommand } from '@aws-sdk/client-iam';
import { createIamClient } from '../adapters/iam-client';
import { SesMailer } from '../adapters/ses-mailer';
import { assumeRoleWithWebIdentity, classifyStsError, createStsClient } from '../adapters/sts-client';

const sockets = new Set<Socket>();
const silent = createServer((s) => {
  sockets.add(s);
  s.on('data', () => undefined);
});
let endpoint = '';

before(async () => {
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = silent.address();
  assert.ok(address && typeof address === 'object');
  endpoint = `http://127.0.0.1:${address.port}`;
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x'.repeat(40) };

/** What `call` (made with a 300-ms answer timeout) settled with within a second: its error, or 'still waiting'. */
async function outcomeWithinASecond(call: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const stillWaiting = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 1000)));
  try {
    return await Promise.race([
      call.then(
        () => 'answered' as const,
        (e: unknown) => e,
      ),
      stillWaiting,
    ]);
  } finally {
    clearTimeout(timer);
    call.catch(() => undefined);
  }
}

void describe('AWS client timeouts', () => {
  void test('STS: a call STS never answers fails after the request timeout, as a retryable failure', async () => {
    const client = createStsClient({ AWS_REGION: 'us-east-1', BROKER_STS_ENDPOINT: endpoint }, { credentials, requestTimeoutMs: 300 });
    try {
      const outcome = await outcomeWithinASecond(
        assumeRoleWithWebIdentity(client, { roleArn: 'arn:aws:iam::123456789012:role/r', sessionName: 's', webIdentityToken: 'a.b.c', durationSeconds: 900 }),
      );
      assert.notEqual(outcome, 'still waiting', 'the call still waits a second after its 300 ms timeout');
      assert.ok(outcome instanceof Error, String(outcome));
      const classified = classifyStsError(outcome, { roleArn: 'r', issuer: 'i', audience: 'a' });
      assert.equal(classified.retryable, true);
      assert.match(classified.message, /^STS could not be reached \(/);
    } finally {
      client.destroy();
    }
  });

  void test('IAM: a call IAM never answers fails after the request timeout (what bounds the kill switch’s write cutoff)', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
    const client = createIamClient({ AWS_REGION: 'us-east-1', BROKER_IAM_ENDPOINT: endpoint }, { requestTimeoutMs: 300 });
    try {
      const outcome = await outcomeWithinASecond(client.send(new GetRolePolicyCommand({ RoleName: 'r', PolicyName: 'p' })));
      assert.notEqual(outcome, 'still waiting', 'the call still waits a second after its 300 ms timeout');
      assert.ok(outcome instanceof Error, String(outcome));
    } finally {
      client.destroy();
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });

  void test('SES: a send SES never answers fails after the request timeout, not a permanent refusal', async () => {
    const mailer = new SesMailer('broker@example.com', { region: 'us-east-1', endpoint, requestTimeoutMs: 300 });
    try {
      const outcome = await outcomeWithinASecond(mailer.send({ to: 'a@example.com', subject: 's', text: 't' }));
      assert.notEqual(outcome, 'still waiting', 'the send still waits a second after its 300 ms timeout');
      assert.ok(outcome instanceof Error, String(outcome));
    } finally {
      mailer.destroy();
    }
  });
});
