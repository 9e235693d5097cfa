/**
 * Prometheus metrics (docs/operations.md): the API's ops listener after real logins and mints,
 * nothing on the public port, the worker process's ops listener and the Temporal SDK's exporter.
 */
import { request as httpRequest } from 'node:http';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { appendAudit } from '../db/audit';
import type { Queryable } from '../db/pool';
import { findFreePort } from '../scripts/temporal-dev-server';
import { latestCode, requestCode, submitCode, uniqueEmail, wrongCode } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { mintAws, mintOidc, walletLogin } from './mint-client';

const ROOT = join(__dirname, '..');
let stack: TestStack;

before(async () => {
  stack = await startStack({
    env: { BROKER_OPS_PORT: String(await findFreePort()), BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_RATE_LIMIT_MINT_PER_MINUTE: '2' },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
});
after(async () => {
  await stack?.stop();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition. */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(url: string): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  return { text, samples: parse(text) };
}

/** The value of the one sample of `name` whose labels include `labels` (0 when there is none). */
function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value ?? 0;
}

void describe('metrics', () => {
  void test('the ops listener counts logins, mints, refusals, STS and SES calls by route and flow, with no personal data in any label', async () => {
    const metricsUrl = stack.metricsUrl as string;
    assert.ok(metricsUrl, 'the stack has no ops listener');
    const before = (await scrape(metricsUrl)).samples;

    // Email login: one code, one wrong code, the right code.
    const email = uniqueEmail('Metrics');
    const { request_id } = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    assert.equal((await submitCode(stack, request_id, wrongCode(code))).status, 401);
    const emailSession = await submitCode(stack, request_id, code);
    assert.equal(emailSession.status, 200, emailSession.text);
    // Wallet login, then two mints (the limit is 2 per account per minute) and a third one refused.
    const wallet = await walletLogin(stack);
    await mintOidc(stack, wallet.token);
    await mintAws(stack, wallet.token);
    const refused = await stack.request('POST', '/v1/mint-oidc-jwt', { token: wallet.token });
    assert.equal(refused.status, 429, refused.text);
    // A path nobody routes, carrying the address: it must not become a label.
    assert.equal((await stack.request('GET', `/v1/session/${encodeURIComponent(email)}`)).status, 404);

    const { text, samples: after } = await scrape(metricsUrl);
    const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);

    assert.equal(delta('broker_login_requests_total', { flow: 'email', step: 'code', outcome: 'ok' }), 1);
    assert.equal(delta('broker_login_requests_total', { flow: 'email', step: 'login', outcome: 'invalid_code' }), 1);
    assert.equal(delta('broker_login_requests_total', { flow: 'email', step: 'login', outcome: 'ok' }), 1);
    assert.equal(delta('broker_login_requests_total', { flow: 'wallet', step: 'login', outcome: 'ok' }), 1);
    assert.equal(delta('broker_mint_requests_total', { kind: 'oidc_jwt', outcome: 'ok' }), 1);
    assert.equal(delta('broker_mint_requests_total', { kind: 'aws_creds', outcome: 'ok' }), 1);
    assert.equal(delta('broker_mint_requests_total', { kind: 'oidc_jwt', outcome: 'rate_limited' }), 1);
    assert.equal(delta('broker_rate_limit_refusals_total', { limit: 'mint:account' }), 1);

    const http = 'broker_http_request_duration_seconds_count';
    assert.equal(delta(http, { method: 'POST', route: '/v1/session/email_login', status_code: '200' }), 1);
    assert.equal(delta(http, { method: 'POST', route: '/v1/session/email_login', status_code: '401' }), 1);
    assert.equal(delta(http, { method: 'POST', route: '/v1/mint-aws-creds', status_code: '200' }), 1);
    assert.equal(delta(http, { method: 'POST', route: '/v1/mint-oidc-jwt', status_code: '429' }), 1);
    assert.equal(delta(http, { method: 'GET', route: '__unknown__', status_code: '404' }), 1);

    // The worker runs in this process: its STS and SES calls show on the same listener.
    assert.equal(delta('broker_sts_request_duration_seconds_count', { operation: 'AssumeRoleWithWebIdentity', outcome: 'ok' }), 1);
    assert.equal(delta('broker_ses_send_duration_seconds_count', { outcome: 'ok' }), 1);
    assert.ok(value(after, 'process_cpu_user_seconds_total', {}) > 0, 'no Node process metrics');

    const labelValues = after.flatMap((s) => Object.values(s.labels).map((v) => v.toLowerCase()));
    for (const secret of [email, wallet.wallet.lower, wallet.token, wallet.omni_account, request_id, code]) {
      assert.ok(!labelValues.some((v) => v.includes(secret.toLowerCase())), `a label carries ${secret}`);
      assert.ok(!text.toLowerCase().includes(secret.toLowerCase()), `the exposition carries ${secret}`);
    }
  });

  void test('/metrics is not on the public port, and the ops listener serves nothing else', async () => {
    assert.equal((await stack.request('GET', '/metrics')).status, 404);
    const ops = new URL(stack.metricsUrl as string);
    assert.notEqual(ops.port, new URL(stack.url).port);
    assert.equal((await fetch(new URL('/healthz', ops))).status, 404);
    assert.equal((await fetch(new URL('/v1/session/me', ops))).status, 404);
  });

  void test('bound to loopback, the ops listener answers only a loopback Host: a page rebound to 127.0.0.1 reads nothing', async () => {
    const ops = new URL(stack.metricsUrl as string);
    const statusWith = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: ops.hostname, port: ops.port, path: '/metrics', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    for (const host of [`127.0.0.1:${ops.port}`, `localhost:${ops.port}`, `[::1]:${ops.port}`, 'localhost']) assert.equal(await statusWith(host), 200, host);
    for (const host of [`attacker.example:${ops.port}`, 'attacker.example', `127.0.0.1.attacker.example:${ops.port}`, 'localhost.']) {
      assert.equal(await statusWith(host), 421, JSON.stringify(host));
    }
  });

  void test('a failed audit append is counted by event', async () => {
    const failing: Queryable = { query: () => Promise.reject(new Error('database unreachable')) } as unknown as Queryable;
    const before = value((await scrape(stack.metricsUrl as string)).samples, 'broker_audit_write_failures_total', { event: 'mint.oidc' });
    await assert.rejects(appendAudit(failing, { event: 'mint.oidc', outcome: 'ok' }), /database unreachable/);
    const after = value((await scrape(stack.metricsUrl as string)).samples, 'broker_audit_write_failures_total', { event: 'mint.oidc' });
    assert.equal(after - before, 1);
  });

  void test('the worker process serves its metrics and the Temporal SDK metrics on its own ports', async () => {
    const [opsPort, sdkPort] = [await findFreePort(), await findFreePort()];
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
      cwd: ROOT,
      env: { ...stack.childEnv(), BROKER_WORKER_OPS_PORT: String(opsPort), BROKER_TEMPORAL_METRICS_PORT: String(sdkPort) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let output = '';
      child.stdout?.on('data', (c: Buffer) => void (output += c.toString()));
      child.stderr?.on('data', (c: Buffer) => void (output += c.toString()));
      const deadline = Date.now() + 60_000;
      while (!output.includes('worker polling task queue')) {
        assert.ok(child.exitCode === null, `worker exited:\n${output}`);
        assert.ok(Date.now() < deadline, `worker did not start polling within 60 s:\n${output}`);
        await delay(100);
      }
      assert.match(output, new RegExp(`metrics on http://127\\.0\\.0\\.1:${opsPort}/metrics`));
      assert.match(output, new RegExp(`Temporal SDK metrics on http://127\\.0\\.0\\.1:${sdkPort}/metrics`));

      const worker = await scrape(`http://127.0.0.1:${opsPort}/metrics`);
      assert.ok(value(worker.samples, 'process_cpu_user_seconds_total', {}) > 0);
      assert.match(worker.text, /^# TYPE broker_sts_request_duration_seconds histogram$/m);

      // Core's exporter: the SDK's own series (pollers, slots, …), every one temporal_-prefixed.
      let sdk = await scrape(`http://127.0.0.1:${sdkPort}/metrics`);
      for (let i = 0; i < 50 && !sdk.samples.some((s) => s.name.startsWith('temporal_')); i++) {
        await delay(100);
        sdk = await scrape(`http://127.0.0.1:${sdkPort}/metrics`);
      }
      assert.ok(
        sdk.samples.some((s) => s.name.startsWith('temporal_')),
        `no temporal_ metrics:\n${sdk.text.slice(0, 500)}`,
      );
      assert.ok(!sdk.samples.some((s) => s.name.startsWith('broker_')));
    } finally {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    }
  });
});
