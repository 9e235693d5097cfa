/**
 * Where `agentkeys` starts (bin/agentkeys.js → dist/cli/agentkeys.cjs, built from this file):
 * `--version` and a cached `credential_process` answer are given from here; every other command
 * loads the full CLI (dist/cli/main.cjs).
 */
import { answerFromCache } from './fast-path';
import { VERSION } from './version';

export async function run(argv: string[]): Promise<number> {
  const args = argv.slice(2);
  if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const cached = await answerFromCache(args, process.env).catch(() => undefined);
  if (cached) {
    process.stdout.write(cached);
    return 0;
  }
  // require, not import(): lazy in the bundle (main.cjs beside this file) and, without a bundle,
  // through tsx's CommonJS hook, which an import() would bypass.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { main } = require('./main') as typeof import('./main');
  return main(argv);
}
