/** `agentkeys whoami`, `logout`, `status` and `token`. */
import { Command } from 'commander';
import type { MeBody } from '../../lib/wire';
import { BrokerClient } from '../broker-client';
import { CliError, initCommandFor, NotLoggedInError, ReportedFailure, UsageError } from '../errors';
import { CliContext, DEFAULT_BROKER_URL } from '../context';
import { displayIdentity } from '../identity';
import { withLock } from '../renew';
import { describeStore, listProfiles, loginStoreChoice, profileDir, readProfileRecord } from '../session-store';

export function whoamiCommand(): Command {
  return new Command('whoami').description('show the account this profile is logged in as').action(async (_o: object, cmd: Command) => {
    const ctx = await CliContext.open(cmd);
    const session = await ctx.session();
    const method = 'fromEnv' in session ? 'AGENTKEYS_TOKEN' : session.method;
    const me = (await (await ctx.authedBroker()).call<MeBody & { email?: unknown }>('GET', '/v1/session/me', { auth: true })).body;
    const email = typeof me.email === 'string' ? me.email : 'fromEnv' in session ? undefined : session.email;
    ctx.print({ profile: ctx.profile, method, ...me, ...(email ? { email } : {}) }, [
      `${displayIdentity({ identity: me.identity, email })} (profile ${ctx.profile}, ${method})`,
      `  omni_account ${me.omni_account}`,
      `  user_id      ${me.user_id}`,
      `  expires      ${new Date(me.expires_at * 1000).toISOString()}`,
      ...me.wallets.map((w) => `  wallet #${w.wallet_index} ${w.role.padEnd(5)} ${w.address ?? '(no address)'}`),
    ]);
  });
}

export function logoutCommand(): Command {
  return new Command('logout')
    .description('revoke the session at the broker, then forget it here (the profile keeps its broker URL)')
    .action(async (_o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const store = await ctx.store();
      if (!(ctx.record ? await store.load(ctx.profile) : undefined)) throw new NotLoggedInError(`profile "${ctx.profile}" is not logged in`);
      // Under the renewal lock: a renewal in flight finishes first and its session is the one logged
      // out here; none can write the session back after it is forgotten.
      const revoked = await withLock(ctx.profile, async () => {
        const stored = await store.load(ctx.profile);
        if (!stored) return false;
        let done = true;
        try {
          await new BrokerClient(ctx.sessionBrokerUrl(stored), stored.token).call('POST', '/v1/session/logout', { auth: true });
        } catch (e) {
          // Already expired or revoked: nothing left to revoke; forget it all the same.
          if (!(e instanceof NotLoggedInError)) throw e;
          done = false;
        }
        await ctx.forget();
        return done;
      });
      ctx.print(
        { profile: ctx.profile, revoked, forgotten: true },
        revoked ? `Logged out (profile ${ctx.profile}).` : `The session had already ended at the broker; forgot it (profile ${ctx.profile}).`,
      );
    });
}

export function tokenCommand(): Command {
  return new Command('token')
    .description("print this profile's bearer token (or AGENTKEYS_TOKEN), e.g. for curl or a CI secret")
    .action(async (_o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const s = await ctx.session();
      ctx.print({ profile: ctx.profile, token: s.token, expires_at: 'fromEnv' in s ? null : s.expires_at }, s.token);
    });
}

interface ProfileStatus {
  profile: string;
  broker_url: string;
  reachable: boolean;
  ready: boolean;
  /** Why the broker was not asked (its URL is refused: plain http across a network). */
  not_asked?: string;
  store: 'file' | 'keychain';
  stored_in: string;
  session: { method: string; identity: string; omni_account: string | null; expires_at: number; expired: boolean; renews_until: number | null } | null;
}

interface Readiness {
  reachable: boolean;
  ready: boolean;
  notAsked?: string;
  detail?: unknown;
}

/** GET /readyz: reachable and ready, reachable and not ready, or not reachable. */
async function readiness(url: string): Promise<Readiness> {
  try {
    const r = await new BrokerClient(url).call<unknown>('GET', '/readyz', { expect: [503] });
    return { reachable: true, ready: r.status === 200, detail: r.body };
  } catch (e) {
    if (e instanceof UsageError) return { reachable: false, ready: false, notAsked: e.message };
    if (e instanceof CliError) return { reachable: false, ready: false };
    throw e;
  }
}

async function profileStatus(
  ctx: CliContext,
  profile: string,
  explicitUrl: string | undefined,
  ready: (url: string) => Promise<Readiness>,
): Promise<ProfileStatus> {
  const record = profile === ctx.profile ? ctx.record : await readProfileRecord(profile);
  const url = explicitUrl ?? record?.broker_url ?? DEFAULT_BROKER_URL;
  const choice = record ?? loginStoreChoice(ctx.env);
  const now = Date.now() / 1000;
  return {
    profile,
    broker_url: url,
    ...(({ reachable, ready, notAsked }) => ({ reachable, ready, ...(notAsked ? { not_asked: notAsked } : {}) }))(await ready(url)),
    store: choice.kind,
    stored_in: describeStore(choice, profile),
    session:
      record?.expires_at !== undefined
        ? {
            method: record.method ?? 'unknown',
            identity: displayIdentity(record),
            omni_account: record.omni_account ?? null,
            expires_at: record.expires_at,
            expired: record.expires_at <= now,
            renews_until: record.renews_until ?? null,
          }
        : null,
  };
}

function statusLines(s: ProfileStatus): string[] {
  const session = s.session;
  return [
    `profile  ${s.profile}`,
    `  broker   ${s.broker_url}: ${s.reachable ? `reachable, ${s.ready ? 'ready' : 'NOT ready'}` : s.not_asked ? `NOT asked: ${s.not_asked}` : 'NOT reachable'}`,
    session
      ? `  session  ${session.identity} (${session.method}), ${session.expired ? 'EXPIRED' : 'expires'} ${new Date(session.expires_at * 1000).toISOString()}${session.renews_until ? `, renews until ${new Date(session.renews_until * 1000).toISOString()}` : session.expired ? ` (run ${initCommandFor(s.profile)})` : ''}`
      : `  session  none (run ${initCommandFor(s.profile)})`,
    `  store    ${s.stored_in}`,
  ];
}

export function statusCommand(): Command {
  return new Command('status')
    .description('the broker (reachable, ready), the session (who, until when) and where it is stored; exit 1 when a broker is not ready')
    .option('--all', 'every profile on this machine')
    .action(async (o: { all?: boolean }, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const asked = new Map<string, Promise<Readiness>>();
      const ready = (url: string): Promise<Readiness> => {
        if (!asked.has(url)) asked.set(url, readiness(url));
        return asked.get(url) as Promise<Readiness>;
      };
      const listed = o.all ? await listProfiles() : { profiles: [ctx.profile], foreign: [] };
      const profiles = listed.profiles;
      // One profile: --broker-url / AGENTKEYS_BROKER_URL may point elsewhere; --all shows each profile's own broker.
      const statuses = await Promise.all(profiles.map((p) => profileStatus(ctx, p, o.all ? undefined : ctx.explicitBrokerUrl, ready)));
      if (o.all) {
        const others = listed.foreign.map((p) => `(${profileDir(p)}: another program's session, AgentKeys' own CLI's; left alone)`);
        ctx.print({ profiles: statuses, other_sessions: listed.foreign.map(profileDir) }, [
          ...(statuses.length ? statuses.flatMap(statusLines) : ['no profiles (run agentkeys init)']),
          ...others,
        ]);
      } else {
        const s = statuses[0] as ProfileStatus;
        ctx.print({ ...s, readiness: (await ready(s.broker_url)).detail ?? null }, statusLines(s));
      }
      // Each broker that is not ready once, with why: not asked (its URL is refused), not reachable, or reachable and not ready.
      const down = new Map(statuses.filter((s) => !s.ready).map((s) => [s.broker_url, s]));
      if (down.size)
        throw new ReportedFailure(
          [...down.values()]
            .map((s) =>
              s.not_asked
                ? `the broker at ${s.broker_url} was not asked (its URL is refused)`
                : s.reachable
                  ? `the broker at ${s.broker_url} is not ready (see its readiness above)`
                  : `the broker at ${s.broker_url} is not reachable: is it running? Set --broker-url or AGENTKEYS_BROKER_URL`,
            )
            .join('; '),
        );
    });
}
