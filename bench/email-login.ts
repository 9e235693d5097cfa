/**
 * Email-code login latency through the whole stack: real HTTP API, Temporal dev server, worker,
 * Postgres and the SES stand-in (test/harness.ts startStack). N sequential logins, each
 * POST /v1/session/email_code → GET /_dev/mail → POST /v1/session/email_login, after a warm-up.
 *
 *   npx tsx bench/email-login.ts [N=100] [WARMUP=5]
 *
 * Uses TEMPORAL_ADDRESS when set (e.g. the runner's server), else starts its own dev server.
 * Needs the test Postgres (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
 */
import { performance } from 'node:perf_hooks';
import { codeFromMail, devMail, submitCode, uniqueEmail } from '../test/email-login-client';
import { startStack, type TestStack } from '../test/harness';
import { runBench, summary } from './latency';

interface Sample {
  emailCode: number;
  emailLogin: number;
  roundTrip: number;
}

async function oneLogin(stack: TestStack, i: number): Promise<Sample> {
  const email = uniqueEmail(`bench${i}`);
  const t0 = performance.now();
  const sent = await stack.request('POST', '/v1/session/email_code', { body: { email } });
  if (sent.status !== 202) throw new Error(`email_code answered ${sent.status}: ${sent.text}`);
  const t1 = performance.now();
  const [mail] = await devMail(stack, email.toLowerCase());
  if (!mail) throw new Error('no mail captured');
  const code = codeFromMail(mail.text);
  const t2 = performance.now();
  const login = await submitCode(stack, (sent.body as { request_id: string }).request_id, code);
  if (login.status !== 200) throw new Error(`email_login answered ${login.status}: ${login.text}`);
  const t3 = performance.now();
  return { emailCode: t1 - t0, emailLogin: t3 - t2, roundTrip: t3 - t0 };
}

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const n = Number(process.argv[2] ?? 100);
  const warmup = Number(process.argv[3] ?? 5);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(warmup) || warmup < 0) throw new Error('usage: tsx bench/email-login.ts [N] [WARMUP]');
  const stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000000', BROKER_RATE_LIMIT_EMAIL_PER_HOUR: '1000000', BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '1000000' },
  });
  try {
    for (let i = 0; i < warmup; i++) await oneLogin(stack, -1 - i);
    const samples: Sample[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) samples.push(await oneLogin(stack, i));
    const wall = (performance.now() - t0) / 1000;
    console.log(`email-code login, ${n} sequential logins (after ${warmup} warm-up), ${wall.toFixed(1)} s, ${(n / wall).toFixed(1)} logins/s`);
    console.log(
      summary(
        'POST email_code (202)',
        samples.map((s) => s.emailCode),
      ),
    );
    console.log(
      summary(
        'POST email_login (200)',
        samples.map((s) => s.emailLogin),
      ),
    );
    console.log(
      summary(
        'full round trip',
        samples.map((s) => s.roundTrip),
      ),
    );
  } finally {
    await stack.stop();
  }
}

runBench(main);
