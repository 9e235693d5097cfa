/**
 * Who a bearer is, and logout: for a broker session and for a TEE access token. Each logout is one
 * transaction holding the revocation and its audit row; only the call that actually revoked
 * something writes the row, so concurrent or repeated logouts add nothing.
 *
 * An account holder may also end one of their own other sessions by its public name (the keyed
 * digest its audit rows carry, never the jti).
 *
 * Checks here: that a broker session token is live (liveSessionClaims: the one check of a session,
 * for a bearer and for a session shown as a proof); that its login is recent and was made on the
 * caller's own device (requireRecentLogin: the one check of a recent login, for approvals, passkey
 * registration and removal, device approval and ending another session);
 * whether the session or TEE token was already revoked; that a session named for revocation
 * belongs to the caller's account, and that ending one other than the caller's own comes from a
 * recent login (ending its own is a logout and takes any session). That a bearer is valid is
 * checked before the logout (api/plugins/auth.ts, through liveSessionClaims).
 */
import type { BrokerSecrets } from '../adapters/secrets';
import { appendAudit } from '../db/audit';
import { withTransaction, type Db, type Queryable } from '../db/pool';
import { lockRefreshFamily, refreshFamilyLoginOfSession, refreshFamilyOfSession, revokeRefreshFamily } from '../db/refresh-tokens';
import {
  isSessionLive,
  listLiveSessionsOfAccount,
  lockSession,
  revokeSession,
  revokeSessions,
  revokeTeeToken,
  relabelSessionMethod,
  sessionLogin,
  type LiveSessionRow,
} from '../db/sessions';
import { findUserByOmni, listWallets, type UserRow, type WalletRow } from '../db/users';
import { hmacHex } from '../lib/digest';
import { BrokerError } from '../lib/errors';
import { COMPLETED_ELSEWHERE_METHODS } from '../lib/login-methods';
import { SessionTokenError, verifySessionToken, type SessionClaims } from '../lib/session-token';

export interface SessionServiceDeps {
  secrets: BrokerSecrets;
  db: Db;
}

/**
 * The claims of a broker session token that is live: its spelling, ES256 signature, typ, issuer,
 * audience and expiry checked (lib/session-token.ts), and its session not logged out (the sessions
 * table). Anything else is a BrokerError `unauthorized` saying why. The one check of a broker
 * session, for a bearer (api/plugins/auth.ts) and for a session shown as a proof
 * (services/grants.ts). `verify` may stand in for the signature check with a cache of tokens that
 * verified before (the auth plugin's); the liveness is read every time.
 */
export async function liveSessionClaims(
  deps: { secrets: BrokerSecrets; db: Db; issuer: string },
  token: string,
  verify?: (token: string, check: (t: string) => Promise<SessionClaims>) => Promise<SessionClaims>,
): Promise<SessionClaims> {
  const check = (t: string) => verifySessionToken(deps.secrets.sessionKey, t, deps.issuer);
  try {
    const claims = verify ? await verify(token, check) : await check(token);
    if (!(await isSessionLive(deps.db, claims.jti))) throw new BrokerError('unauthorized', 'session has been logged out');
    return claims;
  } catch (e) {
    if (e instanceof SessionTokenError) throw new BrokerError('unauthorized', e.message);
    throw e;
  }
}

/**
 * How old a login may be for what a stolen bearer must not do on its own: decide an approval
 * without a wallet signature (services/approvals.ts), add or remove a passkey
 * (services/passkeys.ts), approve a device, end another session of the account
 * (docs/security.md "A recent login binds a passkey or a device"). Five minutes: docs/approvals.md
 * says why.
 */
export const REAUTH_SECONDS = 300;

/** What the caller was doing, for the refusal: e.g. `{ what: 'adding a passkey', then: 'add it' }`. */
export interface RecentLoginAction {
  /** A gerund phrase: "adding a passkey". */
  what: string;
  /** What to do once signed in again: "add it". */
  then: string;
}

/** Who requireRecentLogin refuses with 403 whatever the login's age, as the routes' descriptions say it. */
export const NEVER_A_RECENT_LOGIN =
  'a session whose sign-in another browser finished (the device flow, or Google sign-in started from a CLI), however fresh, and a TEE bearer';

/**
 * How and when the login behind a session was made. A session of a refresh family answers for the
 * family's first login: its start, and the method its first session's row recorded (the family's
 * own record of it once that row is purged), so neither refreshing nor a later session's row can
 * change the answer. Undefined when the session has no row.
 */
async function loginOfSession(db: Db, jti: string): Promise<{ at: Date; method: string } | undefined> {
  const family = await refreshFamilyLoginOfSession(db, jti);
  if (!family) {
    const own = await sessionLogin(db, jti);
    return own && { at: own.created_at, method: own.method };
  }
  const first = await sessionLogin(db, family.firstSessionJti);
  return { at: family.startedAt, method: first?.method ?? family.method };
}

/**
 * The one check of a recent login: the bearer is a broker session whose login the caller made
 * itself (not one approved from another device) at most REAUTH_SECONDS ago — a refreshed session
 * counts from its refresh family's first login, so refreshing neither renews it nor changes how it
 * was made. A TEE bearer carries no login time (no iat): 403. A login another browser finished
 * (the registry's `completedElsewhere`: the device flow, RFC 8628, and Google sign-in started from a
 * CLI), or a session refreshed from one, is 403 however fresh: a person talked into approving someone else's device code (§5.4,
 * remote phishing) hands over that login, and it must not add a passkey or approve another device,
 * which would outlive the person's logout of it, nor decide an approval. It is refused before its
 * age, so an old one is not told to sign in again, which on that device would be another device
 * login. A logged-out session: 401. A login too old: 401 `unauthorized` with
 * `reauthenticate: true` ("… needs a login at most 300 s old: sign in again, then …"), which the
 * console reads as "offer to sign in again" rather than "signed out". Reads only; changes nothing.
 * Answers the session and when its login was.
 */
export async function requireRecentLogin(
  deps: { db: Db; now?: () => number },
  caller: { kind: 'session' | 'tee'; jti?: string },
  action: RecentLoginAction,
): Promise<{ jti: string; loginAt: Date }> {
  if (caller.kind !== 'session' || !caller.jti)
    throw new BrokerError(
      'forbidden',
      `${action.what} needs a broker session, and a TEE bearer cannot show when its login was: sign in to the broker, then ${action.then} within 5 minutes`,
    );
  const login = await loginOfSession(deps.db, caller.jti);
  if (!login) throw new BrokerError('unauthorized', 'session has been logged out');
  if (COMPLETED_ELSEWHERE_METHODS.includes(login.method))
    throw new BrokerError(
      'forbidden',
      `${action.what} needs a login made on this device: a session whose sign-in was finished in another browser ` +
        `(the device flow, or Google sign-in started from a CLI) cannot; sign in here with email, Google, a wallet or a passkey, then ${action.then}`,
    );
  if ((deps.now ?? Date.now)() - login.at.getTime() > REAUTH_SECONDS * 1000)
    throw new BrokerError('unauthorized', `${action.what} needs a login at most ${REAUTH_SECONDS} s old: sign in again, then ${action.then}`, {
      body: { reauthenticate: true },
    });
  return { jti: caller.jti, loginAt: login.at };
}

/**
 * The session of a Google sign-in started from a CLI, as it is handed to the poll secret's holder:
 * recorded and signed as `google_cli`, a login another browser finished (lib/login-methods.ts
 * `completedElsewhere`), before any token of it exists. The flow records every Google login as
 * `google`; only the hand-out knows which form it was.
 */
export async function asCliGoogleSession<S extends { jti: string; method: string }>(deps: { db: Db }, session: S): Promise<S & { method: 'google_cli' }> {
  if (!(await relabelSessionMethod(deps.db, session.jti, session.method, 'google_cli'))) throw new BrokerError('unauthorized', 'session has been logged out');
  return { ...session, method: 'google_cli' };
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

/**
 * Logout of a session ends its refresh family: the refresh token in hand and the sessions it issued.
 * It locks the session's row, as a claim of its refresh token does (api/session-refresh.ts), so a
 * claim in flight either commits first, and its family is read and ended here, or waits and then
 * finds the session revoked; and the family's lock, as a refresh does, so a refresh in flight
 * either commits first, and what it added is ended here too, or waits and finds its token revoked.
 */
export async function revokeFamilyOfSession(tx: Queryable, jti: string): Promise<number> {
  // The family's lock before the session's row: a refresh, or a replay that revokes the family and
  // its sessions, takes them in that order, so the two cannot wait on each other.
  const known = await refreshFamilyOfSession(tx, jti);
  if (known) await lockRefreshFamily(tx, known);
  await lockSession(tx, jti);
  // Read again: a claim that committed while this waited for the session's row started the family.
  const family = known ?? (await refreshFamilyOfSession(tx, jti));
  if (!family) return 0;
  if (!known) await lockRefreshFamily(tx, family);
  return revokeSessions(tx, await revokeRefreshFamily(tx, family));
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

/** The most live sessions listed (and searched by a revoke); an account rarely holds more than a handful. */
export const MAX_LISTED_SESSIONS = 200;

/** A session's public name: the keyed digest of its jti that its login and logout audit rows carry. */
export function sessionIdOf(secrets: BrokerSecrets, jti: string): string {
  return hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32);
}

/** The account's live sessions, newest first, each with its public name. */
export async function listSessions(deps: SessionServiceDeps, omniAccount: string): Promise<Array<LiveSessionRow & { sessionId: string }>> {
  const rows = await listLiveSessionsOfAccount(deps.db, omniAccount, MAX_LISTED_SESSIONS);
  return rows.map((r) => ({ ...r, sessionId: sessionIdOf(deps.secrets, r.jti) }));
}

/**
 * Ends the caller's own session named `sessionId` and the refresh family it belongs to, with one
 * `session.revoke` audit row. False when no live session of this account has that name (another
 * account's included): nothing changes.
 *
 * Ending the very session of the bearer is a logout and takes any session. Ending another one
 * needs a recent login (requireRecentLogin, asked before the sessions are read): else a stolen
 * bearer, however old, could end the owner's other sessions and be the one left signed in. A TEE
 * bearer has no session of its own here, so it is refused (403) whatever it names.
 */
export async function revokeOwnSession(
  deps: SessionServiceDeps & { now?: () => number },
  caller: { omniAccount: string; jti?: string; kind: 'session' | 'tee' },
  sessionId: string,
  requestId: string,
): Promise<boolean> {
  const own = caller.kind === 'session' && caller.jti !== undefined && sessionIdOf(deps.secrets, caller.jti) === sessionId;
  if (!own) await requireRecentLogin(deps, caller, { what: 'ending another session', then: 'end it' });
  return withTransaction(deps.db, async (tx) => {
    const target = (await listLiveSessionsOfAccount(tx, caller.omniAccount, MAX_LISTED_SESSIONS)).find((s) => sessionIdOf(deps.secrets, s.jti) === sessionId);
    if (!target) return false;
    const family = await revokeFamilyOfSession(tx, target.jti);
    if (!(await revokeSession(tx, target.jti)) && family === 0) return false;
    await appendAudit(tx, {
      event: 'session.revoke',
      outcome: 'ok',
      omniAccount: caller.omniAccount,
      requestId,
      idemKey: `session.revoke:${sessionId}`,
      details: { jti_hash: sessionId, method: target.method, by_jti_hash: caller.jti ? sessionIdOf(deps.secrets, caller.jti) : null, via: caller.kind },
    });
    return true;
  });
}
