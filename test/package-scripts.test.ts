/**
 * package.json as npm runs it: every dependency with an install script is decided in `allowScripts`
 * (npm 11 warns about the others), and stopping `npm run api|worker` stops node, not only npm.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = join(__dirname, '..');

interface PackageJson {
  scripts: Record<string, string>;
  allowScripts?: Record<string, boolean>;
}

const pkg = async (): Promise<PackageJson> => JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as PackageJson;

void test('every locked package with an install script is allowed or denied in allowScripts', async () => {
  const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean }> };
  const withScripts = Object.entries(lock.packages)
    .filter(([, p]) => p.hasInstallScript)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  assert.ok(withScripts.length > 0, 'the lockfile records install scripts');
  const decided = (await pkg()).allowScripts ?? {};
  for (const name of new Set(withScripts)) assert.equal(typeof decided[name], 'boolean', `${name} has an install script and no allowScripts entry`);
  // What docs say the project needs: native bindings or their fallbacks; protobufjs's only prints a version-scheme hint.
  assert.deepEqual(decided, { secp256k1: true, esbuild: true, '@swc/core': true, protobufjs: false });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const script of ['api', 'worker'] as const) {
  void test(`SIGTERM to \`npm run ${script}\` reaches node: the process it started is gone`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'akb-signal-'));
    try {
      // The project's script, verbatim, in front of a stand-in entry point that records its pid and how it ended.
      const command = (await pkg()).scripts[script] as string;
      const entry = /dist\/\S+\.js/.exec(command)?.[0];
      assert.ok(entry, command);
      await mkdir(join(dir, entry, '..'), { recursive: true });
      await writeFile(
        join(dir, entry),
        `require('fs').writeFileSync('pid', String(process.pid));
process.on('SIGTERM', () => { require('fs').writeFileSync('signal', 'SIGTERM'); process.exit(0); });
setInterval(() => {}, 1000);
`,
      );
      await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'signal-probe', version: '1.0.0', private: true, scripts: { [script]: command } }));
      const npm = spawn('npm', ['run', script], { cwd: dir, stdio: 'ignore' });
      let pid = 0;
      for (let i = 0; i < 300 && !pid; i++) {
        pid = Number(await readFile(join(dir, 'pid'), 'utf8').catch(() => '0'));
        if (!pid) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(pid > 0, 'node started');
      const npmExited = new Promise((r) => npm.once('exit', r));
      npm.kill('SIGTERM');
      await npmExited;
      for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      const left = alive(pid);
      if (left) process.kill(pid, 'SIGKILL');
      assert.equal(left, false, `node (pid ${pid}) outlived npm`);
      assert.equal(await readFile(join(dir, 'signal'), 'utf8'), 'SIGTERM', 'node got the SIGTERM (its shutdown runs)');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
