import { randomBytes } from 'node:crypto';
import { WithStartWorkflowOperation, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { peekEmailSend } from '../../db/email-sends';
import {
  EMAIL_LOCAL_PART_MAX_OCTETS,
  emailCodeDigest,
  emailCodeRetryIds,
  emailKey,
  emailLocalPartOctets,
  emailRetryKeyDigest,
  normalizeEmail,
} from '../../lib/email-login-code';
import { canonicalClientAddress, requesterNetwork } from '../../lib/client-address';
import { emailSendKey, emailSendNetworkKey, emailSendPolicy, emailSendRefusalMessage } from '../../lib/email-send-budget';
import { requestIdDigest } from '../../lib/digest';
import { BrokerError, rateLimited } from '../../lib/errors';
import { AkFlow, AkStage } from '../../lib/search-attributes';
import { LOGIN_METHODS } from '../../lib/login-methods';
import {
  EMAIL_LOGIN_ID_PREFIX,
  requestCodeUpdate,
  submitCodeUpdate,
  type CodeDispatched,
  type EmailCodeLoginInput,
  type RequestCodeInput,
} from '../../workflows/email-login.definitions';
import type { emailCodeLoginWorkflow } from '../../workflows/email-login';
import { driveRequestFlow } from '../request-flows';
import { issueSession } from '../session-issue';
import { fitsIdentityString } from '../../lib/omni';
import { commonErrors, errorBody, idempotencyKeyOf, loginSessionSchema } from '../schemas';

const emailSchema = z
  .string()
  .max(254, 'email is longer than 254 characters')
  .refine(
    (e) => emailLocalPartOctets(e.trim()) <= EMAIL_LOCAL_PART_MAX_OCTETS,
    `email local part is longer than ${EMAIL_LOCAL_PART_MAX_OCTETS} octets (RFC 5321)`,
  )
  .pipe(z.email('email is not a valid address'))
  .transform(normalizeEmail)
  // The TEE hashes only the first 64 bytes of an identity (lib/omni.ts): two longer addresses that
  // share them would be one account, so this door refuses them (docs/tee-account.md).
  .refine(fitsIdentityString, 'email is longer than 64 bytes, which an OmniAccount cannot tell apart');

/** A request id: 32 random hex, held by the requester alone (its flow is known by a keyed digest of it). */
const REQUEST_ID_RE = /^[0-9a-f]{32}$/;
const requestIdSchema = z.string().regex(REQUEST_ID_RE, 'request_id is malformed');

/**
 * The workflow id of a request started by 1.1.0 (emailLoginRequestWorkflow, retired): the request
 * id itself. 32 hex, never a digest id (64 hex), so neither can reach the other's flow. Remove
 * with that type (docs/versioning.md, "Retired workflow types").
 */
const retiredWorkflowIdOf = (requestId: string): string => EMAIL_LOGIN_ID_PREFIX + requestId;

/** Email + one-time code login (docs/contracts.md §5): one emailCodeLoginWorkflow per requester. */
export default async function sessionEmailRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal, db } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();
  const settings: EmailCodeLoginInput['settings'] = {
    ttlSeconds: config.BROKER_EMAIL_CODE_TTL_SECONDS,
    maxAttempts: config.BROKER_EMAIL_MAX_ATTEMPTS,
    resendCooldownSeconds: config.BROKER_EMAIL_RESEND_COOLDOWN_SECONDS,
    maxSends: config.BROKER_EMAIL_MAX_SENDS,
    retryWindowSeconds: config.BROKER_EMAIL_RETRY_WINDOW_SECONDS,
    sendBackoffMs: config.BROKER_EMAIL_SEND_BACKOFF_MS,
    // The first dispatch comes with the start; a run it never reached ends after this.
    firstDispatchSeconds: 60,
  };
  const codePerIp = app.requestLimit({ name: 'email_code:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const loginPerIp = app.requestLimit({ name: 'email_login:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const sendPolicy = emailSendPolicy(config);
  const keySpent = () => new BrokerError('conflict', 'the login request this Idempotency-Key opened has ended; use a new key');
  /** The workflow id of a login request: email-login/<keyed digest of its request id>. */
  const workflowIdOf = (requestId: string): string => EMAIL_LOGIN_ID_PREFIX + requestIdDigest(secrets.hmacSecret, 'email-login', requestId);

  /** Drives the flow of an existing request: its own, or else (a request 1.1.0 opened, while such runs can be open) the retired one. */
  const onRequestFlow = <T>(requestId: string, call: (workflowId: string) => Promise<T>, notFound: BrokerError): Promise<T> =>
    driveRequestFlow(app.driveFlow, [workflowIdOf(requestId), retiredWorkflowIdOf(requestId)], call, notFound);

  /** Undefined when the flow is unknown (a lookup the flow errors map to `expired`). */
  async function unlessUnknown<T>(call: () => Promise<T>): Promise<T | undefined> {
    try {
      return await app.driveFlow(call);
    } catch (e) {
      if (e instanceof BrokerError && e.kind === 'expired') return undefined;
      throw e;
    }
  }

  /**
   * Under an Idempotency-Key: once the login request the key names has ended, the key is spent
   * (409). Temporal keeps a closed flow's Update outcomes and answers a repeated Update id with
   * them — on a plain Update and on Update-with-Start alike — so without this check a repeat would
   * get the 202 of a request that is gone.
   */
  async function refuseSpentKey(workflowId: string): Promise<void> {
    const described = await unlessUnknown(() => temporal.workflow.getHandle(workflowId).describe());
    if (described !== undefined && described.status.name !== 'RUNNING') throw keySpent();
  }

  /** The answer an earlier try under the same Idempotency-Key got (its Update's outcome: the same 202, or the same refusal), or undefined when there was none. */
  async function earlierDispatch(workflowId: string, updateId: string): Promise<CodeDispatched | undefined> {
    return unlessUnknown(() => temporal.workflow.getHandle(workflowId).getUpdateHandle<CodeDispatched>(updateId).result());
  }

  app.post(
    '/v1/session/email_code',
    {
      config: { loginStep: 'code' },
      schema: {
        tags: ['session'],
        summary: 'Mail a one-time login code',
        description:
          'Answers the same 202 for any syntactically valid address. Without request_id it opens a new login request (its own code, ' +
          'its own attempt budget); with the request_id of a live request for the same address it mails that request a new code ' +
          '(the previous code of that request stops working). Codes to one mailbox (+tags, and dots at Gmail, ignored) are limited ' +
          `across all requests: per requester network (IPv4 /24, IPv6 /48) one per ${config.BROKER_EMAIL_RESEND_COOLDOWN_SECONDS} s and ` +
          `${config.BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR} per hour, and ${config.BROKER_RATE_LIMIT_EMAIL_PER_HOUR} per hour in all ` +
          '(429 rate_limited with Retry-After). ' +
          'With an Idempotency-Key header, a repeat (same address, same request_id or none, same key) answers what the first try answered ' +
          'and mails nothing; a key whose login request has ended is a 409.',
        body: z.object({ email: emailSchema, request_id: requestIdSchema.optional() }),
        response: {
          202: z.object({ request_id: z.string(), expires_at: z.number().int(), resend_after: z.number().int() }),
          409: errorBody,
          410: errorBody,
          ...commonErrors,
        },
      },
    },
    async (request, reply) => {
      const { email, request_id } = request.body;
      const key = emailKey(secrets.hmacSecret, email);
      // The send budget's keys: the mailbox as delivered (+tags, Gmail's dots), the requester's network.
      const sendKey = emailSendKey(secrets.hmacSecret, email);
      const networkKey = emailSendNetworkKey(secrets.hmacSecret, requesterNetwork(canonicalClientAddress(request)));
      const idempotencyKey = idempotencyKeyOf(request, 'anyone');
      await codePerIp(request);
      // Under a key, the request id and the dispatch's Update id come from the key: a repeat finds
      // the first try's flow and Temporal answers it that Update's outcome instead of running it again.
      const retryIds = idempotencyKey === undefined ? undefined : emailCodeRetryIds(secrets.hmacSecret, key, idempotencyKey, request_id);
      const requestId = request_id ?? retryIds?.requestId ?? randomBytes(16).toString('hex');
      const workflowId = workflowIdOf(requestId);
      if (retryIds) await refuseSpentKey(workflowId);
      // The mailbox's budget for this requester's network, read before anything starts: a refusal
      // starts no flow. The send activity re-checks under a lock and reserves (two requests racing
      // here both pass). A keyed repeat whose first try sent the code is inside the cooldown: it
      // gets that first answer (the request is open: checked above).
      const budget = await peekEmailSend(db, { addressKey: sendKey, networkKey, nowMs: now(), policy: sendPolicy });
      if (!budget.ok) {
        const earlier = retryIds && (await earlierDispatch(workflowId, retryIds.updateId));
        if (earlier) return reply.code(202).send(earlier);
        throw rateLimited(emailSendRefusalMessage(budget.reason), budget.retryAfterSeconds);
      }

      let dispatched: CodeDispatched;
      const update = {
        args: [{ email_key: key, network_key: networkKey }] as [RequestCodeInput],
        ...(retryIds ? { updateId: retryIds.updateId } : {}),
      };
      if (request_id !== undefined) {
        dispatched = await onRequestFlow(
          request_id,
          (id) => temporal.workflow.getHandle(id).executeUpdate(requestCodeUpdate, update),
          new BrokerError('expired', 'this login request has expired or is unknown; ask for a new code without request_id'),
        );
      } else {
        const input: EmailCodeLoginInput = { email, email_key: key, code_salt: randomBytes(16).toString('hex'), settings, request_id: requestId };
        const startWorkflowOperation = new WithStartWorkflowOperation<typeof emailCodeLoginWorkflow>(LOGIN_METHODS.email.workflowType, {
          workflowId,
          taskQueue: config.BROKER_TASK_QUEUE,
          args: [input],
          // A keyed repeat joins the first try's flow while it runs; once it has ended, the key is spent.
          workflowIdConflictPolicy: retryIds ? 'USE_EXISTING' : 'FAIL',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          ...LOGIN_METHODS.email.metadata,
          typedSearchAttributes: [
            { key: AkFlow, value: LOGIN_METHODS.email.flow },
            { key: AkStage, value: 'started' },
          ],
        });
        try {
          dispatched = await app.driveFlow(() => temporal.workflow.executeUpdateWithStart(requestCodeUpdate, { ...update, startWorkflowOperation }));
        } catch (e) {
          if (!(retryIds && e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
          const earlier = await earlierDispatch(workflowId, retryIds.updateId);
          if (!earlier) throw keySpent();
          dispatched = earlier;
        }
      }
      request.log.info({ flow: 'email_login', email_key: key, workflow_id: workflowId, resend: request_id !== undefined }, 'login code dispatched');
      return reply.code(202).send(dispatched);
    },
  );

  app.post(
    '/v1/session/email_login',
    {
      config: { loginStep: 'login' },
      schema: {
        tags: ['session'],
        summary: 'Exchange the mailed code for a session',
        description:
          'With an Idempotency-Key header, a repeat of a successful exchange (same request_id, same code, same key) within ' +
          `${config.BROKER_EMAIL_RETRY_WINDOW_SECONDS} s answers a fresh session for the same account (recorded and audited as a retry); ` +
          'another key, another code or a later repeat gets 410 as without a key.',
        body: z.object({ request_id: requestIdSchema, code: z.string().regex(/^\d{6}$/, 'code must be the 6 digits from the mail') }),
        response: { 200: loginSessionSchema, 410: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await loginPerIp(request);
      const { request_id, code } = request.body;
      const idempotencyKey = idempotencyKeyOf(request, 'anyone');
      // The code and the key are digested bound to the flow they are submitted to.
      const submit = (workflowId: string) => {
        const code_digest = emailCodeDigest(secrets.hmacSecret, workflowId, code);
        const retry_key_digest = idempotencyKey === undefined ? undefined : emailRetryKeyDigest(secrets.hmacSecret, workflowId, idempotencyKey);
        return temporal.workflow
          .getHandle(workflowId)
          .executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest, ...(retry_key_digest ? { retry_key_digest } : {}) }] });
      };
      const session = await onRequestFlow(request_id, submit, new BrokerError('expired', 'this request has expired or is unknown'));
      request.log.info({ flow: 'email_login', omni_account: session.omni_account }, 'email login succeeded');
      return issueSession(app.deps, session);
    },
  );
}
