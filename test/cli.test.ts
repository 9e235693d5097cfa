/**
 * The `agentkeys` CLI, run as a subprocess (bin/agentkeys.js) against the running stack over real
 * HTTP: every login method, the session store, minting (consumed by the AWS SDK's own
 * credential_process provider), grants, audit, and bad input.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fromProcess } from '@aws-sdk/credential-providers';
import { Wallet } from '@ethereumjs/wallet';
import { english, generateMnemonic, generatePrivateKey, mnemonicToAccount, privateKeyToAccount } from 'viem/accounts';
import { generateTeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { identityForHint, startGoogleOidcFixture, type GoogleOidcFixture } from '../fixtures/google-oidc';
import { callback, consent } from './google-login-client';
import { codeFromMail } from './email-login-client';
import { findFreePort } from '../scripts/temporal-dev-server';
import { startStack, type TestStack } from './harness';
import type { Command } from 'commander';
import { buildProgram } from '../cli/main';
import { revokedLine } from '../cli/commands/agent';
import { BIN, buildCli, cliAgainst, parseJson, runProcess, waitFor } from './cli-client';
import { bindAgent, offerGrant } from './grant-client';
import { auditRowsOf, walletLogin } from './mint-client';
import { brokenChecksum, newWallet } from './wallet-client';

let stack: TestStack;
let tee: TeeFixture;
let google: GoogleOidcFixture;
let home: string;

before(async () => {
  buildCli();
  const key = await generateTeeKeyPair();
  google = await startGoogleOidcFixture();
  stack = await startStack({
    env: {
      BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyPkcs1DerHex,
      BROKER_GOOGLE_ISSUER: google.url,
      BROKER_GOOGLE_CLIENT_ID: 'agentkeys-cli-test',
      BROKER_GOOGLE_CLIENT_SECRET: 'cli-test-secret',
    },
  });
  tee = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem });
  home = await mkdtemp(join(tmpdir(), 'akb-cli-'));
});
after(async () => {
  await tee?.close();
  await stack?.stop();
  await google?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

const cli = cliAgainst(() => ({ url: stack.url, home }));
const cliEnv = cli.env;
const runCli = cli.run;
const keyFile = cli.keyFile;

void describe('agentkeys CLI: usage', () => {
  void test('every command and subcommand has complete help; --help exits 0', async () => {
    const walk = (c: Command, path: string[]): void => {
      const help = c.helpInformation();
      assert.match(help, /^Usage: /, path.join(' '));
      assert.ok(c.description().length > 10, `${path.join(' ')} has a description`);
      for (const o of c.options) assert.ok(o.hidden || (o.description && o.description.length > 5), `${path.join(' ')} ${o.flags} is described`);
      for (const sub of c.commands) walk(sub, [...path, sub.name()]);
    };
    const program = buildProgram();
    walk(program, ['agentkeys']);
    assert.deepEqual(program.commands.map((c) => c.name()).sort(), [
      'agent',
      'approvals',
      'approve',
      'audit',
      'completion',
      'configure',
      'deny',
      'grant',
      'init',
      'keygen',
      'logout',
      'mint',
      'status',
      'token',
      'whoami',
    ]);
    for (const args of [['--help'], ['mint', 'aws', '--help']]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: agentkeys/m);
    }
    const top = await runCli(['--help']);
    assert.match(top.stdout, /agentkeys configure aws/);
  });

  void test('unknown flag or missing argument: usage on stderr, exit 2; no TTY and no method: exit 2 naming the flags', async () => {
    const unknown = await runCli(['whoami', '--bogus']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
    assert.equal(unknown.stdout, '');
    const missing = await runCli(['init', 'email']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required argument 'address'/);
    const noTty = await runCli(['init']);
    assert.equal(noTty.code, 2);
    assert.match(noTty.stderr, /init wallet --private-key-file F/);
    const badEmail = await runCli(['init', 'email', 'not-an-address']);
    assert.equal(badEmail.code, 2);
    assert.match(badEmail.stderr, /is not an email address/);
  });

  void test('broker down: one line naming the URL, exit 1', async () => {
    const port = await findFreePort();
    const { path } = await keyFile();
    const r = await runCli(['init', 'wallet', '--private-key-file', path], { env: { AGENTKEYS_BROKER_URL: `http://127.0.0.1:${port}` } });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot reach the broker at http://127.0.0.1:${port}`));
  });

  void test('agent revoke in words: how far the revocation reaches in each kill switch mode', () => {
    const agent = `0x${'a'.repeat(40)}`;
    const main = `0x${'b'.repeat(40)}`;
    const until = Date.UTC(2026, 11, 7, 22, 5) / 1000;
    const answer = (mode: 'off' | 'iam' | 'file', revoked = ['grt_one', 'grt_two'], ended = [{ user_wallet: main, epoch: 0 }]) => ({
      agent_address: agent,
      revoked_grants: revoked,
      ended_epochs: ended,
      kill_switch: { mode, until },
    });
    assert.equal(
      revokedLine(answer('iam')),
      `Revoked agent ${agent}: 2 grants revoked (grt_one, grt_two); its credentials for ${main} (epoch 0) are denied until 2026-12-07T22:05:00.000Z (kill switch: iam).`,
    );
    assert.equal(
      revokedLine(answer('file')),
      `Revoked agent ${agent}: 2 grants revoked (grt_one, grt_two); its credentials for ${main} (epoch 0) are denied once the broker's operator applies the kill switch policy file (the deny lasts until 2026-12-07T22:05:00.000Z; kill switch: file).`,
    );
    assert.equal(
      revokedLine(answer('off', ['grt_one'])),
      `Revoked agent ${agent}: 1 grant revoked (grt_one); credentials it already holds for ${main} (epoch 0) stay valid until they expire: the broker records the revocation but applies no deny (kill switch: off).`,
    );
    // Grants revoked and no epoch ended: they were all pending, so no credential exists to end.
    assert.equal(
      revokedLine(answer('iam', ['grt_one'], [])),
      `Revoked agent ${agent}: 1 grant revoked (grt_one); none had been accepted, so it holds no credentials for this account to end.`,
    );
    assert.match(
      revokedLine(answer('iam', [], [{ user_wallet: main, epoch: 3 }])),
      /^Revoked agent 0xa{40}: no grant was left to revoke; its credentials for 0xb{40} \(epoch 3\) are denied/,
    );
    assert.match(revokedLine(answer('iam', [], [])), /^Nothing changed: agent 0xa{40} has no pending or active grant from this account/);
  });

  void test('unreadable, malformed and ambiguous key files get clear errors', async () => {
    const missing = await runCli(['init', 'wallet', '--private-key-file', join(home, 'nope.txt')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read the private key file .*nope\.txt: ENOENT/);
    const bad = join(home, 'bad.txt');
    await writeFile(bad, 'not a key 0xsecretish');
    const malformed = await runCli(['init', 'wallet', '--private-key-file', bad]);
    assert.equal(malformed.code, 1);
    assert.match(malformed.stderr, /is not a private key: expected 64 hex digits/);
    assert.doesNotMatch(malformed.stderr, /secretish/, 'the file content is never echoed');
    const both = await runCli(['init', 'wallet', '--private-key-file', bad, '--mnemonic-file', bad]);
    assert.equal(both.code, 2);
    const badMnemonic = await runCli(['init', 'wallet', '--mnemonic-file', bad]);
    assert.equal(badMnemonic.code, 1);
    assert.match(badMnemonic.stderr, /holds no valid BIP-39 mnemonic/);
  });
});

void describe('agentkeys CLI: wallet login, session store, whoami, logout', () => {
  void test('init wallet with a key file: the session lands in a 0600 file in a 0700 directory; whoami shows the wallet', async () => {
    const { path, address } = await keyFile();
    const env = { AGENTKEYS_PROFILE: 'walletfile' };
    const init = parseJson(await runCli(['--json', 'init', 'wallet', '--private-key-file', path], { env }));
    assert.equal(init.method, 'wallet');
    assert.equal(init.store, 'file');
    assert.equal(init.token, undefined, 'no token unless --show-token');
    assert.deepEqual(init.identity, { type: 'evm', value: address.toLowerCase() });
    const file = join(home, '.agentkeys', 'walletfile', 'session.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(home, '.agentkeys', 'walletfile'))).mode & 0o777, 0o700);
    assert.equal((await stat(join(home, '.agentkeys'))).mode & 0o777, 0o700);
    const me = parseJson(await runCli(['--json', 'whoami'], { env }));
    assert.equal(me.omni_account, init.omni_account);
    const wallets = me.wallets as { address: string; role: string }[];
    assert.equal(wallets[0]?.address, address.toLowerCase());
    const human = await runCli(['whoami'], { env });
    assert.match(human.stdout, new RegExp(`evm ${address.toLowerCase()}`));
    assert.doesNotMatch(human.stdout + human.stderr, /eyJ/, 'the token is never printed unasked');

    const out = parseJson(await runCli(['--json', 'logout'], { env }));
    assert.equal(out.revoked, true);
    await assert.rejects(stat(file), /ENOENT/);
    const after = await runCli(['whoami'], { env });
    assert.equal(after.code, 1);
    assert.match(after.stderr, /run agentkeys init/);
  });

  void test('a token revoked at the broker: whoami says run agentkeys init, exit 1', async () => {
    const { path } = await keyFile();
    const env = { AGENTKEYS_PROFILE: 'revoked' };
    const init = parseJson(await runCli(['--json', 'init', 'wallet', '--private-key-file', path, '--show-token'], { env }));
    assert.equal(typeof init.token, 'string');
    const res = await stack.request('POST', '/v1/session/logout', { token: init.token as string });
    assert.equal(res.status, 204);
    const r = await runCli(['whoami'], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refused the stored session.*run agentkeys init/);
  });

  void test('init wallet --siwe and with a mnemonic at an account index', async () => {
    const mnemonic = generateMnemonic(english);
    const mfile = join(home, 'mnemonic.txt');
    await writeFile(mfile, `${mnemonic}\n`);
    const expected = mnemonicToAccount(mnemonic, { addressIndex: 3 }).address.toLowerCase();
    const init = parseJson(await runCli(['--json', '--profile', 'mnemo', 'init', 'wallet', '--mnemonic-file', mfile, '--account-index', '3', '--siwe']));
    assert.deepEqual(init.identity, { type: 'evm', value: expected });
  });

  void test('init wallet with a V3 keystore: the right password logs in, a wrong one is a clear error', async () => {
    const pk = generatePrivateKey();
    const wallet = Wallet.fromPrivateKey(Buffer.from(pk.slice(2), 'hex'));
    const ks = join(home, 'keystore.json');
    await writeFile(ks, JSON.stringify(await wallet.toV3('correct horse', { kdf: 'pbkdf2', c: 1024 })));
    const wrong = await runCli(['init', 'wallet', '--keystore', ks], { env: { AGENTKEYS_KEYSTORE_PASSWORD: 'wrong', AGENTKEYS_PROFILE: 'ks' } });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /wrong password for the keystore/);
    const ok = parseJson(
      await runCli(['--json', 'init', 'wallet', '--keystore', ks], { env: { AGENTKEYS_KEYSTORE_PASSWORD: 'correct horse', AGENTKEYS_PROFILE: 'ks' } }),
    );
    assert.deepEqual(ok.identity, { type: 'evm', value: privateKeyToAccount(pk).address.toLowerCase() });
    const notKs = await runCli(['init', 'wallet', '--keystore', ks.replace('keystore.json', 'mnemonic.txt')], { env: { AGENTKEYS_KEYSTORE_PASSWORD: 'x' } });
    assert.equal(notKs.code, 1);
    assert.match(notKs.stderr, /is not a keystore: not JSON/);
  });

  void test('status: reachable, ready, the store and the session expiry, as text and JSON', async () => {
    const { path } = await keyFile();
    parseJson(await runCli(['--json', '--profile', 'st', 'init', 'wallet', '--private-key-file', path]));
    const st = parseJson(await runCli(['--json', '--profile', 'st', 'status']));
    assert.equal(st.reachable, true);
    assert.equal(st.ready, true);
    assert.equal(st.store, 'file');
    assert.equal((st.session as { expired: boolean }).expired, false);
    const none = await runCli(['--profile', 'nobody', 'status']);
    assert.equal(none.code, 0);
    assert.match(none.stdout, /session {2}none \(run agentkeys init --profile nobody\)/);
  });
});

void describe('agentkeys CLI: email login', () => {
  void test('--code-stdin: a mistyped code is retried within the attempt budget, then the mailed code logs in', async () => {
    const email = `cli-${Date.now()}@example.com`;
    const r = await runCli(['--json', '--profile', 'mail', 'init', 'email', email, '--code-stdin'], {
      feed: async (write, end) => {
        const mail = await stack.ses.waitForMail(email, { timeoutMs: 30_000 }); // the CLI starts from source: slow on a loaded machine
        const code = codeFromMail(mail.text);
        const wrong = code === '000000' ? '111111' : '000000';
        write(`${wrong}\n${code}\n`);
        end();
      },
    });
    const body = parseJson(r);
    assert.deepEqual(body.identity, { type: 'email', value: email });
    assert.match(r.stderr, /Wrong code \(4 attempts left\)/);
  });

  void test('a real pseudo terminal: the code is typed into the prompt', async () => {
    const email = `cli-pty-${Date.now()}@example.com`;
    const inner = [process.execPath, BIN, '--profile', 'pty', 'init', 'email', email].map((a) => `'${a}'`).join(' ');
    const r = await runProcess(
      'script',
      ['-qfec', inner, '/dev/null'],
      { ...cliEnv(), TERM: 'xterm' },
      {
        feed: async (write, _end, output) => {
          const mail = await stack.ses.waitForMail(email, { timeoutMs: 30_000 }); // the CLI starts from source: slow on a loaded machine
          // The terminal echoes character by character: look at the text without line breaks.
          await waitFor('the prompt', () => (/Code sent to/.test(output().replace(/\r?\n/g, '')) ? true : undefined), 30_000, output);
          write(`${codeFromMail(mail.text)}\r`);
        },
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`Logged in as email ${email}`));
    const me = parseJson(await runCli(['--json', '--profile', 'pty', 'whoami']));
    assert.deepEqual(me.identity, { type: 'email', value: email });
  });
});

void describe('agentkeys CLI: Google login', () => {
  void test('init google --no-browser: prints the address, takes the code the page shows (a wrong one asked again), keeps the session', async () => {
    const hint = `cli-google-${Date.now()}@example.com`;
    const r = await runCli(['--json', '--profile', 'google', 'init', 'google', '--no-browser', '--code-stdin', '--poll-interval-ms', '100'], {
      feed: async (write, end, output) => {
        const url = await waitFor('the authorize URL', () => /(https?:\/\/\S+\/authorize\?\S+)/.exec(output())?.[1], 30_000, output);
        const back = await callback(await consent(url, hint));
        assert.equal(back.status, 200, back.text);
        assert.ok(back.code);
        write(`${back.code === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB'}\n`);
        await waitFor('the retry prompt', () => /Wrong code \(4 attempts left\)/.exec(output()), 30_000, output);
        write(`${back.code.toLowerCase()}\n`);
        end();
      },
    });
    assert.match(r.stderr, /the page shows a code: type it here/);
    const body = parseJson(r);
    assert.equal(body.method, 'google');
    assert.deepEqual(body.identity, { type: 'google', value: identityForHint(hint).sub });
    assert.equal(body.email, hint, 'the verified email, as the person knows the account');
    const me = parseJson(await runCli(['--json', '--profile', 'google', 'whoami']));
    assert.deepEqual(me.identity, { type: 'google', value: identityForHint(hint).sub });
    assert.equal(me.email, hint);
    const human = await runCli(['--profile', 'google', 'whoami']);
    assert.match(human.stdout, new RegExp(`^google ${hint.replace(/[.]/g, '\\.')} \\(profile google, google\\)`));
    const st = await runCli(['--profile', 'google', 'status']);
    assert.match(st.stdout, new RegExp(`session {2}google ${hint.replace(/[.]/g, '\\.')} \\(google\\)`));
  });
});

void describe('agentkeys CLI: Google login at a terminal', () => {
  void test('a real pseudo terminal: the address is printed, the code from the page is typed into the prompt', async () => {
    const hint = `cli-google-pty-${Date.now()}@example.com`;
    const inner = [process.execPath, BIN, '--profile', 'gpty', 'init', 'google', '--no-browser'].map((a) => `'${a}'`).join(' ');
    const r = await runProcess(
      'script',
      ['-qfec', inner, '/dev/null'],
      { ...cliEnv(), TERM: 'xterm' },
      {
        feed: async (write, _end, output) => {
          const url = await waitFor('the authorize URL', () => /(https?:\/\/\S+\/authorize\?\S+)/.exec(output())?.[1], 30_000, output);
          const back = await callback(await consent(url, hint));
          assert.ok(back.code, back.text);
          await waitFor('the prompt', () => (/Code the browser page shows/.test(output().replace(/\r?\n/g, '')) ? true : undefined), 30_000, output);
          write(`${back.code}\r`);
        },
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const me = parseJson(await runCli(['--json', '--profile', 'gpty', 'whoami']));
    assert.deepEqual(me.identity, { type: 'google', value: identityForHint(hint).sub });
  });
});

void describe('agentkeys CLI: Heima TEE login', () => {
  void test('init tee --email: the TEE access token is kept and works at the broker', async () => {
    const email = `cli-tee-${Date.now()}@example.com`;
    const r = await runCli(['--json', '--profile', 'tee', 'init', 'tee', '--email', email, '--tee-url', tee.url, '--code-stdin'], {
      feed: async (write, end) => {
        write(`${await waitFor('the TEE code', () => tee.lastEmailCode(email))}\n`);
        end();
      },
    });
    const body = parseJson(r);
    assert.equal(body.method, 'tee');
    assert.deepEqual(body.identity, { type: 'email', value: email });
    const me = parseJson(await runCli(['--json', '--profile', 'tee', 'whoami']));
    assert.equal(me.omni_account, body.omni_account);
  });

  void test('init tee with a wallet key file', async () => {
    const { path, address } = await keyFile();
    const body = parseJson(await runCli(['--json', '--profile', 'teew', 'init', 'tee', '--private-key-file', path], { env: { AGENTKEYS_TEE_URL: tee.url } }));
    assert.deepEqual(body.identity, { type: 'evm', value: address.toLowerCase() });
  });
});

void describe('agentkeys CLI: minting, grants, audit', () => {
  void test('mint aws --credential-process is consumed by the AWS SDK; a second call within the cache window asks the broker nothing', async () => {
    const { path } = await keyFile();
    parseJson(await runCli(['--json', '--profile', 'minter', 'init', 'wallet', '--private-key-file', path]));
    const awsConfig = join(home, 'aws-config');
    const configured = parseJson(
      await runCli(['--json', '--profile', 'minter', 'configure', 'aws', '--aws-profile', 'agentkeys'], { env: { AWS_CONFIG_FILE: awsConfig } }),
    );
    assert.equal(configured.changed, true);
    const stsBefore = stack.sts.calls().length;
    // The SDK runs credential_process with the environment it was given: the test's own HOME is not the CLI's.
    const saved = {
      HOME: process.env.HOME,
      AGENTKEYS_SESSION_STORE: process.env.AGENTKEYS_SESSION_STORE,
      AGENTKEYS_BROKER_URL: process.env.AGENTKEYS_BROKER_URL,
    };
    Object.assign(process.env, { HOME: home, AGENTKEYS_SESSION_STORE: 'file', AGENTKEYS_BROKER_URL: stack.url });
    try {
      const first = await fromProcess({ profile: 'agentkeys', configFilepath: awsConfig, filepath: join(home, 'no-credentials') })();
      assert.match(first.accessKeyId, /^ASIA/);
      assert.ok(first.secretAccessKey.length > 20);
      assert.ok(first.sessionToken);
      assert.ok(first.expiration && first.expiration.getTime() > Date.now() + 10 * 60_000);
      assert.equal(stack.sts.calls().length, stsBefore + 1);
      const second = await fromProcess({ profile: 'agentkeys', configFilepath: awsConfig, filepath: join(home, 'no-credentials') })();
      assert.equal(second.accessKeyId, first.accessKeyId);
      assert.equal(stack.sts.calls().length, stsBefore + 1, 'the cached credentials were reused');
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    const session = JSON.parse(await readFile(join(home, '.agentkeys', 'minter', 'session.json'), 'utf8')) as { aws_cache?: unknown };
    assert.ok(session.aws_cache, 'the cache lives in the 0600 session file');
  });

  void test('mint aws --env and --json, mint oidc, grant add/list/revoke, audit: every --json output parses', async () => {
    const { path } = await keyFile();
    const p = ['--profile', 'main'];
    parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', path]));
    const env = await runCli([...p, 'mint', 'aws', '--env']);
    assert.equal(env.code, 0, env.stderr);
    assert.match(env.stdout, /^export AWS_ACCESS_KEY_ID='ASIA\w+'$/m);
    assert.match(env.stdout, /^export AWS_SESSION_TOKEN=/m);
    const creds = parseJson(await runCli(['--json', ...p, 'mint', 'aws', '--duration', '900']));
    assert.equal(typeof creds.secret_access_key, 'string');
    const oidc = parseJson(await runCli(['--json', ...p, 'mint', 'oidc']));
    assert.match(oidc.jwt as string, /^eyJ/);
    const agent = privateKeyToAccount(generatePrivateKey()).address;
    const g = parseJson(await runCli(['--json', ...p, 'grant', 'add', agent, '--services', 's3', '--expires-in', '3600']));
    assert.match(g.grant_id as string, /^grt_/);
    const list = parseJson(await runCli(['--json', ...p, 'grant', 'list']));
    assert.ok((list.grants as { grant_id: string }[]).some((x) => x.grant_id === g.grant_id));
    const rev = parseJson(await runCli(['--json', ...p, 'grant', 'revoke', g.grant_id as string]));
    assert.equal(rev.revoked, true);
    const audit = parseJson(await runCli(['--json', ...p, 'audit', '--limit', '5']));
    const events = (audit.entries as { event: string }[]).map((e) => e.event);
    assert.ok(events.length > 0 && events.length <= 5);
    // Its one grant was offered, never accepted: nothing was minted under it.
    const underGrants = await runCli([...p, 'audit', '--grants']);
    assert.equal(underGrants.code, 0, underGrants.stderr);
    assert.equal(underGrants.stdout, 'no mints under your grants\n');
    const badLimit = await runCli([...p, 'audit', '--limit', '999']);
    assert.equal(badLimit.code, 2);
    const badAgent = await runCli([...p, 'grant', 'add', 'nope']);
    assert.equal(badAgent.code, 2);
    const failure = await runCli(['--json', ...p, 'grant', 'revoke', 'grt_nothere']);
    assert.equal(failure.code, 1);
    assert.equal(typeof (JSON.parse(failure.stdout) as { message: string }).message, 'string');
  });

  void test('agent revoke <wallet>: every grant naming the agent revoked and its epoch ended; a wallet never granted is not found and changes nothing; a malformed one is refused before any request', async () => {
    const mainKey = await keyFile();
    const main = mainKey.address.toLowerCase();
    const p = ['--profile', 'revoker'];
    const init = parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', mainKey.path, '--show-token']));
    const token = init.token as string;
    const statusesOf = async (t: string): Promise<Record<string, string>> => {
      const res = await stack.request('GET', '/v1/grants', { token: t });
      assert.equal(res.status, 200, res.text);
      return Object.fromEntries((res.body as { grants: { grant_id: string; status: string }[] }).grants.map((g) => [g.grant_id, g.status]));
    };
    const auditCount = async () => (await auditRowsOf(stack, init.omni_account as string)).length;
    const agent = newWallet();
    const pending = (await offerGrant(stack, token, { agent_address: agent.lower })).grant_id;
    const accepted = await bindAgent(stack, token, agent);
    // Another account's agent, which this account never granted.
    const other = await walletLogin(stack);
    const theirs = newWallet();
    const theirGrant = await bindAgent(stack, other.token, theirs);
    const auditBefore = await auditCount();

    const stranger = await runCli(['--json', ...p, 'agent', 'revoke', theirs.address]);
    assert.equal(stranger.code, 1, stranger.stderr);
    assert.match(stranger.stderr, /never granted that agent wallet \(not_found, HTTP 404\)/);
    assert.equal((JSON.parse(stranger.stdout) as { error: string }).error, 'ERR_CLI_BROKER_ANSWER');
    assert.deepEqual(await statusesOf(other.token), { [theirGrant]: 'active' }, 'the other account’s grant stands');
    assert.deepEqual(await statusesOf(token), { [pending]: 'pending', [accepted]: 'active' }, 'this account’s grants stand');
    assert.equal(await auditCount(), auditBefore, 'no audit row');

    // The broker named here does not listen: a request would fail with exit 1, not a usage error.
    const deadBroker = { AGENTKEYS_BROKER_URL: `http://127.0.0.1:${await findFreePort()}` };
    for (const bad of ['0x123', `${agent.address}0`, agent.address.slice(2), `0x${'g'.repeat(40)}`]) {
      const r = await runCli(['--json', ...p, 'agent', 'revoke', bad], { env: deadBroker });
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /is not a wallet address: 0x and 40 hex digits/);
      assert.equal((JSON.parse(r.stdout) as { error: string }).error, 'ERR_CLI_USAGE');
    }
    // A checksummed address with one letter's case flipped is a typo, refused before any request (as the broker would).
    const typo = brokenChecksum(agent.address);
    for (const args of [
      ['agent', 'revoke', typo],
      ['grant', 'add', typo],
    ]) {
      const r = await runCli(['--json', ...p, ...args], { env: deadBroker });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /has mixed case but not a valid EIP-55 checksum: a typo\?/);
    }
    assert.deepEqual(await statusesOf(token), { [pending]: 'pending', [accepted]: 'active' });

    const revoked = parseJson(await runCli(['--json', ...p, 'agent', 'revoke', agent.address]));
    assert.equal(revoked.agent_address, agent.lower);
    assert.deepEqual([...(revoked.revoked_grants as string[])].sort(), [pending, accepted].sort());
    // The agent accepted a grant, so it could hold credentials of epoch 0 for the main wallet: that epoch ended.
    assert.deepEqual(revoked.ended_epochs, [{ user_wallet: main, epoch: 0 }]);
    assert.equal((revoked.kill_switch as { mode: string }).mode, 'off');
    assert.deepEqual(await statusesOf(token), { [pending]: 'revoked', [accepted]: 'revoked' });
    assert.deepEqual(await statusesOf(other.token), { [theirGrant]: 'active' });

    // In words: what changed and, with the kill switch off (the stack's default), that held credentials stay valid.
    const agent2 = newWallet();
    const grant2 = await bindAgent(stack, token, agent2);
    const human = await runCli([...p, 'agent', 'revoke', agent2.address]);
    assert.equal(human.code, 0, human.stderr);
    assert.equal(
      human.stdout,
      `Revoked agent ${agent2.lower}: 1 grant revoked (${grant2}); credentials it already holds for ${main} (epoch 0) stay valid until they expire: the broker records the revocation but applies no deny (kill switch: off).\n`,
    );
    // A repeat revokes and ends nothing, and says so.
    const again = await runCli([...p, 'agent', 'revoke', agent.address]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(
      again.stdout,
      `Nothing changed: agent ${agent.lower} has no pending or active grant from this account, and no credential of it is left to end (it was revoked before, or never accepted a grant).\n`,
    );
  });

  void test('the agent side: grant list --agent, accept with the agent key, mint for the main wallet, leave; decline; a wrong key is refused', async () => {
    const mainKey = await keyFile();
    const agentKey = await keyFile();
    const m = ['--profile', 'owner'];
    const a = ['--profile', 'agent'];
    parseJson(await runCli(['--json', ...m, 'init', 'wallet', '--private-key-file', mainKey.path]));
    parseJson(await runCli(['--json', ...a, 'init', 'wallet', '--private-key-file', agentKey.path]));
    const offered = parseJson(await runCli(['--json', ...m, 'grant', 'add', agentKey.address]));
    const second = parseJson(await runCli(['--json', ...m, 'grant', 'add', agentKey.address]));
    const pending = parseJson(await runCli(['--json', ...a, 'grant', 'list', '--agent']));
    assert.deepEqual(
      (pending.grants as { grant_id: string; status: string }[]).map((g) => [g.grant_id, g.status]).sort(),
      [
        [offered.grant_id, 'pending'],
        [second.grant_id, 'pending'],
      ].sort(),
    );

    // Another key than the grant's agent: refused before anything is signed or sent.
    const wrong = await runCli([...a, 'grant', 'accept', offered.grant_id as string, '--private-key-file', mainKey.path, '--yes']);
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.match(wrong.stderr, /names 0x[0-9a-fA-F]{40} as its agent/);

    // No terminal to ask on and no --yes: the text is shown, nothing is signed, the grant stays pending.
    const unasked = await runCli([...a, 'grant', 'accept', offered.grant_id as string, '--private-key-file', agentKey.path]);
    assert.equal(unasked.code, 2, unasked.stderr);
    assert.match(unasked.stderr, new RegExp(`Signing with ${agentKey.address}:\\n[^]*${offered.grant_id as string}[^]*pass --yes`));
    const stillPending = parseJson(await runCli(['--json', ...a, 'grant', 'list', '--agent']));
    assert.equal((stillPending.grants as { grant_id: string; status: string }[]).find((g) => g.grant_id === offered.grant_id)?.status, 'pending');

    const accepted = parseJson(await runCli(['--json', ...a, 'grant', 'accept', offered.grant_id as string, '--private-key-file', agentKey.path, '--yes']));
    assert.equal(accepted.status, 'active');
    const minted = parseJson(await runCli(['--json', ...a, 'mint', 'oidc']));
    assert.equal(minted.wallet, mainKey.address.toLowerCase(), 'the agent now mints for the main wallet');

    const declined = parseJson(await runCli(['--json', ...a, 'grant', 'decline', second.grant_id as string]));
    assert.equal(declined.status, 'declined');
    const again = await runCli([...a, 'grant', 'accept', second.grant_id as string, '--private-key-file', agentKey.path, '--yes']);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /declined/);

    const left = parseJson(await runCli(['--json', ...a, 'grant', 'leave', offered.grant_id as string]));
    assert.equal(left.left, true);
    const own = parseJson(await runCli(['--json', ...a, 'mint', 'oidc']));
    assert.equal(own.wallet, agentKey.address.toLowerCase(), 'after leaving, the agent mints for itself');
  });
});
