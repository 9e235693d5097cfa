/**
 * `npm run oidc:rotate`: rotates the OIDC issuer keyset (BROKER_OIDC_KEY_PATH, else
 * BROKER_DATA_DIR/oidc-keys.json), creating it on first use. The new key signs from now on; the
 * previous one stays in the JWKS for BROKER_OIDC_JWT_TTL_SECONDS + BROKER_OIDC_VERIFIER_CACHE_SECONDS,
 * so tokens it signed verify until they expire; keys past that are pruned. Running API and worker
 * processes pick the change up within BROKER_OIDC_KEY_RECHECK_MS, no restart needed.
 */
import { loadConfig } from '../lib/config';
import { oidcKeysetPath, retiredKeyRetentionSeconds, rotateOidcKeyset } from '../adapters/oidc-keys';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const path = oidcKeysetPath(config);
  const r = await rotateOidcKeyset(path, { retentionSeconds: retiredKeyRetentionSeconds(config) });
  if (r.created) {
    console.log(`created OIDC keyset ${path}; active kid ${r.activeKid}`);
    return;
  }
  console.log(`rotated OIDC keyset ${path}`);
  console.log(`  active kid  ${r.activeKid}`);
  console.log(`  retired kid ${r.retiredKid ?? '-'} (published until ${r.retiredDropAfter ?? '-'})`);
  if (r.dropped.length > 0) console.log(`  dropped     ${r.dropped.join(', ')}`);
}

main().catch((e: unknown) => {
  console.error(`oidc:rotate failed: ${(e as Error).message}`);
  process.exit(1);
});
