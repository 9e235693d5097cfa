import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { appendAudit, appendAuditDurably, ensureAuditShards } from '../db/audit';
import { AUDIT_COLUMNS, verifyAuditChain, type AuditRow } from '../db/audit-query';
import { migrate } from '../db/migrate';
import { FIRST_COVERING_HEAD_SQL, firstCoveringHead, LATEST_SHARDED_HEAD_SQL } from '../db/audit-heads';
import { buildAuditProof } from '../db/audit-proof';
import { withTransaction } from '../db/pool';
import { auditRowHashV1, auditShardOf, GENESIS_HASH } from '../lib/audit-chain';
import { signAuditHead } from '../lib/audit-head';
import { verifyAuditProof } from '../lib/audit-proof';
import { merkleAuditPath, merkleRoot, shardHeadsRoot, verifyMerkleInclusion, type ShardHead } from '../lib/audit-merkle';
import { generateSigningKeyJwk, signingKeyFromJwk } from '../lib/signing-key';
import type { AnchoredHead, AnchorResult } from '../workflows/audit-anchor.definitions';
import { auditVerify, rechainShard, withAppendOnlyOff } from './audit-tamper';
import { useAuditLogs, type AuditTestLog } from './support/audit-logs';

/**
 * The sharded audit log (issue 16 item 2): the RFC 6962 tree a head commits to, the migration of a
 * single-chain log, the shard count fixed once used, per-account order under concurrent appends,
 * and audit:verify naming the shard and row of every kind of tampering.
 */

const logs = useAuditLogs('akb-audit-shards');
type Log = AuditTestLog;
const freshLog = (opts: { shards?: number; upTo?: string } = {}): Promise<Log> => logs.fresh(opts);

const account = () => `0x${randomBytes(32).toString('hex')}`;

async function append(log: Log, omniAccount: string | null, event = 'login.wallet'): Promise<{ seq: string; hash: string }> {
  return withTransaction(log.db, (tx) => appendAudit(tx, { event, outcome: 'ok', omniAccount, requestId: randomBytes(8).toString('hex'), details: { n: 1 } }));
}

async function anchor(log: Log): Promise<AnchoredHead> {
  const activities = logs.anchorActivities(log);
  // In an activity context, as the worker runs it: the anchor logs when it refuses or skips a head.
  const head = await new MockActivityEnvironment().run<[], AnchorResult, () => Promise<AnchorResult>>(() => activities.anchorAuditHead());
  assert.ok(head, 'the log has rows');
  return head;
}

const verify = (log: Log, ...args: string[]) =>
  auditVerify({ ...process.env, NODE_ENV: 'test', BROKER_DATA_DIR: logs.dataDir, DATABASE_URL: log.url }, ['--keys', logs.keysFile, ...args]);

const rowsOf = async (log: Log, where = 'true', params: unknown[] = []) =>
  (await log.db.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE ${where} ORDER BY audit_log.seq`, params)).rows;

/** A log of several accounts over 4 shards, with a signed head over all of it. */
async function populated(): Promise<{ log: Log; accounts: string[]; head: AnchoredHead }> {
  const log = await freshLog({ shards: 4 });
  const accounts = Array.from({ length: 8 }, account);
  for (let round = 0; round < 3; round++) for (const a of accounts) await append(log, a);
  await append(log, null, 'ops.codec.decode');
  return { log, accounts, head: await anchor(log) };
}

/** A shard holding at least `min` rows, and its rows in order. */
async function busyShard(log: Log, min: number): Promise<{ shard: number; rows: AuditRow[] }> {
  const r = await log.db.query<{ shard: number }>('SELECT shard FROM audit_log GROUP BY shard HAVING count(*) >= $1 ORDER BY count(*) DESC LIMIT 1', [min]);
  const shard = r.rows[0]?.shard;
  assert.ok(shard !== undefined, `a shard with ${min} rows`);
  return { shard, rows: await rowsOf(log, 'shard = $1', [shard]) };
}

void describe('the Merkle tree over shard heads (RFC 6962)', () => {
  // The Certificate Transparency reference leaves and tree heads (RFC 6962 test data).
  const leaves = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => Buffer.from(h, 'hex'));
  const roots = [
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
    '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
    'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
    '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
  ];

  void test('roots and audit paths match the reference vectors', () => {
    for (let n = 1; n <= 8; n++) assert.equal(merkleRoot(leaves.slice(0, n)), roots[n - 1], `size ${n}`);
    assert.deepEqual(merkleAuditPath(leaves, 0), [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ]);
    assert.deepEqual(merkleAuditPath(leaves, 5), [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
  });

  void test('every leaf of every tree size verifies, and a wrong leaf, index, size or path does not', () => {
    for (let n = 1; n <= 20; n++) {
      const data = Array.from({ length: n }, (_, i) => Buffer.from([i, n]));
      const root = merkleRoot(data);
      for (let i = 0; i < n; i++) {
        const path = merkleAuditPath(data, i);
        assert.ok(verifyMerkleInclusion(data[i] as Buffer, i, n, path, root), `leaf ${i} of ${n}`);
        assert.ok(!verifyMerkleInclusion(Buffer.from([99, 99]), i, n, path, root), `another leaf at ${i} of ${n}`);
        if (n > 1) assert.ok(!verifyMerkleInclusion(data[i] as Buffer, (i + 1) % n, n, path, root), `leaf ${i} of ${n} at another index`);
        if (path.length > 0) {
          const bent = [...path];
          bent[0] = (bent[0] as string).replace(/^./, (c) => (c === '0' ? '1' : '0'));
          assert.ok(!verifyMerkleInclusion(data[i] as Buffer, i, n, bent, root), `a changed path for leaf ${i} of ${n}`);
          assert.ok(!verifyMerkleInclusion(data[i] as Buffer, i, n, path.slice(1), root), `a short path for leaf ${i} of ${n}`);
        }
        assert.ok(!verifyMerkleInclusion(data[i] as Buffer, n, n, path, root), `an index beyond the tree of ${n}`);
      }
    }
  });

  void test('the leaf is the shard head: another seq or hash is another root', () => {
    const heads: ShardHead[] = [0, 1, 2].map((shard) => ({ shard, seq: String(shard * 10), hash: String(shard).repeat(64) }));
    const root = shardHeadsRoot(heads);
    assert.notEqual(shardHeadsRoot(heads.map((h) => (h.shard === 1 ? { ...h, seq: '11' } : h))), root);
    assert.notEqual(shardHeadsRoot(heads.map((h) => (h.shard === 2 ? { ...h, hash: 'a'.repeat(64) } : h))), root);
    assert.throws(() => shardHeadsRoot([heads[1] as ShardHead, heads[0] as ShardHead, heads[2] as ShardHead]), /out of order/);
  });
});

void describe('migrating a single-chain log', () => {
  void test('old rows and old heads stay valid, every shard chains from the last old row, and an unsharded append is refused', async () => {
    const log = await freshLog({ upTo: '009_audit_heads.sql' });
    // Rows and a head as the broker wrote them before sharding.
    let prev = GENESIS_HASH;
    const alice = account();
    for (let seq = 1; seq <= 5; seq++) {
      const row = {
        seq: String(seq),
        at: new Date().toISOString(),
        event: 'login.wallet',
        outcome: 'ok' as const,
        omni_account: seq % 2 ? alice : null,
        request_id: null,
        idem_key: null,
        details: { n: seq },
        prev_hash: prev,
      };
      prev = auditRowHashV1(row);
      await log.db.query(
        'INSERT INTO audit_log (seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)',
        [row.seq, row.at, row.event, row.outcome, row.omni_account, null, null, JSON.stringify(row.details), row.prev_hash, prev],
      );
    }
    const oldHead = await signAuditHead(logs.secrets.auditKey, { seq: '5', hash: prev, at: new Date().toISOString(), iss: log.config.publicUrl });
    await log.db.query('INSERT INTO audit_heads (seq, hash, signed_at, kid, jws) VALUES ($1, $2, now(), $3, $4)', [
      '5',
      prev,
      logs.secrets.auditKey.kid,
      oldHead,
    ]);

    await migrate(log.db);
    assert.equal(await ensureAuditShards(log.db, 4), 'set', 'a migrated log has no sharded row yet: the count may still be chosen');
    const settings = (await log.db.query<{ shards: number; genesis_hash: string }>('SELECT shards, genesis_hash FROM audit_settings')).rows[0];
    assert.deepEqual(settings, { shards: 4, genesis_hash: prev });

    // A version 2 head over the migrated log before any new row: every shard still empty.
    const empty = await anchor(log);
    assert.equal(empty.seq, '5');
    const accounts = Array.from({ length: 6 }, account);
    for (const a of [...accounts, alice, ...accounts]) await append(log, a);
    const rows = await rowsOf(log);
    assert.deepEqual(
      rows.slice(0, 5).map((r) => r.shard),
      [null, null, null, null, null],
    );
    assert.equal(rows[5]?.seq, '6', 'the global seq continues after the old rows');
    for (let s = 0; s < 4; s++) {
      const first = rows.find((r) => r.shard === s);
      if (first) assert.deepEqual([first.shard_seq, first.prev_hash], ['1', prev], `shard ${s} starts from the last old row`);
    }
    const verdict = await verifyAuditChain(log.db, { batchSize: 4 });
    assert.ok(verdict.ok, JSON.stringify(verdict));
    assert.equal(verdict.rows, 5 + 13);

    await anchor(log);
    const ok = await verify(log, '--head', oldHead);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /intact: 18 rows in \d of 4 shard chains.*4 signed heads agree/);

    // Rows from before sharding have no proof form; the new ones do.
    assert.deepEqual(await buildAuditProof(log.db, alice, '1'), { ok: false, why: 'unsharded' });
    const aliceNew = rows.find((r) => r.omni_account === alice && r.shard !== null);
    const proof = await buildAuditProof(log.db, alice, aliceNew?.seq ?? '');
    assert.ok(proof.ok);
    await verifyAuditProof(proof.proof, { keys: [logs.secrets.auditKey.publicJwk] });

    // A broker of the previous version, still running, appends an unsharded row: refused (its caller gets audit_error).
    await assert.rejects(
      log.db.query("INSERT INTO audit_log (seq, at, event, outcome, prev_hash, hash) VALUES (1000, now()::text, 'login.wallet', 'ok', $1, $2)", [
        rows[rows.length - 1]?.hash,
        'f'.repeat(64),
      ]),
      /audit_log_sharded/,
    );
  });
});

void describe('inclusion proofs from the database', () => {
  void test('a row far below its shard head at the latest head is proved under the earliest head that covers it', async () => {
    const log = await freshLog({ shards: 4 });
    const a = account();
    const first = await append(log, a);
    const early = await anchor(log);
    for (let i = 0; i < 5; i++) await append(log, a);
    const late = await anchor(log);
    const keys = { keys: [logs.secrets.auditKey.publicJwk] };
    const latest = await buildAuditProof(log.db, a, first.seq);
    assert.ok(latest.ok);
    assert.deepEqual([latest.proof.head.jws, latest.proof.chain.length], [late.jws, 5]);
    await verifyAuditProof(latest.proof, keys);
    const short = await buildAuditProof(log.db, a, first.seq, { maxChain: 3 });
    assert.ok(short.ok);
    assert.deepEqual([short.proof.head.jws, short.proof.chain.length], [early.jws, 0]);
    await verifyAuditProof(short.proof, keys);
  });
});

void describe('the covering head is looked up by index (second review, item 10)', () => {
  const positions = async (log: Log) =>
    (
      await log.db.query<{ shard: number; seq: string; head_root: string }>(
        'SELECT shard, seq::text AS seq, head_root FROM audit_head_shards ORDER BY shard, seq',
      )
    ).rows;

  void test('each head records the shard positions it is the first to cover; a proof finds its head through them', async () => {
    const log = await freshLog({ shards: 4 });
    const a = account();
    const first = await append(log, a);
    const early = await anchor(log);
    const shard = auditShardOf(a, 4);
    assert.deepEqual(await positions(log), [{ shard, seq: first.seq, head_root: early.root }], 'one row, one non-empty shard');
    // Unchanged shards are not recorded again; the moved one is, under the later head.
    await anchor(log);
    for (let i = 0; i < 3; i++) await append(log, a);
    const late = await anchor(log);
    const last = (await rowsOf(log, 'omni_account = $1', [a])).at(-1);
    assert.deepEqual(await positions(log), [
      { shard, seq: first.seq, head_root: early.root },
      { shard, seq: last?.seq, head_root: late.root },
    ]);
    assert.equal((await firstCoveringHead(log.db, shard, first.seq))?.jws, early.jws);
    const second = (await rowsOf(log, 'omni_account = $1', [a]))[1];
    assert.equal((await firstCoveringHead(log.db, shard, second?.seq ?? ''))?.jws, late.jws, 'the next row is first covered by the late head');
    assert.equal(await firstCoveringHead(log.db, shard, String(BigInt(last?.seq ?? '0') + 1n)), null, 'nothing covers a row past the heads');
    // A row appended after the last head: not anchored (409 at the route), found without reading the heads' JSON.
    const fresh = await append(log, a);
    assert.deepEqual(await buildAuditProof(log.db, a, fresh.seq), { ok: false, why: 'not_anchored' });
  });

  void test('the migration credits each position of the heads signed before it to the earliest head', async () => {
    const log = await freshLog({ upTo: '010_audit_shards.sql' });
    const head = (n: number, seqs: number[]) =>
      log.db.query(
        "INSERT INTO audit_heads (seq, hash, signed_at, kid, jws, version, root, shard_heads) VALUES ($1, 'h', now() + $2 * interval '1 second', 'k', 'j', 2, $3, $4)",
        [n, n, `root-${n}`, JSON.stringify(seqs.map((seq, shard) => ({ shard, seq: String(seq), hash: 'h' })))],
      );
    await head(1, [0, 1, 0, 0]);
    await head(2, [2, 1, 0, 0]);
    await head(3, [2, 1, 3, 0]);
    await migrate(log.db);
    assert.deepEqual(await positions(log), [
      { shard: 0, seq: '2', head_root: 'root-2' },
      { shard: 1, seq: '1', head_root: 'root-1' },
      { shard: 2, seq: '3', head_root: 'root-3' },
    ]);
  });

  void test('with 20 000 signed heads, EXPLAIN shows index scans and no sequential scan for both look-ups', async () => {
    const log = await freshLog({ shards: 4 });
    const HEADS = 20_000;
    // Heads as the anchor signs them (every shard moves each time), written in bulk, and their positions.
    await log.db.query(
      `INSERT INTO audit_heads (seq, hash, signed_at, kid, jws, version, root, shard_heads)
       SELECT 4 * i, 'h', timestamptz '2026-01-01' + i * interval '1 minute', 'k', 'j', 2, 'root-' || i,
              (SELECT jsonb_agg(jsonb_build_object('shard', s, 'seq', (4 * i - 3 + s)::text, 'hash', 'h') ORDER BY s) FROM generate_series(0, 3) s)
         FROM generate_series(1, $1::int) i`,
      [HEADS],
    );
    await log.db.query(
      "INSERT INTO audit_head_shards (shard, seq, head_root) SELECT s, 4 * i - 3 + s, 'root-' || i FROM generate_series(1, $1::int) i, generate_series(0, 3) s",
      [HEADS],
    );
    await log.db.query('ANALYZE audit_heads');
    await log.db.query('ANALYZE audit_head_shards');
    interface PlanNode {
      'Node Type': string;
      'Relation Name'?: string;
      'Index Name'?: string;
      Plans?: PlanNode[];
    }
    const nodes = async (sql: string, params: unknown[]): Promise<PlanNode[]> => {
      const r = await log.db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${sql}`, params);
      const out: PlanNode[] = [];
      const walk = (n: PlanNode) => {
        out.push(n);
        for (const c of n.Plans ?? []) walk(c);
      };
      walk(r.rows[0]?.['QUERY PLAN'][0].Plan as PlanNode);
      return out;
    };
    const covering = await nodes(FIRST_COVERING_HEAD_SQL, [2, '40001']);
    assert.deepEqual(
      covering.filter((n) => n['Node Type'] === 'Seq Scan').map((n) => n['Relation Name']),
      [],
      'the covering head is found by a sequential scan',
    );
    const indexes = (ns: PlanNode[]) => ns.map((n) => n['Index Name']).filter(Boolean);
    assert.ok(indexes(covering).includes('audit_head_shards_pkey'), JSON.stringify(covering));
    assert.ok(indexes(covering).includes('audit_heads_root_idx'), JSON.stringify(covering));
    const latest = await nodes(LATEST_SHARDED_HEAD_SQL, []);
    assert.deepEqual(
      latest.filter((n) => n['Node Type'] === 'Seq Scan').map((n) => n['Relation Name']),
      [],
      'the latest head is found by a sequential scan',
    );
    assert.ok(indexes(latest).includes('audit_heads_signed_idx'), JSON.stringify(latest));
    // And they answer right: head i has shard 2 at 4i − 1, so row 40001 is first covered by head 10 001 (at 40 003).
    assert.equal((await log.db.query<{ root: string }>(FIRST_COVERING_HEAD_SQL, [2, '40001'])).rows[0]?.root, 'root-10001');
    assert.equal((await log.db.query<{ root: string }>(LATEST_SHARDED_HEAD_SQL)).rows[0]?.root, `root-${HEADS}`);
  });
});

void describe('BROKER_AUDIT_SHARDS', () => {
  void test('is fixed once a row is in a shard: another count is refused, and so is changing it behind the check', async () => {
    const log = await freshLog({ shards: 16 });
    assert.equal(await ensureAuditShards(log.db, 8), 'set', 'no row yet: the count may change');
    assert.equal(await ensureAuditShards(log.db, 8), 'unchanged');
    await append(log, account());
    await assert.rejects(ensureAuditShards(log.db, 16), /BROKER_AUDIT_SHARDS is 16 but the audit log is already split into 8 chains/);
    await assert.rejects(log.db.query('UPDATE audit_settings SET shards = 2'), /shard count cannot change/);
    await assert.rejects(log.db.query("UPDATE audit_settings SET genesis_hash = 'x'"), /genesis_hash cannot change/);
    await assert.rejects(log.db.query('DELETE FROM audit_settings'), /not allowed/);
    assert.equal(await ensureAuditShards(log.db, 8), 'unchanged');
  });
});

void describe('concurrent appends', () => {
  void test('64 accounts at once: every chain intact, each account in one shard and in order', async () => {
    const log = await freshLog({ shards: 16 });
    const accounts = Array.from({ length: 64 }, account);
    await Promise.all(
      accounts.map(async (a) => {
        for (let i = 0; i < 4; i++) await append(log, a);
      }),
    );
    const verdict = await verifyAuditChain(log.db);
    assert.ok(verdict.ok, JSON.stringify(verdict));
    assert.equal(verdict.rows, 256);
    for (const a of accounts) {
      const own = await rowsOf(log, 'omni_account = $1', [a]);
      assert.equal(own.length, 4);
      assert.deepEqual(new Set(own.map((r) => r.shard)), new Set([auditShardOf(a, 16)]));
      const shardSeqs = own.map((r) => BigInt(r.shard_seq ?? '0'));
      assert.deepEqual(
        shardSeqs,
        [...shardSeqs].sort((x, y) => (x < y ? -1 : 1)),
        'seq order is shard order',
      );
    }
    assert.ok(new Set((await rowsOf(log)).map((r) => r.shard)).size > 8, 'the accounts spread over the shards');
  });

  void test('rows appended together (as a mint writes them) chain exactly under concurrency; a repeat returns the rows and takes no seq', async () => {
    const log = await freshLog({ shards: 4 });
    // More accounts than shards: appends of different accounts contend for the same shard's lock.
    const accounts = Array.from({ length: 24 }, account);
    const pair = (a: string, i: number) =>
      (['intent', 'ok'] as const).map((phase) => ({
        event: phase === 'intent' ? 'mint.oidc.intent' : 'mint.oidc',
        outcome: 'ok' as const,
        omniAccount: a,
        idemKey: `mint:${a}:${i}:${phase}`,
        details: { phase },
      }));
    const firsts = await Promise.all(accounts.flatMap((a) => [0, 1, 2].map((i) => appendAuditDurably(log.db, pair(a, i), 2000))));
    // A row with no idem key between them: it goes to its shard with a fresh seq, nothing else changes.
    const mixed = await appendAuditDurably(log.db, [...pair(accounts[0]!, 0), { event: 'login.wallet', outcome: 'ok', omniAccount: accounts[0]! }], 2000);
    const verdict = await verifyAuditChain(log.db);
    assert.ok(verdict.ok, JSON.stringify(verdict));
    assert.equal(verdict.rows, 24 * 3 * 2 + 1);
    assert.deepEqual(
      mixed.slice(0, 2),
      firsts[0]?.map((r) => ({ ...r, existing: true })),
      'the repeated rows are the first ones, marked as already there',
    );
    assert.equal(mixed[2]?.existing, undefined, 'the new row is not');
    const seqs = (await rowsOf(log)).map((r) => BigInt(r.seq)).sort((x, y) => (x < y ? -1 : 1));
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => seqs[0]! + BigInt(i)),
      'no seq taken for a row that already existed',
    );
    for (const a of accounts) {
      const own = await rowsOf(log, 'omni_account = $1', [a]);
      const shardSeqs = own.map((r) => BigInt(r.shard_seq ?? '0'));
      assert.deepEqual(
        shardSeqs,
        [...shardSeqs].sort((x, y) => (x < y ? -1 : 1)),
        'seq order is shard order',
      );
      // Each pair is adjacent in its shard: intent, then its outcome chained right after it.
      for (let i = 0; i < 3; i++) {
        const intent = own.find((r) => r.idem_key === `mint:${a}:${i}:intent`);
        const ok = own.find((r) => r.idem_key === `mint:${a}:${i}:ok`);
        assert.ok(intent && ok);
        assert.equal(BigInt(ok.shard_seq ?? '0'), BigInt(intent.shard_seq ?? '0') + 1n);
        assert.equal(ok.prev_hash, intent.hash);
      }
    }
    const verified = await verify(log);
    assert.equal(verified.code, 0, verified.out);
  });
});

void describe('audit:verify on a sharded log', () => {
  void test('an intact log and its heads pass', async () => {
    const { log } = await populated();
    const r = await verify(log);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /audit chain intact: 25 rows in \d of 4 shard chains.*1 signed heads agree/);
  });

  void test('a rewrite with its shard re-chained passes the chains but contradicts the head, naming shard and row', async () => {
    const { log } = await populated();
    const { shard, rows } = await busyShard(log, 3);
    const target = rows[1] as AuditRow;
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query(`UPDATE audit_log SET details = '{"n":2}'::jsonb WHERE seq = $1`, [target.seq]);
    });
    await rechainShard(log.db, shard);
    const alone = await verifyAuditChain(log.db);
    assert.ok(alone.ok, `the re-chained shard passes the chain check alone: ${JSON.stringify(alone)}`);
    const r = await verify(log);
    assert.equal(r.code, 1, r.out);
    const head = rows[rows.length - 1] as AuditRow;
    assert.match(
      r.out,
      new RegExp(
        `CONTRADICTS a signed head \\(shard ${shard}\\): row ${head.seq} in shard ${shard} holds hash [0-9a-f]{64}, but the head signed at .* says ${head.hash}: the log was rewritten`,
      ),
    );
  });

  void test("a shard's cut tail is named against the head that covered it", async () => {
    const { log } = await populated();
    const { shard, rows } = await busyShard(log, 3);
    const cut = rows[rows.length - 2] as AuditRow;
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query('DELETE FROM audit_log WHERE shard = $1 AND shard_seq >= $2', [shard, cut.shard_seq]);
    });
    const r = await verify(log);
    assert.equal(r.code, 1, r.out);
    const last = rows[rows.length - 1] as AuditRow;
    assert.match(
      r.out,
      new RegExp(
        `\\(shard ${shard}\\): shard ${shard} ends at seq ${rows[rows.length - 3]?.seq} but the head signed at .* covers seq ${last.seq} in shard ${shard}: rows were cut`,
      ),
    );
  });

  void test('two rows of a shard with their contents swapped are named', async () => {
    const { log } = await populated();
    const { shard, rows } = await busyShard(log, 3);
    const [a, b] = [rows[0] as AuditRow, rows[1] as AuditRow];
    await withAppendOnlyOff(log.db, async () => {
      const set = 'UPDATE audit_log SET at = $2, event = $3, omni_account = $4, request_id = $5, details = $6, prev_hash = $7, hash = $8 WHERE seq = $1';
      const fields = (r: AuditRow) => [r.at, r.event, r.omni_account, r.request_id, JSON.stringify(r.details), r.prev_hash, r.hash];
      // hash is unique: park one row's on a placeholder while the other takes it.
      await log.db.query("UPDATE audit_log SET hash = 'swap' WHERE seq = $1", [a.seq]);
      await log.db.query(set, [b.seq, ...fields(a)]);
      await log.db.query(set, [a.seq, ...fields(b)]);
    });
    const r = await verify(log);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`BROKEN at shard ${shard}, seq ${a.seq}: prev_hash [0-9a-f]{64} is not the hash of the last pre-sharding row`));
  });

  void test('a row moved into another shard is named', async () => {
    const { log } = await populated();
    const { shard, rows } = await busyShard(log, 2);
    const moved = rows[rows.length - 1] as AuditRow;
    const other = (shard + 1) % 4;
    const tail =
      (await log.db.query<{ n: string }>('SELECT coalesce(max(shard_seq), 0)::text AS n FROM audit_log WHERE shard = $1', [other])).rows[0]?.n ?? '0';
    await withAppendOnlyOff(log.db, async () => {
      await log.db.query('UPDATE audit_log SET shard = $2, shard_seq = $3 WHERE seq = $1', [moved.seq, other, String(BigInt(tail) + 1n)]);
    });
    await rechainShard(log.db, other);
    const r = await verify(log);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      new RegExp(`BROKEN at shard ${other}, seq ${moved.seq}: the row is in shard ${other}, but its account's rows belong in shard ${shard}: it was moved`),
    );
  });

  void test('a head signed by another key, or whose root is not its shard heads, is refused', async () => {
    const { log, head } = await populated();
    const stranger = await signingKeyFromJwk(await generateSigningKeyJwk());
    const statement = JSON.parse(Buffer.from(head.jws.split('.')[1] as string, 'base64url').toString()) as Parameters<typeof signAuditHead>[1];
    const foreign = await verify(log, '--head', await signAuditHead(stranger, statement));
    assert.equal(foreign.code, 1, foreign.out);
    assert.match(foreign.out, /REFUSED \(--head\): the head is signed by a key that is not an audit key/);
    const bent = await verify(log, '--head', await signAuditHead(logs.secrets.auditKey, { ...statement, root: 'a'.repeat(64) }));
    assert.equal(bent.code, 1, bent.out);
    assert.match(bent.out, /REFUSED \(--head\): the head's root a{64} is not the Merkle root of its shard heads/);
  });
});
