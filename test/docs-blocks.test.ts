/**
 * Every shell block in README.md and docs/**\/*.md runs against `npm start`'s stack (scripts/stack.ts,
 * on the runner's Temporal server and a fresh Postgres database), so no walk-through can rot. The
 * convention it enforces is docs/writing-docs.md: `sh` and `bash` fences run, each page's blocks in
 * one bash session in page order under `set -eEuo pipefail` (a later block sees an earlier block's
 * variables); reference fences (`text`, `json`, `ts`, …) do not; a shell block CI cannot run says
 * so with `ci-skip: <why>` after its language; an unlabelled or unknown fence fails the test.
 * A failing command is named by file and line.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findOrInstallTemporalCli } from '../scripts/temporal-cli';
import { findFreePort } from '../scripts/temporal-dev-server';
import { createTestDatabase, testTemporalAddress } from './harness';
import { startNpmStart, type NpmStart } from './support/npm-start';

const ROOT = join(__dirname, '..');
const RUNNABLE = new Set(['sh', 'bash']);
/** Fences shown, never run: output, wire shapes, configuration, code fragments. */
const REFERENCE = new Set(['text', 'console', 'json', 'jsonc', 'http', 'sql', 'ini', 'toml', 'yaml', 'nginx', 'ts', 'js', 'diff']);
const SKIP = /^ci-skip:\s*\S.{8,}/;
const PAGE_TIMEOUT_MS = 180_000;

interface Block {
  file: string;
  /** 1-based line of the block's first content line. */
  line: number;
  lang: string;
  attrs: string;
  body: string;
}

async function markdownFiles(): Promise<string[]> {
  const walk = async (dir: string): Promise<string[]> => {
    const out: string[] = [];
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) out.push(...(await walk(p)));
      else if (e.name.endsWith('.md')) out.push(p);
    }
    return out;
  };
  return [join(ROOT, 'README.md'), ...(await walk(join(ROOT, 'docs'))).sort()];
}

/** Fenced blocks (``` or ~~~, indented ones too, as in list items), dedented by their fence's indent. */
export function extractBlocks(file: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3}|\s*)(`{3,}|~{3,})\s*([^\s`]*)\s*(.*)$/.exec(lines[i] as string);
    if (!open) continue;
    const [, indent = '', fence = '', lang = '', attrs = ''] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] as string;
      if (new RegExp(`^\\s*${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`).test(l)) break;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    blocks.push({ file: relative(ROOT, file), line: i + 2, lang: lang.toLowerCase(), attrs: attrs.trim(), body: body.join('\n') });
    i = j;
  }
  return blocks;
}

function classify(b: Block): 'run' | 'skip' | 'reference' {
  if (RUNNABLE.has(b.lang)) {
    if (b.attrs === '') return 'run';
    assert.match(
      b.attrs,
      SKIP,
      `${b.file}:${b.line - 1}: a shell fence takes nothing after its language but "ci-skip: <why CI cannot run it>" (docs/writing-docs.md)`,
    );
    return 'skip';
  }
  assert.ok(
    REFERENCE.has(b.lang),
    `${b.file}:${b.line - 1}: fence language "${b.lang}" is neither run (sh, bash) nor reference (${[...REFERENCE].join(', ')}); see docs/writing-docs.md`,
  );
  return 'reference';
}

interface Banner {
  api: string;
  temporal: string;
  tee: string;
  sts: string;
  google: string;
  databaseUrl: string;
}

let stack: NpmStart | undefined;
let banner: Banner;
let drop: (() => Promise<void>) | undefined;
let dataDir: string;
let pages: { file: string; blocks: Block[] }[] = [];
/** The Temporal CLI the stack runs on, on the sessions' PATH as `temporal`. */
let temporalCliDir: string;

before(async () => {
  // What the pages say they need besides Node and npm; a missing one is named here, not as a failing block.
  const missing = await new Promise<string>((done) => {
    const p = spawn('bash', ['-c', 'for t in curl jq openssl basenc; do command -v "$t" >/dev/null || printf "%s " "$t"; done']);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', () => done(out.trim()));
  });
  assert.equal(missing, '', `the docs' walk-throughs need ${missing} (Debian: apt-get install -y curl jq openssl coreutils)`);
  pages = await Promise.all((await markdownFiles()).map(async (f) => ({ file: relative(ROOT, f), blocks: extractBlocks(f, await readFile(f, 'utf8')) })));
  dataDir = await mkdtemp(join(tmpdir(), 'akb-docs-'));
  temporalCliDir = dirname(await findOrInstallTemporalCli({ log: () => undefined }));
  const database = await createTestDatabase();
  drop = database.drop;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development',
    PORT: String(await findFreePort()),
    BROKER_DATA_DIR: join(dataDir, 'broker'),
    DATABASE_URL: database.url,
    TEMPORAL_ADDRESS: await testTemporalAddress(),
    BROKER_TASK_QUEUE: `docs-${process.pid}`,
    LOG_LEVEL: 'warn',
    // Long enough that the re-run below meets it however long the pages before it take.
    BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '600',
    // The inclusion-proof block waits for its row to be under a signed head (60 s by default).
    BROKER_AUDIT_ANCHOR_SECONDS: '2',
  };
  stack = await startNpmStart(env);
  const started = stack;
  const value = (label: string): string => started.banner(label).split(/\s+/)[0] as string;
  banner = { api: value('API'), temporal: value('Temporal'), tee: value('TEE fixture'), sts: value('STS'), google: value('Google'), databaseUrl: database.url };
});

after(async () => {
  await stack?.stop();
  await drop?.();
  await rm(dataDir, { recursive: true, force: true });
});

/**
 * One bash session for a page's blocks: each block is a file sourced in order; the ERR trap (inherited
 * by functions, subshells and command substitutions) prints the first failing command's block and line.
 */
async function runSession(name: string, blocks: Block[]): Promise<{ code: number; out: string; failedAt?: string }> {
  const dir = await mkdtemp(join(dataDir, 'session-'));
  const home = join(dir, 'home');
  await mkdir(home);
  const parts = ['set -eEuo pipefail', 'shopt -s inherit_errexit', `trap 'echo "__AK_FAIL \${BASH_SOURCE[0]##*/} $LINENO $?" >&2' ERR`];
  for (const [i, b] of blocks.entries()) {
    await writeFile(join(dir, `block-${i}.sh`), `${b.body}\n`);
    parts.push(`source ${JSON.stringify(join(dir, `block-${i}.sh`))}`);
  }
  await writeFile(join(dir, 'session.sh'), `${parts.join('\n')}\n`);
  const env: NodeJS.ProcessEnv = {
    PATH: `${temporalCliDir}${delimiter}${process.env.PATH ?? ''}`,
    LANG: 'C.UTF-8',
    HOME: home,
    TMPDIR: dir,
    // A block that installs globally installs here, never into the machine's prefix.
    NPM_CONFIG_PREFIX: join(dir, 'npm-global'),
    NPM_CONFIG_UPDATE_NOTIFIER: 'false',
    // The banner's lines, under the names the pages give them (docs/writing-docs.md).
    B: banner.api,
    TEE: `${banner.tee.replace(/\/$/, '')}/`,
    STS: banner.sts,
    GOOGLE: banner.google,
    TEMPORAL_ADDRESS: banner.temporal,
    DATABASE_URL: banner.databaseUrl,
    // The stack's data directory, as `npm start`'s default `.data` would be on a laptop (its secret: npm run account:tag).
    BROKER_DATA_DIR: join(dataDir, 'broker'),
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  return new Promise((resolve) => {
    const p = spawn('bash', [join(dir, 'session.sh')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      out += `\n[${name}: killed after ${PAGE_TIMEOUT_MS / 1000} s]`;
      p.kill('SIGKILL');
    }, PAGE_TIMEOUT_MS);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      // The ERR trap's line; for what ends the shell without it (an unset variable) bash's own message.
      const trapped = /__AK_FAIL block-(\d+)\.sh (\d+) (\d+)/.exec(out);
      const own = /block-(\d+)\.sh: line (\d+): /.exec(out);
      const at = trapped ?? own;
      const b = at ? blocks[Number(at[1])] : undefined;
      const failedAt = b && at ? `${b.file}:${b.line + Number(at[2]) - 1}${trapped ? ` (exit ${trapped[3]})` : ''}` : undefined;
      resolve({ code: code ?? (signal ? 128 : 1), out, failedAt });
    });
  });
}

const tail = (s: string) => s.split('\n').slice(-40).join('\n');

void describe('docs: every shell block runs against npm start', () => {
  void test('every fence is labelled with a known kind, and every skipped shell block says why', () => {
    const skipped: string[] = [];
    const wrong: string[] = [];
    for (const page of pages)
      for (const b of page.blocks) {
        try {
          if (classify(b) === 'skip') skipped.push(`${b.file}:${b.line - 1} ${b.attrs}`);
        } catch (e) {
          wrong.push((e as Error).message);
        }
      }
    // Printed so the run's output lists what CI does not run.
    console.log(`[docs] ${skipped.length} shell blocks not run:\n  ${skipped.join('\n  ')}`);
    assert.deepEqual(wrong, []);
    assert.ok(pages.some((p) => p.blocks.some((b) => classify(b) === 'run')));
  });

  void test('each page with shell blocks runs them in one session, in order, and every command succeeds', async (t) => {
    for (const page of pages) {
      const runnable = page.blocks.filter((b) => RUNNABLE.has(b.lang) && b.attrs === '');
      if (runnable.length === 0) continue;
      await t.test(page.file, async () => {
        const r = await runSession(page.file, runnable);
        assert.equal(r.code, 0, `${r.failedAt ?? `${page.file} (line unknown)`} failed:\n${tail(r.out)}`);
      });
    }
  });

  void test('a session keeps variables across blocks and names the failing command by file and line', async () => {
    const block = (line: number, body: string): Block => ({ file: 'docs/example.md', line, lang: 'sh', attrs: '', body });
    const failing = await runSession('example', [block(10, 'A=kept'), block(20, 'echo "A=$A"\nfalse\necho never')]);
    assert.notEqual(failing.code, 0);
    assert.match(failing.out, /^A=kept$/m);
    assert.doesNotMatch(failing.out, /never/);
    assert.equal(failing.failedAt, 'docs/example.md:21 (exit 1)');

    const inFunction = await runSession('example', [block(30, 'f() {\n  local x\n  x=$(curl -sS --fail-with-body "$B/v1/nothing-here")\n}\nf')]);
    assert.equal(inFunction.failedAt, 'docs/example.md:32 (exit 22)', inFunction.out);

    const unset = await runSession('example', [block(40, 'echo ok\necho "$NOT_DEFINED_ANYWHERE"')]);
    assert.notEqual(unset.code, 0);
    assert.equal(unset.failedAt, 'docs/example.md:41', unset.out);
  });

  void test('the email walk-through run again within the resend cooldown stops at the 429, and nothing after it runs', async () => {
    const page = pages.find((p) => p.file === 'docs/email-login.md');
    const block = page?.blocks.find((b) => b.lang === 'sh' && b.attrs === '' && /email_code/.test(b.body));
    assert.ok(block, 'docs/email-login.md has the walk-through block');
    // The page ran above; within the cooldown the same mailbox is refused at step 1.
    const r = await runSession('email again', [block]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /returned error: 429/);
    assert.match(r.out, /"error":"rate_limited"/, 'the broker says why');
    assert.doesNotMatch(r.out, /omni_account|invalid_code|bad_request|401/, 'no step after the refused one ran');
  });
});
