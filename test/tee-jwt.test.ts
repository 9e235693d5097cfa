import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import { generateTeeKeyPair, signTeeJwt, TEE_JWT_HEADER, type TeeKeyPair } from '../fixtures/tee/jwt';
import { parseSourceAllowList } from '../lib/cidr-allow';
import { deriveOmniAccount } from '../lib/omni';
import {
  createJwksTeeVerifier,
  createStaticTeeVerifier,
  createTeeVerifierFromConfig,
  parseTeePublicKey,
  parseTeePublicKeyWithForm,
  TeeKeyError,
  teeKeyReadiness,
} from '../adapters/tee-jwt';

/** TEE JWT verification (docs/contracts.md §2) and the callback source allow-list, without a stack. */

let key: TeeKeyPair;
let dir: string;
const omni = deriveOmniAccount('agentkeys', { type: 'email', value: 'jwt@example.com' });
const nowS = () => Math.floor(Date.now() / 1000);
const claims = (over: Record<string, unknown> = {}) => ({ sub: omni, typ: 'access', exp: nowS() + 3600, aud: 'agentkeys', ...over });

before(async () => {
  key = await generateTeeKeyPair();
  dir = await mkdtemp(join(tmpdir(), 'akb-tee-jwt-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('BROKER_TEE_JWT_PUBLIC_KEY forms', () => {
  void test('PEM SPKI, PEM PKCS#1, one-line \\n PEM, hex of the PKCS#1 DER, and files holding them: all the same key', async () => {
    const pkcs1Pem = key.publicKey.export({ format: 'pem', type: 'pkcs1' }).toString();
    assert.match(pkcs1Pem, /BEGIN RSA PUBLIC KEY/);
    const pemFile = join(dir, 'tee.pem');
    const hexFile = join(dir, 'tee.hex');
    await writeFile(pemFile, pkcs1Pem);
    await writeFile(hexFile, `${key.publicKeyPkcs1DerHex}\n`);
    const forms = [
      key.publicKeyPem,
      pkcs1Pem,
      key.publicKeyPem.replace(/\n/g, '\\n'),
      key.publicKeyPkcs1DerHex,
      `0x${key.publicKeyPkcs1DerHex}`,
      pemFile,
      hexFile,
    ];
    for (const form of forms) {
      const parsed = parseTeePublicKey(form);
      assert.ok(parsed.equals(key.publicKey), form.slice(0, 40));
    }
  });

  void test('the Rust Debug byte list the TEE logs (auth_token_key_store.rs), in every pasted shape', async () => {
    const der = [...key.publicKey.export({ format: 'der', type: 'pkcs1' })];
    assert.deepEqual(der.slice(0, 4), [48, 130, 1, 10]);
    const debug = `[${der.join(', ')}]`;
    const logLine = `2025-06-01T10:00:00.123Z  INFO rpc_server::auth_token_key_store: Auth token (JWT) RSA public_key: ${debug}`;
    const file = join(dir, 'tee-key.log');
    await writeFile(file, `${logLine}\n`);
    const forms: [string, string][] = [
      [debug, 'debug-byte-list'],
      [der.join(', '), 'debug-byte-list'],
      [der.join(','), 'debug-byte-list'],
      [`[\n  ${der.join(',\n  ')},\n]`, 'debug-byte-list'],
      [`  ${debug.replace(/, /g, ',\r\n\t')}  `, 'debug-byte-list'],
      [logLine, 'debug-byte-list'],
      [file, 'file-debug-byte-list'],
      [key.publicKeyPem, 'pem'],
      [key.publicKeyPkcs1DerHex, 'der-hex'],
    ];
    for (const [value, form] of forms) {
      const parsed = parseTeePublicKeyWithForm(value);
      assert.equal(parsed.form, form, value.slice(0, 40));
      assert.ok(parsed.key.equals(key.publicKey), value.slice(0, 40));
    }
    assert.throws(() => parseTeePublicKey(`[${[...der.slice(0, -1), 256].join(', ')}]`), /outside 0-255/);
    assert.throws(() => parseTeePublicKey(`[${der.slice(0, 100).join(', ')}]`), /byte list but neither a PKCS#1 nor an SPKI DER/);
  });

  void test('npm run keygen -- tee-thumbprint prints the form and the thumbprint /readyz reports', async () => {
    const der = [...key.publicKey.export({ format: 'der', type: 'pkcs1' })];
    const logLine = `INFO Auth token (JWT) RSA public_key: [${der.join(', ')}]`;
    const expected = await calculateJwkThumbprint(await exportJWK(key.publicKey));
    const verifier = await createTeeVerifierFromConfig({ BROKER_CLIENT_ID: 'agentkeys', BROKER_TEE_JWT_PUBLIC_KEY: logLine, BROKER_TEE_JWKS_URL: undefined });
    assert.match((await teeKeyReadiness(verifier)()).detail ?? '', new RegExp(`thumbprint ${expected}$`));
    const run = (args: string[], input?: string) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
        const env = { ...process.env };
        delete env.BROKER_TEE_JWT_PUBLIC_KEY;
        const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/keygen.ts', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, out, err }));
        child.stdin.end(input ?? '');
      });
    const fromArg = await run(['tee-thumbprint', logLine]);
    assert.equal(fromArg.code, 0, fromArg.err);
    assert.match(fromArg.out, /form\s+debug-byte-list/);
    assert.match(fromArg.out, /key\s+RSA-2048/);
    assert.match(fromArg.out, new RegExp(`thumbprint\\s+${expected}`));
    const fromStdin = await run(['tee-thumbprint'], `${logLine}\n`);
    assert.equal(fromStdin.code, 0, fromStdin.err);
    assert.match(fromStdin.out, new RegExp(`thumbprint\\s+${expected}`));
    const bad = await run(['tee-thumbprint', '[1, 2, 3]']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /neither a PKCS#1 nor an SPKI DER/);
  });

  void test('unusable values are refused at boot with a clear message', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const cases: [string, RegExp][] = [
      [ec, /ec key; the TEE signs with RSA/],
      [small, /RSA-1024; at least RSA-2048/],
      ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', /not a readable PEM/],
      ['ab'.repeat(100), /neither a PKCS#1 nor an SPKI DER/],
      [join(dir, 'missing.pem'), /ENOENT/],
      [key.privateKeyPem, /is a private key/],
    ];
    for (const [value, message] of cases)
      assert.throws(
        () => parseTeePublicKey(value),
        (e: Error) => e instanceof TeeKeyError && message.test(e.message),
        value.slice(0, 30),
      );
  });

  void test('createTeeVerifierFromConfig: none configured → undefined (readiness says so); both → refused', async () => {
    const none = await createTeeVerifierFromConfig({ BROKER_CLIENT_ID: 'agentkeys', BROKER_TEE_JWT_PUBLIC_KEY: undefined, BROKER_TEE_JWKS_URL: undefined });
    assert.equal(none, undefined);
    const ready = await teeKeyReadiness(none)();
    assert.equal(ready.ok, true);
    assert.match(ready.detail ?? '', /not configured/);
    await assert.rejects(
      createTeeVerifierFromConfig({
        BROKER_CLIENT_ID: 'agentkeys',
        BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyPem,
        BROKER_TEE_JWKS_URL: 'http://127.0.0.1:1/jwks',
      }),
      /not both/,
    );
  });
});

void describe('static key verification', () => {
  void test('the TEE token verifies; claims come back exactly', async () => {
    const v = await createStaticTeeVerifier(key.publicKey, { audience: 'agentkeys' });
    const c = claims();
    assert.deepEqual(await v.verify(signTeeJwt(key.privateKey, c)), c);
    assert.deepEqual(await v.verify(signTeeJwt(key.privateKey, claims({ typ: 'id' }))), { ...c, typ: 'id' });
  });

  void test('kid policy: no kid or the key’s own thumbprint is accepted; any other kid is refused', async () => {
    const v = await createStaticTeeVerifier(key.publicKey, { audience: 'agentkeys' });
    const thumbprint = await calculateJwkThumbprint(await exportJWK(key.publicKey));
    assert.equal((await v.verify(signTeeJwt(key.privateKey, claims(), { ...TEE_JWT_HEADER, kid: thumbprint }))).sub, omni);
    await assert.rejects(v.verify(signTeeJwt(key.privateKey, claims(), { ...TEE_JWT_HEADER, kid: 'nowhere' })), /unknown kid/);
  });

  void test('refusals: alg none, HS256 with the public key, expired, no exp, wrong aud, odd typ, sub not an OmniAccount, another key', async () => {
    let t = Date.now();
    const v = await createStaticTeeVerifier(key.publicKey, { audience: 'agentkeys', now: () => t });
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const other = await generateTeeKeyPair();
    const cases: [string, string, RegExp][] = [
      ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`, /algorithm none/],
      ['HS256 with the public key', await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(key.publicKeyPem)), /algorithm HS256/],
      ['RS512', signTeeJwt(key.privateKey, claims(), { alg: 'RS512', typ: 'JWT' }), /algorithm RS512/],
      ['expired', signTeeJwt(key.privateKey, claims({ exp: Math.floor(t / 1000) - 1 })), /expired/],
      ['no exp', signTeeJwt(key.privateKey, { sub: omni, typ: 'access', aud: 'agentkeys' }), /exp/],
      ['aud wildmeta', signTeeJwt(key.privateKey, claims({ aud: 'wildmeta' })), /aud/],
      ['typ refresh', signTeeJwt(key.privateKey, claims({ typ: 'refresh' })), /typ claim/],
      ['sub not an OmniAccount', signTeeJwt(key.privateKey, claims({ sub: 'alice' })), /sub must be an OmniAccount/],
      ['another key', signTeeJwt(other.privateKey, claims()), /signature verification failed/],
      ['not a JWT', 'abc', /not a JWT/],
    ];
    for (const [name, token, message] of cases) await assert.rejects(v.verify(token), message, name);
    // exp is judged on the broker's clock.
    const live = signTeeJwt(key.privateKey, claims({ exp: Math.floor(t / 1000) + 30 }));
    assert.equal((await v.verify(live)).sub, omni);
    t += 60_000;
    await assert.rejects(v.verify(live), /expired/);
  });
});

void describe('JWKS verification', () => {
  let server: Server;
  let url: string;
  let keys: object[] = [];
  before(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  void test('one published key: a kid-less TEE token verifies; a kid naming no key is refused; readiness counts the keys', async () => {
    keys = [{ ...(await exportJWK(key.publicKey)), kid: 'tee-1', alg: 'RS256', use: 'sig' }];
    const v = createJwksTeeVerifier(url, { audience: 'agentkeys' });
    assert.deepEqual(await v.check(), { ok: true, detail: `JWKS ${url}: 1 RS256 key(s)` });
    assert.equal((await v.verify(signTeeJwt(key.privateKey, claims()))).sub, omni);
    assert.equal((await v.verify(signTeeJwt(key.privateKey, claims(), { ...TEE_JWT_HEADER, kid: 'tee-1' }))).sub, omni);
    await assert.rejects(v.verify(signTeeJwt(key.privateKey, claims(), { ...TEE_JWT_HEADER, kid: 'nowhere' })), /unknown kid/);
  });

  void test('two published keys (a rotation): a kid-less token verifies against either; a third key is refused; an unreachable JWKS is not ready', async () => {
    const second = await generateTeeKeyPair();
    keys = [
      { ...(await exportJWK(key.publicKey)), kid: 'a', alg: 'RS256' },
      { ...(await exportJWK(second.publicKey)), kid: 'b', alg: 'RS256' },
    ];
    const v = createJwksTeeVerifier(url, { audience: 'agentkeys' });
    assert.equal((await v.verify(signTeeJwt(key.privateKey, claims()))).sub, omni);
    assert.equal((await v.verify(signTeeJwt(second.privateKey, claims()))).sub, omni);
    const third = await generateTeeKeyPair();
    await assert.rejects(v.verify(signTeeJwt(third.privateKey, claims())), /signature verification failed/);
    await assert.rejects(v.verify(signTeeJwt(key.privateKey, claims({ exp: nowS() - 1 }))), /expired/);
    assert.equal((await v.verify(signTeeJwt(second.privateKey, claims(), { ...TEE_JWT_HEADER, kid: 'b' }))).sub, omni);
    const down = createJwksTeeVerifier('http://127.0.0.1:1/jwks.json', { audience: 'agentkeys' });
    assert.equal((await teeKeyReadiness(down)().catch((e: Error) => ({ ok: false, detail: e.message }))).ok, false);
  });
});

void describe('BROKER_TEE_CALLBACK_ALLOW', () => {
  void test('IPv4 and IPv6 CIDRs, bare addresses, IPv4-mapped sources; bad entries refused', () => {
    const allow = parseSourceAllowList('127.0.0.0/8, ::1/128, 10.20.0.0/16, 192.0.2.7, 2001:db8:abcd::/48');
    for (const ip of ['127.0.0.1', '127.255.0.9', '::1', '10.20.3.4', '::ffff:10.20.3.4', '192.0.2.7', '2001:db8:abcd:1::5'])
      assert.equal(allow.allows(ip), true, ip);
    for (const ip of ['10.21.0.1', '192.0.2.8', '::2', '2001:db8:abce::1', '::ffff:8.8.8.8', '', 'localhost', undefined])
      assert.equal(allow.allows(ip), false, String(ip));
    assert.equal(parseSourceAllowList('').allows('127.0.0.1'), false);
    for (const bad of ['10.0.0.0/33', 'fe80::/129', 'example.com', '10.0.0.0/8/1', '1.2.3']) assert.throws(() => parseSourceAllowList(bad), /not|prefix/, bad);
  });
});
