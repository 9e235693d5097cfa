import { isDeepStrictEqual } from 'node:util';
import {
  DeleteRolePolicyCommand,
  GetRolePolicyCommand,
  IAMClient,
  LimitExceededException,
  ListRolePoliciesCommand,
  NoSuchEntityException,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import type { Config } from '../lib/config';
import { AWS_CALL_MAX_MS, awsRequestHandler } from './aws-request';
import { inlinePolicySize } from '../lib/kill-switch';

/**
 * The longest this process waits for one IAM call made with createIamClient (adapters/aws-request.ts).
 * The kill switch starts no write later than this before its attempt's deadline (activities/kill-switch.ts).
 */
export const IAM_CALL_MAX_MS = AWS_CALL_MAX_MS;

/**
 * AWS IAM as the kill switch uses it: the inline deny policy on each data role, and the sizes of the
 * role's other inline policies, which share its budget (docs/kill-switch.md). The SDK's own retries
 * are off: the kill switch's activity retry policy decides.
 */
export function createIamClient(
  config: Pick<Config, 'AWS_REGION' | 'BROKER_IAM_ENDPOINT'>,
  opts: { /** Tests: a shorter answer timeout. */ requestTimeoutMs?: number } = {},
): IAMClient {
  return new IAMClient({
    region: config.AWS_REGION,
    maxAttempts: 1,
    requestHandler: awsRequestHandler(opts.requestTimeoutMs),
    ...(config.BROKER_IAM_ENDPOINT ? { endpoint: config.BROKER_IAM_ENDPOINT } : {}),
  });
}

/** How the kill switch's IAM calls are made: `abortSignal` (the activity's cancellation) aborts each in flight. */
interface IamCallOptions {
  abortSignal?: AbortSignal;
}

/** What setRolePolicy did to one role. */
export interface RolePolicyOutcome {
  /** `unchanged`: the role already held this document, or had no policy to delete. */
  change: 'put' | 'deleted' | 'unchanged';
  /** IAM refused the read (no iam:GetRolePolicy), so the policy was written without comparing. */
  readRefused: boolean;
}

/** IAM refused a PutRolePolicy because the role's inline policies would be over their size together. */
export function isLimitExceeded(e: unknown): boolean {
  return e instanceof LimitExceededException || (e as Error | undefined)?.name === 'LimitExceededException';
}

/** A principal's policy does not allow the call (IAM answers AccessDenied). */
const isAccessDenied = (e: unknown) => (e as Error | undefined)?.name === 'AccessDenied';

/**
 * The role's other inline policies (every one but `exceptPolicyName`) as IAM sizes them against
 * the role's budget (inlinePolicySize), or `refused` when the principal may not list them
 * (iam:ListRolePolicies) or read one (iam:GetRolePolicy): the caller then assumes a reserve.
 */
export type OtherInlinePolicies = { state: 'read'; size: number; names: string[] } | { state: 'refused'; action: 'ListRolePolicies' | 'GetRolePolicy' };

export async function otherInlinePolicies(
  client: IAMClient,
  roleName: string,
  exceptPolicyName: string,
  { abortSignal }: IamCallOptions = {},
): Promise<OtherInlinePolicies> {
  const names: string[] = [];
  let marker: string | undefined;
  do {
    let page;
    try {
      page = await client.send(new ListRolePoliciesCommand({ RoleName: roleName, ...(marker ? { Marker: marker } : {}) }), { abortSignal });
    } catch (e) {
      if (isAccessDenied(e)) return { state: 'refused', action: 'ListRolePolicies' };
      throw e;
    }
    names.push(...(page.PolicyNames ?? []));
    marker = page.IsTruncated ? page.Marker : undefined;
  } while (marker);
  let size = 0;
  const others = names.filter((n) => n !== exceptPolicyName);
  for (const name of others) {
    let encoded: string | undefined;
    try {
      encoded = (await client.send(new GetRolePolicyCommand({ RoleName: roleName, PolicyName: name }), { abortSignal })).PolicyDocument;
    } catch (e) {
      // Deleted since the listing: it takes nothing.
      if (e instanceof NoSuchEntityException) continue;
      if (isAccessDenied(e)) return { state: 'refused', action: 'GetRolePolicy' };
      throw e;
    }
    // URL-encoded as IAM answers it (below); a document that does not decode is counted encoded,
    // which is longer, so never less than IAM counts.
    let text = encoded ?? '';
    try {
      text = decodeURIComponent(text);
    } catch {
      // counted as it came
    }
    size += inlinePolicySize(text);
  }
  return { state: 'read', size, names: others };
}

/** The role's policy as IAM holds it: absent, present (its parsed JSON, undefined if it is not JSON), or unreadable. */
type CurrentPolicy = { state: 'absent' } | { state: 'present'; parsed: unknown } | { state: 'refused' };

async function currentRolePolicy(client: IAMClient, roleName: string, policyName: string, { abortSignal }: IamCallOptions): Promise<CurrentPolicy> {
  let encoded: string | undefined;
  try {
    encoded = (await client.send(new GetRolePolicyCommand({ RoleName: roleName, PolicyName: policyName }), { abortSignal })).PolicyDocument;
  } catch (e) {
    if (e instanceof NoSuchEntityException) return { state: 'absent' };
    // A principal set up before the kill switch read its policy has only the two write permissions:
    // writing as before keeps revocations applied, where failing would leave them all unapplied.
    if (isAccessDenied(e)) return { state: 'refused' };
    throw e;
  }
  // IAM answers the document URL-encoded (RFC 3986) and the SDK hands it on as it came. Anything
  // that does not decode to JSON differs from what the broker writes, so it is written again.
  try {
    return { state: 'present', parsed: JSON.parse(decodeURIComponent(encoded ?? '')) };
  } catch {
    return { state: 'present', parsed: undefined };
  }
}

/**
 * Makes the role's inline policy `document`, or removes it when `document` is undefined. It reads
 * the policy first and writes only when IAM holds something else: every application goes over
 * every role, and IAM's write quota is the AWS account's, shared with every other use of it, so a
 * wake-up that changes nothing must not spend it. Reading each time, rather than remembering what
 * was last written, keeps this right when the policy was changed or deleted out of band.
 * `beforeWrite` is called after the read, just before a PutRolePolicy or DeleteRolePolicy is sent:
 * if it throws, nothing is written and setRolePolicy throws that.
 */
export async function setRolePolicy(
  client: IAMClient,
  roleName: string,
  policyName: string,
  document: string | undefined,
  { abortSignal, beforeWrite }: IamCallOptions & { beforeWrite?: () => void } = {},
): Promise<RolePolicyOutcome> {
  const current = await currentRolePolicy(client, roleName, policyName, { abortSignal });
  const readRefused = current.state === 'refused';
  if (document !== undefined) {
    if (current.state === 'present' && isDeepStrictEqual(current.parsed, JSON.parse(document))) return { change: 'unchanged', readRefused };
    beforeWrite?.();
    await client.send(new PutRolePolicyCommand({ RoleName: roleName, PolicyName: policyName, PolicyDocument: document }), { abortSignal });
    return { change: 'put', readRefused };
  }
  if (current.state === 'absent') return { change: 'unchanged', readRefused };
  beforeWrite?.();
  try {
    await client.send(new DeleteRolePolicyCommand({ RoleName: roleName, PolicyName: policyName }), { abortSignal });
    return { change: 'deleted', readRefused };
  } catch (e) {
    // Already gone (deleted out of band since the read): nothing to do.
    if (!(e instanceof NoSuchEntityException)) throw e;
    return { change: 'unchanged', readRefused };
  }
}
