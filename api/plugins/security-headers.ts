import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Security headers on every answer (@fastify/helmet): `nosniff`, `X-Frame-Options: DENY`, no
 * referrer, same-origin opener and resource policies, and a Content-Security-Policy that lets a
 * JSON answer load nothing and be framed by no one. The /docs UI sets its own, wider policy
 * (api/plugins/docs.ts). HSTS only when the public URL is https (a plain-http dev broker must not
 * pin browsers to https).
 */
export const API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export default fp(
  async function securityHeadersPlugin(app: FastifyInstance) {
    const https = app.deps.config.publicUrl.startsWith('https:');
    await app.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
      },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      strictTransportSecurity: https ? { maxAge: 31_536_000, includeSubDomains: false } : false,
    });
  },
  { name: 'security-headers' },
);
