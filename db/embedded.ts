/**
 * Embedded Postgres for development: PGlite (0.5.14 = PostgreSQL 18 compiled to WASM, running in this process) persisted in a
 * directory and served over the Postgres wire protocol on 127.0.0.1 by @electric-sql/pglite-socket, so the broker
 * talks to it with node-postgres exactly as to a real server. Used because the real Postgres binaries refuse to
 * run as root.
 *
 * PGlite has ONE session. Callers MUST use a pg Pool with `max: 1` (one pool per process): concurrent
 * connections are multiplexed by pglite-socket onto that single session, so
 *  - session state is shared between connections (SET, prepared statements, session advisory locks, temp
 *    tables): a `SET` on one connection is seen by the others;
 *  - locks exclude nothing: `pg_advisory_xact_lock` and `SELECT ... FOR UPDATE` never wait, since the "other"
 *    holder is the same session. Consistency comes only from serialisation: while a connection is inside a
 *    transaction the server runs no statement from any other connection (measured: 3 pools x 50 concurrent
 *    read-modify-write transactions lose no update). Hence code that waits for another connection while holding
 *    a transaction hangs (with a Pool of max 1 it already hangs on the pool, so such code is a bug either way);
 *  - a client that disconnects inside a transaction is rolled back.
 * The server accepts `maxConnections` sockets (default 4); beyond that it answers a bare "Too many connections"
 * line, which pg reports as "Connection terminated unexpectedly". The default leaves slack because the server
 * frees a slot only some time after a client's socket closed: with a limit of 1, connecting right after
 * `pool.end()` (e.g. a migration pool, then the app's pool) is refused.
 */
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgresOptions {
  /** Directory holding the database (created on first start, reused afterwards), e.g. `<BROKER_DATA_DIR>/pglite`. */
  dataDir: string;
  /** TCP port on 127.0.0.1; 0 or omitted = a free port. */
  port?: number;
  /** Sockets accepted at once (see the module comment: each caller still uses a Pool of max 1). Default 4. */
  maxConnections?: number;
  /** Receives progress lines. Default: discarded. */
  log?: (line: string) => void;
}

export interface EmbeddedPostgres {
  /** node-postgres connection string, `postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable`. */
  url: string;
  port: number;
  /** Closes client sockets (rolling back their open transactions), the server, then the database. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

/**
 * Opens (or initialises) the PGlite database in `dataDir` and serves it on 127.0.0.1. A lock file next to the
 * directory (`<dataDir>.lock`) refuses a second live process on the same data; a lock left by a dead process is
 * taken over.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = opts.log ?? (() => undefined);
  const dataDir = resolve(opts.dataDir);
  await mkdir(dirname(dataDir), { recursive: true });
  const releaseLock = await lockDataDir(dataDir);

  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  try {
    const started = Date.now();
    db = await PGlite.create(dataDir);
    log(`[pglite] database open in ${Date.now() - started} ms: ${dataDir}`);
    server = new PGLiteSocketServer({ db, host: HOST, port: opts.port ?? 0, maxConnections: opts.maxConnections ?? 4 });
    await server.start();
  } catch (err) {
    await db?.close().catch(() => undefined);
    await releaseLock();
    throw new Error(`Could not start embedded Postgres in ${dataDir}: ${err instanceof Error ? err.message : String(err)}`);
  }

  const port = Number(server.getServerConn().split(':').pop());
  if (!Number.isInteger(port) || port <= 0) {
    await server.stop();
    await db.close();
    await releaseLock();
    throw new Error(`Embedded Postgres reported an unusable address: ${server.getServerConn()}`);
  }
  log(`[pglite] listening on ${HOST}:${port}`);

  const openDb = db;
  const openServer = server;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      try {
        await openServer.stop();
        // stop() detaches client handlers without awaiting their ROLLBACK of an open transaction: let it run.
        await new Promise((r) => setTimeout(r, 50));
        await openDb.close();
      } finally {
        await releaseLock();
      }
      log('[pglite] stopped');
    })());

  return { url: `postgres://postgres@${HOST}:${port}/postgres?sslmode=disable`, port, stop };
}

async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const lockFile = `${dataDir}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockFile, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await unlink(lockFile).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number.parseInt((await readFile(lockFile, 'utf8').catch(() => '')).trim(), 10);
    if (!Number.isInteger(pid) && Date.now() - (await stat(lockFile).catch(() => ({ mtimeMs: 0 }))).mtimeMs < 5_000) {
      throw new Error(`Embedded Postgres data directory ${dataDir} is being opened by another process (lock file ${lockFile})`);
    }
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new Error(
        `Embedded Postgres data directory ${dataDir} is in use by process ${pid} (lock file ${lockFile}); ` +
          'stop that process, or delete the lock file if it is not a broker',
      );
    }
    if (pid === process.pid) {
      throw new Error(`Embedded Postgres data directory ${dataDir} is already open in this process`);
    }
    await unlink(lockFile).catch(() => undefined); // left by a dead process (or unreadable): take it over
  }
  throw new Error(`Could not acquire the lock file ${lockFile}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
