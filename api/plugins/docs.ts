import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';

/** OpenAPI document built from the routes' zod schemas, browsable at /docs. */
export default fp(
  async function docsPlugin(app: FastifyInstance) {
    await app.register(swagger, {
      openapi: {
        info: {
          title: 'agentkeys-broker',
          description: 'Authentication and credential broker of AgentKeys. Errors are {"error": kind, "message": text}.',
          version: '0.1.0',
        },
        servers: [{ url: app.deps.config.publicUrl }],
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      },
      transform: jsonSchemaTransform,
    });
    // The UI's own policy (it replaces the API's on /docs): its scripts, styles and images from
    // this origin (inline styles and data: images, which swagger-ui uses), "Try it out" calls to
    // the public URL, no framing, no plugins, no third-party validator.
    const publicOrigin = new URL(app.deps.config.publicUrl).origin;
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      validatorUrl: false,
      staticCSP: [
        "default-src 'self'",
        "base-uri 'self'",
        `connect-src 'self' ${publicOrigin}`,
        "font-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "img-src 'self' data:",
        "object-src 'none'",
        "script-src 'self'",
        "script-src-attr 'none'",
        "style-src 'self' 'unsafe-inline'",
      ].join('; '),
    });
  },
  { name: 'docs' },
);
