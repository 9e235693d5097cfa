import fastifyRateLimit, { normalizeIP, type CreateRateLimitOptions } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { rateLimitRefusals } from '../../lib/metrics';
import { rateLimited } from '../../lib/errors';
import { canonicalClientAddress, canonicalIp } from '../../lib/client-address';

/**
 * Request limits held in this API process, on @fastify/rate-limit: fixed windows in a bounded
 * LRU store per limit (BROKER_RATE_LIMIT_CACHE_SIZE keys; the least recently used key is dropped
 * first, so memory stays bounded whatever the number of sources). Limits that must hold across API
 * replicas live in the flows themselves (cooldowns, send and attempt budgets); these stop one
 * source from flooding one process. docs/security.md lists every limit and what it protects.
 */

/** Prefix length that keys an IPv6 client: one /64 is one subscriber (RFC 6177), who owns all 2^64 addresses in it. */
export const IPV6_PREFIX_BITS = 64;

/**
 * The key of a client address: its one canonical spelling (lib/client-address.ts: brackets, a port,
 * leading zeros and the IPv4-mapped form are the same client), IPv6 cut to its /64.
 */
export function clientAddressKey(ip: string | undefined): string {
  const canonical = canonicalIp(ip);
  return canonical ? normalizeIP(canonical, IPV6_PREFIX_BITS) : 'unknown';
}

export interface LimitOptions {
  /** Names the limit in keys and logs, e.g. "wallet_challenge:ip". */
  name: string;
  /** Requests allowed per key per window. */
  max: number;
  windowMs: number;
}

/**
 * One limit. Call it with the request (key: the client address, IPv6 by /64) or with an explicit
 * key (an account, an address digest): it counts the request and throws rate_limited (429 with
 * Retry-After) once the key is past the limit. Usable as a preHandler.
 */
export interface RequestLimit {
  (request: FastifyRequest, key?: string): Promise<void>;
  /**
   * Throws rate_limited when the key is already past the limit, without counting this request: a
   * limit on failures over secrets no guessing reaches (refresh tokens, the ops token), where a
   * burst of concurrent tries passing one check buys nothing and a place held by each request in
   * flight (reserve) would refuse a fleet's good requests behind one address.
   */
  check(request: FastifyRequest, key?: string): Promise<void>;
  /**
   * For a limit on failures of a guessable secret (a device user code): throws rate_limited when the key's
   * failures so far and its attempts still in flight reach the limit, else holds a place for this
   * attempt until `settle` says how it ended — `settle(true)` counts a failure, `settle(false)` frees
   * the place. Checking the count and counting only after the attempt would let any number of
   * concurrent attempts pass a check none of them had yet counted against.
   */
  reserve(request: FastifyRequest, key?: string): Promise<(failed: boolean) => Promise<void>>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Creates a limit (at registration time, once per route). */
    requestLimit(options: LimitOptions): RequestLimit;
  }
}

export default fp(
  async function rateLimitPlugin(app: FastifyInstance) {
    const cache = app.deps.config.BROKER_RATE_LIMIT_CACHE_SIZE;
    // global: false — no route is limited unless it asks; the limits are the ones listed in docs/security.md.
    await app.register(fastifyRateLimit, { global: false, cache });

    app.decorate('requestLimit', ({ name, max, windowMs }: LimitOptions): RequestLimit => {
      // The explicit key of the call in progress: keyGenerator runs synchronously when the limiter is called.
      const explicitKeys = new WeakMap<FastifyRequest, string>();
      const options = {
        max,
        timeWindow: windowMs,
        // Each limit gets its own store of this size (the plugin-level cache sizes only the global store).
        cache,
        keyGenerator: (request: FastifyRequest) => `${name}:${explicitKeys.get(request) ?? clientAddressKey(canonicalClientAddress(request))}`,
      } as CreateRateLimitOptions;
      const limiter = app.createRateLimit(options);

      /** Attempts holding a place (reserve) per key, in this process: failures that may yet be counted. */
      const inFlight = new Map<string, number>();
      const hold = (key: string, by: number) => {
        const n = (inFlight.get(key) ?? 0) + by;
        if (n > 0) inFlight.set(key, n);
        else inFlight.delete(key);
      };

      function refuse(request: FastifyRequest, ttlMs: number): never {
        request.log.info({ limit: name, max }, 'rate limited');
        rateLimitRefusals.inc({ limit: name });
        throw rateLimited('too many requests; slow down', ttlMs / 1000);
      }

      async function run(request: FastifyRequest, key: string | undefined, increment: boolean) {
        if (key === undefined) explicitKeys.delete(request);
        else explicitKeys.set(request, key);
        return limiter(request, { increment });
      }

      const limit = (async (request: FastifyRequest, key?: string) => {
        const result = await run(request, key, true);
        if (!result.isAllowed && result.isExceeded) refuse(request, result.ttl);
      }) as RequestLimit;
      limit.check = async (request, key) => {
        const result = await run(request, key, false);
        if (!result.isAllowed && result.remaining === 0) refuse(request, Math.max(result.ttl, 1000));
      };
      limit.reserve = async (request, key) => {
        const result = await run(request, key, false);
        if (result.isAllowed) return async () => undefined;
        // The key as the limiter counts it, read back after the call (the client address when none is given).
        const held = result.key;
        // Full with attempts in flight and no failure yet counted (no window, ttl 0): they end in milliseconds.
        if (result.remaining - (inFlight.get(held) ?? 0) <= 0) refuse(request, Math.max(result.ttl, 1000));
        hold(held, 1);
        let settled = false;
        return async (failed: boolean) => {
          if (settled) return;
          settled = true;
          hold(held, -1);
          // Counted, never refused here: the place was held, and the next attempt meets the limit.
          if (failed) await run(request, key, true);
        };
      };
      return limit;
    });
  },
  { name: 'rate-limit' },
);
