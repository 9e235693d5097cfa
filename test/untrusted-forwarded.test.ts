/**
 * X-Forwarded-For from a peer BROKER_TRUST_PROXY does not name is ignored (the peer stays the client
 * address) and the broker says so once per process, naming the peer and the setting to change: a
 * load balancer left off the setting would otherwise silently turn every per-address limit into
 * one global budget.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../api/app';
import type { TrustProxy } from '../lib/config';
import { startStack, type TestStack } from './harness';

interface LogRecord {
  level: number;
  msg?: string;
  peer?: string;
  setting?: string;
  req?: { url?: string; ip?: string };
}

const WARNING = /^X-Forwarded-For from .* ignored/;
const WARN = 40;

const lines: string[] = [];
let stack: TestStack;
before(async () => {
  stack = await startStack({ worker: false, env: { BROKER_TRUST_PROXY: '10.0.1.5/32' }, logStream: { write: (line: string) => void lines.push(line) } });
});
after(async () => {
  await stack?.stop();
});

const records = (from: string[]) => from.map((l) => JSON.parse(l) as LogRecord);
const warningsIn = (from: string[]) => records(from).filter((r) => WARNING.test(r.msg ?? ''));
/** The client address each request to `url` was logged with. */
const loggedIps = (from: string[], url: string) =>
  records(from)
    .filter((r) => r.msg === 'incoming request' && r.req?.url === url)
    .map((r) => r.req?.ip);

/** A second app over the stack's deps under another BROKER_TRUST_PROXY, its log lines captured. */
async function appWith(trust: TrustProxy): Promise<{ app: FastifyInstance; log: string[] }> {
  const log: string[] = [];
  const app = await buildApp(
    { ...stack.deps, config: { ...stack.config, BROKER_TRUST_PROXY: trust } },
    { logLevel: 'info', logStream: { write: (l: string) => void log.push(l) } },
  );
  return { app, log };
}

void describe('X-Forwarded-For from a peer that is not a trusted proxy', () => {
  void test('is ignored, and warned about once per process naming the peer and BROKER_TRUST_PROXY', async () => {
    // Without the header: nothing to say.
    assert.equal((await stack.request('GET', '/healthz')).status, 200);
    assert.deepEqual(warningsIn(lines), []);

    for (const forwarded of ['203.0.113.9', '203.0.113.10, 198.51.100.4', '203.0.113.11']) {
      const res = await stack.request('GET', '/nope-forwarded', { headers: { 'x-forwarded-for': forwarded } });
      assert.equal(res.status, 404);
    }
    const warnings = warningsIn(lines);
    assert.equal(warnings.length, 1, lines.join('\n'));
    const warning = warnings[0] as LogRecord;
    assert.equal(warning.level, WARN);
    assert.match(warning.peer ?? '', /^(::ffff:)?127\.0\.0\.1$/);
    assert.equal(warning.setting, 'BROKER_TRUST_PROXY');
    assert.match(warning.msg ?? '', /^X-Forwarded-For from (::ffff:)?127\.0\.0\.1 ignored: that peer is not on BROKER_TRUST_PROXY \(10\.0\.1\.5\/32\)/);
    assert.match(warning.msg ?? '', /add it to BROKER_TRUST_PROXY/);
    assert.doesNotMatch(JSON.stringify(warning), /203\.0\.113|198\.51\.100/, 'the header itself is not logged');

    // The client address of every one of those requests stayed the TCP peer's.
    const ips = loggedIps(lines, '/nope-forwarded');
    assert.equal(ips.length, 3, lines.join('\n'));
    for (const ip of ips) assert.match(ip ?? '', /^(::ffff:)?127\.0\.0\.1$/);
  });

  void test('with BROKER_TRUST_PROXY unset: the same warning, once, and the forged loopback address opens no TEE callback', async () => {
    const { app, log } = await appWith(false);
    try {
      for (let i = 0; i < 3; i++) {
        // The peer claims to be loopback (on the default BROKER_TEE_CALLBACK_ALLOW): not believed.
        const res = await app.inject({
          method: 'GET',
          url: '/v3/account/get_account_user_id?email=someone%40example.com',
          remoteAddress: '198.51.100.20',
          headers: { 'x-forwarded-for': '127.0.0.1' },
        });
        assert.equal(res.statusCode, 403, res.body);
      }
      const warnings = warningsIn(log);
      assert.equal(warnings.length, 1, log.join('\n'));
      assert.equal(warnings[0]?.peer, '198.51.100.20');
      assert.match(warnings[0]?.msg ?? '', /^X-Forwarded-For from 198\.51\.100\.20 ignored: that peer is not on BROKER_TRUST_PROXY \(unset\)/);
      assert.deepEqual(loggedIps(log, '/v3/account/get_account_user_id?email=[redacted]'), Array<string>(3).fill('198.51.100.20'));
    } finally {
      await app.close();
    }
  });

  void test('from a trusted proxy (listed, or a hop count): believed, and no warning', async () => {
    for (const trust of [['10.0.1.5/32'], 1] as TrustProxy[]) {
      const { app, log } = await appWith(trust);
      try {
        const res = await app.inject({ method: 'GET', url: '/nope-trusted', remoteAddress: '10.0.1.5', headers: { 'x-forwarded-for': '203.0.113.9' } });
        assert.equal(res.statusCode, 404);
        assert.deepEqual(warningsIn(log), [], log.join('\n'));
        assert.deepEqual(loggedIps(log, '/nope-trusted'), ['203.0.113.9']);
      } finally {
        await app.close();
      }
    }
  });
});
