import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { verifyAuditProof, type AuditProof } from '../lib/audit-proof';
import type { AnchorResult } from '../workflows/audit-anchor.definitions';
import { bindAgent } from './grant-client';
import { startStack, type TestStack } from './harness';
import { agentKeysActorOf, auditCount, lastMintRows, mintAws, mintOidc, walletLogin, type WalletSession } from './mint-client';

let stack: TestStack;
let main: WalletSession;
let agent: WalletSession;
let stranger: WalletSession;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  [main, agent, stranger] = await Promise.all([walletLogin(stack), walletLogin(stack), walletLogin(stack)]);
});
after(async () => {
  await stack?.stop();
});

async function claimsOf(jwt: string) {
  const { payload } = await jwtVerify(jwt, createRemoteJWKSet(new URL(`${stack.url}/.well-known/jwks.json`)), {
    audience: 'sts.amazonaws.com',
    issuer: stack.url,
  });
  return payload;
}

/** Signs the audit log's current head now (what the anchor Schedule does), as the proof route needs. */
async function anchorAuditHead(): Promise<void> {
  const head = await stack.temporal.workflow.execute<() => Promise<AnchorResult>>('auditAnchorWorkflow', {
    workflowId: `audit/anchor-test-${Date.now()}-${Math.random().toString(16).slice(2)}`,
    taskQueue: stack.config.BROKER_TASK_QUEUE,
  });
  assert.ok(head, 'the anchor signed no head');
}

/** The owner offers the agent a grant and the agent accepts it. */
const createGrant = (owner: WalletSession, agentSession: WalletSession): Promise<string> => bindAgent(stack, owner.token, agentSession.wallet);

async function expectForbidden(path: string, token: string, body?: unknown): Promise<string> {
  stack.sts.clear();
  const res = await stack.request('POST', path, { token, body });
  assert.equal(res.status, 403, res.text);
  assert.deepEqual(Object.keys(res.body as object).sort(), ['error', 'message']);
  assert.equal((res.body as { error: string }).error, 'forbidden');
  assert.equal(stack.sts.calls().length, 0, 'STS was called for a refused mint');
  return (res.body as { message: string }).message;
}

void describe('grant lifecycle: create → agent mints → revoke → agent refused', () => {
  let grantId: string;

  void test('a wallet nobody granted mints for itself', async () => {
    const minted = await mintOidc(stack, agent.token);
    assert.equal(minted.wallet, agent.wallet.lower);
    const claims = await claimsOf(minted.jwt);
    assert.equal(claims.agentkeys_child_wallet, undefined);
    assert.equal(claims.agentkeys_grant_id, undefined);
  });

  void test('under an active grant the agent mints for the main wallet, with child and grant claims', async () => {
    grantId = await createGrant(main, agent);
    const m = main.wallet.lower;
    const a = agent.wallet.lower;

    const minted = await mintOidc(stack, agent.token);
    assert.equal(minted.wallet, m);
    const claims = await claimsOf(minted.jwt);
    assert.deepEqual(Object.keys(claims).sort(), [
      'act',
      'agentkeys_actor_omni',
      'agentkeys_child_wallet',
      'agentkeys_grant_id',
      'agentkeys_user_wallet',
      'aud',
      'exp',
      'https://aws.amazon.com/source_identity',
      'https://aws.amazon.com/tags',
      'iat',
      'iss',
      'nbf',
      'sub',
    ]);
    assert.equal(claims.sub, `agentkeys:agent:${m}`);
    assert.equal(claims.agentkeys_user_wallet, m);
    assert.equal(claims.agentkeys_child_wallet, a);
    assert.equal(claims.agentkeys_grant_id, grantId);
    // The actor is the agent that minted (AgentKeys' actor identifier of its own wallet); the wallet is the main one.
    const actor = agentKeysActorOf('evm', a);
    assert.equal(claims.agentkeys_actor_omni, actor);
    // Both identities: the agent acts for the main wallet (RFC 8693 act, AWS source identity, docs/kill-switch.md tags).
    assert.deepEqual(claims.act, { sub: `agentkeys:agent:${a}` });
    assert.equal(claims['https://aws.amazon.com/source_identity'], a);
    const acting = { agentkeys_agent_wallet: [a], agentkeys_grant_id: [grantId], agentkeys_revocation_epoch: ['0'] };
    assert.deepEqual(claims['https://aws.amazon.com/tags'], {
      principal_tags: { agentkeys_user_wallet: [m], agentkeys_actor_omni: [actor], ...acting },
      transitive_tag_keys: ['agentkeys_user_wallet', 'agentkeys_actor_omni', ...Object.keys(acting)],
    });

    stack.sts.clear();
    const creds = await mintAws(stack, agent.token, { grant_id: grantId });
    assert.equal(creds.wallet, m);
    const call = stack.sts.calls().find((c) => c.action === 'AssumeRoleWithWebIdentity');
    assert.match(call?.fields.RoleSessionName ?? '', new RegExp(`^agentkeys-${m}-\\d+$`));
    assert.equal((await claimsOf(call?.fields.WebIdentityToken ?? '')).agentkeys_child_wallet, a);

    const rows = await lastMintRows(stack, agent.omni_account);
    assert.equal(rows[1]?.details.grant_id, grantId);
    assert.equal(rows[1]?.details.child_wallet, a);
    assert.equal(rows[1]?.details.wallet, m);
  });

  void test('the main account still mints for itself, without agent claims', async () => {
    const minted = await mintOidc(stack, main.token);
    assert.equal(minted.wallet, main.wallet.lower);
    assert.equal((await claimsOf(minted.jwt)).agentkeys_child_wallet, undefined);
  });

  void test('another account cannot revoke the grant; the agent keeps minting', async () => {
    const killSwitchEntries = async () => Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM kill_switch_entries')).rows[0]?.n);
    const [audit, entries] = [await auditCount(stack), await killSwitchEntries()];
    const res = await stack.request('DELETE', `/v1/grants/${grantId}`, { token: stranger.token });
    assert.equal(res.status, 404, res.text);
    const grant = await stack.db.query<{ revoked_at: Date | null }>('SELECT revoked_at FROM grants WHERE grant_id = $1', [grantId]);
    assert.equal(grant.rows[0]?.revoked_at, null);
    assert.equal(await auditCount(stack), audit, 'the refused revocation wrote an audit row');
    assert.equal(await killSwitchEntries(), entries, 'the refused revocation left a kill-switch entry');
    assert.equal((await mintOidc(stack, agent.token)).wallet, main.wallet.lower);
  });

  void test('after the owner revokes it the agent is refused (403), and the refusal is audited', async () => {
    const res = await stack.request('DELETE', `/v1/grants/${grantId}`, { token: main.token });
    assert.equal(res.status, 204, res.text);

    const before = await auditCount(stack);
    const message = await expectForbidden('/v1/mint-oidc-jwt', agent.token);
    assert.match(message, /revoked or expired/);
    await expectForbidden('/v1/mint-aws-creds', agent.token);
    await expectForbidden('/v1/mint-aws-creds', agent.token, { grant_id: grantId });
    assert.equal(await auditCount(stack), before + 3, 'each refusal writes exactly one audit row');
    const rows = await lastMintRows(stack, agent.omni_account);
    assert.deepEqual(
      rows.map((r) => [r.event, r.outcome]),
      [['mint.aws', 'denied']],
    );
    assert.equal(rows[0]?.details.grant_id, grantId);
  });

  void test('an expired grant refuses too; a grant_id from a caller that is no agent is refused', async () => {
    const late = await walletLogin(stack);
    await stack.db.query(
      `INSERT INTO grants (grant_id, main_account, main_address, agent_address, created_at, expires_at, accepted_at)
       VALUES ('grt_${'e'.repeat(32)}', $1, $2, $3, now() - interval '2 hours', now() - interval '1 hour', now() - interval '2 hours')`,
      [main.omni_account, main.wallet.lower, late.wallet.lower],
    );
    await expectForbidden('/v1/mint-oidc-jwt', late.token);
    await expectForbidden('/v1/mint-oidc-jwt', stranger.token, { grant_id: `grt_${'e'.repeat(32)}` });
  });
});

/** The actions of the data role's trust policy docs/deploy.md gives (its `trust-policy.json` block). */
function trustPolicyActionsOfDeployDoc(): string[] {
  const doc = readFileSync(join(__dirname, '..', 'docs', 'deploy.md'), 'utf8');
  const block = /`trust-policy\.json`[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(block, 'docs/deploy.md has no trust-policy.json block');
  const policy = JSON.parse(block) as { Statement: { Action: string[] }[] };
  return policy.Statement.flatMap((s) => s.Action);
}

void describe("the data role's trust policy", () => {
  void test("trusting the provider as AgentKeys' own docs write it (sts:AssumeRoleWithWebIdentity and sts:TagSession): the owner mints, an agent under a grant is a 502 that names sts:SetSourceIdentity; with the policy docs/deploy.md gives, the agent mints", async () => {
    const [owner, itsAgent] = await Promise.all([walletLogin(stack), walletLogin(stack)]);
    await bindAgent(stack, owner.token, itsAgent.wallet);
    // litentry/agent-terrier c348357, docs/wiki/tag-based-access.md, "IAM role trust policy".
    stack.sts.setTrustActions(['sts:AssumeRoleWithWebIdentity', 'sts:TagSession']);
    try {
      assert.equal((await mintAws(stack, owner.token)).wallet, owner.wallet.lower);
      const before = await auditCount(stack);
      const refused = await stack.request('POST', '/v1/mint-aws-creds', { token: itsAgent.token });
      assert.equal(refused.status, 502, refused.text);
      const body = refused.body as { error: string; message: string };
      assert.equal(body.error, 'sts_error');
      assert.match(body.message, /AccessDenied.*trust policy must let the OIDC provider .*sts:SetSourceIdentity/);
      assert.equal(await auditCount(stack), before + 2, 'the intent and the failure are audited');
      stack.sts.setTrustActions(trustPolicyActionsOfDeployDoc());
      const creds = await mintAws(stack, itsAgent.token);
      assert.equal(creds.wallet, owner.wallet.lower);
      assert.equal(stack.sts.session(creds.access_key_id)?.sourceIdentity, itsAgent.wallet.lower);
    } finally {
      stack.sts.setTrustActions(null);
    }
  });
});

void describe("the holder's view of its agents' mints", () => {
  interface Entry {
    seq: string;
    event: string;
    outcome: string;
    omni_account?: string;
    details: { grant_id?: string };
  }
  const audit = async (token: string, query = '') => {
    const r = await stack.request('GET', `/v1/audit${query}`, { token });
    assert.equal(r.status, 200, r.text);
    return (r.body as { entries: Entry[] }).entries;
  };

  void test("GET /v1/audit?of=grants lists the mints made under your grants (not your own rows, not another holder's), and the proof route answers you for them", async () => {
    const holder = await walletLogin(stack);
    const agent = await walletLogin(stack);
    const stranger = await walletLogin(stack);
    const grantId = await bindAgent(stack, holder.token, agent.wallet);
    await mintOidc(stack, agent.token);
    await mintOidc(stack, holder.token); // the holder's own mint: its own log, not "of grants"
    const mine = await audit(holder.token, '?of=grants');
    assert.deepEqual(
      mine.map((e) => [e.event, e.outcome, e.omni_account, e.details.grant_id]),
      [
        ['mint.oidc', 'ok', agent.omni_account, grantId],
        ['mint.oidc.intent', 'ok', agent.omni_account, grantId],
      ],
    );
    assert.ok(!(await audit(holder.token)).some((e) => e.seq === mine[0]?.seq), "the default view stays the account's own rows");
    assert.deepEqual(await audit(stranger.token, '?of=grants'), [], 'another account holds no grant of these');
    // The agent's own log still has them.
    assert.ok((await audit(agent.token)).some((e) => e.seq === mine[0]?.seq));
    // Proofs: once a head is signed over the row, the holder gets its proof and it verifies against
    // the broker's audit keys; a stranger is told there is no such row of theirs.
    const seq = mine[0]?.seq ?? '';
    await anchorAuditHead();
    const forHolder = await stack.request('GET', `/v1/audit/proof?seq=${seq}`, { token: holder.token });
    assert.equal(forHolder.status, 200, forHolder.text);
    const proof = forHolder.body as AuditProof;
    assert.equal(proof.row.seq, seq);
    assert.equal(proof.row.omni_account, agent.omni_account);
    const keys = (await stack.request('GET', '/v1/audit/keys')).body as JSONWebKeySet;
    const proven = await verifyAuditProof(proof, keys);
    assert.equal(proven.seq, seq);
    const forStranger = await stack.request('GET', `/v1/audit/proof?seq=${seq}`, { token: stranger.token });
    assert.equal(forStranger.status, 404, forStranger.text);
    assert.equal((await stack.request('GET', '/v1/audit?of=everyone', { token: holder.token })).status, 400);
  });
});
