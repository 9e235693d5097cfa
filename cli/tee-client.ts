/**
 * Logging in at a Heima TEE worker (JSON-RPC 2.0, client_id `agentkeys`): an email code or a
 * wallet signature over the TEE's sign-in message. Its access token is a bearer at the broker.
 */
import { ANSWER_MAX_BYTES, boundedText, checkTransport, wasRedirect } from './broker-client';
import { CliError } from './errors';

const CLIENT_ID = 'agentkeys';
let nextId = 1;

/** Refuses a TEE URL the login would cross a network over in plain http (see checkTransport). */
export function checkTeeUrl(url: string): void {
  checkTransport(url, 'the TEE worker', '--tee-url or AGENTKEYS_TEE_URL');
}

async function rpc<T>(url: string, method: string, params: unknown): Promise<T> {
  checkTeeUrl(url);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params }),
      signal: AbortSignal.timeout(30_000),
      // Not followed: a redirect would re-send the code or the signature to wherever it points.
      redirect: 'error',
    });
  } catch (e) {
    if (wasRedirect(e)) throw new CliError(`the TEE worker at ${url} answered ${method} with a redirect, which this CLI does not follow: check --tee-url`);
    throw new CliError(`cannot reach the TEE worker at ${url} (${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name}): check --tee-url`);
  }
  let body: { result?: T; error?: { code: number; message: string } };
  try {
    const text = await boundedText(res);
    if (text === undefined)
      throw new CliError(`the TEE worker at ${url} answered ${method} with more than ${ANSWER_MAX_BYTES / 1024 / 1024} MiB: check --tee-url`);
    body = JSON.parse(text) as typeof body;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`the TEE worker at ${url} answered HTTP ${res.status} without JSON-RPC`);
  }
  if (body.error) throw new CliError(`the TEE refused ${method}: ${body.error.message} (${body.error.code})`);
  return body.result as T;
}

export interface TeeLoginResult {
  accessToken: string;
  /** Unix seconds, from the access token's exp. */
  expiresAt: number;
}

export type TeeLoginMethod =
  | { kind: 'email'; email: string; code: () => Promise<string> }
  | { kind: 'evm'; address: string; omniAccount: string; sign: (message: string) => Promise<string> };

interface UserLoginResult {
  access_token: string;
  id_token: string;
  backend_response: { code?: number; message?: string };
}

function expOf(jwt: string): number {
  const payload = jwt.split('.')[1];
  const exp = payload ? (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp : undefined;
  if (typeof exp !== 'number') throw new CliError('the TEE answered an access token without exp');
  return exp;
}

/**
 * The text the wallet signs to log in: the TEE's sign-in message as JSON, and only when it is one
 * (upstream `HeimaMessagePayload`: client_id, omni_account, message_code, an 8-digit otp; litentry/heima
 * tee-worker/omni-executor/rpc-server/src/methods/omni/get_web3_sign_in_message.rs
 * @3d8240d8baf4878964a7fe24950fe278ab28a877, the same payload in the newer crate layout at
 * d106ac346e7142bd65bc90b5b4b8cda8ecccec64, `oe_core::auth::web3::HeimaMessagePayload`) for AgentKeys'
 * client and this wallet's account. Anything else is refused unsigned: a TEE URL that is not the
 * real worker's could otherwise have the key sign another client's login, or any text at all.
 */
function signInMessage(answer: unknown, omniAccount: string): string {
  const o = answer && typeof answer === 'object' && !Array.isArray(answer) ? (answer as Record<string, unknown>) : undefined;
  const keys = o ? Object.keys(o).sort().join(',') : '';
  const hex = (v: unknown) => (typeof v === 'string' ? v.toLowerCase().replace(/^0x/, '') : undefined);
  if (
    !o ||
    keys !== 'client_id,message_code,omni_account' ||
    o.client_id !== CLIENT_ID ||
    hex(o.omni_account) !== hex(omniAccount) ||
    typeof o.message_code !== 'string' ||
    !/^[0-9A-Za-z]{1,32}$/.test(o.message_code)
  )
    throw new CliError(`the TEE worker's sign-in message is not one for client ${CLIENT_ID} and account ${omniAccount}; nothing signed`);
  return JSON.stringify(o);
}

export async function teeLogin(url: string, m: TeeLoginMethod): Promise<TeeLoginResult> {
  let userId: { type: string; value: string };
  let userAuth: { type: string; value: string };
  if (m.kind === 'email') {
    await rpc(url, 'omni_requestEmailVerificationCode', { client_id: CLIENT_ID, user_email: m.email });
    userId = { type: 'email', value: m.email };
    userAuth = { type: 'email', value: (await m.code()).trim() };
  } else {
    const message = signInMessage(await rpc<unknown>(url, 'omni_getWeb3SignInMessage', { client_id: CLIENT_ID, omni_account: m.omniAccount }), m.omniAccount);
    userId = { type: 'evm', value: m.address };
    userAuth = { type: 'evm', value: await m.sign(message) };
  }
  const login = await rpc<UserLoginResult>(url, 'omni_userLogin', { user_id: userId, user_auth: userAuth, client_id: CLIENT_ID, client_auth: null });
  if (login.backend_response?.code !== 10000)
    throw new CliError(`the broker refused the TEE's login callback: ${login.backend_response?.message ?? 'no answer'}`);
  return { accessToken: login.access_token, expiresAt: expOf(login.access_token) };
}
