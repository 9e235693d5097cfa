/**
 * An account's passkeys: registering one (the passkey ceremony's activity, after the attestation
 * was verified), listing them and removing one. Each change is one transaction holding the row and
 * its audit row.
 *
 * Checks here: what the transaction decides — a credential id already registered (to this or
 * another account) is refused unless this very ceremony stored it (a retry); an account holds at
 * most MAX_PASSKEYS_PER_ACCOUNT passkeys (a registration past it is refused, and so are its
 * options); a removal names a passkey of the caller's own account, and is refused when it would
 * take the last passkey of an account whose identity is a passkey (it could never sign in again).
 * The cap and the last-passkey rule are decided under the account's passkey lock
 * (lockPasskeysOfAccount), so two registrations, or two removals, cannot both pass. A removal
 * first needs a recent login of the caller (requireRecentLogin, services/sessions.ts, the one
 * check of it), asked here before anything is read. The attestation, origin, rp id and flags are
 * checked before (activities/passkey-ceremony.ts); who the caller is, by the API
 * (api/plugins/auth.ts).
 */
import { appendAudit } from '../db/audit';
import {
  countPasskeys,
  deletePasskey,
  findPasskey,
  insertPasskey,
  listPasskeys,
  lockPasskeysOfAccount,
  userHandleOfAccount,
  type NewPasskey,
  type PasskeyRow,
} from '../db/passkeys';
import { withTransaction, type Db } from '../db/pool';
import { findUserByOmni } from '../db/users';
import { sha256Hex } from '../lib/digest';
import { BrokerError } from '../lib/errors';
import type { PasskeyView } from '../lib/passkeys';
import { requireRecentLogin } from './sessions';

export function passkeyView(row: PasskeyRow): PasskeyView {
  return {
    id: row.credential_id,
    name: row.name,
    created_at: Math.floor(row.created_at.getTime() / 1000),
    last_used_at: row.last_used_at ? Math.floor(row.last_used_at.getTime() / 1000) : null,
    backup_eligible: row.backup_eligible,
    backed_up: row.backed_up,
    transports: row.transports,
    aaguid: row.aaguid,
  };
}

/** The audit rows name a passkey by a digest of its credential id, never the id itself. */
const auditName = (credentialId: string) => sha256Hex(`passkey:${credentialId}`).slice(0, 32);

/**
 * The most passkeys one account holds, as many as wallet slots by default. Without a cap, a recent
 * login could register junk passkeys past what a listing shows and hide one among them; with it, a
 * listing shows every passkey of the account.
 */
export const MAX_PASSKEYS_PER_ACCOUNT = 20;

/** How many a listing shows: the cap, and what listings showed before it, for accounts that hold more from then. */
const LISTED_PASSKEYS = 100;

/** The refusal of one passkey past the cap (409 `conflict`): what to do about it. */
export const passkeysFullMessage = (count: number) =>
  `this account already has ${count} passkeys, the most allowed (${MAX_PASSKEYS_PER_ACCOUNT}): remove one it no longer uses first, then add the new one`;

export type RegisterOutcome = { status: 'registered'; passkey: PasskeyView } | { status: 'taken'; ownAccount: boolean } | { status: 'full'; count: number };

/**
 * Stores a verified credential under its account with its audit row (`passkey.registered`).
 * Idempotent for one ceremony (`p.challengeHash`): a retry finds its own row and answers it again.
 * An account that already holds MAX_PASSKEYS_PER_ACCOUNT passkeys gets no other (`full`, nothing
 * written), counted under the account's passkey lock so racing registrations cannot pass it together.
 */
export async function registerPasskey(deps: { db: Db }, p: NewPasskey, audit: { requestId: string; idemKey: string }): Promise<RegisterOutcome> {
  return withTransaction(deps.db, async (tx) => {
    // Held until commit: a concurrent registration (or removal) of this account waits here, then counts what this one left.
    const ids = await lockPasskeysOfAccount(tx, p.omniAccount);
    const taken = async (): Promise<RegisterOutcome | undefined> => {
      const existing = await findPasskey(tx, p.credentialId);
      if (!existing) return undefined;
      const mine = existing.omni_account === p.omniAccount;
      if (!mine || existing.last_challenge !== p.challengeHash) return { status: 'taken', ownAccount: mine };
      return { status: 'registered', passkey: passkeyView(existing) };
    };
    // A retry of this very ceremony (its row is counted already), or a credential id stored before.
    const before = await taken();
    if (before) return before;
    if (ids.length >= MAX_PASSKEYS_PER_ACCOUNT) return { status: 'full', count: ids.length };
    if (!(await insertPasskey(tx, p))) return (await taken()) ?? { status: 'taken', ownAccount: false };
    await appendAudit(tx, {
      event: 'passkey.registered',
      outcome: 'ok',
      omniAccount: p.omniAccount,
      requestId: audit.requestId,
      idemKey: audit.idemKey,
      details: { passkey: auditName(p.credentialId), backup_eligible: p.backupEligible, backed_up: p.backedUp },
    });
    const row = await findPasskey(tx, p.credentialId);
    if (!row) throw new Error('the passkey just stored is not there');
    return { status: 'registered', passkey: passkeyView(row) };
  });
}

/**
 * Every passkey of the account, oldest first: at most MAX_PASSKEYS_PER_ACCOUNT since the cap, and
 * up to LISTED_PASSKEYS for an account that registered more before it (they stay listed, removable).
 */
export async function listAccountPasskeys(deps: { db: Db }, omniAccount: string): Promise<PasskeyView[]> {
  return (await listPasskeys(deps.db, omniAccount, LISTED_PASSKEYS)).map(passkeyView);
}

/**
 * What a registration's options need of the account: the WebAuthn user handle its passkeys already
 * share (undefined before its first), the credential ids it has (authenticators are asked not to
 * make a second one) and a name to show in the authenticator's account picker. An account that
 * already holds MAX_PASSKEYS_PER_ACCOUNT passkeys gets no challenge: a BrokerError `conflict` (409)
 * saying to remove one first. The registration itself counts again, under the lock
 * (registerPasskey): this is the early answer, so no ceremony is opened that could only be refused.
 */
export async function accountForRegistration(
  deps: { db: Db },
  omniAccount: string,
): Promise<{ userHandle: string | undefined; credentialIds: string[]; label: string }> {
  const count = await countPasskeys(deps.db, omniAccount);
  if (count >= MAX_PASSKEYS_PER_ACCOUNT) throw new BrokerError('conflict', passkeysFullMessage(count));
  const [rows, handle, user] = await Promise.all([
    listPasskeys(deps.db, omniAccount, MAX_PASSKEYS_PER_ACCOUNT),
    userHandleOfAccount(deps.db, omniAccount),
    findUserByOmni(deps.db, omniAccount),
  ]);
  const label = user && user.identity_type !== 'passkey' ? user.identity_value : `AgentKeys ${omniAccount.slice(0, 10)}`;
  return { userHandle: handle, credentialIds: rows.map((r) => r.credential_id), label };
}

/**
 * Removes one of the caller's passkeys with its audit row (`passkey.removed`). False when the
 * account has no passkey with this id (someone else's answers the same as none).
 *
 * A passkey is a way into the account that outlives every session, and for an account made with a
 * passkey alone it is the only way: a stolen bearer must not take them away. So the caller's login
 * must be recent (a BrokerError as requireRecentLogin answers, before anything is read), and the
 * last passkey of an account whose identity is a passkey is kept: 409 `conflict`, nothing removed.
 * An account with no user row counts as such an account, since its passkeys sign it in as their
 * user handle (activities/passkey-ceremony.ts).
 */
export async function removePasskey(
  deps: { db: Db; now?: () => number },
  caller: { kind: 'session' | 'tee'; omniAccount: string; jti?: string },
  credentialId: string,
  requestId: string,
): Promise<boolean> {
  await requireRecentLogin(deps, caller, { what: 'removing a passkey', then: 'remove it' });
  const { omniAccount } = caller;
  return withTransaction(deps.db, async (tx) => {
    // Held until commit: a concurrent removal of another of these passkeys waits here, then counts what this one left.
    const ids = await lockPasskeysOfAccount(tx, omniAccount);
    if (!ids.includes(credentialId)) return false;
    if (ids.length === 1) {
      const user = await findUserByOmni(tx, omniAccount);
      if (!user || user.identity_type === 'passkey')
        throw new BrokerError(
          'conflict',
          'this is the last passkey of an account that signs in only with passkeys: add another passkey first, or the account can never sign in again',
        );
    }
    if (!(await deletePasskey(tx, omniAccount, credentialId))) return false;
    await appendAudit(tx, {
      event: 'passkey.removed',
      outcome: 'ok',
      omniAccount,
      requestId,
      idemKey: `passkey.removed:${requestId}`,
      details: { passkey: auditName(credentialId) },
    });
    return true;
  });
}
