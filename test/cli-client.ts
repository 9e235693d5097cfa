/** Running the `agentkeys` CLI as a subprocess (bin/agentkeys.js, the built bundle) in the CLI tests. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';

export const ROOT = join(__dirname, '..');
export const BIN = join(ROOT, 'bin', 'agentkeys.js');

/** Builds dist/cli from the current sources, so the tests run what the package ships. */
export function buildCli(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-cli.mjs')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `build-cli: ${r.stderr}`);
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Written to stdin up front (then closed), or fed by the caller through `feed`. */
  stdin?: string;
  feed?: (write: (s: string) => void, end: () => void, output: () => string) => Promise<void>;
}

export function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: RunOptions): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (opts.feed) {
      opts
        .feed(
          (s) => child.stdin.write(s),
          () => child.stdin.end(),
          () => stdout + stderr,
        )
        .catch((e: unknown) => {
          child.kill();
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    } else {
      child.stdin.end(opts.stdin ?? '');
    }
  });
}

export function parseJson(r: Run): Record<string, unknown> {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

export { waitFor } from './support/wait-for';

/** The CLI against a running broker with its own HOME (file store unless a test says otherwise). */
export function cliAgainst(where: () => { url: string; home: string }) {
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: where().home,
    AGENTKEYS_SESSION_STORE: 'file',
    AGENTKEYS_BROKER_URL: where().url,
    ...extra,
  });
  return {
    env,
    run: (args: string[], opts: RunOptions = {}): Promise<Run> => runProcess(process.execPath, [BIN, ...args], env(opts.env), opts),
    /** A 0600 file holding a new (or the given) private key. */
    keyFile: async (pk = generatePrivateKey()): Promise<{ path: string; address: string }> => {
      const path = join(where().home, `key-${Math.random().toString(36).slice(2)}.txt`);
      await writeFile(path, `${pk}\n`, { mode: 0o600 });
      return { path, address: privateKeyToAccount(pk).address };
    },
  };
}
