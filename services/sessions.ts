/**
 * Who a bearer is, and logout: for a broker session and for a TEE access token. Each logout is one
 * transaction holding the revocation and its audit row; only the call that actually revoked
 * something writes the row, so concurrent or repeated logouts add nothing.
 *
 * Checks here: whether the session or TEE token was already revoked. That the bearer is valid is
 * checked before (api/plugins/auth.ts).
 */
import type { BrokerSecrets } from '../adapters/secrets';
import { appendAudit } from '../db/audit';
import { withTransaction, type Db, type Queryable } from '../db/pool';
import { refreshFamilyOfSession, revokeRefreshFamily } from '../db/refresh-tokens';
import { revokeSession, revokeSessions, revokeTeeToken } from '../db/sessions';
import { findUserByOmni, listWallets, type UserRow, type WalletRow } from '../db/users';
import { hmacHex } from '../lib/digest';

export interface SessionServiceDeps {
  secrets: BrokerSecrets;
  db: Db;
}

/** The bearer being logged out (api/dependencies.ts AuthContext has this shape). */
export type LogoutCaller =
  | { kind: 'session'; omniAccount: string; jti: string; method?: string }
  | { kind: 'tee'; omniAccount: string; teeTokenDigest: string; /** Unix seconds: the token's exp. */ expiresAt: number };

/** The account behind a bearer: its user row (if any) and its wallets. */
export async function describeAccount(deps: { db: Db }, omniAccount: string): Promise<{ user: UserRow | undefined; wallets: WalletRow[] }> {
  const [user, wallets] = await Promise.all([findUserByOmni(deps.db, omniAccount), listWallets(deps.db, omniAccount)]);
  return { user, wallets };
}

/** Logout of a session ends its refresh family: the refresh token in hand and the sessions it issued. */
export async function revokeFamilyOfSession(tx: Queryable, jti: string): Promise<number> {
  const family = await refreshFamilyOfSession(tx, jti);
  return family ? revokeSessions(tx, await revokeRefreshFamily(tx, family)) : 0;
}

/**
 * Revokes the bearer. A TEE token is recorded as logged out until its own exp (the TEE keeps no
 * revocation list); a broker session is revoked with its refresh family. Idempotent.
 */
export async function logout(deps: SessionServiceDeps, caller: LogoutCaller, requestId: string): Promise<void> {
  const { db, secrets } = deps;
  if (caller.kind === 'tee') {
    const tokenDigest = caller.teeTokenDigest;
    await withTransaction(db, async (tx) => {
      if (!(await revokeTeeToken(tx, { tokenDigest, omniAccount: caller.omniAccount, expiresAt: new Date(caller.expiresAt * 1000) }))) return;
      const tokenHash = hmacHex(secrets.hmacSecret, 'audit-tee-token', tokenDigest).slice(0, 32);
      await appendAudit(tx, {
        event: 'session.logout',
        outcome: 'ok',
        omniAccount: caller.omniAccount,
        requestId,
        idemKey: `session.logout:tee:${tokenHash}`,
        details: { tee_token_hash: tokenHash, method: 'tee' },
      });
    });
    return;
  }
  const { jti } = caller;
  await withTransaction(db, async (tx) => {
    const family = await revokeFamilyOfSession(tx, jti);
    if (!(await revokeSession(tx, jti)) && family === 0) return;
    const jtiHash = hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32);
    await appendAudit(tx, {
      event: 'session.logout',
      outcome: 'ok',
      omniAccount: caller.omniAccount,
      requestId,
      idemKey: `session.logout:${jtiHash}`,
      details: { jti_hash: jtiHash, method: caller.method ?? null },
    });
  });
}
