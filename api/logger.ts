import type { FastifyServerOptions } from 'fastify';

/** Query parameters whose values are secrets or personal data, masked in request logs. */
const SENSITIVE_QUERY = /([?&](?:email|to|code|state|token|id_token|access_token|signature)=)[^&]*/gi;

export function redactUrl(url: string): string {
  return url.replace(SENSITIVE_QUERY, '$1[redacted]');
}

/** pino options: request lines carry method, path (sensitive query values masked) and request id, never headers or bodies. */
export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  return {
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', '*.token', '*.code', '*.secret_access_key', '*.session_token', '*.signature', '*.jwt', '*.email'],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: { id: string; method: string; url: string; ip?: string }) => ({ id: req.id, method: req.method, url: redactUrl(req.url), ip: req.ip }),
    },
  };
}
