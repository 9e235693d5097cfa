/** The mint request of `mint aws` and the `credential_process` answer kept with the session. */
import { UsageError } from './errors';
import type { AwsCache, ProfileSession } from './session-store';

/** `credential_process` reuses cached credentials until this long before they expire. */
export const CREDENTIAL_CACHE_MARGIN_SECONDS = 300;

export interface MintOptions {
  duration?: string;
  grantId?: string;
  /** The agent's reason, shown to a holder who approves mints (docs/approvals.md). */
  reason?: string;
}

/** The mint request body for the flags given (undefined when none). */
export function mintBody(o: MintOptions): Record<string, unknown> | undefined {
  const body: Record<string, unknown> = {};
  if (o.duration !== undefined) {
    const d = Number(o.duration);
    if (!Number.isInteger(d) || d < 1) throw new UsageError('--duration takes whole seconds');
    body.duration_seconds = d;
  }
  if (o.grantId !== undefined) body.grant_id = o.grantId;
  if (o.reason !== undefined) body.reason = o.reason;
  return Object.keys(body).length > 0 ? body : undefined;
}

export function cacheKey(body: Record<string, unknown> | undefined): string {
  return JSON.stringify(body ?? {});
}

/** The cached credentials for this request while they have more than the margin left. */
export function cachedCredentials(session: ProfileSession, body: Record<string, unknown> | undefined, nowSeconds: number): AwsCache | undefined {
  const c = session.aws_cache;
  return c && c.key === cacheKey(body) && c.expiration - CREDENTIAL_CACHE_MARGIN_SECONDS > nowSeconds ? c : undefined;
}

/** The AWS CLI/SDK `credential_process` output (Version 1), one line. */
export function credentialProcessLine(c: { access_key_id: string; secret_access_key: string; session_token: string; expiration: number }): string {
  return `${JSON.stringify({
    Version: 1,
    AccessKeyId: c.access_key_id,
    SecretAccessKey: c.secret_access_key,
    SessionToken: c.session_token,
    Expiration: new Date(c.expiration * 1000).toISOString(),
  })}\n`;
}
