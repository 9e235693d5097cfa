import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { isDbUnreachable } from '../../db/pool';
import { BrokerError, httpAnswerOf, unavailable, type ErrorCode } from '../../lib/errors';

/** The body of a code's answer (lib/errors.ts) with this message. */
const bodyOf = (code: ErrorCode, message: string) => ({ error: httpAnswerOf(code).error, message });

/** Renders every failure as {"error", "message"} with the contract's status (lib/errors.ts); never leaks internals. */
export default fp(
  async function errorsPlugin(app: FastifyInstance) {
    app.setErrorHandler((errIn: FastifyError | BrokerError | Error, request, reply) => {
      let err = errIn;
      // Postgres not answering within BROKER_DB_QUERY_TIMEOUT_MS (or refusing): 503, never a 500.
      if (isDbUnreachable(err)) {
        request.log.warn({ err }, 'database not answering: 503 unavailable');
        err = unavailable('the broker could not reach its database in time; retry shortly');
      }
      if (err instanceof BrokerError) {
        for (const [k, v] of Object.entries(err.extra.headers ?? {})) void reply.header(k, v);
        return reply.code(err.status).send({ error: err.kind, message: err.message, ...err.extra.body });
      }
      if (hasZodFastifySchemaValidationErrors(err)) {
        // A body that arrived as text (Fastify parses text/plain) is the wrong media type, not a bad field.
        const contentType = request.headers['content-type'];
        if (err.validationContext === 'body' && contentType !== undefined && !/^application\/([\w.+-]*\+)?json\b/i.test(contentType)) {
          return reply.code(415).send(bodyOf('bad_request', 'send a JSON body (Content-Type: application/json)'));
        }
        const first = err.validation[0];
        const path = first?.instancePath && first.instancePath !== '/' ? first.instancePath.replace(/\//g, '.') : '';
        const where = first ? `${err.validationContext ?? 'request'}${path}` : 'request';
        return reply.code(httpAnswerOf('bad_request').status).send(bodyOf('bad_request', `${where}: ${first?.message ?? 'invalid'}`));
      }
      const fe = err as FastifyError;
      if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        return reply.code(httpAnswerOf('payload_too_large').status).send(bodyOf('payload_too_large', 'request body is too large'));
      }
      if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
        const message = fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'send a JSON body (Content-Type: application/json)' : fe.message;
        return reply.code(fe.statusCode).send(bodyOf(fe.statusCode === 404 ? 'not_found' : 'bad_request', message));
      }
      request.log.error({ err }, 'unhandled error');
      return reply.code(500).send(bodyOf('internal', 'internal error; the broker logged the details'));
    });

    app.setNotFoundHandler((request, reply) => reply.code(404).send(bodyOf('not_found', `no route ${request.method} ${request.url.split('?')[0]}`)));
  },
  { name: 'errors' },
);
