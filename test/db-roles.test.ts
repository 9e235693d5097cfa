/**
 * Migrations under an owner role (db/roles.ts, db/migrate-main.ts; docs/deploy.md "Migrations under
 * an owner role"): `npm run db:migrate` run as a schema owner grants the runtime login only what
 * db/*.ts does, so as that login the broker's writes work and every change to an audit table — UPDATE,
 * DELETE, TRUNCATE, DISABLE or DROP TRIGGER, replacing the trigger function — is refused by Postgres;
 * with BROKER_MIGRATIONS=external the API and the worker run no DDL and refuse to start on a schema
 * the owner has not migrated; a deployment that migrated under its runtime login moves with
 * --take-ownership; and a real flow (logins, grant, mints, refresh, revocation, purge, signed head,
 * audit:verify) runs end to end under the runtime login.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createOidcKeysetIfMissing } from '../adapters/oidc-keys';
import { writeKeyFile } from '../adapters/key-files';
import { appendAudit, appendAuditDurably } from '../db/audit';
import { recordAuditHead } from '../db/audit-heads';
import { verifyAuditChain } from '../db/audit-query';
import { migrate, prepareSchema, type SchemaSettings } from '../db/migrate';
import { runMigrateCommand } from '../db/migrate-main';
import { createPool, withTransaction } from '../db/pool';
import { AUDIT_TABLES, postureProblems, rolePosture, RUNTIME_SEQUENCES, RUNTIME_TABLE_WRITES } from '../db/roles';
import { insertSession } from '../db/sessions';
import { generateSigningKeyJwk } from '../lib/signing-key';
import { findFreePort } from '../scripts/temporal-dev-server';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import type { AnchorResult } from '../workflows/audit-anchor.definitions';
import { auditVerify } from './audit-tamper';
import { bindAgent } from './grant-client';
import { ADMIN_DATABASE_URL, createTestDatabase, startStack, testTemporalAddress, type TestStack } from './harness';
import { emailLogin, mintOidc, walletLogin } from './mint-client';
import { newWallet } from './wallet-client';

const ROOT = join(__dirname, '..');
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;
const suffix = randomBytes(4).toString('hex');
const OWNER = `akb_owner_${suffix}`;
const RUNTIME = `akb_runtime_${suffix}`;

/** Postgres's insufficient_privilege: what "permission denied" and "must be owner" both carry. */
const DENIED = '42501';

const cleanups: (() => Promise<unknown>)[] = [];
let stack: TestStack | undefined;
let keyDir: string;
/** A database the owner migrated with `db:migrate --runtime-role`: the production layout. */
let main: { url: string; owner: pg.Pool; runtime: pg.Pool };

async function admin(...statements: string[]): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await c.connect();
  try {
    for (const s of statements) await c.query(s);
  } finally {
    await c.end();
  }
}

/** The database URL with another login (the test server trusts every local login). */
function as(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = '';
  return u.toString();
}

function pool(url: string, role: string): pg.Pool {
  const p = createPool(as(url, role), 4);
  cleanups.push(() => p.end());
  return p;
}

/** A fresh database owned by `owner`, as a production database is created for its schema owner. */
async function freshDatabase(owner = OWNER): Promise<string> {
  const db = await createTestDatabase();
  cleanups.push(db.drop);
  await admin(`ALTER DATABASE ${new URL(db.url).pathname.slice(1)} OWNER TO ${owner}`);
  return db.url;
}

/** `npm run db:migrate` in this process, as the owner (BROKER_MIGRATION_DATABASE_URL); its lines joined. */
async function migrateCommand(url: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await runMigrateCommand(
    args,
    { BROKER_MIGRATION_DATABASE_URL: as(url, OWNER), ...env },
    { log: (l) => lines.push(l), warn: (l) => lines.push(l) },
  );
  return { code, out: lines.join('\n') };
}

const external = (over: Partial<SchemaSettings> = {}): SchemaSettings => ({
  BROKER_MIGRATIONS: 'external',
  BROKER_MIGRATION_DATABASE_URL: undefined,
  BROKER_AUDIT_SHARDS: 16,
  isProduction: true,
  ...over,
});

/** The statement's Postgres error code (it must fail). */
async function failureCode(q: pg.Pool | pg.PoolClient, sql: string): Promise<string> {
  try {
    await q.query(sql);
  } catch (e) {
    return String((e as { code?: unknown }).code);
  }
  assert.fail(`succeeded: ${sql}`);
}

/** Runs `sql` as the pool's login in a transaction that is rolled back; resolves when it succeeded. */
async function succeedsRolledBack(q: pg.Pool, sql: string): Promise<void> {
  const c = await q.connect();
  try {
    await c.query('BEGIN');
    await c.query(sql);
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
}

const countOf = async (q: pg.Pool, table: string): Promise<number> => Number((await q.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]?.n);

before(async () => {
  await admin(`CREATE ROLE ${OWNER} LOGIN CREATEDB`, `CREATE ROLE ${RUNTIME} LOGIN`);
  keyDir = await mkdtemp(join(tmpdir(), 'akb-db-roles-'));
  await writeKeyFile(join(keyDir, 'session-key.jwk.json'), await generateSigningKeyJwk());
  await writeKeyFile(join(keyDir, 'audit-key.jwk.json'), await generateSigningKeyJwk());
  await createOidcKeysetIfMissing(join(keyDir, 'oidc-keys.json'));
  const url = await freshDatabase();
  const migrated = await migrateCommand(url, ['--runtime-role', RUNTIME]);
  assert.equal(migrated.code, 0, migrated.out);
  main = { url, owner: pool(url, OWNER), runtime: pool(url, RUNTIME) };
});

after(async () => {
  await stack?.stop();
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  await rm(keyDir, { recursive: true, force: true });
  // Last: a role is dropped once no database it owns or holds privileges in is left.
  await admin(`DROP ROLE IF EXISTS ${RUNTIME}`, `DROP ROLE IF EXISTS ${OWNER}`);
});

void describe("the runtime login's grants", () => {
  void test('RUNTIME_TABLE_WRITES lists exactly the migrated tables, and grants exactly the writes db/*.ts makes', async () => {
    const tables = await main.owner.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1`,
    );
    assert.deepEqual(
      tables.rows.map((r) => r.name),
      Object.keys(RUNTIME_TABLE_WRITES).sort(),
    );
    // What the runtime code writes, read from its statements (db/migrate*.ts and db/roles.ts are the owner's).
    const needed = new Map<string, Set<string>>(Object.keys(RUNTIME_TABLE_WRITES).map((t) => [t, new Set<string>()]));
    const need = (table: string | undefined, write: string) => {
      assert.ok(table && needed.has(table), `db/*.ts writes ${String(table)}, a table RUNTIME_TABLE_WRITES does not list`);
      needed.get(table)?.add(write);
    };
    const sequences = new Set<string>();
    const dbDir = join(ROOT, 'db');
    for (const file of (await readdir(dbDir)).filter((f) => f.endsWith('.ts') && !/^(migrate|migrate-main|roles)\.ts$/.test(f))) {
      const src = await readFile(join(dbDir, file), 'utf8');
      for (const m of src.matchAll(/\bINSERT INTO (\w+)/g)) need(m[1], 'INSERT');
      for (const m of src.matchAll(/\bUPDATE (\w+)\s+SET\b/g)) need(m[1], 'UPDATE');
      for (const m of src.matchAll(/\bDELETE FROM (\w+)/g)) need(m[1], 'DELETE');
      // Postgres asks UPDATE privilege of an upsert's DO UPDATE and of a row lock.
      for (const m of src.matchAll(/\bINSERT INTO (\w+)(?:(?!INSERT INTO)[^;`])*?\bDO UPDATE\b/g)) need(m[1], 'UPDATE');
      for (const m of src.matchAll(/\bFROM (\w+)(?:(?!\bFROM\b)[^;`])*?\bFOR (?:NO KEY )?UPDATE\b/g)) need(m[1], 'UPDATE');
      for (const m of src.matchAll(/nextval\('(\w+)'\)/g)) sequences.add(m[1] as string);
      assert.doesNotMatch(src, /\bTRUNCATE\b|\bLOCK TABLE\b|\bFOR (KEY )?SHARE\b/, `${file}: a statement needing privileges the grants do not give`);
    }
    // ensureAuditShards' UPDATE is db:migrate's, as the owner: with BROKER_MIGRATIONS=external the runtime only checks the count.
    needed.get('audit_settings')?.delete('UPDATE');
    for (const [table, writes] of needed)
      assert.deepEqual([...(RUNTIME_TABLE_WRITES[table] ?? [])].sort(), [...writes].sort(), `the writes granted on ${table}`);
    for (const t of AUDIT_TABLES)
      assert.ok(
        (RUNTIME_TABLE_WRITES[t] ?? []).every((w) => w === 'INSERT'),
        `${t}: appends only`,
      );
    // Sequences: the ones the code draws from by name, and the serial columns' defaults.
    const serial = await main.owner.query<{ seq: string }>(
      `SELECT substring(column_default from 'nextval\\(''(\\w+)''') AS seq FROM information_schema.columns
        WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'`,
    );
    for (const r of serial.rows) sequences.add(r.seq);
    assert.deepEqual([...sequences].sort(), [...RUNTIME_SEQUENCES].sort());
  });

  void test('as the runtime login the audit appends, a signed head and the other writes go through, and the start-up check passes', async () => {
    const before = await countOf(main.owner, 'audit_log');
    await withTransaction(main.runtime, (c) => appendAudit(c, { event: 'test.roles', outcome: 'ok', omniAccount: '0xroles', idemKey: `roles-${suffix}` }));
    await appendAuditDurably(main.runtime, [{ event: 'test.roles.durable', outcome: 'ok', omniAccount: '0xother' }], 2000);
    // Idempotent: the second append with the key finds the row and appends nothing.
    const again = await withTransaction(main.runtime, (c) =>
      appendAudit(c, { event: 'test.roles', outcome: 'ok', omniAccount: '0xroles', idemKey: `roles-${suffix}` }),
    );
    assert.equal(again.existing, true);
    assert.equal(await countOf(main.owner, 'audit_log'), before + 2);
    await recordAuditHead(main.runtime, {
      seq: '1',
      hash: 'a'.repeat(64),
      signed_at: new Date(),
      kid: 'k',
      jws: 'x.y.z',
      version: 2,
      root: randomBytes(32).toString('hex'),
      shard_heads: [{ shard: 0, seq: '1', hash: 'a'.repeat(64) }],
    });
    assert.equal(await countOf(main.owner, 'audit_head_shards'), 1, 'the head indexed its shard position');
    assert.equal(
      await insertSession(main.runtime, { jti: `jti-${suffix}`, omniAccount: '0xroles', method: 'email', expiresAt: new Date(Date.now() + 60_000) }),
      true,
    );
    assert.equal((await verifyAuditChain(main.runtime)).ok, true, 'the appended rows chain');
    assert.deepEqual(await prepareSchema(main.runtime, external()), { applied: [], warnings: [] });
    assert.deepEqual(postureProblems(await rolePosture(main.runtime)), []);
  });

  void test('as the runtime login every change to an audit table is refused with permission denied, and so is getting around the triggers', async () => {
    const counts = Object.fromEntries(await Promise.all(AUDIT_TABLES.map(async (t) => [t, await countOf(main.owner, t)] as const)));
    assert.ok((counts.audit_log ?? 0) > 0 && (counts.audit_heads ?? 0) > 0, 'the tables have rows to change');
    const refused: string[] = [];
    for (const t of AUDIT_TABLES) {
      refused.push(`UPDATE ${t} SET ${t === 'audit_settings' ? 'shards = 4' : t === 'audit_head_shards' ? 'seq = seq' : 'hash = hash'}`);
      refused.push(`DELETE FROM ${t}`, `TRUNCATE ${t}`);
    }
    refused.push(
      'ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only',
      'ALTER TABLE audit_log DISABLE TRIGGER ALL',
      'ALTER TABLE audit_heads DISABLE TRIGGER audit_heads_append_only',
      'ALTER TABLE audit_head_shards DISABLE TRIGGER audit_head_shards_no_truncate',
      'ALTER TABLE audit_settings DISABLE TRIGGER audit_settings_guard',
      'DROP TRIGGER audit_log_append_only ON audit_log',
      'DROP TRIGGER audit_log_no_truncate ON audit_log',
      'DROP TABLE audit_log',
      `ALTER TABLE audit_log OWNER TO ${RUNTIME}`,
      // The trigger function, replaced by one that lets every change through.
      'CREATE OR REPLACE FUNCTION audit_log_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$',
      // A table of its own, or a seq moved back so a later append reuses one.
      'CREATE TABLE roles_probe (a int)',
      "SELECT setval('audit_log_global_seq', 1)",
      `CREATE SCHEMA ${RUNTIME}`,
    );
    for (const sql of refused) assert.equal(await failureCode(main.runtime, sql), DENIED, sql);
    for (const t of AUDIT_TABLES) assert.equal(await countOf(main.owner, t), counts[t], `${t} unchanged`);
    // The probe names real triggers: their owner can switch them off (here rolled back).
    await succeedsRolledBack(main.owner, 'ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
    await succeedsRolledBack(main.owner, 'DROP TRIGGER audit_head_shards_no_truncate ON audit_head_shards');
    // And the runtime's other tables stay writable as db/*.ts writes them, nothing wider.
    assert.equal(await failureCode(main.runtime, 'TRUNCATE sessions'), DENIED);
    assert.equal(await failureCode(main.runtime, 'DELETE FROM wallets'), DENIED);
  });

  void test('db:migrate refuses to grant a login that could act as the owner, or the owner itself; --check names it', async () => {
    await admin(`GRANT ${OWNER} TO ${RUNTIME}`);
    try {
      const refused = await migrateCommand(main.url, ['--runtime-role', RUNTIME]);
      assert.equal(refused.code, 1, refused.out);
      assert.match(refused.out, new RegExp(`refusing to grant ${RUNTIME}: ${RUNTIME} owns .*the audit tables .*audit_log.* among them`));
      const checked = await migrateCommand(main.url, ['--check', '--runtime-role', RUNTIME]);
      assert.equal(checked.code, 1, checked.out);
      assert.match(checked.out, /^schema up to date/m);
      assert.match(checked.out, new RegExp(`^runtime role: ${RUNTIME} owns`, 'm'));
      assert.ok(
        (await prepareSchema(main.runtime, external())).warnings.some((w) => w.includes(`${RUNTIME} owns`)),
        'the start-up warns',
      );
    } finally {
      await admin(`REVOKE ${OWNER} FROM ${RUNTIME}`);
    }
    const self = await migrateCommand(main.url, ['--runtime-role', OWNER]);
    assert.equal(self.code, 1);
    assert.match(self.out, /is the login migrating: connect as the schema owner/);
    const checked = await migrateCommand(main.url, ['--check', '--runtime-role', RUNTIME]);
    assert.equal(checked.code, 0, checked.out);
    assert.match(checked.out, new RegExp(`runtime role ${RUNTIME}: owns nothing here and is no superuser`));
    const usage = await migrateCommand(main.url, ['--runtime-role']);
    assert.equal(usage.code, 2);
  });
});

void describe('BROKER_MIGRATIONS=external: the start-up check', () => {
  void test('an unmigrated database: every migration is named, with the command to run; nothing is created', async () => {
    const url = await freshDatabase();
    const runtime = pool(url, RUNTIME);
    const versions = await migrationVersions();
    await assert.rejects(prepareSchema(runtime, external()), (e: Error) => {
      assert.equal(e.name, 'StartupError');
      assert.ok(e.message.includes(`lacks ${versions.length} migrations (${versions.join(', ')}): run \`npm run db:migrate\` as the schema owner`), e.message);
      return true;
    });
    const made = await runtime.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
    assert.equal(made.rows[0]?.t, null, 'the check created nothing');
  });

  void test('a pending migration refuses the start; after db:migrate the same check passes', async () => {
    const url = await freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'akb-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const all = join(ROOT, 'db', 'migrations');
    // As a release that ended at 020 left it.
    for (const f of await readdir(all)) if (f < '021') await copyFile(join(all, f), join(dir, f));
    const later = (await migrationVersions()).filter((v) => v >= '021');
    const owner = pool(url, OWNER);
    await migrate(owner, dir);
    const runtime = pool(url, RUNTIME);
    // Migrated by the owner but never granted: the check says which login to grant.
    await assert.rejects(prepareSchema(runtime, external()), new RegExp(`login ${RUNTIME} may not read the schema .*BROKER_RUNTIME_ROLE=${RUNTIME}`));
    // As an earlier release's grants left it: the pending ones are named.
    await owner.query(`GRANT SELECT ON schema_migrations, audit_settings, audit_log TO ${RUNTIME}`);
    await assert.rejects(prepareSchema(runtime, external()), (e: Error) => {
      assert.ok(e.message.includes(`lacks ${later.length} migrations (${later.join(', ')}): run \`npm run db:migrate\``), e.message);
      return true;
    });
    const migrated = await migrateCommand(url, ['--runtime-role', RUNTIME]);
    assert.equal(migrated.code, 0, migrated.out);
    assert.match(migrated.out, new RegExp(`applied ${later.length} migrations`));
    assert.deepEqual(await prepareSchema(runtime, external()), { applied: [], warnings: [] });
  });

  void test('a shard count only the owner may set, and the owner URL in the runtime environment, are refused', async () => {
    const url = await freshDatabase();
    assert.equal((await migrateCommand(url, ['--runtime-role', RUNTIME])).code, 0);
    const runtime = pool(url, RUNTIME);
    await assert.rejects(prepareSchema(runtime, external({ BROKER_AUDIT_SHARDS: 8 })), (e: Error) => {
      assert.equal(e.name, 'ConfigError');
      assert.match(
        e.message,
        /BROKER_AUDIT_SHARDS is 8 but the database has 16 audit shards, .*only the schema owner sets them: run `npm run db:migrate` with BROKER_AUDIT_SHARDS=8/,
      );
      return true;
    });
    const set = await migrateCommand(url, [], { BROKER_AUDIT_SHARDS: '8' });
    assert.equal(set.code, 0, set.out);
    assert.match(set.out, /audit shards: 8 \(set\)/);
    assert.deepEqual(await prepareSchema(runtime, external({ BROKER_AUDIT_SHARDS: 8 })), { applied: [], warnings: [] });
    // A log with sharded rows (main's) keeps its count whoever asks.
    await assert.rejects(prepareSchema(main.runtime, external({ BROKER_AUDIT_SHARDS: 8 })), /already split into 16 chains; the count cannot change/);
    await assert.rejects(
      prepareSchema(main.runtime, external({ BROKER_MIGRATION_DATABASE_URL: as(main.url, OWNER) })),
      /BROKER_MIGRATION_DATABASE_URL is set for the API or worker/,
    );
    await assert.rejects(
      prepareSchema(main.runtime, { ...external(), BROKER_MIGRATIONS: 'auto', BROKER_MIGRATION_DATABASE_URL: 'postgres://o@h/d' }),
      /remove it from their environment/,
    );
  });

  void test('api/main.ts and worker/main.ts refuse to start on a pending migration, in one line naming the command', async () => {
    const url = await freshDatabase();
    const env = { ...(await productionEnv()), DATABASE_URL: as(url, RUNTIME), BROKER_MIGRATIONS: 'external' };
    const [api, worker] = await Promise.all([runProcess('api/main.ts', env), runProcess('worker/main.ts', env)]);
    for (const [name, exit] of [
      ['api', api],
      ['worker', worker],
    ] as const) {
      assert.equal(exit.code, 1, exit.out);
      assert.match(
        exit.out,
        new RegExp(
          `^agentkeys-broker ${name} could not start: BROKER_MIGRATIONS=external and the database lacks \\d+ migrations \\(001_foundation, .*\\): run \`npm run db:migrate\``,
          'm',
        ),
      );
    }
  });

  void test('the API process starts as the granted runtime login, and /readyz names what the start-up found', async () => {
    const opsToken = randomBytes(24).toString('hex');
    const env = { ...(await productionEnv()), DATABASE_URL: as(main.url, RUNTIME), BROKER_MIGRATIONS: 'external', BROKER_OPS_TOKEN: opsToken };
    const parts = await readinessOfApi(env, opsToken);
    assert.equal(parts.db_roles?.ok, true);
    assert.match(parts.db_roles?.detail ?? '', /owns nothing of the schema and is no superuser \(BROKER_MIGRATIONS=external\)/);
  });
});

void describe('a deployment that migrated under its runtime login', () => {
  void test('warns in production; db:migrate --take-ownership moves the schema to the owner, and the triggers then bind the runtime login', async () => {
    const url = await freshDatabase(RUNTIME);
    const runtime = pool(url, RUNTIME);
    // As the broker ran before: its login migrates itself and appends.
    const auto = await prepareSchema(runtime, { ...external(), BROKER_MIGRATIONS: 'auto' });
    assert.ok(auto.applied.length > 0);
    assert.ok(
      auto.warnings.some((w) => w.includes(`${RUNTIME} owns`) && /audit_log/.test(w) && w.includes('docs/deploy.md')),
      auto.warnings.join('\n'),
    );
    await withTransaction(runtime, (c) => appendAudit(c, { event: 'test.before_move', outcome: 'ok', omniAccount: '0xmove' }));
    // The hole: the owner of audit_log switches its trigger off.
    await succeedsRolledBack(runtime, 'ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
    // The production processes say so at start-up (the worker here, stopped by a closed Temporal port).
    const worker = await runProcess('worker/main.ts', {
      ...(await productionEnv()),
      DATABASE_URL: as(url, RUNTIME),
      TEMPORAL_ADDRESS: `127.0.0.1:${await findFreePort()}`,
    });
    assert.match(worker.out, new RegExp(`^agentkeys-broker worker: warning: the runtime login: ${RUNTIME} owns .*audit_log`, 'm'));

    const refused = await migrateCommand(url, ['--runtime-role', RUNTIME]);
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.out, /--take-ownership/);
    // The owner takes what the runtime login owns: it must be able to act as it (a member of it).
    await admin(`GRANT ${RUNTIME} TO ${OWNER}`);
    try {
      const moved = await migrateCommand(url, ['--runtime-role', RUNTIME, '--take-ownership']);
      assert.equal(moved.code, 0, moved.out);
      assert.match(moved.out, new RegExp(`took ownership from ${RUNTIME}: database .*table audit_log.*function audit_log_forbid_change\\(\\)`));
    } finally {
      await admin(`REVOKE ${RUNTIME} FROM ${OWNER}`);
    }
    assert.equal(await failureCode(runtime, 'ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only'), DENIED);
    assert.equal(await failureCode(runtime, 'DELETE FROM audit_log'), DENIED);
    assert.deepEqual(await prepareSchema(runtime, external()), { applied: [], warnings: [] });
    await withTransaction(runtime, (c) => appendAudit(c, { event: 'test.after_move', outcome: 'ok', omniAccount: '0xmove' }));
    const verdict = await verifyAuditChain(runtime);
    assert.equal(verdict.ok, true);
  });
});

void describe('a real flow under the runtime login, the schema migrated by db:migrate as the owner', () => {
  before(async () => {
    stack = await startStack({
      env: { BROKER_MIGRATIONS: 'external' },
      prepareDatabase: async (url) => {
        await admin(`ALTER DATABASE ${new URL(url).pathname.slice(1)} OWNER TO ${OWNER}`);
        const migrated = await migrateCommand(url, ['--runtime-role', RUNTIME]);
        assert.equal(migrated.code, 0, migrated.out);
        return as(url, RUNTIME);
      },
    });
  });

  void test('logins, a grant, mints, refresh and logout, a revocation, the purge and a signed head all work; audit:verify passes; the log stays append-only', async () => {
    const s = stack as TestStack;
    assert.equal((await s.db.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u, RUNTIME, 'the stack runs as the runtime login');
    const alice = await walletLogin(s);
    const bob = await emailLogin(s);
    await mintOidc(s, alice.token);
    await mintOidc(s, bob.token);
    const agent = await walletLogin(s, newWallet());
    const grantId = await bindAgent(s, alice.token, agent.wallet);
    await mintOidc(s, agent.token);

    const claimed = await s.request('POST', '/v1/session/refresh_token', { token: bob.token });
    assert.equal(claimed.status, 201, claimed.text);
    const refreshed = await s.request('POST', '/v1/session/refresh', { body: { refresh_token: (claimed.body as { refresh_token: string }).refresh_token } });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal((await s.request('POST', '/v1/session/logout', { token: (refreshed.body as { token: string }).token })).status, 204);

    const revoked = await s.request('POST', `/v1/agents/${agent.wallet.lower}/revoke`, { token: alice.token });
    assert.equal(revoked.status, 200, revoked.text);
    assert.deepEqual((revoked.body as { revoked_grants: string[] }).revoked_grants, [grantId]);
    assert.equal((await s.request('POST', '/v1/mint-oidc-jwt', { token: agent.token })).status, 403, 'the revoked agent mints no more');

    const purged = await s.temporal.workflow.execute<typeof purgeExpiredWorkflow>('purgeExpiredWorkflow', {
      workflowId: `maintenance/roles-${suffix}`,
      taskQueue: s.config.BROKER_TASK_QUEUE,
    });
    assert.equal(typeof purged.sessions, 'number');
    const head = await s.temporal.workflow.execute<() => Promise<AnchorResult>>('auditAnchorWorkflow', {
      workflowId: `audit/anchor-roles-${suffix}`,
      taskQueue: s.config.BROKER_TASK_QUEUE,
    });
    assert.ok(head, 'a head was signed over the log');
    assert.ok((await countOf(s.db, 'audit_heads')) >= 1);

    const events = (await s.db.query<{ event: string }>('SELECT DISTINCT event FROM audit_log')).rows.map((r) => r.event);
    for (const e of ['login.wallet', 'login.email', 'mint.oidc', 'grant.create', 'session.refresh', 'agent.revoke'])
      assert.ok(events.includes(e), `${e} in ${events.join(', ')}`);
    const verify = await auditVerify(s.childEnv(), []);
    assert.equal(verify.code, 0, verify.out);
    assert.equal(await failureCode(s.db, 'ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only'), DENIED);
    assert.equal(await failureCode(s.db, 'UPDATE audit_log SET hash = hash'), DENIED);
  });
});

/** The versions of db/migrations, in order. */
async function migrationVersions(): Promise<string[]> {
  return (await readdir(join(ROOT, 'db', 'migrations')))
    .filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((f) => f.slice(0, -4));
}

/** What the production processes need besides the database: key files, secrets, the test Temporal server. */
async function productionEnv(): Promise<Record<string, string>> {
  return {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(await findFreePort()),
    BROKER_DATA_DIR: join(keyDir, 'data'),
    TEMPORAL_ADDRESS: await testTemporalAddress(),
    BROKER_SECRET: 'ab'.repeat(32),
    BROKER_PAYLOAD_KEY: 'cd'.repeat(32),
    BROKER_SESSION_KEY_PATH: join(keyDir, 'session-key.jwk.json'),
    BROKER_AUDIT_KEY_PATH: join(keyDir, 'audit-key.jwk.json'),
    BROKER_OIDC_KEY_PATH: join(keyDir, 'oidc-keys.json'),
    BROKER_DATA_ROLE_ARN: 'arn:aws:iam::123456789012:role/agentkeys-data',
    BROKER_SKIP_STARTUP_CHECK: '1',
    BROKER_TASK_QUEUE: `roles-${suffix}`,
    AWS_REGION: 'us-east-1',
    ...(process.env.BROKER_WORKFLOW_BUNDLE ? { BROKER_WORKFLOW_BUNDLE: process.env.BROKER_WORKFLOW_BUNDLE } : {}),
  };
}

/** Starts `entry` and waits for it to exit (60 s at most); stdout and stderr together. */
function runProcess(entry: 'api/main.ts' | 'worker/main.ts', env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, entry)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`${entry} did not exit within 60 s\n${out}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, out });
    });
  });
}

/** Starts the API until it listens, reads /readyz's parts with the ops token, then stops it. */
function readinessOfApi(env: Record<string, string>, opsToken: string): Promise<Record<string, { ok: boolean; detail?: string }>> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'api/main.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let asked = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`the API did not listen within 60 s\n${out}`));
    }, 60_000);
    const read = (b: Buffer) => {
      out += b.toString();
      if (asked || !out.includes('agentkeys-broker API listening on')) return;
      asked = true;
      fetch(`http://127.0.0.1:${env.PORT}/readyz`, { headers: { authorization: `Bearer ${opsToken}` } })
        .then(async (res) => ((await res.json()) as { parts: Record<string, { ok: boolean; detail?: string }> }).parts)
        .then(done, fail)
        .finally(() => {
          clearTimeout(timer);
          child.kill('SIGTERM');
        });
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => {
      if (!asked) {
        clearTimeout(timer);
        fail(new Error(`the API exited (${String(code)}) before listening\n${out}`));
      }
    });
  });
}
