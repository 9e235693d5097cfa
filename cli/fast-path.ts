/**
 * Answers `agentkeys [--profile P] mint aws --credential-process [--duration S] [--grant-id G]`
 * from the profile's cached credentials without loading the rest of the CLI: the AWS CLI runs
 * `credential_process` on every invocation. Anything it is not sure of (other flags, no cache, an
 * expired session, AGENTKEYS_TOKEN, an AGENTKEYS_BROKER_URL naming another broker than the session's)
 * is left to the full CLI, which gives the same answer or the error.
 */
import { sameBrokerUrl } from './broker-client';
import { cachedCredentials, credentialProcessLine, mintBody, type MintOptions } from './credential-cache';
import { checkProfileName, openStore, readProfileRecord } from './session-store';

/** The arguments after `node agentkeys`: the line to print, or undefined to run the full CLI. */
export async function answerFromCache(args: string[], env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (env.AGENTKEYS_TOKEN || !args.includes('--credential-process')) return undefined;
  let profile = env.AGENTKEYS_PROFILE || 'default';
  const o: MintOptions = {};
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string | undefined => (eq > 0 ? a.slice(eq + 1) : args[++i]);
    if (flag === '--credential-process' && eq < 0) continue;
    if (flag === '--profile') profile = value() ?? '';
    else if (flag === '--duration') o.duration = value();
    else if (flag === '--grant-id') o.grantId = value();
    else if (a.startsWith('-')) return undefined;
    else words.push(a);
  }
  if (words.join(' ') !== 'mint aws') return undefined;
  const record = await readProfileRecord(checkProfileName(profile));
  if (!record?.expires_at || record.expires_at * 1000 <= Date.now()) return undefined;
  const session = await (await openStore(record)).load(profile);
  if (!session || session.expires_at * 1000 <= Date.now()) return undefined;
  // Credentials of the session's broker are no answer for another one (the full CLI refuses that).
  if (env.AGENTKEYS_BROKER_URL && !sameBrokerUrl(env.AGENTKEYS_BROKER_URL, session.broker_url)) return undefined;
  const cached = cachedCredentials(session, mintBody(o), Math.floor(Date.now() / 1000));
  return cached ? credentialProcessLine(cached) : undefined;
}
