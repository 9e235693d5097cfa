/** The package version: set by the bundler (scripts/build-cli.mjs), read from package.json when run from source. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

declare const __AGENTKEYS_VERSION__: string | undefined;

export const VERSION: string =
  typeof __AGENTKEYS_VERSION__ === 'string'
    ? __AGENTKEYS_VERSION__
    : (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
