/**
 * The Google Cloud target end to end: `agentkeys configure gcp` writes the external-account
 * credential file, the real google-auth-library runs `agentkeys mint gcp --executable` from it and
 * exchanges the broker's token at a loopback stand-in of Google's STS (which verifies it against the
 * broker's JWKS and the pool provider's audience), then impersonates a service account at a stand-in
 * of the IAM credentials API. Grants scope it (which provider, which service account); every mint
 * is audited.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { decodeJwt } from 'jose';
import { ExecutableError, GoogleAuth, PluggableAuthClient } from 'google-auth-library';
import { startGcpFixture, type GcpFixture } from '../fixtures/gcp';
import { createMintActivities } from '../activities/mint';
import { FailureType } from '../lib/errors';
import { createSealKeyPair } from '../lib/seal';
import { MINT_ID_PREFIX, type MintRequest } from '../workflows/mint.definitions';
import { startStack, type TestStack } from './harness';
import { buildCli, cliAgainst, parseJson } from './cli-client';
import { bindAgent } from './grant-client';
import { spyWorkflowStarts } from './adversarial-probes';
import { lastMintRows, walletLogin, type WalletSession } from './mint-client';
import { newWallet } from './wallet-client';

const AUDIENCE = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/agentkeys-pool/providers/agentkeys-broker';
const OTHER_AUDIENCE = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/agentkeys-pool/providers/other-broker';
/** A provider set up without an attribute condition, as docs/gcp.md warns against. */
const UNCONDITIONED_AUDIENCE = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/agentkeys-pool/providers/no-condition';
const SA = 'ci-deployer@my-project-123.iam.gserviceaccount.com';
const OTHER_SA = 'db-admin@my-project-123.iam.gserviceaccount.com';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

let stack: TestStack;
let gcp: GcpFixture;
let main: WalletSession;
let home: string;
const cli = cliAgainst(() => ({ url: stack.url, home }));
const saved = { ...process.env };

before(async () => {
  buildCli();
  home = await mkdtemp(join(tmpdir(), 'akb-gcp-'));
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  gcp = await startGcpFixture();
  main = await walletLogin(stack);
  // As docs/gcp.md sets a provider up, its condition read from there: it admits the tokens of its tenant's wallet only.
  const provider = { issuer: stack.config.publicUrl, jwksUrl: `${stack.url}/.well-known/jwks.json` };
  gcp.addProvider({ ...provider, audience: AUDIENCE, attributeCondition: documentedCondition().replace('$USER_WALLET', main.wallet.lower) });
  gcp.addProvider({ ...provider, audience: UNCONDITIONED_AUDIENCE });
  // What the library's executable inherits: the opt-in and a bearer for the CLI (as CI would set it).
  process.env.GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES = '1';
  process.env.AGENTKEYS_BROKER_URL = stack.url;
  process.env.AGENTKEYS_TOKEN = main.token;
  process.env.HOME = home;
});
after(async () => {
  process.env = saved;
  await gcp?.close();
  await stack?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

/** The attribute condition docs/gcp.md gives its provider (`--attribute-condition="…"`), `$USER_WALLET` unexpanded. */
function documentedCondition(): string {
  const doc = readFileSync(join(__dirname, '..', 'docs', 'gcp.md'), 'utf8');
  const condition = /providers create-oidc[^`]*?--attribute-condition="([^"]+)"/.exec(doc)?.[1] ?? '';
  assert.ok(
    condition.includes('assertion.agentkeys_user_wallet') && condition.includes('$USER_WALLET'),
    'docs/gcp.md sets up its provider without the condition on the wallet',
  );
  return condition;
}

async function configure(extra: string[]): Promise<string> {
  const output = join(home, `gcp-${Math.random().toString(36).slice(2)}.json`);
  const r = parseJson(
    await cli.run([
      '--json',
      'configure',
      'gcp',
      '--audience',
      AUDIENCE,
      '--output',
      output,
      '--token-url',
      gcp.tokenUrl,
      '--iam-credentials-url',
      gcp.url,
      ...extra,
    ]),
  );
  assert.equal(r.credential_file, output);
  return output;
}

/** An RFC 8693 exchange at the STS stand-in, as Google's libraries make it. */
async function exchangeAtSts(audience: string, subjectToken: string) {
  const res = await fetch(gcp.tokenUrl, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      audience,
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
      subject_token: subjectToken,
      scope: SCOPE,
    }),
  });
  return { status: res.status, body: (await res.json()) as { error?: string; error_description?: string; access_token?: string } };
}

async function accessTokenFrom(file: string): Promise<string> {
  const auth = new GoogleAuth({ keyFile: file, scopes: [SCOPE] });
  const client = await auth.getClient();
  assert.ok(client instanceof PluggableAuthClient, 'an executable-sourced external account');
  const { token } = await client.getAccessToken();
  assert.ok(token);
  return token;
}

void describe('Google Cloud workload identity federation through google-auth-library', () => {
  void test('configure gcp writes the external-account file the library reads', async () => {
    const file = await configure(['--service-account', SA]);
    const written = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    assert.equal(written.type, 'external_account');
    assert.equal(written.audience, AUDIENCE);
    assert.equal(written.subject_token_type, 'urn:ietf:params:oauth:token-type:id_token');
    assert.equal(written.token_url, gcp.tokenUrl);
    assert.equal(written.service_account_impersonation_url, gcp.impersonationUrl(SA));
    const command = (written.credential_source as { executable: { command: string } }).executable.command;
    assert.match(command, /agentkeys\.js mint gcp --executable$/);
  });

  void test('configure gcp --wait: the executable waits for an approval, with the longest timeout the library accepts, and the library still runs it', async () => {
    const file = await configure(['--service-account', SA, '--wait']);
    const written = JSON.parse(await readFile(file, 'utf8')) as { credential_source: { executable: { command: string; timeout_millis: number } } };
    assert.match(written.credential_source.executable.command, /agentkeys\.js mint gcp --executable --wait$/);
    assert.equal(written.credential_source.executable.timeout_millis, 120_000);
    assert.ok(await accessTokenFrom(file));
  });

  void test('the library exchanges the broker token at STS and impersonates the service account; the mint is audited', async () => {
    const token = await accessTokenFrom(await configure(['--service-account', SA]));
    const principal = gcp.principal(token);
    assert.deepEqual(principal, { kind: 'service_account', subject: SA, scopes: [SCOPE] });
    const exchange = gcp.calls().find((c) => c.path === '/v1/token');
    assert.equal(exchange?.fields.audience, AUDIENCE);
    assert.equal(exchange?.fields.grant_type, 'urn:ietf:params:oauth:grant-type:token-exchange');
    const rows = await lastMintRows(stack, main.omni_account);
    assert.deepEqual(
      rows.map((r) => [r.event, r.outcome]),
      [
        ['mint.gcp.intent', 'ok'],
        ['mint.gcp', 'ok'],
      ],
    );
    assert.equal(rows[0]?.details.audience, AUDIENCE);
    assert.equal(rows[1]?.details.service_account, SA);
    assert.match(String(rows[1]?.details.jwt_hash), /^[0-9a-f]{32}$/);
  });

  void test('without impersonation the library holds the federated token of the wallet', async () => {
    const token = await accessTokenFrom(await configure([]));
    const principal = gcp.principal(token);
    assert.equal(principal?.kind, 'federated');
    assert.equal(principal?.subject, `agentkeys:agent:${main.wallet.lower}`);
    assert.equal(principal?.audience, AUDIENCE);
    assert.equal(principal?.serviceAccount, undefined);
  });

  void test('a token minted for one provider is refused by another; a token without the service account claim cannot impersonate it', async () => {
    const other = await mintGcp(main.token, { audience: OTHER_AUDIENCE });
    assert.equal(other.status, 200, other.text);
    const refused = await exchangeAtSts(AUDIENCE, (other.body as { id_token: string }).id_token);
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_grant');

    const plain = await mintGcp(main.token, { audience: AUDIENCE });
    assert.equal(plain.status, 200, plain.text);
    const federated = await exchangeAtSts(AUDIENCE, (plain.body as { id_token: string }).id_token);
    assert.equal(federated.status, 200);
    const impersonate = await fetch(gcp.impersonationUrl(SA), {
      method: 'POST',
      headers: { authorization: `Bearer ${federated.body.access_token ?? ''}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: [SCOPE] }),
    });
    assert.equal(impersonate.status, 403);
  });

  void test('another account of this broker, naming the tenant’s provider and service account, is refused by the provider’s attribute condition; without one it would impersonate', async () => {
    // The broker is one issuer for every account: it signs any account's token for any audience,
    // so what keeps a stranger out of a tenant's project is the provider's condition on the wallet.
    const stranger = await walletLogin(stack);
    const impersonates = async (accessToken: string) =>
      (
        await fetch(gcp.impersonationUrl(SA), {
          method: 'POST',
          headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ scope: [SCOPE] }),
        })
      ).status;

    const minted = await mintGcp(stranger.token, { audience: AUDIENCE, service_account: SA });
    assert.equal(minted.status, 200, minted.text);
    const refused = await exchangeAtSts(AUDIENCE, (minted.body as { id_token: string }).id_token);
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'unauthorized_client');
    assert.match(refused.body.error_description ?? '', /rejected by the attribute condition/);

    const tenants = await mintGcp(main.token, { audience: AUDIENCE, service_account: SA });
    const admitted = await exchangeAtSts(AUDIENCE, (tenants.body as { id_token: string }).id_token);
    assert.equal(admitted.status, 200, JSON.stringify(admitted.body));
    assert.equal(await impersonates(admitted.body.access_token ?? ''), 200, 'the tenant impersonates its service account');

    const open = await mintGcp(stranger.token, { audience: UNCONDITIONED_AUDIENCE, service_account: SA });
    const accepted = await exchangeAtSts(UNCONDITIONED_AUDIENCE, (open.body as { id_token: string }).id_token);
    assert.equal(accepted.status, 200, 'a provider without a condition admits any account of the broker');
    assert.equal(await impersonates(accepted.body.access_token ?? ''), 200, 'and any of them impersonates a service account bound by its attribute alone');
  });

  void test('--executable answers a failure in the executable-response form: exit 1, the response alone on stdout, nothing on stderr; a bad profile too', async () => {
    for (const [env, code, message] of [
      [
        { AGENTKEYS_TOKEN: 'not-a-session' },
        'ERR_CLI_NOT_LOGGED_IN',
        /^the broker refused AGENTKEYS_TOKEN \(.+\): it is not a session of this broker, or it expired or was logged out/,
      ],
      [{ AGENTKEYS_PROFILE: '../elsewhere' }, 'ERR_CLI_USAGE', /^profile name "\.\.\/elsewhere" must be/],
    ] as const) {
      const r = await cli.run(['mint', 'gcp', '--executable', '--audience', AUDIENCE], { env });
      assert.equal(r.code, 1, 'a failure response exits non-zero (the spec)');
      assert.equal(r.stderr, '', 'the library joins stderr to stdout: anything there breaks the response');
      assert.match(r.stdout, /^\{.*\}\n$/, 'one JSON line');
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.deepEqual(Object.keys(out), ['version', 'success', 'code', 'message']);
      assert.equal(out.version, 1);
      assert.equal(out.success, false);
      assert.equal(out.code, code);
      assert.match(String(out.message), message);
    }
  });

  void test("google-auth-library's PluggableAuthClient raises the failure response, and only it, as its ExecutableError", async () => {
    const file = await configure([]);
    for (const [env, code, message] of [
      [
        { AGENTKEYS_TOKEN: 'not-a-session' },
        'ERR_CLI_NOT_LOGGED_IN',
        /the broker refused AGENTKEYS_TOKEN \(.+\): it is not a session of this broker, or it expired or was logged out/,
      ],
      [{ AGENTKEYS_PROFILE: '../elsewhere' }, 'ERR_CLI_USAGE', /profile name "\.\.\/elsewhere" must be/],
    ] as const) {
      // The executable inherits this process's environment.
      const before = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
      Object.assign(process.env, env);
      try {
        const client = await new GoogleAuth({ keyFile: file, scopes: [SCOPE] }).getClient();
        assert.ok(client instanceof PluggableAuthClient);
        await assert.rejects(client.getAccessToken(), (e: unknown) => {
          assert.ok(e instanceof ExecutableError, String(e));
          assert.equal(e.code, '1', 'the exit status');
          // The library's message wraps the executable's stdout and stderr joined: the response alone.
          const prefix = 'The executable failed with exit code: 1 and error message: ';
          assert.ok(e.message.startsWith(prefix), e.message);
          assert.ok(e.message.endsWith('.'), e.message);
          const response = JSON.parse(e.message.slice(prefix.length, -1)) as Record<string, unknown>;
          assert.equal(response.success, false);
          assert.equal(response.code, code);
          assert.match(String(response.message), message);
          return true;
        });
      } finally {
        for (const [k, v] of Object.entries(before)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
    }
  });
});

async function mintGcp(token: string, body: unknown) {
  return stack.request('POST', '/v1/mint-gcp-token', { token, body });
}

void describe('Google Cloud mints under a grant: the scope names the providers and service accounts', () => {
  let agent: WalletSession;
  let grantId: string;

  before(async () => {
    const wallet = newWallet();
    grantId = await bindAgent(stack, main.token, wallet, { scope: { gcp: { audiences: [AUDIENCE], service_accounts: [SA] } } });
    agent = await walletLogin(stack, wallet);
  });

  void test('the grant shows its gcp scope', async () => {
    const res = await stack.request('GET', '/v1/grants', { token: main.token });
    assert.equal(res.status, 200, res.text);
    const grant = (res.body as { grants: { grant_id: string; scope: Record<string, unknown> }[] }).grants.find((g) => g.grant_id === grantId);
    assert.deepEqual(grant?.scope, { gcp: { audiences: [AUDIENCE], service_accounts: [SA] } });
  });

  for (const [what, body, reason] of [
    ['another provider', { audience: OTHER_AUDIENCE, service_account: SA }, /does not allow the audience/],
    ['another service account', { audience: AUDIENCE, service_account: OTHER_SA }, /does not allow the service account/],
    ['no service account', { audience: AUDIENCE }, /name one in service_account/],
  ] as const) {
    void test(`${what}: 403, audited as denied`, async () => {
      const res = await mintGcp(agent.token, body);
      assert.equal(res.status, 403, res.text);
      assert.match(res.text, reason);
      const rows = await lastMintRows(stack, agent.omni_account);
      assert.deepEqual(
        rows.map((r) => [r.event, r.outcome]),
        [['mint.gcp', 'denied']],
      );
    });
  }

  void test('within the scope: the main wallet, the grant and the service account in the token', async () => {
    const res = await mintGcp(agent.token, { audience: AUDIENCE, service_account: SA });
    assert.equal(res.status, 200, res.text);
    const body = res.body as { id_token: string; audience: string; service_account: string; wallet: string };
    assert.equal(body.audience, AUDIENCE);
    assert.equal(body.service_account, SA);
    assert.equal(body.wallet, main.wallet.lower);
    const claims = decodeJwt(body.id_token);
    assert.equal(claims.aud, AUDIENCE);
    assert.equal(claims.sub, `agentkeys:agent:${main.wallet.lower}:grant:${grantId}`, 'the grant is its own principal at Google');
    assert.equal(claims.agentkeys_user_wallet, main.wallet.lower);
    assert.equal(claims.agentkeys_grant_id, grantId);
    assert.equal(claims.agentkeys_child_wallet, agent.wallet.lower);
    assert.equal(claims.agentkeys_gcp_service_account, SA);
    assert.equal(claims.agentkeys_scope, undefined, 'the AWS scope claim is for STS only');
  });

  void test("the agent is not its holder's principal at Google: a role bound to the holder's subject reaches no agent, whose only way in is its service accounts", async () => {
    // scope.gcp.service_accounts can only be enforced through impersonation: were the agent's
    // federated principal its holder's, every role bound to the holder's …/subject/agentkeys:agent:<wallet>
    // would be the agent's too, whatever service accounts its grant lists.
    const minted = await mintGcp(agent.token, { audience: AUDIENCE, service_account: SA });
    assert.equal(minted.status, 200, minted.text);
    const federated = await exchangeAtSts(AUDIENCE, (minted.body as { id_token: string }).id_token);
    assert.equal(federated.status, 200, JSON.stringify(federated.body));
    const principal = gcp.principal(federated.body.access_token ?? '');
    assert.equal(principal?.kind, 'federated');
    assert.equal(principal?.subject, `agentkeys:agent:${main.wallet.lower}:grant:${grantId}`);
    assert.notEqual(principal?.subject, `agentkeys:agent:${main.wallet.lower}`, "the holder's own principal");
    assert.ok(Buffer.byteLength(principal?.subject ?? '') <= 127, 'google.subject is at most 127 bytes');
    assert.equal(principal?.serviceAccount, SA);
    const rows = await lastMintRows(stack, agent.omni_account);
    assert.equal(rows.at(-1)?.details.subject, `agentkeys:agent:${main.wallet.lower}:grant:${grantId}`, 'the ok row names the principal');
  });

  void test('a grant scoped to Google Cloud mints no AWS token', async () => {
    const res = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
    assert.equal(res.status, 403, res.text);
    assert.deepEqual(Object.keys(res.body as object).sort(), ['error', 'message']);
    assert.equal((res.body as { error: string }).error, 'forbidden');
    assert.doesNotMatch(res.text, /eyJ/, 'a JWT in the refusal');
    const rows = await lastMintRows(stack, agent.omni_account);
    assert.deepEqual(
      rows.map((r) => [r.event, r.outcome]),
      [['mint.oidc', 'denied']],
    );
  });

  void test('malformed: no body, a null or empty one, a bad audience or service account is a 400 before any flow or audit row; a bad gcp scope is refused', async () => {
    const before = (await stack.db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_log')).rows[0]?.n;
    const starts = spyWorkflowStarts(stack.temporal);
    try {
      // No body at all, a JSON null, an empty body sent as JSON: the audience is required, as in {}.
      for (const [what, send] of [
        ['no body', () => stack.request('POST', '/v1/mint-gcp-token', { token: main.token })],
        ['a null body', () => mintGcp(main.token, null)],
        [
          'an empty JSON body',
          () => stack.request('POST', '/v1/mint-gcp-token', { token: main.token, body: '', headers: { 'content-type': 'application/json' } }),
        ],
      ] as const) {
        const res = await send();
        assert.equal(res.status, 400, `${what}: ${res.text}`);
        assert.equal((res.body as { error: string }).error, 'bad_request', `${what}: ${res.text}`);
        assert.doesNotMatch(res.text, /eyJ/, `${what}: a JWT in the refusal`);
      }
      for (const body of [{}, { audience: 'sts.amazonaws.com' }, { audience: `${AUDIENCE}/x` }, { audience: AUDIENCE, service_account: 'root@example.com' }]) {
        const res = await mintGcp(main.token, body);
        assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      }
      assert.equal(starts.count(), 0, 'a mint flow was started');
    } finally {
      starts.restore();
    }
    assert.equal((await stack.db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_log')).rows[0]?.n, before);
    const bad = await stack.request('POST', '/v1/grants', {
      token: main.token,
      body: { agent_address: newWallet().lower, scope: { gcp: { audiences: ['//iam.googleapis.com/projects/x'] } } },
    });
    assert.equal(bad.status, 400, bad.text);
    const unknown = await stack.request('POST', '/v1/grants', {
      token: main.token,
      body: { agent_address: newWallet().lower, scope: { gcp: { pools: [AUDIENCE] } } },
    });
    assert.equal(unknown.status, 400, unknown.text);
  });

  void test('a mint run without an audience in its parameters (a flow or approval request started before the body was required) signs nothing', async () => {
    const activities = createMintActivities(stack.activityDeps);
    const requestId = randomBytes(16).toString('hex');
    const req: MintRequest = {
      requestId,
      target: 'gcp',
      params: {},
      caller: { omniAccount: main.omni_account, authKind: 'session', method: 'wallet', wallet: main.wallet.lower, bearerHash: 'g'.repeat(32) },
      sealTo: (await createSealKeyPair()).publicJwk,
    };
    const env = new MockActivityEnvironment({ workflowExecution: { workflowId: MINT_ID_PREFIX + requestId, runId: 'run-1' }, isLocal: true });
    await assert.rejects(
      env.run((r: MintRequest) => activities.mint(r), req),
      (e: unknown) => e instanceof ApplicationFailure && e.type === FailureType.badRequest && /nothing was signed/.test(e.message),
    );
    const rows = await stack.db.query<{ event: string; outcome: string }>('SELECT event, outcome FROM audit_log WHERE request_id = $1 ORDER BY seq', [
      requestId,
    ]);
    assert.deepEqual(
      rows.rows.map((r) => [r.event, r.outcome]),
      [
        ['mint.gcp.intent', 'ok'],
        ['mint.gcp', 'failed'],
      ],
      'no ok row: nothing left',
    );
  });
});
