import { randomBytes } from 'node:crypto';
import type { BrokerSecrets } from '../adapters/secrets';
import { appendAudit } from '../db/audit';
import { withTransaction, type Db, type Queryable } from '../db/pool';
import {
  endRefreshFamily,
  familyOfRefreshToken,
  insertRefreshToken,
  lockRefreshFamily,
  lockRefreshToken,
  markRefreshTokenUsed,
  recentTokensOfFamily,
} from '../db/refresh-tokens';
import { insertSession, lockSession, revokeSessionsOfFamily } from '../db/sessions';
import type { Config } from '../lib/config';
import { hmacHex } from '../lib/digest';
import { BrokerError, rateLimited } from '../lib/errors';
import { rateLimitRefusals } from '../lib/metrics';
import { signSessionToken, type LoginMethod } from '../lib/session-token';
import { loginOfRefreshFamily, sessionIdOf } from '../services/sessions';
import type { RefreshedSession, RefreshTokenAnswer } from './schemas';

/**
 * Refresh tokens (docs/security.md "Refresh tokens"). Opaque (`akr_` + 32 random bytes,
 * base64url), kept only as a keyed digest. A session claims one (once); each is traded once for a
 * new session and a new token of the same family. A spent token presented again — a copy in
 * someone else's hands, or two holders racing — revokes the family and every session it issued,
 * with a `session.refresh_reuse` audit row. Every refusal is the same 401 and changes nothing but
 * that revocation. Each function is one transaction with its audit row.
 *
 * A family renews at most BROKER_RATE_LIMIT_REFRESH_PER_MINUTE times in any 60 s (the CLI renews
 * about twice a day): past that, 429 and nothing changes, the token presented still unspent. The
 * budget is counted from the family's own rows, under its lock, so it holds across API processes
 * and restarts. It bounds how many sessions one family can hold live at once; ending a family
 * reads neither its spent tokens nor its expired sessions (db/refresh-tokens.ts endRefreshFamily).
 *
 * Checks here: every rule of refresh tokens (once per session, only for a login's own session and
 * only while it is live, the family's age, spent, revoked or expired tokens, a family's end, its
 * refresh budget). The route checks only the body's form and the bearer's kind.
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

const ALREADY_CLAIMED = 'this session already has a refresh token (each session gets one; a refreshed session comes with its own)';

/**
 * The first refresh token of a broker session (the login's bearer): once per session, and only for
 * a login's own session: a session a refresh issued came with its token and never starts a family,
 * nor does one from before migration 024 whose row does not say how it was issued (409).
 */
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
    // Only a login's own session starts a family, by its row (migration 024), whether or not the
    // family of a refreshed one is still there: the purge deletes a family's rows while a session
    // it issued may live on, which would otherwise claim a new family (30 more days, again and again).
    if (session.issued_by_refresh === true) throw new BrokerError('conflict', ALREADY_CLAIMED);
    if (session.issued_by_refresh !== false)
      throw new BrokerError(
        'conflict',
        'this session was issued before the broker recorded whether a refresh issued it, so it cannot start renewing; log in again',
      );
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
      sessionJtiHash: sessionIdOf(deps.secrets, auth.jti),
      familyStartedAt: issued,
    });
    if (!fresh) throw new BrokerError('conflict', ALREADY_CLAIMED);
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
  | { ok: false; message: string; retryAfterSeconds?: number };

/** The window of the per-family refresh budget (BROKER_RATE_LIMIT_REFRESH_PER_MINUTE). */
const REFRESH_BUDGET_WINDOW_SECONDS = 60;

/**
 * Whether the family has spent its refresh budget: refreshes issued in the last
 * REFRESH_BUDGET_WINDOW_SECONDS (its tokens created then, less its first, the claim's, when that is
 * one of them). Undefined when it may refresh, else the seconds until the oldest of those leaves
 * the window.
 */
async function budgetSpent(tx: Queryable, config: Config, familyId: string): Promise<number | undefined> {
  const max = config.BROKER_RATE_LIMIT_REFRESH_PER_MINUTE;
  const recent = await recentTokensOfFamily(tx, familyId, REFRESH_BUDGET_WINDOW_SECONDS, max + 1);
  // Newest first; when the claim's token may be one of them, it is the oldest, never one of the newest `max`.
  if (recent.createdAt.length - (recent.firstInWindow ? 1 : 0) < max) return undefined;
  const oldestCounted = recent.createdAt[max - 1];
  if (!oldestCounted) return undefined;
  return Math.max(1, Math.ceil((oldestCounted.getTime() + REFRESH_BUDGET_WINDOW_SECONDS * 1000 - recent.now.getTime()) / 1000));
}

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
    // The family's end first: ending it revokes only its unspent token, so a spent one of an ended family reads revoked here.
    if (row.revoked_at || row.family_ended) return { ok: false, message: 'this refresh token has been revoked; log in again' };
    if (row.used_at) {
      // Spent before: whoever holds the family's newer tokens may not be the owner. End them all.
      await endRefreshFamily(tx, row.family_id);
      const sessions = await revokeSessionsOfFamily(tx, row.omni_account, row.family_id);
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
    const retryAfterSeconds = await budgetSpent(tx, config, row.family_id);
    if (retryAfterSeconds !== undefined)
      return {
        ok: false,
        retryAfterSeconds,
        message:
          `this login renewed ${config.BROKER_RATE_LIMIT_REFRESH_PER_MINUTE} times in the last minute, its most; ` +
          `the refresh token is still good: present it again in ${retryAfterSeconds} s`,
      };
    await markRefreshTokenUsed(tx, digest);
    const token = newToken();
    const jti = randomBytes(16).toString('hex');
    const nowSeconds = Math.floor(nowMs / 1000);
    const sessionExpires = nowSeconds + config.BROKER_LOGIN_SESSION_TTL_SECONDS;
    // The login behind it is its family's, recorded on its row: never a fresh login of its own,
    // whatever becomes of the family's rows (services/sessions.ts requireRecentLogin).
    const login = (await loginOfRefreshFamily(tx, row.session_jti)) ?? { at: row.family_started_at, method: row.method };
    await insertSession(tx, {
      jti,
      omniAccount: row.omni_account,
      method: row.method,
      expiresAt: new Date(sessionExpires * 1000),
      refreshOf: { loginAt: login.at, loginMethod: login.method },
    });
    await insertRefreshToken(tx, {
      digest: digestOf(secrets, token),
      familyId: row.family_id,
      omniAccount: row.omni_account,
      method: row.method,
      wallet: row.wallet ?? undefined,
      sessionJti: jti,
      sessionJtiHash: sessionIdOf(secrets, jti),
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
  if (!outcome.ok) {
    if (outcome.retryAfterSeconds === undefined) throw new BrokerError('unauthorized', outcome.message);
    rateLimitRefusals.inc({ limit: 'refresh:family' });
    throw rateLimited(outcome.message, outcome.retryAfterSeconds);
  }
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
