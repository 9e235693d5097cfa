/**
 * The shape of a seal key as it travels in a workflow input (lib/seal.ts makes and uses them):
 * pure, so the workflow bundle checks it too (the approval flow's poll validator).
 */

/** The public half: an X25519 OKP JWK (or, from before 2026-12-06, an EC P-256 one), public members only. */
export type SealPublicJwk = { kty: 'OKP'; crv: 'X25519'; x: string } | { kty: 'EC'; crv: 'P-256'; x: string; y: string };

export function isSealPublicJwk(k: unknown): k is SealPublicJwk {
  const j = k as { kty?: unknown; crv?: unknown; x?: unknown; y?: unknown } | undefined;
  if (j?.kty === 'OKP') return j.crv === 'X25519' && typeof j.x === 'string';
  return j?.kty === 'EC' && j.crv === 'P-256' && typeof j.x === 'string' && typeof j.y === 'string';
}
