import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hmacHex } from '../lib/digest';
import { startStack, type TestStack } from './harness';
import { walletLogin } from './mint-client';

/**
 * An ES256 signature (r, s) has a twin (r, n − s) that verifies as well, so every session bearer
 * has a second spelling the broker accepts. The audit log names a mint's caller by an HMAC of its
 * bearer: the twin must be the same caller there, or a thief minting with a leaked bearer's twin
 * would leave rows an investigator searching for the leaked bearer misses.
 */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function sOf(token: string): bigint {
  return BigInt(
    `0x${Buffer.from(token.split('.')[2] ?? '', 'base64url')
      .subarray(32)
      .toString('hex')}`,
  );
}

function twinOf(token: string): string {
  const [h, p, sig = ''] = token.split('.');
  const bytes = Buffer.from(sig, 'base64url');
  const s = BigInt(`0x${bytes.subarray(32).toString('hex')}`);
  const other = Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex');
  return `${h}.${p}.${Buffer.concat([bytes.subarray(0, 32), other]).toString('base64url')}`;
}

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

void describe('a session bearer and its ECDSA twin', () => {
  void test('sessions are issued with a low s; a mint by the twin is audited under the bearer the broker issued', async () => {
    const sessions = await Promise.all(Array.from({ length: 6 }, () => walletLogin(stack)));
    for (const s of sessions) assert.ok(sOf(s.token) <= P256_N / 2n, 'issued with a low s');
    const caller = sessions[0];
    assert.ok(caller);
    const twin = twinOf(caller.token);
    assert.notEqual(twin, caller.token);
    for (const token of [caller.token, twin]) {
      const res = await stack.request('POST', '/v1/mint-oidc-jwt', { token });
      assert.equal(res.status, 200, res.text);
    }
    const rows = await stack.db.query<{ details: { bearer_hash?: string } }>(
      `SELECT details FROM audit_log WHERE event = 'mint.oidc.intent' AND omni_account = $1 ORDER BY seq`,
      [caller.omni_account],
    );
    const issuedHash = hmacHex(stack.secrets.hmacSecret, 'audit-bearer', caller.token).slice(0, 32);
    assert.deepEqual(
      rows.rows.map((r) => r.details.bearer_hash),
      [issuedHash, issuedHash],
    );
  });
});
