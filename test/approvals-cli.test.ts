/**
 * Approval of a mint through the CLI, end to end: the agent runs `agentkeys mint oidc --wait` while
 * the holder, told by mail at an address it proved it controls (read from the dev mailbox), lists the request and approves it with
 * `agentkeys approve`, signing the EIP-712 typed data with its wallet key; the agent's command then
 * prints the credential; `agentkeys mint gcp --wait` likewise. The holder sets the policy with `agentkeys grant add --approval …`
 * (one flag per field; the broker's refusals name the flags). All run as subprocesses of the built CLI against a real stack.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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

  void test("grant add --approval …: the policy, one flag per field, is on the grant (grant list, human and --json) and the agent's mint waits; a bad value is refused naming its flag", async () => {
    const holderPk = generatePrivateKey();
    const [holderKey, agentKey, otherKey] = await Promise.all([cli.keyFile(holderPk), cli.keyFile(), cli.keyFile()]);
    const asHolder = { env: { AGENTKEYS_PROFILE: 'flags-holder' } };
    const asAgent = { env: { AGENTKEYS_PROFILE: 'flags-agent' } };
    assert.equal((await cli.run(['init', 'wallet', '--private-key-file', holderKey.path], asHolder)).code, 0);
    assert.equal((await cli.run(['init', 'wallet', '--private-key-file', agentKey.path], asAgent)).code, 0);
    // The notice address is proven with a session of it, given in a file (never on the command line).
    const notifyEmail = uniqueEmail('cli-grant-flags');
    const proofFile = join(home, 'notify-proof.txt');
    await writeFile(proofFile, `${(await emailLogin(stack, notifyEmail)).token}\n`, { mode: 0o600 });

    const added = parseJson(
      await cli.run(
        [
          'grant',
          'add',
          agentKey.address,
          '--approval',
          'always',
          '--approval-timeout-seconds',
          '120',
          '--approval-notify-email',
          notifyEmail,
          '--approval-notify-email-proof-file',
          proofFile,
          '--json',
        ],
        asHolder,
      ),
    ) as { grant_id: string; approval?: Record<string, unknown> };
    assert.deepEqual(
      { ...added.approval, notify_email_proven_at: typeof added.approval?.notify_email_proven_at },
      {
        mode: 'always',
        timeout_seconds: 120,
        notify_email: notifyEmail.toLowerCase(),
        notify_email_proven_at: 'number',
      },
    );
    const beyond = parseJson(
      await cli.run(
        ['grant', 'add', otherKey.address, '--approval', 'beyond', '--approval-max-duration-seconds', '900', '--approval-targets', 'aws, oidc', '--json'],
        asHolder,
      ),
    ) as { grant_id: string };

    const listed = parseJson(await cli.run(['grant', 'list', '--json'], asHolder)) as { grants: { grant_id: string; approval?: Record<string, unknown> }[] };
    assert.equal(listed.grants.find((g) => g.grant_id === added.grant_id)?.approval?.mode, 'always');
    assert.deepEqual(listed.grants.find((g) => g.grant_id === beyond.grant_id)?.approval, {
      mode: 'beyond',
      max_duration_seconds: 900,
      targets: ['aws', 'oidc'],
      timeout_seconds: 300,
    });
    const human = await cli.run(['grant', 'list'], asHolder);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      new RegExp(`${added.grant_id} .* approval always \\(timeout-seconds 120, notify-email ${notifyEmail.toLowerCase().replace(/[.+]/g, '\\$&')}\\)`),
    );
    assert.match(human.stdout, new RegExp(`${beyond.grant_id} .* approval beyond \\(max-duration-seconds 900, targets aws,oidc, timeout-seconds 300\\)`));

    // The agent accepts; its mint then waits for the holder: without --wait, ERR_CLI_APPROVAL_PENDING naming the request.
    assert.equal((await cli.run(['grant', 'accept', added.grant_id, '--private-key-file', agentKey.path, '--yes'], asAgent)).code, 0);
    const minted = await cli.run(['mint', 'oidc', '--reason', 'flags', '--json'], asAgent);
    assert.equal(minted.code, 1, minted.stderr);
    const pending = JSON.parse(minted.stdout) as { error: string; approval_id: string };
    assert.equal(pending.error, 'ERR_CLI_APPROVAL_PENDING');
    assert.match(pending.approval_id, /^apr_[0-9a-f]{32}$/);
    const asked = parseJson(await cli.run(['approvals', '--json'], asHolder)) as { approvals: { approval_id: string; grant_id: string }[] };
    assert.equal(asked.approvals.find((a) => a.approval_id === pending.approval_id)?.grant_id, added.grant_id);

    // The broker's refusals name the flags; only the syntax is the CLI's own (exit 2, nothing sent).
    const refused = async (flags: string[], message: RegExp, code = 1) => {
      const r = await cli.run(['grant', 'add', (await cli.keyFile()).address, ...flags], asHolder);
      assert.equal(r.code, code, `${flags.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /approval\.|_seconds|notify_email/, 'no API field names');
    };
    await refused(['--approval', 'sometimes'], /^agentkeys: --approval must be always or beyond \(bad_request, HTTP 400\)$/m);
    await refused(['--approval', 'always', '--approval-timeout-seconds', '5'], /^agentkeys: --approval-timeout-seconds must be at least 30 \(bad_request/m);
    await refused(['--approval', 'always', '--approval-timeout-seconds', '7200'], /^agentkeys: --approval-timeout-seconds must be at most 3600 \(bad_request/m);
    await refused(['--approval', 'beyond'], /^agentkeys: --approval beyond needs a standing limit: --approval-max-duration-seconds or --approval-targets/m);
    await refused(['--approval', 'beyond', '--approval-targets', 'aws,s3'], /^agentkeys: --approval-targets names mint targets \(aws, oidc, gcp\)/m);
    await refused(['--approval', 'beyond', '--approval-max-duration-seconds', '0'], /^agentkeys: --approval-max-duration-seconds must be at least 1/m);
    await refused(['--approval', 'always', '--approval-notify-email', 'not-an-address'], /^agentkeys: --approval-notify-email must be an email address/m);
    await refused(
      ['--approval', 'always', '--approval-notify-email', uniqueEmail('cli-grant-unproven')],
      /without --approval-notify-email-proof-file; sign in with that address .* in a file given as --approval-notify-email-proof-file/,
    );
    await refused(['--approval', 'always', '--approval-timeout-seconds', '1.5'], /^agentkeys: --approval-timeout-seconds takes whole seconds, not "1\.5"$/m, 2);
    await refused(['--approval-targets', 'aws'], /^agentkeys: --approval-targets goes with --approval <mode>/m, 2);
    await refused(
      ['--approval', 'always', '--approval-notify-email-proof-file', join(home, 'missing')],
      /^agentkeys: cannot read the --approval-notify-email-proof-file .*missing: ENOENT$/m,
    );
    const after = parseJson(await cli.run(['grant', 'list', '--json'], asHolder)) as { grants: unknown[] };
    assert.equal(after.grants.length, 2, 'no refused grant was written');
  });
});
