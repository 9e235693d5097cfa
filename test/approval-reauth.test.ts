/**
 * A holder without a wallet decides an approval request with its session alone, over HTTP: the
 * login behind that session must be at most REAUTH_SECONDS old. Too old is 401 with
 * `reauthenticate: true` and changes nothing; just inside the window is accepted; a refreshed
 * session counts from its refresh family's first login, so refreshing does not renew it, while
 * signing in again does.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { REAUTH_SECONDS } from '../services/sessions';
import { ageLogins, approvalRow, auditEvents, decide, emailHolder, requestMint, unchanged } from './approval-client';
import { bindAgent } from './grant-client';
import { startStack, type TestStack } from './harness';
import { emailLogin, walletLogin, type Session, type WalletSession } from './mint-client';

let stack: TestStack;
let person: Session & { email: string };
let agent: WalletSession;

before(async () => {
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0', BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '100' },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  [person, agent] = await Promise.all([emailHolder(stack), walletLogin(stack)]);
  await bindAgent(stack, person.token, agent.wallet, { approval: { mode: 'always' } });
});
after(async () => {
  await stack?.stop();
});

/** A decision without a signature refused for a stale login: 401, `reauthenticate: true`, nothing changed. */
async function refusedAsStale(token: string, id: string): Promise<void> {
  await unchanged(stack, id, async () => {
    const res = await decide(stack, token, id, { decision: 'approve' });
    assert.equal(res.status, 401, res.text);
    const body = res.body as { error: string; reauthenticate?: unknown };
    assert.equal(body.error, 'unauthorized', res.text);
    assert.equal(body.reauthenticate, true, res.text);
  });
  assert.equal((await approvalRow(stack, id))?.status, 'pending');
}

/** A decision without a signature accepted: 200, the row approved by a fresh session, audited once. */
async function approvedBySession(token: string, id: string): Promise<void> {
  const res = await decide(stack, token, id, { decision: 'approve' });
  assert.equal(res.status, 200, res.text);
  const row = await approvalRow(stack, id);
  assert.equal(row?.status, 'approved');
  assert.equal(row?.receipt?.via, 'fresh-session');
  assert.equal((await auditEvents(stack, 'approval.decide', id)).length, 1);
}

const claimRefresh = async (token: string): Promise<string> => {
  const res = await stack.request('POST', '/v1/session/refresh_token', { token });
  assert.equal(res.status, 201, res.text);
  return (res.body as { refresh_token: string }).refresh_token;
};

const refresh = async (refresh_token: string): Promise<string> => {
  const res = await stack.request('POST', '/v1/session/refresh', { body: { refresh_token } });
  assert.equal(res.status, 200, res.text);
  return (res.body as { token: string }).token;
};

void describe('deciding without a wallet signature needs a recent login', () => {
  void test('a login older than 300 s is refused with reauthenticate: true and changes nothing', async () => {
    const p = await requestMint(stack, agent, { reason: 'stale login' });
    await ageLogins(stack, person.omni_account, REAUTH_SECONDS + 10);
    await refusedAsStale(person.token, p.approval_id);
    // Denying is held to the same rule.
    await unchanged(stack, p.approval_id, async () => {
      const res = await decide(stack, person.token, p.approval_id, { decision: 'deny' });
      assert.equal(res.status, 401, res.text);
      assert.equal((res.body as { reauthenticate?: unknown }).reauthenticate, true, res.text);
    });
  });

  void test('a login 290 s old is just inside the window: accepted', async () => {
    const p = await requestMint(stack, agent, { reason: 'fresh enough' });
    const session = await emailLogin(stack, person.email);
    await ageLogins(stack, person.omni_account, REAUTH_SECONDS - 10);
    await approvedBySession(session.token, p.approval_id);
  });

  void test('a refresh of a stale login is still refused (the family counts from its first login); signing in again is accepted', async () => {
    const p = await requestMint(stack, agent, { reason: 'refreshed session' });
    const session = await emailLogin(stack, person.email);
    const refreshToken = await claimRefresh(session.token);
    await ageLogins(stack, person.omni_account, REAUTH_SECONDS + 10);
    const refreshed = await refresh(refreshToken);
    assert.notEqual(refreshed, session.token);
    // The refreshed session itself is brand new; only its family's login is old.
    const created = await stack.db.query<{ age: number }>(
      `SELECT extract(epoch FROM now() - created_at)::float AS age FROM sessions WHERE omni_account = $1 ORDER BY created_at DESC LIMIT 1`,
      [person.omni_account],
    );
    assert.ok((created.rows[0]?.age ?? Infinity) < 60, JSON.stringify(created.rows));
    await refusedAsStale(refreshed, p.approval_id);

    const signedIn = await emailLogin(stack, person.email);
    await approvedBySession(signedIn.token, p.approval_id);
  });
});
