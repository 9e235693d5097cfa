/**
 * Grants (docs/contracts.md §6, docs/mint.md): each change of a grant — offer, accept, decline,
 * leave, revoke — is one function here, one transaction holding the row and its audit row. A
 * single-statement change with no outside I/O but a signature check, so it runs in the API rather
 * than as a workflow.
 *
 * Checks here: who may change which grant (owner or named agent), the state machine (only a
 * pending grant is accepted or declined), the live-grant cap, Idempotency-Key reuse, the agent's
 * signature over the acceptance text and its one use (db/used-signatures.ts), that an approval
 * policy's notify_email is an address the holder proved it controls. The routes check
 * only the request's form (zod) and that a bearer is present.
 */
import { randomUUID } from 'node:crypto';
import { contractReplayKey, type EvmSignatureVerifier } from '../adapters/evm-signature';
import type { BrokerSecrets } from '../adapters/secrets';
import { appendAudit } from '../db/audit';
import {
  endGrantByAgent,
  findGrant,
  grantStatus,
  insertGrant,
  listGrants,
  markGrantAccepted,
  revokeGrant,
  type GrantListing,
  type GrantRow,
  type GrantScope,
  type GrantStatus,
} from '../db/grants';
import { withTransaction, type Db } from '../db/pool';
import { consumeProof } from '../db/used-signatures';
import { findMainAddress, findUserByOmni } from '../db/users';
import { canonicalJson } from '../lib/audit-chain';
import { verifiedEmailOf, type ApprovalPolicy, type ApprovalPolicyRequest } from '../lib/approvals';
import type { Config } from '../lib/config';
import { hmacHex } from '../lib/digest';
import { normalizeEmail } from '../lib/email-login-code';
import { BrokerError } from '../lib/errors';
import { buildGrantAcceptanceMessage, GRANT_ACCEPT_PROOF_PURPOSE } from '../lib/grant-acceptance';
import { recordGrantKill } from './kill-switch';
import { liveSessionClaims } from './sessions';

export interface GrantServiceDeps {
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
  verifier: EvmSignatureVerifier;
  /** Milliseconds since the epoch. */
  now: () => number;
}

/** Who asks: the authenticated caller (api/dependencies.ts AuthContext has this shape). */
export interface GrantCaller {
  kind: 'session' | 'tee';
  omniAccount: string;
  /** The EVM address of a wallet-login session. */
  wallet?: string;
}

export interface GrantOffer {
  agent_address: string;
  scope: GrantScope;
  /** Seconds. */
  expires_in: number;
  /** When the grant's mints wait for the holder's decision (docs/approvals.md); its notify_email proven here. */
  approval?: ApprovalPolicyRequest;
  idempotencyKey?: string;
}

const unix = (d: Date): number => Math.floor(d.getTime() / 1000);

/** The scope as stored (rows from before the scope was checked may hold anything: kept as is, never widened). */
export function storedScope(g: GrantRow): GrantScope {
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.map(String) : undefined);
  const { services: _s, roles: _r, ...sections } = (g.scope ?? {}) as Record<string, unknown>;
  const raw = (g.scope ?? {}) as Record<string, unknown>;
  const scope: GrantScope = { ...sections };
  const services = strings(raw.services);
  const roles = strings(raw.roles);
  if (services) scope.services = services;
  if (roles) scope.roles = roles;
  return scope;
}

/** A policy as compared between a grant and its retry: when its address was proven is not part of what was asked. */
function askedPolicy(p: ApprovalPolicy | null | undefined): Omit<ApprovalPolicy, 'notify_email_proven_at'> | null {
  if (!p) return null;
  const { notify_email_proven_at: _at, ...asked } = p;
  return asked;
}

/** Whether a stored grant is the one this request asks for: a retry under an Idempotency-Key must ask for the same grant. */
function isSameGrantRequest(g: GrantRow, req: GrantOffer, approval: ApprovalPolicy | undefined): boolean {
  return (
    g.agent_address === req.agent_address &&
    canonicalJson(storedScope(g)) === canonicalJson(req.scope) &&
    g.expires_at.getTime() - g.created_at.getTime() === req.expires_in * 1000 &&
    canonicalJson(askedPolicy(g.approval)) === canonicalJson(askedPolicy(approval))
  );
}

/** What a refused notify_email is told to do instead. */
const NOTIFY_EMAIL_HOW =
  "sign in with that address (email code or Google) and pass that session's access token as approval.notify_email_proof, " +
  "or leave notify_email out to use this account's own verified address";

export function createGrantService(deps: GrantServiceDeps) {
  const { config, secrets, db, verifier, now } = deps;
  const broker = new URL(config.publicUrl).host;

  /** The exact text the agent wallet signs (personal_sign) to accept the grant. */
  const acceptanceMessage = (g: GrantRow): string =>
    buildGrantAcceptanceMessage({
      broker,
      grantId: g.grant_id,
      mainAddress: g.main_address,
      agentAddress: g.agent_address,
      scope: storedScope(g),
      expiresAt: unix(g.expires_at),
    });

  /**
   * The policy as stored: its notify_email normalised and marked proven, or a 400 that creates
   * nothing. An address is proven when it is the caller's own verified address, or when
   * notify_email_proof is a live broker session (checked as a bearer is) of an account whose
   * verified address it is. The proof itself is dropped here: never stored, logged or audited.
   */
  async function provenPolicy(caller: GrantCaller, requested: ApprovalPolicyRequest): Promise<ApprovalPolicy> {
    const { notify_email_proof: proof, ...policy } = requested;
    if (policy.notify_email === undefined) return policy;
    const address = normalizeEmail(policy.notify_email);
    const refuse = (why: string) => new BrokerError('bad_request', `${why}; ${NOTIFY_EMAIL_HOW}`);
    const own = verifiedEmailOf(await findUserByOmni(db, caller.omniAccount));
    if (own === undefined || normalizeEmail(own) !== address) {
      if (proof === undefined) throw refuse("approval.notify_email is not this account's verified address and comes without approval.notify_email_proof");
      let prover: string;
      try {
        prover = (await liveSessionClaims({ secrets, db, issuer: config.publicUrl }, proof)).sub;
      } catch (e) {
        if (e instanceof BrokerError && e.errorCode === 'unauthorized')
          throw refuse(`approval.notify_email_proof is not a live session of this broker (${e.message})`);
        throw e;
      }
      const proven = verifiedEmailOf(await findUserByOmni(db, prover));
      if (proven === undefined) throw refuse('approval.notify_email_proof is a session of an account with no verified email address (not an email identity)');
      if (normalizeEmail(proven) !== address) throw refuse('approval.notify_email_proof is a session of another address');
    }
    return { ...policy, notify_email: address, notify_email_proven_at: Math.floor(now() / 1000) };
  }

  /** The EVM wallet the caller acts with: its wallet-login wallet, else its account's main wallet. */
  const callerWallet = async (caller: GrantCaller): Promise<string | undefined> =>
    caller.wallet?.toLowerCase() ?? (await findMainAddress(db, caller.omniAccount));

  /** The agent declines a pending grant or, with `leave`, ends an accepted one too; undefined when the grant does not name the caller's wallet. */
  async function endByAgent(caller: GrantCaller, grantId: string, requestId: string, leave: boolean) {
    const wallet = await callerWallet(caller);
    if (!wallet) return undefined;
    const at = new Date(now());
    return withTransaction(db, async (tx) => {
      const r = await endGrantByAgent(tx, grantId, wallet, at, { onlyPending: !leave });
      if (r?.changed) {
        await appendAudit(tx, {
          event: `grant.${r.changed === 'declined' ? 'decline' : 'leave'}`,
          outcome: 'ok',
          omniAccount: r.grant.main_account,
          requestId,
          idemKey: `grant.${r.changed}:${grantId}`,
          details: {
            grant_id: grantId,
            main_address: r.grant.main_address,
            agent_address: r.grant.agent_address,
            agent_account: caller.omniAccount,
            via: caller.kind,
          },
        });
      }
      return r;
    });
  }

  return {
    acceptanceMessage,

    /**
     * The main account offers a grant (pending until the agent accepts). `created` is false for a
     * retry under the same Idempotency-Key, answered with the grant as it is now (never revived).
     */
    async offer(caller: GrantCaller, req: GrantOffer, requestId: string): Promise<{ grant: GrantRow; created: boolean }> {
      const mainAddress = await callerWallet(caller);
      if (!mainAddress) {
        throw new BrokerError(
          'forbidden',
          'this account has no main EVM wallet; log in with a wallet (or through the TEE with an EVM identity) to grant agents',
        );
      }
      if (req.agent_address === mainAddress) throw new BrokerError('bad_request', 'agent_address must differ from the main address');
      const approval = req.approval ? await provenPolicy(caller, req.approval) : undefined;
      const grantId =
        req.idempotencyKey !== undefined
          ? `grt_${hmacHex(secrets.hmacSecret, 'grant-id', caller.omniAccount, req.idempotencyKey).slice(0, 32)}`
          : `grt_${randomUUID().replace(/-/g, '')}`;
      const createdAt = new Date(now());
      const expiresAt = new Date(createdAt.getTime() + req.expires_in * 1000);
      const maxLive = config.BROKER_GRANTS_MAX_PER_ACCOUNT;
      const result = await withTransaction(db, async (tx) => {
        const r = await insertGrant(tx, {
          grantId,
          mainAccount: caller.omniAccount,
          mainAddress,
          agentAddress: req.agent_address,
          scope: req.scope,
          createdAt,
          expiresAt,
          maxLive,
          approval: approval ?? null,
        });
        if (r.outcome === 'created') {
          await appendAudit(tx, {
            event: 'grant.create',
            outcome: 'ok',
            omniAccount: caller.omniAccount,
            requestId,
            idemKey: `grant.create:${grantId}`,
            details: {
              grant_id: grantId,
              main_address: mainAddress,
              agent_address: req.agent_address,
              scope: req.scope,
              expires_at: unix(expiresAt),
              approval: approval ?? null,
              status: 'pending',
              via: caller.kind,
            },
          });
        }
        return r;
      });
      switch (result.outcome) {
        case 'foreign':
          throw new BrokerError('conflict', 'this Idempotency-Key was already used for another grant');
        case 'capped':
          throw new BrokerError(
            'conflict',
            `this account already holds ${result.live} live (pending or active) grants, the most allowed (BROKER_GRANTS_MAX_PER_ACCOUNT = ${maxLive}); revoke some first`,
            { body: { limit: maxLive } },
          );
        case 'existing':
          if (!isSameGrantRequest(result.grant, req, approval)) {
            throw new BrokerError(
              'conflict',
              'this Idempotency-Key was already used for a different grant request (agent_address, scope, expires_in or approval); use a new key',
            );
          }
          return { grant: result.grant, created: false };
        case 'created':
          return { grant: result.grant, created: true };
      }
    },

    /**
     * The account's grants (role main) or the grants naming the caller's wallet as agent (role
     * agent), newest first; only those in `statuses` when given, only those after the grant
     * `before` (the last of the previous page) when given — a grant of this same listing, else a
     * 400. `atMs` is the moment the states were taken at: the answer shows each grant's state then.
     */
    async list(
      caller: GrantCaller,
      role: 'main' | 'agent',
      opts: { limit: number; statuses?: readonly GrantStatus[]; before?: string },
    ): Promise<{ grants: GrantRow[]; atMs: number }> {
      let listing: GrantListing;
      if (role === 'main') listing = { mainAccount: caller.omniAccount };
      else {
        const wallet = await callerWallet(caller);
        if (!wallet) throw new BrokerError('forbidden', 'this session has no EVM wallet; log in with the agent wallet to list the grants that name it');
        listing = { agentAddress: wallet };
      }
      const atMs = now();
      const grants = await listGrants(db, listing, { ...opts, at: new Date(atMs) });
      if (!grants) {
        throw new BrokerError(
          'bad_request',
          `before names no grant of this listing (role=${role}): pass the grant_id of the last grant of the previous page of the same listing`,
        );
      }
      return { grants, atMs };
    },

    /**
     * The agent wallet accepts a pending grant with its signature over acceptanceMessage (each
     * signature once, whatever its encoding). The row lock and the pending state decide first; the
     * replay guard is the second lock, and it keys the proof the way the stateless wallet login
     * does (api/routes/wallet-login.ts): under the signature's key (`replayKey`: its normalised
     * bytes for an EOA) and under the (agent address, acceptance text) key (contractReplayKey),
     * together. With contract wallets on, the agent's own ECDSA signature re-encoded (an ERC-6492
     * envelope, a 64-byte EIP-2098 compact form) can pass the chain check for an EOA delegated under
     * EIP-7702 and get the message key, while the 65-byte form gets the bytes key: keyed on the bytes
     * alone, one signature was two proofs. The audit row keeps `replayKey` as its signature_hash.
     */
    async accept(grantId: string, signature: string, requestId: string): Promise<GrantRow> {
      const grant = await findGrant(db, grantId);
      if (!grant) throw new BrokerError('not_found', 'no such grant');
      const message = acceptanceMessage(grant);
      let check;
      try {
        check = await verifier.verify({ address: grant.agent_address, message, signature });
      } catch {
        // The adapter says only the kind of failure (an RPC URL may carry an API key); nothing of it reaches the client.
        throw new BrokerError('unavailable', 'the chain needed to check a contract-wallet signature did not answer; try again');
      }
      if (!check.valid) {
        if (check.malformed) throw new BrokerError('bad_request', `body.signature: ${check.reason}`);
        throw new BrokerError('unauthorized', "the signature was not made by the grant's agent wallet over the grant's acceptance text (acceptance_message)");
      }
      const proof = check;
      return withTransaction(db, async (tx) => {
        const at = new Date(now());
        const row = await findGrant(tx, grantId, { forUpdate: true });
        const status = row ? grantStatus(row, at.getTime()) : 'revoked';
        if (status === 'expired') throw new BrokerError('expired', 'this grant has expired; ask the main account for a new one');
        if (status !== 'pending')
          throw new BrokerError('conflict', `this grant is ${status}, not pending; only a pending grant can be accepted`, { body: { status } });
        // One signed acceptance, one proof, whatever the signature's encoding (see above). A refusal
        // throws, so the transaction rolls back whichever of the keys it stored.
        const fresh = await consumeProof(tx, {
          hash: proof.replayKey,
          aliases: [contractReplayKey(grant.agent_address, message)],
          purpose: GRANT_ACCEPT_PROOF_PURPOSE,
          expiresAt: grant.expires_at,
        });
        if (!fresh) throw new BrokerError('conflict', 'this signature has already been used');
        const g = await markGrantAccepted(tx, grantId, at);
        if (!g) throw new BrokerError('conflict', 'this grant is no longer pending');
        await appendAudit(tx, {
          event: 'grant.accept',
          outcome: 'ok',
          omniAccount: g.main_account,
          requestId,
          idemKey: `grant.accept:${grantId}`,
          details: { grant_id: grantId, main_address: g.main_address, agent_address: g.agent_address, signature_hash: proof.replayKey, via: proof.via },
        });
        return g;
      });
    },

    /** The agent declines a pending grant that names it (again: answered as it is). */
    async decline(caller: GrantCaller, grantId: string, requestId: string): Promise<GrantRow> {
      const r = await endByAgent(caller, grantId, requestId, false);
      if (!r) throw new BrokerError('not_found', 'no such grant names this wallet as its agent');
      const status = grantStatus(r.grant, now());
      if (!r.changed && status !== 'declined') {
        throw new BrokerError('conflict', `this grant is ${status}; only a pending grant can be declined (leave an accepted one with DELETE)`, {
          body: { status },
        });
      }
      return r.grant;
    },

    /** The owner revokes the grant, or (not the owner) its agent leaves or declines it; done again is no change. */
    /** The owner revokes (its deny entry recorded: the API then wakes the kill switch), or the agent leaves. */
    async revokeOrLeave(caller: GrantCaller, grantId: string, requestId: string): Promise<'revoked' | 'left'> {
      const revoked = await withTransaction(db, async (tx) => {
        const r = await revokeGrant(tx, grantId, caller.omniAccount, new Date(now()));
        if (r?.changed) {
          await appendAudit(tx, {
            event: 'grant.revoke',
            outcome: 'ok',
            omniAccount: caller.omniAccount,
            requestId,
            idemKey: `grant.revoke:${grantId}`,
            details: { grant_id: grantId, main_address: r.grant.main_address, agent_address: r.grant.agent_address, via: caller.kind },
          });
          await recordGrantKill(tx, config, r.grant, r.grant.revoked_at ?? new Date(now()), requestId);
        }
        return r;
      });
      if (revoked) return 'revoked';
      if (await endByAgent(caller, grantId, requestId, true)) return 'left';
      // Another account's grant answers exactly like a missing one.
      throw new BrokerError('not_found', 'no such grant on this account or naming this wallet');
    },
  };
}

export type GrantService = ReturnType<typeof createGrantService>;
