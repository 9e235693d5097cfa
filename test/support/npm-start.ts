/**
 * `npm start`'s stack (scripts/stack.ts) as a child process for tests that exercise it as a person
 * would: started with the given environment, up once its banner ends, its banner lines read by
 * label, stopped with SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

export interface NpmStart {
  /** Everything the stack printed so far (stdout and stderr). */
  output(): string;
  /** The rest of the banner line with this label (`API`, `Console`, `STS`…), asserting it is there. */
  banner(label: string): string;
  stop(): Promise<void>;
}

export async function startNpmStart(env: NodeJS.ProcessEnv): Promise<NpmStart> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/stack.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  try {
    await new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`npm start was not up within 180 s:\n${output}`)), 180_000);
      const onData = (b: Buffer) => {
        output += b.toString();
        if (/Ctrl-C stops everything\./.test(output)) {
          clearTimeout(timer);
          done();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`npm start exited (${code}) before it was up:\n${output}`));
      });
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    output: () => output,
    banner(label) {
      const line = output.split('\n').find((l) => new RegExp(`^\\[stack\\]\\s+${label}\\s`).test(l));
      assert.ok(line, `the banner has a ${label} line:\n${output}`);
      return line.replace(new RegExp(`^\\[stack\\]\\s+${label}\\s+`), '');
    },
    stop,
  };
}
