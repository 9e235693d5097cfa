/**
 * Google Cloud workload identity federation from the CLI's side (docs/gcp.md): the executable
 * response `agentkeys mint gcp --executable` prints and the external-account credential file
 * `agentkeys configure gcp` writes, in the forms google-auth-library reads
 * (googleapis/google-auth-library-nodejs `src/auth/executable-response.ts`,
 * `src/auth/pluggable-auth-client.ts`).
 */

export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
export const GCP_STS_TOKEN_URL = 'https://sts.googleapis.com/v1/token';
export const GCP_IAM_CREDENTIALS_URL = 'https://iamcredentials.googleapis.com';
/** What the client library sets for the executable it runs. */
export const AUDIENCE_ENV = 'GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE';
export const IMPERSONATED_EMAIL_ENV = 'GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL';

/** A successful executable response (version 1). */
export function executableSuccess(idToken: string, expiration: number): Record<string, unknown> {
  return { version: 1, success: true, token_type: ID_TOKEN_TYPE, id_token: idToken, expiration_time: expiration };
}

/** A failed executable response, printed alone on stdout with exit code 1 (cli/commands/mint.ts says what the library makes of it). */
export function executableFailure(code: string, message: string): Record<string, unknown> {
  return { version: 1, success: false, code, message };
}

/**
 * The longest `timeout_millis` Google's client libraries accept for an executable source (their
 * range is 5 000 to 120 000 ms: google-auth-library 10.9.1, build/src/auth/pluggable-auth-client.js,
 * MAXIMUM_EXECUTABLE_TIMEOUT_MILLIS, refuses a file with more).
 */
export const GCP_EXECUTABLE_MAX_TIMEOUT_MS = 120_000;

/** The external-account credential file (type external_account, an executable credential source). */
export function externalAccountFile(o: {
  audience: string;
  command: string;
  serviceAccount?: string;
  tokenUrl?: string;
  iamCredentialsUrl?: string;
  timeoutMillis?: number;
}): Record<string, unknown> {
  const iam = (o.iamCredentialsUrl ?? GCP_IAM_CREDENTIALS_URL).replace(/\/+$/, '');
  return {
    type: 'external_account',
    audience: o.audience,
    subject_token_type: ID_TOKEN_TYPE,
    token_url: o.tokenUrl ?? GCP_STS_TOKEN_URL,
    ...(o.serviceAccount ? { service_account_impersonation_url: `${iam}/v1/projects/-/serviceAccounts/${o.serviceAccount}:generateAccessToken` } : {}),
    credential_source: { executable: { command: o.command, timeout_millis: o.timeoutMillis ?? 30_000 } },
  };
}
