/**
 * Where a browser Google sign-in may return to (docs/google-login.md, "Return URLs"): exact URLs
 * (BROKER_GOOGLE_RETURN_URLS, plus the console's own `<public origin>/console/`), and the older
 * bare origins (BROKER_GOOGLE_RETURN_ORIGINS), each of which still allows any path on its origin.
 *
 * Two spellings of one URL compare as one: both go through the WHATWG URL parser (host case, IDNA,
 * IPv4 forms, the default port, `.` and `..` segments, `%2e` among them, characters a path must
 * escape), and then RFC 3986 §6.2.2's percent-encoding normalisation (an escaped unreserved
 * character is that character; the hex of the other escapes upper case). A trailing slash on a
 * path is significant, as it is to HTTP: `/after-login` and `/after-login/` are two URLs (an empty
 * path is `/`). An exact URL has no query and no fragment, neither configured nor requested.
 *
 * Pure: the config (lib/config.ts) parses the lists, the Google start (api/routes/google-login.ts) checks a request.
 */

/** The console's own return URL on the broker's origin (console/src/main.ts sends `${location.origin}/console/`). */
export const CONSOLE_RETURN_PATH = '/console/';

export interface GoogleReturnTargets {
  /** Exact return URLs, each as the WHATWG parser spells it. */
  urls: string[];
  /** Bare origins (scheme://host[:port]) on which any path is allowed: the older, wider setting. */
  origins: string[];
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** RFC 3986 §6.2.2.1–2 on a path the WHATWG parser made: escapes of unreserved characters decoded, the rest upper-cased. */
function normalisedPath(pathname: string): string {
  return pathname.replace(/%([0-9a-fA-F]{2})/g, (_escape, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });
}

/** What two spellings of one return URL share: the origin and the normalised path. */
export function returnUrlKey(url: URL): string {
  return `${url.origin}${normalisedPath(url.pathname)}`;
}

const isWeb = (url: URL): boolean => url.protocol === 'https:' || url.protocol === 'http:';
/** A query or fragment, even an empty one (`…/done?`, `…/done#`): WHATWG keeps the delimiter in `href`. */
const hasQueryOrFragment = (url: URL): boolean => url.href.includes('?') || url.href.includes('#');

function parse(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

/**
 * BROKER_GOOGLE_RETURN_URLS parsed, beside the origins of BROKER_GOOGLE_RETURN_ORIGINS (parsed as
 * every origin list is, lib/config.ts). Throws an Error naming the variable and the entry (the
 * config turns it into a ConfigError). `publicOrigin`'s console URL is always an exact entry.
 */
export function parseGoogleReturnTargets(urlsText: string, returnOrigins: readonly string[], publicOrigin: string): GoogleReturnTargets {
  const urls: string[] = [];
  for (const entry of urlsText
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const url = parse(entry);
    if (!url || !isWeb(url) || url.username || url.password || hasQueryOrFragment(url))
      throw new Error(`BROKER_GOOGLE_RETURN_URLS: "${entry}" is not a return URL (http(s)://host[:port]/path, without user info, query or fragment)`);
    if (!urls.includes(url.href)) urls.push(url.href);
  }
  const consoleUrl = new URL(CONSOLE_RETURN_PATH, publicOrigin).href;
  if (!urls.includes(consoleUrl)) urls.push(consoleUrl);
  for (const origin of returnOrigins) if (!isWeb(new URL(origin))) throw new Error(`BROKER_GOOGLE_RETURN_ORIGINS: "${origin}" is not an http(s) origin`);
  return { urls, origins: [...returnOrigins] };
}

/** Why a return_to is refused: the message of a 400 `bad_request` (never echoing the value or the list). */
export class ReturnUrlRefused extends Error {}

/**
 * The URL a browser sign-in returns to, for a requested `return_to`: the configured spelling of the
 * exact URL it names, or (on an origin of the older setting) the request's own URL, query and all.
 * Throws ReturnUrlRefused otherwise.
 */
export function allowedGoogleReturnUrl(returnTo: string, targets: GoogleReturnTargets): string {
  const url = parse(returnTo);
  if (!url || !isWeb(url)) throw new ReturnUrlRefused('return_to is not an absolute http(s) URL');
  if (url.username || url.password) throw new ReturnUrlRefused('return_to must not carry user info');
  if (targets.origins.includes(url.origin)) return url.href;
  if (hasQueryOrFragment(url))
    throw new ReturnUrlRefused('return_to must be one of the return URLs exactly, without a query or fragment (BROKER_GOOGLE_RETURN_URLS)');
  const key = returnUrlKey(url);
  const match = targets.urls.find((allowed) => returnUrlKey(new URL(allowed)) === key);
  if (match === undefined)
    throw new ReturnUrlRefused(
      `return_to is not one of this broker's return URLs (BROKER_GOOGLE_RETURN_URLS; the console's own ${CONSOLE_RETURN_PATH} always is)`,
    );
  return match;
}
