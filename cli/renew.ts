/**
 * Staying logged in: after a login the CLI claims the session's refresh token; when the bearer has
 * less than RENEW_MARGIN_SECONDS left (or has expired) and the refresh token has not, a command
 * trades it for a new session first. Each refresh token is accepted once and the broker ends the
 * whole login when a spent one comes back, so processes of one profile renew one at a time (a lock
 * directory beside profile.json) and a process that waited reads the session the other one saved.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, stat, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { RefreshTokenBody } from '../lib/wire';
import { BrokerClient } from './broker-client';
import { BrokerAnswerError, CliError, EXIT, initCommandFor, NotLoggedInError } from './errors';
import { shown } from './terminal-text';
import { profileDir, saveLogin, type AwsCache, type ProfileRecord, type ProfileSession, type SessionStore } from './session-store';

export const RENEW_MARGIN_SECONDS = 300;

type RefreshAnswer = RefreshTokenBody;

/** The session with its refresh token, or as it was when the broker offers none (older brokers, TEE tokens). */
export async function withRefreshToken(session: ProfileSession): Promise<ProfileSession> {
  if (session.method === 'tee') return session;
  try {
    const r = await new BrokerClient(session.broker_url, session.token).call<RefreshAnswer>('POST', '/v1/session/refresh_token', { auth: true });
    return { ...session, refresh_token: r.body.refresh_token, refresh_expires_at: r.body.refresh_expires_at };
  } catch (e) {
    if (e instanceof BrokerAnswerError && e.status === 404) return session;
    process.stderr.write(`warning: this session will not renew itself (${shown((e as Error).message)}); log in again when it expires\n`);
    return session;
  }
}

const due = (s: ProfileSession, now: number) => s.expires_at - RENEW_MARGIN_SECONDS <= now && !!s.refresh_token && (s.refresh_expires_at ?? 0) > now;

/**
 * The lock's clock. `staleMs`: a lock whose holder has not touched it for this long is taken to be a
 * dead process's. `heartbeatMs`: how often a holder touches its lock while it works (a slow keychain
 * prompt must not look dead). `waitMs`: how long a waiter waits before it gives up. Fields so the
 * tests can run the clock fast; the CLI never changes them.
 */
export const lockTiming = { staleMs: 30_000, heartbeatMs: 5_000, waitMs: 35_000 };

/**
 * Throws unless this process still holds the lock: called before a step that must not run twice
 * (a refresh token's trade) or must not write over another holder's work (a save). A holder that
 * stalled past the stale age (a suspended process) may have had its lock broken and taken.
 */
export type LockCheck = (before: string) => Promise<void>;

/**
 * Runs `fn` holding the profile's renewal lock (a directory beside the session): renewal, the
 * credential cache's write, a new login's save and logout take it, so none writes over what another
 * just changed. The holder touches the directory while it works, so only a dead holder's lock goes
 * stale. A stale lock is broken by renaming it away (one waiter's rename wins) and checking that
 * what was renamed is the lock seen stale (its owner file): a lock taken meanwhile by another
 * waiter is put back. `fn` gets a check that the lock is still this process's (LockCheck).
 */
export async function withLock<T>(profile: string, fn: (stillHeld: LockCheck) => Promise<T>): Promise<T> {
  const lock = join(profileDir(profile), 'renew.lock');
  const owner = `owner-${process.pid}-${randomBytes(6).toString('hex')}`;
  // The lock is born with its owner file: made aside, then renamed into place (atomic; refused while one is there).
  const mine = `${lock}.new-${owner}`;
  // A first login's profile has no directory yet.
  await mkdir(profileDir(profile), { recursive: true, mode: 0o700 });
  await mkdir(mine, { mode: 0o700 });
  await writeFile(join(mine, owner), '', { mode: 0o600 });
  const t0 = Date.now();
  try {
    for (;;) {
      try {
        await rename(mine, lock);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
        await breakIfStale(lock);
        if (Date.now() - t0 > lockTiming.waitMs) throw new CliError(`another agentkeys process has been renewing profile "${profile}" for too long (${lock})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    await rm(mine, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    void utimes(lock, now, now).catch(() => undefined);
  }, lockTiming.heartbeatMs);
  heartbeat.unref();
  await sweepStrays(lock);
  const stillHeld: LockCheck = async (before) => {
    if (!(await stat(join(lock, owner)).catch(() => undefined)))
      throw new CliError(
        `another agentkeys process took over the renewal lock of profile "${profile}" while this one was held up (a keychain prompt left open, a suspended process); it stopped before ${before}: run the command again`,
      );
  };
  try {
    return await fn(stillHeld);
  } finally {
    clearInterval(heartbeat);
    await rm(join(lock, owner), { force: true }).catch(() => undefined);
    await rmdir(lock).catch(() => undefined);
  }
}

/** Removes the lock when its holder has not touched it for `lockTiming.staleMs` (see withLock). */
async function breakIfStale(lock: string): Promise<void> {
  const seen = await stat(lock).catch(() => undefined);
  if (!seen || Date.now() - seen.mtimeMs <= lockTiming.staleMs) return;
  const staleOwners = (await readdir(lock).catch(() => [])).sort().join(',');
  const aside = `${lock}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(lock, aside);
  } catch {
    return; // another waiter broke it first
  }
  const owners = (await readdir(aside).catch(() => [])).sort().join(',');
  if (owners !== staleOwners) {
    // Taken by another waiter between the look and the rename: give it back.
    await rename(aside, lock).catch(() => undefined);
    return;
  }
  await rm(aside, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Removes what a process killed mid-way left beside the lock: its unused new lock (`.new-*`, older
 * than any waiter waits) or a dead lock it had renamed aside (`.stale-*`, already stale when renamed;
 * one being given back was just made, so is young). Run by the holder, best effort.
 */
async function sweepStrays(lock: string): Promise<void> {
  const dir = dirname(lock);
  const prefix = `${basename(lock)}.`;
  const now = Date.now();
  for (const name of await readdir(dir).catch(() => [])) {
    const kind = name.startsWith(`${prefix}new-`) ? 'new' : name.startsWith(`${prefix}stale-`) ? 'stale' : undefined;
    if (!kind) continue;
    const seen = await stat(join(dir, name)).catch(() => undefined);
    const age = seen ? now - seen.mtimeMs : 0;
    if (age > (kind === 'new' ? lockTiming.waitMs + lockTiming.staleMs : lockTiming.staleMs))
      await rm(join(dir, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The session, renewed first when it is about to expire and can be. */
export async function renewIfDue(profile: string, store: SessionStore, record: ProfileRecord | undefined, session: ProfileSession): Promise<ProfileSession> {
  if (!due(session, Date.now() / 1000)) return session;
  return withLock(profile, async (stillHeld) => {
    // Another process may have renewed it while this one waited, logged out, or logged in anew
    // (maybe into another store): a session no longer stored here is not renewed and written back.
    const current = await store.load(profile);
    if (!current) throw new NotLoggedInError(`profile "${profile}" was logged out or logged in again while this command waited: run it again`);
    if (!due(current, Date.now() / 1000)) return current;
    let r: { token: string; expires_at: number } & RefreshAnswer;
    // A refresh token is accepted once: not traded when another process may hold the lock (and trade it) now.
    await stillHeld('trading the refresh token');
    try {
      r = (await new BrokerClient(current.broker_url).call<typeof r>('POST', '/v1/session/refresh', { body: { refresh_token: current.refresh_token } })).body;
    } catch (e) {
      if (e instanceof BrokerAnswerError && e.status === 401)
        throw new NotLoggedInError(
          `the session of profile "${profile}" could not be renewed (${e.message}): run ${initCommandFor(profile)}`,
          EXIT.failure,
          e.details,
        );
      throw e;
    }
    const renewed: ProfileSession = {
      ...current,
      token: r.token,
      expires_at: r.expires_at,
      refresh_token: r.refresh_token,
      refresh_expires_at: r.refresh_expires_at,
    };
    await stillHeld('saving the renewed session');
    await saveLogin(profile, store, renewed, record);
    return renewed;
  });
}

/** The same login as far as cached credentials go: the account, its method and broker (a renewal keeps them all). */
function sameLogin(a: ProfileSession, b: ProfileSession): boolean {
  return (
    a.broker_url === b.broker_url &&
    a.omni_account === b.omni_account &&
    a.method === b.method &&
    a.user_id === b.user_id &&
    JSON.stringify(a.identity ?? null) === JSON.stringify(b.identity ?? null)
  );
}

/**
 * Keeps the credentials `mint aws --credential-process` minted with the session, which may have
 * changed while the mint ran (a mint that waits for approval takes minutes): under the renewal lock,
 * the session is read again and only its `aws_cache` is set, so a refresh token another process
 * renewed in the meantime is never put back (the broker would take the spent one for a stolen
 * copy and end the login). Nothing is written when no session is stored any more (a `logout`) or
 * the one stored is another account's (an `init` as someone else). Answers whether it was kept.
 */
export async function saveAwsCache(profile: string, store: SessionStore, minted: ProfileSession, cache: AwsCache): Promise<boolean> {
  return withLock(profile, async (stillHeld) => {
    const current = await store.load(profile);
    if (!current || !sameLogin(current, minted)) return false;
    await stillHeld('caching the credentials');
    await store.save(profile, { ...current, aws_cache: cache });
    return true;
  });
}
