/**
 * One HTTP request with exactly the headers given, from a chosen loopback source address: what
 * node's fetch cannot do (it picks no source address and rewrites Sec-Fetch-Mode). No redirect is
 * followed; a JSON body is parsed when it is JSON.
 */
import { request as httpRequest } from 'node:http';
import type { HttpAnswer } from '../adversarial-probes';

export type RawAnswer = HttpAnswer & { headers: Record<string, string | string[] | undefined> };

export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  opts: { from?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<RawAnswer> {
  const url = new URL(path, baseUrl);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        localAddress: opts.from ?? '127.0.0.1',
        headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}), ...opts.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body, text, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
