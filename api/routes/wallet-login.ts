import { randomBytes } from 'node:crypto';
import { WithStartWorkflowOperation } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { getAddress } from 'viem';
import { z } from 'zod';
import { isProofUsed } from '../../db/used-signatures';
import { requestIdDigest, sha256Hex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import { contractReplayKey, createEvmSignatureVerifier, type WalletSignatureCheck } from '../../adapters/evm-signature';
import { LoginProofReplayedError, recordLogin } from '../../services/logins';
import { AkFlow, AkStage } from '../../lib/search-attributes';
import { LOGIN_METHODS } from '../../lib/login-methods';
import {
  buildStatelessWalletMessage,
  MAX_CONTRACT_SIGNATURE_BYTES,
  MAX_WALLET_MESSAGE_BYTES,
  normalizeWalletSignature,
  SignatureFormatError,
  ZERO_ADDRESS,
} from '../../lib/wallet-message';
import type { LoginOutcome } from '../../workflows/definitions';
import type { walletLoginWorkflow } from '../../workflows/wallet-login';
import {
  issueWalletChallengeUpdate,
  submitWalletSignatureUpdate,
  WALLET_LOGIN_ID_PREFIX,
  WALLET_PROOF_PURPOSE,
  type WalletLoginInput,
  type WalletLoginSettings,
} from '../../workflows/wallet-login.definitions';
import { driveRequestFlow } from '../request-flows';
import { issueSession } from '../session-issue';
import { commonErrors, errorBody, evmAddressSchema, loginSessionSchema } from '../schemas';

const addressSchema = evmAddressSchema('address').refine((a) => a !== ZERO_ADDRESS, 'the zero address cannot sign');

const signatureSchema = z.string().max(2 + 2 * MAX_CONTRACT_SIGNATURE_BYTES, 'signature is too long');

const timestampSchema = z
  .union([
    z.number().int().min(0).max(1e15),
    z
      .string()
      .regex(/^(0|[1-9]\d{0,14})$/)
      .transform(Number),
  ])
  .describe('unix seconds');

const requestIdSchema = z.string().regex(/^[0-9a-f]{32}$/, 'request_id is malformed');

const challengeSchema = z.object({ request_id: z.string(), message: z.string(), expires_at: z.number().int() });

function normalizeSignature(signature: string, contractWallets: boolean): string {
  try {
    return normalizeWalletSignature(signature, contractWallets);
  } catch (e) {
    if (e instanceof SignatureFormatError) throw new BrokerError('bad_request', `body.signature: ${e.message}`);
    throw e;
  }
}

/**
 * Wallet login (docs/contracts.md §5). The stateless EIP-191 form `{address, signature, timestamp}`
 * waits for nothing and calls nothing with effects, so it runs here, without a workflow: verify,
 * then one transaction (replay guard, user, main wallet, session, chained audit row; recordLogin,
 * shared with the completeLogin activity). The challenge forms (EIP-191 with a nonce, SIWE) wait
 * for a signature within a window and stay walletLoginWorkflow runs; the API rejects what it can
 * for free before touching Temporal, and the workflow verifies and consumes.
 *
 * The stateless form's replay guard is decided here (which keys its proof has; recordLogin's
 * transaction consumes them, db/used-signatures.ts stores them): one signed message is one login,
 * whatever the encoding of its signature. The proof is consumed under the signature's key
 * (`replayKey`: its normalised bytes for an EOA) and under the (address, message) key
 * (contractReplayKey), together: with contract wallets on, the owner's own ECDSA signature can
 * also reach the chain check re-encoded (an ERC-6492 envelope, a 64-byte compact form) and pass
 * there for an EOA delegated under EIP-7702, so a bytes key alone let one observed signature log
 * in twice. The bytes key stays so rows written by earlier releases, and instances of the release
 * before during a rolling deploy, still refuse the raw signature.
 */
export default async function sessionWalletRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, db, secrets, temporal } = app.deps;
  const verifier = createEvmSignatureVerifier(config.BROKER_EVM_RPC_URL);
  // Said in /readyz: EOA only, or contract wallets through which chain.
  app.addReadinessCheck('evm_signatures', () => verifier.readiness());
  const settings: WalletLoginSettings = { windowSeconds: config.BROKER_WALLET_WINDOW_SECONDS, contractWallets: verifier.contractWallets };
  const windowMs = settings.windowSeconds * 1000;
  const domain = new URL(config.publicUrl).host;
  /** A challenge's workflow id: wallet-login/<keyed digest of its request id>. */
  const workflowIdOf = (requestId: string): string => WALLET_LOGIN_ID_PREFIX + requestIdDigest(secrets.hmacSecret, 'wallet-login', requestId);
  const now = () => app.deps.now?.() ?? Date.now();
  // Wallet requests are small; contract-wallet (ERC-6492) signatures need the general limit.
  // Challenges are tighter than logins: each one is a workflow that lives the whole wallet window.
  const challengePerIp = app.requestLimit({ name: 'wallet_challenge:ip', max: config.BROKER_RATE_LIMIT_WALLET_CHALLENGE_PER_MINUTE, windowMs: 60_000 });
  const loginPerIp = app.requestLimit({ name: 'wallet_login:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const bodyLimit = verifier.contractWallets ? config.BROKER_BODY_LIMIT_BYTES : MAX_WALLET_MESSAGE_BYTES;
  const searchAttributes = [
    { key: AkFlow, value: LOGIN_METHODS.wallet.flow },
    { key: AkStage, value: 'started' },
  ];

  app.post(
    '/v1/session/wallet_challenge',
    {
      config: { loginStep: 'challenge' },
      bodyLimit,
      schema: {
        tags: ['session'],
        summary: 'Issue a message for a wallet to sign (EIP-191 with a nonce, or SIWE)',
        description: `The challenge is valid for ${settings.windowSeconds} s and can be used once, with POST /v1/session/wallet_login {request_id, signature}.`,
        body: z.object({
          address: addressSchema,
          format: z.enum(['eip191', 'siwe']),
          chain_id: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional().describe('SIWE only; default 1'),
        }),
        response: { 200: challengeSchema, 413: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await challengePerIp(request);
      const { address, format, chain_id } = request.body;
      const requestId = randomBytes(16).toString('hex');
      const input: WalletLoginInput = {
        kind: 'challenge',
        requestId,
        format,
        address,
        checksumAddress: getAddress(address),
        chainId: chain_id ?? 1,
        domain,
        uri: config.publicUrl,
        settings,
      };
      const startWorkflowOperation = new WithStartWorkflowOperation<typeof walletLoginWorkflow>('walletLoginWorkflow', {
        workflowId: workflowIdOf(requestId),
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
        ...LOGIN_METHODS.wallet.metadata,
        typedSearchAttributes: searchAttributes,
      });
      return app.driveFlow(() => temporal.workflow.executeUpdateWithStart(issueWalletChallengeUpdate, { startWorkflowOperation }));
    },
  );

  app.post(
    '/v1/session/wallet_login',
    {
      config: { loginStep: 'login' },
      bodyLimit,
      schema: {
        tags: ['session'],
        summary: 'Log in with a wallet signature',
        description:
          'Either the stateless form {address, signature, timestamp} (the docs/contracts.md §5 message, timestamp within the window of the broker clock) ' +
          'or {request_id, signature} for a challenge. Each signature is accepted once (409 afterwards).',
        body: z.object({
          request_id: requestIdSchema.optional(),
          address: addressSchema.optional(),
          signature: signatureSchema,
          timestamp: timestampSchema.optional(),
        }),
        response: { 200: loginSessionSchema, 409: errorBody, 410: errorBody, 413: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await loginPerIp(request);
      const body = request.body;
      const signature = normalizeSignature(body.signature, settings.contractWallets);

      if (body.request_id !== undefined) {
        if (body.address !== undefined || body.timestamp !== undefined) {
          throw new BrokerError('bad_request', 'send either {request_id, signature} or {address, signature, timestamp}, not both');
        }
        const requestId = body.request_id;
        const session = await driveRequestFlow(
          app.driveFlow,
          // A challenge 1.1.0 issued is at its request id itself (32 hex, never a digest's 64) while it can be open.
          [workflowIdOf(requestId), WALLET_LOGIN_ID_PREFIX + requestId],
          (id) => temporal.workflow.getHandle(id).executeUpdate(submitWalletSignatureUpdate, { args: [{ request_id: requestId, signature }] }),
          new BrokerError('expired', 'this challenge is unknown, has expired or was already used; ask for a new one'),
        );
        request.log.info({ flow: 'wallet_login', omni_account: session.omni_account }, 'wallet login succeeded');
        return issueSession(app.deps, session);
      }

      const { address, timestamp } = body;
      if (address === undefined || timestamp === undefined)
        throw new BrokerError('bad_request', 'send either {address, signature, timestamp} or {request_id, signature}');
      const signedMs = timestamp * 1000;
      const nowMs = now();
      if (nowMs - signedMs > windowMs)
        throw new BrokerError('expired', `timestamp is more than ${settings.windowSeconds} s old (unix seconds expected); sign a new message`);
      if (signedMs - nowMs > windowMs)
        throw new BrokerError('unauthorized', `timestamp is more than ${settings.windowSeconds} s ahead of the broker's clock (unix seconds expected)`);
      // ~0.1 ms for an EOA with the native binding; a contract wallet costs a read-only chain call.
      const message = buildStatelessWalletMessage(address, timestamp);
      let check: WalletSignatureCheck;
      try {
        check = await verifier.verify({ address, message, signature });
      } catch {
        throw new BrokerError('unavailable', 'the chain needed to check a contract-wallet signature did not answer; try again');
      }
      if (!check.valid) {
        if (check.malformed) throw new BrokerError('bad_request', `body.signature: ${check.reason}`);
        throw new BrokerError('unauthorized', settings.contractWallets ? check.reason : 'the signature was not made by this address over the login message');
      }
      // One message, one login, whatever the signature's encoding (see the comment at the top): the
      // (address, message) key beside the signature's (the same key for a contract-wallet signature).
      const messageKey = contractReplayKey(address, message);
      // A replay costs one read; the transaction below is still what decides between racing copies.
      if (await isProofUsed(db, [check.replayKey, messageKey])) throw new BrokerError('conflict', 'this signature has already been used; sign a new message');
      const jti = randomBytes(16).toString('hex');
      let session: LoginOutcome;
      try {
        session = await recordLogin(
          { config, secrets, db, now },
          {
            method: 'wallet',
            identity: { type: 'evm', value: address },
            // What the audit row has always carried for this form: sha256 of the normalised signature.
            requestId: sha256Hex(signature),
            wallet: address,
            consumeProof: {
              hash: check.replayKey,
              aliases: [messageKey],
              purpose: WALLET_PROOF_PURPOSE.stateless,
              expiresAt: Math.floor((Math.max(nowMs, signedMs) + windowMs) / 1000),
            },
          },
          { jti, idemKey: `login:stateless:${jti}` },
        );
      } catch (e) {
        if (e instanceof LoginProofReplayedError) throw new BrokerError('conflict', e.message);
        request.log.error({ err: e, flow: 'wallet_login' }, 'could not record a stateless wallet login');
        throw new BrokerError('audit_error', 'the login could not be recorded; try again');
      }
      request.log.info({ flow: 'wallet_login', omni_account: session.omni_account }, 'wallet login succeeded');
      return issueSession(app.deps, session);
    },
  );
}
