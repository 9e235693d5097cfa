import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger, type LogEntry } from '@temporalio/worker';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { createKillSwitchActivities } from '../activities/kill-switch';
import { SesMailer } from '../adapters/ses-mailer';
import { startIamFixture, type IamFixture } from '../fixtures/iam';
import { killSwitchEntryOf, liveKillSwitchEntries, purgeKillSwitchEntries } from '../db/kill-switch';
import {
  inlinePolicySize,
  KILL_SWITCH_POLICY_NAME,
  killSwitchPolicy,
  ROLE_POLICY_MAX_CHARS,
  UNREAD_INLINE_RESERVE_CHARS,
  type KillSwitchEntry,
} from '../lib/kill-switch';
import { denyingStatement } from '../lib/iam-policy-eval';
import { AGENT_TAG, EPOCH_TAG, GRANT_TAG } from '../lib/oidc-claims';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { processRegistry } from '../lib/metrics';
import { AkFlow } from '../lib/search-attributes';
import { killSwitchWorkflowId, type KillSwitchApplied } from '../workflows/kill-switch.definitions';
import { bindAgent, offerGrant } from './grant-client';
import { waitFor } from './support/wait-for';
import { startStack, type TestStack } from './harness';
import { auditCount, auditRowsOf, mintAws, mintOidc, walletLogin, type WalletSession } from './mint-client';
import { newWallet, type TestWallet } from './wallet-client';

const ROLE = 'agentkeys-data';
/** Agent revocations per account per minute here: above what any one account below needs (32 + a few). */
const REVOKES_PER_MINUTE = 40;
let stack: TestStack;
let iam: IamFixture;
let main: WalletSession;
let agentA: WalletSession;
let agentB: WalletSession;
let stranger: WalletSession;
let grantA: string;
let grantB: string;

before(async () => {
  // The IAM client signs its requests: the worker's default credential chain reads these.
  process.env.AWS_ACCESS_KEY_ID = 'AKIAKILLSWITCHTEST01';
  process.env.AWS_SECRET_ACCESS_KEY = 'kill-switch-test-secret-key-000000000000';
  iam = await startIamFixture({ roles: [ROLE] });
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      BROKER_RATE_LIMIT_REVOKE_PER_MINUTE: String(REVOKES_PER_MINUTE),
      BROKER_KILL_SWITCH: 'iam',
      BROKER_IAM_ENDPOINT: iam.url,
    },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  [main, agentA, agentB, stranger] = await Promise.all([walletLogin(stack), walletLogin(stack), walletLogin(stack), walletLogin(stack)]);
  grantA = await bindAgent(stack, main.token, agentA.wallet);
  grantB = await bindAgent(stack, main.token, agentB.wallet);
});
after(async () => {
  await stack?.temporal.workflow
    .getHandle(killSwitchWorkflowId(stack.config.BROKER_TASK_QUEUE))
    .terminate('test over')
    .catch(() => undefined);
  await stack?.stop();
  await iam?.close();
});

/** IAM's request context for a session with these tags, issued at `issuedAt` (aws:TokenIssueTime). */
const ctx = (tags: Record<string, string>, issuedAt = new Date().toISOString()) => ({
  principalTags: tags,
  keys: { 'aws:TokenIssueTime': issuedAt },
  action: 's3:GetObject',
  resource: 'arn:aws:s3:::data/bots/x',
});
/** The context of a session the STS stand-in issued. */
const sessionCtx = (stack: TestStack, accessKeyId: string) => {
  const s = stack.sts.session(accessKeyId);
  assert.ok(s, accessKeyId);
  return ctx(s.tags, s.issuedAt);
};
const TTL = { oidcTtlSeconds: 300 };
/** A gauge of this process's registry, where the in-process worker's activities set them. */
const gaugeValue = async (name: string) => (await processRegistry.getSingleMetric(name)?.get())?.values[0]?.value;
const REVOKED = new Date('2026-12-07T10:00:00Z');

void describe('both identities in every credential', () => {
  void test('an agent’s OIDC token carries act.sub, the source identity claim and agent/grant/epoch tags beside the account’s claims', async () => {
    const minted = await mintOidc(stack, agentA.token);
    const { payload } = await jwtVerify(minted.jwt, createRemoteJWKSet(new URL(`${stack.url}/.well-known/jwks.json`)), { audience: 'sts.amazonaws.com' });
    const a = agentA.wallet.lower;
    assert.equal(payload.sub, `agentkeys:agent:${main.wallet.lower}`);
    assert.deepEqual(payload.act, { sub: `agentkeys:agent:${a}` });
    assert.equal(payload['https://aws.amazon.com/source_identity'], a);
    const tags = payload['https://aws.amazon.com/tags'] as { principal_tags: Record<string, string[]>; transitive_tag_keys: string[] };
    assert.deepEqual(tags.principal_tags[AGENT_TAG], [a]);
    assert.deepEqual(tags.principal_tags[GRANT_TAG], [grantA]);
    assert.deepEqual(tags.principal_tags[EPOCH_TAG], ['0']);
    assert.deepEqual(tags.principal_tags.agentkeys_user_wallet, [main.wallet.lower]);
    for (const k of [AGENT_TAG, GRANT_TAG, EPOCH_TAG, 'agentkeys_user_wallet']) assert.ok(tags.transitive_tag_keys.includes(k), k);
  });

  void test('a wallet minting for itself names no actor', async () => {
    const minted = await mintOidc(stack, stranger.token);
    const claims = decodeJwt(minted.jwt);
    assert.equal(claims.act, undefined);
    assert.equal(claims['https://aws.amazon.com/source_identity'], undefined);
  });

  void test('STS answers the agent as SourceIdentity and keeps the tags on the session', async () => {
    const minted = await mintOidc(stack, agentB.token);
    const sts = new STSClient({ region: 'us-east-1', endpoint: stack.sts.url, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
    const out = await sts.send(
      new AssumeRoleWithWebIdentityCommand({ RoleArn: `arn:aws:iam::123456789012:role/${ROLE}`, RoleSessionName: 'agent-b', WebIdentityToken: minted.jwt }),
    );
    assert.equal(out.SourceIdentity, agentB.wallet.lower);
    const session = stack.sts.session(out.Credentials?.AccessKeyId ?? '');
    assert.equal(session?.sourceIdentity, agentB.wallet.lower);
    assert.equal(session?.tags[GRANT_TAG], grantB);
  });

  void test('the STS stand-in refuses malformed tags and source identities as STS does', async () => {
    const { SignJWT, generateKeyPair } = await import('jose');
    const { privateKey } = await generateKeyPair('ES256');
    stack.sts.setJwksUrl(null);
    try {
      const sts = new STSClient({ region: 'us-east-1', endpoint: stack.sts.url, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
      const tryClaims = async (extra: Record<string, unknown>) => {
        const jwt = await new SignJWT({ sub: 's', aud: 'sts.amazonaws.com', ...extra })
          .setProtectedHeader({ alg: 'ES256' })
          .setExpirationTime('5m')
          .sign(privateKey);
        return sts.send(
          new AssumeRoleWithWebIdentityCommand({ RoleArn: `arn:aws:iam::123456789012:role/${ROLE}`, RoleSessionName: 'bad', WebIdentityToken: jwt }),
        );
      };
      const tags = (principal_tags: Record<string, unknown>, transitive_tag_keys: string[] = []) => ({
        'https://aws.amazon.com/tags': { principal_tags, transitive_tag_keys },
      });
      const refusals: [string, Record<string, unknown>][] = [
        ['key with a character outside the tag charset', tags({ 'agent!': ['x'] })],
        ['value longer than 256', tags({ k: ['v'.repeat(257)] })],
        ['key longer than 128', tags({ ['k'.repeat(129)]: ['v'] })],
        ['reserved aws: prefix', tags({ 'aws:agent': ['v'] })],
        ['51 tags', tags(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`t${i}`, ['v']])))],
        ['keys equal ignoring case', tags({ Agent: ['a'], agent: ['b'] })],
        ['two values', tags({ k: ['a', 'b'] })],
        ['transitive key not a tag', tags({ k: ['a'] }, ['other'])],
        ['source identity with a space', { 'https://aws.amazon.com/source_identity': 'an agent' }],
        ['source identity of one character', { 'https://aws.amazon.com/source_identity': 'a' }],
        ['source identity over 64', { 'https://aws.amazon.com/source_identity': 'a'.repeat(65) }],
        ['source identity aws:', { 'https://aws.amazon.com/source_identity': 'aws:agent' }],
      ];
      for (const [why, extra] of refusals) {
        await assert.rejects(tryClaims(extra), (e: Error) => e.name === 'InvalidIdentityTokenException', why);
      }
      const ok = await tryClaims({
        ...tags({ 'agent wallet:x/y=z+@-_.': ['ok value'] }, ['agent wallet:x/y=z+@-_.']),
        'https://aws.amazon.com/source_identity': 'a+b=c,d.e@f-g_h',
      });
      assert.equal(ok.SourceIdentity, 'a+b=c,d.e@f-g_h');
    } finally {
      stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
    }
  });
});

void describe('the deny statement, evaluated as IAM reads aws:PrincipalTag conditions', () => {
  const agentTags = (agent: string, epoch: string, wallet = '0xmain') => ({
    agentkeys_user_wallet: wallet,
    [AGENT_TAG]: agent,
    [GRANT_TAG]: 'grt_x',
    [EPOCH_TAG]: epoch,
  });
  const policy = killSwitchPolicy(
    [
      { kind: 'agent', userWallet: '0xmain', agentAddress: '0xaaa', epoch: 0, revokedAt: REVOKED },
      { kind: 'grant', userWallet: '0xmain', agentAddress: '0xbbb', grantId: 'grt_revoked', revokedAt: REVOKED },
    ],
    TTL,
  ).document as string;

  void test('denies the revoked agent’s sessions of the ended epoch only, for that wallet only', () => {
    assert.equal(denyingStatement(policy, ctx(agentTags('0xaaa', '0'))), 'AgentKeysRevokedAgent0');
    assert.equal(denyingStatement(policy, ctx(agentTags('0xaaa', '1'))), undefined, 'a later epoch (a new grant) is not denied');
    assert.equal(denyingStatement(policy, ctx(agentTags('0xaaa', '0', '0xother'))), undefined, 'the agent acting for another wallet is not denied');
    assert.equal(denyingStatement(policy, ctx(agentTags('0xccc', '0'))), undefined, 'another agent is not denied');
    assert.equal(denyingStatement(policy, ctx({ agentkeys_user_wallet: '0xmain' })), undefined, 'the account’s own sessions carry no agent tags');
  });

  void test('tag keys match ignoring case, values do not; a revoked grant matches by its id', () => {
    assert.equal(
      denyingStatement(policy, ctx({ AgentKeys_Agent_Wallet: '0xaaa', AGENTKEYS_USER_WALLET: '0xmain', [EPOCH_TAG]: '0' })),
      'AgentKeysRevokedAgent0',
    );
    assert.equal(denyingStatement(policy, ctx(agentTags('0xAAA', '0'))), undefined);
    assert.equal(denyingStatement(policy, ctx({ [GRANT_TAG]: 'grt_revoked' })), 'AgentKeysRevokedGrants');
    assert.equal(denyingStatement(policy, ctx({ [GRANT_TAG]: 'grt_other' })), undefined);
  });
});

void describe('the deny policy never outgrows IAM’s size: what does not fit one by one is denied by issue time', () => {
  const hex = (n: number, width = 40) => `0x${n.toString(16).padStart(width, '0')}`;
  const agentEntry = (wallet: string, agent: string, epoch: number, revokedAt = REVOKED) => ({
    kind: 'agent' as const,
    userWallet: wallet,
    agentAddress: agent,
    epoch,
    revokedAt,
  });
  const grantEntry = (wallet: string, agent: string, grantId: string) => ({
    kind: 'grant' as const,
    userWallet: wallet,
    agentAddress: agent,
    grantId,
    revokedAt: REVOKED,
  });
  const tags = (wallet: string, agent: string, epoch: string, grant = 'grt_live') => ({
    agentkeys_user_wallet: wallet,
    [AGENT_TAG]: agent,
    [GRANT_TAG]: grant,
    [EPOCH_TAG]: epoch,
  });
  const before = '2026-12-07T10:04:00Z'; // issued before the revocation's cutoff (10:00 + 300 s TTL + 300 s skew)
  const after = '2026-12-07T10:10:01Z';
  const victim = hex(0xf1);
  const attacker = hex(0xa1);

  void test('the epochs one agent ended for one wallet share a statement: a hundred revocations still fit, precisely', () => {
    const p = killSwitchPolicy(
      Array.from({ length: 100 }, (_, i) => agentEntry(victim, hex(0xb), i)),
      TTL,
    );
    assert.equal(p.roleWide, false);
    assert.deepEqual(p.collapsedWallets, []);
    assert.ok((p.document ?? '').length < 10_240);
    assert.equal(denyingStatement(p.document as string, ctx(tags(victim, hex(0xb), '57'))), 'AgentKeysRevokedAgent0');
    assert.equal(denyingStatement(p.document as string, ctx(tags(victim, hex(0xb), '100'))), undefined, 'the epoch after the last revocation');
  });

  void test('one account revoking many agents collapses only itself; another account’s revocation stays exact', () => {
    const entries = [
      ...Array.from({ length: 40 }, (_, i) => [
        agentEntry(attacker, hex(0x1000 + i), 0),
        grantEntry(attacker, hex(0x1000 + i), `grt_${hex(i, 32).slice(2)}`),
      ]).flat(),
      agentEntry(victim, hex(0xb), 0),
      grantEntry(victim, hex(0xc), 'grt_victims'),
    ];
    const p = killSwitchPolicy(entries, TTL);
    const doc = p.document as string;
    assert.ok(doc.length <= 10_240, String(doc.length));
    assert.deepEqual(p.collapsedWallets, [attacker]);
    assert.equal(p.roleWide, false);
    // The victim's revocations: exact, at any issue time; its other agents untouched.
    assert.match(denyingStatement(doc, ctx(tags(victim, hex(0xb), '0'), after)) ?? '', /^AgentKeysRevokedAgent/);
    assert.equal(denyingStatement(doc, ctx(tags(victim, hex(0xc), '0', 'grt_victims'), after)), 'AgentKeysRevokedGrants');
    assert.equal(denyingStatement(doc, ctx(tags(victim, hex(0xd), '0'), before)), undefined);
    // The collapsed account: every agent session issued before the cutoff, none after, never the account's own.
    assert.equal(denyingStatement(doc, ctx(tags(attacker, hex(0x1005), '0'), before)), 'AgentKeysRevokedWallets0');
    assert.equal(denyingStatement(doc, ctx(tags(attacker, hex(0x9999), '3'), before)), 'AgentKeysRevokedWallets0', 'collateral: its other agents mint again');
    assert.equal(denyingStatement(doc, ctx(tags(attacker, hex(0x1005), '1'), after)), undefined);
    assert.equal(denyingStatement(doc, ctx({ agentkeys_user_wallet: attacker }, before)), undefined, 'the account’s own sessions carry no agent tag');
  });

  void test('many accounts revoking at once share statements listing their wallets; no other account is touched', () => {
    // Eighty accounts, one revoked agent each: ~26,000 characters one by one.
    const late = new Date(REVOKED.getTime() + 60_000);
    const entries = Array.from({ length: 80 }, (_, i) => agentEntry(hex(0x5000 + i), hex(0x6000 + i), 0, i === 7 ? late : REVOKED));
    const p = killSwitchPolicy(entries, TTL);
    const doc = p.document as string;
    assert.ok(doc.length <= 10_240, String(doc.length));
    assert.equal(p.roleWide, false);
    assert.ok(p.collapsedWallets.length < 80, 'some stay exact');
    const statements = (JSON.parse(doc) as { Statement: { Sid: string }[] }).Statement;
    assert.ok(statements.filter((st) => st.Sid.startsWith('AgentKeysRevokedWallets')).length <= 2, 'one statement per cutoff');
    for (let i = 0; i < 80; i++) {
      const wallet = hex(0x5000 + i);
      assert.ok(denyingStatement(doc, ctx(tags(wallet, hex(0x6000 + i), '0'), before)), `wallet ${i}'s revoked agent`);
      const other = denyingStatement(doc, ctx(tags(wallet, hex(0x9999), '0'), before));
      assert.equal(other === undefined, !p.collapsedWallets.includes(wallet), `wallet ${i}'s other agent: denied only when collapsed`);
    }
    assert.equal(
      denyingStatement(doc, ctx(tags(hex(0x5007), hex(0x9999), '0'), '2026-12-07T10:10:59Z')),
      'AgentKeysRevokedWallets1',
      'the late wallet: its own cutoff',
    );
    assert.equal(denyingStatement(doc, ctx(tags(hex(0x5003), hex(0x9999), '0'), '2026-12-07T10:10:59Z')), undefined, 'not the late cutoff');
    assert.equal(denyingStatement(doc, ctx(tags(victim, hex(0xb), '0'), before)), undefined, 'an account that revoked nothing');
    assert.equal(denyingStatement(doc, ctx({ agentkeys_user_wallet: hex(0x5003) }, before)), undefined, 'the account’s own sessions');
  });

  void test('cutoffs are rounded up, only as far as needed, and a wallet’s deny never reaches another wallet', () => {
    // 150 accounts revoking one agent each, 37 s apart: one statement each cannot fit, nor one per minute.
    const at = (i: number) => new Date(REVOKED.getTime() + i * 37_000);
    const entries = Array.from({ length: 150 }, (_, i) => agentEntry(hex(0x7000 + i), hex(0x8000 + i), 0, at(i)));
    const p = killSwitchPolicy(entries, TTL);
    const doc = p.document as string;
    assert.ok(doc.length <= 10_240, String(doc.length));
    assert.equal(p.roleWide, false);
    const walletStatements = (JSON.parse(doc) as { Statement: { Sid: string; Condition: { DateLessThan: Record<string, string> } }[] }).Statement.filter((st) =>
      st.Sid.startsWith('AgentKeysRevokedWallets'),
    );
    assert.ok(walletStatements.length > 1 && walletStatements.length < p.collapsedWallets.length, String(walletStatements.length));
    const [first, second] = walletStatements.map((st) => Date.parse(st.Condition.DateLessThan['aws:TokenIssueTime'] ?? ''));
    const grain = (second ?? 0) - (first ?? 0);
    assert.ok([300_000, 900_000].includes(grain), `rounded to ${grain} ms: coarser than a minute (one statement a minute cannot fit), finer than an hour`);
    for (const wallet of p.collapsedWallets) {
      const i = Number.parseInt(wallet.slice(2), 16) - 0x7000;
      const own = at(i).getTime() + 600_000; // revocation + 300 s TTL + 300 s skew
      const ownCutoff = Math.ceil(own / grain) * grain;
      const iso = (ms: number) => new Date(ms).toISOString();
      assert.ok(denyingStatement(doc, ctx(tags(wallet, hex(0x9999), '0'), iso(own - 1000))), `collapsed ${i}: before its cutoff`);
      assert.ok(denyingStatement(doc, ctx(tags(wallet, hex(0x9999), '0'), iso(ownCutoff - 1000))), `collapsed ${i}: up to the rounded cutoff`);
      assert.equal(denyingStatement(doc, ctx(tags(wallet, hex(0x9999), '0'), iso(ownCutoff))), undefined, `collapsed ${i}: not after it`);
    }
    for (let i = 0; i < 150; i++) {
      assert.ok(denyingStatement(doc, ctx(tags(hex(0x7000 + i), hex(0x8000 + i), '0'), '2026-12-07T09:00:00Z')), `revoked agent ${i}`);
    }
    assert.equal(denyingStatement(doc, ctx(tags(victim, hex(0xb), '0'), '2026-12-07T10:05:00Z')), undefined, 'an account that revoked nothing');
  });

  void test('too many accounts even to list: every agent session issued before the last cutoff is denied, no account’s own', () => {
    const late = new Date(REVOKED.getTime() + 60_000);
    const entries = Array.from({ length: 300 }, (_, i) => agentEntry(hex(0x5000 + i), hex(0x6000 + i), 0, i === 7 ? late : REVOKED));
    const p = killSwitchPolicy(entries, TTL);
    const doc = p.document as string;
    assert.equal(p.roleWide, true);
    assert.equal(p.collapsedWallets.length, 300);
    assert.ok(doc.length < 1000, String(doc.length));
    assert.equal(denyingStatement(doc, ctx(tags(hex(0x5003), hex(0x6003), '0'), '2026-12-07T10:10:59Z')), 'AgentKeysRevokedAll', 'up to the latest cutoff');
    assert.equal(denyingStatement(doc, ctx(tags(victim, hex(0xb), '0'), before)), 'AgentKeysRevokedAll');
    assert.equal(denyingStatement(doc, ctx(tags(victim, hex(0xb), '0'), '2026-12-07T10:11:01Z')), undefined);
    assert.equal(denyingStatement(doc, ctx({ agentkeys_user_wallet: victim }, before)), undefined);
  });

  void test('rendered against less than the whole budget (what a role’s other inline policies leave): it fits that, collapsing sooner', () => {
    const entries = Array.from({ length: 27 }, (_, i) => agentEntry(attacker, hex(0x3000 + i), 0));
    entries.push(agentEntry(victim, hex(0xb), 0));
    const whole = killSwitchPolicy(entries, TTL);
    assert.deepEqual(whole.collapsedWallets, [], 'the exact form fits the whole budget');
    const size = inlinePolicySize(whole.document as string);
    const beside = killSwitchPolicy(entries, { ...TTL, maxChars: size - 1 });
    assert.ok(inlinePolicySize(beside.document as string) < size);
    assert.deepEqual(beside.collapsedWallets, [attacker], 'the account with the most entries collapsed first');
    assert.match(denyingStatement(beside.document as string, ctx(tags(victim, hex(0xb), '0'), after)) ?? '', /^AgentKeysRevokedAgent/);
    const none = killSwitchPolicy(entries, { ...TTL, maxChars: 0 });
    assert.equal(none.roleWide, true, 'below the smallest form: the role-wide one, for IAM to decide');
  });

  void test('sizes counted as IAM counts them against the budget, on the safe side', () => {
    assert.equal(inlinePolicySize('{"a":"b"}'), 9);
    assert.equal(inlinePolicySize('{\n  "a" : "b"\r\n}\t'), 9, 'white space between tokens is not counted');
    assert.equal(inlinePolicySize('{"a":"b c"}'), 11, 'inside a string it is');
    assert.equal(inlinePolicySize('{"a":"\\"b"}'), 11, 'an escaped quote does not end the string');
    assert.equal(inlinePolicySize('{"a":"é€😀"}'), 8 + 2 + 3 + 4, 'UTF-8 bytes');
  });
});

void describe('the kill switch per agent, through HTTP, the worker and the IAM stand-in', () => {
  let sessionA: Record<string, string>;
  let sessionB: Record<string, string>;

  before(async () => {
    const [a, b] = [await mintAws(stack, agentA.token), await mintAws(stack, agentB.token)];
    sessionA = stack.sts.session(a.access_key_id)?.tags ?? {};
    sessionB = stack.sts.session(b.access_key_id)?.tags ?? {};
    assert.equal(sessionA[AGENT_TAG], agentA.wallet.lower);
    assert.equal(sessionB[AGENT_TAG], agentB.wallet.lower);
  });

  void test('a stranger revoking someone else’s agent or grant gets a 404 and nothing changes', async () => {
    const before = (await auditRowsOf(stack, main.omni_account)).length;
    const epochs = async () => (await stack.db.query<Record<string, unknown>>('SELECT * FROM agent_epochs ORDER BY user_wallet, agent_address')).rows;
    const epochsBefore = await epochs();
    const auditBefore = await auditCount(stack);
    const r1 = await stack.request('POST', `/v1/agents/${agentA.wallet.lower}/revoke`, { token: stranger.token });
    assert.equal(r1.status, 404, r1.text);
    const r2 = await stack.request('DELETE', `/v1/grants/${grantA}`, { token: stranger.token });
    assert.equal(r2.status, 404, r2.text);
    const r3 = await stack.request('POST', '/v1/agents/not-a-wallet/revoke', { token: main.token });
    assert.equal(r3.status, 400, r3.text);
    const r4 = await stack.request('POST', `/v1/agents/${agentA.wallet.lower}/revoke`);
    assert.equal(r4.status, 401, r4.text);
    assert.equal((await auditRowsOf(stack, main.omni_account)).length, before);
    assert.equal(await auditCount(stack), auditBefore, 'a refused revocation wrote an audit row');
    assert.deepEqual(await epochs(), epochsBefore, 'an agent epoch moved');
    const grant = await stack.db.query<{ revoked_at: Date | null }>('SELECT revoked_at FROM grants WHERE grant_id = $1', [grantA]);
    assert.equal(grant.rowCount, 1);
    assert.equal(grant.rows[0]?.revoked_at, null, 'the grant was revoked');
    const entries = await stack.db.query('SELECT 1 FROM kill_switch_entries');
    assert.equal(entries.rowCount, 0);
    assert.equal(iam.calls().length, 0);
    await mintOidc(stack, agentA.token); // still bound
  });

  void test('revoking agent A denies its live session and not agent B’s; A can no longer mint', async () => {
    const res = await stack.request('POST', `/v1/agents/${agentA.wallet.lower}/revoke`, { token: main.token });
    assert.equal(res.status, 200, res.text);
    const body = res.body as { revoked_grants: string[]; ended_epochs: { user_wallet: string; epoch: number }[]; kill_switch: { mode: string; until: number } };
    assert.deepEqual(body.revoked_grants, [grantA]);
    assert.deepEqual(body.ended_epochs, [{ user_wallet: main.wallet.lower, epoch: 0 }]);
    assert.equal(body.kill_switch.mode, 'iam');
    const doc = await waitFor('the deny policy on the role', () => iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME));
    assert.ok(iam.calls().every((c) => c.signed));
    assert.ok(iam.evaluate(ROLE, ctx(sessionA)), `agent A's session is not denied by ${doc}`);
    assert.equal(iam.evaluate(ROLE, ctx(sessionB)), undefined, 'agent B is denied too');
    const mint = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agentA.token });
    assert.equal(mint.status, 403, mint.text);
    const events = (await auditRowsOf(stack, main.omni_account)).map((r) => r.event);
    for (const e of ['agent.revoke', 'grant.revoke', 'kill_switch.grant']) assert.ok(events.includes(e), e);
  });

  void test('revoking grant B denies B’s live session; the policy names both', async () => {
    const res = await stack.request('DELETE', `/v1/grants/${grantB}`, { token: main.token });
    assert.equal(res.status, 204, res.text);
    await waitFor('B denied', () => iam.evaluate(ROLE, ctx(sessionB)));
    assert.ok(iam.evaluate(ROLE, ctx(sessionA)));
    assert.equal(iam.evaluate(ROLE, ctx({ agentkeys_user_wallet: main.wallet.lower })), undefined, 'the account’s own sessions are not denied');
  });

  void test('a new grant to the revoked agent mints under the next epoch, which is not denied', async () => {
    const again = await bindAgent(stack, main.token, agentA.wallet);
    const m = await mintAws(stack, agentA.token);
    const tags = stack.sts.session(m.access_key_id)?.tags ?? {};
    assert.equal(tags[EPOCH_TAG], '1');
    assert.equal(tags[GRANT_TAG], again);
    assert.equal(iam.evaluate(ROLE, ctx(tags)), undefined);
  });

  void test('the entries expire once nothing minted before the revocations can be valid, and the policy is removed', async () => {
    const { config, db, secrets } = stack;
    const late = Date.now() + (config.BROKER_OIDC_JWT_TTL_SECONDS + config.BROKER_KILL_SWITCH_MAX_SESSION_SECONDS + 301) * 1000;
    const early = createKillSwitchActivities({
      config,
      db,
      secrets,
      mailer: new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: stack.ses.url }),
      now: () => late - 2 * 600_000,
    });
    const kept = await early.applyKillSwitch();
    assert.equal(kept.dropped, 0);
    assert.ok(iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME));
    assert.ok(kept.entries > 0);
    assert.equal(await gaugeValue('broker_kill_switch_entries'), kept.entries);
    assert.equal(await gaugeValue('broker_kill_switch_role_wide'), 0);
    const lateActs = createKillSwitchActivities({
      config,
      db,
      secrets,
      mailer: new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: stack.ses.url }),
      now: () => late,
    });
    const result = await lateActs.applyKillSwitch();
    assert.equal(result.entries, 0);
    assert.equal(await gaugeValue('broker_kill_switch_entries'), 0);
    assert.ok(result.dropped >= 2, JSON.stringify(result));
    assert.equal(result.nextExpiryMs, null);
    assert.equal(iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME), undefined);
    assert.equal(iam.evaluate(ROLE, ctx(sessionA)), undefined);
  });
});

void describe('one account revoking on purpose cannot turn the kill switch off for another', () => {
  void test('revoking an agent that never accepted ends no epoch and writes no entry, however often', async () => {
    const attacker = await walletLogin(stack);
    const never = newWallet();
    const offered = await offerGrant(stack, attacker.token, { agent_address: never.lower });
    for (let i = 0; i < 5; i++) {
      const res = await stack.request('POST', `/v1/agents/${never.lower}/revoke`, { token: attacker.token });
      assert.equal(res.status, 200, res.text);
      const body = res.body as { revoked_grants: string[]; ended_epochs: unknown[] };
      assert.deepEqual(body.revoked_grants, i === 0 ? [offered.grant_id] : []);
      assert.deepEqual(body.ended_epochs, []);
    }
    const entries = await stack.db.query('SELECT 1 FROM kill_switch_entries WHERE main_account = $1', [attacker.omni_account]);
    assert.equal(entries.rowCount, 0);
    const events = (await auditRowsOf(stack, attacker.omni_account)).filter((r) => r.event === 'agent.revoke');
    assert.equal(events.length, 1, 'only the revocation that changed something is recorded');
  });

  void test('an account’s revocations are limited per minute: past the limit 429 with Retry-After, nothing recorded; another account unaffected', async () => {
    const looping = await walletLogin(stack);
    const agent = await walletLogin(stack);
    await bindAgent(stack, looping.token, agent.wallet);
    const revoke = (token: string, wallet: string) => stack.request('POST', `/v1/agents/${wallet}/revoke`, { token });
    for (let i = 0; i < REVOKES_PER_MINUTE; i++) {
      const res = await revoke(looping.token, agent.wallet.lower);
      assert.equal(res.status, 200, `revocation ${i}: ${res.text}`);
    }
    const rows = (await auditRowsOf(stack, looping.omni_account)).length;
    const epochs = await stack.db.query('SELECT * FROM agent_epochs WHERE agent_address = $1', [agent.wallet.lower]);
    await bindAgent(stack, looping.token, agent.wallet);
    const over = await revoke(looping.token, agent.wallet.lower);
    assert.equal(over.status, 429, over.text);
    assert.equal((over.body as { error: string }).error, 'rate_limited');
    assert.ok(Number(over.headers.get('retry-after')) > 0, 'Retry-After');
    assert.equal((await auditRowsOf(stack, looping.omni_account)).length, rows + 2, 'only the new grant’s offer and acceptance');
    assert.deepEqual((await stack.db.query('SELECT * FROM agent_epochs WHERE agent_address = $1', [agent.wallet.lower])).rows, epochs.rows, 'no epoch ended');
    const listed = await stack.request('GET', '/v1/grants', { token: looping.token });
    assert.ok(
      (listed.body as { grants: { status: string }[] }).grants.some((g) => g.status === 'active'),
      'the new grant is still active',
    );
    const other = await walletLogin(stack);
    const otherAgent = newWallet();
    await offerGrant(stack, other.token, { agent_address: otherAgent.lower });
    assert.equal((await revoke(other.token, otherAgent.lower)).status, 200, 'another account');
  });

  void test('32 agents granted, accepted and revoked by one account: another account’s revocation still denies exactly its agent', async () => {
    const [victimAgent, victimOther] = [await walletLogin(stack), await walletLogin(stack)];
    await bindAgent(stack, main.token, victimAgent.wallet);
    await bindAgent(stack, main.token, victimOther.wallet);
    const [mintedC, mintedD] = [await mintAws(stack, victimAgent.token), await mintAws(stack, victimOther.token)];

    const attacker = await walletLogin(stack);
    const agents = Array.from({ length: 32 }, () => newWallet());
    const own = agents[0] as TestWallet;
    const first = await walletLogin(stack, own);
    await bindAgent(stack, attacker.token, own);
    const attackersOwn = await mintAws(stack, first.token);
    for (const agent of agents) {
      if (agent !== own) await bindAgent(stack, attacker.token, agent);
      const res = await stack.request('POST', `/v1/agents/${agent.lower}/revoke`, { token: attacker.token });
      assert.equal(res.status, 200, res.text);
      assert.equal((res.body as { ended_epochs: unknown[] }).ended_epochs.length, 1);
    }
    const res = await stack.request('POST', `/v1/agents/${victimAgent.wallet.lower}/revoke`, { token: main.token });
    assert.equal(res.status, 200, res.text);

    const sid = await waitFor('the victim’s revoked agent denied', () => iam.evaluate(ROLE, sessionCtx(stack, mintedC.access_key_id)));
    assert.match(sid, /^AgentKeysRevoked(Agent|Grants)/, 'the victim’s entries are exact (the agent’s, and its grant’s)');
    assert.equal(iam.evaluate(ROLE, sessionCtx(stack, mintedD.access_key_id)), undefined, 'the victim’s other agent is not denied');
    assert.equal(iam.evaluate(ROLE, sessionCtx(stack, attackersOwn.access_key_id)), 'AgentKeysRevokedWallets0', 'the flooding account is denied by issue time');
    const doc = iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME) ?? '';
    assert.ok(doc.length <= 10_240, String(doc.length));
    const handle = stack.temporal.workflow.getHandle(killSwitchWorkflowId(stack.config.BROKER_TASK_QUEUE));
    const described = await handle.describe();
    assert.equal(described.status.name, 'RUNNING', 'the kill switch workflow has not failed');
    assert.equal(described.typedSearchAttributes.get(AkFlow), 'kill_switch', 'an operator finds it by AkFlow');
    assert.equal(await described.staticSummary(), FLOW_METADATA.kill_switch.staticSummary, 'and reads what it is in the list');
  });
});

void describe('the kill switch writes IAM only where a role holds another policy', () => {
  const ROLES = [ROLE, 'agentkeys-data-chained'];
  /** An IAM stand-in of this describe's own: the kill switch workflow keeps writing to the stack's. */
  let own: IamFixture;

  before(async () => {
    own = await startIamFixture({ roles: ROLES });
    // A live entry of its own, whatever the tests above left.
    const agent = await walletLogin(stack);
    const grant = await bindAgent(stack, main.token, agent.wallet);
    const res = await stack.request('DELETE', `/v1/grants/${grant}`, { token: main.token });
    assert.equal(res.status, 204, res.text);
  });
  after(async () => {
    await own?.close();
  });

  /**
   * Runs applyKillSwitch at `at` against `iam` (default: this describe's stand-in), with a fresh
   * activity each time, so nothing is remembered between runs but what IAM holds; `logged` gets
   * its log entries.
   */
  async function apply(at = Date.now(), { iam = own, logged = [] }: { iam?: IamFixture; logged?: LogEntry[] } = {}) {
    const { config, db, secrets } = stack;
    const activities = createKillSwitchActivities({
      config: { ...config, BROKER_IAM_ENDPOINT: iam.url, BROKER_KILL_SWITCH_ROLE_NAMES: ROLES.join(',') },
      db,
      secrets,
      mailer: new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: stack.ses.url }),
      now: () => at,
    });
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN', (entry) => logged.push(entry)) });
    return env.run<[], KillSwitchApplied, () => Promise<KillSwitchApplied>>(() => activities.applyKillSwitch());
  }
  /** The roles each `action` request to `iam` named, in order. */
  const requested = (action: string, iam = own) => iam.calls().flatMap((c) => (c.action === action ? [c.fields.RoleName] : []));

  void test('the same entries applied twice: one PutRolePolicy per role, not two; a new revocation writes each role once more', async () => {
    const first = await apply();
    assert.ok(first.entries > 0);
    assert.deepEqual(requested('PutRolePolicy'), ROLES);
    const doc = own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME);
    assert.ok(doc);
    const second = await apply();
    assert.equal(second.entries, first.entries);
    assert.deepEqual(requested('PutRolePolicy'), ROLES, 'the unchanged document was written again');
    assert.deepEqual(requested('GetRolePolicy'), [...ROLES, ...ROLES], 'each application reads every role');
    for (const role of ROLES) assert.equal(own.rolePolicy(role, KILL_SWITCH_POLICY_NAME), doc, role);

    const agent = await walletLogin(stack);
    const grant = await bindAgent(stack, main.token, agent.wallet);
    assert.equal((await stack.request('DELETE', `/v1/grants/${grant}`, { token: main.token })).status, 204);
    await apply();
    assert.deepEqual(requested('PutRolePolicy'), [...ROLES, ...ROLES]);
    assert.ok(own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME)?.includes(grant), 'the new grant is denied');
    assert.deepEqual(requested('DeleteRolePolicy'), []);
  });

  void test('a policy deleted or changed out of band is written again at the next application; the same document reformatted is not', async () => {
    const doc = own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME);
    assert.ok(doc);
    const puts = requested('PutRolePolicy').length;
    own.changeOutOfBand(ROLE, KILL_SWITCH_POLICY_NAME, undefined);
    own.changeOutOfBand('agentkeys-data-chained', KILL_SWITCH_POLICY_NAME, JSON.stringify({ Version: '2012-10-17', Statement: [] }));
    await apply();
    assert.deepEqual(requested('PutRolePolicy').slice(puts), ROLES);
    for (const role of ROLES) assert.equal(own.rolePolicy(role, KILL_SWITCH_POLICY_NAME), doc, role);
    // The same statements saved with other whitespace: IAM already holds what the broker wants.
    own.changeOutOfBand('agentkeys-data-chained', KILL_SWITCH_POLICY_NAME, JSON.stringify(JSON.parse(doc), null, 2));
    await apply();
    assert.deepEqual(requested('PutRolePolicy').slice(puts), ROLES);
  });

  void test('a principal refused iam:GetRolePolicy still gets the policy written, each time, with a warning', async () => {
    const refusing = await startIamFixture({ roles: ROLES });
    try {
      refusing.deny('GetRolePolicy');
      const logged: LogEntry[] = [];
      await apply(Date.now(), { iam: refusing, logged });
      await apply(Date.now(), { iam: refusing, logged });
      assert.deepEqual(requested('PutRolePolicy', refusing), [...ROLES, ...ROLES]);
      assert.equal(refusing.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME), own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME));
      const warnings = logged.filter((e) => e.level === 'WARN' && e.message.includes('iam:GetRolePolicy'));
      assert.equal(warnings.length, 2, JSON.stringify(logged.map((e) => e.message)));
      assert.deepEqual(warnings[0]?.meta?.roles, ROLES);
    } finally {
      await refusing.close();
    }
  });

  void test('nothing left to deny: the policy deleted where a role holds it, and no DeleteRolePolicy where none is', async () => {
    const { config } = stack;
    own.changeOutOfBand('agentkeys-data-chained', KILL_SWITCH_POLICY_NAME, undefined);
    // Past every entry's expiry (this drops them, as the 'entries expire' test does).
    const late = Date.now() + (config.BROKER_OIDC_JWT_TTL_SECONDS + config.BROKER_KILL_SWITCH_MAX_SESSION_SECONDS + 301) * 1000;
    const result = await apply(late);
    assert.equal(result.entries, 0);
    assert.deepEqual(requested('DeleteRolePolicy'), [ROLE], 'only the role that held the policy');
    for (const role of ROLES) assert.equal(own.rolePolicy(role, KILL_SWITCH_POLICY_NAME), undefined, role);
    await apply(late);
    assert.deepEqual(requested('DeleteRolePolicy'), [ROLE], 'a role with no policy was asked to delete it');
  });
});

/** docs/deploy.md's `data-policy.json`, the data permissions it once had operators put inline on the data role. */
const DEPLOY_DATA_POLICY = (() => {
  const md = readFileSync(join(__dirname, '..', 'docs', 'deploy.md'), 'utf8');
  const block = /```json\n([\s\S]*?)\n```/.exec(md.slice(md.indexOf('`data-policy.json`')));
  assert.ok(block?.[1], 'docs/deploy.md has a data-policy.json block');
  return JSON.stringify(JSON.parse(block[1]));
})();
/** An Allow policy of exactly `size` characters (inlinePolicySize), standing for any other inline policy. */
const allowPolicyOfSize = (size: number) => {
  const doc = (pad: string) =>
    JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: `arn:aws:s3:::agentkeys-data/${pad}` }] });
  const text = doc('x'.repeat(size - doc('').length));
  assert.equal(inlinePolicySize(text), size);
  return text;
};

void describe('a role’s other inline policies share its 10,240 characters: the kill switch is rendered against what they leave', () => {
  const CHAINED = 'agentkeys-data-chained';
  const DATA_POLICY_NAME = 'agentkeys-data';
  const dataSize = inlinePolicySize(DEPLOY_DATA_POLICY);
  /** Over this the old renderer still wrote the exact form whole, and IAM refused it beside the data policy. */
  const window = { above: ROLE_POLICY_MAX_CHARS - dataSize, upTo: ROLE_POLICY_MAX_CHARS };
  let victim: WalletSession;
  let victimAgent: WalletSession;
  let victimGrant: string;
  let victimSession: string;
  let victimOtherSession: string;
  let floodersOwnSession: string;

  /** The live entries as the activity reads them. */
  const liveEntries = async (): Promise<KillSwitchEntry[]> => (await liveKillSwitchEntries(stack.db, new Date())).map(killSwitchEntryOf);
  /** The size of the exact form (nothing collapsed), as a renderer with the role's whole budget wrote it. */
  const exactSize = (entries: KillSwitchEntry[]) =>
    inlinePolicySize(killSwitchPolicy(entries, { oidcTtlSeconds: stack.config.BROKER_OIDC_JWT_TTL_SECONDS, maxChars: Infinity }).document ?? '');
  /** What the victim's revocation below will add: its grant's entry and its agent's ended epoch 0. */
  const victimEntries = (): KillSwitchEntry[] => [
    { kind: 'grant', userWallet: victim.wallet.lower, agentAddress: victimAgent.wallet.lower, grantId: victimGrant, revokedAt: new Date() },
    { kind: 'agent', userWallet: victim.wallet.lower, agentAddress: victimAgent.wallet.lower, epoch: 0, revokedAt: new Date() },
  ];

  /** applyKillSwitch once against `own` for `roles`, as the 'writes IAM only' tests do; `logged` gets its log entries. */
  async function applyTo(own: IamFixture, roles: string[], logged: LogEntry[] = []) {
    const { config, db, secrets } = stack;
    const activities = createKillSwitchActivities({
      config: { ...config, BROKER_IAM_ENDPOINT: own.url, BROKER_KILL_SWITCH_ROLE_NAMES: roles.join(',') },
      db,
      secrets,
      mailer: new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: stack.ses.url }),
      now: () => Date.now(),
    });
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN', (entry) => logged.push(entry)) });
    return env.run<[], KillSwitchApplied, () => Promise<KillSwitchApplied>>(() => activities.applyKillSwitch());
  }
  const puts = (own: IamFixture) => own.calls().flatMap((c) => (c.action === 'PutRolePolicy' ? [c.fields.RoleName] : []));

  before(async () => {
    // From no entry, whatever ran before: the flood below lands the exact form where it must.
    await purgeKillSwitchEntries(stack.db, new Date(Date.now() + 365 * 86400_000));
    // The data permissions as docs/deploy.md had them: a second inline policy on the data role.
    iam.changeOutOfBand(ROLE, DATA_POLICY_NAME, DEPLOY_DATA_POLICY);

    victim = await walletLogin(stack);
    victimAgent = await walletLogin(stack);
    const victimOther = await walletLogin(stack);
    victimGrant = await bindAgent(stack, victim.token, victimAgent.wallet);
    await bindAgent(stack, victim.token, victimOther.wallet);
    victimSession = (await mintAws(stack, victimAgent.token)).access_key_id;
    victimOtherSession = (await mintAws(stack, victimOther.token)).access_key_id;

    // One account grants, accepts and revokes agents until the exact form, with the victim's
    // revocation to come, lands above 10,240 − the data policy and at most 10,240: ~370 characters
    // an agent (its statement and its grant's id), then 39 a grant revoked on its own.
    const flooder = await walletLogin(stack);
    const first = newWallet();
    await bindAgent(stack, flooder.token, first);
    floodersOwnSession = (await mintAws(stack, (await walletLogin(stack, first)).token)).access_key_id;
    const predicted = async () => exactSize([...(await liveEntries()), ...victimEntries()]);
    for (let agent = first; (await predicted()) + 500 <= window.above; agent = newWallet()) {
      if (agent !== first) await bindAgent(stack, flooder.token, agent);
      const res = await stack.request('POST', `/v1/agents/${agent.lower}/revoke`, { token: flooder.token });
      assert.equal(res.status, 200, res.text);
    }
    while ((await predicted()) <= window.above) {
      const grant = await bindAgent(stack, flooder.token, newWallet());
      const res = await stack.request('DELETE', `/v1/grants/${grant}`, { token: flooder.token });
      assert.equal(res.status, 204, res.text);
    }
  });
  after(() => {
    iam.changeOutOfBand(ROLE, DATA_POLICY_NAME, undefined);
  });

  void test('the exact form between 10,240 − the data policy and 10,240: another account’s revocation is in force and the kill switch does not stall', async () => {
    const res = await stack.request('POST', `/v1/agents/${victimAgent.wallet.lower}/revoke`, { token: victim.token });
    assert.equal(res.status, 200, res.text);
    const exact = exactSize(await liveEntries());
    assert.ok(
      exact > window.above && exact <= window.upTo,
      `the exact form (${exact}) is in (${window.above}, ${window.upTo}]: what a renderer with the whole budget wrote as is`,
    );

    const sid = await waitFor('the victim’s revoked agent denied', () => iam.evaluate(ROLE, sessionCtx(stack, victimSession)), 20_000);
    assert.match(sid, /^AgentKeysRevoked(Agent|Grants)/, 'the victim’s entries are exact');
    assert.equal(iam.evaluate(ROLE, sessionCtx(stack, victimOtherSession)), undefined, 'the victim’s other agent is not denied');
    assert.match(iam.evaluate(ROLE, sessionCtx(stack, floodersOwnSession)) ?? '', /^AgentKeysRevokedWallets/, 'the flooding account is collapsed');
    const doc = iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME) ?? '';
    assert.ok(inlinePolicySize(doc) <= window.above, `the kill switch (${inlinePolicySize(doc)}) fits beside the data policy (${dataSize})`);
    assert.equal(iam.rolePolicy(ROLE, DATA_POLICY_NAME), DEPLOY_DATA_POLICY, 'the data policy is untouched');

    // The activity finished: nothing pending, nothing retrying, and the workflow waits for the next change.
    const handle = stack.temporal.workflow.getHandle(killSwitchWorkflowId(stack.config.BROKER_TASK_QUEUE));
    const until = Date.now() + 15_000;
    for (;;) {
      const described = await handle.describe();
      assert.equal(described.status.name, 'RUNNING', 'the kill switch workflow has not failed');
      const pending = described.raw.pendingActivities ?? [];
      if (pending.length === 0) break;
      assert.ok(
        Date.now() < until,
        `applyKillSwitch still pending: ${JSON.stringify(pending.map((a) => ({ attempt: a.attempt, failure: a.lastFailure?.message })))}`,
      );
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  void test('without iam:ListRolePolicies a reserve is assumed, with a warning; IAM refusing the document for its size anyway (LimitExceeded) renders it smaller at once, and the other roles are written', async () => {
    const own = await startIamFixture({ roles: [ROLE, CHAINED] });
    try {
      own.deny('ListRolePolicies');
      const assumed = killSwitchPolicy(await liveEntries(), {
        oidcTtlSeconds: stack.config.BROKER_OIDC_JWT_TTL_SECONDS,
        maxChars: ROLE_POLICY_MAX_CHARS - UNREAD_INLINE_RESERVE_CHARS,
      }).document;
      assert.ok(assumed);
      // The role's other policy is larger than the reserve: that document is over the role's budget by one.
      const otherSize = ROLE_POLICY_MAX_CHARS - inlinePolicySize(assumed) + 1;
      assert.ok(otherSize > UNREAD_INLINE_RESERVE_CHARS, String(otherSize));
      own.changeOutOfBand(ROLE, DATA_POLICY_NAME, allowPolicyOfSize(otherSize));
      const logged: LogEntry[] = [];
      const result = await applyTo(own, [ROLE, CHAINED], logged);
      assert.ok((result.collapsedWallets ?? 0) >= 1, JSON.stringify(result));
      assert.deepEqual(puts(own), [ROLE, ROLE, CHAINED], 'the refused role written again, smaller, then the next');
      const written = own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME) ?? '';
      assert.ok(inlinePolicySize(written) <= ROLE_POLICY_MAX_CHARS - otherSize, String(inlinePolicySize(written)));
      assert.equal(own.rolePolicy(CHAINED, KILL_SWITCH_POLICY_NAME), assumed, 'a role with no other policy: the reserve’s document');
      for (const role of [ROLE, CHAINED]) assert.ok(own.evaluate(role, sessionCtx(stack, victimSession)), `the victim’s agent denied on ${role}`);
      const reserve = logged.find((e) => e.level === 'WARN' && e.message.includes('not readable, so'));
      assert.deepEqual(reserve?.meta?.roles, [ROLE, CHAINED], JSON.stringify(logged.map((e) => e.message)));
      assert.deepEqual(reserve?.meta?.refused, ['iam:ListRolePolicies']);
      const limit = logged.find((e) => e.level === 'WARN' && e.message.includes('LimitExceeded'));
      assert.equal(limit?.meta?.role, ROLE);
    } finally {
      await own.close();
    }
  });

  void test('each role rendered against its own others; a role they leave no room fails the application only after the other roles are written, and is written once they shrink', async () => {
    const own = await startIamFixture({ roles: [ROLE, CHAINED] });
    try {
      own.changeOutOfBand(ROLE, DATA_POLICY_NAME, allowPolicyOfSize(ROLE_POLICY_MAX_CHARS - 100));
      const logged: LogEntry[] = [];
      await assert.rejects(applyTo(own, [ROLE, CHAINED], logged), /not applied to agentkeys-data: .*leave no room/);
      assert.deepEqual(puts(own), [ROLE, CHAINED], 'one refused write, not a loop, then the next role');
      assert.equal(own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME), undefined);
      const whole = own.rolePolicy(CHAINED, KILL_SWITCH_POLICY_NAME) ?? '';
      assert.equal(inlinePolicySize(whole), exactSize(await liveEntries()), 'the role with no other policy: the exact form, its whole budget');
      assert.match(own.evaluate(CHAINED, sessionCtx(stack, victimSession)) ?? '', /^AgentKeysRevoked(Agent|Grants)/);
      assert.ok(logged.some((e) => e.level === 'ERROR' && e.meta?.role === ROLE));

      own.changeOutOfBand(ROLE, DATA_POLICY_NAME, DEPLOY_DATA_POLICY);
      await applyTo(own, [ROLE, CHAINED]);
      const beside = own.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME) ?? '';
      assert.ok(inlinePolicySize(beside) <= window.above, String(inlinePolicySize(beside)));
      assert.match(own.evaluate(ROLE, sessionCtx(stack, victimSession)) ?? '', /^AgentKeysRevoked(Agent|Grants)/);
      assert.equal(own.rolePolicy(CHAINED, KILL_SWITCH_POLICY_NAME), whole, 'unchanged, not written again');
      assert.deepEqual(puts(own), [ROLE, CHAINED, ROLE]);
    } finally {
      await own.close();
    }
  });
});

void describe('the IAM stand-in speaks the query protocol the real SDK sends', () => {
  void test('PutRolePolicy, GetRolePolicy (URL-encoded document), DeleteRolePolicy, and IAM’s refusals', async () => {
    const {
      DeleteRolePolicyCommand,
      GetRolePolicyCommand,
      IAMClient,
      ListRolePoliciesCommand,
      MalformedPolicyDocumentException,
      NoSuchEntityException,
      PutRolePolicyCommand,
    } = await import('@aws-sdk/client-iam');
    const own = await startIamFixture({ roles: ['r1'] });
    const client = new IAMClient({ region: 'us-east-1', endpoint: own.url, credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret' } });
    try {
      const doc = killSwitchPolicy([{ kind: 'grant', userWallet: '0xmain', agentAddress: '0xaaa', grantId: 'grt_a', revokedAt: REVOKED }], TTL)
        .document as string;
      await client.send(new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p', PolicyDocument: doc }));
      const got = await client.send(new GetRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p' }));
      assert.equal(decodeURIComponent(got.PolicyDocument ?? ''), doc);
      assert.equal(own.calls()[0]?.action, 'PutRolePolicy');
      assert.equal(own.calls()[0]?.fields.PolicyDocument, doc);
      await assert.rejects(
        client.send(new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p', PolicyDocument: '{not json' })),
        MalformedPolicyDocumentException,
      );
      await assert.rejects(client.send(new PutRolePolicyCommand({ RoleName: 'nope', PolicyName: 'p', PolicyDocument: doc })), NoSuchEntityException);
      const big = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Action: '*', Resource: '*', Condition: { StringEquals: { k: 'v'.repeat(10_300) } } }],
      });
      await assert.rejects(
        client.send(new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'q', PolicyDocument: big })),
        (e: Error) => e.name === 'LimitExceededException',
      );
      await client.send(new DeleteRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p' }));
      assert.equal(own.rolePolicy('r1', 'p'), undefined);
      await assert.rejects(client.send(new DeleteRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p' })), NoSuchEntityException);
      // The role's inline policies share one budget: each fits alone, together they do not.
      await client.send(new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p', PolicyDocument: doc }));
      const rest = ROLE_POLICY_MAX_CHARS - inlinePolicySize(doc);
      await client.send(new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'q', PolicyDocument: allowPolicyOfSize(rest) }));
      await assert.rejects(
        client.send(new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'q', PolicyDocument: allowPolicyOfSize(rest + 1) })),
        (e: Error) => e.name === 'LimitExceededException',
      );
      await client.send(
        new PutRolePolicyCommand({ RoleName: 'r1', PolicyName: 'q', PolicyDocument: JSON.stringify(JSON.parse(allowPolicyOfSize(rest)), null, 2) }),
      );
      const one = await client.send(new ListRolePoliciesCommand({ RoleName: 'r1', MaxItems: 1 }));
      assert.deepEqual([one.PolicyNames, one.IsTruncated], [['p'], true]);
      const two = await client.send(new ListRolePoliciesCommand({ RoleName: 'r1', Marker: one.Marker }));
      assert.deepEqual([two.PolicyNames, two.IsTruncated], [['q'], false]);
      await client.send(new DeleteRolePolicyCommand({ RoleName: 'r1', PolicyName: 'p' }));
      await client.send(new DeleteRolePolicyCommand({ RoleName: 'r1', PolicyName: 'q' }));
      assert.deepEqual((await client.send(new ListRolePoliciesCommand({ RoleName: 'r1' }))).PolicyNames, []);
      await assert.rejects(client.send(new ListRolePoliciesCommand({ RoleName: 'nope' })), NoSuchEntityException);
      const unsigned = await fetch(own.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'Action=GetRolePolicy&Version=2010-05-08&RoleName=r1&PolicyName=p',
      });
      assert.equal(unsigned.status, 403);
    } finally {
      client.destroy();
      await own.close();
    }
  });
});
