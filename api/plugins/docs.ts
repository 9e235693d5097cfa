import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { OpsDocsHandler } from '../../adapters/ops-listener';
import type { Config } from '../../lib/config';
import { BrokerError } from '../../lib/errors';
import { API_CSP } from './security-headers';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The /docs UI for the ops listener (adapters/ops-listener.ts) when it is served there
     * (BROKER_DOCS_UI=ops, the production default); null when it is not.
     */
    opsDocs: OpsDocsHandler | null;
  }
}

/** Where the interactive /docs UI (Swagger UI) is served. */
export type DocsUiPlace = 'public' | 'ops' | 'off';

/**
 * BROKER_DOCS_UI, or its default: the public listener in development (`npm start`: the README's
 * /docs), the ops listener in production. The console keeps its bearer in sessionStorage on the
 * public origin, which a DOM flaw in Swagger UI served there could read (docs/security.md).
 */
export function docsUiPlace(config: Pick<Config, 'BROKER_DOCS_UI' | 'isProduction'>): DocsUiPlace {
  return config.BROKER_DOCS_UI ?? (config.isProduction ? 'ops' : 'public');
}

/** The UI's policy on the public listener: "Try it out" calls go to this origin and the public URL. */
function publicDocsCsp(publicOrigin: string): string {
  return docsCsp(`'self' ${publicOrigin}`);
}

/**
 * The UI's own policy (it replaces the API's on /docs): its scripts, styles and images from its
 * origin (inline styles and data: images, which swagger-ui uses), fetches to `connect`, no framing,
 * no plugins, no third-party validator.
 */
function docsCsp(connect: string): string {
  return [
    "default-src 'self'",
    "base-uri 'self'",
    `connect-src ${connect}`,
    "font-src 'self' data:",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "img-src 'self' data:",
    "object-src 'none'",
    "script-src 'self'",
    "script-src-attr 'none'",
    "style-src 'self' 'unsafe-inline'",
  ].join('; ');
}

/**
 * The ops listener's /docs: a Fastify app of its own holding the public app's OpenAPI document
 * (read once it is complete) and Swagger UI, on another origin than the console's. "Try it out" is
 * off there: the UI's origin is not the API's, which answers no CORS, so a call could not be read.
 */
async function opsDocsApp(document: object): Promise<FastifyInstance> {
  const docs = Fastify({ logger: false });
  docs.addHook('onSend', async (_request, reply) => {
    void reply.headers({
      'content-security-policy': API_CSP,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'cache-control': 'no-store',
    });
  });
  await docs.register(swagger, { mode: 'static', specification: { document: document as never } });
  await docs.register(swaggerUi, {
    routePrefix: '/docs',
    validatorUrl: false,
    uiConfig: { supportedSubmitMethods: [] },
    staticCSP: docsCsp("'self'"),
  });
  await docs.ready();
  return docs;
}

/**
 * OpenAPI document built from the routes' zod schemas, at /docs/json (and /docs/yaml) on the public
 * listener always, and browsable (Swagger UI) at /docs where docsUiPlace says: the public listener,
 * the ops listener, or nowhere. Off the public listener, /docs there is a 404 saying where it went.
 */
export default fp(
  async function docsPlugin(app: FastifyInstance) {
    const { config } = app.deps;
    const place = docsUiPlace(config);
    await app.register(swagger, {
      openapi: {
        info: {
          title: 'agentkeys-broker',
          description: 'Authentication and credential broker of AgentKeys. Errors are {"error": kind, "message": text}.',
          version: '0.1.0',
        },
        servers: [{ url: config.publicUrl }],
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      },
      transform: jsonSchemaTransform,
    });
    if (place === 'public') {
      await app.register(swaggerUi, { routePrefix: '/docs', validatorUrl: false, staticCSP: publicDocsCsp(new URL(config.publicUrl).origin) });
      app.decorate('opsDocs', null);
      return;
    }

    // The document stays public (clients, the nginx route test, scripts/cluster-faults.ts read it); the UI does not.
    app.get('/docs/json', { schema: { hide: true } }, () => app.swagger());
    app.get('/docs/yaml', { schema: { hide: true } }, (_request, reply) => reply.type('application/x-yaml').send(app.swagger({ yaml: true })));
    const elsewhere = () => {
      throw new BrokerError(
        'not_found',
        place === 'ops'
          ? 'the API reference page is served on the ops listener (BROKER_OPS_HOST:BROKER_OPS_PORT, /docs), not here (BROKER_DOCS_UI); the OpenAPI document is at /docs/json'
          : 'the API reference page is off (BROKER_DOCS_UI); the OpenAPI document is at /docs/json',
      );
    };
    app.get('/docs', { schema: { hide: true } }, elsewhere);
    app.get('/docs/*', { schema: { hide: true } }, elsewhere);
    if (place === 'off') {
      app.decorate('opsDocs', null);
      return;
    }

    let docs: FastifyInstance | undefined;
    app.addHook('onReady', async () => {
      docs = await opsDocsApp(app.swagger());
    });
    app.addHook('onClose', async () => {
      await docs?.close();
    });
    app.decorate('opsDocs', ((req, res) => {
      if (docs) docs.routing(req, res);
      else res.writeHead(503, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end('not ready\n');
    }) satisfies OpsDocsHandler);
  },
  { name: 'docs' },
);
