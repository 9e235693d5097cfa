import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { ConfigError, type Config } from '../lib/config';
import { StartupError } from '../lib/startup-error';
import { checkAuditShards, ensureAuditShards } from './audit';
import { withTransaction, type Queryable } from './pool';
import { postureProblems, rolePosture } from './roles';

const MIGRATIONS_DIR = join(__dirname, 'migrations');
// Any constant: serialises concurrent migrators (api and worker starting together).
const MIGRATION_LOCK = 727_001;

async function migrationFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort();
}

/**
 * Applies the pending db/migrations/NNN_*.sql in order, forward only, all in one transaction under
 * an advisory lock (a failing migration applies none of them), and records them in
 * schema_migrations. Returns the versions applied by this call.
 */
export async function migrate(pool: pg.Pool, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = await migrationFiles(dir);
  const applied: string[] = [];
  await withTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await c.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    for (const file of files) {
      const version = file.slice(0, -4);
      if (done.has(version)) continue;
      const sql = await readFile(join(dir, file), 'utf8');
      try {
        await c.query(sql);
      } catch (e) {
        throw new Error(`migration ${file} failed: ${(e as Error).message}`);
      }
      await c.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version]);
      applied.push(version);
    }
  });
  return applied;
}

/** The versions of db/migrations (or `dir`) not recorded in schema_migrations, in order; all of them on an empty database. Reads only. */
export async function pendingMigrations(q: Queryable, dir = MIGRATIONS_DIR): Promise<string[]> {
  const versions = (await migrationFiles(dir)).map((f) => f.slice(0, -4));
  const table = await q.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (!table.rows[0]?.t) return versions;
  const done = new Set((await q.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
  return versions.filter((v) => !done.has(v));
}

/** Where the operator reads about the owner role and the command (named by every refusal below). */
const OWNER_DOC = 'docs/deploy.md, "Migrations under an owner role"';

export type SchemaSettings = Pick<Config, 'BROKER_MIGRATIONS' | 'BROKER_MIGRATION_DATABASE_URL' | 'BROKER_AUDIT_SHARDS' | 'isProduction'>;

/**
 * The API's and the worker's start-up step on the database. BROKER_MIGRATIONS=auto: apply the
 * pending migrations and set the audit shard count, as DATABASE_URL's login (which then owns what
 * it creates). external: no DDL and no write at all; every migration must be recorded and the
 * shard count match, else a StartupError that names the command to run. The owner's URL in the
 * runtime's environment is refused in either mode: the point of the split is that these processes
 * never hold it. In production it also returns, as warnings, each way the login could get around
 * the audit triggers (db/roles.ts): warned, not refused, since deployments that migrated under
 * their runtime login keep running until they move.
 */
export async function prepareSchema(pool: pg.Pool, settings: SchemaSettings, dir = MIGRATIONS_DIR): Promise<{ applied: string[]; warnings: string[] }> {
  if (settings.BROKER_MIGRATION_DATABASE_URL) {
    throw new ConfigError(
      `BROKER_MIGRATION_DATABASE_URL is set for the API or worker: it is the schema owner's credential, for \`npm run db:migrate\` only; remove it from their environment (${OWNER_DOC})`,
    );
  }
  let applied: string[] = [];
  if (settings.BROKER_MIGRATIONS === 'auto') {
    applied = await migrate(pool, dir);
    await ensureAuditShards(pool, settings.BROKER_AUDIT_SHARDS);
  } else {
    await checkMigrated(pool, settings.BROKER_AUDIT_SHARDS, dir);
  }
  const warnings = settings.isProduction ? postureProblems(await rolePosture(pool)).map((p) => `the runtime login: ${p} (${OWNER_DOC})`) : [];
  return { applied, warnings };
}

/** BROKER_MIGRATIONS=external's check: reads schema_migrations and audit_settings, writes nothing. */
async function checkMigrated(q: Queryable, shards: number, dir: string): Promise<void> {
  try {
    const pending = await pendingMigrations(q, dir);
    if (pending.length > 0) {
      throw new StartupError(
        `BROKER_MIGRATIONS=external and the database lacks ${pending.length} migration${pending.length === 1 ? '' : 's'} (${pending.join(', ')}): ` +
          `run \`npm run db:migrate\` as the schema owner first (systemd: \`systemctl start agentkeys-migrate\`; ${OWNER_DOC})`,
      );
    }
    await checkAuditShards(q, shards);
  } catch (e) {
    // 42501 insufficient_privilege: migrated, but the owner never granted this login its reads.
    if ((e as { code?: unknown }).code !== '42501') throw e;
    const user = (await q.query<{ user: string }>('SELECT current_user AS user')).rows[0]?.user ?? '(unknown)';
    throw new StartupError(
      `BROKER_MIGRATIONS=external and the login ${user} may not read the schema (${(e as Error).message}): ` +
        `run \`npm run db:migrate\` as the schema owner with BROKER_RUNTIME_ROLE=${user} to grant it (${OWNER_DOC})`,
      { cause: e },
    );
  }
}
