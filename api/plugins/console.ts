import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';

/**
 * The console's policy, on its pages and files only (the API keeps API_CSP): its one script and
 * one stylesheet from this origin, calls to this origin, nothing inline, no framing, no forms
 * posted anywhere (the console submits with fetch).
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Paths the console's one page answers (it routes on the path; /console/device is the device flow's verification_uri). */
export const CONSOLE_PAGES = [
  '/console',
  '/console/',
  '/console/account',
  '/console/grants',
  '/console/approvals',
  '/console/audit',
  '/console/device',
] as const;

type Bundle = Record<'index.html' | 'app.js' | 'app.css', Buffer>;

/**
 * Run from dist/ (api/plugins → dist/console) the bundle `npm run build` wrote is read as is; run
 * from the sources (api/plugins → console/) it is built in memory by scripts/build-console.mjs,
 * with esbuild, a development dependency.
 */
async function loadBundle(): Promise<Bundle> {
  const dir = join(__dirname, '..', '..', 'console');
  if (existsSync(join(dir, 'app.js'))) {
    const [html, js, css] = await Promise.all(['index.html', 'app.js', 'app.css'].map((f) => readFile(join(dir, f))));
    return { 'index.html': html as Buffer, 'app.js': js as Buffer, 'app.css': css as Buffer };
  }
  const script = join(__dirname, '..', '..', 'scripts', 'build-console.mjs');
  if (!existsSync(script)) throw new Error(`the console is not built: ${join(dir, 'app.js')} is missing (npm run build writes it)`);
  const mod = (await import(pathToFileURL(script).href)) as { consoleBundle: () => Promise<Bundle> };
  return mod.consoleBundle();
}

/** One bundle per process: every app built in it (tests build many) serves the same files. */
let loaded: Promise<Bundle> | undefined;

/** Serves the console at /console: a static page, its script and its stylesheet. */
export default async function consolePlugin(app: FastifyInstance) {
  loaded ??= loadBundle();
  const bundle = await loaded.catch((e: unknown) => {
    loaded = undefined;
    throw e;
  });
  const withPolicy = async (_request: unknown, reply: { header(name: string, value: string): unknown }) => {
    reply.header('content-security-policy', CONSOLE_CSP);
  };
  for (const path of CONSOLE_PAGES) {
    app.get(path, { schema: { hide: true }, onSend: withPolicy }, async (_request, reply) => reply.type('text/html; charset=utf-8').send(bundle['index.html']));
  }
  const asset = (name: 'app.js' | 'app.css', type: string) =>
    app.get(
      `/console/${name}`,
      {
        schema: { hide: true },
        onSend: async (request, reply) => {
          await withPolicy(request, reply);
          // Route hooks run after the app's no-store default: the files may be kept, checked on every load.
          void reply.header('cache-control', 'no-cache');
        },
      },
      async (_request, reply) => reply.type(type).send(bundle[name]),
    );
  asset('app.js', 'text/javascript; charset=utf-8');
  asset('app.css', 'text/css; charset=utf-8');
}
