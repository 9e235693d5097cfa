import { ActivityFailure, ApplicationFailure, patched, proxyLocalActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkOutcome, AkStage } from '../lib/search-attributes';
import { FailureType } from './definitions';
import { showOutcome, showStage } from './progress';
import { flowFailure } from './failures';
import {
  MINT_SIGN_MAX_ATTEMPTS,
  MINT_STS_MAX_ATTEMPTS,
  MintActivityFailure,
  mintCallerDetails,
  mintGrantDetails,
  awsOkDetails,
  oidcOkDetails,
  type AssumedDataRole,
  type AwsCredsMinted,
  type MintAuthorisation,
  type MintStepFailureDetails,
  type SignedOidcJwt,
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
const SHORT_RETRY = { initialInterval: '100 ms', backoffCoefficient: 2, maximumInterval: '1 second', maximumAttempts: 3 };
const SIGN_RETRY = { initialInterval: '100 ms', maximumAttempts: MINT_SIGN_MAX_ATTEMPTS };
const STS_RETRY = {
  initialInterval: '500 ms',
  backoffCoefficient: 2,
  maximumInterval: '4 seconds',
  maximumAttempts: MINT_STS_MAX_ATTEMPTS,
};

const { authoriseMint } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: SHORT_RETRY,
});

// The audit write bounds itself (BROKER_AUDIT_WRITE_TIMEOUT_MS, at most 10 s); three tries within
// 25 s, then fail closed. Both audit steps fit the mint's 1-minute execution timeout.
const { recordMintAudit } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '12 seconds',
  scheduleToCloseTimeout: '25 seconds',
  retry: SHORT_RETRY,
});

const { signOidcJwt } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { ...SIGN_RETRY, nonRetryableErrorTypes: [MintActivityFailure.signingFailed] },
});

// The STS exchange, a local activity too: as a normal activity it cost ~100 ms more per mint
// (p50 150 vs 50 ms through the whole stack, bench/mint.ts). Throttling, 5xx and transport errors
// are retried with backoff (0.5 s, then 1 s) while the caller waits; every other STS error is final.
const { assumeDataRole } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  scheduleToCloseTimeout: '45 seconds',
  retry: { ...STS_RETRY, nonRetryableErrorTypes: [FailureType.stsFailed, MintActivityFailure.signingFailed] },
});

/**
 * The `mint-two-steps` path: two local activities per mint instead of four. Each local activity
 * costs a round trip between the SDK core and the workflow thread (~4-5 ms at c=1, more than most
 * steps' own work), so authorisation goes with the decision's audit row, and signing or the STS
 * exchange with the outcome row; nothing leaves before its row is durable either way.
 */
const MINT_TWO_STEPS = 'mint-two-steps';

// authorise + denied/intent row. A retry re-reads the grants (read-only) and re-writes the row
// under the same idem key (single): both failures are retried, as the two steps were.
const { authoriseAndAuditMint } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  scheduleToCloseTimeout: '25 seconds',
  retry: SHORT_RETRY,
});

// sign + ok/failed row. The activity retries the row's write itself and then fails non-retryable,
// so a retry here only ever re-signs a token nobody received.
const { signOidcJwtAndAudit } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '20 seconds',
  retry: { ...SIGN_RETRY, nonRetryableErrorTypes: [MintActivityFailure.signingFailed, FailureType.auditFailed] },
});

// STS exchange + ok/failed row, with assumeDataRole's retry semantics: throttling, 5xx and
// transport errors retried (0.5 s, then 1 s), every other STS error final. Retrying a step whose
// exchange succeeded would re-mint; it does not happen: once STS has answered, the activity writes
// the outcome row (retrying the write itself) and either returns or fails non-retryable
// (auditFailed). Were it ever re-run anyway, the row's idem key (mint:<workflow>:<run>:ok) keeps the
// ok row single and the extra session is never returned without it.
const { assumeDataRoleAndAudit } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '45 seconds',
  retry: { ...STS_RETRY, nonRetryableErrorTypes: [FailureType.stsFailed, MintActivityFailure.signingFailed, FailureType.auditFailed] },
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
    throw auditFailure();
  }
}

function auditFailure(): ApplicationFailure {
  mark('done', 'audit_error');
  return flowFailure(FailureType.auditFailed, 'the mint could not be recorded in the audit log, so no credential was issued; try again later');
}

/** authorise → audit (denied, or intent): returns the wallet to mint for, or fails forbidden. */
async function authoriseAndRecordIntent(
  kind: MintKind,
  req: MintRequest,
  extra: Record<string, string | number>,
): Promise<{ wallet: string; grant?: MintGrant }> {
  const base = { kind, requestId: req.requestId, omniAccount: req.caller.omniAccount };
  const who = mintCallerDetails(req);
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
  await audit({ ...base, phase: 'intent', details: { ...who, ...extra, wallet: decision.wallet, ...mintGrantDetails(decision.grant) } });
  mark('minting');
  return { wallet: decision.wallet, grant: decision.grant };
}

/** One step (`mint-two-steps`): authorise and write the denied or intent row; the wallet to mint for, or forbidden. */
async function authoriseAudited(kind: MintKind, req: MintRequest, extra: Record<string, string | number>): Promise<{ wallet: string; grant?: MintGrant }> {
  let decision: MintAuthorisation;
  try {
    decision = await authoriseAndAuditMint({ kind, req, extra });
  } catch (e) {
    const cause = activityCause(e);
    if (cause?.type === FailureType.auditFailed) throw auditFailure();
    mark('done', 'failed');
    throw ApplicationFailure.create({ type: MintActivityFailure.authoriseFailed, message: cause?.message ?? 'authorisation failed', nonRetryable: true });
  }
  if (!decision.allowed) {
    mark('done', 'denied');
    throw flowFailure(FailureType.forbidden, decision.reason);
  }
  mark('minting');
  return { wallet: decision.wallet, grant: decision.grant };
}

/**
 * A combined step's final failure: whether its failed row is already written (a failure it raised
 * itself); else (a timeout) the workflow writes it, as on the four-step path.
 */
function stepFailure(e: unknown): { cause?: ApplicationFailure; stsCode: string | null; recorded: boolean } {
  const cause = activityCause(e);
  const details = cause?.details?.[0] as Partial<MintStepFailureDetails> | undefined;
  return { cause, stsCode: details?.sts_code ?? null, recorded: details?.outcome_recorded === true };
}

/**
 * POST /v1/mint-oidc-jwt (workflow id mint/<request_id>): authorise → audit intent → sign →
 * audit outcome → the token. Nothing leaves before its audit row is durable.
 */
export async function mintOidcJwtWorkflow(req: MintRequest): Promise<OidcJwtMinted | SealedOidcJwt> {
  if (patched(MINT_TWO_STEPS)) return mintOidcTwoSteps(req);
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
  await audit({ ...base, phase: 'ok', details: oidcOkDetails(wallet, grant, signed) });
  mark('done', 'ok');
  return oidcResult(signed, wallet);
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
  if (patched(MINT_TWO_STEPS)) return mintAwsTwoSteps(req, proof);
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
  await audit({ ...base, phase: 'ok', details: awsOkDetails(wallet, grant, assumed) });
  mark('done', 'ok');
  return awsResult(assumed, wallet);
}

function oidcResult(signed: SignedOidcJwt, wallet: string): OidcJwtMinted | SealedOidcJwt {
  // Sealed when the request carried a key (every run since sealing); runs recorded before it carry the JWT.
  if (signed.sealed !== undefined) return { sealed: signed.sealed, wallet, expiration: signed.expiration };
  return { jwt: signed.jwt ?? '', wallet, expiration: signed.expiration };
}

function awsResult(assumed: AssumedDataRole, wallet: string): AwsCredsMinted | SealedAwsCreds {
  if (assumed.sealed !== undefined) return { sealed: assumed.sealed, access_key_id: assumed.accessKeyId, expiration: assumed.expiration, wallet };
  return {
    access_key_id: assumed.accessKeyId,
    secret_access_key: assumed.secretAccessKey ?? '',
    session_token: assumed.sessionToken ?? '',
    expiration: assumed.expiration,
    wallet,
  };
}

/** mint-oidc-jwt on the `mint-two-steps` path: authorise + intent row, then sign + outcome row. */
async function mintOidcTwoSteps(req: MintRequest): Promise<OidcJwtMinted | SealedOidcJwt> {
  const { wallet, grant } = await authoriseAudited('oidc', req, {});
  const omniAccount = req.caller.omniAccount;
  let signed;
  try {
    signed = await signOidcJwtAndAudit({ requestId: req.requestId, wallet, grant, actorOmni: omniAccount, omniAccount, sealTo: req.sealTo });
  } catch (e) {
    const { cause, recorded } = stepFailure(e);
    if (cause?.type === FailureType.auditFailed) throw auditFailure();
    const message = cause?.message ?? 'signing failed';
    if (!recorded) await audit({ kind: 'oidc', requestId: req.requestId, omniAccount, phase: 'failed', details: { wallet, error: message } });
    mark('done', 'failed');
    throw ApplicationFailure.create({ type: MintActivityFailure.signingFailed, message, nonRetryable: true });
  }
  mark('done', 'ok');
  return oidcResult(signed, wallet);
}

/** mint-aws-creds on the `mint-two-steps` path: authorise + intent row, then the STS exchange + outcome row. */
async function mintAwsTwoSteps(req: MintAwsRequest, proof: Record<string, string>): Promise<AwsCredsMinted | SealedAwsCreds> {
  const { wallet, grant } = await authoriseAudited('aws', req, { duration_seconds: req.durationSeconds, ...proof });
  const omniAccount = req.caller.omniAccount;
  let assumed;
  try {
    assumed = await assumeDataRoleAndAudit({
      requestId: req.requestId,
      wallet,
      grant,
      durationSeconds: req.durationSeconds,
      actorOmni: omniAccount,
      omniAccount,
      sealTo: req.sealTo,
    });
  } catch (e) {
    const { cause, stsCode, recorded } = stepFailure(e);
    if (cause?.type === FailureType.auditFailed) throw auditFailure();
    const message = cause?.message ?? 'the STS exchange failed';
    if (!recorded) await audit({ kind: 'aws', requestId: req.requestId, omniAccount, phase: 'failed', details: { wallet, sts_code: stsCode, error: message } });
    if (cause?.type === MintActivityFailure.signingFailed) {
      mark('done', 'failed');
      throw ApplicationFailure.create({ type: MintActivityFailure.signingFailed, message, nonRetryable: true });
    }
    mark('done', 'sts_error');
    const gaveUp = cause?.type === MintActivityFailure.stsTransient ? ' (gave up after retrying)' : '';
    throw flowFailure(FailureType.stsFailed, `${message}${gaveUp}`);
  }
  mark('done', 'ok');
  return awsResult(assumed, wallet);
}
