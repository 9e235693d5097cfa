import { z } from 'zod';
import { SIGN_ONLY, type MintTarget } from './target';

/**
 * A bare OIDC token for STS AssumeRoleWithWebIdentity (`POST /v1/mint-oidc-jwt`): the caller
 * presents it to STS itself. It can be presented for any role that trusts the broker, without a
 * session policy, so the broker cannot make STS enforce a grant's scope on it: a grant with any
 * scope does not mint it (its section list is empty).
 */
export const oidcTarget: MintTarget<Record<string, never>> = {
  name: 'oidc',
  path: '/v1/mint-oidc-jwt',
  summary: 'Mint: OIDC JWT',
  description: 'Authorises the caller, audits the intent, signs an OIDC JWT for STS and audits the outcome, in one step. Stages: started → done.',
  body: () => ({}),
  response: z.object({ jwt: z.string(), wallet: z.string(), expiration: z.number().int().describe('unix seconds') }),
  params: () => ({}),
  scope: {},
  authorise: () => undefined,
  intentDetails: () => ({}),
  reachesOutside: false,
  async exchange(ctx) {
    const signed = await ctx.sign(ctx.deps.config.BROKER_STS_AUDIENCE);
    return {
      secret: { jwt: signed.jwt },
      public: {},
      expiration: signed.expiration,
      audit: { kid: signed.kid, jwt_hash: signed.jwtHash, expiration: signed.expiration },
    };
  },
  ...SIGN_ONLY,
};
