/**
 * Log in to an AgentKeys broker with an EVM wallet, in one file: a viem wallet client signs the
 * stateless login message (docs/contracts.md §5, personal_sign) and the session comes back over HTTP.
 *
 *   BROKER_URL=http://127.0.0.1:8091 PRIVATE_KEY=0x… npx tsx docs/examples/wallet-login.ts
 *
 * Without PRIVATE_KEY a throw-away key is generated. Needs only `viem` and Node 20's fetch.
 */
import { createWalletClient, http } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { mainnet } from 'viem/chains';

const brokerUrl = (process.env.BROKER_URL ?? 'http://127.0.0.1:8091').replace(/\/+$/, '');
const account = privateKeyToAccount((process.env.PRIVATE_KEY as `0x${string}` | undefined) ?? generatePrivateKey());
// A local account signs locally: the transport is never called for personal_sign.
const wallet = createWalletClient({ account, chain: mainnet, transport: http() });

/** The exact text the broker rebuilds: lines joined by "\n", address lower-case, unix seconds. */
function loginMessage(address: string, timestamp: number): string {
  return [
    'Hi! Welcome to AgentKeys.',
    'Sign this message to prove you own this wallet. It sends no transaction and costs no gas.',
    `Address: ${address.toLowerCase()}`,
    `Timestamp is ${timestamp}.`,
  ].join('\n');
}

async function main(): Promise<void> {
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = await wallet.signMessage({ account, message: loginMessage(account.address, timestamp) });
  const res = await fetch(`${brokerUrl}/v1/session/wallet_login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ address: account.address, signature, timestamp }),
  });
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`login refused (${res.status}): ${JSON.stringify(body)}`);
  console.log(`logged in as ${account.address}`);
  console.log(`  omni_account ${String(body.omni_account)}`);
  console.log(`  user_id      ${String(body.user_id)}`);
  console.log(`  expires_at   ${new Date(Number(body.expires_at) * 1000).toISOString()}`);

  const me = await fetch(`${brokerUrl}/v1/session/me`, { headers: { authorization: `Bearer ${String(body.token)}` } });
  console.log(`GET /v1/session/me → ${me.status}`, await me.json());
}

main().catch((e: unknown) => {
  console.error((e as Error).message);
  process.exit(1);
});
