/**
 * The workflow bundle (worker/create-worker.ts): its modules are preloaded, so one evaluation of
 * each serves every workflow run of a worker thread. A module that kept state at module scope would
 * then share it between runs (and between replays), so no module of this project in the bundle may
 * declare a `let` or `var` at its top level.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { bundleBrokerWorkflows, PRELOADED_WORKFLOW_MODULES, WORKFLOWS_PATH } from '../worker/create-worker';

const ROOT = join(__dirname, '..');

/** Names declared with `let` or `var` at the top level of a module's source. */
function moduleScopeVariables(fileName: string, source: string): string[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const names: string[] = [];
  for (const statement of file.statements) {
    if (!ts.isVariableStatement(statement)) continue;
    if (statement.declarationList.flags & (ts.NodeFlags.Const | ts.NodeFlags.Using | ts.NodeFlags.AwaitUsing)) continue;
    for (const d of statement.declarationList.declarations) names.push(d.name.getText(file));
  }
  return names;
}

void test('the finder names top-level let and var, and leaves constants and function locals alone', () => {
  const source = 'let a = 1;\nexport var b = 2;\nconst c = 3;\nfunction f() { let d = 4; return d; }\nexport let e: number | undefined;\n';
  assert.deepEqual(moduleScopeVariables('x.ts', source), ['a', 'b', 'e']);
});

void test('the bundle preloads workflows/, and none of its project modules keeps state at module scope', async () => {
  assert.deepEqual(PRELOADED_WORKFLOW_MODULES, [WORKFLOWS_PATH]);
  const { code } = await bundleBrokerWorkflows();
  const preload = /exports\.preloadModules = function preloadModules\(\) \{([^}]*)\}/.exec(code)?.[1] ?? '';
  assert.match(preload, /"\.\/workflows\/index\.ts"/, 'the bundle does not preload the workflows entry');

  const modules = [...new Set([...code.matchAll(/"\.\/((?:workflows|lib)\/[^"]+\.ts)"/g)].map((m) => m[1] as string))];
  assert.ok(modules.includes('workflows/mint.ts') && modules.length > 20, `unexpected module list: ${modules.join(', ')}`);
  const stateful: string[] = [];
  for (const m of modules) {
    for (const name of moduleScopeVariables(m, await readFile(join(ROOT, m), 'utf8'))) stateful.push(`${m}: ${name}`);
  }
  assert.deepEqual(stateful, [], 'module-scope state in a preloaded workflow module (shared by every run)');
});
