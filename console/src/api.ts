/**
 * The broker's API from the console: same origin, JSON, the session as a Bearer header.
 *
 * The session token lives in memory and in sessionStorage (docs/console.md): it survives a reload
 * and the round trip through Google, dies with the tab, is not shared with other tabs, and is
 * never written to localStorage or a cookie. No refresh token is asked for.
 */

export interface Session {
  token: string;
  expires_at: number;
  omni_account: string;
}

const SESSION_KEY = 'agentkeys.console.session';
let current: Session | undefined;

export function session(): Session | undefined {
  if (!current) {
    try {
      const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null') as Session | null;
      if (stored && typeof stored.token === 'string') current = stored;
    } catch {
      /* unreadable: signed out */
    }
  }
  if (current && current.expires_at * 1000 <= Date.now()) forgetSession();
  return current;
}

export function keepSession(s: Session): void {
  current = { token: s.token, expires_at: s.expires_at, omni_account: s.omni_account };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(current));
}

export function forgetSession(): void {
  current = undefined;
  sessionStorage.removeItem(SESSION_KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly kind: string,
    message: string,
    /** The rest of the broker's answer (e.g. reauthenticate: true). */
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/**
 * The broker's message as a person reads it: a request-validation message loses the path of the
 * field it names ("body.email: …"), which the page's field label already says; an answer without a
 * message (a proxy's HTML error page) says what happened and what to do.
 */
function readable(status: number, text: string | undefined): string {
  if (typeof text === 'string' && text) return text.replace(/^(body|querystring|params)(\.[\w.]+)?: /, '');
  return status >= 500 ? `The broker answered ${status} (it is unavailable or failed): try again in a moment.` : `The broker refused the request (${status}).`;
}

/** The broker asks only for a more recent sign-in (401 with reauthenticate: true): the session still works. */
export const asksForRecentSignIn = (e: unknown): boolean => e instanceof ApiError && e.status === 401 && e.body.reauthenticate === true;

/**
 * One call; answers the parsed body, throws ApiError with the broker's {error, message}. A 401
 * signs the console out, except one that asks only for a more recent login (reauthenticate: the
 * session still works; the page offers to sign in again).
 */
export async function call<T>(method: string, path: string, body?: unknown, opts: { auth?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const s = opts.auth === false ? undefined : session();
  if (s) headers.authorization = `Bearer ${s.token}`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
    text = await res.text();
  } catch {
    // fetch names no cause ("Failed to fetch"): the request may or may not have reached the broker.
    throw new ApiError(0, 'network', 'The broker could not be reached: check the connection, then try again.');
  }
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as { error?: string; message?: string; reauthenticate?: boolean };
    if (res.status === 401 && s && opts.auth !== false && e.reauthenticate !== true) forgetSession();
    throw new ApiError(res.status, e.error ?? 'error', readable(res.status, e.message), e);
  }
  return parsed as T;
}
