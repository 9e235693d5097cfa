import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createEvmSignatureVerifier, EvmRpcUnavailableError } from '../adapters/evm-signature';
import { newWallet } from './wallet-client';

/**
 * An RPC URL often carries its API key in the path (Alchemy, Infura), and viem's errors quote the
 * URL: when the chain does not answer, nothing of that text may reach a client's 503, a log line,
 * /readyz or a workflow's failure. The adapter says only the kind of failure and the HTTP status.
 */
const SECRET = 'SUPERSECRETAPIKEY123';
let server: Server;
let rpcUrl: string;
let status = 429;

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'quota' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  rpcUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/${SECRET}`;
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
});

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => assert.fail('the call succeeded against a chain that does not answer'),
    (e: unknown) => e as Error,
  );
}

void describe('the EVM RPC adapter when the chain does not answer', () => {
  void test('a contract-wallet check and the readiness probe fail naming the status, never the URL', async () => {
    const verifier = createEvmSignatureVerifier(rpcUrl, { timeoutMs: 2000 });
    const w = newWallet();
    const message = 'hello';
    // Not 65 bytes: taken as a contract-wallet signature, so the chain is asked.
    const signature = `0x00${(await w.sign(message)).slice(2)}`;
    for (const s of [429, 502]) {
      status = s;
      for (const [what, e] of [
        ['verify', await failure(verifier.verify({ address: w.lower, message, signature }))],
        ['readiness', await failure(verifier.readiness())],
      ] as const) {
        assert.ok(e instanceof EvmRpcUnavailableError, `${what}: ${String(e)}`);
        assert.ok(!e.message.includes(SECRET) && !e.message.includes('/v2/'), `${what} quotes the URL: ${e.message}`);
        assert.ok(!String(e.stack).includes(SECRET), `${what}: the stack quotes the URL`);
        assert.match(e.message, /^the EVM RPC did not answer \(\w+(, HTTP \d{3})?\)$/, what);
      }
    }
  });
});
