/**
 * Google login latency through the whole stack: real HTTP API, Temporal dev server, worker,
 * Postgres and the loopback OpenID provider (test/google-login-client.ts startGoogleStack). N
 * sequential CLI-form sign-ins after a warm-up; "callback to session" is the browser's GET of the
 * callback (code exchange, id_token checks, userinfo, user + session + audit rows) plus the CLI's
 * one poll that collects the session (with the confirmation code the callback page showed).
 *
 *   npx tsx bench/google-login.ts [N=50] [WARMUP=5]
 *
 * Uses TEMPORAL_ADDRESS when set, else starts its own dev server. Needs the test Postgres.
 */
import { performance } from 'node:perf_hooks';
import { callback, cliStart, consent, poll, startGoogleStack, uniqueHint, type GoogleStack } from '../test/google-login-client';
import { runBench, summary } from './latency';

interface Sample {
  start: number;
  callback: number;
  callbackToSession: number;
}

async function oneLogin(g: GoogleStack, i: number): Promise<Sample> {
  const t0 = performance.now();
  const start = await cliStart(g.stack);
  const t1 = performance.now();
  const callbackUrl = await consent(start.authorize_url, uniqueHint(`bench${i}`));
  const t2 = performance.now();
  const back = await callback(callbackUrl);
  if (back.status !== 200) throw new Error(`callback answered ${back.status}: ${back.text}`);
  const t3 = performance.now();
  const got = await poll(g.stack, start, back.code);
  if (got.status !== 200) throw new Error(`poll answered ${got.status}: ${got.text}`);
  const t4 = performance.now();
  return { start: t1 - t0, callback: t3 - t2, callbackToSession: t4 - t2 };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 50);
  const warmup = Number(process.argv[3] ?? 5);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(warmup) || warmup < 0) throw new Error('usage: tsx bench/google-login.ts [N] [WARMUP]');
  const g = await startGoogleStack({ BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000000' });
  try {
    for (let i = 0; i < warmup; i++) await oneLogin(g, -1 - i);
    const samples: Sample[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) samples.push(await oneLogin(g, i));
    const wall = (performance.now() - t0) / 1000;
    console.log(`Google login (CLI form), ${n} sequential sign-ins (after ${warmup} warm-up), ${wall.toFixed(1)} s`);
    console.log(
      summary(
        'POST google_oauth_login (200)',
        samples.map((s) => s.start),
      ),
    );
    console.log(
      summary(
        'GET google_oauth_callback (200)',
        samples.map((s) => s.callback),
      ),
    );
    console.log(
      summary(
        'callback → session (callback + poll)',
        samples.map((s) => s.callbackToSession),
      ),
    );
  } finally {
    await g.stop();
  }
}

runBench(main);
