/**
 * `npx tsx scripts/bench-cli.ts [runs]`: how long `agentkeys` takes to start, paired against
 * `node -e 0` in the same run (each round runs the baseline and every case back to back, in turns,
 * so load on the machine hits both alike). Cases: `--help`, `--version`, and a cached
 * `mint aws --credential-process` (a profile with valid cached credentials in a temporary HOME:
 * no broker is asked, which is the point). Prints medians and the paired ratios against the
 * targets (cached credential_process ≤ 1.5×, --help ≤ 2×). Builds dist/cli first.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const BIN = join(ROOT, 'bin', 'agentkeys.js');
const runs = Number(process.argv[2] ?? 30);

function fakeHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'akb-bench-cli-'));
  const dir = join(home, '.agentkeys', 'default');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const now = Math.floor(Date.now() / 1000);
  const base = { broker_url: 'http://127.0.0.1:9', method: 'wallet', omni_account: `0x${'ab'.repeat(32)}`, expires_at: now + 3600 };
  writeFileSync(join(dir, 'profile.json'), JSON.stringify({ ...base, kind: 'file' }), { mode: 0o600 });
  const aws_cache = { key: '{}', access_key_id: 'ASIABENCH', secret_access_key: 'x'.repeat(40), session_token: 'y'.repeat(200), expiration: now + 3600 };
  writeFileSync(join(dir, 'session.json'), JSON.stringify({ ...base, token: 'bench', aws_cache }), { mode: 0o600 });
  return home;
}

function timeOnce(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

function main(): void {
  const build = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-cli.mjs')], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build-cli failed');
  const home = fakeHome();
  const env = { PATH: process.env.PATH, HOME: home };
  const cases: { name: string; args: string[]; target?: number }[] = [
    { name: 'mint aws --credential-process (cached)', args: [BIN, 'mint', 'aws', '--credential-process'], target: 1.5 },
    { name: '--help', args: [BIN, '--help'], target: 2 },
    { name: '--version', args: [BIN, '--version'] },
  ];
  const base: number[] = [];
  const times = cases.map(() => [] as number[]);
  const ratios = cases.map(() => [] as number[]);
  try {
    for (const c of cases) timeOnce(c.args, env); // warm the file cache
    for (let i = 0; i < runs; i++) {
      const b = timeOnce(['-e', '0'], env);
      base.push(b);
      cases.forEach((c, k) => {
        const t = timeOnce(c.args, env);
        times[k]?.push(t);
        ratios[k]?.push(t / b);
      });
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
  console.log(`${runs} paired rounds; node -e 0 median ${median(base).toFixed(1)} ms`);
  let ok = true;
  cases.forEach((c, k) => {
    const ratio = median(ratios[k] ?? []);
    const verdict = c.target === undefined ? '' : ratio <= c.target ? ` (target ≤ ${c.target}×: met)` : ` (target ≤ ${c.target}×: MISSED)`;
    if (c.target !== undefined && ratio > c.target) ok = false;
    console.log(`${c.name.padEnd(42)} median ${median(times[k] ?? []).toFixed(1)} ms, paired ratio median ${ratio.toFixed(2)}×${verdict}`);
  });
  process.exitCode = ok ? 0 : 1;
}

main();
