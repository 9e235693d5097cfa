/**
 * Mint latency through the whole stack: real HTTP API, Temporal dev server, in-process worker,
 * Postgres (test/harness.ts startStack), and for mint-aws-creds the real AWS SDK against the STS
 * stand-in, which verifies each token against the broker's JWKS as STS would. Each sample is one
 * HTTP call as a client sees it (authorise → audit intent → mint → audit outcome → response).
 *
 *   npx tsx bench/mint.ts [N=300] [WARMUP=20]
 *
 * Uses TEMPORAL_ADDRESS when set, else starts its own dev server. Needs the test Postgres.
 */
import { performance } from 'node:perf_hooks';
import { startStack, type TestStack } from '../test/harness';
import { walletLogin } from '../test/mint-client';

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

function summary(name: string, values: number[], wallSeconds: number): string {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const f = (v: number) => v.toFixed(1).padStart(6);
  return (
    `${name.padEnd(24)} p50 ${f(percentile(s, 50))} ms   p90 ${f(percentile(s, 90))} ms   p99 ${f(percentile(s, 99))} ms` +
    `   mean ${f(mean)} ms   max ${f(s[s.length - 1] ?? Number.NaN)} ms   (${(s.length / wallSeconds).toFixed(0)}/s)`
  );
}

async function timedMint(stack: TestStack, path: string, token: string): Promise<number> {
  const t0 = performance.now();
  const res = await stack.request('POST', path, { token });
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${res.text}`);
  return performance.now() - t0;
}

async function series(stack: TestStack, path: string, token: string, n: number, warmup: number): Promise<string> {
  for (let i = 0; i < warmup; i++) await timedMint(stack, path, token);
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) samples.push(await timedMint(stack, path, token));
  return summary(path, samples, (performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 300);
  const warmup = Number(process.argv[3] ?? 20);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(warmup) || warmup < 0) throw new Error('usage: tsx bench/mint.ts [N] [WARMUP]');
  const stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000000' } });
  try {
    stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
    const session = await walletLogin(stack);
    console.log(`credential mints through the whole stack, ${n} sequential calls each after ${warmup} warm-up`);
    console.log(await series(stack, '/v1/mint-oidc-jwt', session.token, n, warmup));
    console.log(await series(stack, '/v1/mint-aws-creds', session.token, n, warmup));
  } finally {
    await stack.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error((e as Error).message);
    process.exit(1);
  },
);
