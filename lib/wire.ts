/**
 * Wire bodies of the broker's public API (docs/contracts.md §4–§6), as TypeScript types. The API
 * produces them and the `agentkeys` CLI consumes them; both import them from here. The session
 * bodies are defined once, as the zod schemas the API's routes answer with (api/schemas.ts
 * re-exports them); their types are inferred from those schemas.
 */
import { z } from 'zod';
import { IDENTITY_TYPES, type Identity } from './omni';
import { SESSION_METHODS } from './login-methods';

export const identitySchema = z.object({ type: z.enum(IDENTITY_TYPES), value: z.string() });

const sessionBearerSchema = z.object({
  token: z.string(),
  token_type: z.literal('Bearer'),
  expires_at: z.number().int().describe('unix seconds'),
  omni_account: z.string(),
});

/** The body of every successful login (docs/contracts.md §5). */
export const loginSessionSchema = sessionBearerSchema.extend({ user_id: z.string(), identity: identitySchema });
export type SessionBody = z.infer<typeof loginSessionSchema>;

/** A session's refresh token as POST /v1/session/refresh_token answers it. */
export const refreshTokenSchema = z.object({
  refresh_token: z.string().describe('opaque; accepted once'),
  refresh_expires_at: z
    .number()
    .int()
    .describe('unix seconds: unused until then it expires (BROKER_REFRESH_IDLE_SECONDS, capped by BROKER_REFRESH_MAX_SECONDS)'),
});
export type RefreshTokenBody = z.infer<typeof refreshTokenSchema>;

/** POST /v1/session/refresh: the bearer part of a session plus the next refresh token. */
export const refreshedSessionSchema = sessionBearerSchema.extend(refreshTokenSchema.shape);
export type RefreshedSessionBody = z.infer<typeof refreshedSessionSchema>;

/** Every error answer: `{"error": kind, "message"}` plus kind-specific fields. */
export interface ErrorBody {
  error: string;
  message: string;
  attempts_left?: number;
  retry_after?: number;
}

export interface EmailCodeBody {
  request_id: string;
  expires_at: number;
  resend_after: number;
}

export interface WalletChallengeBody {
  request_id: string;
  message: string;
  expires_at: number;
}

export interface WalletRecord {
  wallet_index: number;
  address: string | null;
  role: 'main' | 'agent';
}

export interface MeBody {
  omni_account: string;
  user_id: string;
  identity: Identity;
  wallets: WalletRecord[];
  expires_at: number;
}

export interface OidcJwtBody {
  jwt: string;
  wallet: string;
  /** Unix seconds. */
  expiration: number;
}

export interface AwsCredsBody {
  access_key_id: string;
  secret_access_key: string;
  session_token: string;
  /** Unix seconds. */
  expiration: number;
  wallet: string;
}

/** POST /v1/mint-gcp-token (docs/gcp.md). */
export interface GcpTokenBody {
  id_token: string;
  audience: string;
  service_account?: string;
  wallet: string;
  /** Unix seconds. */
  expiration: number;
}

export interface GrantScope {
  services?: string[];
  roles?: string[];
}

export interface GrantBody {
  grant_id: string;
  main_address: string;
  agent_address: string;
  scope: GrantScope;
  expires_at: number | null;
  status?: string;
  revoked_at?: number | null;
}

/** POST /v1/agents/{wallet}/revoke: the kill switch per agent (docs/kill-switch.md). */
export interface AgentRevokedBody {
  agent_address: string;
  /** The grants this call revoked. */
  revoked_grants: string[];
  /** The agent's epochs this call ended, per main wallet: credentials carrying them are denied. */
  ended_epochs: { user_wallet: string; epoch: number }[];
  /** How the deny entries are applied, and until when (unix seconds) they last. */
  kill_switch: { mode: 'off' | 'iam' | 'file'; until: number };
}

export interface AuditEntry {
  seq: number | string;
  event: string;
  outcome: string;
  at: string;
  [field: string]: unknown;
}

/** One login of the account as GET /v1/account/sessions lists it. */
export const accountSessionSchema = z.object({
  session_id: z.string().describe("a keyed digest of the session's id: the jti_hash its login and logout audit rows carry"),
  method: z.string().describe(`how it signed in: ${[...new Set(SESSION_METHODS)].join(', ')} (a refreshed session keeps its login's)`),
  created_at: z.number().int().describe('unix seconds'),
  expires_at: z.number().int().describe('unix seconds'),
  current: z.boolean().describe('the session of this very bearer'),
  bearer_live: z
    .boolean()
    .describe(
      'the login has a bearer not logged out and not expired (then this entry is one of its sessions); false: its bearers are over, and only its refresh token can give it another, until refresh_expires_at',
    ),
  refresh_expires_at: z
    .number()
    .int()
    .nullable()
    .describe(
      'unix seconds: until when its refresh token can renew it, counted from the token as the refresh counts it (the refresh_expires_at its holder was given, within a second); null when it has none that can',
    ),
});
export type AccountSession = z.infer<typeof accountSessionSchema>;
/** GET /v1/account/sessions. */
export interface AccountSessionsBody {
  sessions: AccountSession[];
}
