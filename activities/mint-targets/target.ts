import { z, type ZodObject, type ZodRawShape, type ZodType } from 'zod';
import type { Config } from '../../lib/config';
import type { GrantScope } from '../../lib/grant-scope';
import { MintActivityFailure, type MintGrant, type MintParams } from '../../workflows/mint.definitions';
import type { ActivityDeps } from '../deps';

/**
 * One credential a mint can hand out (AWS credentials, a bare OIDC token, a Google Cloud
 * federation token, …): everything that differs between targets, in one module per target, so
 * the route, the workflow, the activity and the grant scope stay the same for all of them (the
 * model is a secrets backend per credential type, each declaring its path, fields and callback:
 * hashicorp/vault `builtin/logical/aws/path_sts.go` @2075c8b). Registered in one line of
 * ./index.ts.
 *
 * Each check lives in one layer: the body's shape in `body` (the route validates it), whether the
 * broker can mint it at all in `unavailable` (the route, before a workflow starts), who may mint
 * it under a grant in `authorise` (the activity, against the grant's scope), what the outside
 * says in `exchange` (the activity).
 */
export interface MintTarget<P extends MintParams = MintParams> {
  /** The registry key, the audit events `mint.<name>` / `mint.<name>.intent`, the metrics label. */
  name: string;
  /** The HTTP route (docs/contracts.md §4). */
  path: string;
  /** OpenAPI summary and the workflow's summary in the Temporal UI (fixed words: no account, no address). */
  summary: string;
  description: string;
  /**
   * The body fields besides grant_id (zod shape; unknown fields are ignored). A target with a
   * required field needs a body: one missing or `null` is refused as `{}` is (bodyRequired).
   */
  body(config: Config): ZodRawShape;
  /** Whether the body may carry a signed intent (lib/mint-intent.ts, the v2 body). */
  signedIntent?: boolean;
  /** The 200 answer: the unsealed secret fields, the public ones, wallet and expiration. */
  response: ZodObject;
  /** Why this broker cannot mint the target at all (a missing setting), or undefined. */
  unavailable?(config: Config): string | undefined;
  /** The workflow's parameters from a validated body (no secrets: they are in the flow's history). */
  params(body: Record<string, unknown>, config: Config): P;
  /**
   * The grant scope's sections this target reads (validated when a grant is offered). A grant
   * whose scope restricts anything mints only the targets whose section it names.
   */
  scope: Record<string, ZodType>;
  /** Why a grant with this (non-empty) scope may not mint with these parameters, or undefined. */
  authorise(scope: GrantScope, params: P, config: Config): string | undefined;
  /** The intent row's target details (parameters, never secrets). */
  intentDetails(params: P): AuditDetails;
  /**
   * Whether the exchange sends anything out of the broker (AWS: the token to STS). Its intent row
   * is then durable before the exchange; a target that only signs writes its intent row in the
   * outcome row's transaction, still before anything leaves.
   */
  reachesOutside: boolean;
  /** Mints: signs, and exchanges where the target has an exchange. */
  exchange(ctx: MintContext, params: P): Promise<Exchanged>;
  /** How a failure of `exchange` reads: the wire failure, whether another try may help. */
  classify(e: unknown, config: Config): ExchangeFailure;
  /** Tries of the exchange within one mint (1 = no retry), and the pauses between them. */
  attempts: number;
  backoffMs: number[];
}

export type AuditDetails = Record<string, string | number | boolean | null>;

/** What the exchange has to work with. */
export interface MintContext {
  deps: ActivityDeps;
  /** The wallet the mint is for (lib/oidc-claims.ts). */
  wallet: string;
  grant?: MintGrant;
  /** The caller's AgentKeys actor identifier (lib/actor-omni.ts). */
  actorId: string;
  /** Which try of the exchange this is (1 = first). */
  attempt: number;
  /** Signs one OIDC token for `audience` with the active key; extra claims are merged in. */
  sign(audience: string, extra?: Record<string, unknown>, grant?: MintGrant): Promise<SignedToken>;
}

export interface SignedToken {
  jwt: string;
  kid: string;
  /** Keyed digest of the token: the audit log's handle on it. */
  jwtHash: string;
  /** Unix seconds. */
  expiration: number;
  nowSeconds: number;
}

export interface Exchanged {
  /** Sealed to the API's one-request key; never in the history or the audit log. */
  secret: Record<string, string>;
  /** Not secret: answered as is and recorded (access key id, audience, …). */
  public: MintParams;
  /** Unix seconds. */
  expiration: number;
  /** The ok row's target details: ids and digests, never secrets. */
  audit: AuditDetails;
}

export interface ExchangeFailure {
  /** The ApplicationFailure type the API maps to its wire error (a FailureType or MintActivityFailure). */
  type: string;
  /** The search attribute outcome the run ends with (e.g. sts_error). */
  outcome: string;
  /** The failed row's target details (e.g. the STS error code). */
  details: AuditDetails;
  retryable: boolean;
  message: string;
}

/**
 * Whether a request for the target must carry a body: when `{}` does not satisfy its fields (one of
 * them is required, e.g. gcp's audience). Derived from `body`, so the rule cannot drift from the
 * fields: the route makes such a body required (a missing or `null` one is a 400, as `{}` is) and
 * optional for the others (an empty POST reads as `{}`).
 */
export function bodyRequired(target: Pick<MintTarget, 'body'>, config: Config): boolean {
  return !z.object(target.body(config)).safeParse({}).success;
}

/** Raised by `sign` when the OIDC keyset is unusable: never retried (the operator's to fix). */
export class MintSigningError extends Error {
  override name = 'MintSigningError';
}

/** A target whose exchange only signs (nothing outside to retry): one try, and a failure is the signing key's. */
export const SIGN_ONLY: Pick<MintTarget, 'classify' | 'attempts' | 'backoffMs'> = {
  classify: (e) => ({
    type: MintActivityFailure.signingFailed,
    outcome: 'failed',
    details: {},
    retryable: false,
    message: (e as Error).message || 'signing failed',
  }),
  attempts: 1,
  backoffMs: [],
};
