/**
 * `npm run bench:audit [-- --accounts 64] [--duration 10] [--rounds 2] [--shards 1,16]`: audit
 * appends from many accounts at once, one chain against sharded chains, in one run on one machine.
 *
 * For each shard count it makes a fresh database on the local Postgres (DATABASE_URL's server, or
 * postgres://postgres@127.0.0.1:5432), migrates it and fixes BROKER_AUDIT_SHARDS, then runs
 * `--accounts` closed-loop clients, each its own OmniAccount on its own connection, each append
 * its own transaction (BEGIN; appendAudit; COMMIT — the row durable before the next), for
 * `--duration` seconds after a warm-up of a third of that. Shard counts alternate over `--rounds`
 * so the machine's load falls on both alike. After each run audit:verify's chain walk checks the
 * log. Prints appends/s and latency per run and the median per shard count; writes
 * bench/audit-results.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { appendAudit, ensureAuditShards } from '../db/audit';
import { verifyAuditChain } from '../db/audit-query';
import { migrate } from '../db/migrate';
import { createPool, withTransaction } from '../db/pool';

const ROOT = join(__dirname, '..');

interface Options {
  accounts: number;
  duration: number;
  rounds: number;
  shards: number[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { accounts: 64, duration: 10, rounds: 2, shards: [1, 16] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--accounts') o.accounts = Number(v);
    else if (a === '--duration') o.duration = Number(v);
    else if (a === '--rounds') o.rounds = Number(v);
    else if (a === '--shards') o.shards = v.split(',').map(Number);
    else throw new Error(`unknown argument ${a} (usage: bench:audit [--accounts 64] [--duration 10] [--rounds 2] [--shards 1,16])`);
  }
  if (![o.accounts, o.duration, o.rounds, ...o.shards].every((n) => Number.isInteger(n) && n > 0))
    throw new Error('every value must be a positive whole number');
  return o;
}

interface RunResult {
  shards: number;
  round: number;
  appends: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  shardsUsed: number;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

async function runOnce(adminUrl: string, shards: number, round: number, o: Options): Promise<RunResult> {
  const name = `akb_bench_audit_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = createPool(url.toString(), o.accounts);
  try {
    await migrate(db);
    await ensureAuditShards(db, shards);
    const accounts = Array.from({ length: o.accounts }, () => `0x${randomBytes(32).toString('hex')}`);
    let measuring = false;
    let stop = false;
    const latencies: number[] = [];
    const client = async (omniAccount: string) => {
      while (!stop) {
        const t0 = performance.now();
        await withTransaction(db, (tx) =>
          appendAudit(tx, { event: 'bench.append', outcome: 'ok', omniAccount, requestId: randomBytes(8).toString('hex'), details: { bench: true } }),
        );
        if (measuring) latencies.push(performance.now() - t0);
      }
    };
    const running = accounts.map(client);
    await new Promise((r) => setTimeout(r, Math.min(3000, (o.duration * 1000) / 3)));
    measuring = true;
    const start = performance.now();
    await new Promise((r) => setTimeout(r, o.duration * 1000));
    measuring = false;
    const elapsed = (performance.now() - start) / 1000;
    stop = true;
    await Promise.all(running);
    const verdict = await verifyAuditChain(db);
    if (!verdict.ok) throw new Error(`the chains broke under load: shard ${verdict.shard} seq ${verdict.brokenSeq}: ${verdict.reason}`);
    latencies.sort((a, b) => a - b);
    return {
      shards,
      round,
      appends: latencies.length,
      perSecond: Math.round(latencies.length / elapsed),
      p50ms: Number(percentile(latencies, 50).toFixed(1)),
      p99ms: Number(percentile(latencies, 99).toFixed(1)),
      shardsUsed: verdict.shardHeads.filter((h) => h.seq !== '0').length,
    };
  } finally {
    await db.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const adminUrl = (() => {
    if (!process.env.DATABASE_URL) return 'postgres://postgres@127.0.0.1:5432/postgres';
    const u = new URL(process.env.DATABASE_URL);
    u.pathname = '/postgres';
    return u.toString();
  })();
  console.log(`audit appends: ${o.accounts} accounts at once, ${o.duration} s per run, shard counts ${o.shards.join(' and ')}, ${o.rounds} rounds`);
  const results: RunResult[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    const order = round % 2 === 1 ? o.shards : [...o.shards].reverse();
    for (const shards of order) {
      const r = await runOnce(adminUrl, shards, round, o);
      results.push(r);
      console.log(
        `  round ${round}  shards ${String(shards).padStart(3)}  ${String(r.perSecond).padStart(6)} appends/s  p50 ${r.p50ms} ms  p99 ${r.p99ms} ms  (${r.appends} appends, ${r.shardsUsed} shards used, chains verified)`,
      );
    }
  }
  console.log('median appends/s per shard count:');
  const medians = o.shards.map((shards) => {
    const v = results
      .filter((r) => r.shards === shards)
      .map((r) => r.perSecond)
      .sort((a, b) => a - b);
    return { shards, perSecond: v[Math.floor(v.length / 2)] ?? 0 };
  });
  for (const m of medians) console.log(`  ${String(m.shards).padStart(3)} shards: ${m.perSecond}/s`);
  await mkdir(join(ROOT, 'bench'), { recursive: true });
  await writeFile(join(ROOT, 'bench/audit-results.json'), JSON.stringify({ options: o, at: new Date().toISOString(), results, medians }, null, 2) + '\n');
}

main().catch((e: unknown) => {
  console.error(`bench:audit failed: ${(e as Error).message}`);
  process.exit(1);
});
