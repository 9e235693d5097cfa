/** What every command gets: the global options, the output helpers, the profile and its session store. */
import type { Command } from 'commander';
import { BrokerClient, sameBrokerUrl } from './broker-client';
import { initCommandFor, NotLoggedInError, UsageError } from './errors';
import { renewIfDue, withLock, withRefreshToken } from './renew';
import { shown, shownJson } from './terminal-text';
import {
  checkProfileName,
  forgetLogin,
  openLoginStore,
  openStore,
  readProfileRecord,
  saveLogin,
  type ProfileRecord,
  type ProfileSession,
  type SessionStore,
} from './session-store';

export const DEFAULT_BROKER_URL = 'http://127.0.0.1:8091';

export interface GlobalOptions {
  brokerUrl?: string;
  profile?: string;
  json?: boolean;
  /** `init --show-token` (the parent's option, wherever it stands on the line). */
  showToken?: boolean;
}

export interface Spinner {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
  stop(): void;
}

export class CliContext {
  private storePromise?: Promise<SessionStore>;
  constructor(
    /** --broker-url or AGENTKEYS_BROKER_URL when given; otherwise the URL the profile logged in to. */
    readonly explicitBrokerUrl: string | undefined,
    readonly profile: string,
    readonly json: boolean,
    /** The profile's profile.json, when it has one. */
    readonly record: ProfileRecord | undefined,
    readonly env: NodeJS.ProcessEnv = process.env,
    readonly showToken = false,
  ) {}

  static async open(cmd: Command): Promise<CliContext> {
    const o = cmd.optsWithGlobals<GlobalOptions>();
    const env = process.env;
    const profile = checkProfileName(o.profile ?? (env.AGENTKEYS_PROFILE || 'default'));
    return new CliContext(
      o.brokerUrl ?? (env.AGENTKEYS_BROKER_URL || undefined),
      profile,
      o.json === true,
      await readProfileRecord(profile),
      env,
      o.showToken === true,
    );
  }

  /** The store holding this profile's session: where it was saved, or where a new login would go. */
  store(): Promise<SessionStore> {
    this.storePromise ??= this.record ? openStore(this.record) : openLoginStore(this.env);
    return this.storePromise;
  }

  /**
   * Keeps a new login in the store a new login goes to now (and forgets one kept elsewhere before),
   * under the profile's renewal lock: a renewal of the old login that is in flight finishes first
   * and is then replaced, instead of writing the old account back over this one when it ends.
   */
  async saveLogin(session: ProfileSession): Promise<{ store: SessionStore; session: ProfileSession }> {
    const store = await openLoginStore(this.env);
    const kept = await withRefreshToken(session);
    await withLock(this.profile, async (stillHeld) => {
      // The record as it is now: a renewal or a logout meanwhile may have rewritten it.
      const record = (await readProfileRecord(this.profile)) ?? this.record;
      await stillHeld('saving the login');
      await saveLogin(this.profile, store, kept, record);
    });
    return { store, session: kept };
  }

  async forget(): Promise<void> {
    await forgetLogin(this.profile, await this.store(), this.record);
  }

  /** --broker-url / AGENTKEYS_BROKER_URL, else the profile's own, else the default. */
  get brokerUrl(): string {
    return this.explicitBrokerUrl ?? this.record?.broker_url ?? DEFAULT_BROKER_URL;
  }

  broker(token?: string): BrokerClient {
    return new BrokerClient(this.brokerUrl, token);
  }

  /** AGENTKEYS_TOKEN when set (a bearer for CI), else the stored session of this profile, refused when missing or expired on this clock. */
  async session(): Promise<ProfileSession | { token: string; fromEnv: true }> {
    const envToken = this.env.AGENTKEYS_TOKEN?.trim();
    if (envToken) return { token: envToken, fromEnv: true };
    return this.storedSession();
  }

  async storedSession(): Promise<ProfileSession> {
    const store = await this.store();
    const loaded = this.record ? await store.load(this.profile) : undefined;
    if (!loaded) throw new NotLoggedInError(`profile "${this.profile}" is not logged in: run ${initCommandFor(this.profile)}`);
    const s = await renewIfDue(this.profile, store, this.record, loaded);
    if (s.expires_at * 1000 <= Date.now())
      throw new NotLoggedInError(
        `the session of profile "${this.profile}" expired at ${new Date(s.expires_at * 1000).toISOString()}: run ${initCommandFor(this.profile)}`,
      );
    return s;
  }

  /** A broker client carrying the bearer: AGENTKEYS_TOKEN's at brokerUrl, a stored session's at the broker it logged in to. */
  async authedBroker(): Promise<BrokerClient> {
    const s = await this.session();
    return 'fromEnv' in s
      ? new BrokerClient(this.brokerUrl, s.token, 'AGENTKEYS_TOKEN')
      : new BrokerClient(this.sessionBrokerUrl(s), s.token, 'stored', this.profile);
  }

  /**
   * Where a stored session's bearer may go: only the broker that issued it. A --broker-url or
   * AGENTKEYS_BROKER_URL naming another one (a staging broker exported in the shell) is refused
   * rather than handed this profile's bearer.
   */
  sessionBrokerUrl(s: Pick<ProfileSession, 'broker_url'>): string {
    if (this.explicitBrokerUrl !== undefined && !sameBrokerUrl(this.explicitBrokerUrl, s.broker_url))
      throw new UsageError(
        `profile "${this.profile}" is logged in at ${s.broker_url}, and its session is not sent to ${this.explicitBrokerUrl} (--broker-url or AGENTKEYS_BROKER_URL): use another --profile for that broker, or drop the setting`,
      );
    return s.broker_url;
  }

  /**
   * Prints the result: JSON when --json, else the human lines, each with its control and direction
   * characters escaped (they carry the broker's text: reasons, targets, addresses).
   */
  print(json: unknown, human: string | string[]): void {
    // shownJson: the same JSON value, with the C1 and direction characters a broker may send as \u escapes (a terminal may show it).
    if (this.json) process.stdout.write(`${shownJson(json, 2)}\n`);
    else process.stdout.write(`${(Array.isArray(human) ? human : [human]).map(shown).join('\n')}\n`);
  }

  /** Progress for slow steps, on stderr, only for a person at a terminal. */
  async spinner(text: string): Promise<Spinner> {
    if (this.json || !process.stderr.isTTY) {
      return { update: () => undefined, succeed: () => undefined, fail: () => undefined, stop: () => undefined };
    }
    const { default: ora } = await import('ora');
    const s = ora({ text: shown(text), stream: process.stderr }).start();
    return {
      update: (t) => {
        s.text = shown(t);
      },
      succeed: (t) => {
        s.succeed(t === undefined ? t : shown(t));
      },
      fail: (t) => {
        s.fail(t === undefined ? t : shown(t));
      },
      stop: () => {
        s.stop();
      },
    };
  }
}
