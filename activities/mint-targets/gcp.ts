import { z } from 'zod';
import { BrokerError, FailureType } from '../../lib/errors';
import { userWalletValue } from '../../lib/oidc-claims';
import { SIGN_ONLY, type MintTarget } from './target';

/**
 * An OIDC token for Google Cloud workload identity federation (`POST /v1/mint-gcp-token`, docs/gcp.md):
 * its `aud` is the pool provider (`//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/R`).
 * The broker only signs; Google's client libraries exchange it themselves at Google's STS (an
 * external-account credential file whose executable is `agentkeys mint gcp --executable`), and
 * optionally impersonate a service account with the federated token.
 *
 * Scope (`gcp.audiences`, `gcp.service_accounts`): which pool providers the agent may get a token
 * for, and which service account it may impersonate. The service account goes into the token as
 * `agentkeys_gcp_service_account`, so the provider's attribute mapping can make it a principal
 * attribute and the service account's IAM policy can grant roles/iam.workloadIdentityUser on it
 * alone (the broker cannot see the impersonation call; Google enforces it from the claim).
 *
 * Under a grant the token's subject is the grant's (`gcpSubject`), not its holder's: Google can
 * hold an agent to its service accounts only through impersonation, so a role bound to the
 * holder's own principal (`…/subject/agentkeys:agent:<wallet>`) must not reach the holder's agents.
 */

export const GCP_AUDIENCE_RE =
  /^\/\/iam\.googleapis\.com\/projects\/\d{1,20}\/locations\/global\/workloadIdentityPools\/[a-z0-9-]{4,32}\/providers\/[a-z0-9-]{4,32}$/;
export const GCP_SERVICE_ACCOUNT_RE = /^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$/;
export const GCP_SERVICE_ACCOUNT_CLAIM = 'agentkeys_gcp_service_account';

const AUDIENCE_FORM =
  'a workload identity pool provider: //iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>';
const audience = z.string().regex(GCP_AUDIENCE_RE, `audience must be ${AUDIENCE_FORM}`);
const serviceAccount = z.string().regex(GCP_SERVICE_ACCOUNT_RE, 'service_account must be a service account email (<name>@<project>.iam.gserviceaccount.com)');
const MAX_ENTRIES = 16;
const unique = (items: string[]) => new Set(items).size === items.length;

/** The exchange found no valid audience in its parameters: refused as a bad request, before anything is signed. */
class GcpAudienceError extends Error {
  override name = 'GcpAudienceError';
}

type GcpParams = { audience: string; service_account?: string };

/**
 * The `sub` (Google's `google.subject`, at most 127 bytes) of a Google Cloud token: the holder's
 * own, `agentkeys:agent:<user wallet>`, as on every target; under a grant
 * `agentkeys:agent:<user wallet>:grant:<grant id>` (101 bytes), one principal per grant, which
 * nothing is bound to until its holder binds it.
 */
export function gcpSubject(userWallet: string, grantId: string | undefined): string {
  return grantId === undefined ? `agentkeys:agent:${userWallet}` : `agentkeys:agent:${userWallet}:grant:${grantId}`;
}

export const gcpTarget: MintTarget<GcpParams> = {
  name: 'gcp',
  path: '/v1/mint-gcp-token',
  summary: 'Mint: Google Cloud token',
  description:
    'Authorises the caller, audits the intent, signs an OIDC JWT for a workload identity pool provider and audits the outcome, in one step. Stages: started → done.',
  body: () => ({ audience, service_account: serviceAccount.optional() }),
  response: z.object({
    id_token: z.string(),
    audience: z.string(),
    service_account: z.string().optional(),
    expiration: z.number().int().describe('unix seconds'),
    wallet: z.string(),
  }),
  params: (body) => {
    // The route's schema requires it (bodyRequired); never let a token go out with another target's audience.
    if (typeof body.audience !== 'string') throw new BrokerError('bad_request', `audience is required: ${AUDIENCE_FORM}`);
    return {
      audience: body.audience,
      ...(typeof body.service_account === 'string' ? { service_account: body.service_account } : {}),
    };
  },
  scope: {
    gcp: z
      .object({
        audiences: z.array(audience).min(1).max(MAX_ENTRIES).refine(unique, 'scope.gcp.audiences has a duplicate entry').optional(),
        service_accounts: z.array(serviceAccount).min(1).max(MAX_ENTRIES).refine(unique, 'scope.gcp.service_accounts has a duplicate entry').optional(),
      })
      .strict()
      .optional(),
  },
  authorise(scope, params) {
    const gcp = (scope.gcp ?? {}) as { audiences?: string[]; service_accounts?: string[] };
    if (gcp.audiences?.length && !gcp.audiences.includes(params.audience)) return `does not allow the audience ${params.audience} (scope.gcp.audiences)`;
    if (gcp.service_accounts?.length) {
      if (params.service_account === undefined)
        return 'allows only impersonating its service accounts: name one in service_account (scope.gcp.service_accounts)';
      if (!gcp.service_accounts.includes(params.service_account))
        return `does not allow the service account ${params.service_account} (scope.gcp.service_accounts)`;
    }
    return undefined;
  },
  intentDetails: (params) => ({ audience: params.audience, service_account: params.service_account ?? null }),
  reachesOutside: false,
  async exchange(ctx, params) {
    // Checked again where it is signed: the parameters come from the flow's history, and a run (or
    // an approval request) started before a check was added carries whatever passed then.
    if (typeof params.audience !== 'string' || !GCP_AUDIENCE_RE.test(params.audience))
      throw new GcpAudienceError(`the mint names no workload identity pool provider as its audience (${AUDIENCE_FORM}); nothing was signed`);
    const subject = gcpSubject(userWalletValue(ctx.wallet, ctx.actorId), ctx.grant?.grantId);
    const extra: Record<string, unknown> = params.service_account ? { [GCP_SERVICE_ACCOUNT_CLAIM]: params.service_account } : {};
    if (ctx.grant) extra.sub = subject;
    // The grant's AWS sections mean nothing to Google: the token carries the grant, not its AWS scope.
    const grant = ctx.grant ? { ...ctx.grant, scope: {} } : undefined;
    const signed = await ctx.sign(params.audience, extra, grant);
    return {
      secret: { id_token: signed.jwt },
      public: { audience: params.audience, ...(params.service_account ? { service_account: params.service_account } : {}) },
      expiration: signed.expiration,
      audit: {
        audience: params.audience,
        service_account: params.service_account ?? null,
        subject,
        kid: signed.kid,
        jwt_hash: signed.jwtHash,
        expiration: signed.expiration,
      },
    };
  },
  ...SIGN_ONLY,
  classify: (e, config) =>
    e instanceof GcpAudienceError
      ? { type: FailureType.badRequest, outcome: 'failed', details: {}, retryable: false, message: e.message }
      : SIGN_ONLY.classify(e, config),
};
