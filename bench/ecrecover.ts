/**
 * ecrecover cost of a wallet login, one run, three ways over the same signatures:
 *   viem       recoverMessageAddress (hash + pure-JS noble-curves recovery): viem's default path
 *   js         lib/evm-signature.ts recoverSigner with backend 'js' (the fallback; viem's recovery)
 *   native     lib/evm-signature.ts recoverSigner with backend 'native' (libsecp256k1 via N-API)
 * plus the whole broker check (createEvmSignatureVerifier().verify: shape, low-s, hash, recover).
 *
 *   npx tsx bench/ecrecover.ts [N=2000]
 */
import { performance } from 'node:perf_hooks';
import { recoverMessageAddress, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createEvmSignatureVerifier, personalMessageDigest, recoverSigner, SECP256K1_BACKEND, type Secp256k1Backend } from '../adapters/evm-signature';
import { buildStatelessWalletMessage, parseEoaSignature } from '../lib/wallet-message';
import { runBench } from './latency';

interface Case {
  address: string;
  message: string;
  signature: Hex;
}

async function makeCases(n: number): Promise<Case[]> {
  const cases: Case[] = [];
  const t = Math.floor(Date.now() / 1000);
  for (let i = 0; i < n; i++) {
    const account = privateKeyToAccount(generatePrivateKey());
    const message = buildStatelessWalletMessage(account.address, t - i);
    cases.push({ address: account.address.toLowerCase(), message, signature: await account.signMessage({ message }) });
  }
  return cases;
}

async function time(name: string, cases: Case[], fn: (c: Case) => Promise<string>): Promise<number> {
  for (const c of cases.slice(0, 50)) if ((await fn(c)) !== c.address) throw new Error(`${name}: wrong signer`); // warm-up + check
  const t0 = performance.now();
  for (const c of cases) if ((await fn(c)) !== c.address) throw new Error(`${name}: wrong signer`);
  const perCallUs = ((performance.now() - t0) / cases.length) * 1000;
  console.log(`${name.padEnd(44)} ${perCallUs.toFixed(1).padStart(8)} µs/call  (${cases.length} calls)`);
  return perCallUs;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 2000);
  if (!Number.isInteger(n) || n < 50) throw new Error('usage: tsx bench/ecrecover.ts [N >= 50]');
  console.log(`ecrecover of a personal_sign signature over the stateless login message; active backend: ${SECP256K1_BACKEND}`);
  const cases = await makeCases(n);
  const recover = (backend: Secp256k1Backend) => (c: Case) => recoverSigner(personalMessageDigest(c.message), parseEoaSignature(c.signature), backend);
  const viem = await time('viem recoverMessageAddress', cases, async (c) =>
    (await recoverMessageAddress({ message: c.message, signature: c.signature })).toLowerCase(),
  );
  const js = await time("recoverSigner 'js' (fallback)", cases, recover('js'));
  const native = SECP256K1_BACKEND === 'native' ? await time("recoverSigner 'native' (libsecp256k1)", cases, recover('native')) : Number.NaN;
  const verifier = createEvmSignatureVerifier();
  const full = await time('broker verify() (shape + low-s + recover)', cases, async (c) => {
    const r = await verifier.verify(c);
    return r.valid ? c.address : 'invalid';
  });
  console.log(
    `\nnative is ${(viem / native).toFixed(1)}x faster than viem's path and ${(js / native).toFixed(1)}x faster than the js fallback; full broker check ${full.toFixed(1)} µs`,
  );
}

runBench(main);
