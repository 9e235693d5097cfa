import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowNotFoundError } from '@temporalio/client';
import { decodeJwt } from 'jose';
import { contractReplayKey } from '../adapters/evm-signature';
import { verifyAuditChain } from '../db/audit-query';
import { sha256Hex } from '../lib/digest';
import { deriveOmniAccount } from '../lib/omni';
import { buildSiweMessage, buildStatelessWalletMessage, parseSiweMessage, type SiweFields } from '../lib/wallet-message';
import type { LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { brokenChecksum, newWallet, nowSeconds, rowCounts, withHighS, walletWorkflowIdOf, withRecoveryBitV, type TestWallet } from './wallet-client';

let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
});
after(async () => {
  await stack?.stop();
});

type Session = LoginSessionBody;

interface Challenge {
  request_id: string;
  message: string;
  expires_at: number;
}

async function statelessBody(w: TestWallet, timestamp = nowSeconds(), address: string = w.address) {
  return { address, signature: await w.sign(buildStatelessWalletMessage(w.lower, timestamp)), timestamp };
}

/** Sends a request that must be refused with `status`/`error` and must change no row. */
async function expectRefused(path: string, body: unknown, status: number, error: string, messagePart?: RegExp) {
  const before = await rowCounts(stack.db);
  const res = await stack.request('POST', path, { body });
  assert.equal(res.status, status, res.text);
  assert.equal((res.body as { error: string }).error, error, res.text);
  if (messagePart) assert.match((res.body as { message: string }).message, messagePart);
  assert.deepEqual(await rowCounts(stack.db), before, 'a refused request wrote rows');
  return res;
}

async function login(body: unknown): Promise<Session> {
  const res = await stack.request('POST', '/v1/session/wallet_login', { body });
  assert.equal(res.status, 200, res.text);
  return res.body as Session;
}

async function challenge(w: TestWallet, format: 'eip191' | 'siwe', chainId?: number): Promise<Challenge> {
  const res = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format, ...(chainId ? { chain_id: chainId } : {}) } });
  assert.equal(res.status, 200, res.text);
  return res.body as Challenge;
}

void describe('wallet login, stateless EIP-191 (dexs-backend form)', () => {
  void test('happy path: session, account, main wallet, token claims, audit, replay row, and no workflow', async () => {
    const w = newWallet();
    const body = await statelessBody(w);
    const before = await rowCounts(stack.db);
    const session = await login(body);
    const omni = deriveOmniAccount('agentkeys', { type: 'evm', value: w.lower });
    assert.equal(session.token_type, 'Bearer');
    assert.equal(session.omni_account, omni);
    assert.deepEqual(session.identity, { type: 'evm', value: w.lower });
    const claims = decodeJwt(session.token);
    assert.equal(claims.sub, omni);
    assert.equal(claims.amr, 'wallet');
    assert.equal(claims.wallet, w.lower);
    assert.deepEqual(await rowCounts(stack.db), {
      ...before,
      users: before.users + 1,
      wallets: before.wallets + 1,
      sessions: before.sessions + 1,
      // the replay guard's two keys: the signature's bytes and (address, message)
      used_signatures: before.used_signatures + 2,
      audit_log: before.audit_log + 1,
    });

    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200, me.text);
    assert.deepEqual((me.body as { wallets: unknown[] }).wallets, [{ wallet_index: 0, address: w.lower, role: 'main' }]);

    const audit = await stack.db.query<{ event: string; omni_account: string; details: Record<string, unknown> }>(
      'SELECT event, omni_account, details FROM audit_log ORDER BY seq DESC LIMIT 1',
    );
    assert.equal(audit.rows[0]?.event, 'login.wallet');
    assert.equal(audit.rows[0]?.omni_account, omni);
    assert.ok(!JSON.stringify(audit.rows[0]).includes(body.signature.slice(2, 20)), 'the signature must not be in the audit row');

    const normalized = body.signature.toLowerCase();
    // One signed message is one login whatever the signature's encoding (docs/wallet-login.md):
    // the proof is stored under its bytes and under (address, message), for the window.
    const keys = [sha256Hex(normalized), contractReplayKey(w.lower, buildStatelessWalletMessage(w.lower, body.timestamp))];
    for (const key of keys) {
      const guard = await stack.db.query<{ purpose: string; window: number }>(
        'SELECT purpose, extract(epoch FROM expires_at - used_at)::int AS window FROM used_signatures WHERE signature_hash = $1',
        [key],
      );
      assert.equal(guard.rows[0]?.purpose, 'wallet_login');
      assert.ok((guard.rows[0]?.window ?? 0) >= stack.config.BROKER_WALLET_WINDOW_SECONDS - 5, 'the replay row is kept at least for the window');
    }

    // One transaction in the API, no workflow: the audit row keeps the flow's request id (the signature's hash).
    const row = await stack.db.query<{ request_id: string }>('SELECT request_id FROM audit_log ORDER BY seq DESC LIMIT 1');
    assert.equal(row.rows[0]?.request_id, sha256Hex(normalized));
    await assert.rejects(stack.temporal.workflow.getHandle(`wallet-login/${sha256Hex(normalized)}`).describe(), WorkflowNotFoundError);
    const chain = await verifyAuditChain(stack.db);
    assert.equal(chain.ok, true, JSON.stringify(chain));
  });

  void test('the OmniAccount is derived from the 20 raw address bytes (docs/contracts.md §1 vectors)', () => {
    const value = '0x1234567890abcdef1234567890abcdef12345678';
    assert.equal(deriveOmniAccount('agentkeys', { type: 'evm', value }), '0xf77b15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567');
    assert.equal(deriveOmniAccount('wildmeta', { type: 'evm', value }), '0x864a6ed89ff9ee83daf52181a1a734b7cda5752dcb5ce5d326aea99f7e207502');
  });

  void test('checksum, lower and upper case addresses are the same account; a broken checksum is refused', async () => {
    const w = newWallet();
    const t = nowSeconds();
    const a = await login(await statelessBody(w, t, w.address));
    const b = await login(await statelessBody(w, t - 1, w.lower));
    const c = await login(await statelessBody(w, t - 2, `0x${w.lower.slice(2).toUpperCase()}`));
    assert.equal(a.omni_account, b.omni_account);
    assert.equal(b.omni_account, c.omni_account);
    assert.equal(a.user_id, c.user_id);
    assert.deepEqual(
      [a, b, c].map((s) => s.identity.value),
      [w.lower, w.lower, w.lower],
    );
    const wallets = await stack.db.query('SELECT address FROM wallets WHERE omni_account = $1', [a.omni_account]);
    assert.equal(wallets.rowCount, 1, 'one main wallet however the address was written');
    await expectRefused('/v1/session/wallet_login', await statelessBody(w, t - 3, brokenChecksum(w.address)), 400, 'bad_request', /checksum/);
  });

  void test('a signature by another key is refused', async () => {
    const w = newWallet();
    const other = newWallet();
    const t = nowSeconds();
    const signature = await other.sign(buildStatelessWalletMessage(w.lower, t));
    await expectRefused('/v1/session/wallet_login', { address: w.address, signature, timestamp: t }, 401, 'unauthorized');
  });

  void test('64-byte, 66-byte and non-hex signatures are refused', async () => {
    const w = newWallet();
    const good = await statelessBody(w);
    await expectRefused('/v1/session/wallet_login', { ...good, signature: good.signature.slice(0, 130) }, 400, 'bad_request', /65 bytes/);
    await expectRefused('/v1/session/wallet_login', { ...good, signature: `${good.signature}00` }, 400, 'bad_request', /65 bytes/);
    await expectRefused('/v1/session/wallet_login', { ...good, signature: `${good.signature.slice(0, 130)}zz` }, 400, 'bad_request', /hex/);
    await expectRefused('/v1/session/wallet_login', { ...good, signature: good.signature.slice(2) }, 400, 'bad_request', /hex/);
    await expectRefused('/v1/session/wallet_login', { ...good, signature: `${good.signature.slice(0, 130)}1d` }, 400, 'bad_request', /v must be/);
  });

  void test('v as 0/1 and as 27/28 is the same signature: accepted once, whichever form comes first', async () => {
    const w = newWallet();
    const body = await statelessBody(w);
    const zeroOne = withRecoveryBitV(body.signature);
    assert.notEqual(zeroOne, body.signature);
    const session = await login({ ...body, signature: zeroOne });
    assert.equal(session.identity.value, w.lower);
    await expectRefused('/v1/session/wallet_login', body, 409, 'conflict', /already been used/);
  });

  void test('high-s (malleated) signatures are refused, so the twin of a used signature cannot log in again', async () => {
    const w = newWallet();
    const body = await statelessBody(w);
    const twin = withHighS(body.signature);
    await expectRefused('/v1/session/wallet_login', { ...body, signature: twin }, 400, 'bad_request', /high s/);
    await login(body);
    await expectRefused('/v1/session/wallet_login', { ...body, signature: twin }, 400, 'bad_request', /high s/);
  });

  void test('timestamps 46 minutes old and 46 minutes ahead are refused; 44 minutes old is accepted', async () => {
    const w = newWallet();
    await expectRefused('/v1/session/wallet_login', await statelessBody(w, nowSeconds() - 46 * 60), 410, 'expired', /old/);
    await expectRefused('/v1/session/wallet_login', await statelessBody(w, nowSeconds() + 46 * 60), 401, 'unauthorized', /ahead/);
    await expectRefused('/v1/session/wallet_login', await statelessBody(w, Date.now()), 401, 'unauthorized', /unix seconds/);
    await login(await statelessBody(w, nowSeconds() - 44 * 60));
  });

  void test('the same signature twice is accepted once', async () => {
    const w = newWallet();
    const body = await statelessBody(w);
    await login(body);
    await expectRefused('/v1/session/wallet_login', body, 409, 'conflict', /already been used/);
  });

  void test('16 concurrent copies of one signature, 8 rounds: each round exactly one 200 and 15 409, the rows of one login (issue 8 item 5)', async () => {
    for (let round = 0; round < 8; round++) {
      const w = newWallet();
      const body = await statelessBody(w);
      const before = await rowCounts(stack.db);
      const results = await Promise.all(Array.from({ length: 16 }, () => stack.request('POST', '/v1/session/wallet_login', { body })));
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(statuses, [200, ...Array<number>(15).fill(409)], `round ${round}: ${results.map((r) => r.text).join('\n')}`);
      for (const r of results.filter((x) => x.status === 409)) assert.equal((r.body as { error: string }).error, 'conflict');
      const winner = results.find((r) => r.status === 200)?.body as Session;
      const after = await rowCounts(stack.db);
      assert.deepEqual(
        after,
        {
          users: before.users + 1,
          wallets: before.wallets + 1,
          sessions: before.sessions + 1,
          used_signatures: before.used_signatures + 2,
          audit_log: before.audit_log + 1,
        },
        `round ${round}`,
      );
      // The one session written is the one the winner received.
      const jti = decodeJwt(winner.token).jti;
      assert.equal(
        (await stack.db.query('SELECT 1 FROM sessions WHERE jti = $1', [jti])).rowCount,
        1,
        `round ${round}: the winner's session is the row written`,
      );
      const me = await stack.request('GET', '/v1/session/me', { token: winner.token });
      assert.equal(me.status, 200, me.text);
    }
    assert.equal((await verifyAuditChain(stack.db)).ok, true);
  });

  void test('the zero address is refused', async () => {
    const w = newWallet();
    const t = nowSeconds();
    const signature = await w.sign(buildStatelessWalletMessage('0x0000000000000000000000000000000000000000', t));
    await expectRefused(
      '/v1/session/wallet_login',
      { address: '0x0000000000000000000000000000000000000000', signature, timestamp: t },
      400,
      'bad_request',
      /zero address/,
    );
  });

  void test('a message signed with CRLF line endings is refused', async () => {
    const w = newWallet();
    const t = nowSeconds();
    const signature = await w.sign(buildStatelessWalletMessage(w.lower, t).replace(/\n/g, '\r\n'));
    await expectRefused('/v1/session/wallet_login', { address: w.address, signature, timestamp: t }, 401, 'unauthorized');
  });

  void test('bodies over 4 KB are refused', async () => {
    const w = newWallet();
    const body = { ...(await statelessBody(w)), padding: 'x'.repeat(4096) };
    await expectRefused('/v1/session/wallet_login', body, 413, 'payload_too_large');
    await expectRefused('/v1/session/wallet_challenge', { address: w.address, format: 'siwe', padding: 'x'.repeat(4096) }, 413, 'payload_too_large');
  });

  void test('mixed or incomplete forms are refused', async () => {
    const w = newWallet();
    const body = await statelessBody(w);
    await expectRefused('/v1/session/wallet_login', { address: body.address, signature: body.signature }, 400, 'bad_request', /either/);
    await expectRefused('/v1/session/wallet_login', { ...body, request_id: '0'.repeat(32) }, 400, 'bad_request', /not both/);
    await expectRefused('/v1/session/wallet_login', { ...body, timestamp: -5 }, 400, 'bad_request');
  });
});

void describe('wallet login, EIP-191 challenge', () => {
  void test('challenge, sign, log in; the challenge is single use and nonces differ', async () => {
    const w = newWallet();
    const c = await challenge(w, 'eip191');
    assert.match(c.request_id, /^[0-9a-f]{32}$/);
    const lines = c.message.split('\n');
    assert.deepEqual(lines.slice(0, 3), [
      'Hi! Welcome to AgentKeys.',
      'Sign this message to prove you own this wallet. It sends no transaction and costs no gas.',
      `Address: ${w.lower}`,
    ]);
    assert.match(lines[3] ?? '', /^Nonce: [A-Za-z0-9]{8,}$/);
    const ts = /^Timestamp is (\d+)\.$/.exec(lines[4] ?? '');
    assert.ok(ts?.[1], c.message);
    assert.equal(lines.length, 5);
    assert.ok(Math.abs(Number(ts[1]) - nowSeconds()) < 30);
    assert.equal(c.expires_at, Number(ts[1]) + stack.config.BROKER_WALLET_WINDOW_SECONDS);

    const other = await challenge(w, 'eip191');
    assert.notEqual(other.message.split('\n')[3], lines[3], 'every challenge has its own nonce');
    // a signature over challenge A does not open challenge B
    const signature = await w.sign(c.message);
    await expectRefused('/v1/session/wallet_login', { request_id: other.request_id, signature }, 401, 'unauthorized');

    const session = await login({ request_id: c.request_id, signature });
    assert.deepEqual(session.identity, { type: 'evm', value: w.lower });
    assert.equal(decodeJwt(session.token).amr, 'wallet');
    // nonce reuse: the same request_id again, with the same or a fresh signature
    await expectRefused('/v1/session/wallet_login', { request_id: c.request_id, signature }, 410, 'expired', /already used|expired/);
    const handle = stack.temporal.workflow.getHandle(walletWorkflowIdOf(stack, c.request_id));
    assert.equal(await handle.result(), 'succeeded');
  });

  void test('a wrong signature leaves the challenge open for the right one', async () => {
    const w = newWallet();
    const c = await challenge(w, 'eip191');
    await expectRefused('/v1/session/wallet_login', { request_id: c.request_id, signature: await newWallet().sign(c.message) }, 401, 'unauthorized');
    await expectRefused(
      '/v1/session/wallet_login',
      { request_id: c.request_id, signature: await w.sign(c.message.replace(/\n/g, '\r\n')) },
      401,
      'unauthorized',
    );
    await login({ request_id: c.request_id, signature: await w.sign(c.message) });
  });

  void test('unknown and malformed request_id', async () => {
    const w = newWallet();
    const signature = await w.sign('anything');
    await expectRefused('/v1/session/wallet_login', { request_id: 'ab'.repeat(16), signature }, 410, 'expired', /unknown/);
    await expectRefused('/v1/session/wallet_login', { request_id: 'not-a-request', signature }, 400, 'bad_request', /request_id/);
  });

  void test('challenge input is validated', async () => {
    await expectRefused('/v1/session/wallet_challenge', { address: '0x1234', format: 'eip191' }, 400, 'bad_request', /address/);
    await expectRefused('/v1/session/wallet_challenge', { address: newWallet().address, format: 'eip712' }, 400, 'bad_request', /format/);
    await expectRefused('/v1/session/wallet_challenge', { address: newWallet().address, format: 'siwe', chain_id: 0 }, 400, 'bad_request', /chain_id/);
    await expectRefused('/v1/session/wallet_challenge', { address: '0x0000000000000000000000000000000000000000', format: 'siwe' }, 400, 'bad_request', /zero/);
  });
});

void describe('wallet login, Sign-In with Ethereum (EIP-4361)', () => {
  void test('the issued message carries every field the broker checks', async () => {
    const w = newWallet();
    const c = await challenge(w, 'siwe');
    const m = parseSiweMessage(c.message);
    const publicUrl = new URL(stack.config.publicUrl);
    assert.equal(m.domain, publicUrl.host);
    assert.equal(m.address, w.address);
    assert.equal(m.uri, stack.config.publicUrl);
    assert.equal(m.version, '1');
    assert.equal(m.chainId, 1);
    assert.match(m.nonce, /^[A-Za-z0-9]{8,}$/);
    assert.equal(m.statement, 'Sign in to AgentKeys.');
    const issued = Date.parse(m.issuedAt);
    assert.ok(Math.abs(issued - Date.now()) < 30_000);
    assert.equal(Date.parse(m.expirationTime ?? ''), issued + stack.config.BROKER_WALLET_WINDOW_SECONDS * 1000);
    assert.equal(c.expires_at * 1000, Date.parse(m.expirationTime ?? ''));
    const c137 = await challenge(w, 'siwe', 137);
    assert.equal(parseSiweMessage(c137.message).chainId, 137);
  });

  void test('tampered messages are refused field by field; the issued one then logs in (method siwe)', async () => {
    const w = newWallet();
    const c = await challenge(w, 'siwe', 10);
    const issued = parseSiweMessage(c.message);
    const minutes = (n: number) => new Date(Date.now() + n * 60_000).toISOString();
    const tampered: [string, Partial<SiweFields>][] = [
      ['wrong domain', { domain: 'evil.example.com' }],
      ['wrong URI', { uri: 'https://evil.example.com' }],
      ['wrong chain id', { chainId: 1 }],
      ['wrong version', { version: '2' }],
      ['expired', { issuedAt: minutes(-50), expirationTime: minutes(-5) }],
      ['not yet valid', { notBefore: minutes(10) }],
      ['issued too long ago', { issuedAt: minutes(-46) }],
      ['no expiration', { expirationTime: undefined }],
      ['another nonce', { nonce: 'abcdefgh1234' }],
    ];
    for (const [what, change] of tampered) {
      const text = buildSiweMessage({ ...issued, ...change });
      assert.notEqual(text, c.message, what);
      await expectRefused('/v1/session/wallet_login', { request_id: c.request_id, signature: await w.sign(text) }, 401, 'unauthorized');
    }
    await expectRefused(
      '/v1/session/wallet_login',
      { request_id: c.request_id, signature: await w.sign(c.message.replace(/\n/g, '\r\n')) },
      401,
      'unauthorized',
    );
    const session = await login({ request_id: c.request_id, signature: await w.sign(c.message) });
    assert.equal(decodeJwt(session.token).amr, 'siwe');
    assert.equal(decodeJwt(session.token).wallet, w.lower);
    const audit = await stack.db.query<{ event: string }>('SELECT event FROM audit_log ORDER BY seq DESC LIMIT 1');
    assert.equal(audit.rows[0]?.event, 'login.siwe');
    await expectRefused('/v1/session/wallet_login', { request_id: c.request_id, signature: await w.sign(c.message) }, 410, 'expired');
  });

  void test('/readyz says the broker verifies EOA signatures only when no RPC is configured', async () => {
    const r = await stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
    const part = (r.body as { parts: Record<string, { ok: boolean; detail?: string }> }).parts.evm_signatures;
    assert.equal(part?.ok, true);
    assert.match(part?.detail ?? '', /EOA signatures only/);
    assert.match(part?.detail ?? '', /native libsecp256k1/);
  });
});
