import { ActivityFailure, ApplicationFailure, proxyLocalActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkOutcome, AkStage } from '../lib/search-attributes';
import { FailureType } from './definitions';
import { showOutcome, showStage } from './progress';
import { flowFailure } from './failures';
import {
  MintActivityFailure,
  type AwsCredsMinted,
  type MintAuditInput,
  type MintAwsRequest,
  type MintGrant,
  type MintKind,
  type MintRequest,
  type OidcJwtMinted,
  type SealedAwsCreds,
  type SealedOidcJwt,
} from './mint.definitions';

// Every step is short and idempotent and on the caller's latency path: local activities.
const { authoriseMint } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '100 ms', backoffCoefficient: 2, maximumInterval: '1 second', maximumAttempts: 3 },
});

// The audit write bounds itself (BROKER_AUDIT_WRITE_TIMEOUT_MS, at most 10 s); three tries within
// 25 s, then fail closed. Both audit steps fit the mint's 1-minute execution timeout.
const { recordMintAudit } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '12 seconds',
  scheduleToCloseTimeout: '25 seconds',
  retry: { initialInterval: '100 ms', backoffCoefficient: 2, maximumInterval: '1 second', maximumAttempts: 3 },
});

const { signOidcJwt } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '100 ms', maximumAttempts: 2, nonRetryableErrorTypes: [MintActivityFailure.signingFailed] },
});

// The STS exchange, a local activity too: as a normal activity it cost ~100 ms more per mint
// (p50 150 vs 50 ms through the whole stack, bench/mint.ts). Throttling, 5xx and transport errors
// are retried with backoff (0.5 s, then 1 s) while the caller waits; every other STS error is final.
const { assumeDataRole } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  scheduleToCloseTimeout: '45 seconds',
  retry: {
    initialInterval: '500 ms',
    backoffCoefficient: 2,
    maximumInterval: '4 seconds',
    maximumAttempts: 3,
    nonRetryableErrorTypes: [FailureType.stsFailed, MintActivityFailure.signingFailed],
  },
});

type Outcome = 'ok' | 'denied' | 'audit_error' | 'sts_error' | 'failed';

function mark(stage: string, outcome?: Outcome): void {
  if (outcome) showOutcome(outcome);
  else showStage(stage);
  upsertSearchAttributes([{ key: AkStage, value: stage }, ...(outcome ? [{ key: AkOutcome, value: outcome }] : [])]);
}

/** The ApplicationFailure an activity ended with (its last attempt's), if any. */
function activityCause(e: unknown): ApplicationFailure | undefined {
  if (e instanceof ActivityFailure) return e.cause instanceof ApplicationFailure ? e.cause : undefined;
  return e instanceof ApplicationFailure ? e : undefined;
}

/** Writes one audit row; when the log cannot take it the mint stops here: audit_error, no credential. */
async function audit(input: MintAuditInput): Promise<void> {
  try {
    await recordMintAudit(input);
  } catch {
    mark('done', 'audit_error');
    throw flowFailure(FailureType.auditFailed, 'the mint could not be recorded in the audit log, so no credential was issued; try again later');
  }
}

function grantDetails(grant: MintGrant | undefined): Record<string, string | null> {
  return grant ? { grant_id: grant.grantId, child_wallet: grant.agentAddress } : { grant_id: null, child_wallet: null };
}

/** authorise → audit (denied, or intent): returns the wallet to mint for, or fails forbidden. */
async function authoriseAndRecordIntent(
  kind: MintKind,
  req: MintRequest,
  extra: Record<string, string | number>,
): Promise<{ wallet: string; grant?: MintGrant }> {
  const base = { kind, requestId: req.requestId, omniAccount: req.caller.omniAccount };
  const who = {
    auth: req.caller.authKind,
    method: req.caller.method ?? null,
    session_wallet: req.caller.wallet ?? null,
    bearer_hash: req.caller.bearerHash,
    http_request_id: req.httpRequestId ?? null,
  };
  let decision;
  try {
    decision = await authoriseMint(req);
  } catch (e) {
    mark('done', 'failed');
    throw ApplicationFailure.create({
      type: MintActivityFailure.authoriseFailed,
      message: activityCause(e)?.message ?? 'authorisation failed',
      nonRetryable: true,
    });
  }
  if (!decision.allowed) {
    await audit({ ...base, phase: 'denied', details: { ...who, reason: decision.reason, grant_id: decision.grantId ?? null } });
    mark('done', 'denied');
    throw flowFailure(FailureType.forbidden, decision.reason);
  }
  await audit({ ...base, phase: 'intent', details: { ...who, ...extra, wallet: decision.wallet, ...grantDetails(decision.grant) } });
  mark('minting');
  return { wallet: decision.wallet, grant: decision.grant };
}

/**
 * POST /v1/mint-oidc-jwt (workflow id mint/<request_id>): authorise → audit intent → sign →
 * audit outcome → the token. Nothing leaves before its audit row is durable.
 */
export async function mintOidcJwtWorkflow(req: MintRequest): Promise<OidcJwtMinted | SealedOidcJwt> {
  const { wallet, grant } = await authoriseAndRecordIntent('oidc', req, {});
  const base = { kind: 'oidc' as const, requestId: req.requestId, omniAccount: req.caller.omniAccount };
  let signed;
  try {
    signed = await signOidcJwt({ requestId: req.requestId, wallet, grant, actorOmni: req.caller.omniAccount, sealTo: req.sealTo });
  } catch (e) {
    const message = activityCause(e)?.message ?? 'signing failed';
    await audit({ ...base, phase: 'failed', details: { wallet, error: message } });
    mark('done', 'failed');
    throw ApplicationFailure.create({ type: MintActivityFailure.signingFailed, message, nonRetryable: true });
  }
  await audit({ ...base, phase: 'ok', details: { wallet, ...grantDetails(grant), kid: signed.kid, jwt_hash: signed.jwtHash, expiration: signed.expiration } });
  mark('done', 'ok');
  // Sealed when the request carried a key (every run since sealing); runs recorded before it carry the JWT.
  if (signed.sealed !== undefined) return { sealed: signed.sealed, wallet, expiration: signed.expiration };
  return { jwt: signed.jwt ?? '', wallet, expiration: signed.expiration };
}

/**
 * POST /v1/mint-aws-creds (workflow id mint/<request_id>): authorise → audit intent → sign an
 * OIDC JWT and exchange it at STS → audit outcome → the credentials.
 */
export async function mintAwsCredsWorkflow(req: MintAwsRequest): Promise<AwsCredsMinted | SealedAwsCreds> {
  const signed = req.signedIntent;
  const proof: Record<string, string> = signed
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
  const { wallet, grant } = await authoriseAndRecordIntent('aws', req, { duration_seconds: req.durationSeconds, ...proof });
  const base = { kind: 'aws' as const, requestId: req.requestId, omniAccount: req.caller.omniAccount };
  let assumed;
  try {
    assumed = await assumeDataRole({
      requestId: req.requestId,
      wallet,
      grant,
      durationSeconds: req.durationSeconds,
      actorOmni: req.caller.omniAccount,
      sealTo: req.sealTo,
    });
  } catch (e) {
    const cause = activityCause(e);
    const stsCode = (cause?.details?.[0] as { sts_code?: string } | undefined)?.sts_code ?? null;
    const signing = cause?.type === MintActivityFailure.signingFailed;
    const message = cause?.message ?? 'the STS exchange failed';
    await audit({ ...base, phase: 'failed', details: { wallet, sts_code: stsCode, error: message } });
    if (signing) {
      mark('done', 'failed');
      throw ApplicationFailure.create({ type: MintActivityFailure.signingFailed, message, nonRetryable: true });
    }
    mark('done', 'sts_error');
    const gaveUp = cause?.type === MintActivityFailure.stsTransient ? ' (gave up after retrying)' : '';
    throw flowFailure(FailureType.stsFailed, `${message}${gaveUp}`);
  }
  await audit({
    ...base,
    phase: 'ok',
    details: {
      wallet,
      ...grantDetails(grant),
      access_key_id: assumed.accessKeyId,
      session_name: assumed.sessionName,
      role_arn: assumed.roleArn,
      kid: assumed.kid,
      jwt_hash: assumed.jwtHash,
      expiration: assumed.expiration,
      sts_attempt: assumed.attempt,
    },
  });
  mark('done', 'ok');
  if (assumed.sealed !== undefined) return { sealed: assumed.sealed, access_key_id: assumed.accessKeyId, expiration: assumed.expiration, wallet };
  return {
    access_key_id: assumed.accessKeyId,
    secret_access_key: assumed.secretAccessKey ?? '',
    session_token: assumed.sessionToken ?? '',
    expiration: assumed.expiration,
    wallet,
  };
}
