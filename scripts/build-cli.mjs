#!/usr/bin/env node
/**
 * Bundles the CLI into dist/cli/ (run by `npm run build:cli`, `prepare` and `prepack`):
 * - agentkeys.cjs from cli/start.ts: `--version` and a cached `credential_process` answer, with
 *   nothing but Node's own modules;
 * - main.cjs from cli/main.ts: every command, with its dependencies bundled in (only the native
 *   keychain binding, @napi-rs/keyring, stays a package). Packages a command needs only sometimes
 *   (viem, the prompts, the spinner, the browser opener) are evaluated when it first asks for them.
 * Plain JavaScript, so it runs with node alone. `--if-possible` (the `prepare` script) skips the
 * build where esbuild is not installed (an install without dev dependencies): bin/agentkeys.js
 * then runs the TypeScript through tsx.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  absWorkingDir: root,
  external: ['@napi-rs/keyring'],
  // import() of a bundled module becomes a lazy require: no ES module loader at start-up.
  supported: { 'dynamic-import': false },
  define: { __AGENTKEYS_VERSION__: JSON.stringify(version) },
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
};

/** The start file loads main.cjs beside it at run time instead of bundling it. */
const mainBeside = {
  name: 'main-beside',
  setup(b) {
    b.onResolve({ filter: /^\.\/main(\.js)?$/ }, () => ({ path: './main.cjs', external: true }));
  },
};

/**
 * Packages only some commands need, each in its own file under dist/cli/vendor/, required when a
 * command first imports it: `--help` and every other command parse none of them. (viem/accounts
 * alone brings every BIP-39 word list.)
 */
const VENDOR = {
  'viem/accounts': { file: 'viem-accounts', default: false },
  '@ethereumjs/wallet': { file: 'ethereumjs-wallet', default: false },
  '@clack/prompts': { file: 'clack-prompts', default: false },
  ora: { file: 'ora', default: true },
  open: { file: 'open', default: true },
};
const vendorBeside = {
  name: 'vendor-beside',
  setup(b) {
    const names = Object.keys(VENDOR).map((n) => n.replace(/[/.@]/g, (c) => `\\${c}`));
    b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => ({ path: `./vendor/${VENDOR[args.path].file}.cjs`, external: true }));
  },
};
// ES module dependencies (open) locate files beside themselves through import.meta.url.
const importMetaUrl = {
  define: { ...common.define, 'import.meta.url': '__agentkeysImportMetaUrl' },
  banner: { js: 'const __agentkeysImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
};

/**
 * Each file is written beside its place and renamed into it, so a CLI started while another
 * process rebuilds (test files run side by side, each building first) reads the old file or the
 * new one, never half of one.
 */
function writeAtomically(result) {
  for (const f of result.outputFiles) {
    mkdirSync(dirname(f.path), { recursive: true });
    const tmp = `${f.path}.${process.pid}.tmp`;
    writeFileSync(tmp, f.contents);
    renameSync(tmp, f.path);
  }
}

export async function buildCli() {
  const esbuild = await import('esbuild');
  const build = async (options) => writeAtomically(await esbuild.build({ ...options, write: false }));
  await Promise.all([
    build({ ...common, entryPoints: ['cli/start.ts'], outfile: 'dist/cli/agentkeys.cjs', plugins: [mainBeside] }),
    build({ ...common, ...importMetaUrl, entryPoints: ['cli/main.ts'], outfile: 'dist/cli/main.cjs', plugins: [vendorBeside] }),
    ...Object.entries(VENDOR).map(([name, v]) =>
      build({
        ...common,
        ...importMetaUrl,
        stdin: { contents: `export * from '${name}';${v.default ? ` export { default } from '${name}';` : ''}`, resolveDir: root, loader: 'js' },
        outfile: `dist/cli/vendor/${v.file}.cjs`,
      }),
    ),
  ]);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    await import('esbuild');
  } catch (e) {
    if (!process.argv.includes('--if-possible')) throw e;
    console.error('build-cli: esbuild is not installed; agentkeys will run from the TypeScript sources through tsx');
    process.exit(0);
  }
  await buildCli();
}
