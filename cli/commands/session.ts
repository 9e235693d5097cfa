/** `agentkeys whoami`, `logout` and `status`. */
import { Command } from 'commander';
import type { MeBody } from '../../lib/wire';
import { BrokerClient } from '../broker-client';
import { BrokerAnswerError, CliError, NotLoggedInError } from '../errors';
import { CliContext } from '../context';

export function whoamiCommand(): Command {
  return new Command('whoami').description('show the account this profile is logged in as').action(async (_o: object, cmd: Command) => {
    const ctx = CliContext.from(cmd);
    const { broker, session } = await ctx.authedBroker();
    const me = (await broker.call<MeBody>('GET', '/v1/session/me', { auth: true })).body;
    ctx.print({ profile: ctx.profile, method: session.method, ...me }, [
      `${me.identity.type} ${me.identity.value} (profile ${ctx.profile}, ${session.method})`,
      `  omni_account ${me.omni_account}`,
      `  user_id      ${me.user_id}`,
      `  expires      ${new Date(me.expires_at * 1000).toISOString()}`,
      ...me.wallets.map((w) => `  wallet #${w.wallet_index} ${w.role.padEnd(5)} ${w.address ?? '(no address)'}`),
    ]);
  });
}

export function logoutCommand(): Command {
  return new Command('logout').description('revoke the session at the broker, then forget it here').action(async (_o: object, cmd: Command) => {
    const ctx = CliContext.from(cmd);
    const store = await ctx.store();
    const stored = await store.load(ctx.profile);
    if (!stored) throw new NotLoggedInError(`profile "${ctx.profile}" is not logged in`);
    let revoked = true;
    try {
      await ctx.broker(stored.token).call('POST', '/v1/session/logout', { auth: true });
    } catch (e) {
      // Already expired or revoked: nothing left to revoke; forget it all the same.
      if (!(e instanceof NotLoggedInError)) throw e;
      revoked = false;
    }
    await store.remove(ctx.profile);
    ctx.print(
      { profile: ctx.profile, revoked, forgotten: true },
      revoked ? `Logged out (profile ${ctx.profile}).` : `The session had already ended at the broker; forgot it (profile ${ctx.profile}).`,
    );
  });
}

export function statusCommand(): Command {
  return new Command('status')
    .description('broker reachability and readiness, the session expiry and where it is stored')
    .action(async (_o: object, cmd: Command) => {
      const ctx = CliContext.from(cmd);
      const store = await ctx.store();
      const stored = await store.load(ctx.profile);
      const url = ctx.explicitBrokerUrl ?? stored?.broker_url ?? ctx.brokerUrl;
      const broker = new BrokerClient(url);
      let ready: boolean;
      let readiness: unknown;
      try {
        const r = await broker.call<unknown>('GET', '/readyz', { expect: [503] });
        ready = r.status === 200;
        readiness = r.body;
      } catch (e) {
        if (e instanceof BrokerAnswerError) throw new CliError(`the broker at ${url} answered /readyz with ${e.status}`);
        throw e;
      }
      const now = Date.now() / 1000;
      const session = stored
        ? { method: stored.method, omni_account: stored.omni_account, expires_at: stored.expires_at, expired: stored.expires_at <= now }
        : null;
      ctx.print({ broker_url: url, reachable: true, ready, readiness, profile: ctx.profile, store: store.kind, session }, [
        `broker   ${url}: reachable, ${ready ? 'ready' : 'NOT ready'}`,
        `profile  ${ctx.profile}, stored in ${store.describe(ctx.profile)}`,
        session
          ? `session  ${session.method}, ${session.omni_account}, ${session.expired ? 'EXPIRED' : 'expires'} ${new Date(session.expires_at * 1000).toISOString()}${session.expired ? ' (run agentkeys init)' : ''}`
          : 'session  none (run agentkeys init)',
      ]);
    });
}
