#!/usr/bin/env node
'use strict';
// Runs the built CLI (dist/cli/, made by `npm run build:cli`, which `npm install` in a clone and
// `npm pack` run). Without it — a checkout before its first build — or with AGENTKEYS_FROM_SOURCE=1
// (editing cli/ without rebuilding), the TypeScript runs through tsx.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const built = join(__dirname, '..', 'dist', 'cli', 'agentkeys.cjs');
let run;
if (existsSync(built) && process.env.AGENTKEYS_FROM_SOURCE !== '1') {
  run = require(built).run;
} else {
  // tsx reads the tsconfig.json of the current directory unless told which: a repository's `paths`
  // could then map `commander` or `viem/accounts` to its own code, run by this CLI with the wallet
  // key in hand. The package's own tsconfig, whatever directory the CLI runs in.
  const tsconfig = join(__dirname, '..', 'tsconfig.json');
  if (!existsSync(tsconfig)) {
    process.stderr.write(`agentkeys: cannot run from the TypeScript sources without ${tsconfig}; build the CLI (npm run build:cli)\n`);
    process.exit(1);
  }
  const before = process.env.TSX_TSCONFIG_PATH;
  process.env.TSX_TSCONFIG_PATH = tsconfig;
  require('tsx/cjs/api').register();
  // Read by register() alone: the commands this CLI starts (a browser, dbus-send) get the environment as it was.
  if (before === undefined) delete process.env.TSX_TSCONFIG_PATH;
  else process.env.TSX_TSCONFIG_PATH = before;
  run = require('../cli/start.ts').run;
}
// A reader that stops early (`agentkeys completion bash | head`) is no failure.
process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : 1));
// A command whose work ended without settling (a call left waiting with nothing to wake it) would
// otherwise leave Node with an empty event loop and exit 0 having printed nothing.
let settled = false;
process.on('beforeExit', () => {
  if (settled) return;
  process.stderr.write('agentkeys: the command stopped before it finished (an internal error); nothing was done after this point, run it again\n');
  process.exit(1);
});
run(process.argv).then((code) => {
  settled = true;
  process.exit(code);
});
