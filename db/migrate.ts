import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { withTransaction } from './pool';

const MIGRATIONS_DIR = join(__dirname, 'migrations');
// Any constant: serialises concurrent migrators (api and worker starting together).
const MIGRATION_LOCK = 727_001;

/**
 * Applies the pending db/migrations/NNN_*.sql in order, forward only, all in one transaction under
 * an advisory lock (a failing migration applies none of them), and records them in
 * schema_migrations. Returns the versions applied by this call.
 */
export async function migrate(pool: pg.Pool, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort();
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
