/**
 * Who a bearer is, and logout: for a broker session and for a TEE access token. Each logout is one
 * transaction holding the revocation and its audit row; only the call that actually revoked
 * something writes the row, so concurrent or repeated logouts add nothing.
 *
 * An account holder may also list the logins of their account that can still produce a bearer
 * (a session whose bearer is live, or a refresh family that can still renew, whose session rows
 * the hourly purge may have deleted), and end one, the whole login, by a public name (the keyed
 * digest its sessions' audit rows carry, never the jti).
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
import {
  endRefreshFamily,
  listLiveRefreshFamiliesOfAccount,
  lockRefreshFamily,
  newestSessionsOfFamilies,
  refreshFamilyLoginOfSession,
  refreshFamilyOfSession,
  sessionOfRefreshFamilyNamed,
} from '../db/refresh-tokens';
import {
  isSessionLive,
  listLiveLoginsOfAccount,
  liveSessionsOfAccount,
  lockSession,
  revokeSession,
  revokeSessionsOfFamily,
  revokeTeeToken,
  relabelSessionMethod,
  sessionLogin,
  sessionsByJti,
} from '../db/sessions';
import { findUserByOmni, listWallets, type UserRow, type WalletRow } from '../db/users';
import type { Config } from '../lib/config';
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
 * The login that began the refresh family of session `jti`: its start, and the method its first
 * session's row recorded (the family's own record of it once that row is purged), so neither
 * refreshing nor a later session's row can change the answer. Undefined when the session is of no
 * family (or its family was purged). What a refresh records on the session it issues
 * (api/session-refresh.ts), and how a session from before migration 024 tied to a family is read.
 */
export async function loginOfRefreshFamily(q: Queryable, jti: string): Promise<{ at: Date; method: string } | undefined> {
  const family = await refreshFamilyLoginOfSession(q, jti);
  if (!family) return undefined;
  const first = await sessionLogin(q, family.firstSessionJti);
  return { at: family.startedAt, method: first?.method ?? family.method };
}

/**
 * How and when the login behind a session was made, by its own row (migration 024), never by
 * whether its refresh family's rows are still there: a session a refresh issued answers for the
 * login its row recorded (its family's first: loginOfRefreshFamily, when it was issued); a login's
 * own session, for itself. A row from before 024 that says neither answers for the family it is
 * still tied to, else with no known time (`at` undefined: no recent login), as it may be a
 * refreshed session whose family the purge deleted. Undefined when the session has no row.
 */
async function loginOfSession(db: Db, jti: string): Promise<{ at: Date | undefined; method: string } | undefined> {
  const own = await sessionLogin(db, jti);
  if (!own) return undefined;
  if (own.issued_by_refresh === true) return { at: own.login_at ?? undefined, method: own.login_method ?? own.method };
  if (own.issued_by_refresh === false) return { at: own.created_at, method: own.method };
  return (await loginOfRefreshFamily(db, jti)) ?? { at: undefined, method: own.method };
}

/**
 * The one check of a recent login: the bearer is a broker session whose login the caller made
 * itself (not one approved from another device) at most REAUTH_SECONDS ago — a refreshed session
 * counts from its refresh family's first login, as its own row recorded it (loginOfSession), so
 * neither refreshing nor the purge of the family's rows renews it or changes how it was made; a
 * session from before migration 024 whose issue is not known counts as no recent login. A TEE
 * bearer carries no login time (no iat): 403. A login another browser finished
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
  if (!login.at || (deps.now ?? Date.now)() - login.at.getTime() > REAUTH_SECONDS * 1000)
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
 * Its cost does not grow with the family's history: it records the family's end once and revokes
 * the family's unspent token and its sessions not yet revoked (db/refresh-tokens.ts
 * endRefreshFamily, db/sessions.ts revokeSessionsOfFamily); a refresh reads the family's end
 * before anything else, so its spent tokens need no change. It locks the session's row, as a
 * claim of its refresh token does (api/session-refresh.ts), so a claim in flight either commits
 * first, and its family is read and ended here, or waits and then finds the session revoked; and
 * the family's lock, as a refresh does, so a refresh in flight either commits first, and what it
 * added is ended here too, or waits and finds its token revoked. Answers how many sessions and
 * refresh tokens it revoked: a family whose sessions' rows were all purged still counts its
 * unspent token. A session whose row is gone locks nothing and is found by its
 * family's record (`refresh_tokens.session_jti`).
 */
export async function revokeFamilyOfSession(tx: Queryable, jti: string): Promise<number> {
  // The family's lock before the session's row: a refresh, or a replay that revokes the family and
  // its sessions, takes them in that order, so the two cannot wait on each other.
  const known = await refreshFamilyOfSession(tx, jti);
  if (known) await lockRefreshFamily(tx, known.familyId);
  await lockSession(tx, jti);
  // Read again: a claim that committed while this waited for the session's row started the family.
  const family = known ?? (await refreshFamilyOfSession(tx, jti));
  if (!family) return 0;
  if (!known) await lockRefreshFamily(tx, family.familyId);
  const ended = await endRefreshFamily(tx, family.familyId);
  return ended.tokensRevoked + (await revokeSessionsOfFamily(tx, family.omniAccount, family.familyId));
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

/** The most logins listed (and of each kind searched by a revoke); an account rarely holds more than a handful. */
export const MAX_LISTED_SESSIONS = 200;

/** A session's public name: the keyed digest of its jti that its login and logout audit rows carry. */
export function sessionIdOf(secrets: BrokerSecrets, jti: string): string {
  return hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32);
}

/** What listing and ending an account's logins read of the configuration. */
export type SessionListConfig = Pick<
  Config,
  'BROKER_REFRESH_IDLE_SECONDS' | 'BROKER_REFRESH_MAX_SECONDS' | 'BROKER_LOGIN_SESSION_TTL_SECONDS' | 'BROKER_RATE_LIMIT_REFRESH_PER_MINUTE'
>;

/**
 * A login of the account that can still produce a bearer: a session whose bearer is live (not
 * logged out, not expired), or a refresh family that can still renew, whatever became of its
 * sessions' bearers and rows. All live sessions of one family are one login.
 */
export interface AccountLogin {
  /** The session that stands for the login: the caller's own when its bearer is one of the login's, else the login's newest. */
  jti: string;
  method: string;
  /** When that session was issued (its row's; the family's record of it when the purge deleted the row). */
  created_at: Date;
  /** When that session's bearer expires (its row's; when the purge deleted the row, its issue time plus BROKER_LOGIN_SESSION_TTL_SECONDS). */
  expires_at: Date;
  /** True when a session of the login has a live bearer; then `jti` is one. */
  bearerLive: boolean;
  /** Unix seconds: when its refresh family stops renewing (the `refresh_expires_at` of its unspent token); null when it has none that can. */
  refreshExpiresAt: number | null;
  /** Its refresh family, if its sessions claimed a refresh token. */
  familyId: string | null;
}

/**
 * The account's logins that can still produce a bearer, newest session first: its logins with a
 * live bearer (db/sessions.ts listLiveLoginsOfAccount: one row per login however many bearers it
 * holds, the caller's own session standing for its login), and its refresh families that can still
 * renew. At most MAX_LISTED_SESSIONS of each are read; neither read grows with a family's history.
 */
async function loginsOfAccount(q: Queryable, config: SessionListConfig, omniAccount: string, callerJti?: string): Promise<AccountLogin[]> {
  const bearers = await listLiveLoginsOfAccount(q, omniAccount, callerJti, MAX_LISTED_SESSIONS);
  const families = await listLiveRefreshFamiliesOfAccount(
    q,
    omniAccount,
    { idleSeconds: config.BROKER_REFRESH_IDLE_SECONDS, maxSeconds: config.BROKER_REFRESH_MAX_SECONDS },
    MAX_LISTED_SESSIONS,
  );
  const logins = new Map<string, AccountLogin>();
  for (const b of bearers)
    logins.set(b.family_id ?? `session:${b.jti}`, {
      jti: b.jti,
      method: b.method,
      created_at: b.created_at,
      expires_at: b.expires_at,
      bearerLive: true,
      refreshExpiresAt: null,
      familyId: b.family_id,
    });
  // A family with no live bearer stands for its newest session, whose row may be revoked, expired or purged.
  const rows = new Map(
    (
      await sessionsByJti(
        q,
        families.filter((f) => !logins.has(f.family_id)).map((f) => f.session_jti),
      )
    ).map((r) => [r.jti, r]),
  );
  for (const f of families) {
    const known = logins.get(f.family_id);
    if (known) {
      known.refreshExpiresAt = f.refresh_expires_at;
      continue;
    }
    const row = rows.get(f.session_jti);
    const createdAt = row?.created_at ?? f.session_created_at;
    logins.set(f.family_id, {
      jti: f.session_jti,
      method: row?.method ?? f.method,
      created_at: createdAt,
      expires_at: row?.expires_at ?? new Date(createdAt.getTime() + config.BROKER_LOGIN_SESSION_TTL_SECONDS * 1000),
      bearerLive: false,
      refreshExpiresAt: f.refresh_expires_at,
      familyId: f.family_id,
    });
  }
  return [...logins.values()].sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.jti < b.jti ? -1 : a.jti > b.jti ? 1 : 0));
}

/**
 * How many of a live refresh family's newest sessions the fallback of a revoke by id searches
 * (sessionNamed), for tokens issued before migration 023 recorded their session's name: an hour of
 * refreshes at the family's budget, and the one before them. It reads as many rows whatever the
 * family's size; once every family from before 023 is past BROKER_REFRESH_MAX_SECONDS it finds
 * nothing the lookup by name does not.
 */
function revokeSearchPerFamily(config: Pick<Config, 'BROKER_RATE_LIMIT_REFRESH_PER_MINUTE'>): number {
  return config.BROKER_RATE_LIMIT_REFRESH_PER_MINUTE * 60 + 1;
}

/**
 * The session named `sessionId` among those that name a login of the account that is still live,
 * whichever of its sessions the listing showed and however many refreshes came since:
 *  1. a live bearer of the account (a session of no family is a login only while it is one);
 *  2. else the session whose refresh token recorded that name (db/refresh-tokens.ts
 *     sessionOfRefreshFamilyNamed: by its index, checked to be of this account), when its family can
 *     still renew or holds a live bearer; its own row may be expired or purged. A family that has
 *     ended, or can no longer renew and holds no live bearer, is no login: undefined;
 *  3. else, for a token issued before migration 023 (no name recorded), one of the newest sessions
 *     (revokeSearchPerFamily) of a refresh family of the account that can still renew.
 * Another account's id is found by none of them. Reads without locks: the revoke then takes the
 * family's and the session's in their order.
 */
async function sessionNamed(
  q: Queryable,
  deps: { secrets: BrokerSecrets; config: SessionListConfig },
  omniAccount: string,
  sessionId: string,
): Promise<{ jti: string; method: string } | undefined> {
  const named = (jti: string) => sessionIdOf(deps.secrets, jti) === sessionId;
  const limits = { idleSeconds: deps.config.BROKER_REFRESH_IDLE_SECONDS, maxSeconds: deps.config.BROKER_REFRESH_MAX_SECONDS };
  const live = await liveSessionsOfAccount(q, omniAccount);
  const bearer = live.find((s) => named(s.jti));
  if (bearer) return { jti: bearer.jti, method: bearer.method };
  const issued = await sessionOfRefreshFamilyNamed(q, omniAccount, sessionId, limits);
  if (issued) {
    if (!issued.can_renew && !live.some((s) => s.family_id === issued.family_id)) return undefined;
    return { jti: issued.session_jti, method: await methodOfSession(q, issued.session_jti, issued.method) };
  }
  const families = await listLiveRefreshFamiliesOfAccount(q, omniAccount, limits, MAX_LISTED_SESSIONS);
  const methodOf = new Map(families.map((f) => [f.family_id, f.method]));
  const older = await newestSessionsOfFamilies(q, [...methodOf.keys()], revokeSearchPerFamily(deps.config));
  const hit = older.find((s) => named(s.session_jti));
  if (!hit) return undefined;
  return { jti: hit.session_jti, method: await methodOfSession(q, hit.session_jti, methodOf.get(hit.family_id) ?? 'unknown') };
}

/** The method a session's row recorded, when its row is still there; else the one its family recorded. */
async function methodOfSession(q: Queryable, jti: string, familyMethod: string): Promise<string> {
  const [row] = await sessionsByJti(q, [jti]);
  return row?.method ?? familyMethod;
}

/**
 * The account's logins that can still produce a bearer (AccountLogin), newest first, at most
 * MAX_LISTED_SESSIONS, each named by its session's public name. `callerJti`: the bearer's own
 * session, which then stands for its login.
 */
export async function listSessions(
  deps: SessionServiceDeps & { config: SessionListConfig },
  omniAccount: string,
  callerJti?: string,
): Promise<Array<AccountLogin & { sessionId: string }>> {
  const logins = await loginsOfAccount(deps.db, deps.config, omniAccount, callerJti);
  return logins.slice(0, MAX_LISTED_SESSIONS).map((login) => ({ ...login, sessionId: sessionIdOf(deps.secrets, login.jti) }));
}

/**
 * Ends the login of the caller's own account that a session named `sessionId` belongs to — the
 * session and the refresh family it belongs to, whose every session is ended with it — with one
 * `session.revoke` audit row. The name is that of any session a login listSessions lists was ever
 * listed under, while the login lives: a live bearer's, or any session its refresh family issued
 * (sessionNamed: by the name its refresh token recorded, so an id listed however many refreshes
 * before still names it, and so does one whose row was purged). False when no such login of this
 * account has that name (another account's included, and an ended login's): nothing changes.
 * Neither finding the session (the account's live bearers, one index entry of refresh_tokens)
 * nor ending its login (revokeFamilyOfSession) reads a family's older tokens, so a family renewed
 * for weeks ends as fast as a new one.
 *
 * Ending the very session of the bearer is a logout and takes any session. Ending another one
 * needs a recent login (requireRecentLogin, asked before the sessions are read): else a stolen
 * bearer, however old, could end the owner's other sessions and be the one left signed in. A TEE
 * bearer has no session of its own here, so it is refused (403) whatever it names.
 */
export async function revokeOwnSession(
  deps: SessionServiceDeps & { config: SessionListConfig; now?: () => number },
  caller: { omniAccount: string; jti?: string; kind: 'session' | 'tee' },
  sessionId: string,
  requestId: string,
): Promise<boolean> {
  const own = caller.kind === 'session' && caller.jti !== undefined && sessionIdOf(deps.secrets, caller.jti) === sessionId;
  if (!own) await requireRecentLogin(deps, caller, { what: 'ending another session', then: 'end it' });
  return withTransaction(deps.db, async (tx) => {
    const target = await sessionNamed(tx, deps, caller.omniAccount, sessionId);
    if (!target) return false;
    // The family's lock, then the session's row (revokeFamilyOfSession), as a refresh and a logout take them.
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
