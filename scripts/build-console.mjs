#!/usr/bin/env node
/**
 * Bundles the console (console/) into dist/console/ — index.html, app.js, app.css — for a broker
 * run from dist/ (`npm run build`, then `npm run api`). Run from the sources (`npm start`, tests)
 * the broker builds the same bundle in memory at start-up with `consoleBundle` below, so nothing
 * built is ever stale or committed.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The console's three files, built: `{ 'index.html': Buffer, 'app.js': Buffer, 'app.css': Buffer }`. */
export async function consoleBundle() {
  const { build } = await import('esbuild');
  const common = { bundle: true, write: false, minify: true, legalComments: 'none', logLevel: 'warning', absWorkingDir: root };
  const [js, css, html] = await Promise.all([
    build({
      ...common,
      entryPoints: ['console/src/main.ts'],
      outfile: 'app.js',
      format: 'iife',
      target: ['chrome109', 'firefox115', 'safari16'],
      platform: 'browser',
    }),
    build({ ...common, entryPoints: ['console/app.css'], outfile: 'app.css', loader: { '.css': 'css' } }),
    readFile(join(root, 'console', 'index.html')),
  ]);
  const only = (r) => Buffer.from(r.outputFiles[0].contents);
  return { 'index.html': html, 'app.js': only(js), 'app.css': only(css) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = join(root, 'dist', 'console');
  await mkdir(out, { recursive: true });
  const files = await consoleBundle();
  for (const [name, body] of Object.entries(files)) await writeFile(join(out, name), body);
  console.log(
    `console built into dist/console/ (${Object.entries(files)
      .map(([n, b]) => `${n} ${b.length} B`)
      .join(', ')})`,
  );
}
