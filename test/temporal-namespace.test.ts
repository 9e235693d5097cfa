import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { missingSearchAttributes, prepareTemporalNamespace, type NamespaceConnection } from '../adapters/temporal-namespace';
import { SEARCH_ATTRIBUTE_NAMES } from '../lib/search-attributes';
import { StartupError } from '../lib/startup-error';
import { findOrInstallTemporalCli } from '../scripts/temporal-cli';
import { startStack, testTemporalAddress, type TestStack } from './harness';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');

let address: string;
let connection: Connection;
let cliPath: string;

/** A namespace with none of the broker's search attributes (what a fresh self-hosted cluster has). */
async function freshNamespace(prefix: string): Promise<string> {
  const namespace = `${prefix}-${randomBytes(4).toString('hex')}`;
  await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
  return namespace;
}

/** Runs a shell command with the built `temporal` first on PATH and TEMPORAL_ADDRESS set (the CLI reads it). */
async function shell(command: string): Promise<{ stdout: string; stderr: string }> {
  return run('sh', ['-c', command], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${dirname(cliPath)}:${process.env.PATH ?? ''}`, TEMPORAL_ADDRESS: address },
  });
}

before(async () => {
  address = await testTemporalAddress();
  cliPath = await findOrInstallTemporalCli({ log: (l) => console.error(l) });
  connection = await Connection.connect({ address });
});
after(async () => {
  await connection?.close();
});

void describe('docs/operations.md: registering the search attributes by hand', () => {
  void test('the documented command registers all four as Keyword (one --type per --name)', async () => {
    const doc = await readFile(join(ROOT, 'docs/operations.md'), 'utf8');
    const block = /To register them by hand[\s\S]*?```sh[^\n]*\n([\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(block, 'docs/operations.md has the registration block');
    const namespace = await freshNamespace('docs-sa');
    const { stdout } = await shell(block.replaceAll('<ns>', namespace));
    assert.match(stdout, /Search attributes have been added/);
    assert.deepEqual(await missingSearchAttributes(connection, namespace), []);
  });

  void test('the single --type form it replaces registers only the first name while printing success', async () => {
    const namespace = await freshNamespace('docs-sa-old');
    const { stdout } = await shell(
      `temporal operator search-attribute create --namespace ${namespace} --type Keyword --name AkFlow --name AkAccount --name AkStage --name AkOutcome`,
    );
    assert.match(stdout, /Search attributes have been added/);
    assert.deepEqual(await missingSearchAttributes(connection, namespace), ['AkAccount', 'AkStage', 'AkOutcome']);
  });
});

void describe('start-up: the namespace and its search attributes', () => {
  void test('missing attributes are registered where the server allows it, in one line saying so', async () => {
    const namespace = await freshNamespace('start-sa');
    const lines: string[] = [];
    await prepareTemporalNamespace(connection, { namespace, address, onRegistered: (l) => lines.push(l) });
    assert.deepEqual(lines, [`registered search attributes ${SEARCH_ATTRIBUTE_NAMES.join(', ')} in namespace ${namespace} (they were missing)`]);
    assert.deepEqual(await missingSearchAttributes(connection, namespace), []);
    await prepareTemporalNamespace(connection, { namespace, address, onRegistered: (l) => lines.push(l) });
    assert.equal(lines.length, 1, 'nothing to say on a namespace that has them');
  });

  void test('a server that refuses: one line naming the command, and that command works', async () => {
    const namespace = await freshNamespace('refused-sa');
    // The real server for everything but registering, which it refuses as a server without operator rights does.
    const refusing: NamespaceConnection = {
      workflowService: connection.workflowService,
      operatorService: {
        listSearchAttributes: (req) => connection.operatorService.listSearchAttributes(req),
        addSearchAttributes: () => Promise.reject(Object.assign(new Error('7 PERMISSION_DENIED: Request unauthorized.'), { code: 7 })),
      },
    };
    const err = await prepareTemporalNamespace(refusing, { namespace, address }).then(
      () => assert.fail('must refuse to start'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof StartupError);
    assert.doesNotMatch(err.message, /\n/);
    assert.match(err.message, new RegExp(`search attributes ${SEARCH_ATTRIBUTE_NAMES.join(', ')} are not registered in namespace ${namespace}`));
    const command = /run `([^`]+)`/.exec(err.message)?.[1];
    assert.ok(command, err.message);
    assert.match(command, new RegExp(`--address ${address} --namespace ${namespace} --name AkFlow --type Keyword --name AkAccount --type Keyword`));
    await shell(command);
    assert.deepEqual(await missingSearchAttributes(connection, namespace), []);
  });

  void test('a namespace that does not exist: one line naming TEMPORAL_NAMESPACE and the create command', async () => {
    const namespace = `absent-${randomBytes(4).toString('hex')}`;
    await assert.rejects(prepareTemporalNamespace(connection, { namespace, address }), (e: Error) => {
      assert.ok(e instanceof StartupError);
      assert.equal(
        e.message,
        `TEMPORAL_NAMESPACE=${namespace} does not exist on ${address}: create it with \`temporal operator namespace create --address ${address} --namespace ${namespace}\`, or fix TEMPORAL_NAMESPACE`,
      );
      return true;
    });
  });
});

void describe('/readyz names a missing namespace or search attribute', () => {
  let stack: TestStack | undefined;
  let namespace: string;
  before(async () => {
    namespace = await freshNamespace('readyz-sa');
    stack = await startStack({ worker: false, env: { TEMPORAL_NAMESPACE: namespace } });
  });
  after(async () => {
    await stack?.stop();
  });

  const readyz = async () => {
    const s = stack as TestStack;
    const r = await s.request('GET', '/readyz', { token: s.config.BROKER_OPS_TOKEN });
    return { status: r.status, body: r.body as { status: string; parts: Record<string, { ok: boolean; detail?: string }> } };
  };

  void test('not ready while attributes are missing (named), ready once registered', async () => {
    const before = await readyz();
    assert.equal(before.status, 503);
    assert.equal(before.body.parts.temporal_namespace?.ok, false);
    assert.match(
      before.body.parts.temporal_namespace?.detail ?? '',
      new RegExp(
        `search attributes missing in namespace ${namespace}: AkFlow, AkAccount, AkStage, AkOutcome \\(run \`temporal operator search-attribute create`,
      ),
    );
    assert.equal(before.body.parts.temporal?.ok, true, 'the server itself answers');

    await prepareTemporalNamespace(connection, { namespace, address });
    const after = await readyz();
    assert.equal(after.status, 200, JSON.stringify(after.body));
    assert.equal(after.body.parts.temporal_namespace?.ok, true);
  });
});

void describe('/readyz on a namespace that does not exist', () => {
  let stack: TestStack | undefined;
  const absent = `absent-${randomBytes(4).toString('hex')}`;
  before(async () => {
    stack = await startStack({ worker: false, env: { TEMPORAL_NAMESPACE: absent } });
  });
  after(async () => {
    await stack?.stop();
  });

  void test('not ready, the namespace named', async () => {
    const s = stack as TestStack;
    const r = await s.request('GET', '/readyz', { token: s.config.BROKER_OPS_TOKEN });
    const body = r.body as { parts: Record<string, { ok: boolean; detail?: string }> };
    assert.equal(r.status, 503);
    assert.deepEqual(body.parts.temporal_namespace, { ok: false, detail: `namespace ${absent} does not exist` });
  });
});
