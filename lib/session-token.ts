import type { LoginMethod } from './login-methods';
import { errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { SigningKey } from './signing-key';
import { assertCanonicalCompactJws, JwsSpellingError, lowSCompactJws } from './compact-jws';
import { AgentKeysError } from './errors';

/**
 * Broker session tokens (docs/contracts.md §5): ES256, header kid + typ "at+jwt", iss = public URL,
 * aud "agentkeys-broker", sub = OmniAccount, a jti that logout revokes.
 */
export const SESSION_AUDIENCE = 'agentkeys-broker';
export const SESSION_TYP = 'at+jwt';

/** How the session was obtained: derived from the login-method registry (lib/login-methods.ts). */
export type { LoginMethod };

export interface SessionClaims extends JWTPayload {
  sub: string;
  jti: string;
  exp: number;
  iat: number;
  /** How the session was obtained. */
  amr: LoginMethod;
  /** The EVM address that signed in, for wallet logins (lower-case). */
  wallet?: string;
}

export async function signSessionToken(
  key: SigningKey,
  opts: { issuer: string; omniAccount: string; jti: string; method: LoginMethod; wallet?: string; nowSeconds: number; ttlSeconds: number },
): Promise<{ token: string; expiresAt: number }> {
  const expiresAt = opts.nowSeconds + opts.ttlSeconds;
  const claims: Record<string, unknown> = { amr: opts.method };
  if (opts.wallet) claims.wallet = opts.wallet;
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: SESSION_TYP })
    .setIssuer(opts.issuer)
    .setAudience(SESSION_AUDIENCE)
    .setSubject(opts.omniAccount)
    .setJti(opts.jti)
    .setIssuedAt(opts.nowSeconds)
    .setExpirationTime(expiresAt)
    .sign(key.privateKey);
  // Issued with a low s: the form a bearer's records are keyed by (lowSCompactJws), so the issued
  // text and its ECDSA twin hash alike.
  return { token: lowSCompactJws(token), expiresAt };
}

export class SessionTokenError extends AgentKeysError {
  override readonly code: string = 'ERR_SESSION_TOKEN';
  override name = 'SessionTokenError';
}

/** Verifies spelling, signature, alg, typ, issuer, audience and expiry; throws SessionTokenError with the reason. */
export async function verifySessionToken(key: SigningKey, token: string, issuer: string): Promise<SessionClaims> {
  try {
    assertCanonicalCompactJws(token);
    const { payload } = await jwtVerify(token, key.publicKey, {
      algorithms: ['ES256'],
      issuer,
      audience: SESSION_AUDIENCE,
      typ: SESSION_TYP,
      requiredClaims: ['sub', 'jti', 'exp', 'iat'],
    });
    return payload as SessionClaims;
  } catch (e) {
    if (e instanceof JwsSpellingError) throw new SessionTokenError(e.message);
    if (e instanceof errors.JWTExpired) throw new SessionTokenError('token expired');
    if (e instanceof errors.JOSEError) throw new SessionTokenError(`invalid token: ${e.code}`);
    throw e;
  }
}
