import { WithStartWorkflowOperation } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { emailCodeDigest, emailKey } from '../../lib/email-login-code';
import { AkFlow, AkStage } from '../../lib/search-attributes';
import { EMAIL_LOGIN_ID_PREFIX, requestCodeUpdate, submitCodeUpdate, type EmailLoginInput } from '../../workflows/email-login.definitions';
import type { emailLoginWorkflow } from '../../workflows/email-login';
import { driveFlow } from '../flow-errors';
import { fitsIdentityString } from '../../lib/omni';
import { commonErrors, errorBody, loginSessionSchema } from '../schemas';

const emailSchema = z
  .string()
  .max(254, 'email is longer than 254 characters')
  .pipe(z.email('email is not a valid address'))
  .transform((e) => e.trim().toLowerCase())
  // The TEE hashes only the first 64 bytes of an identity (lib/omni.ts): two longer addresses that
  // share them would be one account, so this door refuses them (docs/tee-account.md).
  .refine(fitsIdentityString, 'email is longer than 64 bytes, which an OmniAccount cannot tell apart');

const requestIdSchema = z.string().regex(/^[0-9a-f]{32}\.[0-9a-f]{32}$/, 'request_id is malformed');

/** Email + one-time code login (docs/contracts.md §5), driven by emailLoginWorkflow. */
export default async function sessionEmailRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal } = app.deps;
  const settings: EmailLoginInput['settings'] = {
    ttlSeconds: config.BROKER_EMAIL_CODE_TTL_SECONDS,
    maxAttempts: config.BROKER_EMAIL_MAX_ATTEMPTS,
    resendCooldownSeconds: config.BROKER_EMAIL_RESEND_COOLDOWN_SECONDS,
    maxSends: config.BROKER_EMAIL_MAX_SENDS,
  };

  app.post(
    '/v1/session/email_code',
    {
      schema: {
        tags: ['session'],
        summary: 'Mail a one-time login code',
        description: 'Answers the same 202 for any syntactically valid address. A second call is a resend, refused during the cooldown.',
        body: z.object({ email: emailSchema }),
        response: {
          202: z.object({ request_id: z.string(), expires_at: z.number().int(), resend_after: z.number().int() }),
          ...commonErrors,
        },
      },
    },
    async (request, reply) => {
      const { email } = request.body;
      const key = emailKey(secrets.hmacSecret, email);
      app.rateLimit(`email_code:ip:${request.ip}`, config.BROKER_RATE_LIMIT_IP_PER_MINUTE, 60_000);
      app.rateLimit(`email_code:addr:${key}`, config.BROKER_RATE_LIMIT_EMAIL_PER_HOUR, 3_600_000);
      const startWorkflowOperation = new WithStartWorkflowOperation<typeof emailLoginWorkflow>('emailLoginWorkflow', {
        workflowId: EMAIL_LOGIN_ID_PREFIX + key,
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [{ email, settings }],
        workflowIdConflictPolicy: 'USE_EXISTING',
        typedSearchAttributes: [
          { key: AkFlow, value: 'email_login' },
          { key: AkStage, value: 'started' },
        ],
      });
      const dispatched = await driveFlow(() => temporal.workflow.executeUpdateWithStart(requestCodeUpdate, { startWorkflowOperation }));
      request.log.info({ flow: 'email_login', email_key: key }, 'login code dispatched');
      return reply.code(202).send(dispatched);
    },
  );

  app.post(
    '/v1/session/email_login',
    {
      schema: {
        tags: ['session'],
        summary: 'Exchange the mailed code for a session',
        body: z.object({ request_id: requestIdSchema, code: z.string().regex(/^\d{6}$/, 'code must be the 6 digits from the mail') }),
        response: { 200: loginSessionSchema, 410: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      app.rateLimit(`email_login:ip:${request.ip}`, config.BROKER_RATE_LIMIT_IP_PER_MINUTE, 60_000);
      const { request_id, code } = request.body;
      const workflowId = EMAIL_LOGIN_ID_PREFIX + request_id.split('.')[0];
      const code_digest = emailCodeDigest(secrets.hmacSecret, workflowId, code);
      const handle = temporal.workflow.getHandle(workflowId);
      const session = await driveFlow(() => handle.executeUpdate(submitCodeUpdate, { args: [{ request_id, code_digest }] }));
      request.log.info({ flow: 'email_login', omni_account: session.omni_account }, 'email login succeeded');
      return session;
    },
  );
}
