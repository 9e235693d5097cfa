/**
 * `npm start`'s codec path for the Temporal UI: a loopback listener that forwards /codec/decode and
 * /codec/encode (and their CORS preflights) to the broker's codec endpoint with the stack's dev ops
 * token added, as `npm run cluster`'s loopback nginx does. The person at the keyboard reads
 * payloads in the UI without pasting a token; nothing off the machine reaches it.
 */
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrokerSecrets } from '../adapters/secrets';
import { brokerDataConverter } from '../adapters/temporal-options';

export interface CodecProxy {
  /** The endpoint to give the UI, e.g. http://127.0.0.1:8095/codec */
  url: string;
  close(): Promise<void>;
}

const FORWARDED = ['origin', 'content-type', 'x-namespace', 'access-control-request-method', 'access-control-request-headers'];

export async function startCodecProxy(opts: { apiUrl: string; opsToken: string; port?: number }): Promise<CodecProxy> {
  const target = new URL(opts.apiUrl);
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (!/^\/codec\/(decode|encode)$/.test(path)) {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const headers: IncomingHttpHeaders = Object.fromEntries(FORWARDED.filter((h) => req.headers[h] !== undefined).map((h) => [h, req.headers[h]]));
    if (req.method === 'POST') headers.authorization = `Bearer ${opts.opsToken}`;
    const upstream = request({ host: target.hostname, port: target.port, path, method: req.method, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`the broker's codec endpoint did not answer: ${e.message}\n`);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/codec`, close: () => new Promise((r) => server.close(() => r())) };
}

/**
 * The UI's codec path, as the browser takes it: preflight from `origin`, then a decode without a
 * token of its own, of a payload encoded with the broker's key. Answers a line for the banner.
 */
export async function checkCodecPath(codecUrl: string, origin: string, namespace: string, secrets: BrokerSecrets): Promise<{ ok: boolean; line: string }> {
  const [codec] = brokerDataConverter(secrets).payloadCodecs ?? [];
  const sample = { metadata: { encoding: new TextEncoder().encode('json/plain') }, data: new TextEncoder().encode('"codec check"') };
  const [encoded] = codec ? await codec.encode([sample]) : [];
  const b64 = (u?: Uint8Array | null) => Buffer.from(u ?? new Uint8Array()).toString('base64');
  const pre = await fetch(`${codecUrl}/decode`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
  });
  const res = await fetch(`${codecUrl}/decode`, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json', 'x-namespace': namespace },
    body: JSON.stringify({
      payloads: [{ metadata: Object.fromEntries(Object.entries(encoded?.metadata ?? {}).map(([k, v]) => [k, b64(v)])), data: b64(encoded?.data) }],
    }),
  });
  const body = (await res.json().catch(() => ({}))) as { payloads?: { data?: string }[] };
  const decoded = Buffer.from(body.payloads?.[0]?.data ?? '', 'base64').toString('utf8');
  const ok = pre.status === 204 && res.status === 200 && res.headers.get('access-control-allow-origin') === origin && decoded === '"codec check"';
  return {
    ok,
    line: ok ? `${codecUrl} (checked: preflight 204, decode 200)` : `${codecUrl} FAILED the check (preflight ${pre.status}, decode ${res.status})`,
  };
}
