/**
 * Grant acceptance: one signed acceptance is one proof, whatever the encoding of its signature
 * (respelled input). The replay guard keys the proof as the stateless wallet login does: under the
 * signature's bytes and under the (agent address, acceptance text) key, together. With contract
 * wallets on (BROKER_EVM_RPC_URL), an agent that is an EOA delegated under EIP-7702 has its own
 * ECDSA signature accepted re-encoded too (an ERC-6492 envelope, the 64-byte EIP-2098 compact form):
 * keyed on the bytes alone, those were other proofs than the 65-byte original.
 *
 * The pending → accepted change under the row lock refuses a second acceptance before the guard is
 * reached, so to reach the guard the tests put the accepted grant back to pending (what a grant
 * accepted without that change would look like): every respelling is then a 409 from the guard
 * that changes no row.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashMessage, type Hex } from 'viem';
import { contractReplayKey, eoaReplayKey } from '../adapters/evm-signature';
import { assertRefused, assertUnchanged, dbSnapshot } from './adversarial-probes';
import { offerGrant, type GrantView } from './grant-client';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';
import { delegatedEoa, reencodings, startChainStandIn, type ChainStandIn } from './support/evm-chain';
import { newWallet, withHighS, withRecoveryBitV, type TestWallet } from './wallet-client';

let chain: ChainStandIn;
let stack: TestStack;
let owner: WalletSession;
before(async () => {
  chain = await startChainStandIn();
  stack = await startStack({ env: { BROKER_EVM_RPC_URL: chain.url, BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  owner = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
  await chain?.close();
});

const acceptPath = (grantId: string) => `/v1/grants/${grantId}/accept`;
const upperHex = (signature: Hex) => `0x${signature.slice(2).toUpperCase()}`;

/** Every other spelling of one ECDSA signature: the 65-byte ones the normaliser reads, and the re-encodings the chain accepts. */
function respellings(signature: Hex): [string, string][] {
  return [
    ['the same signature', signature],
    ['upper-case hex', upperHex(signature)],
    ['v as 0/1', withRecoveryBitV(signature)],
    ...reencodings(signature),
    ['64-byte compact (EIP-2098), upper-case hex', upperHex(reencodings(signature)[3]?.[1] ?? '0x')],
  ];
}

/** A pending grant of the owner's account offered to a fresh delegated EOA, with its acceptance text. */
async function pendingGrant(): Promise<{ agent: TestWallet; grant: GrantView; text: string }> {
  const agent = delegatedEoa(chain);
  const grant = await offerGrant(stack, owner.token, { agent_address: agent.lower, scope: { services: ['s3'] } });
  return { agent, grant, text: grant.acceptance_message ?? '' };
}

async function accept(grantId: string, signature: string) {
  return stack.request('POST', acceptPath(grantId), { body: { signature } });
}

/** The purposes stored under each key, in the order of `keys`. */
async function guardRows(keys: string[]): Promise<(string | undefined)[]> {
  const r = await stack.db.query<{ signature_hash: string; purpose: string }>(
    'SELECT signature_hash, purpose FROM used_signatures WHERE signature_hash = ANY($1)',
    [keys],
  );
  return keys.map((k) => r.rows.find((row) => row.signature_hash === k)?.purpose);
}

/**
 * Runs `body` with the accepted grant put back to pending, so a respelled acceptance meets the
 * replay guard instead of the row state; the grant is accepted again afterwards.
 */
async function withGrantPendingAgain(grantId: string, body: () => Promise<void>): Promise<void> {
  await stack.db.query('UPDATE grants SET accepted_at = NULL WHERE grant_id = $1', [grantId]);
  try {
    await body();
  } finally {
    await stack.db.query('UPDATE grants SET accepted_at = now() WHERE grant_id = $1', [grantId]);
  }
}

/** Sends each spelling; each is refused by the replay guard (409) and changes no row. */
async function expectGuardRefuses(grantId: string, agent: TestWallet, text: string, spellings: [string, string][]): Promise<void> {
  for (const [what, signature] of spellings) {
    const before = await dbSnapshot(stack.db);
    const callsBefore = chain.calls.length;
    const res = await accept(grantId, signature);
    assertRefused(res, 409, 'conflict', /already been used/, what);
    // A spelling that is not 65 bytes went to the chain, which accepted it (a refused one is a 401): the guard refused it.
    for (const call of chain.calls.slice(callsBefore)) assert.deepEqual(call, { address: agent.lower, hash: hashMessage(text) }, what);
    await assertUnchanged(stack.db, before, what);
  }
}

void describe('grant acceptance: a respelled signature is the same signature', () => {
  void test('accepted with the 65-byte signature: both keys stored; every respelling is then a replay, 409, nothing written', async () => {
    const { agent, grant, text } = await pendingGrant();
    const signature = await agent.sign(text);
    const calls = chain.calls.length;
    const first = await accept(grant.grant_id, signature);
    assert.equal(first.status, 200, first.text);
    assert.equal((first.body as GrantView).status, 'active');
    assert.equal(chain.calls.length, calls, 'the 65-byte signature recovers to the agent: no chain call');

    // While active, the row state refuses first.
    const active = await accept(grant.grant_id, reencodings(signature)[3]?.[1] ?? '');
    assertRefused(active, 409, 'conflict', /active, not pending/, 'compact form on the active grant');

    await withGrantPendingAgain(grant.grant_id, () => expectGuardRefuses(grant.grant_id, agent, text, respellings(signature)));
    // Consumed under both keys: the signature's bytes and (agent address, acceptance text).
    assert.deepEqual(await guardRows([eoaReplayKey(signature.toLowerCase()), contractReplayKey(agent.lower, text)]), ['grant_accept', 'grant_accept']);
    // The high-s twin as 65 bytes is refused as malformed (EIP-2) before anything is looked up.
    const before = await dbSnapshot(stack.db);
    assertRefused(await accept(grant.grant_id, withHighS(signature)), 400, 'bad_request', /high s/, 'high-s twin');
    await assertUnchanged(stack.db, before, 'high-s twin');
  });

  void test('accepted with a re-encoded signature first: the 65-byte original and every other spelling are replays', async () => {
    const count = reencodings(await newWallet().sign('count')).length;
    for (let i = 0; i < count; i++) {
      const { agent, grant, text } = await pendingGrant();
      const signature = await agent.sign(text);
      const [what, encoded] = reencodings(signature)[i] as [string, Hex];
      const first = await accept(grant.grant_id, encoded);
      assert.equal(first.status, 200, `${what}: ${first.text}`);
      const audit = await stack.db.query<{ details: { via: string; signature_hash: string } }>(
        `SELECT details FROM audit_log WHERE event = 'grant.accept' AND details->>'grant_id' = $1`,
        [grant.grant_id],
      );
      assert.deepEqual(
        audit.rows.map((r) => [r.details.via, r.details.signature_hash]),
        [['erc1271', contractReplayKey(agent.lower, text)]],
        what,
      );
      await withGrantPendingAgain(grant.grant_id, () => expectGuardRefuses(grant.grant_id, agent, text, respellings(signature)));
    }
  });
});
