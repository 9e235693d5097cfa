import { DeleteRolePolicyCommand, IAMClient, NoSuchEntityException, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import type { Config } from '../lib/config';

/**
 * AWS IAM as the kill switch uses it: the inline deny policy on each data role (docs/kill-switch.md).
 * The SDK's own retries are off: the kill switch's activity retry policy decides.
 */
export function createIamClient(config: Pick<Config, 'AWS_REGION' | 'BROKER_IAM_ENDPOINT'>): IAMClient {
  return new IAMClient({
    region: config.AWS_REGION,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 3000, requestTimeout: 8000 },
    ...(config.BROKER_IAM_ENDPOINT ? { endpoint: config.BROKER_IAM_ENDPOINT } : {}),
  });
}

/** Puts the policy on the role, or deletes it when there is none (a missing one is already gone). */
export async function setRolePolicy(client: IAMClient, roleName: string, policyName: string, document: string | undefined): Promise<void> {
  if (document !== undefined) {
    await client.send(new PutRolePolicyCommand({ RoleName: roleName, PolicyName: policyName, PolicyDocument: document }));
    return;
  }
  try {
    await client.send(new DeleteRolePolicyCommand({ RoleName: roleName, PolicyName: policyName }));
  } catch (e) {
    if (!(e instanceof NoSuchEntityException)) throw e;
  }
}
