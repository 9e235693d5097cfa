import type { Client } from '@temporalio/client';
import type { Db } from '../db/pool';
import type { Config } from '../lib/config';
import type { OidcKeyStore } from '../adapters/oidc-keys';
import type { BrokerSecrets } from '../adapters/secrets';
import type { TeeTokenVerifier } from '../adapters/tee-jwt';
import type { BrokerError } from '../lib/errors';
import type { ReadinessCheck } from '../lib/readiness';

export type { ReadinessCheck } from '../lib/readiness';
export type { TeeTokenClaims, TeeTokenVerifier } from '../adapters/tee-jwt';

export interface CapturedMail {
  to: string;
  subject: string;
  text: string;
  received_at: string;
}

/** Everything the API needs; built by api/main.ts, the stack runner or a test. */
export interface ApiDeps {
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
  temporal: Client;
  /** Dev profile only: the SES stand-in's captured mail, served at GET /_dev/mail. */
  devMailbox?: { mailTo(address: string): CapturedMail[] };
  /** Extra parts for /readyz beyond database, Temporal and keys. */
  readiness?: Record<string, ReadinessCheck>;
  /** Verifies Heima TEE RS256 JWTs (docs/contracts.md §2); absent when no TEE key is configured. */
  teeVerifier?: TeeTokenVerifier;
  /** Milliseconds since the epoch; tests may shift it. */
  now?: () => number;
  /**
   * `temporal` is built on the NativeConnection of a worker polling BROKER_TASK_QUEUE in this
   * process: workflow starts ask for eager execution (the first task comes back in the start
   * answer instead of through the matching service). Default false: a normal start.
   */
  eagerWorkflowStart?: boolean;
  /** The OIDC issuer keyset served at /.well-known/jwks.json; default: OidcKeyStore.fromConfig(config). */
  oidcKeys?: OidcKeyStore;
}

export interface AuthContext {
  /** Which kind of bearer: a broker session or a TEE access JWT. */
  kind: 'session' | 'tee';
  omniAccount: string;
  /** Session id (broker sessions only): what logout revokes. */
  jti?: string;
  /** Keyed digest of a TEE access token (TEE bearers only): what logout records as revoked. */
  teeTokenDigest?: string;
  /** Unix seconds. */
  expiresAt: number;
  /** Login method of a broker session. */
  method?: string;
  /** The EVM address of a wallet-login session. */
  wallet?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    deps: ApiDeps;
    /** preHandler that requires a valid bearer and sets request.auth. */
    requireAuth: (request: FastifyRequest) => Promise<void>;
    /** Every part /readyz reports on, by name. */
    readinessChecks: Map<string, ReadinessCheck>;
    /** Adds a /readyz part (a name already present is kept: deps given by the caller win). */
    addReadinessCheck: (name: string, check: ReadinessCheck) => void;
    /** Awaits a Temporal call under the flow deadline and maps its failures to wire errors (api/plugins/flow-deadline.ts). */
    driveFlow: <T>(call: () => Promise<T>, notFound?: BrokerError) => Promise<T>;
  }
  interface FastifyRequest {
    auth?: AuthContext;
  }
}
