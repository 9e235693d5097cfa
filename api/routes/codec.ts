/**
 * The Temporal UI's codec endpoint. Checks here: the ops token, the namespace, the CORS origin,
 * the payloads' form and the per-address rate limit; the audit row written before anything is
 * decoded is services/ops-audit.ts's.
 */
import type { Payload } from '@temporalio/common';
import type { JSONPayload } from '@temporalio/common/lib/proto-utils';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CodecError } from '../../lib/codec';
import { BrokerError } from '../../lib/errors';
import { brokerDataConverter } from '../../adapters/temporal-options';
import { recordCodecCall } from '../../services/ops-audit';
import { errorBody } from '../schemas';

/** The codec payloads the Temporal UI sends in one call are bigger than any API body. */
const CODEC_BODY_LIMIT_BYTES = 4 * 1024 * 1024;
const MAX_PAYLOADS = 10_000;
// What the Temporal UI sends (Authorization and Authorization-Extras only with "pass access token").
const ALLOWED_HEADERS = 'authorization, authorization-extras, content-type, x-namespace';

// Proto3 JSON of temporal.api.common.v1.Payloads: bytes fields are base64 (standard or URL-safe).
const base64 = z.string().regex(/^[A-Za-z0-9+/_-]*={0,2}$/, 'must be base64');
const jsonPayload = z.object({ metadata: z.record(z.string(), base64).nullish(), data: base64.nullish() });
// proto3 JSON leaves out an empty repeated field: the CLI sends `{}` for no payloads.
const payloadsBody = z.object({ payloads: z.array(jsonPayload).max(MAX_PAYLOADS).default([]) });
const payloadsAnswer = z.object({ payloads: z.array(z.object({ metadata: z.record(z.string(), z.string()), data: z.string().optional() })) });

function fromJson(p: JSONPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]): [string, Uint8Array] => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(p.data ?? '', 'base64'),
  };
}

function toJson(p: Payload): { metadata: Record<string, string>; data?: string } {
  const metadata = Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]): [string, string] => [k, Buffer.from(v).toString('base64')]));
  return p.data && p.data.length > 0 ? { metadata, data: Buffer.from(p.data).toString('base64') } : { metadata };
}

/**
 * The Temporal Web UI's (and CLI's) remote codec endpoint: POST /codec/decode and /codec/encode
 * speak Temporal's codec-server protocol (Payloads as proto3 JSON) through the broker's own
 * AES-GCM payload codec, so operators holding BROKER_OPS_TOKEN can read flow payloads. Without an
 * ops token configured the routes do not exist (404). CORS answers the configured UI origins.
 */
export default async function codecRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets } = app.deps;
  const opsToken = config.BROKER_OPS_TOKEN;
  if (!opsToken) return;
  // Accepted calls are limited too: a leaked ops token cannot pull histories in bulk unnoticed.
  const callsPerIp = app.requestLimit({ name: 'codec:ip', max: config.BROKER_RATE_LIMIT_CODEC_PER_MINUTE, windowMs: 60_000 });
  const [codec] = brokerDataConverter(secrets).payloadCodecs ?? [];
  if (!codec) throw new Error('the broker data converter has no payload codec');
  const origins = new Set(
    config.BROKER_CODEC_CORS_ORIGINS.split(',')
      .map((o) => o.trim().replace(/\/+$/, ''))
      .filter(Boolean),
  );

  // Encapsulated to this plugin: every answer of the codec routes (errors too) carries CORS for an allowed origin.
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (origin === undefined || !origins.has(origin)) return;
    void reply.header('access-control-allow-origin', origin);
    void reply.header('access-control-allow-credentials', 'true');
    void reply.header('vary', 'Origin');
  });

  /** Runs before the body is read, so a caller without the token cannot make the broker parse megabytes. */
  async function requireOpsToken(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    // A browser names the page's origin on every POST; only the configured UIs may use the codec
    // from a page. Without this, a page whose name is rebound to a local codec proxy that adds the
    // token (scripts/codec-proxy.ts, an ops nginx) reads decoded payloads same-origin, needing no CORS.
    const origin = request.headers.origin;
    if (origin !== undefined && !origins.has(origin)) throw new BrokerError('forbidden', 'origin not allowed; add it to BROKER_CODEC_CORS_ORIGINS');
    const header = request.headers.authorization;
    if (!header) {
      void reply.header('www-authenticate', 'Bearer realm="agentkeys-broker codec"');
      throw new BrokerError('unauthorized', 'missing Authorization: Bearer <ops token>');
    }
    // One budget of wrong tokens per source with /readyz (api/plugins/ops-token.ts); past it, 429 whatever is sent.
    if ((await app.opsBearer(request)) !== 'ops') throw new BrokerError('forbidden', 'the bearer is not the ops token');
    // The CLI sends an empty X-Namespace; the UI sends the namespace on screen.
    const namespace = request.headers['x-namespace'];
    if (namespace !== undefined && namespace !== '' && namespace !== config.TEMPORAL_NAMESPACE) {
      throw new BrokerError('forbidden', `this codec serves namespace ${config.TEMPORAL_NAMESPACE} only`);
    }
    await callsPerIp(request);
  }

  /**
   * One audit row per accepted call, durable before anything is decoded (fail closed: no row, no
   * answer). The codec protocol names no workflow: the row says who (address, user agent), what
   * (op, payload count, bytes) and the namespace; the request id ties it to the access log.
   */
  async function auditCall(request: FastifyRequest, op: 'decode' | 'encode', payloads: number, bytes: number): Promise<void> {
    const userAgent = request.headers['user-agent'];
    try {
      await recordCodecCall(app.deps, {
        op,
        requestId: request.id,
        address: request.ip,
        userAgent: typeof userAgent === 'string' ? userAgent : null,
        namespace: config.TEMPORAL_NAMESPACE,
        payloads,
        bytes,
      });
    } catch (e) {
      request.log.error({ err: e }, 'codec call could not be audited');
      throw new BrokerError('unavailable', 'the audit log cannot record this call right now, so nothing was decoded; try again later');
    }
  }

  for (const op of ['decode', 'encode'] as const) {
    const path = `/codec/${op}`;

    app.options(path, { schema: { hide: true } }, async (request, reply) => {
      const origin = request.headers.origin;
      if (origin === undefined || !origins.has(origin)) throw new BrokerError('forbidden', 'origin not allowed; add it to BROKER_CODEC_CORS_ORIGINS');
      return reply
        .code(204)
        .header('access-control-allow-methods', 'POST, OPTIONS')
        .header('access-control-allow-headers', ALLOWED_HEADERS)
        .header('access-control-max-age', '600')
        .send();
    });

    app.post(
      path,
      {
        bodyLimit: CODEC_BODY_LIMIT_BYTES,
        onRequest: requireOpsToken,
        schema: {
          tags: ['ops'],
          summary: op === 'decode' ? 'Decrypt Temporal payloads for the Web UI (ops token)' : 'Encrypt Temporal payloads for the Web UI (ops token)',
          description:
            'Temporal\'s codec-server protocol: {"payloads": [{"metadata": {key: base64}, "data": base64}]}. Optional X-Namespace must be the broker\'s namespace.',
          security: [{ bearer: [] }],
          body: payloadsBody,
          response: { 200: payloadsAnswer, 400: errorBody, 401: errorBody, 403: errorBody, 413: errorBody, 429: errorBody, 503: errorBody },
        },
      },
      async (request) => {
        const payloads = request.body.payloads.map(fromJson);
        await auditCall(
          request,
          op,
          payloads.length,
          payloads.reduce((n, p) => n + (p.data?.length ?? 0), 0),
        );
        try {
          const out = op === 'decode' ? await codec.decode(payloads) : await codec.encode(payloads);
          return { payloads: out.map(toJson) };
        } catch (e) {
          if (e instanceof CodecError) throw new BrokerError('bad_request', e.message);
          throw e;
        }
      },
    );
  }
}
