/** What every command gets: the global options, the output helpers, the session store. */
import type { Command } from 'commander';
import { BrokerClient } from './broker-client';
import { NotLoggedInError } from './errors';
import { checkProfileName, openSessionStore, type ProfileSession, type SessionStore } from './session-store';

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
    /** --broker-url or AGENTKEYS_BROKER_URL when given; commands on a stored session otherwise use the URL it logged in to. */
    readonly explicitBrokerUrl: string | undefined,
    readonly profile: string,
    readonly json: boolean,
    readonly env: NodeJS.ProcessEnv = process.env,
    readonly showToken = false,
  ) {}

  static from(cmd: Command): CliContext {
    const o = cmd.optsWithGlobals<GlobalOptions>();
    const env = process.env;
    return new CliContext(
      o.brokerUrl ?? env.AGENTKEYS_BROKER_URL,
      checkProfileName(o.profile ?? env.AGENTKEYS_PROFILE ?? 'default'),
      o.json === true,
      env,
      o.showToken === true,
    );
  }

  store(): Promise<SessionStore> {
    this.storePromise ??= openSessionStore(this.env);
    return this.storePromise;
  }

  get brokerUrl(): string {
    return this.explicitBrokerUrl ?? DEFAULT_BROKER_URL;
  }

  broker(token?: string): BrokerClient {
    return new BrokerClient(this.brokerUrl, token);
  }

  /** The stored session of this profile, refused when missing or expired on this clock. */
  async session(): Promise<ProfileSession> {
    const s = await (await this.store()).load(this.profile);
    if (!s) throw new NotLoggedInError(`profile "${this.profile}" is not logged in: run agentkeys init`);
    if (s.expires_at * 1000 <= Date.now())
      throw new NotLoggedInError(`the session of profile "${this.profile}" expired at ${new Date(s.expires_at * 1000).toISOString()}: run agentkeys init`);
    return s;
  }

  /** A broker client carrying this profile's bearer (at the URL it logged in to unless --broker-url says otherwise). */
  async authedBroker(): Promise<{ broker: BrokerClient; session: ProfileSession }> {
    const session = await this.session();
    return { broker: new BrokerClient(this.explicitBrokerUrl ?? session.broker_url, session.token), session };
  }

  /** Prints the result: JSON when --json, else the human lines. */
  print(json: unknown, human: string | string[]): void {
    if (this.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    else process.stdout.write(`${(Array.isArray(human) ? human : [human]).join('\n')}\n`);
  }

  /** Progress for slow steps, on stderr, only for a person at a terminal. */
  async spinner(text: string): Promise<Spinner> {
    if (this.json || !process.stderr.isTTY) {
      return { update: () => undefined, succeed: () => undefined, fail: () => undefined, stop: () => undefined };
    }
    const { default: ora } = await import('ora');
    const s = ora({ text, stream: process.stderr }).start();
    return {
      update: (t) => {
        s.text = t;
      },
      succeed: (t) => {
        s.succeed(t);
      },
      fail: (t) => {
        s.fail(t);
      },
      stop: () => {
        s.stop();
      },
    };
  }
}
