/**
 * Approval of a mint (docs/approvals.md, docs/contracts.md "Approvals"): opening a request, the
 * holder's decision, the expiry and the hand-out, each one transaction with its audit row.
 *
 * Checks here: whose request it is (the holder decides, the asking agent polls; anyone else hears
 * 404, as for a request that does not exist), the decision's proof — an EIP-712 signature by the
 * grant's main wallet over the request's hash (a wallet-login session must sign), else a session
 * whose login is at most REAUTH_SECONDS old (requireRecentLogin, services/sessions.ts) — its one use, the grant still active when
 * approving, and the request still pending and unexpired (db/approvals.ts's conditional UPDATE
 * makes one of racing decisions win). The routes check only the request's form.
 */
import { hashTypedData } from 'viem';
import { recoverSigner } from '../adapters/evm-signature';
import { appendAudit } from '../db/audit';
import {
  decideApproval,
  expireApproval,
  findApproval,
  insertApproval,
  listPendingApprovalsOfOwner,
  markApprovalCollected,
  type ApprovalRow,
} from '../db/approvals';
import { findGrant, grantStatus } from '../db/grants';
import { withTransaction, type Db } from '../db/pool';
import { consumeProof, isProofUsed } from '../db/used-signatures';
import {
  approvalRequestHash,
  approvalTypedData,
  type ApprovalDecision,
  type ApprovalDecisionInput,
  type ApprovalOpened,
  type ApprovalPolicy,
} from '../lib/approvals';
import type { Config } from '../lib/config';
import { sha256Hex } from '../lib/digest';
import { BrokerError } from '../lib/errors';
import { parseEoaSignature, SignatureFormatError } from '../lib/wallet-message';
import { requireRecentLogin } from './sessions';

/** The one-time proof purpose of a decision's signature (db/used-signatures.ts). */
const DECISION_PROOF_PURPOSE = 'approval-decision';

export interface ApprovalServiceDeps {
  config: Config;
  db: Db;
  /** Milliseconds since the epoch. */
  now: () => number;
}

/** The deciding caller as the API authenticated it. */
export interface ApprovalDecider {
  kind: 'session' | 'tee';
  omniAccount: string;
  jti?: string;
  /** The EVM address of a wallet-login session. */
  wallet?: string;
}

/** What a mint that needs approval opens (the grant it runs under, as the mint activity authorised it). */
export interface ApprovalRequestInput {
  approvalId: string;
  requestId: string;
  grantId: string;
  mainAccount: string;
  mainAddress: string;
  agentAddress: string;
  agentAccount: string;
  target: string;
  params: Record<string, string | number>;
  scope: Record<string, unknown>;
  reason: string | null;
  policy: ApprovalPolicy;
  /** Why the policy asks (lib/approvals.ts approvalNeeded). */
  why: string;
}

const unix = (d: Date): number => Math.floor(d.getTime() / 1000);
const notFound = () => new BrokerError('not_found', 'no such approval request on this account');

/** The fields the request's hash covers, from its row. */
export function requestFieldsOf(row: ApprovalRow) {
  return {
    approval_id: row.approval_id,
    grant_id: row.grant_id,
    main_address: row.main_address,
    agent_address: row.agent_address,
    target: row.target,
    params: row.params,
    scope: row.scope,
    reason: row.reason,
    requested_at: unix(row.requested_at),
    expires_at: unix(row.expires_at),
  };
}

/** Whether a stored receipt is this proof's (the same signature, or the same session at the same login). */
function sameProof(receipt: Record<string, unknown> | null, proof: ApprovalDecisionInput['proof']): boolean {
  if (!receipt || receipt.via !== proof.via) return false;
  return proof.via === 'eip712'
    ? receipt.replay_key === proof.replay_key
    : receipt.session_hash === proof.session_hash && receipt.auth_time === proof.auth_time;
}

/** The idem key of a request's `approval.request` row: one per request, whichever try opened it. */
export const approvalRequestIdemKey = (approvalId: string): string => `approval.request:${approvalId}`;

export function createApprovalService(deps: ApprovalServiceDeps) {
  const { config, db, now } = deps;
  const broker = new URL(config.publicUrl).host;

  /** The decision's refusal when the row is no longer pending (or its time is up). */
  function closedRefusal(row: ApprovalRow, atMs: number): BrokerError | undefined {
    if (row.status === 'expired' || (row.status === 'pending' && row.expires_at.getTime() <= atMs))
      return new BrokerError('expired', 'this approval request has expired; nothing was decided');
    if (row.status !== 'pending') return new BrokerError('conflict', `this approval request is already ${row.status}`, { body: { status: row.status } });
    return undefined;
  }

  /** The EIP-712 proof: a signature by the grant's main wallet over this request's hash and this decision. */
  async function signatureProof(row: ApprovalRow, decision: ApprovalDecision, signature: string): Promise<ApprovalDecisionInput['proof']> {
    let parsed;
    try {
      parsed = parseEoaSignature(signature);
    } catch (e) {
      if (e instanceof SignatureFormatError) throw new BrokerError('bad_request', `signature: ${e.message}`);
      throw e;
    }
    const digest = hashTypedData(approvalTypedData(broker, row.approval_id, row.request_hash, decision));
    const signer = await recoverSigner(Buffer.from(digest.slice(2), 'hex'), parsed).catch(() => undefined);
    if (signer !== row.main_address)
      throw new BrokerError(
        'unauthorized',
        `the signature was not made by the grant's main wallet (${row.main_address}) over this request's EIP-712 typed data (approval_id, request_hash, decision)`,
      );
    const replayKey = sha256Hex(`approval-decision\n${parsed.normalized}`);
    if (await isProofUsed(db, replayKey)) throw new BrokerError('replayed', 'this signature was already used');
    return { via: 'eip712', signer, signature: parsed.normalized, replay_key: replayKey };
  }

  /** The session proof: a broker session whose login is recent (a refreshed session counts from its family's login). */
  async function freshSessionProof(caller: ApprovalDecider): Promise<ApprovalDecisionInput['proof']> {
    if (caller.wallet)
      throw new BrokerError('bad_request', "a wallet account decides with its wallet: send signature, the EIP-712 signature of the request's typed data");
    const { jti, loginAt } = await requireRecentLogin({ db, now }, caller, { what: 'deciding without a wallet signature', then: 'decide' });
    return { via: 'fresh-session', session_hash: sha256Hex(`session\n${jti}`).slice(0, 32), auth_time: unix(loginAt) };
  }

  /** What a mint answers of an open request. */
  const openedOf = (row: ApprovalRow): ApprovalOpened => ({
    approval_id: row.approval_id,
    requested_at: unix(row.requested_at),
    expires_at: unix(row.expires_at),
    interval: config.BROKER_APPROVAL_POLL_INTERVAL_SECONDS,
  });

  return {
    /** Opens the request (its row and its `approval.request` audit row); a retry with the same id finds it unchanged. */
    async open(input: ApprovalRequestInput): Promise<ApprovalOpened> {
      const requestedAt = new Date(Math.floor(now() / 1000) * 1000);
      const expiresAt = new Date(requestedAt.getTime() + input.policy.timeout_seconds * 1000);
      const fields = {
        approval_id: input.approvalId,
        grant_id: input.grantId,
        main_address: input.mainAddress,
        agent_address: input.agentAddress,
        target: input.target,
        params: input.params,
        scope: input.scope,
        reason: input.reason,
        requested_at: unix(requestedAt),
        expires_at: unix(expiresAt),
      };
      const row = await withTransaction(db, async (tx) => {
        const r = await insertApproval(tx, {
          ...fields,
          main_account: input.mainAccount,
          agent_account: input.agentAccount,
          request_hash: approvalRequestHash(fields),
          requested_at: requestedAt,
          expires_at: expiresAt,
        });
        await appendAudit(tx, {
          event: 'approval.request',
          outcome: 'ok',
          omniAccount: input.mainAccount,
          requestId: input.requestId,
          idemKey: approvalRequestIdemKey(input.approvalId),
          details: { ...requestFieldsOf(r), agent_account: input.agentAccount, request_hash: r.request_hash, why: input.why },
        });
        return r;
      });
      return openedOf(row);
    },

    /** The request `approvalId` as open() answered it when it was opened, or undefined if it never was. */
    async opened(approvalId: string): Promise<ApprovalOpened | undefined> {
      const row = await findApproval(db, approvalId);
      return row ? openedOf(row) : undefined;
    },

    /** The holder's pending requests, oldest first. */
    listPending: (ownerAccount: string, limit: number): Promise<ApprovalRow[]> => listPendingApprovalsOfOwner(db, ownerAccount, new Date(now()), limit),

    /** The request as its holder sees it (404 for anyone else's). */
    async ofOwner(ownerAccount: string, approvalId: string): Promise<ApprovalRow> {
      const row = await findApproval(db, approvalId);
      if (!row || row.main_account !== ownerAccount) throw notFound();
      return row;
    },

    /** The request as its agent sees it (404 for anyone else's). */
    async ofAgent(agentAccount: string, approvalId: string): Promise<ApprovalRow> {
      const row = await findApproval(db, approvalId);
      if (!row || row.agent_account !== agentAccount) throw notFound();
      return row;
    },

    /** The EIP-712 typed data a wallet holder signs for this decision (shown by GET and the CLI). */
    typedData: (row: ApprovalRow, decision: ApprovalDecision) => approvalTypedData(broker, row.approval_id, row.request_hash, decision),

    /**
     * Checks a decision before it reaches the request's flow: the caller holds the request, the
     * request is open, the proof is good. Changes nothing; the flow records it (recordDecision).
     */
    async checkDecision(
      caller: ApprovalDecider,
      approvalId: string,
      decision: ApprovalDecision,
      signature: string | undefined,
    ): Promise<ApprovalDecisionInput> {
      const row = await this.ofOwner(caller.omniAccount, approvalId);
      const closed = closedRefusal(row, now());
      if (closed) throw closed;
      const proof = signature !== undefined ? await signatureProof(row, decision, signature) : await freshSessionProof(caller);
      return { decision, omni_account: caller.omniAccount, proof };
    },

    /**
     * Records a checked decision (the request's flow calls this, one decision at a time): the
     * signature's one use, the row's conditional change and the `approval.decide` audit row with the
     * receipt, in one transaction. An approval needs the grant still active.
     */
    async recordDecision(approvalId: string, input: ApprovalDecisionInput, requestId: string): Promise<ApprovalRow> {
      return withTransaction(db, async (tx) => {
        const at = new Date(now());
        const row = await findApproval(tx, approvalId);
        if (!row || row.main_account !== input.omni_account) throw notFound();
        // A retry of the flow's own call that committed already (the flow lets one decision in at a time).
        if (row.status === (input.decision === 'approve' ? 'approved' : 'denied') && sameProof(row.receipt, input.proof)) return row;
        const closed = closedRefusal(row, at.getTime());
        if (closed) throw closed;
        if (input.decision === 'approve') {
          const grant = await findGrant(tx, row.grant_id);
          const status = grant ? grantStatus(grant, at.getTime()) : 'revoked';
          if (status !== 'active')
            throw new BrokerError('conflict', `the grant is ${status}: nothing can be approved under it (deny, or let the request expire)`, {
              body: { grant_status: status },
            });
        }
        if (
          input.proof.via === 'eip712' &&
          !(await consumeProof(tx, { hash: input.proof.replay_key, purpose: DECISION_PROOF_PURPOSE, expiresAt: row.expires_at }))
        )
          throw new BrokerError('replayed', 'this signature was already used');
        const receipt = { ...input.proof, request_hash: row.request_hash, decision: input.decision };
        const decided = await decideApproval(tx, {
          approvalId,
          status: input.decision === 'approve' ? 'approved' : 'denied',
          at,
          via: input.proof.via,
          receipt,
        });
        if (!decided) throw new BrokerError('conflict', 'this approval request was decided at the same moment by another call');
        await appendAudit(tx, {
          event: 'approval.decide',
          outcome: input.decision === 'approve' ? 'ok' : 'denied',
          omniAccount: row.main_account,
          requestId,
          idemKey: `approval.decide:${approvalId}`,
          details: { approval_id: approvalId, grant_id: row.grant_id, decision: input.decision, receipt, http_request_id: input.http_request_id ?? null },
        });
        return decided;
      });
    },

    /** The request's time is up with no decision: marked expired with its audit row (nothing when it was decided first). */
    async expire(approvalId: string, requestId: string): Promise<boolean> {
      return withTransaction(db, async (tx) => {
        const changed = await expireApproval(tx, approvalId, new Date(now()));
        if (changed) {
          const row = await findApproval(tx, approvalId);
          await appendAudit(tx, {
            event: 'approval.expire',
            outcome: 'denied',
            omniAccount: row?.main_account ?? null,
            requestId,
            idemKey: `approval.expire:${approvalId}`,
            details: { approval_id: approvalId, grant_id: row?.grant_id ?? null },
          });
        }
        return changed;
      });
    },

    /**
     * Marks the approved request handed out; undefined, and nothing marked, when it is not approved
     * or not under this grant (a refused hand-out must not use up the approval).
     */
    async claimHandout(approvalId: string, grantId: string): Promise<ApprovalRow | undefined> {
      return markApprovalCollected(db, approvalId, grantId, new Date(now()));
    },
  };
}

export type ApprovalService = ReturnType<typeof createApprovalService>;
