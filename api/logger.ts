import type { FastifyServerOptions } from 'fastify';

/** Query parameters whose values are neither secret nor personal: logged as sent (when plain). */
const PLAIN_QUERY_KEYS = new Set(['limit', 'before', 'format']);
/** A query key that is logged by name: a short lower-case word (an address, a code or a token is none). */
const LOGGABLE_KEY = /^[a-z_]{1,32}$/;
const PLAIN_VALUE = /^[\w.-]{0,64}$/;

function decodeQueryPart(part: string): string | undefined {
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * The request line's URL as it is logged: the path, and of the query only the decoded key names
 * with every value masked (except a few plain paging fields). Masking by the decoded key means
 * `?%65mail=` or `?access%5Ftoken=` are masked like `?email=`; a key that is not a short plain
 * word (it could be the secret itself, e.g. `?alice@example.com`), or has no value, is masked too.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const path = url.slice(0, q);
  const query = url.slice(q + 1);
  if (query === '') return path;
  const parts = query.split('&').map((pair) => {
    const eq = pair.indexOf('=');
    const key = decodeQueryPart(eq < 0 ? pair : pair.slice(0, eq))?.toLowerCase();
    // A key without a value is no parameter any route reads: it may be a secret typed alone (a
    // device user code, `?BCDFGHJK`, is a short word once lower-cased), so it is masked whole.
    if (key === undefined || eq < 0 || !LOGGABLE_KEY.test(key)) return '[redacted]';
    const value = decodeQueryPart(pair.slice(eq + 1));
    return PLAIN_QUERY_KEYS.has(key) && value !== undefined && PLAIN_VALUE.test(value) ? `${key}=${value}` : `${key}=[redacted]`;
  });
  return `${path}?${parts.join('&')}`;
}

/** pino options: request lines carry method, path (query values masked) and request id, never headers or bodies. */
export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  return {
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'headers.authorization',
        '*.token',
        '*.code',
        '*.secret_access_key',
        '*.session_token',
        '*.signature',
        '*.jwt',
        '*.email',
        // Node's HTTP parse errors carry the request's raw bytes (its Authorization header, its body),
        // which Fastify logs at trace level for a malformed request.
        'err.rawPacket',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: { id: string; method: string; url: string; ip?: string }) => ({ id: req.id, method: req.method, url: redactUrl(req.url), ip: req.ip }),
    },
  };
}
