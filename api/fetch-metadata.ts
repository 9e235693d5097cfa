/**
 * Fetch Metadata (W3C, the Sec-Fetch-* request headers every current browser sends and a page
 * cannot set): where a request comes from and how it was made. Anonymous routes that start a flow
 * use it to refuse what a page of another origin makes a visitor's browser send — a bodiless
 * no-cors POST, an <img>, a frame — each of which would otherwise open a flow that lives its TTL.
 * A client that is no browser (the CLI, curl, a server) sends no Sec-Fetch-Site (Node's fetch adds
 * only `Sec-Fetch-Mode: cors`) and is not affected: every check starts from what Sec-Fetch-Site, a
 * header only a browser sets, says.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { BrokerError } from '../lib/errors';

type Headers = IncomingHttpHeaders;

/** One header's value, lower-cased and trimmed; undefined when absent (a repeated header counts as its first value). */
function header(headers: Headers, name: 'sec-fetch-site' | 'sec-fetch-mode' | 'sec-fetch-dest'): string | undefined {
  const v: string | string[] | undefined = headers[name];
  const first = typeof v === 'string' ? v : v?.[0];
  return first === undefined ? undefined : first.trim().toLowerCase();
}

/**
 * Whether the browser says the request was made by a page of another origin: Sec-Fetch-Site
 * present and neither `same-origin` (the broker's own console) nor `none` (the person typed the
 * address, opened a bookmark or a link from another application). `same-site` counts as another
 * origin: a sibling host (app.example.com next to broker.example.com) gets no CORS answer from the
 * broker, so it could never read what it started either.
 */
export function fromAnotherOrigin(headers: Headers): boolean {
  const site = header(headers, 'sec-fetch-site');
  return site !== undefined && site !== 'same-origin' && site !== 'none';
}

/**
 * Refuses (403 forbidden) a request a page of another origin made: for routes no page of another
 * origin has a use for, since the broker answers it without CORS and that page could not read the
 * answer. `what` names the route's action for the message ("a device code").
 */
export function refuseFromAnotherOrigin(request: { headers: Headers }, what: string, instead: string): void {
  if (!fromAnotherOrigin(request.headers)) return;
  throw new BrokerError(
    'forbidden',
    `${what} cannot be requested by a page of another site (Sec-Fetch-Site: ${header(request.headers, 'sec-fetch-site') ?? ''}): ${instead}`,
  );
}

/**
 * Whether a request of another origin is a top-level navigation (the person's tab, or a window it
 * opened, going to the URL): Sec-Fetch-Mode `navigate` and Sec-Fetch-Dest `document` (absent Dest
 * is taken as a document, for browsers that send only Site and Mode). An <img>, a <script>, a
 * fetch() (modes no-cors / cors) or an <iframe> (Dest iframe) is not.
 */
export function isTopLevelNavigation(headers: Headers): boolean {
  const mode = header(headers, 'sec-fetch-mode');
  const dest = header(headers, 'sec-fetch-dest');
  return mode === 'navigate' && (dest === undefined || dest === 'document');
}
