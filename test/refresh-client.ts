/**
 * What the refresh-token tests do to a stack over HTTP and read back: a session token's jti, the
 * first refresh token of a session, a renewal, and the refresh family a session belongs to.
 */
import assert from 'node:assert/strict';
import type { TestStack } from './harness';

/** The session id (jti) a broker session token carries. */
export const jtiOf = (token: string): string => (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { jti: string }).jti;

/** POST /v1/session/refresh_token with the session's bearer: its refresh token (201 asserted). */
export async function claimRefreshToken(stack: TestStack, token: string): Promise<string> {
  const r = await stack.request('POST', '/v1/session/refresh_token', { token });
  assert.equal(r.status, 201, r.text);
  return (r.body as { refresh_token: string }).refresh_token;
}

/** POST /v1/session/refresh: the renewed session and the family's next refresh token (200 asserted). */
export async function renewSession(stack: TestStack, refreshToken: string): Promise<{ token: string; expires_at: number; refresh_token: string }> {
  const r = await stack.request('POST', '/v1/session/refresh', { body: { refresh_token: refreshToken } });
  assert.equal(r.status, 200, r.text);
  return r.body as { token: string; expires_at: number; refresh_token: string };
}

/** The refresh family of the session `token` (asserted to have one). */
export async function refreshFamilyOf(stack: TestStack, token: string): Promise<string> {
  const r = await stack.db.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE session_jti = $1', [jtiOf(token)]);
  const family = r.rows[0]?.family_id;
  assert.ok(family, 'the session has no refresh family');
  return family;
}
