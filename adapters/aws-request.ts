/**
 * How long the broker's AWS clients (STS, IAM, SES) wait: 3 s to connect, 8 s for the answer, and
 * the answer timeout enforced. Without `throwOnRequestTimeout` the SDK only logs a warning once the
 * request timeout passes and the call goes on waiting — past the activity's own timeout, while its
 * retry runs beside it (a second mail, a second write).
 */
const CONNECTION_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 8000;

/**
 * The longest one call waits: its connection timeout plus its request timeout (the request timer
 * runs from the start, so this is on the safe side). It bounds the wait, not when the service
 * applies a request it received.
 */
export const AWS_CALL_MAX_MS = CONNECTION_TIMEOUT_MS + REQUEST_TIMEOUT_MS;

/** The `requestHandler` of every AWS client; `requestTimeoutMs` is the tests' shorter answer timeout. */
export function awsRequestHandler(requestTimeoutMs = REQUEST_TIMEOUT_MS) {
  return { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: requestTimeoutMs, throwOnRequestTimeout: true };
}
