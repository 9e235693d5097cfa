import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startStack, type TestStack } from './harness';
import { withFailingAuditEvent } from './support/audit-faults';
import { auditCount, auditRowsOf, walletLogin, type WalletSession } from './mint-client';

const WRITE_TIMEOUT_MS = 400;

let stack: TestStack;
let main: WalletSession;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_AUDIT_WRITE_TIMEOUT_MS: String(WRITE_TIMEOUT_MS) } });
  main = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
});

const assumeCalls = () => stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity');

/** The refusal every unwritable-audit case must give: audit_error and nothing else in the body. */
function assertAuditError(res: { status: number; body: unknown; text: string }): void {
  assert.equal(res.status, 500, res.text);
  assert.deepEqual(Object.keys(res.body as object).sort(), ['error', 'message']);
  assert.equal((res.body as { error: string }).error, 'audit_error');
  assert.match((res.body as { message: string }).message, /audit log.*no credential/);
}

void describe('audit is fail-closed', () => {
  void test('audit_log locked by another session: audit_error fast, STS never called, nothing written', async () => {
    stack.sts.clear();
    const rowsBefore = await auditCount(stack);
    const locker = new pg.Client({ connectionString: stack.config.DATABASE_URL });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE');
      const t0 = Date.now();
      for (const path of ['/v1/mint-aws-creds', '/v1/mint-oidc-jwt']) assertAuditError(await stack.request('POST', path, { token: main.token }));
      const elapsed = Date.now() - t0;
      // Three bounded attempts per mint, not a wait on the lock.
      assert.ok(elapsed < 2 * (3 * WRITE_TIMEOUT_MS + 2000), `failing closed took ${elapsed} ms`);
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    assert.equal(assumeCalls().length, 0, 'STS was called without an intent row');
    assert.equal(await auditCount(stack), rowsBefore);
    // The log works again once the lock is gone.
    const ok = await stack.request('POST', '/v1/mint-oidc-jwt', { token: main.token });
    assert.equal(ok.status, 200, ok.text);
  });

  void test('the outcome row of an AWS mint cannot be written: STS was called, yet no credential leaves', async () => {
    stack.sts.clear();
    const res = await withFailingAuditEvent(stack.db, 'mint.aws', () => stack.request('POST', '/v1/mint-aws-creds', { token: main.token }));
    assertAuditError(res);
    assert.equal(assumeCalls().length, 1);
    assert.ok(!/ASIA[A-Z2-7]{16}/.test(res.text), 'an access key id is in the refusal');
    const rows = (await auditRowsOf(stack, main.omni_account)).filter((r) => r.event.startsWith('mint.aws'));
    const last = rows[rows.length - 1];
    assert.equal(last?.event, 'mint.aws.intent', 'the intent row is the last one for this mint');
  });

  void test('the outcome row of an OIDC mint cannot be written: no JWT leaves', async () => {
    const res = await withFailingAuditEvent(stack.db, 'mint.oidc', () => stack.request('POST', '/v1/mint-oidc-jwt', { token: main.token }));
    assertAuditError(res);
    assert.ok(!/eyJ[\w-]+\.[\w-]+\.[\w-]+/.test(res.text), 'a JWT is in the refusal');
  });

  void test('a refused mint whose denial cannot be recorded is still refused (audit_error)', async () => {
    const agent = await walletLogin(stack);
    await stack.db.query(
      `INSERT INTO grants (grant_id, main_account, main_address, agent_address, expires_at, accepted_at, revoked_at)
       VALUES ('grt_${'0'.repeat(32)}', $1, $2, $3, now() + interval '1 hour', now(), now())`,
      [main.omni_account, main.wallet.lower, agent.wallet.lower],
    );
    const res = await withFailingAuditEvent(stack.db, 'mint.oidc', () => stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token }));
    assertAuditError(res);
  });
});
