import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { decodeProtectedHeader } from 'jose';
import { isTeeTokenRevoked } from '../../db/sessions';
import { canonicalCompactJws } from '../../lib/compact-jws';
import { hmacHex, safeEqual, sha256Hex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import type { SessionClaims } from '../../lib/session-token';
import { liveSessionClaims } from '../../services/sessions';
import type { AuthContext } from '../dependencies';

// The scheme name is case-insensitive (RFC 9110 §11.1).
const BEARER_RE = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/i;
const MAX_TOKEN_LENGTH = 8192;
/** How long a session token's verified signature and claims are reused, and how many are kept. */
const VERIFIED_SESSION_TTL_MS = 60_000;
const VERIFIED_SESSION_CACHE_SIZE = 10_000;

/**
 * Session tokens whose signature and claims verified, by the SHA-256 of the token: what ES256
 * verification answers is fixed by the token and the broker's key, so a token presented again
 * within a minute is not verified again (WebCrypto's verify was the largest cryptographic cost of
 * an authenticated call, docs/performance.md). Only a verified token enters; its expiry is still
 * checked on every use, and whether the session is live (logout) is still read from the database.
 */
export class VerifiedSessions {
  private readonly entries = new Map<string, { claims: SessionClaims; until: number }>();

  constructor(
    private readonly ttlMs = VERIFIED_SESSION_TTL_MS,
    private readonly maxEntries = VERIFIED_SESSION_CACHE_SIZE,
  ) {}

  async verify(token: string, check: (token: string) => Promise<SessionClaims>): Promise<SessionClaims> {
    const key = sha256Hex(token);
    // The wall clock, as jose's verification uses it.
    const nowMs = Date.now();
    const hit = this.entries.get(key);
    // jose refuses a token at its exp second (exp <= now); so does a hit.
    if (hit && hit.until > nowMs && hit.claims.exp * 1000 > nowMs) return hit.claims;
    if (hit) this.entries.delete(key);
    const claims = await check(token);
    if (this.entries.size >= this.maxEntries) {
      // The oldest entry first (a Map iterates in insertion order).
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { claims, until: nowMs + this.ttlMs });
    return claims;
  }
}

export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (!header) throw new BrokerError('unauthorized', 'missing Authorization: Bearer <token>');
  if (header.length > MAX_TOKEN_LENGTH) throw new BrokerError('unauthorized', 'bearer token is too long');
  const m = BEARER_RE.exec(header);
  if (!m?.[1]) throw new BrokerError('unauthorized', 'malformed Authorization header; expected Bearer <jwt>');
  return m[1];
}

/**
 * A keyed digest of what a TEE access token is, not of how it was spelled: taken over the token
 * rewritten canonically from its decoded bytes (lib/compact-jws.ts). An RS256 signature is
 * determined by the signed text and the key, so these bytes name one token. `purpose` separates
 * the uses: 'revoked-tee-token' (what logout records and every TEE bearer is looked up by) and
 * 'tee-token' (the login callback's idempotency key). For a canonically spelled token (every token
 * the TEE issues) the digest equals the one taken over its text, as recorded before.
 */
export function teeTokenDigest(secret: Uint8Array, purpose: 'revoked-tee-token' | 'tee-token', token: string): string {
  return hmacHex(secret, purpose, canonicalCompactJws(token));
}

/**
 * True when the request carries `Authorization: Bearer <BROKER_OPS_TOKEN>` (compared by digest,
 * in constant time). Always false when no ops token is configured.
 */
export function hasOpsBearer(request: FastifyRequest, opsToken: string | undefined): boolean {
  if (!opsToken) return false;
  const m = /^Bearer (\S{1,4096})$/i.exec(request.headers.authorization ?? '');
  return m?.[1] !== undefined && safeEqual(sha256Hex(m[1]), sha256Hex(opsToken));
}

/**
 * Authenticates a bearer: a broker session (ES256, checked against the sessions table so logout
 * takes effect) or a Heima TEE access JWT (RS256, verified locally with the configured key).
 */
export default fp(
  async function authPlugin(app: FastifyInstance) {
    const { config, secrets, db } = app.deps;
    const verifiedSessions = new VerifiedSessions();

    async function authenticate(token: string): Promise<AuthContext> {
      let alg: string | undefined;
      try {
        alg = decodeProtectedHeader(token).alg;
      } catch {
        throw new BrokerError('unauthorized', 'bearer is not a JWT');
      }
      if (alg === 'ES256') {
        const claims = await liveSessionClaims({ secrets, db, issuer: config.publicUrl }, token, (t, check) => verifiedSessions.verify(t, check));
        return { kind: 'session', omniAccount: claims.sub, jti: claims.jti, expiresAt: claims.exp, method: claims.amr, wallet: claims.wallet };
      }
      if (alg === 'RS256') {
        const tee = app.deps.teeVerifier;
        if (!tee) throw new BrokerError('unauthorized', 'TEE tokens are not accepted: no TEE key is configured');
        let claims;
        try {
          claims = await tee.verify(token);
        } catch (e) {
          throw new BrokerError('unauthorized', `TEE token refused: ${(e as Error).message}`);
        }
        if (claims.typ !== 'access') throw new BrokerError('unauthorized', `TEE token of typ "${claims.typ}" cannot be used here; use an access token`);
        const revocationDigest = teeTokenDigest(secrets.hmacSecret, 'revoked-tee-token', token);
        if (await isTeeTokenRevoked(db, revocationDigest)) throw new BrokerError('unauthorized', 'this TEE token has been logged out');
        return { kind: 'tee', omniAccount: claims.sub, expiresAt: claims.exp, teeTokenDigest: revocationDigest };
      }
      throw new BrokerError('unauthorized', `unsupported token algorithm ${alg ?? '(none)'}`);
    }

    app.decorate('requireAuth', async (request: FastifyRequest) => {
      request.auth = await authenticate(bearerToken(request));
    });
  },
  { name: 'auth' },
);
