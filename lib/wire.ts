/**
 * Wire bodies of the broker's public API (docs/contracts.md §4–§6), as TypeScript types. The API
 * produces them and the `agentkeys` CLI consumes them; both import them from here.
 */
import type { Identity } from './omni';

/** The body of every successful login (docs/contracts.md §5). */
export interface SessionBody {
  token: string;
  token_type: 'Bearer';
  /** Unix seconds. */
  expires_at: number;
  omni_account: string;
  user_id: string;
  identity: Identity;
}

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

export interface AuditEntry {
  seq: number | string;
  event: string;
  outcome: string;
  at: string;
  [field: string]: unknown;
}
