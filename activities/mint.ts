import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import { appendAuditDurably, type AuditRecord } from '../db/audit';
import { auditRowsByIdemKeys } from '../db/audit-query';
import { agentGrantStanding } from '../db/grants';
import { findMainAddress, findUserByOmni } from '../db/users';
import { hmacHex } from '../lib/digest';
import { sealJson } from '../lib/seal';
import { agentKeysActorId } from '../lib/actor-omni';
import { isScoped, namesSection } from '../lib/grant-scope';
import { oidcTokenClaims, signOidcToken, userWalletValue, type ActingContext } from '../lib/oidc-claims';
import { OidcKeyStore } from '../adapters/oidc-keys';
import { FailureType } from '../workflows/definitions';
import {
  MintActivityFailure,
  type MintAuditPhase,
  type MintFailureDetails,
  type MintGrant,
  type MintOutcome,
  type MintRequest,
} from '../workflows/mint.definitions';
import { currentActivity, currentRun } from './context';
import type { ActivityDeps } from './deps';
import { mintTarget } from './mint-targets';
import { MintSigningError, type AuditDetails, type Exchanged, type MintTarget, type SignedToken } from './mint-targets/target';
import { actingContextFor } from './kill-switch';
import { approvalNeeded, type ApprovalPolicy } from '../lib/approvals';
import { approvalRequestIdemKey, createApprovalService } from '../services/approvals';
import type { ApprovalHandout, ApprovalOpened } from '../workflows/approval.definitions';

/** The approval request a mint opens, named after the mint's request. */
const approvalIdOf = (req: MintRequest): string => `apr_${req.requestId}`;

type MintAuthorisation =
  | {
      allowed: true;
      wallet: string;
      /** With the agent's revocation epoch for the grant's main wallet, read in the grant's own statement (the credential carries it). */
      grant?: MintGrant & { mainAccount: string; approval: ApprovalPolicy | null; epoch: number };
    }
  | { allowed: false; reason: string; grantId?: string };

/** Tries and pauses of the outcome row's write: retried here, never by re-running the mint (that would re-mint). */
const OUTCOME_WRITE_BACKOFF_MS = [100, 200];

/**
 * The mint, whatever its target, in one local activity: authorise, the decision's audit row
 * (denied, or intent), the target's exchange, the outcome row (ok or failed), then the sealed
 * answer. Nothing leaves before its rows are durable — the intent row before a target's exchange
 * reaches outside (STS), both rows before the answer — and this function writes every row of the
 * mint itself: a failed exchange writes its failed row here, then ends the activity for good.
 *
 * Retries: a failure before the exchange (the grants unreadable, the intent row unwritable) is
 * retryable; the retry re-reads the grants and re-writes the row under the same idem key
 * (mint:<workflow>:<run>:<phase>; a hand-out's names its activity too, auditIdemKey), so it stays single. From the exchange on, nothing is retried by
 * Temporal: the exchange's own tries (the target's `attempts`) and the outcome row's write are
 * repeated here, and every failure after that is non-retryable.
 *
 * One mint, one outcome: a try that finds its mint's outcome already recorded (the worker died
 * after an earlier try's rows committed and before the workflow recorded its answer, so the
 * activity runs again) decides nothing again and reaches nothing outside — it answers what the
 * row says: the same refusal, the same failure, the request it opened; after an ok row, a failure
 * (that credential's answer is lost, and nothing else may leave under its row).
 */
export function createMintActivities(deps: ActivityDeps) {
  const { config, secrets } = deps;
  const oidcKeys = deps.oidcKeys ?? OidcKeyStore.fromConfig(config);
  const approvals = createApprovalService(deps);
  const auditDigest = (kind: string, value: string) => hmacHex(secrets.hmacSecret, `audit-${kind}`, value).slice(0, 32);

  /** The AgentKeys actor identifier of the caller's account, from the login identity its users row keeps. */
  async function actorIdOf(omniAccount: string): Promise<string> {
    const user = await findUserByOmni(deps.db, omniAccount);
    const identity = user ? { type: user.identity_type, value: user.identity_value } : undefined;
    return agentKeysActorId(user?.client_id ?? config.BROKER_CLIENT_ID, omniAccount, identity);
  }

  /**
   * For whom the caller mints. A wallet-login session whose wallet is the agent of an active grant
   * (one it accepted) mints for the grant's main wallet, within the grant's scope (the target's
   * section of it); one whose accepted grants are all revoked or expired is refused until it
   * leaves them; any other caller mints for itself (its main EVM address, else its OmniAccount).
   */
  async function authorise(req: MintRequest, target: MintTarget): Promise<MintAuthorisation> {
    const { caller, grantId } = req;
    if (caller.wallet) {
      // The active grant, the agent's revocation epoch under it and whether any accepted grant
      // remains, in one statement: the credential carries the epoch read with the grant that
      // authorised it, which a later agent revocation ends (docs/kill-switch.md, "A mint in flight").
      const { active: grant, accepted, epoch } = await agentGrantStanding(deps.db, caller.wallet, grantId, new Date(deps.now()));
      if (grant) {
        const scope = grant.scope ?? {};
        if (isScoped(scope)) {
          const sections = Object.keys(target.scope);
          const refusal = !namesSection(scope, sections)
            ? `has a scope that does not cover ${target.path} (it names no ${sections.length ? sections.join('/') : 'section this target reads'}; a bare OIDC token carries no session policy: use mint-aws-creds)`
            : target.authorise(scope, req.params, config);
          if (refusal !== undefined) return { allowed: false, reason: `grant ${grant.grant_id} ${refusal}`, grantId: grant.grant_id };
        }
        return {
          allowed: true,
          wallet: grant.main_address,
          grant: {
            grantId: grant.grant_id,
            mainAddress: grant.main_address,
            agentAddress: grant.agent_address,
            scope,
            mainAccount: grant.main_account,
            approval: grant.approval ?? null,
            epoch: epoch ?? 0,
          },
        };
      }
      if (grantId)
        return { allowed: false, reason: `grant ${grantId} is not an active grant for this agent wallet (unknown, not accepted, revoked or expired)`, grantId };
      if (accepted) {
        return {
          allowed: false,
          reason:
            'every grant this agent wallet accepted is revoked or expired; ask the main account for a new grant, or leave them (DELETE /v1/grants/{grant_id}) to mint for this wallet itself',
        };
      }
      return { allowed: true, wallet: caller.wallet };
    }
    if (grantId) return { allowed: false, reason: 'grant_id is for agent wallets signed in with their wallet', grantId };
    return { allowed: true, wallet: (await findMainAddress(deps.db, caller.omniAccount)) ?? caller.omniAccount };
  }

  /**
   * The idem key of a mint's row: one per phase of the mint's run. A hand-out (req.handout) is the
   * exception: the approval workflow runs the mint again at each poll while an approved request is
   * not collected (a failed exchange), all in its one run, so its key names the activity too —
   * each try its own rows, a retry of one try still the same rows. Ordinary mints keep the key
   * they always had, so a mint in flight across a deploy writes no row twice.
   */
  function auditIdemKey(req: MintRequest, phase: MintAuditPhase): string {
    if (!req.handout) {
      const { workflowId, runId } = currentRun();
      return `mint:${workflowId}:${runId}:${phase}`;
    }
    const { workflowId, runId, activityId } = currentActivity();
    return `mint:${workflowId}:${runId}:handout-${activityId}:${phase}`;
  }

  /** Appends audit rows of the mint (mint.<target>.intent or mint.<target>) in one transaction, durable when this returns. */
  async function writeAudit(req: MintRequest, rows: { phase: MintAuditPhase; details: AuditDetails }[]): Promise<AuditRecord[]> {
    try {
      return await appendAuditDurably(
        deps.db,
        rows.map(({ phase, details }) => ({
          event: phase === 'intent' ? `mint.${req.target}.intent` : `mint.${req.target}`,
          outcome: phase === 'intent' ? ('ok' as const) : phase,
          omniAccount: req.caller.omniAccount,
          requestId: req.requestId,
          idemKey: auditIdemKey(req, phase),
          details,
        })),
        config.BROKER_AUDIT_WRITE_TIMEOUT_MS,
      );
    } catch (e) {
      throw ApplicationFailure.retryable(`could not write the audit row: ${(e as Error).message}`, FailureType.auditError);
    }
  }

  /** The outcome row: its write retried here; when it cannot be written the mint ends for good and nothing leaves. */
  async function writeOutcome(req: MintRequest, rows: { phase: MintAuditPhase; details: AuditDetails }[]): Promise<AuditRecord[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await writeAudit(req, rows);
      } catch (e) {
        const pause = OUTCOME_WRITE_BACKOFF_MS[attempt];
        if (pause === undefined) throw ApplicationFailure.nonRetryable((e as Error).message, FailureType.auditError);
        await sleep(pause);
      }
    }
  }

  /** Signs one token for `audience` (each target passes its own: no default); `acting` is fixed at authorisation. */
  async function sign(
    wallet: string,
    grant: MintGrant | undefined,
    acting: ActingContext | undefined,
    actorId: string,
    audience: string,
    extra: Record<string, unknown> = {},
  ): Promise<SignedToken> {
    let keyset;
    try {
      keyset = await oidcKeys.current();
    } catch (e) {
      throw new MintSigningError(`the OIDC signing key is not usable: ${(e as Error).message}`);
    }
    const nowSeconds = Math.floor(deps.now() / 1000);
    const claims = oidcTokenClaims({
      issuer: config.publicUrl,
      wallet,
      nowSeconds,
      ttlSeconds: config.BROKER_OIDC_JWT_TTL_SECONDS,
      grant: grant ? { grantId: grant.grantId, childWallet: grant.agentAddress, scope: grant.scope } : undefined,
      actorId,
      audience,
      acting,
    });
    const jwt = await signOidcToken(keyset.active, { ...claims, ...extra });
    return { jwt, kid: keyset.active.kid, jwtHash: auditDigest('jwt', jwt), expiration: claims.exp, nowSeconds };
  }

  /**
   * A grant that asks for its holder's decision (lib/approvals.ts): the hand-out of an approved
   * request goes on once its row is marked handed out; a mint the policy stops opens a request
   * (nothing minted) when its flow can wait for one, and is refused otherwise. Nothing is minted
   * under such a grant without its approvals row.
   */
  async function approvalGate(
    req: MintRequest,
    grant: MintGrant & { mainAccount: string; approval: ApprovalPolicy | null },
  ): Promise<{ pending?: ApprovalOpened; refusal?: string } | undefined> {
    if (req.handout) {
      const row = await approvals.claimHandout(req.handout.approvalId, grant.grantId);
      return row ? undefined : { refusal: `approval ${req.handout.approvalId} is not an approved request under grant ${grant.grantId}` };
    }
    const why = approvalNeeded(grant.approval, req.target, req.params);
    if (why === undefined || !grant.approval) return undefined;
    // The one place the approval-open budget is enforced: the API spends `approval_open:ip` when its
    // own read of the grants finds a policy and says so (req.approvalOpenCounted); the grant found
    // here may differ from that read (a newer grant revoked, one with a policy accepted since), and
    // a mint whose API spent nothing opens nothing. Its caller's retry meets the policy at the API,
    // which then spends the budget. Absent (a run started by an API from before): opened as then.
    if (!req.approvals || req.approvalOpenCounted === false) return { refusal: `grant ${grant.grantId} asks for the holder's approval (${why}); try again` };
    const pending = await approvals.open({
      approvalId: approvalIdOf(req),
      requestId: req.requestId,
      grantId: grant.grantId,
      mainAccount: grant.mainAccount,
      mainAddress: grant.mainAddress,
      agentAddress: grant.agentAddress,
      agentAccount: req.caller.omniAccount,
      target: req.target,
      params: req.params,
      scope: grant.scope,
      reason: req.reason ?? null,
      policy: grant.approval,
      why,
    });
    return { pending };
  }

  /**
   * What an earlier try of this very mint recorded, if anything: its outcome row (ok, failed or
   * denied, under this try's idem keys), or the approval request it opened. One indexed read, made
   * beside the authorisation's.
   */
  async function earlierOutcome(req: MintRequest & { handout?: ApprovalHandout }): Promise<MintOutcome | undefined> {
    const phases = ['ok', 'failed', 'denied'] as const;
    const opened = !req.handout && req.approvals ? approvalRequestIdemKey(approvalIdOf(req)) : undefined;
    let rows;
    try {
      rows = await auditRowsByIdemKeys(
        deps.db,
        [...phases.map((p) => auditIdemKey(req, p)), ...(opened ? [opened] : [])],
        config.BROKER_AUDIT_WRITE_TIMEOUT_MS,
      );
    } catch (e) {
      // The log this mint would write to cannot be read: it fails as an unwritable log does.
      throw ApplicationFailure.retryable(`could not read the audit log: ${(e as Error).message}`, FailureType.auditError);
    }
    const row = (phase: (typeof phases)[number]) => rows.find((r) => r.idem_key === auditIdemKey(req, phase));
    if (row('ok'))
      throw ApplicationFailure.nonRetryable(
        'an earlier try of this mint was recorded and its answer lost; nothing is handed out: mint again',
        FailureType.auditError,
      );
    const failed = row('failed');
    if (failed) {
      const d = failed.details;
      const outcome: MintFailureDetails = { outcome: typeof d.failure_outcome === 'string' ? d.failure_outcome : 'failed' };
      throw ApplicationFailure.create({
        type: typeof d.failure_type === 'string' ? d.failure_type : FailureType.auditError,
        message: typeof d.error === 'string' ? d.error : 'an earlier try of this mint failed',
        nonRetryable: true,
        details: [outcome],
      });
    }
    const denied = row('denied');
    if (denied) return { denied: true, reason: typeof denied.details.reason === 'string' ? denied.details.reason : 'refused' };
    const pending = opened && rows.some((r) => r.idem_key === opened) ? await approvals.opened(approvalIdOf(req)) : undefined;
    return pending ? { denied: false, pending } : undefined;
  }

  return {
    async mint(req: MintRequest & { handout?: ApprovalHandout }): Promise<MintOutcome> {
      const target = mintTarget(req.target);
      if (!target) throw ApplicationFailure.nonRetryable(`unknown mint target ${req.target}`, FailureType.badRequest);
      let decision: MintAuthorisation;
      let actorId: string;
      let earlier: MintOutcome | undefined;
      try {
        [decision, actorId, earlier] = await Promise.all([authorise(req, target), actorIdOf(req.caller.omniAccount), earlierOutcome(req)]);
      } catch (e) {
        if (e instanceof ApplicationFailure) throw e;
        throw ApplicationFailure.retryable(`could not check the caller's grants: ${(e as Error).message}`, MintActivityFailure.authoriseFailed);
      }
      if (earlier) return earlier;
      const who = {
        auth: req.caller.authKind,
        method: req.caller.method ?? null,
        session_wallet: req.caller.wallet ?? null,
        bearer_hash: req.caller.bearerHash,
        http_request_id: req.httpRequestId ?? null,
      };
      // Every row of a hand-out names its approval request, and — its caller being the session that
      // collects (patch approval-collector) — the session that asked for it.
      const requestedBy = req.handout?.requestedBy;
      const handout: AuditDetails = req.handout
        ? {
            approval_id: req.handout.approvalId,
            ...(requestedBy ? { requested_by_bearer_hash: requestedBy.bearerHash, requested_by_http_request_id: requestedBy.httpRequestId } : {}),
          }
        : {};
      if (!decision.allowed) {
        await writeAudit(req, [{ phase: 'denied', details: { ...who, reason: decision.reason, grant_id: decision.grantId ?? null, ...handout } }]);
        return { denied: true, reason: decision.reason };
      }
      const { wallet, grant } = decision;
      // What the credential names of the agent (lib/oidc-claims.ts withActingClaims): the epoch read with the grant, not at signing.
      const acting = actingContextFor(grant);
      const gate = grant ? await approvalGate(req, grant) : undefined;
      if (gate?.pending) return { denied: false, pending: gate.pending };
      if (gate?.refusal) {
        await writeAudit(req, [{ phase: 'denied', details: { ...who, reason: gate.refusal, grant_id: grant?.grantId ?? null, ...handout } }]);
        return { denied: true, reason: gate.refusal };
      }
      const grantDetails = {
        ...(grant ? { grant_id: grant.grantId, child_wallet: grant.agentAddress } : { grant_id: null, child_wallet: null }),
        ...handout,
      };
      const signed = req.signedIntent;
      const proof: AuditDetails = signed
        ? {
            proof: 'eip191-intent',
            intent_request_id: signed.requestId,
            intent_hash: signed.intentHash,
            intent_agent_id: signed.agentId,
            intent_service: signed.service,
            intent_scope_path: signed.scopePath,
            intent_issued_at: signed.issuedAt,
          }
        : {};
      const intent = { phase: 'intent' as const, details: { ...who, ...target.intentDetails(req.params), ...proof, wallet, ...grantDetails } };
      // Before anything reaches outside the broker, the intent row is durable on its own; a target
      // that only signs sends nothing out before its answer, so its intent row commits with the outcome.
      if (target.reachesOutside) await writeAudit(req, [intent]);
      const pending = target.reachesOutside ? [] : [intent];

      let exchanged: Exchanged | undefined;
      for (let attempt = 1; !exchanged; attempt++) {
        try {
          exchanged = await target.exchange(
            { deps, wallet, grant, actorId, attempt, sign: (audience, extra, g = grant) => sign(wallet, g, acting, actorId, audience, extra) },
            req.params,
          );
        } catch (e) {
          const f = target.classify(e, config);
          const pause = target.backoffMs[attempt - 1];
          if (f.retryable && attempt < target.attempts && pause !== undefined) {
            await sleep(pause);
            continue;
          }
          const message = f.retryable && attempt > 1 ? `${f.message} (gave up after retrying)` : f.message;
          // The grant too, as on the intent row: the holder reads the failed outcome of a mint under its grant (GET /v1/audit?of=grants).
          // The wire failure too: a try that finds this row answers the same (earlierOutcome).
          await writeOutcome(req, [
            ...pending,
            { phase: 'failed', details: { wallet, ...grantDetails, ...f.details, error: message, failure_type: f.type, failure_outcome: f.outcome } },
          ]);
          const details: MintFailureDetails = { outcome: f.outcome };
          throw ApplicationFailure.create({ type: f.type, message, nonRetryable: true, details: [details] });
        }
      }
      // The secret parts leave this activity only sealed to the requesting API's one-request key. A key
      // that cannot be sealed to ends the mint with its failed row, never a retry (another exchange).
      let sealed: string;
      try {
        sealed = await sealJson(req.sealTo, exchanged.secret);
      } catch (e) {
        const message = `the credential could not be sealed to the requesting API's key, so it was not handed out: ${(e as Error).message}`;
        await writeOutcome(req, [
          ...pending,
          {
            phase: 'failed',
            details: { wallet, ...grantDetails, ...exchanged.audit, error: message, failure_type: FailureType.badRequest, failure_outcome: 'failed' },
          },
        ]);
        const details: MintFailureDetails = { outcome: 'failed' };
        throw ApplicationFailure.create({ type: FailureType.badRequest, message, nonRetryable: true, details: [details] });
      }
      // The ok row names the epoch the credential carries: the deny entry that covers it is the one ending that epoch.
      const written = await writeOutcome(req, [
        ...pending,
        { phase: 'ok', details: { wallet, ...grantDetails, ...exchanged.audit, revocation_epoch: acting?.epoch ?? null } },
      ]);
      // An earlier try of this very activity wrote the ok row and its answer was lost (the worker died
      // before the workflow recorded it, so the activity ran again): that row describes the earlier
      // credential, not this one, and nothing may leave without a row that names it.
      if (written[written.length - 1]?.existing)
        throw ApplicationFailure.nonRetryable(
          'an earlier try of this mint was recorded and its answer lost; nothing is handed out: mint again',
          FailureType.auditError,
        );
      // The answer names the wallet as the credential does (its agentkeys_user_wallet): a client builds
      // its storage prefix from it, as AgentKeys' own clients do (litentry/agent-terrier c348357,
      // crates/agentkeys-provisioner/src/aws_creds.rs, AwsTempCreds::wallet). The audit rows keep the OmniAccount.
      return { denied: false, minted: { sealed, public: exchanged.public, wallet: userWalletValue(wallet, actorId), expiration: exchanged.expiration } };
    },
  };
}
