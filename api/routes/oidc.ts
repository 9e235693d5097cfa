/**
 * OIDC discovery and JWKS. Checks here: none (public documents).
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BrokerError } from '../../lib/errors';
import { OIDC_CLAIMS_SUPPORTED } from '../../lib/oidc-claims';
import { OidcKeyStore, publishedJwks } from '../../adapters/oidc-keys';
import { errorBody } from '../schemas';

/** Verifiers may cache these documents briefly; a rotation keeps the old key published far longer. */
const PUBLIC_CACHE = 'public, max-age=300';

const jwkSchema = z.object({
  kty: z.literal('EC'),
  crv: z.literal('P-256'),
  x: z.string(),
  y: z.string(),
  kid: z.string(),
  alg: z.literal('ES256'),
  use: z.literal('sig'),
});

/**
 * The OIDC issuer (docs/contracts.md §4): discovery and the JWKS that AWS IAM (and any OIDC verifier)
 * reads to trust the tokens the broker mints. The keyset file is re-read when it changes, so a
 * rotation (`npm run oidc:rotate`) is served without a restart.
 */
export default async function oidcRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config } = app.deps;
  const keys = app.deps.oidcKeys ?? OidcKeyStore.fromConfig(config);
  const now = app.deps.now ?? Date.now;
  // Fail at boot, not at the first mint, when the keyset is missing or unusable (production).
  await keys.current();
  app.addReadinessCheck('oidc_keys', async () => {
    const keyset = await keys.current();
    return { ok: true, detail: `active kid ${keyset.active.kid}, ${publishedJwks(keyset, now()).length} published` };
  });

  app.addHook('onSend', async (request, reply) => {
    if (reply.statusCode === 200 && request.url.startsWith('/.well-known/')) void reply.header('cache-control', PUBLIC_CACHE);
  });

  const issuer = config.publicUrl;

  app.get(
    '/.well-known/openid-configuration',
    {
      schema: {
        tags: ['oidc'],
        summary: 'OIDC discovery document of the broker as a token issuer',
        response: {
          200: z.object({
            issuer: z.string(),
            jwks_uri: z.string(),
            response_types_supported: z.array(z.string()),
            subject_types_supported: z.array(z.string()),
            id_token_signing_alg_values_supported: z.array(z.string()),
            scopes_supported: z.array(z.string()),
            token_endpoint_auth_methods_supported: z.array(z.string()),
            claims_supported: z.array(z.string()),
          }),
        },
      },
    },
    async () => ({
      issuer,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
      scopes_supported: ['openid'],
      token_endpoint_auth_methods_supported: ['none'],
      claims_supported: [...OIDC_CLAIMS_SUPPORTED],
    }),
  );

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['oidc'],
        summary: 'Public keys of the OIDC issuer: the active key and retired keys still within their retention',
        response: { 200: z.object({ keys: z.array(jwkSchema) }), 503: errorBody },
      },
    },
    async (request) => {
      let keyset;
      try {
        keyset = await keys.current();
      } catch (e) {
        request.log.error({ err: e }, 'OIDC keyset unusable');
        throw new BrokerError('unavailable', 'the OIDC keyset is not readable; the operator has been told');
      }
      return { keys: publishedJwks(keyset, now()) as z.infer<typeof jwkSchema>[] };
    },
  );
}
