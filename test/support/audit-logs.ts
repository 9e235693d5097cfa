/**
 * Fresh audit logs for the tests that read and tamper with the log directly (no API, no Temporal):
 * one migrated database each, with the test-only secrets of one data directory. Registers its own
 * before/after hooks; call it at a test file's top level, and add no other top-level `before` that
 * reads from it (Node 20 runs a file's top-level hooks without waiting for each other).
 */
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { createAuditAnchorActivities } from '../../activities/audit-anchor';
import { resolveSecrets, type BrokerSecrets } from '../../adapters/secrets';
import { ensureAuditShards } from '../../db/audit';
import { migrate } from '../../db/migrate';
import { createPool, type Db } from '../../db/pool';
import { loadConfig, type Config } from '../../lib/config';
import { createTestDatabase } from '../harness';

export interface AuditTestLog {
  db: Db;
  url: string;
  config: Config;
}

export interface AuditLogs {
  /** The data directory's secrets (the audit key among them): set once the file's first hook ran. */
  readonly secrets: BrokerSecrets;
  readonly dataDir: string;
  /** A JWKS file of the audit key, for audit:verify --keys. */
  readonly keysFile: string;
  /** A migrated database with `shards` audit shards; with `upTo`, only the migrations up to that file (as an older broker left it). */
  fresh(opts?: { shards?: number; upTo?: string; poolSize?: number }): Promise<AuditTestLog>;
  /** Run after the file's tests, newest first. */
  cleanups: (() => Promise<unknown>)[];
  /** The audit anchor's activities on a log (no mail: the anchor sends none), with these secrets or the data directory's. */
  anchorActivities(log: AuditTestLog, secrets?: BrokerSecrets): ReturnType<typeof createAuditAnchorActivities>;
}

export function useAuditLogs(prefix: string): AuditLogs {
  const cleanups: (() => Promise<unknown>)[] = [];
  let secrets: BrokerSecrets | undefined;
  let dataDir: string | undefined;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), `${prefix}-`));
    const dir = dataDir;
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    secrets = await resolveSecrets(loadConfig({ NODE_ENV: 'test', BROKER_DATA_DIR: dataDir }));
    await writeFile(join(dir, 'audit-keys.json'), JSON.stringify({ keys: [secrets.auditKey.publicJwk] }));
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  });
  const ready = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`useAuditLogs: ${what} is read before the file's first hook ran`);
    return v;
  };
  return {
    get secrets() {
      return ready(secrets, 'secrets');
    },
    get dataDir() {
      return ready(dataDir, 'dataDir');
    },
    get keysFile() {
      return join(ready(dataDir, 'dataDir'), 'audit-keys.json');
    },
    cleanups,
    anchorActivities(log, given) {
      return createAuditAnchorActivities({
        config: log.config,
        db: log.db,
        secrets: given ?? ready(secrets, 'secrets'),
        mailer: { send: () => Promise.reject(new Error('no mail')) },
        now: Date.now,
      });
    },
    async fresh(opts = {}) {
      const database = await createTestDatabase();
      const config = loadConfig({ NODE_ENV: 'test', BROKER_DATA_DIR: ready(dataDir, 'dataDir'), DATABASE_URL: database.url });
      const db = createPool(database.url, opts.poolSize ?? 8);
      cleanups.push(database.drop, () => db.end());
      if (opts.upTo) {
        const upTo = opts.upTo;
        const dir = await mkdtemp(join(tmpdir(), 'akb-migrations-'));
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        const all = join(__dirname, '..', '..', 'db', 'migrations');
        for (const f of await readdir(all)) if (f <= upTo) await copyFile(join(all, f), join(dir, f));
        await migrate(db, dir);
      } else {
        await migrate(db);
        await ensureAuditShards(db, opts.shards ?? 4);
      }
      return { db, url: database.url, config };
    },
  };
}
