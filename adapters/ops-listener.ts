import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { isLoopbackUrl } from '../lib/client-address';

export interface OpsListener {
  /** e.g. http://127.0.0.1:9464/metrics */
  metricsUrl: string;
  close(): Promise<void>;
}

/** Answers the ops listener's /docs and /docs/… requests (the API's Swagger UI, api/plugins/docs.ts). */
export type OpsDocsHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The ops listener: GET /metrics (Prometheus text format) from the given registries, the /docs UI
 * when `docs` is given (production's default place for it: another origin than the console's),
 * 404 for anything else. Never on the public port: it binds BROKER_OPS_HOST (loopback by default).
 *
 * Bound to loopback, it answers only requests that name a loopback host: a web page whose name was
 * rebound to 127.0.0.1 (DNS rebinding) sends its own name as `Host` and gets 421, so it cannot read
 * the metrics or load the docs UI from this origin. Bound elsewhere (a scraper on another machine
 * names it as it likes), every `Host` is answered.
 */
export async function startOpsListener(opts: { host: string; port: number; registries: Registry[]; docs?: OpsDocsHandler | null }): Promise<OpsListener> {
  const loopbackOnly = loopbackHost(opts.host);
  const server: Server = createServer((req, res) => {
    if (loopbackOnly && !namesLoopback(req.headers.host)) {
      res
        .writeHead(421, { 'content-type': 'text/plain' })
        .end('misdirected request: this listener is bound to loopback and answers only a loopback host name (127.0.0.1, [::1], localhost)\n');
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (opts.docs && (path === '/docs' || path?.startsWith('/docs/'))) {
      opts.docs(req, res);
      return;
    }
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const merged = opts.registries.length === 1 ? opts.registries[0]! : Registry.merge(opts.registries);
    merged.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': merged.contentType, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : text);
      },
      () => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    metricsUrl: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A bind address on this machine's loopback. */
function loopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Whether a request's `Host` names a loopback host (none at all, an HTTP/1.0 client's, counts: no browser sends that). */
function namesLoopback(host: string | undefined): boolean {
  if (host === undefined) return true;
  try {
    const url = new URL(`http://${host}/`);
    return isLoopbackUrl(url) || loopbackHost(url.hostname);
  } catch {
    return false;
  }
}
