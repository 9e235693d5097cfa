/**
 * The refusal tests' "nothing changed" (test/adversarial-probes.ts) is only as wide as ALL_TABLES:
 * a table a migration adds and the list misses is a table a refusal could write unnoticed. These
 * tests hold the list to the tables a migrated database really has, and check that the snapshot sees
 * a row added to each of the later tables while it ignores the one column a flow writes on its own.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { migrate } from '../db/migrate';
import { createPool, type Db } from '../db/pool';
import { ALL_TABLES, changedTables, dbSnapshot, ROW_FORMS } from './adversarial-probes';
import { createTestDatabase } from './harness';

/** The migrator's own record of the versions applied (db/migrate.ts): not part of the broker's state. */
const MIGRATIONS_TABLE = 'schema_migrations';

let db: Db;
let drop: () => Promise<void>;
before(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  db = createPool(database.url, 2);
  await migrate(db);
});
after(async () => {
  await db?.end();
  await drop?.();
});

void describe('the tables the refusal tests compare', () => {
  void test('ALL_TABLES names every table of the migrated schema, and nothing else', async () => {
    const r = await db.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> $1
        ORDER BY table_name`,
      [MIGRATIONS_TABLE],
    );
    const inSchema = r.rows.map((row) => row.table_name);
    assert.ok(inSchema.length > 0, 'the migrations made no table');
    assert.deepEqual([...ALL_TABLES].sort(), inSchema, 'ALL_TABLES (test/adversarial-probes.ts) and db/migrations disagree');
    assert.equal(new Set(ALL_TABLES).size, ALL_TABLES.length, 'a table listed twice');
    const exists = await db.query('SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1', [MIGRATIONS_TABLE]);
    assert.equal(exists.rowCount, 1, `${MIGRATIONS_TABLE} is the migrator's table; if it was renamed, exclude the new name`);
  });

  void test('the snapshot reads every listed table and notices a row added to any of the later ones', async () => {
    const empty = await dbSnapshot(db);
    assert.deepEqual(Object.keys(empty).sort(), [...ALL_TABLES].sort());
    // audit_settings is filled by its migration; the rest start empty.
    assert.equal(empty.audit_settings?.rows, 1);

    const grantId = 'grant-schema-tables';
    const [main, agent] = ['0x' + '1'.repeat(40), '0x' + '2'.repeat(40)];
    const additions: [string, string, unknown[]][] = [
      [
        'grants',
        `INSERT INTO grants (grant_id, main_account, main_address, agent_address, expires_at) VALUES ($1, 'main', $2, $3, now() + interval '1 hour')`,
        [grantId, main, agent],
      ],
      ['agent_epochs', 'INSERT INTO agent_epochs (user_wallet, agent_address) VALUES ($1, $2)', [main, agent]],
      [
        'kill_switch_entries',
        `INSERT INTO kill_switch_entries (kind, main_account, user_wallet, agent_address, grant_id, revoked_at, expires_at)
         VALUES ('grant', 'main', $2, $3, $1, now(), now() + interval '1 hour')`,
        [grantId, main, agent],
      ],
      [
        'approvals',
        `INSERT INTO approvals (approval_id, grant_id, main_account, main_address, agent_address, agent_account, target, params, scope, request_hash, requested_at, expires_at)
         VALUES ('apr_schema_tables', $1, 'main', $2, $3, 'agent', 'oidc', '{}', '{}', 'h', now(), now() + interval '5 minutes')`,
        [grantId, main, agent],
      ],
      [
        'passkeys',
        `INSERT INTO passkeys (credential_id, omni_account, user_handle, public_key, counter, backup_eligible, backed_up, aaguid, name, last_challenge)
         VALUES ('AAAAAAAAAAAAAAAAAAAAAA', 'main', 'handle', '\\x00', 0, true, true, 'aaguid', 'Phone', 'c')`,
        [],
      ],
      ['audit_heads', `INSERT INTO audit_heads (seq, hash, signed_at, kid, jws, version, root) VALUES (1, 'h', now(), 'k', 'j', 2, 'r')`, []],
      ['audit_head_shards', `INSERT INTO audit_head_shards (shard, seq, head_root) VALUES (0, 1, 'r')`, []],
    ];
    let before = empty;
    for (const [table, sql, args] of additions) {
      await db.query(sql, args);
      const now = await dbSnapshot(db);
      assert.deepEqual(changedTables(before, now), { [table]: `${before[table]?.rows} → ${(before[table]?.rows ?? 0) + 1} rows` }, `a row added to ${table}`);
      before = now;
    }

    // A change to a compared column of an existing row shows; the approval flow's notice time does not.
    await db.query(`UPDATE agent_epochs SET epoch = epoch + 1`);
    const raised = await dbSnapshot(db);
    assert.deepEqual(Object.keys(changedTables(before, raised)), ['agent_epochs']);
    assert.ok(ROW_FORMS.approvals);
    await db.query(`UPDATE approvals SET notified_at = now()`);
    assert.deepEqual(changedTables(raised, await dbSnapshot(db)), {}, 'notified_at is the flow’s own record, not a change a request made');
    await db.query(`UPDATE approvals SET status = 'denied', decided_at = now()`);
    assert.deepEqual(Object.keys(changedTables(raised, await dbSnapshot(db))), ['approvals'], 'a decision shows');
  });
});
