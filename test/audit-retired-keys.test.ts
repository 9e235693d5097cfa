import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { resolveSecrets } from '../adapters/secrets';
import { signAuditHead, verifyAuditHead } from '../lib/audit-head';
import { ConfigError, loadConfig } from '../lib/config';
import { generateSigningKeyJwk, signingKeyFromJwk } from '../lib/signing-key';
import { startStack, type TestStack } from './harness';

/**
 * After an audit key rotation, heads and proofs the old key signed stay evidence: its public half,
 * in BROKER_AUDIT_KEYS_RETIRED_PATH, is published beside the current key at GET /v1/audit/keys, so
 * they verify against what the broker publishes. The file must hold public halves only.
 */
let dir: string;
let stack: TestStack;
let retiredJwk: JWK;
let retiredFile: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'akb-audit-retired-'));
  retiredJwk = await generateSigningKeyJwk();
  const retired = await signingKeyFromJwk(retiredJwk);
  retiredFile = join(dir, 'retired.json');
  await writeFile(retiredFile, JSON.stringify({ keys: [retired.publicJwk] }));
  stack = await startStack({ worker: false, env: { BROKER_AUDIT_KEYS_RETIRED_PATH: retiredFile } });
});
after(async () => {
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

void describe('retired audit keys', () => {
  void test('published beside the current key: a head the retired key signed verifies against GET /v1/audit/keys', async () => {
    const res = await stack.request('GET', '/v1/audit/keys');
    assert.equal(res.status, 200, res.text);
    const jwks = res.body as { keys: JWK[] };
    const retired = await signingKeyFromJwk(retiredJwk);
    assert.deepEqual(
      jwks.keys.map((k) => k.kid),
      [stack.secrets.auditKey.kid, retired.kid],
    );
    assert.ok(
      jwks.keys.every((k) => !('d' in k)),
      'public halves only',
    );
    const head = await signAuditHead(retired, { seq: '1', hash: 'a'.repeat(64), at: new Date().toISOString(), iss: stack.config.publicUrl });
    assert.equal((await verifyAuditHead(head, jwks)).seq, '1');
  });

  void test('a file with a private part, the current key or no JWKS: refused naming the variable, the key not echoed', async () => {
    const config = (path: string) => loadConfig({ NODE_ENV: 'test', BROKER_DATA_DIR: dir, BROKER_AUDIT_KEYS_RETIRED_PATH: path });
    const privateFile = join(dir, 'private.json');
    await writeFile(privateFile, JSON.stringify({ keys: [retiredJwk] }));
    await assert.rejects(
      resolveSecrets(config(privateFile)),
      (e: unknown) =>
        e instanceof ConfigError && /BROKER_AUDIT_KEYS_RETIRED_PATH=.*key 0 holds a private part/.test(e.message) && !e.message.includes(String(retiredJwk.d)),
    );
    const current = (await resolveSecrets(config(retiredFile))).auditKey;
    const currentFile = join(dir, 'current.json');
    await writeFile(currentFile, JSON.stringify({ keys: [current.publicJwk] }));
    await assert.rejects(resolveSecrets(config(currentFile)), /key 0 is the current audit key/);
    const notJwks = join(dir, 'not.json');
    await writeFile(notJwks, '[]');
    await assert.rejects(resolveSecrets(config(notJwks)), /not a JWKS/);
  });
});
