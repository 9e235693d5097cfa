/**
 * Wallet login latency through the whole stack: real HTTP API, Temporal dev server, in-process
 * worker, Postgres (test/harness.ts startStack). Signatures are made by viem accounts before the
 * clock starts; each sample is one HTTP call as a client sees it.
 *
 *   stateless   POST /v1/session/wallet_login {address, signature, timestamp}
 *   challenge   POST /v1/session/wallet_challenge (siwe) → sign → POST /v1/session/wallet_login {request_id, signature}
 *
 *   npx tsx bench/wallet-login.ts [N=300] [WARMUP=20]
 *
 * Uses TEMPORAL_ADDRESS when set, else starts its own dev server. Needs the test Postgres.
 */
import { performance } from 'node:perf_hooks';
import type { Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { SECP256K1_BACKEND } from '../adapters/evm-signature';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { startStack, type TestStack } from '../test/harness';
import { runBench, summary } from './latency';

async function statelessBodies(n: number): Promise<{ address: string; signature: Hex; timestamp: number }[]> {
  const t = Math.floor(Date.now() / 1000);
  return Promise.all(
    Array.from({ length: n }, async () => {
      const account = privateKeyToAccount(generatePrivateKey());
      return { address: account.address, signature: await account.signMessage({ message: buildStatelessWalletMessage(account.address, t) }), timestamp: t };
    }),
  );
}

async function statelessLogin(stack: TestStack, body: unknown): Promise<number> {
  const t0 = performance.now();
  const res = await stack.request('POST', '/v1/session/wallet_login', { body });
  if (res.status !== 200) throw new Error(`wallet_login answered ${res.status}: ${res.text}`);
  return performance.now() - t0;
}

async function challengeLogin(stack: TestStack, account: PrivateKeyAccount): Promise<{ challenge: number; login: number }> {
  const t0 = performance.now();
  const c = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: account.address, format: 'siwe' } });
  if (c.status !== 200) throw new Error(`wallet_challenge answered ${c.status}: ${c.text}`);
  const t1 = performance.now();
  const { request_id, message } = c.body as { request_id: string; message: string };
  const signature = await account.signMessage({ message });
  const t2 = performance.now();
  const res = await stack.request('POST', '/v1/session/wallet_login', { body: { request_id, signature } });
  if (res.status !== 200) throw new Error(`wallet_login answered ${res.status}: ${res.text}`);
  return { challenge: t1 - t0, login: performance.now() - t2 };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 300);
  const warmup = Number(process.argv[3] ?? 20);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(warmup) || warmup < 0) throw new Error('usage: tsx bench/wallet-login.ts [N] [WARMUP]');
  const stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000000' } });
  try {
    console.log(`wallet login through the whole stack (ecrecover backend: ${SECP256K1_BACKEND}), ${n} sequential logins after ${warmup} warm-up`);
    for (const body of await statelessBodies(warmup)) await statelessLogin(stack, body);
    const bodies = await statelessBodies(n);
    const t0 = performance.now();
    const stateless: number[] = [];
    for (const body of bodies) stateless.push(await statelessLogin(stack, body));
    const wall = (performance.now() - t0) / 1000;
    console.log(summary('stateless EIP-191 wallet_login', stateless) + `   (${(n / wall).toFixed(0)} logins/s)`);

    for (let i = 0; i < warmup; i++) await challengeLogin(stack, privateKeyToAccount(generatePrivateKey()));
    const challenges: number[] = [];
    const logins: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = await challengeLogin(stack, privateKeyToAccount(generatePrivateKey()));
      challenges.push(s.challenge);
      logins.push(s.login);
    }
    console.log(summary('SIWE wallet_challenge', challenges));
    console.log(summary('SIWE wallet_login {request_id}', logins));
    console.log(
      summary(
        'SIWE both calls',
        challenges.map((c, i) => c + (logins[i] ?? 0)),
      ),
    );
  } finally {
    await stack.stop();
  }
}

runBench(main);
