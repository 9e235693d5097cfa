/**
 * What a mint target needs before it signs: whether its route needs a body (derived from its
 * fields), its parameters refusing a missing field, the Google Cloud exchange checking its audience
 * again where it signs, and each target naming its own audience (sign has no default).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MINT_TARGETS } from '../activities/mint-targets';
import { gcpTarget } from '../activities/mint-targets/gcp';
import { oidcTarget } from '../activities/mint-targets/oidc';
import { bodyRequired, type MintContext } from '../activities/mint-targets/target';
import type { ActivityDeps } from '../activities/deps';
import { loadConfig } from '../lib/config';
import { BrokerError, FailureType } from '../lib/errors';
import { OIDC_AUDIENCE, oidcTokenClaims } from '../lib/oidc-claims';

const config = loadConfig({});
const AUDIENCE = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/agentkeys-pool/providers/agentkeys-broker';

/** A mint context whose `sign` records the audiences it was asked for. */
function recordingContext(withConfig = config): { ctx: MintContext; audiences: string[] } {
  const audiences: string[] = [];
  const ctx: MintContext = {
    deps: { config: withConfig } as ActivityDeps,
    wallet: '0x70997970c51812dc3a010c7d01b50e0d17dc79c8',
    actorId: 'a'.repeat(64),
    attempt: 1,
    sign: (audience) => {
      audiences.push(audience);
      return Promise.resolve({ jwt: 'h.p.s', kid: 'k1', jwtHash: '0'.repeat(32), expiration: 2_000, nowSeconds: 1_000 });
    },
  };
  return { ctx, audiences };
}

void describe('a mint target’s body and audience', () => {
  void test('a target with a required field needs a body; the others read a missing one as {}', () => {
    assert.deepEqual(Object.fromEntries(MINT_TARGETS.map((t) => [t.name, bodyRequired(t, config)])), { oidc: false, aws: false, gcp: true });
  });

  void test('gcp parameters refuse a missing audience as a bad request', () => {
    for (const body of [{}, { audience: null }, { audience: 7 }, { service_account: 'ci-deployer@my-project-123.iam.gserviceaccount.com' }]) {
      assert.throws(
        () => gcpTarget.params(body, config),
        (e: unknown) => e instanceof BrokerError && e.errorCode === 'bad_request' && /audience is required/.test(e.message),
        JSON.stringify(body),
      );
    }
    assert.deepEqual(gcpTarget.params({ audience: AUDIENCE }, config), { audience: AUDIENCE });
  });

  void test('the gcp exchange checks the audience again and signs nothing without a pool provider; the failure is a bad request, not retried', async () => {
    for (const params of [{}, { audience: 'sts.amazonaws.com' }, { audience: `${AUDIENCE}/x` }]) {
      const { ctx, audiences } = recordingContext();
      const failure = await gcpTarget.exchange(ctx, params as { audience: string }).then(
        () => assert.fail(`${JSON.stringify(params)} was signed`),
        (e: unknown) => e,
      );
      assert.deepEqual(audiences, [], `${JSON.stringify(params)}: signed`);
      const c = gcpTarget.classify(failure, config);
      assert.equal(c.type, FailureType.badRequest, JSON.stringify(params));
      assert.equal(c.retryable, false);
      assert.match(c.message, /nothing was signed/);
    }
    const { ctx, audiences } = recordingContext();
    await gcpTarget.exchange(ctx, { audience: AUDIENCE });
    assert.deepEqual(audiences, [AUDIENCE]);
    // Any other failure is still the signing key's.
    assert.equal(gcpTarget.classify(new Error('keyset unreadable'), config).type, FailureType.mintSigningFailed);
  });

  void test('the OIDC target names the STS audience itself; the claims have no default audience', async () => {
    const { ctx, audiences } = recordingContext();
    await oidcTarget.exchange(ctx, {});
    assert.deepEqual(audiences, [OIDC_AUDIENCE]);
    const base = { issuer: 'https://issuer', wallet: '0x70997970c51812dc3a010c7d01b50e0d17dc79c8', nowSeconds: 1_000, ttlSeconds: 300 };
    for (const audience of [undefined, '']) {
      assert.throws(() => oidcTokenClaims({ ...base, audience: audience as string }), RangeError, JSON.stringify(audience));
    }
    assert.equal(oidcTokenClaims({ ...base, audience: AUDIENCE }).aud, AUDIENCE);
  });

  void test('BROKER_STS_AUDIENCE names the AWS targets’ audience, as AgentKeys’ own broker reads it; a value no IAM provider could register is refused at start', async () => {
    assert.equal(config.BROKER_STS_AUDIENCE, OIDC_AUDIENCE);
    const { ctx, audiences } = recordingContext(loadConfig({ BROKER_STS_AUDIENCE: 've-broker-runtime' }));
    await oidcTarget.exchange(ctx, {});
    assert.deepEqual(audiences, ['ve-broker-runtime']);
    for (const bad of ['', 'sts.amazonaws.com ', 'two words', 'x'.repeat(256), 'aud\u0000']) {
      assert.throws(() => loadConfig({ BROKER_STS_AUDIENCE: bad }), /BROKER_STS_AUDIENCE/, JSON.stringify(bad));
    }
  });
});
