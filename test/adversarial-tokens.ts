/**
 * Bearers the broker must refuse, built from a real session token: forgeries (another key under
 * the broker's kid, alg none, HS256 keyed with the public key, claims swapped under a real
 * signature), tokens the broker's own key signed but that are no session of its (wrong typ,
 * audience or issuer; a jti it never issued) and an expired one.
 */
import { randomBytes } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { insertSession } from '../db/sessions';
import { SESSION_TYP, signSessionToken, type LoginMethod } from '../lib/session-token';
import type { TestStack } from './harness';

const b64url = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export interface RefusedBearer {
  name: string;
  token: string;
  /** What the 401 message says. */
  message: RegExp;
}

/** Forgeries and look-alikes of `token` (a live session of the stack): each must get a 401. */
export async function forgedBearers(stack: TestStack, token: string): Promise<RefusedBearer[]> {
  const header = decodeProtectedHeader(token);
  const claims = decodeJwt(token);
  const kid = stack.secrets.sessionKey.kid;
  const otherKey = await generateKeyPair('ES256');
  const [h, , sig] = token.split('.');
  const other = `0x${randomBytes(32).toString('hex')}`;
  const broker = stack.secrets.sessionKey.privateKey;
  const sign = (hdr: Record<string, unknown>, body: Record<string, unknown>) => new SignJWT(body).setProtectedHeader({ alg: 'ES256', ...hdr }).sign(broker);
  return [
    {
      name: 'the same claims signed by another ES256 key under the broker kid',
      token: await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid, typ: SESSION_TYP }).sign(otherKey.privateKey),
      message: /SIGNATURE_VERIFICATION_FAILED/,
    },
    { name: 'alg none', token: `${b64url({ ...header, alg: 'none' })}.${b64url(claims)}.`, message: /algorithm none/ },
    {
      name: 'HS256 keyed with the public session JWK',
      token: await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid, typ: SESSION_TYP })
        .sign(Buffer.from(JSON.stringify(stack.secrets.sessionKey.publicJwk))),
      message: /algorithm HS256/,
    },
    { name: 'another sub under the real signature', token: `${h}.${b64url({ ...claims, sub: other })}.${sig}`, message: /SIGNATURE_VERIFICATION_FAILED/ },
    {
      name: 'a longer exp under the real signature',
      token: `${h}.${b64url({ ...claims, exp: (claims.exp ?? 0) + 86400 })}.${sig}`,
      message: /SIGNATURE_VERIFICATION_FAILED/,
    },
    { name: 'the signature cut off', token: `${h}.${b64url(claims)}.`, message: /invalid token/ },
    { name: 'broker key, typ JWT (not a session)', token: await sign({ kid, typ: 'JWT' }, claims), message: /invalid token/ },
    {
      name: 'broker key, audience sts.amazonaws.com',
      token: await sign({ kid, typ: SESSION_TYP }, { ...claims, aud: 'sts.amazonaws.com' }),
      message: /invalid token/,
    },
    { name: 'broker key, another issuer', token: await sign({ kid, typ: SESSION_TYP }, { ...claims, iss: 'https://evil.example' }), message: /invalid token/ },
    { name: 'broker key, no jti', token: await sign({ kid, typ: SESSION_TYP }, { ...claims, jti: undefined }), message: /invalid token/ },
    {
      name: 'broker key, a jti the broker never issued',
      token: await sign({ kid, typ: SESSION_TYP }, { ...claims, jti: randomBytes(16).toString('hex') }),
      message: /logged out/,
    },
  ];
}

/**
 * A session that was real but is past its expiry: signed by the broker's session key with the
 * same function a login uses, with its sessions row in place (never revoked), issued `ageSeconds`
 * ago for `ttlSeconds`. Only the token's own exp refuses it.
 */
export async function expiredSession(
  stack: TestStack,
  opts: { omniAccount: string; method?: LoginMethod; wallet?: string; ageSeconds?: number; ttlSeconds?: number },
): Promise<string> {
  const jti = randomBytes(16).toString('hex');
  const issuedAt = nowSeconds() - (opts.ageSeconds ?? 7200);
  const ttl = opts.ttlSeconds ?? 60;
  const method = opts.method ?? 'wallet';
  await insertSession(stack.db, { jti, omniAccount: opts.omniAccount, method, expiresAt: new Date((issuedAt + ttl) * 1000) });
  const { token } = await signSessionToken(stack.secrets.sessionKey, {
    issuer: stack.config.publicUrl,
    omniAccount: opts.omniAccount,
    jti,
    method,
    wallet: opts.wallet,
    nowSeconds: issuedAt,
    ttlSeconds: ttl,
  });
  return token;
}

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Every other spelling of `token` that decodes to the same bytes: its signature segment's last
 * character swapped for each one that differs only in the unused low bits (15 for a 256-byte RS256
 * or a 64-byte ES256 signature, whose last character carries 2 data bits and 4 unused ones).
 */
export function otherSpellings(token: string): string[] {
  const cut = token.lastIndexOf('.');
  const signature = token.slice(cut + 1);
  const bytes = Buffer.from(signature, 'base64url');
  const stem = token.slice(0, token.length - 1);
  return [...BASE64URL_ALPHABET]
    .filter((c) => c !== signature.at(-1) && Buffer.from(signature.slice(0, -1) + c, 'base64url').equals(bytes))
    .map((c) => stem + c);
}
