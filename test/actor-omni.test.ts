import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { agentKeysActorId } from '../lib/actor-omni';
import { OIDC_AUDIENCE, oidcTokenClaims } from '../lib/oidc-claims';
import { deriveOmniAccount } from '../lib/omni';
import { callback, cliStart, consent, poll, startGoogleStack, uniqueHint, type GoogleStack } from './google-login-client';
import { agentKeysActorOf, emailLogin, mintAws, mintOidc, walletLogin } from './mint-client';

/**
 * The AgentKeys actor identifier (lib/actor-omni.ts) against AgentKeys' own vectors, and through
 * HTTP: the `agentkeys_actor_omni` claim and tag of a minted JWT are what AgentKeys derives for
 * that login, not the OmniAccount. Vectors from litentry/agent-terrier at c348357:
 *
 * - `crates/agentkeys-broker-server/src/identity/omni_account.rs`, test `pinned_vectors_both_stacks`
 *   (evm and email, on the AWS stack's `agentkeys` and the VE stack's `agentterrier`);
 * - `crates/agentkeys-core/src/actor_omni.rs`, tests `pinned_known_value_for_zero_wallet` and
 *   `case_insensitive_on_wallet_hex`;
 * - Google: AgentKeys pins no digest for it; its parts are pinned: the type `oauth2_google`
 *   (`crates/agentkeys-broker-server/src/plugins/auth/mod.rs`, test
 *   `identity_type_canonical_strings_are_stable`) and the value, the provider's `sub`
 *   (`crates/agentkeys-broker-server/tests/oauth2_flow.rs`: identity_type `oauth2_google`,
 *   identity_value `stub-sub-12345`), hashed by the recipe `pinned_vectors_both_stacks` states
 *   (`hashlib.sha256((cid+type+value).encode()).hexdigest()`), which gives the digest below.
 */

const ANY_OMNI = `0x${'ab'.repeat(32)}`;
const WALLET = '0x1234567890abcdef1234567890abcdef12345678';

void describe('the AgentKeys actor identifier: upstream vectors', () => {
  void test('evm: pinned_vectors_both_stacks, both stacks; any spelling of the address derives the same', () => {
    assert.equal(agentKeysActorId('agentkeys', ANY_OMNI, { type: 'evm', value: WALLET }), '43adfc06263716e1fe7b72513bb3d305aff6cf8f060c1b709cfa0d4977bf0373');
    assert.equal(
      agentKeysActorId('agentterrier', ANY_OMNI, { type: 'evm', value: WALLET }),
      'ef0881a6bdd2532b518e938c74366062730bc13c9f16d01558f647204881bd5b',
    );
    // case_insensitive_on_wallet_hex; a TEE identity may come without 0x.
    for (const spelling of [WALLET.toUpperCase().replace('0X', '0x'), WALLET.slice(2), WALLET.slice(2).toUpperCase()]) {
      assert.equal(
        agentKeysActorId('agentkeys', ANY_OMNI, { type: 'evm', value: spelling }),
        '43adfc06263716e1fe7b72513bb3d305aff6cf8f060c1b709cfa0d4977bf0373',
      );
    }
    // pinned_known_value_for_zero_wallet: the digest of the literal input bytes.
    const zero = `0x${'0'.repeat(40)}`;
    assert.equal(
      agentKeysActorId('agentkeys', ANY_OMNI, { type: 'evm', value: zero }),
      createHash('sha256').update(Buffer.from('agentkeysevm0x0000000000000000000000000000000000000000')).digest('hex'),
    );
    // Not Heima's OmniAccount of that wallet (which hashes the 20 raw bytes): the two differ.
    const omni = deriveOmniAccount('agentkeys', { type: 'evm', value: WALLET });
    assert.equal(omni, '0xf77b15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567');
    assert.notEqual(omni.slice(2), '43adfc06263716e1fe7b72513bb3d305aff6cf8f060c1b709cfa0d4977bf0373');
  });

  void test('email: pinned_vectors_both_stacks; lower-cased as AgentKeys normalises it; equal to the OmniAccount here', () => {
    const aws = 'f677ce5629707f03b345d016721da17ddbe80cc23038e85dbf18ce71f9b340a9';
    assert.equal(agentKeysActorId('agentkeys', ANY_OMNI, { type: 'email', value: 'onboard@example.com' }), aws);
    assert.equal(agentKeysActorId('agentkeys', ANY_OMNI, { type: 'email', value: 'Onboard@Example.COM' }), aws);
    assert.equal(
      agentKeysActorId('agentterrier', ANY_OMNI, { type: 'email', value: 'onboard@example.com' }),
      'fff6a048f0addaa0f793ad2cfd3e81aaa30664f90131f486443401477213bb0d',
    );
    // Heima's rule agrees for an address of at most 64 bytes (same type string, same text).
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: 'onboard@example.com' }), `0x${aws}`);
  });

  void test('Google: type oauth2_google over the sub, not Heima google', () => {
    const actor = agentKeysActorId('agentkeys', ANY_OMNI, { type: 'google', value: 'stub-sub-12345' });
    assert.equal(actor, '4b9a4d867f5612c03fe297d162ce0dc8efbc794b376951cd0f924620e2fc5a8e');
    assert.notEqual(`0x${actor}`, deriveOmniAccount('agentkeys', { type: 'google', value: 'stub-sub-12345' }));
  });

  void test('an identity AgentKeys has no login for, or none known, falls back to the bare OmniAccount', () => {
    assert.equal(agentKeysActorId('agentkeys', ANY_OMNI, { type: 'substrate', value: `0x${'11'.repeat(32)}` }), 'ab'.repeat(32));
    assert.equal(agentKeysActorId('agentkeys', `0x${'CD'.repeat(32)}`, undefined), 'cd'.repeat(32));
    // A value that is no address is no wallet.
    assert.equal(agentKeysActorId('agentkeys', ANY_OMNI, { type: 'evm', value: 'not-an-address' }), 'ab'.repeat(32));
    // An inherited property name is no identity type.
    assert.equal(agentKeysActorId('agentkeys', ANY_OMNI, { type: 'constructor', value: 'x' }), 'ab'.repeat(32));
  });
});

void describe('the claims: build_oidc_jwt_claims forms', () => {
  const base = { issuer: 'https://issuer', nowSeconds: 1_000, ttlSeconds: 300, audience: OIDC_AUDIENCE };

  void test('a wallet: sub and agentkeys_user_wallet the lower-case address, the actor beside it (wallet_session_oidc_tags_unchanged_after_144)', () => {
    const actor = '43adfc06263716e1fe7b72513bb3d305aff6cf8f060c1b709cfa0d4977bf0373';
    const c = oidcTokenClaims({ ...base, wallet: WALLET, actorId: actor });
    assert.equal(c.sub, `agentkeys:agent:${WALLET}`);
    assert.equal(c.agentkeys_user_wallet, WALLET);
    assert.equal(c.agentkeys_actor_omni, actor);
    assert.deepEqual(c['https://aws.amazon.com/tags'].principal_tags, { agentkeys_user_wallet: [WALLET], agentkeys_actor_omni: [actor] });
  });

  void test('no wallet: sub, the claim and both tags are the bare lower-case actor (prefixed_omni_claim_normalizes_to_the_bare_tag_shape)', () => {
    const bare = 'ab'.repeat(32);
    const c = oidcTokenClaims({ ...base, wallet: `0x${'CD'.repeat(32)}`, actorId: `0x${'AB'.repeat(32)}` });
    assert.equal(c.sub, `agentkeys:agent:${bare}`);
    assert.equal(c.agentkeys_user_wallet, bare);
    assert.equal(c.agentkeys_actor_omni, bare);
    assert.deepEqual(c['https://aws.amazon.com/tags'], {
      principal_tags: { agentkeys_user_wallet: [bare], agentkeys_actor_omni: [bare] },
      transitive_tag_keys: ['agentkeys_user_wallet', 'agentkeys_actor_omni'],
    });
  });
});

const ROLE = 'arn:aws:iam::123456789012:role/agentkeys-data';
let g: GoogleStack;

before(async () => {
  g = await startGoogleStack({ BROKER_DATA_ROLE_ARN: ROLE });
  g.stack.sts.setJwksUrl(`${g.stack.url}/.well-known/jwks.json`);
});
after(async () => {
  await g?.stop();
});

async function verify(jwt: string): Promise<JWTPayload> {
  const { stack } = g;
  const { payload } = await jwtVerify(jwt, createRemoteJWKSet(new URL(`${stack.url}/.well-known/jwks.json`)), {
    audience: 'sts.amazonaws.com',
    issuer: stack.url,
  });
  return payload;
}

/** The JWT STS was given by the last AssumeRoleWithWebIdentity. */
async function lastWebIdentity(): Promise<JWTPayload> {
  const calls = g.stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity');
  const token = calls[calls.length - 1]?.fields.WebIdentityToken;
  assert.ok(token, 'STS saw no web identity token');
  return verify(token);
}

function actorAndTags(p: JWTPayload): { claim: unknown; tag: unknown; walletClaim: unknown; walletTag: unknown; sub: unknown } {
  const tags = (p['https://aws.amazon.com/tags'] as { principal_tags: Record<string, string[]> }).principal_tags;
  return {
    claim: p.agentkeys_actor_omni,
    tag: tags.agentkeys_actor_omni?.[0],
    walletClaim: p.agentkeys_user_wallet,
    walletTag: tags.agentkeys_user_wallet?.[0],
    sub: p.sub,
  };
}

void describe('minted over HTTP: the actor AgentKeys derives for the login', () => {
  void test('a wallet login: the OIDC JWT and the JWT STS is given carry SHA256("agentkeys" ‖ "evm" ‖ wallet), not the OmniAccount', async () => {
    const { stack } = g;
    const session = await walletLogin(stack);
    const w = session.wallet.lower;
    const expected = agentKeysActorOf('evm', w);
    assert.notEqual(expected, session.omni_account.slice(2));

    const oidc = await mintOidc(stack, session.token);
    assert.deepEqual(actorAndTags(await verify(oidc.jwt)), { claim: expected, tag: expected, walletClaim: w, walletTag: w, sub: `agentkeys:agent:${w}` });

    stack.sts.clear();
    const aws = await mintAws(stack, session.token);
    assert.equal(aws.wallet, w);
    assert.deepEqual(actorAndTags(await lastWebIdentity()), { claim: expected, tag: expected, walletClaim: w, walletTag: w, sub: `agentkeys:agent:${w}` });
  });

  void test('an email login: the actor is AgentKeys’ email derivation, and sub and the wallet claim fall back to it, bare', async () => {
    const { stack } = g;
    const session = await emailLogin(stack);
    const expected = agentKeysActorOf('email', session.email.toLowerCase());
    const minted = await mintOidc(stack, session.token);
    assert.equal(minted.wallet, expected, 'the answer names the wallet the credential names, as AgentKeys clients read it');
    assert.deepEqual(actorAndTags(await verify(minted.jwt)), {
      claim: expected,
      tag: expected,
      walletClaim: expected,
      walletTag: expected,
      sub: `agentkeys:agent:${expected}`,
    });
  });

  void test('a Google login: the actor is SHA256("agentkeys" ‖ "oauth2_google" ‖ sub), not the Heima google OmniAccount', async () => {
    const { stack } = g;
    const start = await cliStart(stack);
    const back = await callback(await consent(start.authorize_url, uniqueHint('actor')));
    assert.equal(back.status, 200, back.text);
    const got = await poll(stack, start, back.code);
    assert.equal(got.status, 200, got.text);
    const session = got.body as { token: string; omni_account: string; identity: { type: string; value: string } };
    assert.equal(session.identity.type, 'google');
    const expected = agentKeysActorOf('oauth2_google', session.identity.value);
    assert.notEqual(expected, session.omni_account.slice(2));

    stack.sts.clear();
    const creds = await mintAws(stack, session.token);
    assert.equal(creds.wallet, expected, 'the answer names the user wallet the session tags carry, not the 0x OmniAccount');
    assert.deepEqual(actorAndTags(await lastWebIdentity()), {
      claim: expected,
      tag: expected,
      walletClaim: expected,
      walletTag: expected,
      sub: `agentkeys:agent:${expected}`,
    });
  });
});
