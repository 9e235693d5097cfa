/**
 * `npx tsx scripts/bench/seal-cost.ts [n]`: what sealing adds to one mint, timed in this process —
 * the API's fresh X25519 key pair, the activity's JWE of the credential, the API's opening of it
 * (lib/seal.ts) — as p50/p95 over n rounds (default 500) after a warm-up. The rest of a mint's path
 * is the same with or without sealing, so this is its cost per mint (docs/performance.md).
 */
import { createSealKeyPair, sealJson, unsealJson } from '../../lib/seal';

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 500);
  if (!Number.isInteger(n) || n < 10) throw new Error('usage: npx tsx scripts/bench/seal-cost.ts [rounds ≥ 10]');
  // An OIDC JWT's size (header, ~10 claims, ES256 signature): ~700 characters.
  const credential = { jwt: `eyJ${'x'.repeat(700)}`, kid: 'k1', expiration: new Date().toISOString() };
  const times: Record<'keypair' | 'seal' | 'open' | 'total', number[]> = { keypair: [], seal: [], open: [], total: [] };
  for (let i = 0; i < n + 50; i++) {
    const t0 = performance.now();
    const pair = await createSealKeyPair();
    const t1 = performance.now();
    const jwe = await sealJson(pair.publicJwk, credential);
    const t2 = performance.now();
    await unsealJson(pair.privateKey, jwe);
    const t3 = performance.now();
    if (i < 50) continue;
    times.keypair.push(t1 - t0);
    times.seal.push(t2 - t1);
    times.open.push(t3 - t2);
    times.total.push(t3 - t0);
  }
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;
  for (const [k, xs] of Object.entries(times)) console.log(`${k.padEnd(8)} p50 ${q(xs, 0.5).toFixed(2)} ms  p95 ${q(xs, 0.95).toFixed(2)} ms`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
