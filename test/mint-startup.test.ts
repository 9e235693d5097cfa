import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { stsStartupCheck, stsStartupGate, StsStartupError } from '../adapters/sts-client';
import { startStsFixture, type StsFixture } from '../fixtures/sts';
import { findFreePort } from '../scripts/temporal-dev-server';

const ROLE = 'arn:aws:iam::123456789012:role/agentkeys-data';
const CREDENTIALS = { accessKeyId: 'AKIAFIXTUREKEY000001', secretAccessKey: 'fixture-secret' };

let sts: StsFixture;
before(async () => {
  sts = await startStsFixture();
});
after(async () => {
  await sts?.close();
});

const production = (endpoint: string, role: string | undefined) => ({
  AWS_REGION: 'us-east-1',
  BROKER_STS_ENDPOINT: endpoint,
  BROKER_DATA_ROLE_ARN: role,
  isProduction: true,
});

void describe('STS start-up check', () => {
  void test('GetCallerIdentity with the broker credentials (a signed call) names who the broker is', async () => {
    sts.clear();
    const identity = await stsStartupCheck(production(sts.url, ROLE), { credentials: CREDENTIALS });
    assert.equal(identity.account, '123456789012');
    assert.equal(identity.arn, 'arn:aws:iam::123456789012:user/fixture');
    const [call] = sts.calls();
    assert.equal(call?.action, 'GetCallerIdentity');
    assert.equal(call?.signed, true);
  });

  void test('production refuses to start when STS is unreachable, refuses its credentials, or no role is set', async () => {
    const closed = `http://127.0.0.1:${await findFreePort()}`;
    await assert.rejects(stsStartupGate(production(closed, ROLE), { skipCheck: false, credentials: CREDENTIALS }), (e: Error) => {
      assert.ok(e instanceof StsStartupError);
      assert.match(e.message, /cannot reach http:\/\/127\.0\.0\.1:\d+ with the broker's AWS credentials .*--skip-startup-check/);
      return true;
    });
    sts.failNext(1, 'AccessDenied');
    await assert.rejects(stsStartupGate(production(sts.url, ROLE), { skipCheck: false, credentials: CREDENTIALS }), /GetCallerIdentity failed: AccessDenied/);
    await assert.rejects(stsStartupGate(production(sts.url, undefined), { skipCheck: false, credentials: CREDENTIALS }), /BROKER_DATA_ROLE_ARN is not set/);
  });

  void test('/readyz part: reachable in production, skipped on request, not run in development', async () => {
    sts.clear();
    const ok = await stsStartupGate(production(sts.url, ROLE), { skipCheck: false, credentials: CREDENTIALS });
    assert.deepEqual(await ok(), { ok: true, detail: 'reachable as arn:aws:iam::123456789012:user/fixture' });

    sts.clear();
    const closed = `http://127.0.0.1:${await findFreePort()}`;
    const skipped = await stsStartupGate(production(closed, ROLE), { skipCheck: true });
    assert.deepEqual(await skipped(), { ok: true, detail: 'start-up check skipped (--skip-startup-check)' });
    const dev = await stsStartupGate({ ...production(closed, ROLE), isProduction: false }, { skipCheck: false });
    assert.match((await dev()).detail ?? '', /not run outside production/);
    assert.equal(sts.calls().length, 0);
  });
});
