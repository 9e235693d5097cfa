/**
 * "A login happened", defined once: recordLogin is called by the completeLogin activity (the end
 * of every workflow login) and by the API's stateless wallet login (no workflow), so it lives
 * below both. Checks here: only what the transaction decides — a one-time proof already used by
 * another login (any of its keys already in used_signatures) and an identity the OmniAccount
 * derivation refuses. The proof's signature, time window and keys are decided before (route or
 * workflow).
 */
import type { BrokerSecrets } from '../adapters/secrets';
import { appendAudit } from '../db/audit';
import { withTransaction, type Db } from '../db/pool';
import { insertSession, sessionExists, sessionOwner } from '../db/sessions';
import { consumeProof } from '../db/used-signatures';
import { recordMainWallet, upsertUserOnLogin } from '../db/users';
import type { Config } from '../lib/config';
import { hmacHex } from '../lib/digest';
import { AgentKeysError } from '../lib/errors';
import { omniAccountOf, type Identity } from '../lib/omni';
import type { LoginMethod, LoginOutcome } from '../lib/login-methods';

export interface CompleteLoginInput {
  method: LoginMethod;
  identity: Identity;
  requestId: string;
  /** The EVM address that signed in (wallet logins): recorded as the account's main wallet. */
  wallet?: string;
  /**
   * A one-time proof (e.g. the hash of a wallet signature) consumed in the same transaction as the
   * session (db/used-signatures.ts); a proof already used by another login throws
   * LoginProofReplayedError. `aliases` are further keys of the same proof (the stateless wallet
   * login's (address, message) key beside the signature's): all are consumed together, and any one
   * already used is a replay. `expiresAt` is unix seconds (keep the rows at least as long as the
   * proof could be accepted).
   */
  consumeProof?: { hash: string; aliases?: string[]; purpose: string; expiresAt: number };
  /**
   * A second session for a login that already succeeded in this run (a repeat under the client's
   * Idempotency-Key whose first answer was lost): its own jti, session row and audit row (marked
   * `retry`), idempotent like the first.
   */
  reissue?: boolean;
}

/** What recording a login needs: the broker's config and keys, the pool, the clock. */
export interface LoginRecordDeps {
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
  now: () => number;
}

/** The proof in `consumeProof` was already used by another login (the caller answers 409). */
export class LoginProofReplayedError extends AgentKeysError {
  override readonly code: string = 'ERR_LOGIN_PROOF_REPLAYED';
  constructor() {
    super('this signature has already been used; sign a new message');
  }
}

/** This login's session id already names another account's (or method's) session: nothing is recorded. */
export class LoginRecordedForAnotherError extends AgentKeysError {
  override readonly code: string = 'ERR_LOGIN_RECORDED_FOR_ANOTHER';
  constructor() {
    super('this sign-in was already completed for another account; start a new one');
  }
}

/**
 * Records one login: consumes the one-time proof (if any), upserts the user and main wallet,
 * inserts the session and appends the hash-chained audit row, all in one transaction, and returns
 * what the session is. It signs no token: the API does (api/session-issue.ts), so a workflow
 * history that holds this result holds nothing a caller could present.
 *
 * `jti` and `idemKey` make it idempotent for a caller that retries (the activity derives both from
 * its workflow run): a proof already present is accepted only when this very jti's session holds
 * it. Throws LoginProofReplayedError when the proof belongs to another login; any other error is
 * the database's (nothing was written).
 */
export async function recordLogin(deps: LoginRecordDeps, input: CompleteLoginInput, key: { jti: string; idemKey: string }): Promise<LoginOutcome> {
  const { config, secrets } = deps;
  const { jti } = key;
  // The front doors take no identity over 64 bytes either (docs/tee-account.md, "Identity lengths").
  const omniAccount = omniAccountOf(config.BROKER_CLIENT_ID, input.identity);
  const nowSeconds = Math.floor(deps.now() / 1000);
  let expiresAt = nowSeconds + config.BROKER_LOGIN_SESSION_TTL_SECONDS;
  let issuedAt = nowSeconds;
  const userId = await withTransaction(deps.db, async (tx) => {
    if (input.consumeProof) {
      const p = input.consumeProof;
      // Concurrent copies of one proof queue on its unique key(s) here: the first commits and wins,
      // the others then see its rows (or take over if it rolled back).
      const fresh = await consumeProof(tx, { hash: p.hash, aliases: p.aliases, purpose: p.purpose, expiresAt: new Date(p.expiresAt * 1000) });
      // Already there: fine only if this very login stored it (a retry after a lost commit ack).
      if (!fresh && !(await sessionExists(tx, jti))) throw new LoginProofReplayedError();
    }
    const user = await upsertUserOnLogin(tx, { clientId: config.BROKER_CLIENT_ID, omniAccount, identity: input.identity });
    if (input.wallet) await recordMainWallet(tx, omniAccount, input.wallet);
    const inserted = await insertSession(tx, { jti, omniAccount, method: input.method, expiresAt: new Date(expiresAt * 1000) });
    // A retry of this very login finds its own row; a row of another account or method under this
    // jti means an earlier completion of the same run committed for someone else (a device code
    // approved by one account whose commit went unacknowledged, then by another): handing out a
    // token for this account on that row would give it a session it cannot list or end.
    const owner = inserted ? undefined : await sessionOwner(tx, jti);
    if (owner && (owner.omni_account !== omniAccount || owner.method !== input.method)) throw new LoginRecordedForAnotherError();
    // A retry answers the times its row was recorded with, not its own: the token is signed with
    // them (api/session-issue.ts), and must not outlive its row.
    if (owner) {
      expiresAt = Math.floor(owner.expires_at.getTime() / 1000);
      issuedAt = expiresAt - config.BROKER_LOGIN_SESSION_TTL_SECONDS;
    }
    await appendAudit(tx, {
      event: `login.${input.method}`,
      outcome: 'ok',
      omniAccount,
      requestId: input.requestId,
      idemKey: key.idemKey,
      details: {
        user_id: user.userId,
        first_login: user.created,
        jti_hash: hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32),
        ...(input.reissue ? { retry: true } : {}),
      },
    });
    return user.userId;
  });
  return {
    jti,
    method: input.method,
    ...(input.wallet ? { wallet: input.wallet } : {}),
    issued_at: issuedAt,
    expires_at: expiresAt,
    omni_account: omniAccount,
    user_id: userId,
    identity: input.identity,
  };
}
