import { randomBytes } from 'node:crypto';
import type { BrokerSecrets } from '../adapters/secrets';
import { appendAudit } from '../db/audit';
import { withTransaction, type Db } from '../db/pool';
import { familyOfRefreshToken, insertRefreshToken, lockRefreshFamily, lockRefreshToken, markRefreshTokenUsed, endRefreshFamily } from '../db/refresh-tokens';
import { insertSession, lockSession, revokeSessions } from '../db/sessions';
import type { Config } from '../lib/config';
import { hmacHex } from '../lib/digest';
import { BrokerError } from '../lib/errors';
import { signSessionToken, type LoginMethod } from '../lib/session-token';
import type { RefreshedSession, RefreshTokenAnswer } from './schemas';

/**
 * Refresh tokens (docs/security.md "Refresh tokens"). Opaque (`akr_` + 32 random bytes,
 * base64url), kept only as a keyed digest. A session claims one (once); each is traded once for a
 * new session and a new token of the same family. A spent token presented again — a copy in
 * someone else's hands, or two holders racing — revokes the family and every session it issued,
 * with a `session.refresh_reuse` audit row. Every refusal is the same 401 and changes nothing but
 * that revocation. Each function is one transaction with its audit row.
 *
 * Checks here: every rule of refresh tokens (once per session and only while the session is live,
 * the family's age, spent, revoked or expired tokens). The route checks only the body's form and the bearer's kind.
 */
export interface RefreshDeps {
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
}

const digestOf = (secrets: BrokerSecrets, token: string) => hmacHex(secrets.hmacSecret, 'refresh-token', token);
const auditHash = (secrets: BrokerSecrets, v: string) => hmacHex(secrets.hmacSecret, 'audit-refresh', v).slice(0, 32);
const newToken = () => `akr_${randomBytes(32).toString('base64url')}`;

function expiresAt(config: Config, createdMs: number, familyStartedMs: number): number {
  return Math.floor(Math.min(createdMs + config.BROKER_REFRESH_IDLE_SECONDS * 1000, familyStartedMs + config.BROKER_REFRESH_MAX_SECONDS * 1000) / 1000);
}

/** The first refresh token of a broker session (the login's bearer): once per session. */
export async function claimRefreshToken(
  deps: RefreshDeps,
  auth: { omniAccount: string; jti: string; method?: LoginMethod; wallet?: string },
  requestId: string,
): Promise<RefreshTokenAnswer> {
  const token = newToken();
  const familyId = randomBytes(16).toString('hex');
  const now = Date.now();
  const started = await withTransaction(deps.db, async (tx) => {
    // Locked, and live: a logout that committed since the bearer was checked refuses the claim here,
    // and one still running waits for this claim and then ends the family it starts (services/sessions.ts).
    const session = await lockSession(tx, auth.jti);
    if (!session || session.revoked_at) throw new BrokerError('unauthorized', 'session has been logged out');
    const issued = session.created_at;
    if (issued.getTime() + deps.config.BROKER_REFRESH_MAX_SECONDS * 1000 <= now)
      throw new BrokerError('conflict', 'this session is too old to start renewing; log in again');
    const fresh = await insertRefreshToken(tx, {
      digest: digestOf(deps.secrets, token),
      familyId,
      omniAccount: auth.omniAccount,
      method: auth.method ?? 'wallet',
      wallet: auth.wallet,
      sessionJti: auth.jti,
      familyStartedAt: issued,
    });
    if (!fresh) throw new BrokerError('conflict', 'this session already has a refresh token (each session gets one; a refreshed session comes with its own)');
    await appendAudit(tx, {
      event: 'session.refresh_claim',
      outcome: 'ok',
      omniAccount: auth.omniAccount,
      requestId,
      idemKey: `session.refresh_claim:${auditHash(deps.secrets, auth.jti)}`,
      details: { family_hash: auditHash(deps.secrets, familyId), jti_hash: auditHash(deps.secrets, auth.jti) },
    });
    return issued.getTime();
  });
  return { refresh_token: token, refresh_expires_at: expiresAt(deps.config, now, started) };
}

type Outcome =
  | { ok: true; session: Omit<RefreshedSession, 'token' | 'token_type'> & { jti: string; method: LoginMethod; wallet?: string; nowSeconds: number } }
  | { ok: false; message: string };

/** Trades a refresh token for a new session and a new refresh token of its family. */
export async function refreshSession(deps: RefreshDeps, presented: string, requestId: string): Promise<RefreshedSession> {
  const { config, secrets } = deps;
  const digest = digestOf(secrets, presented);
  const outcome = await withTransaction(deps.db, async (tx): Promise<Outcome> => {
    // The family's lock first (a logout of any of its sessions takes it too), then the token's.
    const family = await familyOfRefreshToken(tx, digest);
    if (family) await lockRefreshFamily(tx, family);
    const row = await lockRefreshToken(tx, digest);
    if (!row) return { ok: false, message: 'unknown refresh token; log in again' };
    if (row.revoked_at) return { ok: false, message: 'this refresh token has been revoked; log in again' };
    if (row.used_at) {
      // Spent before: whoever holds the family's newer tokens may not be the owner. End them all.
      const sessions = await revokeSessions(tx, (await endRefreshFamily(tx, row.family_id)).sessionJtis);
      await appendAudit(tx, {
        event: 'session.refresh_reuse',
        outcome: 'denied',
        omniAccount: row.omni_account,
        requestId,
        idemKey: `session.refresh_reuse:${auditHash(secrets, digest)}`,
        details: { family_hash: auditHash(secrets, row.family_id), sessions_revoked: sessions },
      });
      return { ok: false, message: 'this refresh token was already used: its family and sessions are revoked; log in again' };
    }
    const nowMs = Date.now();
    if (nowMs >= expiresAt(config, row.created_at.getTime(), row.family_started_at.getTime()) * 1000)
      return { ok: false, message: 'this refresh token has expired; log in again' };
    await markRefreshTokenUsed(tx, digest);
    const token = newToken();
    const jti = randomBytes(16).toString('hex');
    const nowSeconds = Math.floor(nowMs / 1000);
    const sessionExpires = nowSeconds + config.BROKER_LOGIN_SESSION_TTL_SECONDS;
    await insertSession(tx, { jti, omniAccount: row.omni_account, method: row.method, expiresAt: new Date(sessionExpires * 1000) });
    await insertRefreshToken(tx, {
      digest: digestOf(secrets, token),
      familyId: row.family_id,
      omniAccount: row.omni_account,
      method: row.method,
      wallet: row.wallet ?? undefined,
      sessionJti: jti,
      familyStartedAt: row.family_started_at,
    });
    await appendAudit(tx, {
      event: 'session.refresh',
      outcome: 'ok',
      omniAccount: row.omni_account,
      requestId,
      idemKey: `session.refresh:${auditHash(secrets, digest)}`,
      details: { family_hash: auditHash(secrets, row.family_id), jti_hash: auditHash(secrets, jti) },
    });
    return {
      ok: true,
      session: {
        expires_at: sessionExpires,
        omni_account: row.omni_account,
        refresh_token: token,
        refresh_expires_at: expiresAt(config, nowMs, row.family_started_at.getTime()),
        jti,
        method: row.method as LoginMethod,
        wallet: row.wallet ?? undefined,
        nowSeconds,
      },
    };
  });
  if (!outcome.ok) throw new BrokerError('unauthorized', outcome.message);
  const s = outcome.session;
  const { token } = await signSessionToken(secrets.sessionKey, {
    issuer: config.publicUrl,
    omniAccount: s.omni_account,
    jti: s.jti,
    method: s.method,
    wallet: s.wallet,
    nowSeconds: s.nowSeconds,
    ttlSeconds: s.expires_at - s.nowSeconds,
  });
  return {
    token,
    token_type: 'Bearer',
    expires_at: s.expires_at,
    omni_account: s.omni_account,
    refresh_token: s.refresh_token,
    refresh_expires_at: s.refresh_expires_at,
  };
}
