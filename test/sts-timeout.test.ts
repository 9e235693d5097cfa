/**
 * The STS client's answer timeout is enforced: an STS that accepts the connection and never answers
 * fails the call (a retryable transport failure), instead of holding the mint until its activity's
 * own timeout. The SDK only warns when its request timeout passes unless told to throw.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
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

void describe('STS client timeouts', () => {
  void test('an STS that never answers fails the call after the request timeout, as a retryable failure', async () => {
    const client = createStsClient(
      { AWS_REGION: 'us-east-1', BROKER_STS_ENDPOINT: endpoint },
      { credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x'.repeat(40) }, requestTimeoutMs: 300 },
    );
    const started = Date.now();
    const call = assumeRoleWithWebIdentity(client, {
      roleArn: 'arn:aws:iam::123456789012:role/r',
      sessionName: 's',
      webIdentityToken: 'a.b.c',
      durationSeconds: 900,
    });
    let timer: NodeJS.Timeout | undefined;
    const stillWaiting = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 1000)));
    try {
      const outcome = await Promise.race([
        call.then(
          () => 'answered' as const,
          (e: unknown) => e,
        ),
        stillWaiting,
      ]);
      assert.notEqual(outcome, 'still waiting', 'the call still waits a second after its 300 ms timeout');
      assert.ok(outcome instanceof Error, String(outcome));
      assert.ok(Date.now() - started < 1000);
      const classified = classifyStsError(outcome, { roleArn: 'r', issuer: 'i', audience: 'a' });
      assert.equal(classified.retryable, true);
      assert.match(classified.message, /^STS could not be reached \(/);
    } finally {
      clearTimeout(timer);
      call.catch(() => undefined);
      client.destroy();
    }
  });
});
