import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JSONWebKeySet } from 'jose';
import { signAuditHead } from '../lib/audit-head';
import { verifyAuditProof, type AuditProof } from '../lib/audit-proof';
import { generateSigningKeyJwk, signingKeyFromJwk } from '../lib/signing-key';
import type { AnchorResult } from '../workflows/audit-anchor.definitions';
import { buildApp } from '../api/app';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { auditVerify } from './audit-tamper';
import { startStack, type TestStack } from './harness';
import { mintOidc, walletLogin, type WalletSession } from './mint-client';

/**
 * GET /v1/audit/proof (issue 16 item 3): an account gets, for one of its rows, the chain to its
 * shard's head, the Merkle audit path to the signed root and the signed head, and checks it offline
 * (verifyAuditProof, audit:verify --proof). Any change to any part of a proof is refused.
 */

let stack: TestStack;
let alice: WalletSession;
let bob: WalletSession;
let keys: JSONWebKeySet;
let dir: string;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_AUDIT_ANCHOR_SECONDS: '7' } });
  alice = await walletLogin(stack);
  bob = await walletLogin(stack);
  await mintOidc(stack, alice.token);
  await mintOidc(stack, bob.token);
  await mintOidc(stack, alice.token);
  keys = (await stack.request('GET', '/v1/audit/keys')).body as JSONWebKeySet;
  dir = await mkdtemp(join(tmpdir(), 'akb-audit-proof-'));
  await writeFile(join(dir, 'keys.json'), JSON.stringify(keys));
});
after(async () => {
  await stack?.stop();
});

async function anchor(): Promise<NonNullable<AnchorResult>> {
  const result = await stack.temporal.workflow.execute<() => Promise<AnchorResult>>('auditAnchorWorkflow', {
    workflowId: `audit/anchor-test-${Date.now()}-${Math.random().toString(16).slice(2)}`,
    taskQueue: stack.config.BROKER_TASK_QUEUE,
  });
  assert.ok(result);
  return result;
}

const ownSeqs = async (omni: string) =>
  (await stack.db.query<{ seq: string }>('SELECT seq::text AS seq FROM audit_log WHERE omni_account = $1 ORDER BY audit_log.seq', [omni])).rows.map(
    (r) => r.seq,
  );

async function proofOf(session: WalletSession, seq: string): Promise<AuditProof> {
  const res = await stack.request('GET', `/v1/audit/proof?seq=${seq}`, { token: session.token });
  assert.equal(res.status, 200, res.text);
  return res.body as AuditProof;
}

async function cli(proof: unknown): Promise<{ code: number; out: string }> {
  const file = join(dir, `proof-${Math.random().toString(16).slice(2)}.json`);
  await writeFile(file, JSON.stringify(proof));
  return auditVerify({ ...stack.childEnv(), DATABASE_URL: '' }, ['--proof', file, '--keys', join(dir, 'keys.json')]);
}

const clone = (p: AuditProof): AuditProof => structuredClone(p);

void describe('GET /v1/audit/proof', () => {
  void test('a row not yet under a signed head is a 409 with Retry-After; after the anchor its proof verifies, offline too', async () => {
    const [first] = await ownSeqs(alice.omni_account);
    assert.ok(first);
    const early = await stack.request('GET', `/v1/audit/proof?seq=${first}`, { token: alice.token });
    assert.equal(early.status, 409, early.text);
    assert.match((early.body as { message: string }).message, /not under a signed head yet/);
    assert.equal(early.headers.get('retry-after'), '7');

    const head = await anchor();
    const proof = await proofOf(alice, first);
    assert.equal(proof.head.jws, head.jws);
    // alice's first row (her login) is followed in her shard by at least her four mint rows.
    assert.ok(proof.chain.length >= 4);
    for (const step of proof.chain) assert.deepEqual(Object.keys(step).sort(), ['content', 'hash', 'seq', 'shard_seq'], 'later rows appear only as digests');
    const proven = await verifyAuditProof(proof, keys);
    assert.deepEqual([proven.seq, proven.shard], [first, proof.row.shard]);
    const ok = await cli(proof);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, new RegExp(`audit proof holds: row seq ${first} \\(shard ${proof.row.shard}\\) is under the head signed at`));

    // The newest row: an empty chain, the row is its shard's head.
    const seqs = await ownSeqs(alice.omni_account);
    const last = await proofOf(alice, seqs[seqs.length - 1] as string);
    assert.equal(last.chain.length, 0);
    await verifyAuditProof(last, keys);
  });

  void test('every forged part of a proof is refused, by the function and by audit:verify --proof', async () => {
    const [first] = await ownSeqs(alice.omni_account);
    const proof = await proofOf(alice, first as string);
    const stranger = await signingKeyFromJwk(await generateSigningKeyJwk());
    const statement = JSON.parse(Buffer.from(proof.head.jws.split('.')[1] as string, 'base64url').toString()) as Parameters<typeof signAuditHead>[1];
    const forgeries: [string, (p: AuditProof) => Promise<void> | void, RegExp][] = [
      ['an edited row', (p) => void (p.row.details = { ...p.row.details, wallet: '0xbad' }), /the row's content does not match its hash/],
      [
        'an edited later row',
        (p) => void ((p.chain[1] as AuditProof['chain'][number]).content = 'a'.repeat(64)),
        /chain step 1 .* does not chain to the row before it/,
      ],
      ['a dropped later row', (p) => void p.chain.splice(1, 1), /chain step 1 is shard row \d+, not the next one/],
      ['a bent audit path', (p) => void (p.audit_path[0] = 'b'.repeat(64)), /the audit path does not lead from shard \d+'s head to the signed root/],
      ['another shard head', (p) => void (p.shard_head.hash = 'c'.repeat(64)), /not at the shard head the proof names/],
      ['another tree size', (p) => void (p.tree_size += 1), /the proof says 17 shards, the head signed 16/],
      [
        'a head signed by another key',
        async (p) => void (p.head.jws = await signAuditHead(stranger, statement)),
        /the head: the head is signed by a key that is not an audit key/,
      ],
      ['a head with another root', async (p) => void (p.head.jws = await signAuditHead(stranger, { ...statement, root: 'd'.repeat(64) })), /the head:/],
      ['not a proof', (p) => void ((p as unknown as Record<string, unknown>).row = 'x'), /not an audit proof: row/],
    ];
    for (const [what, forge, why] of forgeries) {
      const forged = clone(proof);
      await forge(forged);
      await assert.rejects(verifyAuditProof(forged, keys), why, what);
      const r = await cli(forged);
      assert.equal(r.code, 1, `${what}: ${r.out}`);
      assert.match(r.out, /audit proof REFUSED/, what);
    }
  });

  void test('bad input is a clear 4xx: not a seq, beyond the log, another account’s row, no bearer', async () => {
    for (const q of ['seq=abc', 'seq=-1', 'seq=0', 'seq=1e3', 'seq=1.5', 'seq=99999999999999999999', 'seq=9223372036854775808', '']) {
      const res = await stack.request('GET', `/v1/audit/proof?${q}`, { token: alice.token });
      assert.equal(res.status, 400, `${q}: ${res.text}`);
      assert.equal((res.body as { error: string }).error, 'bad_request');
    }
    // Past the log's end and another account's row: one 404, byte for byte — it tells neither where
    // the log ends (how busy the broker is) nor which seqs exist (review item 3).
    const end = (await stack.db.query<{ seq: string }>('SELECT max(seq)::text AS seq FROM audit_log')).rows[0]?.seq ?? '0';
    const beyond = await stack.request('GET', `/v1/audit/proof?seq=${BigInt(end) + 1n}`, { token: alice.token });
    assert.equal(beyond.status, 404, beyond.text);
    const max = await stack.request('GET', '/v1/audit/proof?seq=9223372036854775807', { token: alice.token });
    assert.equal(max.status, 404, max.text);
    const [bobs] = await ownSeqs(bob.omni_account);
    const other = await stack.request('GET', `/v1/audit/proof?seq=${bobs}`, { token: alice.token });
    assert.equal(other.status, 404, other.text);
    assert.equal(beyond.text, other.text, 'a seq past the log and another account’s row answer alike');
    assert.equal(max.text, other.text);
    assert.deepEqual(other.body, { error: 'not_found', message: 'no audit row of yours has that seq' });
    assert.ok(!other.text.includes(end) && !other.text.includes(String(bobs)), 'no seq in the answer');
    assert.equal((await stack.request('GET', `/v1/audit/proof?seq=${bobs}`)).status, 401);
  });
});

void describe('GET /v1/audit/proof: rate limit (second review, item 10)', () => {
  void test('past BROKER_RATE_LIMIT_IP_PER_MINUTE proofs a minute: 429 + Retry-After per address and per account, nothing read or changed; others unaffected', async () => {
    const LIMIT = 5;
    // The same broker with a low limit (fresh limit stores), on the stack's database and Temporal.
    const app = await buildApp({ ...stack.deps, config: { ...stack.config, BROKER_RATE_LIMIT_IP_PER_MINUTE: LIMIT } }, { logLevel: 'silent' });
    try {
      const [seq] = await ownSeqs(alice.omni_account);
      const [bobSeq] = await ownSeqs(bob.omni_account);
      const proof = (token: string, s: string | undefined, remoteAddress: string) =>
        app.inject({ method: 'GET', url: `/v1/audit/proof?seq=${s ?? ''}`, remoteAddress, headers: { authorization: `Bearer ${token}` } });
      const answer = (r: Awaited<ReturnType<typeof proof>>) => ({ status: r.statusCode, body: r.json<unknown>(), text: r.body });
      const before = await dbSnapshot(stack.db);
      const starts = spyWorkflowStarts(stack.temporal);
      try {
        for (let i = 0; i < LIMIT; i++) {
          const ok = await proof(alice.token, seq, '198.51.100.90');
          assert.equal(ok.statusCode, 200, ok.body);
        }
        const over = await proof(alice.token, seq, '198.51.100.90');
        assertRefused(answer(over), 429, 'rate_limited', /too many requests/, 'proof past the limit');
        assert.match(over.headers['retry-after']?.toString() ?? '', /^\d+$/);
        assert.ok(!over.body.includes('jws'), 'a refused proof carries no proof');
        // The same address for another account: the address's budget is spent.
        assertRefused(answer(await proof(bob.token, bobSeq, '198.51.100.90')), 429, 'rate_limited', undefined, 'another account, same address');
        // The same account from another address: the account's budget is spent.
        assertRefused(answer(await proof(alice.token, seq, '198.51.100.91')), 429, 'rate_limited', undefined, 'same account, another address');
        // Another account from another address is not affected.
        const other = await proof(bob.token, bobSeq, '198.51.100.92');
        assert.equal(other.statusCode, 200, other.body);
        await assertUnchanged(stack.db, before, 'after the limited proofs');
        assert.equal(starts.count(), 0, 'a proof started a workflow');
      } finally {
        starts.restore();
      }
    } finally {
      await app.close();
    }
  });
});
