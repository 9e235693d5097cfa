import { parseSiweMessage } from '../../lib/wallet-message';

/** An injected EIP-1193 wallet (window.ethereum): MetaMask, Rabby, a mobile wallet's browser… */
interface Eip1193 {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

export function injectedWallet(): Eip1193 | undefined {
  return (window as unknown as { ethereum?: Eip1193 }).ethereum;
}

function provider(): Eip1193 {
  const p = injectedWallet();
  if (!p) throw new Error('no wallet found in this browser (an EIP-1193 wallet such as MetaMask injects window.ethereum)');
  return p;
}

/** The wallet's first account (asks the person to connect). */
export async function connectWallet(): Promise<string> {
  const accounts = (await provider().request({ method: 'eth_requestAccounts' })) as string[];
  const first = accounts[0];
  if (typeof first !== 'string') throw new Error('the wallet shared no account');
  return first;
}

export async function walletChainId(): Promise<number> {
  const hex = await provider().request({ method: 'eth_chainId' });
  const n = typeof hex === 'string' ? parseInt(hex, 16) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : 1;
}

const hexOf = (text: string): string => `0x${Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, '0')).join('')}`;

/** personal_sign (EIP-191) of a text by `address`. */
export async function personalSign(text: string, address: string): Promise<string> {
  const signature = await provider().request({ method: 'personal_sign', params: [hexOf(text), address] });
  if (typeof signature !== 'string') throw new Error('the wallet returned no signature');
  return signature;
}

export interface TypedData {
  domain: Record<string, unknown>;
  types: Record<string, unknown>;
  primaryType: string;
  message: Record<string, unknown>;
}

/** EIP-712's domain fields in the order the standard lists them, with their types. */
const DOMAIN_FIELDS = [
  ['name', 'string'],
  ['version', 'string'],
  ['chainId', 'uint256'],
  ['verifyingContract', 'address'],
  ['salt', 'bytes32'],
] as const;

/**
 * The typed data as eth_signTypedData_v4 takes it: wallets want the EIP712Domain type spelled
 * out, made here of the fields the domain has (the broker's answer, like viem's, leaves it implied).
 */
export function withDomainType(data: TypedData): TypedData {
  const EIP712Domain = DOMAIN_FIELDS.filter(([name]) => data.domain[name] !== undefined).map(([name, type]) => ({ name, type }));
  return { ...data, types: { EIP712Domain, ...data.types } };
}

/** eth_signTypedData_v4 (EIP-712) of `data` by `address`. */
export async function signTypedData(data: TypedData, address: string): Promise<string> {
  const signature = await provider().request({ method: 'eth_signTypedData_v4', params: [address, JSON.stringify(withDomainType(data))] });
  if (typeof signature !== 'string') throw new Error('the wallet returned no signature');
  return signature;
}

/**
 * What a wallet should check before it signs a SIWE message (EIP-4361 §"Wallet implementer
 * guidelines"): the message is for this site. A message naming another domain or URI (someone
 * else's sign-in relayed through this page) is not passed to the wallet at all.
 */
export function checkSiweForThisSite(message: string, address: string): void {
  const m = parseSiweMessage(message);
  if (m.domain !== location.host) throw new Error(`the sign-in message is for ${m.domain}, not for ${location.host}; nothing was signed`);
  if (new URL(m.uri).origin !== location.origin) throw new Error(`the sign-in message names ${m.uri}, not this site; nothing was signed`);
  if (m.address.toLowerCase() !== address.toLowerCase()) throw new Error('the sign-in message names another address; nothing was signed');
}
