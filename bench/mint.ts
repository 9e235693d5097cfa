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
import { runBench, summary } from './latency';

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

runBench(main);
