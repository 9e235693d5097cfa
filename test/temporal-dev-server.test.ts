import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { findOrInstallTemporalCli } from '../scripts/temporal-cli';
import { ensureSearchAttributes, startTemporalDevServer, type TemporalDevServer } from '../scripts/temporal-dev-server';
import { AkFlow, SEARCH_ATTRIBUTE_NAMES } from '../lib/search-attributes';

const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

function portIsOpen(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((done) => {
    const socket = createConnection({ host, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function customAttributes(connection: Connection, namespace: string) {
  const res = await connection.operatorService.listSearchAttributes({ namespace });
  return res.customAttributes ?? {};
}

void test('starts a headless in-memory dev server with the broker search attributes, and stops it', { timeout: 180_000 }, async (t) => {
  const cliPath = await findOrInstallTemporalCli({ log: (line) => t.diagnostic(line) });
  const started = Date.now();
  const server = await startTemporalDevServer({ cliPath, uiPort: false });
  t.diagnostic(`dev server ready in ${Date.now() - started} ms at ${server.address}`);
  let stopped = false;
  try {
    assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    assert.equal(server.uiUrl, undefined);
    assert.equal(server.namespace, 'default');

    const connection = await Connection.connect({ address: server.address });
    try {
      const attrs = await customAttributes(connection, 'default');
      for (const name of SEARCH_ATTRIBUTE_NAMES) assert.equal(attrs[name], KEYWORD, `${name} must be Keyword`);

      // Ready means usable: a workflow can be started with a search attribute and found through visibility.
      const client = new Client({ connection });
      const handle = await client.workflow.start('readinessProbe', {
        taskQueue: 'no-worker',
        workflowId: 'readiness-probe',
        typedSearchAttributes: [{ key: AkFlow, value: 'probe' }],
      });
      let found = 0;
      for (let i = 0; i < 100 && found === 0; i++) {
        const res = await client.workflow.count(`AkFlow = "probe"`);
        found = res.count;
        if (found === 0) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(found, 1, 'workflow must be visible by AkFlow');
      await handle.terminate('test done');

      // ensureSearchAttributes on a namespace that has none of them (what a real cluster looks like).
      await connection.workflowService.registerNamespace({
        namespace: 'sa-test',
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      });
      const before = await customAttributes(connection, 'sa-test');
      for (const name of SEARCH_ATTRIBUTE_NAMES) assert.equal(before[name], undefined, `${name} must start absent`);
      await ensureSearchAttributes(connection, 'sa-test');
      const after = await customAttributes(connection, 'sa-test');
      for (const name of SEARCH_ATTRIBUTE_NAMES) assert.equal(after[name], KEYWORD, `${name} must be registered`);
      await ensureSearchAttributes(connection, 'sa-test'); // idempotent
    } finally {
      await connection.close();
    }

    const stopStarted = Date.now();
    await server.stop();
    stopped = true;
    t.diagnostic(`dev server stopped in ${Date.now() - stopStarted} ms`);
    assert.equal(await portIsOpen(server.address), false, 'gRPC port must be closed after stop()');
    assert.equal(processIsAlive(server.pid), false, 'temporal process must be gone after stop()');
    await server.stop(); // idempotent
  } finally {
    if (!stopped) await server.stop();
  }
});

void test('persists to a SQLite file in a custom namespace with a UI port', { timeout: 180_000 }, async (t) => {
  const cliPath = await findOrInstallTemporalCli();
  const dir = await mkdtemp(join(tmpdir(), 'ak-temporal-'));
  const dbFile = join(dir, 'nested', 'temporal.sqlite');
  let server: TemporalDevServer | undefined;
  try {
    for (const round of [1, 2]) {
      const started = Date.now();
      server = await startTemporalDevServer({ cliPath, dbFile, namespace: 'agentkeys' });
      t.diagnostic(`round ${round}: ready in ${Date.now() - started} ms (db file)`);
      assert.match(server.uiUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(server.uiUrl ?? '');
      assert.equal(res.ok, true, `UI answers at ${server.uiUrl}`);
      const connection = await Connection.connect({ address: server.address });
      try {
        const attrs = await customAttributes(connection, 'agentkeys');
        for (const name of SEARCH_ATTRIBUTE_NAMES) assert.equal(attrs[name], KEYWORD, `${name} in agentkeys`);
        const { namespaces } = await connection.workflowService.listNamespaces({});
        const names = namespaces.map((n) => n.namespaceInfo?.name);
        assert.ok(names.includes('agentkeys'), `namespaces: ${names.join(', ')}`);
        if (round === 1) {
          await connection.workflowService.registerNamespace({
            namespace: 'persisted-marker',
            workflowExecutionRetentionPeriod: msToTs('1 day'),
          });
        } else {
          assert.ok(names.includes('persisted-marker'), 'state from round 1 must survive a restart');
        }
        // Bytes 18 and 19 of a SQLite file are its write and read format: 2 = write-ahead log (DEV_SQLITE_PRAGMAS).
        const header = await readFile(dbFile);
        assert.deepEqual([header[18], header[19]], [2, 2], 'the dev server keeps its file in WAL mode');
      } finally {
        await connection.close();
      }
      await server.stop();
      server = undefined;
    }
  } finally {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

void test('a server that dies during start-up is reported with its stderr', { timeout: 60_000 }, async () => {
  const cliPath = await findOrInstallTemporalCli();
  // An existing directory as the DB file makes the server fail at once.
  const dir = await mkdtemp(join(tmpdir(), 'ak-temporal-bad-'));
  try {
    await assert.rejects(
      startTemporalDevServer({ cliPath, uiPort: false, dbFile: dir }),
      (err: Error) => /exited with code [1-9]/.test(err.message) && /stderr/.test(err.message),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
