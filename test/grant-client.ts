/**
 * Client side of the grant tests: the main account offers a grant, the agent wallet accepts it by
 * signing the acceptance text (personal_sign), over HTTP.
 */
import assert from 'node:assert/strict';
import type { TestStack } from './harness';
import type { TestWallet } from './wallet-client';

export interface GrantView {
  grant_id: string;
  main_address: string;
  agent_address: string;
  scope: { services?: string[]; roles?: string[] };
  expires_at: number;
  status: 'pending' | 'active' | 'revoked' | 'declined' | 'left' | 'expired';
  active: boolean;
  created_at: number;
  accepted_at: number | null;
  revoked_at: number | null;
  acceptance_message?: string;
}

/** POST /v1/grants as `token`; asserts 201 (a new grant, pending). */
export async function offerGrant(stack: Pick<TestStack, 'request'>, token: string, body: unknown, headers: Record<string, string> = {}): Promise<GrantView> {
  const res = await stack.request('POST', '/v1/grants', { token, body, headers });
  assert.equal(res.status, 201, res.text);
  const g = res.body as GrantView;
  assert.equal(g.status, 'pending', res.text);
  return g;
}

/** The agent wallet signs the grant's acceptance text and sends it; asserts 200 and an active grant. */
export async function acceptGrant(
  stack: Pick<TestStack, 'request'>,
  agent: TestWallet,
  grant: Pick<GrantView, 'grant_id' | 'acceptance_message'>,
): Promise<GrantView> {
  assert.ok(grant.acceptance_message, 'a pending grant carries its acceptance_message');
  const signature = await agent.sign(grant.acceptance_message);
  const res = await stack.request('POST', `/v1/grants/${grant.grant_id}/accept`, { body: { signature } });
  assert.equal(res.status, 200, res.text);
  const g = res.body as GrantView;
  assert.equal(g.status, 'active', res.text);
  return g;
}

/** Offers `agent` a grant of the account behind `token` and has the agent accept it; returns the grant id. */
export async function bindAgent(stack: Pick<TestStack, 'request'>, token: string, agent: TestWallet, body: Record<string, unknown> = {}): Promise<string> {
  const offered = await offerGrant(stack, token, { agent_address: agent.lower, ...body });
  await acceptGrant(stack, agent, offered);
  return offered.grant_id;
}
