/**
 * The shipped deployment files describe one topology: the API unit listens where nginx's upstream
 * points, and the address nginx connects from is a proxy the broker trusts. If they disagree, the
 * broker ignores nginx's X-Forwarded-For and every client has nginx's address: each per-address
 * limit becomes one global budget and BROKER_TEE_CALLBACK_ALLOW never sees the TEE.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseSourceAllowList } from '../lib/cidr-allow';
import { loadConfig, type TrustProxy } from '../lib/config';

const DEPLOY = join(__dirname, '..', 'deploy');
const read = (...path: string[]) => readFileSync(join(DEPLOY, ...path), 'utf8');

/** The unit instance the examples use (agentkeys-api@8091). */
const INSTANCE = '8091';

/** KEY=VALUE lines (comments and blank lines skipped), as systemd reads an EnvironmentFile. */
function envFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not KEY=VALUE: ${line}`);
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** The unit's Environment= lines with %i filled in. */
function unitEnvironment(unit: string, instance: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [, key = '', value = ''] of unit.matchAll(/^Environment=([A-Z_][A-Z0-9_]*)=(.*)$/gm)) env[key] = value.replace(/%i/g, instance);
  return env;
}

/** What one API process of the shipped files runs with: EnvironmentFile= overrides Environment= (systemd.exec). */
function shippedApiEnv(): Record<string, string> {
  const unit = read('systemd', 'agentkeys-api@.service');
  assert.match(unit, /^EnvironmentFile=\/etc\/agentkeys-broker\/broker\.env$/m);
  return { ...unitEnvironment(unit, INSTANCE), ...envFile(read('systemd', 'broker.env.example')) };
}

/** proxy-addr's range names, as CIDRs. */
const RANGE_NAMES: Record<string, string> = {
  loopback: '127.0.0.0/8,::1/128',
  linklocal: '169.254.0.0/16,fe80::/10',
  uniquelocal: '10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7',
};

/** Whether the broker believes X-Forwarded-For sent by `peer` under this BROKER_TRUST_PROXY. */
function trusts(setting: TrustProxy, peer: string): boolean {
  if (setting === false) return false;
  if (typeof setting === 'number') return setting >= 1;
  return parseSourceAllowList(setting.map((e) => RANGE_NAMES[e] ?? e).join(',')).allows(peer);
}

const PRIVATE_OR_LOOPBACK = parseSourceAllowList(`${RANGE_NAMES.loopback},${RANGE_NAMES.uniquelocal}`);
const LOOPBACK = parseSourceAllowList(RANGE_NAMES.loopback ?? '');

interface NginxSide {
  /** The upstream's example server line: where nginx sends requests. */
  upstream: { host: string; port: number };
  /** The address nginx is told to connect from (`proxy_bind`), if it names one. */
  bind?: string;
  /** Every X-Forwarded-For the site sets. */
  forwardedFor: string[];
}

function nginxSide(): NginxSide {
  const site = read('nginx', 'agentkeys-broker.conf');
  const block = /^upstream agentkeys_api \{([\s\S]*?)^\}/m.exec(site)?.[1];
  assert.ok(block, 'the site has an upstream agentkeys_api block');
  const server = /`server\s+([^\s:`]+):(\d+)\b[^`]*`/.exec(block);
  assert.ok(server, 'the upstream shows one API process as an example `server HOST:PORT ...` line');
  const bind = /`proxy_bind\s+([^;`\s]+);`/.exec(site)?.[1];
  return {
    upstream: { host: server[1] ?? '', port: Number(server[2]) },
    bind,
    forwardedFor: [...site.matchAll(/proxy_set_header\s+X-Forwarded-For\s+([^;]+);/g)].map((m) => (m[1] ?? '').trim()),
  };
}

void describe('the shipped deploy files agree on one topology', () => {
  const env = shippedApiEnv();
  const config = loadConfig(env);
  const nginx = nginxSide();

  void test('broker.env.example with the API unit is a configuration the broker starts with in production', () => {
    assert.equal(config.isProduction, true);
    assert.equal(config.PORT, Number(INSTANCE));
  });

  void test("nginx's upstream is where the unit listens (HOST from broker.env, PORT the instance)", () => {
    assert.equal(nginx.upstream.host, config.HOST, `nginx sends to ${nginx.upstream.host}; the API listens on HOST=${config.HOST}`);
    assert.equal(nginx.upstream.port, config.PORT);
  });

  void test('the API listens on a private interface only', () => {
    assert.notEqual(isIP(config.HOST), 0, `HOST=${config.HOST} is an address`);
    assert.ok(PRIVATE_OR_LOOPBACK.allows(config.HOST), `HOST=${config.HOST} is a loopback or private address (never 0.0.0.0 or a public one)`);
  });

  void test('nginx is the edge: it replaces X-Forwarded-For, and the address it connects from is a trusted proxy', () => {
    assert.ok(nginx.forwardedFor.length > 0);
    for (const value of nginx.forwardedFor) assert.equal(value, '$remote_addr', 'nginx replaces X-Forwarded-For (a client cannot add entries)');
    // An API on loopback is reached by an nginx on the same host, from loopback; otherwise from the address nginx binds.
    const source = LOOPBACK.allows(config.HOST) ? '127.0.0.1' : nginx.bind;
    assert.ok(source, 'with the API on a private network address, the site names the address nginx connects from (proxy_bind)');
    assert.ok(
      trusts(config.BROKER_TRUST_PROXY, source),
      `nginx connects from ${source}, which BROKER_TRUST_PROXY=${String(env.BROKER_TRUST_PROXY)} does not name: every client would have nginx's address`,
    );
    // nginx sends one entry: a hop count above 1 would believe an address the client made up.
    if (typeof config.BROKER_TRUST_PROXY === 'number') assert.equal(config.BROKER_TRUST_PROXY, 1);
  });

  void test("nginx's own address is not on BROKER_TEE_CALLBACK_ALLOW", () => {
    const tee = parseSourceAllowList(config.BROKER_TEE_CALLBACK_ALLOW);
    const source = LOOPBACK.allows(config.HOST) ? '127.0.0.1' : (nginx.bind ?? '');
    assert.equal(tee.allows(source), false, 'the allow list names the TEE workers, as nginx saw them, never nginx itself');
  });

  void test('every unit runs the process without what a node server never needs', () => {
    for (const unit of ['agentkeys-api@.service', 'agentkeys-worker@.service', 'agentkeys-migrate.service']) {
      const text = read('systemd', unit);
      for (const line of [
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'UMask=0077',
        'CapabilityBoundingSet=',
        'PrivateDevices=yes',
        'ProtectKernelTunables=yes',
        'ProtectKernelModules=yes',
        'ProtectControlGroups=yes',
        'RestrictNamespaces=yes',
        'RestrictSUIDSGID=yes',
        'LockPersonality=yes',
        'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK',
      ])
        assert.ok(text.split('\n').includes(line), `${unit} lacks ${line}`);
    }
  });
});

void describe('migrations run as the schema owner, whose credential only the migrate unit holds', () => {
  const runtimeEnv = envFile(read('systemd', 'broker.env.example'));
  const migrateEnv = envFile(read('systemd', 'migrate.env.example'));
  const migrateUnit = read('systemd', 'agentkeys-migrate.service');

  void test('the migrate unit is a one-shot of the built command, reading migrate.env and not broker.env', () => {
    assert.match(migrateUnit, /^Type=oneshot$/m);
    assert.deepEqual(
      [...migrateUnit.matchAll(/^EnvironmentFile=(.*)$/gm)].map((m) => m[1]),
      ['/etc/agentkeys-broker/migrate.env'],
    );
    const exec = /^ExecStart=\/usr\/bin\/node (dist\/(\S+)\.js)$/m.exec(migrateUnit);
    assert.ok(exec, 'ExecStart runs a built entry point with node');
    // dist/db/migrate-main.js is built from db/migrate-main.ts (tsconfig.build.json builds db/).
    assert.ok(existsSync(join(DEPLOY, '..', `${exec[2] ?? ''}.ts`)), `${exec[1] ?? ''} has no source`);
    assert.match(migrateUnit, /^DynamicUser=yes$/m, "not the runtime processes' user: they cannot read its environment");
  });

  void test('the API and worker units never name migrate.env, and broker.env holds no owner URL', () => {
    for (const unit of ['agentkeys-api@.service', 'agentkeys-worker@.service']) {
      const text = read('systemd', unit);
      assert.doesNotMatch(text, /migrate\.env/, unit);
      assert.doesNotMatch(text, /^(Wants|Requires|BindsTo)=.*agentkeys-migrate/m, `${unit} pulls in the owner's unit`);
    }
    assert.equal(runtimeEnv.BROKER_MIGRATION_DATABASE_URL, undefined);
    assert.equal(loadConfig(shippedApiEnv()).BROKER_MIGRATIONS, 'external', 'the runtime processes run no DDL');
  });

  void test("migrate.env names the owner of broker.env's database and grants broker.env's login", () => {
    const owner = new URL(migrateEnv.BROKER_MIGRATION_DATABASE_URL ?? '');
    const runtime = new URL(runtimeEnv.DATABASE_URL ?? '');
    assert.equal(`${owner.host}${owner.pathname}`, `${runtime.host}${runtime.pathname}`, 'one database');
    assert.notEqual(owner.username, runtime.username, 'the owner is not the runtime login');
    assert.equal(migrateEnv.BROKER_RUNTIME_ROLE, runtime.username);
    assert.equal(
      Number(migrateEnv.BROKER_AUDIT_SHARDS),
      loadConfig(shippedApiEnv()).BROKER_AUDIT_SHARDS,
      'the count the owner sets is the one the runtime checks',
    );
    // Nothing of the runtime's secrets in the owner's file, and nothing else it would not read.
    assert.deepEqual(Object.keys(migrateEnv).sort(), ['BROKER_AUDIT_SHARDS', 'BROKER_MIGRATION_DATABASE_URL', 'BROKER_RUNTIME_ROLE']);
  });
});
