import { BrokerError } from '../lib/errors';
import { z } from 'zod';
import { IDENTITY_TYPES } from '../lib/omni';

/** Wire schemas shared by several surfaces (docs/contracts.md §4/§5). */

export const errorBody = z.object({ error: z.string(), message: z.string() }).passthrough().describe('error');

export const identitySchema = z.object({ type: z.enum(IDENTITY_TYPES), value: z.string() });

export const loginSessionSchema = z.object({
  token: z.string(),
  token_type: z.literal('Bearer'),
  expires_at: z.number().int().describe('unix seconds'),
  omni_account: z.string(),
  user_id: z.string(),
  identity: identitySchema,
});

/** A grant id as POST /v1/grants issues it (docs/contracts.md §6): `grt_` + 32 lower-case hex digits. */
export const grantIdSchema = z.string().regex(/^grt_[0-9a-f]{32}$/, 'grant_id is malformed (expected grt_ and 32 lower-case hex digits)');

/** Responses every route may give besides its success, for the OpenAPI page. */
/** An `Idempotency-Key` header's form (the grants, add_wallet and email routes). */
const idempotencyKeySchema = z.string().regex(/^[\w.:-]{1,128}$/, 'Idempotency-Key must be 1-128 characters of [A-Za-z0-9_.:-]');

/**
 * The request's `Idempotency-Key`, if it sent one; a malformed (or repeated) header is a 400.
 * `minLength`: where the key is not scoped to an authenticated caller (the email routes key it to an
 * address anyone may type), whoever repeats it gets the first answer, so it must be as hard to guess
 * as the request id it stands for: at least 32 characters, e.g. a UUID.
 */
export function idempotencyKeyOf(request: { headers: Record<string, string | string[] | undefined> }, minLength = 1): string | undefined {
  const header = request.headers['idempotency-key'];
  if (header === undefined) return undefined;
  const parsed = idempotencyKeySchema.safeParse(header);
  if (!parsed.success) throw new BrokerError('bad_request', parsed.error.issues[0]?.message ?? 'bad Idempotency-Key');
  if (parsed.data.length < minLength) {
    throw new BrokerError(
      'bad_request',
      `Idempotency-Key must be at least ${minLength} characters here (a random value such as a UUID): a shorter one could be guessed`,
    );
  }
  return parsed.data;
}

/** The least length of an Idempotency-Key that is not scoped to an authenticated caller (idempotencyKeyOf). */
export const UNSCOPED_IDEMPOTENCY_KEY_MIN_LENGTH = 32;

export const commonErrors = { 400: errorBody, 401: errorBody, 429: errorBody, 500: errorBody, 503: errorBody };
