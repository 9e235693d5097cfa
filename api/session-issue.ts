import type { BrokerSecrets } from '../adapters/secrets';
import type { Config } from '../lib/config';
import { signSessionToken } from '../lib/session-token';
import type { LoginOutcome } from '../workflows/definitions';
import type { LoginSession } from './schemas';

/**
 * Turns what a login flow returns into the wire session (docs/contracts.md §5): the API signs the
 * bearer here, after the flow has returned, with the session key only API processes hold — so a
 * workflow history (readable by operators through the codec endpoint) carries the session's jti
 * and times but never a token that works. Every flow's winner passes through here exactly once;
 * the token's iat/exp are the ones the session row was recorded with.
 */
export async function issueSession(deps: { config: Config; secrets: BrokerSecrets }, result: LoginOutcome): Promise<LoginSession> {
  const { token } = await signSessionToken(deps.secrets.sessionKey, {
    issuer: deps.config.publicUrl,
    omniAccount: result.omni_account,
    jti: result.jti,
    method: result.method,
    wallet: result.wallet,
    nowSeconds: result.issued_at,
    ttlSeconds: result.expires_at - result.issued_at,
  });
  return { token, token_type: 'Bearer', expires_at: result.expires_at, omni_account: result.omni_account, user_id: result.user_id, identity: result.identity };
}
