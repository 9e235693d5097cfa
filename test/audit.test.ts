import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { auditRowHash, type AuditRowFields } from '../lib/audit-chain';
import { generateSigningKeyJwk } from '../lib/signing-key';
import { findFreePort } from '../scripts/temporal-dev-server';
import { startStack, type TestStack } from './harness';
import { emailLogin, mintOidc, walletLogin, type Session, type WalletSession } from './mint-client';

const ROOT = join(__dirname, '..');
const run = promisify(execFile);

let stack: TestStack;
let alice: WalletSession;
let bob: Session;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  alice = await walletLogin(stack);
  bob = await emailLogin(stack);
  await mintOidc(stack, alice.token);
  await mintOidc(stack, bob.token);
  await mintOidc(stack, alice.token);
});
after(async () => {
  await stack?.stop();
});

/** Runs `npm run audit:verify` (the script itself) against the stack's database. */
async function verifyCommand(): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/audit-verify.ts')], { cwd: ROOT, env: stack.childEnv() });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** As the database superuser, with the append-only trigger off: what an attacker with DB access could do. */
async function tamper(sql: string, params: unknown[] = []): Promise<void> {
  await stack.db.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
  try {
    await stack.db.query(sql, params);
  } finally {
    await stack.db.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
  }
}

interface Entry {
  seq: string;
  event: string;
  outcome: string;
  request_id: string | null;
  details: Record<string, unknown>;
  hash: string;
}

void describe('GET /v1/audit', () => {
  void test("returns the caller's own rows, newest first, paged", async () => {
    const res = await stack.request('GET', '/v1/audit', { token: alice.token });
    assert.equal(res.status, 200, res.text);
    const { entries, next_before } = res.body as { entries: Entry[]; next_before: string | null };
    assert.equal(next_before, null);
    assert.deepEqual(
      entries.map((e) => e.event),
      ['mint.oidc', 'mint.oidc.intent', 'mint.oidc', 'mint.oidc.intent', 'login.wallet'],
    );
    const seqs = entries.map((e) => BigInt(e.seq));
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => (a > b ? -1 : 1)),
    );
    const own = await stack.db.query<{ seq: string }>('SELECT seq::text AS seq FROM audit_log WHERE omni_account = $1', [alice.omni_account]);
    assert.equal(entries.length, own.rowCount);
    assert.ok(!res.text.includes(bob.omni_account), "another account's rows are listed");

    const page1 = await stack.request('GET', '/v1/audit?limit=2', { token: alice.token });
    const p1 = page1.body as { entries: Entry[]; next_before: string };
    assert.deepEqual(
      p1.entries.map((e) => e.seq),
      entries.slice(0, 2).map((e) => e.seq),
    );
    const page2 = await stack.request('GET', `/v1/audit?limit=2&before=${p1.next_before}`, { token: alice.token });
    assert.deepEqual(
      (page2.body as { entries: Entry[] }).entries.map((e) => e.seq),
      entries.slice(2, 4).map((e) => e.seq),
    );
  });

  void test('bad paging input is a 400; no bearer is a 401', async () => {
    for (const q of ['limit=0', 'limit=201', 'limit=x', 'before=0', 'before=-1', 'before=1e3']) {
      const res = await stack.request('GET', `/v1/audit?${q}`, { token: alice.token });
      assert.equal(res.status, 400, `${q}: ${res.text}`);
      assert.equal((res.body as { error: string }).error, 'bad_request');
    }
    assert.equal((await stack.request('GET', '/v1/audit')).status, 401);
  });
});

void describe('the hash chain', () => {
  void test('the broker cannot change or delete audit rows (append-only trigger)', async () => {
    await assert.rejects(stack.db.query("UPDATE audit_log SET outcome = 'denied' WHERE seq = 1"), /append-only/);
    await assert.rejects(stack.db.query('DELETE FROM audit_log WHERE seq = 1'), /append-only/);
    await assert.rejects(stack.db.query('TRUNCATE audit_log'), /append-only/);
  });

  void test('audit:verify needs public keys only: the published JWKS by default, or a file; no private key file anywhere', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'akb-verify-'));
    try {
      // A verifier's machine: no BROKER_AUDIT_KEY_PATH, an empty data directory.
      const env = { ...stack.childEnv(), BROKER_AUDIT_KEY_PATH: '', BROKER_DATA_DIR: dir };
      const verify = (args: string[]) =>
        run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/audit-verify.ts'), ...args], { cwd: ROOT, env }).then(
          (r) => ({ code: 0, out: r.stdout + r.stderr }),
          (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
        );
      const published = await verify([]);
      assert.equal(published.code, 0, published.out);
      assert.match(published.out, /audit chain intact: .* signed heads agree/);
      const keysFile = join(dir, 'audit-keys.json');
      await writeFile(keysFile, (await stack.request('GET', '/v1/audit/keys')).text);
      const fromFile = await verify(['--keys', keysFile]);
      assert.equal(fromFile.code, 0, fromFile.out);
      assert.deepEqual(await readdir(dir), ['audit-keys.json'], 'nothing was read or created in the data directory');
      // A private JWK given as keys is refused: verification material must be public.
      const privateFile = join(dir, 'private.json');
      await writeFile(privateFile, JSON.stringify({ keys: [await generateSigningKeyJwk()] }));
      const refused = await verify(['--keys', privateFile]);
      assert.equal(refused.code, 2);
      assert.match(refused.out, /holds a private key; give the public JWKS/);
      // A keys URL nobody answers (as the default one when the broker is down): one line saying what to give.
      const closed = await verify(['--keys', `http://127.0.0.1:${await findFreePort()}/v1/audit/keys`]);
      assert.equal(closed.code, 2);
      assert.match(closed.out, /cannot fetch the audit keys from .*; give --keys <JWKS file or URL>/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('audit:verify passes on the intact chains and names the first broken link, with its shard, after tampering', async () => {
    const intact = await verifyCommand();
    assert.equal(intact.code, 0, intact.stderr);
    const total = (await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]?.n;
    assert.match(intact.stdout, new RegExp(`intact: ${total} rows in \\d+ of 16 shard chains`));

    // Rewrite a mint row's wallet (row 4, alice's first mint outcome).
    const rowAt = async (seq: string) =>
      (
        await stack.db.query<AuditRowFields>(
          'SELECT seq::text AS seq, shard, shard_seq::text AS shard_seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash FROM audit_log WHERE seq = $1',
          [seq],
        )
      ).rows[0];
    const row = await rowAt('4');
    assert.ok(row);
    const shard = row.shard;
    // The next row of the same shard (alice's next mint, or bob's if both landed in one shard).
    const next = (
      await stack.db.query<{ seq: string }>('SELECT seq::text AS seq FROM audit_log WHERE shard = $1 AND seq > 4 ORDER BY audit_log.seq LIMIT 1', [shard])
    ).rows[0]?.seq;
    assert.ok(next);
    await tamper(`UPDATE audit_log SET details = details || '{"wallet":"0x0000000000000000000000000000000000000bad"}'::jsonb WHERE seq = 4`);
    const edited = await verifyCommand();
    assert.equal(edited.code, 1);
    assert.match(edited.stderr, new RegExp(`BROKEN at shard ${shard}, seq 4: .*altered`));

    // Re-hashing the edited row does not help: the next row of its shard breaks instead.
    const editedRow = await rowAt('4');
    assert.ok(editedRow);
    await tamper('UPDATE audit_log SET hash = $1 WHERE seq = 4', [auditRowHash(editedRow)]);
    const rehashed = await verifyCommand();
    assert.equal(rehashed.code, 1);
    assert.match(
      rehashed.stderr,
      new RegExp(`BROKEN at shard ${shard}, seq ${next}: prev_hash .* is not the hash of shard ${shard} row ${row.shard_seq} \\(seq 4\\)`),
    );

    // Put it back as it was: intact again; then delete a row in the middle of a shard.
    await tamper('UPDATE audit_log SET details = $1, hash = $2 WHERE seq = 4', [JSON.stringify(row.details), auditRowHash(row)]);
    assert.equal((await verifyCommand()).code, 0);
    await tamper('DELETE FROM audit_log WHERE seq = 4');
    const deleted = await verifyCommand();
    assert.equal(deleted.code, 1);
    const missing = BigInt(row.shard_seq ?? '0');
    assert.match(
      deleted.stderr,
      new RegExp(
        `BROKEN at shard ${shard}, seq ${next}: shard ${shard} row ${missing} is missing \\(the shard's next row in seq order is row ${missing + 1n}\\)`,
      ),
    );
  });
});
