/** Loads the wallet that signs a login: a private key file, a mnemonic file or a V3 keystore. */
import { readFile, stat } from 'node:fs/promises';
import type { HDAccount, PrivateKeyAccount } from 'viem/accounts';
import type { Command } from 'commander';
import type { CliContext } from './context';
import { CliError, UsageError } from './errors';
import { askSecret } from './prompt';

export type WalletAccount = PrivateKeyAccount | HDAccount;

export interface WalletKeyOptions {
  privateKeyFile?: string;
  mnemonicFile?: string;
  accountIndex?: string;
  keystore?: string;
}

async function readSecretFile(path: string, what: string, warnIfShared = true): Promise<string> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (e) {
    throw new CliError(`cannot read the ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (warnIfShared && process.platform !== 'win32') {
    const mode = (await stat(path)).mode & 0o777;
    if (mode & 0o077)
      process.stderr.write(
        `warning: the ${what} file ${path} is readable by ${mode & 0o007 ? 'everyone' : 'its group'} (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${path}\n`,
      );
  }
  return text;
}

export function walletSourceCount(o: WalletKeyOptions): number {
  return [o.privateKeyFile, o.mnemonicFile, o.keystore].filter(Boolean).length;
}

/** The account, or a clear error naming the file and what is wrong with it (never its content). */
export async function loadWalletAccount(o: WalletKeyOptions, keystorePassword: () => Promise<string>): Promise<WalletAccount> {
  if (walletSourceCount(o) !== 1) throw new UsageError('give exactly one of --private-key-file, --mnemonic-file or --keystore');
  if (o.accountIndex !== undefined && !o.mnemonicFile) throw new UsageError('--account-index goes with --mnemonic-file');
  if (o.privateKeyFile) {
    const text = await readSecretFile(o.privateKeyFile, 'private key');
    const hex = text.startsWith('0x') ? text : `0x${text}`;
    if (!/^0x[0-9a-fA-F]{64}$/.test(hex))
      throw new CliError(`${o.privateKeyFile} is not a private key: expected 64 hex digits (optionally 0x-prefixed) and nothing else`);
    const { privateKeyToAccount } = await import('viem/accounts');
    try {
      return privateKeyToAccount(hex as `0x${string}`);
    } catch {
      throw new CliError(`${o.privateKeyFile} holds no valid secp256k1 private key`);
    }
  }
  if (o.mnemonicFile) {
    const words = (await readSecretFile(o.mnemonicFile, 'mnemonic')).split(/\s+/).join(' ');
    const index = o.accountIndex === undefined ? 0 : Number(o.accountIndex);
    if (!Number.isInteger(index) || index < 0 || index > 2 ** 31 - 1) throw new UsageError('--account-index must be a whole number from 0 to 2147483647');
    const { mnemonicToAccount } = await import('viem/accounts');
    try {
      return mnemonicToAccount(words, { addressIndex: index });
    } catch {
      throw new CliError(`${o.mnemonicFile} holds no valid BIP-39 mnemonic`);
    }
  }
  const path = o.keystore as string;
  const text = await readSecretFile(path, 'keystore', false);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CliError(`${path} is not a keystore: not JSON`);
  }
  const crypto = (json as { crypto?: unknown; Crypto?: unknown } | null)?.crypto ?? (json as { Crypto?: unknown } | null)?.Crypto;
  if ((json as { version?: unknown }).version !== 3 || typeof crypto !== 'object' || crypto === null || !('mac' in crypto) || !('ciphertext' in crypto)) {
    throw new CliError(`${path} is not a V3 keystore (expected version 3 with crypto.ciphertext and crypto.mac)`);
  }
  const password = await keystorePassword();
  const { Wallet } = await import('@ethereumjs/wallet');
  let wallet: { getPrivateKeyString(): string };
  try {
    wallet = await Wallet.fromV3(json as Parameters<typeof Wallet.fromV3>[0], password, true);
  } catch {
    // The structure was checked above: what fails now is the MAC, i.e. the password.
    throw new CliError(`wrong password for the keystore ${path} (or the keystore is damaged)`);
  }
  const { privateKeyToAccount } = await import('viem/accounts');
  return privateKeyToAccount(wallet.getPrivateKeyString() as `0x${string}`);
}

/** The wallet options every command that signs takes (init wallet, init tee, grant accept). */
export function withWalletKeyOptions(cmd: Command): Command {
  return cmd
    .option('--private-key-file <file>', 'a file holding the wallet private key (hex)')
    .option('--mnemonic-file <file>', 'a file holding a BIP-39 mnemonic')
    .option('--account-index <n>', "with --mnemonic-file: the address index (m/44'/60'/0'/0/n)", undefined)
    .option('--keystore <file>', 'a V3 JSON keystore (password from a prompt or AGENTKEYS_KEYSTORE_PASSWORD)');
}

/** loadWalletAccount with the keystore password from AGENTKEYS_KEYSTORE_PASSWORD or a prompt. */
export function loadCliWallet(ctx: CliContext, o: WalletKeyOptions): Promise<WalletAccount> {
  return loadWalletAccount(o, async () => ctx.env.AGENTKEYS_KEYSTORE_PASSWORD ?? askSecret('Keystore password', 'set AGENTKEYS_KEYSTORE_PASSWORD'));
}
