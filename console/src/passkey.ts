/**
 * Passkeys in the browser with the plain WebAuthn API (navigator.credentials): the broker's
 * options JSON (base64url fields) in, the credential as the JSON the broker reads out. No library:
 * the conversions are a few lines.
 */

const fromB64u = (s: string): ArrayBuffer => {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
};
const toB64u = (b: ArrayBuffer): string =>
  btoa(String.fromCharCode(...new Uint8Array(b)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

interface CredentialRef {
  id: string;
  type?: string;
  transports?: string[];
}
const refs = (list: CredentialRef[] | undefined): PublicKeyCredentialDescriptor[] =>
  (list ?? []).map((c) => ({ id: fromB64u(c.id), type: 'public-key', transports: c.transports as AuthenticatorTransport[] | undefined }));

/**
 * The browser's WebAuthn refusals as what happened and what to do: its own texts name the spec
 * ("The operation either timed out or was not allowed. See: https://www.w3.org/…").
 */
function ceremonyError(e: unknown, making: boolean): Error {
  const name = (e as { name?: unknown } | null)?.name;
  if (name === 'NotAllowedError')
    return new Error(
      making
        ? 'No passkey was made: the prompt was closed, timed out or refused. Try again, or sign in another way.'
        : 'No passkey was used: the prompt was closed, timed out, or this device has no passkey for this site. Try again, or sign in another way.',
    );
  if (name === 'InvalidStateError') return new Error('This device already holds a passkey of this account: nothing was added.');
  if (name === 'SecurityError') return new Error("Passkeys do not work on this address (they need https, or localhost, on the broker's own site).");
  return e instanceof Error ? e : new Error(String(e));
}

export function passkeysAvailable(): boolean {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
}

function base(cred: PublicKeyCredential) {
  return {
    id: cred.id,
    rawId: toB64u(cred.rawId),
    type: 'public-key',
    clientExtensionResults: cred.getClientExtensionResults() as Record<string, unknown>,
    ...(cred.authenticatorAttachment ? { authenticatorAttachment: cred.authenticatorAttachment } : {}),
  };
}

/** navigator.credentials.create with the broker's registration options; answers the credential as JSON. */
export async function createPasskey(options: Record<string, unknown>): Promise<Record<string, unknown>> {
  const o = options as unknown as PublicKeyCredentialCreationOptions & {
    challenge: string;
    user: { id: string; name: string; displayName: string };
    excludeCredentials?: CredentialRef[];
  };
  const publicKey: PublicKeyCredentialCreationOptions = {
    ...o,
    challenge: fromB64u(o.challenge),
    user: { ...o.user, id: fromB64u(o.user.id) },
    excludeCredentials: refs(o.excludeCredentials),
  };
  const cred = (await navigator.credentials.create({ publicKey }).catch((e: unknown) => {
    throw ceremonyError(e, true);
  })) as PublicKeyCredential | null;
  if (!cred) throw new Error('no passkey was made');
  const r = cred.response as AuthenticatorAttestationResponse;
  return {
    ...base(cred),
    response: {
      clientDataJSON: toB64u(r.clientDataJSON),
      attestationObject: toB64u(r.attestationObject),
      transports: typeof r.getTransports === 'function' ? r.getTransports() : [],
    },
  };
}

/** navigator.credentials.get (a discoverable passkey) with the broker's login options; answers the assertion as JSON. */
export async function getPasskey(options: Record<string, unknown>): Promise<Record<string, unknown>> {
  const o = options as unknown as PublicKeyCredentialRequestOptions & { challenge: string; allowCredentials?: CredentialRef[] };
  const publicKey: PublicKeyCredentialRequestOptions = { ...o, challenge: fromB64u(o.challenge), allowCredentials: refs(o.allowCredentials) };
  const cred = (await navigator.credentials.get({ publicKey }).catch((e: unknown) => {
    throw ceremonyError(e, false);
  })) as PublicKeyCredential | null;
  if (!cred) throw new Error('no passkey was chosen');
  const r = cred.response as AuthenticatorAssertionResponse;
  return {
    ...base(cred),
    response: {
      clientDataJSON: toB64u(r.clientDataJSON),
      authenticatorData: toB64u(r.authenticatorData),
      signature: toB64u(r.signature),
      ...(r.userHandle ? { userHandle: toB64u(r.userHandle) } : {}),
    },
  };
}
