import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { STSClient } from '@aws-sdk/client-sts';
import { appendAudit } from '../db/audit';
import { findActiveGrantForAgent, findMainAddress, hasAcceptedGrantForAgent } from '../db/grants';
import { findUserByOmni } from '../db/users';
import { withTransaction } from '../db/pool';
import { hmacHex } from '../lib/digest';
import { sealJson, type SealPublicJwk } from '../lib/seal';
import { agentKeysActorId } from '../lib/actor-omni';
import { isScoped, scopeAllowsRole, scopeSessionPolicy } from '../lib/grant-scope';
import { oidcTokenClaims, signOidcToken, stsSessionName } from '../lib/oidc-claims';
import { OidcKeyStore } from '../adapters/oidc-keys';
import { FailureType } from '../workflows/definitions';
import {
  MINT_SIGN_MAX_ATTEMPTS,
  MINT_STS_MAX_ATTEMPTS,
  MintActivityFailure,
  mintCallerDetails,
  mintGrantDetails,
  awsOkDetails,
  oidcOkDetails,
  type AssumedDataRole,
  type AuthoriseMintInput,
  type AwsSecretParts,
  type MintAuditInput,
  type MintAuthorisation,
  type MintStepFailureDetails,
  type MintAwsRequest,
  type MintGrant,
  type MintRequest,
  type SignedOidcJwt,
} from '../workflows/mint.definitions';
import { currentRun } from './context';
import type { ActivityDeps } from './deps';
import { assumeRoleWithWebIdentity, classifyStsError, createStsClient } from '../adapters/sts-client';
import { actingContextFor } from './kill-switch';

export interface MintTokenInput {
  requestId: string;
  wallet: string;
  grant?: MintGrant;
  /**
   * The caller's OmniAccount: its account's AgentKeys actor identifier (lib/actor-omni.ts) becomes the
   * `agentkeys_actor_omni` claim and tag (absent in runs started before it existed).
   */
  actorOmni?: string;
  /** Seal what leaves the activity to this key (lib/seal.ts); absent in runs started before sealing. */
  sealTo?: SealPublicJwk;
}

export interface AssumeDataRoleInput extends MintTokenInput {
  durationSeconds: number;
}

/** A combined mint step (`mint-two-steps`) also writes the outcome row: it names the account. */
export interface MintStepInput extends MintTokenInput {
  omniAccount: string;
}

export interface AssumeDataRoleStepInput extends AssumeDataRoleInput {
  omniAccount: string;
}

/** Tries and pauses of an outcome row's write inside a combined mint step (as recordMintAudit's retry policy). */
const OUTCOME_WRITE_ATTEMPTS = 3;
const OUTCOME_WRITE_BACKOFF_MS = [100, 200];

/** Whether this failure ends the step (no further attempt will run). */
function isFinal(e: unknown, maxAttempts: number): boolean {
  return (e instanceof ApplicationFailure && e.nonRetryable) || Context.current().info.attempt >= maxAttempts;
}

/**
 * The steps of a credential mint: who may mint for which wallet, the audit rows, the OIDC token
 * and the STS exchange. Each is idempotent per workflow run (audit rows carry an idem key; a
 * re-signed token or re-minted STS session simply replaces one nobody received).
 */
export function createMintActivities(deps: ActivityDeps) {
  const { config, secrets } = deps;
  const oidcKeys = deps.oidcKeys ?? OidcKeyStore.fromConfig(config);
  let sts: STSClient | undefined;
  const stsClient = (): STSClient => (sts ??= deps.stsClient ?? createStsClient(config));
  const auditDigest = (kind: string, value: string) => hmacHex(secrets.hmacSecret, `audit-${kind}`, value).slice(0, 32);

  /**
   * The AgentKeys actor identifier of the caller's account, from the login identity its users row
   * keeps (the bare OmniAccount when there is none). Read here, not carried in the workflow input,
   * so runs of every shipped workflow version get it without a workflow change.
   */
  async function actorIdOf(omniAccount: string | undefined): Promise<string | undefined> {
    if (omniAccount === undefined) return undefined;
    let user;
    try {
      user = await findUserByOmni(deps.db, omniAccount);
    } catch (e) {
      throw ApplicationFailure.retryable(`could not read the caller's account: ${(e as Error).message}`, MintActivityFailure.authoriseFailed);
    }
    const identity = user ? { type: user.identity_type, value: user.identity_value } : undefined;
    return agentKeysActorId(user?.client_id ?? config.BROKER_CLIENT_ID, omniAccount, identity);
  }

  async function signToken(input: MintTokenInput): Promise<{ jwt: string; expiration: number; kid: string; jwtHash: string; nowSeconds: number }> {
    let keyset;
    try {
      keyset = await oidcKeys.current();
    } catch (e) {
      throw ApplicationFailure.nonRetryable(`the OIDC signing key is not usable: ${(e as Error).message}`, MintActivityFailure.signingFailed);
    }
    const actorId = await actorIdOf(input.actorOmni);
    const nowSeconds = Math.floor(deps.now() / 1000);
    const claims = oidcTokenClaims({
      issuer: config.publicUrl,
      wallet: input.wallet,
      nowSeconds,
      ttlSeconds: config.BROKER_OIDC_JWT_TTL_SECONDS,
      grant: input.grant ? { grantId: input.grant.grantId, childWallet: input.grant.agentAddress, scope: input.grant.scope } : undefined,
      actorId,
      acting: await actingContextFor(deps.db, input.grant),
    });
    const jwt = await signOidcToken(keyset.active, claims);
    return { jwt, expiration: claims.exp, kid: keyset.active.kid, jwtHash: auditDigest('jwt', jwt), nowSeconds };
  }

  /**
   * Decides for whom the caller mints. A wallet-login session whose wallet is the agent of an
   * active grant (one the agent accepted) mints for the grant's main wallet, within the grant's
   * scope; one whose accepted grants are all revoked or expired is refused until it leaves
   * them; any other caller mints for itself (its main EVM address, else its OmniAccount). A
   * grant the wallet never accepted changes nothing about its own mints.
   */
  async function authorise(req: MintRequest): Promise<MintAuthorisation> {
    const at = new Date(deps.now());
    const { caller, grantId } = req;
    // mint-aws-creds requests carry a duration; mint-oidc-jwt requests do not.
    const mintsAws = typeof (req as Partial<MintAwsRequest>).durationSeconds === 'number';
    try {
      if (caller.wallet) {
        const grant = await findActiveGrantForAgent(deps.db, caller.wallet, grantId, at);
        if (grant) {
          const scope = grant.scope ?? {};
          if (isScoped(scope) && !mintsAws) {
            return {
              allowed: false,
              reason: `grant ${grant.grant_id} has a scope, which STS enforces only on credentials the broker mints: use mint-aws-creds (a bare OIDC token would carry no session policy)`,
              grantId: grant.grant_id,
            };
          }
          if (mintsAws && !scopeAllowsRole(scope, config.BROKER_DATA_ROLE_ARN ?? '')) {
            return {
              allowed: false,
              reason: `grant ${grant.grant_id} does not allow the data role (its scope.roles does not name it)`,
              grantId: grant.grant_id,
            };
          }
          return {
            allowed: true,
            wallet: grant.main_address,
            grant: { grantId: grant.grant_id, mainAddress: grant.main_address, agentAddress: grant.agent_address, scope },
          };
        }
        if (grantId)
          return {
            allowed: false,
            reason: `grant ${grantId} is not an active grant for this agent wallet (unknown, not accepted, revoked or expired)`,
            grantId,
          };
        if (await hasAcceptedGrantForAgent(deps.db, caller.wallet)) {
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
    } catch (e) {
      throw ApplicationFailure.retryable(`could not check the caller's grants: ${(e as Error).message}`, MintActivityFailure.authoriseFailed);
    }
  }

  /**
   * Appends one audit row of the mint (event mint.<kind>.intent or mint.<kind>), durable when
   * this returns. Bounded by BROKER_AUDIT_WRITE_TIMEOUT_MS so an unwritable log fails fast.
   */
  async function writeAudit(input: MintAuditInput): Promise<{ seq: string }> {
    const { workflowId, runId } = currentRun();
    const timeout = `${config.BROKER_AUDIT_WRITE_TIMEOUT_MS}ms`;
    try {
      const row = await withTransaction(deps.db, async (tx) => {
        await tx.query("SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true)", [timeout]);
        return appendAudit(tx, {
          event: input.phase === 'intent' ? `mint.${input.kind}.intent` : `mint.${input.kind}`,
          outcome: input.phase === 'intent' ? 'ok' : input.phase,
          omniAccount: input.omniAccount,
          requestId: input.requestId,
          idemKey: `mint:${workflowId}:${runId}:${input.phase}`,
          details: input.details,
        });
      });
      return { seq: row.seq };
    } catch (e) {
      throw ApplicationFailure.retryable(`could not write the audit row: ${(e as Error).message}`, FailureType.auditFailed);
    }
  }

  /** Signs an OIDC JWT for the wallet with the active OIDC key. */
  async function signJwt(input: MintTokenInput): Promise<SignedOidcJwt> {
    const { nowSeconds: _n, jwt, ...signed } = await signToken(input);
    // A retry re-signs and re-seals to the same key: the caller gets whichever attempt's result is recorded.
    return input.sealTo ? { ...signed, sealed: await sealJson(input.sealTo, { jwt }) } : { ...signed, jwt };
  }

  /**
   * Signs a fresh OIDC JWT and exchanges it at STS (AssumeRoleWithWebIdentity on
   * BROKER_DATA_ROLE_ARN). The JWT never leaves this activity; only its digest does.
   * Throttling, 5xx and transport errors are retryable; every other STS error is final.
   */
  async function assumeRole(input: AssumeDataRoleInput): Promise<AssumedDataRole> {
    const roleArn = config.BROKER_DATA_ROLE_ARN;
    if (!roleArn)
      throw ApplicationFailure.nonRetryable('BROKER_DATA_ROLE_ARN is not configured; the broker cannot mint AWS credentials', FailureType.stsFailed);
    const signed = await signToken(input);
    const sessionName = stsSessionName(input.wallet, signed.nowSeconds);
    let creds;
    try {
      // A scoped grant's services become the inline session policy: the session can do at most that.
      const policy = scopeSessionPolicy(input.grant?.scope);
      creds = await assumeRoleWithWebIdentity(stsClient(), {
        roleArn,
        sessionName,
        webIdentityToken: signed.jwt,
        durationSeconds: input.durationSeconds,
        policy,
      });
    } catch (e) {
      const c = classifyStsError(e, { roleArn, issuer: config.publicUrl });
      const details = { sts_code: c.code };
      throw c.retryable
        ? ApplicationFailure.retryable(c.message, MintActivityFailure.stsTransient, details)
        : ApplicationFailure.nonRetryable(c.message, FailureType.stsFailed, details);
    }
    const secret: AwsSecretParts = { secret_access_key: creds.secretAccessKey, session_token: creds.sessionToken };
    return {
      accessKeyId: creds.accessKeyId,
      // The secret parts leave this activity only sealed to the requesting API's key.
      ...(input.sealTo ? { sealed: await sealJson(input.sealTo, secret) } : { secretAccessKey: secret.secret_access_key, sessionToken: secret.session_token }),
      expiration: creds.expiration,
      kid: signed.kid,
      jwtHash: signed.jwtHash,
      sessionName,
      roleArn,
      attempt: Context.current().info.attempt,
    };
  }

  /**
   * Writes the outcome row of a combined mint step, durable when this returns. The write is
   * retried here (three tries, as recordMintAudit's policy) and not by re-running the step: that
   * would re-sign and re-mint a credential nobody receives. If it cannot be written the step fails
   * for good (auditFailed, non-retryable) and the credential never leaves the activity.
   */
  async function writeOutcome(input: MintAuditInput): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await writeAudit(input);
        return;
      } catch (e) {
        if (attempt >= OUTCOME_WRITE_ATTEMPTS) throw ApplicationFailure.nonRetryable((e as Error).message, FailureType.auditFailed);
        await sleep(OUTCOME_WRITE_BACKOFF_MS[attempt - 1] ?? 200);
      }
    }
  }

  /** Records a final failure of a combined mint step, then the failure the workflow reads: it knows the row is written. */
  async function failRecorded(
    input: Omit<MintAuditInput, 'phase' | 'details'>,
    details: { wallet: string; sts_code?: string | null; error: string },
    type: string,
  ): Promise<never> {
    await writeOutcome({ ...input, phase: 'failed', details });
    const failureDetails: MintStepFailureDetails = { sts_code: details.sts_code ?? null, outcome_recorded: true };
    throw ApplicationFailure.create({ type, message: details.error, nonRetryable: true, details: [failureDetails] });
  }

  return {
    // The four steps of runs recorded before `mint-two-steps` (they replay, and may still be in flight).
    authoriseMint: authorise,
    recordMintAudit: writeAudit,
    signOidcJwt: signJwt,
    assumeDataRole: assumeRole,

    /**
     * The first step of a mint on the `mint-two-steps` path: authorise, then write the decision's
     * row (denied, or intent) before returning it. A failed check is a retryable authoriseFailed, a
     * failed write a retryable auditFailed: a retry re-reads the grants (read-only) and re-writes the
     * row under the same idem key, so it stays single.
     */
    async authoriseAndAuditMint({ kind, req, extra }: AuthoriseMintInput): Promise<MintAuthorisation> {
      const decision = await authorise(req);
      const base = { kind, requestId: req.requestId, omniAccount: req.caller.omniAccount };
      const who = mintCallerDetails(req);
      if (!decision.allowed) await writeAudit({ ...base, phase: 'denied', details: { ...who, reason: decision.reason, grant_id: decision.grantId ?? null } });
      else await writeAudit({ ...base, phase: 'intent', details: { ...who, ...extra, wallet: decision.wallet, ...mintGrantDetails(decision.grant) } });
      return decision;
    },

    /**
     * The second step of an OIDC mint on the `mint-two-steps` path: sign, then write the outcome
     * row (ok, or failed on the last attempt) before anything is returned.
     */
    async signOidcJwtAndAudit(input: MintStepInput): Promise<SignedOidcJwt> {
      const base = { kind: 'oidc' as const, requestId: input.requestId, omniAccount: input.omniAccount };
      let signed;
      try {
        signed = await signJwt(input);
      } catch (e) {
        if (!isFinal(e, MINT_SIGN_MAX_ATTEMPTS)) throw e;
        return failRecorded(base, { wallet: input.wallet, error: (e as Error).message || 'signing failed' }, MintActivityFailure.signingFailed);
      }
      await writeOutcome({ ...base, phase: 'ok', details: oidcOkDetails(input.wallet, input.grant, signed) });
      return signed;
    },

    /**
     * The second step of an AWS mint on the `mint-two-steps` path: the STS exchange, then the
     * outcome row (ok, or failed with the STS code) before the credentials are returned. The
     * exchange keeps its retry semantics: a throttled, 5xx or transport failure before the last
     * attempt is rethrown for the workflow's retry policy and writes nothing; a final one (any
     * other STS error, a signing failure, or the last attempt) writes the failed row and ends the
     * step. Once STS has answered, the step is not retried for the audit write (writeOutcome
     * retries the write itself), so an unwritable outcome row costs one STS session nobody gets.
     */
    async assumeDataRoleAndAudit(input: AssumeDataRoleStepInput): Promise<AssumedDataRole> {
      const base = { kind: 'aws' as const, requestId: input.requestId, omniAccount: input.omniAccount };
      let assumed;
      try {
        assumed = await assumeRole(input);
      } catch (e) {
        if (!isFinal(e, MINT_STS_MAX_ATTEMPTS)) throw e;
        const failure = e instanceof ApplicationFailure ? e : undefined;
        const stsCode = (failure?.details?.[0] as { sts_code?: string } | undefined)?.sts_code ?? null;
        const type = failure?.type ?? (e instanceof Error ? e.name : 'Error');
        return failRecorded(base, { wallet: input.wallet, sts_code: stsCode, error: (e as Error).message || 'the STS exchange failed' }, type);
      }
      await writeOutcome({ ...base, phase: 'ok', details: awsOkDetails(input.wallet, input.grant, assumed) });
      return assumed;
    },
  };
}
