import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded';

void test('embedded Postgres persists a transaction across restarts', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ak-pglite-'));
  const dataDir = join(dir, 'pglite');
  let pg: EmbeddedPostgres | undefined;
  try {
    let started = Date.now();
    pg = await startEmbeddedPostgres({ dataDir });
    t.diagnostic(`first start (initdb) in ${Date.now() - started} ms`);
    assert.match(pg.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres\?sslmode=disable$/);
    assert.ok((await stat(join(dataDir, 'PG_VERSION'))).isFile(), 'data directory holds a Postgres cluster');

    let pool = new Pool({ connectionString: pg.url, max: 1 });
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [42]);
      await client.query(`
        CREATE TABLE accounts (
          id bigserial PRIMARY KEY,
          email text NOT NULL UNIQUE,
          profile jsonb NOT NULL DEFAULT '{}'::jsonb,
          logins integer NOT NULL DEFAULT 0
        )`);
      const ins = await client.query<{ id: string }>('INSERT INTO accounts (email, profile) VALUES ($1, $2) RETURNING id', [
        'a@example.com',
        JSON.stringify({ plan: 'free', tags: ['x'] }),
      ]);
      assert.equal(ins.rows[0]?.id, '1', 'bigserial starts at 1 (pg returns int8 as string)');
      const upsert = await client.query<{ id: string; logins: number }>(
        `INSERT INTO accounts (email, profile) VALUES ($1, $2)
         ON CONFLICT (email) DO UPDATE SET logins = accounts.logins + 1, profile = accounts.profile || EXCLUDED.profile
         RETURNING id, logins`,
        ['a@example.com', JSON.stringify({ plan: 'pro' })],
      );
      assert.deepEqual(upsert.rows[0], { id: '1', logins: 1 }, 'ON CONFLICT updated the existing row');
      const locked = await client.query<{ profile: { plan: string; tags: string[] } }>('SELECT profile FROM accounts WHERE email = $1 FOR UPDATE', [
        'a@example.com',
      ]);
      assert.deepEqual(locked.rows[0]?.profile, { plan: 'pro', tags: ['x'] }, 'jsonb merged and parsed');
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }

    // A rolled-back transaction leaves nothing behind.
    await pool.query('BEGIN');
    await pool.query("INSERT INTO accounts (email) VALUES ('rolled-back@example.com')");
    await pool.query('ROLLBACK');
    await pool.end();

    // Another process on the same data directory is refused while this one runs.
    await assert.rejects(startEmbeddedPostgres({ dataDir }), /already open in this process/);

    await pg.stop();
    await pg.stop(); // idempotent
    const oldUrl = pg.url;
    pg = undefined;
    const probe = new Pool({ connectionString: oldUrl, max: 1, connectionTimeoutMillis: 2_000 });
    await assert.rejects(probe.query('SELECT 1'), 'server no longer listens after stop()');
    await probe.end();

    started = Date.now();
    pg = await startEmbeddedPostgres({ dataDir });
    t.diagnostic(`second start (existing data) in ${Date.now() - started} ms`);
    pool = new Pool({ connectionString: pg.url, max: 1 });
    try {
      const { rows } = await pool.query<{ id: string; email: string; logins: number; plan: string }>(
        "SELECT id, email, logins, profile->>'plan' AS plan FROM accounts ORDER BY id",
      );
      assert.deepEqual(rows, [{ id: '1', email: 'a@example.com', logins: 1, plan: 'pro' }]);
      const next = await pool.query<{ id: string }>("INSERT INTO accounts (email) VALUES ('b@example.com') RETURNING id");
      // 2 went to the ON CONFLICT insert, 3 to the rolled-back one: the sequence state survived the restart.
      assert.equal(next.rows[0]?.id, '4', 'bigserial continues after a restart');
    } finally {
      await pool.end();
    }

    // The app typically opens its pool right after another one (e.g. migrations) ended: must not be refused.
    const again = new Pool({ connectionString: pg.url, max: 1 });
    try {
      const { rows } = await again.query<{ n: number }>('SELECT count(*)::int AS n FROM accounts');
      assert.equal(rows[0]?.n, 2);
    } finally {
      await again.end();
    }
  } finally {
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
