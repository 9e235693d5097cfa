/**
 * Approval of a mint through the CLI, end to end: the agent runs `agentkeys mint oidc --wait` while
 * the holder, told by mail at an address it proved it controls (read from the dev mailbox), lists the request and approves it with
 * `agentkeys approve`, signing the EIP-712 typed data with its wallet key; the agent's command then
 * prints the credential; `agentkeys mint gcp --wait` likewise. Both run as subprocesses of the built CLI against a real stack.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { generatePrivateKey } from 'viem/accounts';
import { bindAgentWithApproval, holderLogin } from './approval-client';
import { buildCli, cliAgainst, parseJson } from './cli-client';
import { devMail, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { emailLogin, walletLogin } from './mint-client';
import { newWallet } from './wallet-client';

let stack: TestStack;
let home: string;

before(async () => {
  buildCli();
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  home = await mkdtemp(join(tmpdir(), 'akb-cli-approvals-'));
});
after(async () => {
  await stack?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

const cli = cliAgainst(() => ({ url: stack.url, home }));

void describe('agentkeys mint --wait, approvals, approve, deny', () => {
  void test('the agent waits with --wait; the holder, mailed, approves with its wallet; the agent gets its token', async () => {
    const holderPk = generatePrivateKey();
    const agentPk = generatePrivateKey();
    const [holderKey, agentKey] = await Promise.all([cli.keyFile(holderPk), cli.keyFile(agentPk)]);
    const asHolder = { env: { AGENTKEYS_PROFILE: 'holder' } };
    const asAgent = { env: { AGENTKEYS_PROFILE: 'agent' } };
    const notifyEmail = uniqueEmail('cli-approvals');
    const [holder, agent, proof] = await Promise.all([holderLogin(stack, holderPk), walletLogin(stack, newWallet(agentPk)), emailLogin(stack, notifyEmail)]);
    // The holder shows it controls the address: the access token of an email-code login of it.
    await bindAgentWithApproval(stack, holder, agent, { notify_email: notifyEmail, notify_email_proof: proof.token });
    // The CLI's own logins sign the current second; the test's signed an earlier one (each signature is accepted once).
    assert.equal((await cli.run(['init', 'wallet', '--private-key-file', holderKey.path], asHolder)).code, 0);
    assert.equal((await cli.run(['init', 'wallet', '--private-key-file', agentKey.path], asAgent)).code, 0);

    // Without --wait the agent is told plainly that the mint waits, and for which request.
    const noWait = await cli.run(['mint', 'oidc', '--reason', 'no wait'], asAgent);
    assert.notEqual(noWait.code, 0);
    assert.match(noWait.stderr, /waits for the grant holder's approval \(request apr_[0-9a-f]{32}/);

    const waiting = cli.run(['mint', 'oidc', '--wait', '--reason', 'ci deploy', '--json'], asAgent);
    let approvalId: string | undefined;
    for (let i = 0; i < 100 && !approvalId; i++) {
      const mail = (await devMail(stack, notifyEmail)).find((m) => m.text.includes('ci deploy'));
      approvalId = mail ? /agentkeys approve (apr_[0-9a-f]{32})/.exec(mail.text)?.[1] : undefined;
      if (!approvalId) await sleep(200);
    }
    assert.ok(approvalId, 'no notification mail naming the command');

    const listed = parseJson(await cli.run(['approvals', '--json'], asHolder)) as { approvals: { approval_id: string; reason: string }[] };
    assert.equal(listed.approvals.find((a) => a.approval_id === approvalId)?.reason, 'ci deploy');
    const human = await cli.run(['approvals'], asHolder);
    assert.match(human.stdout, new RegExp(`${approvalId}\\s+pending`));

    const approved = await cli.run(['approve', approvalId, '--private-key-file', holderKey.path, '--yes'], asHolder);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, new RegExp(`Approved ${approvalId}`));
    assert.match(approved.stderr, /EIP-712/);
    assert.match(approved.stderr, /"primaryType": "MintApproval"/);

    const got = parseJson(await waiting);
    assert.equal(got.status, 'approved');
    assert.equal(got.wallet, holder.wallet.lower);
    assert.equal(String(got.jwt).split('.').length, 3);

    // The other request (no --wait) is denied from the CLI; a second decision is refused.
    const other = parseJson(await cli.run(['approvals', '--json'], asHolder)) as { approvals: { approval_id: string }[] };
    const rest = other.approvals[0]?.approval_id;
    assert.ok(rest, 'the first request is still pending');
    const denied = await cli.run(['deny', rest, '--private-key-file', holderKey.path, '--yes'], asHolder);
    assert.equal(denied.code, 0, denied.stderr);
    assert.match(denied.stdout, new RegExp(`Denied ${rest}`));
    const again = await cli.run(['approve', rest, '--private-key-file', holderKey.path, '--yes'], asHolder);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /is denied; only a pending request can be decided/);
  });

  void test('mint gcp waits the same way: without --wait it names the request (--executable: in the executable response), with --wait --json it prints the token once approved', async () => {
    const audience = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/agentkeys-pool/providers/agentkeys-broker';
    const holderPk = generatePrivateKey();
    const agentPk = generatePrivateKey();
    const [holderKey, agentKey] = await Promise.all([cli.keyFile(holderPk), cli.keyFile(agentPk)]);
    const asHolder = { env: { AGENTKEYS_PROFILE: 'gcp-holder' } };
    const asAgent = { env: { AGENTKEYS_PROFILE: 'gcp-agent' } };
    const [holder, agent] = await Promise.all([holderLogin(stack, holderPk), walletLogin(stack, newWallet(agentPk))]);
    await bindAgentWithApproval(stack, holder, agent);
    assert.equal((await cli.run(['init', 'wallet', '--private-key-file', holderKey.path], asHolder)).code, 0);
    assert.equal((await cli.run(['init', 'wallet', '--private-key-file', agentKey.path], asAgent)).code, 0);

    const noWait = await cli.run(['mint', 'gcp', '--audience', audience, '--reason', 'no wait'], asAgent);
    assert.notEqual(noWait.code, 0);
    assert.equal(noWait.stdout, '', 'no token printed');
    assert.match(noWait.stderr, /waits for the grant holder's approval \(request apr_[0-9a-f]{32}/);
    const executable = await cli.run(['mint', 'gcp', '--executable', '--audience', audience], asAgent);
    assert.equal(executable.code, 1);
    const failure = JSON.parse(executable.stdout) as { version: number; success: boolean; message: string };
    assert.equal(failure.success, false);
    assert.match(failure.message, /waits for the grant holder's approval \(request apr_[0-9a-f]{32}.*--wait/);

    const waiting = cli.run(['mint', 'gcp', '--audience', audience, '--wait', '--reason', 'gcp deploy', '--json'], asAgent);
    let approvalId: string | undefined;
    for (let i = 0; i < 100 && !approvalId; i++) {
      const listed = parseJson(await cli.run(['approvals', '--json'], asHolder)) as { approvals: { approval_id: string; reason: string; target: string }[] };
      const asked = listed.approvals.find((a) => a.reason === 'gcp deploy');
      if (asked) assert.equal(asked.target, 'gcp');
      approvalId = asked?.approval_id;
      if (!approvalId) await sleep(200);
    }
    assert.ok(approvalId, 'the waiting mint opened no request');
    const approved = await cli.run(['approve', approvalId, '--private-key-file', holderKey.path, '--yes'], asHolder);
    assert.equal(approved.code, 0, approved.stderr);

    const got = parseJson(await waiting);
    assert.equal(got.status, 'approved');
    assert.equal(got.approval_id, approvalId);
    assert.equal(got.audience, audience);
    assert.equal(got.wallet, holder.wallet.lower);
    const claims = decodeJwt(String(got.id_token));
    assert.equal(claims.aud, audience);
    assert.equal(claims.sub, `agentkeys:agent:${holder.wallet.lower}:grant:${String(claims.agentkeys_grant_id)}`, "the grant's own principal at Google");
    assert.equal(claims.agentkeys_user_wallet, holder.wallet.lower);
    assert.match(String(claims.agentkeys_grant_id), /^grt_[0-9a-f]{32}$/);
  });
});
