import { ApplicationFailure } from '@temporalio/common';
import {
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { findPasskey, recordPasskeyUse } from '../db/passkeys';
import { findUserByOmni } from '../db/users';
import { sha256Hex } from '../lib/digest';
import type { ErrorCode } from '../lib/errors';
import { IDENTITY_TYPES, omniAccountOf, type Identity, type IdentityType } from '../lib/omni';
import { passkeysFullMessage, registerPasskey } from '../services/passkeys';
import { FailureType } from '../workflows/definitions';
import type { RegisteredPasskey } from '../workflows/passkey-ceremony.definitions';
import type { ActivityDeps } from './deps';

interface CeremonyCheck {
  challenge: string;
  rpId: string;
  origins: string[];
  response: Record<string, unknown>;
  requestId: string;
}

export interface VerifyPasskeyRegistrationInput extends CeremonyCheck {
  kind: 'register' | 'signup';
  omniAccount: string;
  userHandle: string;
  name: string;
}

/** A refusal: the answer's code and why (the challenge is used up either way). */
export type PasskeyRefusal = { ok: false; code: ErrorCode; reason: string };
export type PasskeyRegistrationVerdict = { ok: true; passkey: RegisteredPasskey; credentialId: string } | PasskeyRefusal;
export type PasskeyAssertionVerdict = { ok: true; identity: Identity; omniAccount: string; credentialId: string } | PasskeyRefusal;

/**
 * The length of a credential id the broker stores, in bytes, as WebAuthn Level 3 bounds it: at least
 * 16 (its "Credential ID" definition) and at most 1023 (§7.1: a relying party fails a registration
 * whose credential id is longer).
 * The library does not check it, and the passkeys table's CHECK (migration 016) holds the id's
 * base64url text to 16–1366 characters: outside these bounds the id is refused before anything is
 * written, never left to that CHECK (a database failure the ceremony retries, then a 500).
 */
export const CREDENTIAL_ID_MIN_BYTES = 16;
export const CREDENTIAL_ID_MAX_BYTES = 1023;

const refuse = (code: ErrorCode, reason: string): PasskeyRefusal => ({ ok: false, code, reason });

/**
 * Why a registration's `id` is not the credential id its authenticator data names, or undefined
 * when it is. The library checks only that `id` equals `rawId`; the id it answers (and the broker
 * stores) is the attested credential data's. They must be the same bytes, and `id` must spell them
 * canonically (unpadded base64url, no unused bits set, nothing Node's lenient decoder skips): a
 * respelling of an id is refused, not normalised, as the library refuses an `id` other than `rawId`.
 * `attested` is the library's own encoding of the authenticator data's bytes, canonical.
 */
export function claimedIdMismatch(claimed: unknown, attested: string): string | undefined {
  if (typeof claimed !== 'string') return "the passkey's id is not a string; send the browser's own WebAuthn answer";
  const bytes = Buffer.from(claimed, 'base64url');
  if (bytes.toString('base64url') !== claimed)
    return "the passkey's id is not canonical base64url (unpadded, as the browser encodes it); send the browser's own WebAuthn answer unchanged";
  if (!bytes.equals(Buffer.from(attested, 'base64url')))
    return "the passkey's id does not match the credential id in its authenticator data; register it again from the browser's own WebAuthn answer";
  return undefined;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? 'refused';
/** The database did not answer: retried by the workflow's policy, then reported as audit_error. */
const dbFailure = (e: unknown) => ApplicationFailure.retryable(`the passkey could not be read or recorded: ${message(e)}`, FailureType.auditError);

export function createPasskeyCeremonyActivities(deps: ActivityDeps) {
  return {
    /**
     * Verifies a registration (attestation `none` or any other format the library knows, user
     * verification required, this rp id and one of these origins, over this challenge) and stores
     * the credential under its account with its audit row. Idempotent per ceremony: a retry finds
     * the row its first attempt stored. A credential id already registered, to this account or
     * another, is refused (409), and so is a passkey past the cap on passkeys per account
     * (services/passkeys.ts), nothing written; so is a credential id outside the WebAuthn bounds
     * (CREDENTIAL_ID_MIN_BYTES–CREDENTIAL_ID_MAX_BYTES: 400), before anything is written, and a
     * response whose `id` is not, byte for byte and canonically spelled, the credential id of its
     * authenticator data (claimedIdMismatch: 400): the id stored is the one the client named.
     */
    async verifyPasskeyRegistration(input: VerifyPasskeyRegistrationInput): Promise<PasskeyRegistrationVerdict> {
      let info;
      try {
        const v = await verifyRegistrationResponse({
          response: input.response as unknown as RegistrationResponseJSON,
          expectedChallenge: input.challenge,
          expectedOrigin: input.origins,
          expectedRPID: input.rpId,
          requireUserVerification: true,
        });
        if (!v.verified) return refuse('unauthorized', 'the passkey registration did not verify');
        info = v.registrationInfo;
      } catch (e) {
        return refuse('unauthorized', `the passkey registration was refused: ${message(e)}`);
      }
      const idBytes = Buffer.from(info.credential.id, 'base64url').length;
      if (idBytes < CREDENTIAL_ID_MIN_BYTES || idBytes > CREDENTIAL_ID_MAX_BYTES)
        return refuse(
          'bad_request',
          `the passkey's credential id is ${idBytes} bytes; WebAuthn credential ids are ${CREDENTIAL_ID_MIN_BYTES} to ${CREDENTIAL_ID_MAX_BYTES} bytes`,
        );
      const idMismatch = claimedIdMismatch(input.response.id, info.credential.id);
      if (idMismatch) return refuse('bad_request', idMismatch);
      const challengeHash = sha256Hex(input.challenge);
      try {
        const r = await registerPasskey(
          deps,
          {
            credentialId: info.credential.id,
            omniAccount: input.omniAccount,
            userHandle: input.userHandle,
            publicKey: Buffer.from(info.credential.publicKey),
            counter: info.credential.counter,
            backupEligible: info.credentialDeviceType === 'multiDevice',
            backedUp: info.credentialBackedUp,
            transports: info.credential.transports ?? [],
            aaguid: info.aaguid,
            name: input.name,
            challengeHash,
          },
          { requestId: input.requestId, idemKey: `passkey.registered:${challengeHash}` },
        );
        if (r.status === 'taken')
          return refuse('conflict', r.ownAccount ? 'this passkey is already registered to this account' : 'this passkey is registered to another account');
        if (r.status === 'full') return refuse('conflict', passkeysFullMessage(r.count));
        return { ok: true, passkey: r.passkey, credentialId: r.passkey.id };
      } catch (e) {
        throw dbFailure(e);
      }
    },

    /**
     * Verifies a login assertion against the credential it names: its stored public key, this
     * challenge, rp id and origins, user verification, the user handle the credential was
     * registered with, a counter that moves forward (or is 0 on both sides, an authenticator
     * without one), and a backup eligibility that never changes; then records the new counter and
     * backup state (a compare-and-set, idempotent for this ceremony). Answers the account to sign
     * in and its identity.
     *
     * A second answer to a ceremony whose counter was already recorded (its login could not be
     * recorded and the ceremony took answers again, or this activity was retried) meets its own
     * counter and fails the counter check. The library checks the counter before the signature, so
     * that failure says nothing of the signature: the answer is verified again with the counter
     * check out of the way, and it signs in only when the signature verifies and its counter is the
     * one this ceremony recorded (the same assertion sent again). Anything else is refused.
     */
    async verifyPasskeyAssertion(input: CeremonyCheck): Promise<PasskeyAssertionVerdict> {
      const response = input.response as unknown as AuthenticationResponseJSON;
      const challengeHash = sha256Hex(input.challenge);
      let row;
      try {
        row = await findPasskey(deps.db, String(response.id));
      } catch (e) {
        throw dbFailure(e);
      }
      if (!row) return refuse('unauthorized', 'this passkey is not registered here');
      if (!response.response?.userHandle) return refuse('unauthorized', 'the passkey returned no user handle (a discoverable passkey is required)');
      if (response.response.userHandle !== row.user_handle)
        return refuse('unauthorized', 'the passkey answered for another user handle than the one it was registered with');
      const storedCounter = Number(row.counter);
      const verify = async (counter: number) => {
        const v = await verifyAuthenticationResponse({
          response,
          expectedChallenge: input.challenge,
          expectedOrigin: input.origins,
          expectedRPID: input.rpId,
          credential: { id: row.credential_id, publicKey: new Uint8Array(row.public_key), counter },
          requireUserVerification: true,
        });
        return v.verified ? v.authenticationInfo : undefined;
      };
      const regressed = 'the passkey signature counter did not move forward (a cloned authenticator?)';
      let info;
      try {
        info = await verify(storedCounter);
      } catch (e) {
        if (!(row.last_challenge === challengeHash && /counter/i.test(message(e))))
          return refuse('unauthorized', `the passkey sign-in was refused: ${message(e)}`);
        // This ceremony recorded the counter already, and the counter is checked before the signature:
        // verify again with a stored counter of 0, so the signature (and every other check) is made,
        // and take only the counter this ceremony recorded.
        try {
          info = await verify(0);
        } catch (again) {
          return refuse('unauthorized', `the passkey sign-in was refused: ${message(again)}`);
        }
        if (info && info.newCounter !== storedCounter) return refuse('unauthorized', regressed);
      }
      if (!info) return refuse('unauthorized', 'the passkey assertion did not verify');
      if ((info.credentialDeviceType === 'multiDevice') !== row.backup_eligible)
        return refuse('unauthorized', 'the passkey changed its backup eligibility, which a credential never does');
      // The same assertion sent again passes the compare-and-set as this ceremony's own write, and only while it is the last one.
      try {
        const moved = await recordPasskeyUse(deps.db, {
          credentialId: row.credential_id,
          counter: info.newCounter,
          backedUp: info.credentialBackedUp,
          challengeHash,
        });
        if (!moved) return refuse('unauthorized', regressed);
        return await signInAs(row);
      } catch (e) {
        throw dbFailure(e);
      }

      async function signInAs(r: { omni_account: string; user_handle: string; credential_id: string }): Promise<PasskeyAssertionVerdict> {
        const user = await findUserByOmni(deps.db, r.omni_account);
        const type = user?.identity_type;
        // The account signs in as its own identity; a passkey-only account whose first login was not recorded, as its handle.
        const identity: Identity =
          user && type && (IDENTITY_TYPES as readonly string[]).includes(type)
            ? { type: type as IdentityType, value: user.identity_value }
            : { type: 'passkey', value: r.user_handle };
        if (omniAccountOf(deps.config.BROKER_CLIENT_ID, identity) !== r.omni_account)
          return refuse('unauthorized', 'the account of this passkey is not known here');
        return { ok: true, identity, omniAccount: r.omni_account, credentialId: r.credential_id };
      }
    },
  };
}
