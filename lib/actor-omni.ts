import { createHash } from 'node:crypto';
import { bareOmniHex } from './omni';
import { normalizeEvmAddress } from './wallet-message';

/** An account's login identity as the users table keeps it (type as lib/omni.ts names it). */
export interface AccountIdentity {
  type: string;
  value: string;
}

/**
 * The AgentKeys actor identifier: what AgentKeys' storage and bucket policies are keyed on
 * (`bots/<actor>/credentials/<service>.enc`, `${aws:PrincipalTag/agentkeys_actor_omni}`), carried
 * by the OIDC tokens this broker mints as the `agentkeys_actor_omni` claim and principal tag.
 *
 * It is not the OmniAccount (lib/omni.ts). Both are SHA-256 over client id ‖ type ‖ value, but:
 *
 * | account  | OmniAccount (Heima TEE's rule)          | actor identifier (AgentKeys' rule)                |
 * |----------|------------------------------------------|---------------------------------------------------|
 * | wallet   | `evm` ‖ the 20 raw address bytes         | `evm` ‖ the address as lower-case text with `0x` |
 * | email    | `email` ‖ lower-cased, cut to 64 bytes   | `email` ‖ the lower-cased address, whole          |
 * | Google   | `google` ‖ the `sub`, cut to 64 bytes     | `oauth2_google` ‖ the `sub`                        |
 * | other    | (its type's rule)                        | the bare OmniAccount                               |
 *
 * The OmniAccount is what the TEE derives, so accounts, sessions and the TEE callbacks stay keyed on
 * it; the actor identifier is only what the minted credentials name, so that a session minted here
 * reaches the prefix AgentKeys clients read and write.
 *
 * Upstream (litentry/agent-terrier, each file read at c348357c690ddd3798ed7ceae599305fb62f39ff;
 * newer stored texts of the broker's router add no login route, docs/contracts.md):
 * `crates/agentkeys-core/src/actor_omni.rs`
 * (`actor_omni_from_wallet`: `agentkeys` ‖ `evm` ‖ the lower-cased wallet text);
 * `crates/agentkeys-broker-server/src/identity/omni_account.rs` (`derive_with_client_id`, whose
 * `client_id` became the stack's configured one in ecc5a11 — `agentkeys` on the AWS stack —
 * pinned by its test `pinned_vectors_both_stacks`); the type strings in
 * `src/plugins/auth/mod.rs` (`IdentityType::canonical`); the values the login handlers hash in
 * `src/handlers/auth/` (`wallet_verify.rs`, `email_verify.rs`, `oauth2_callback.rs`: the Google
 * `sub`); and the bare-hex normalisation in `src/handlers/oidc.rs` (`build_oidc_jwt_claims`).
 */

/** The AgentKeys `IdentityType::canonical()` string of the identity types it logs in with. */
export const AGENTKEYS_IDENTITY_TYPES: Readonly<Record<string, string>> = {
  evm: 'evm',
  email: 'email',
  google: 'oauth2_google',
};

/** SHA256(clientId ‖ type ‖ value), 64 lower-case hex without `0x` (upstream's `derive_with_client_id`). */
export function deriveAgentKeysId(clientId: string, agentKeysType: string, value: string): string {
  return createHash('sha256').update(clientId, 'utf8').update(agentKeysType, 'utf8').update(value, 'utf8').digest('hex');
}

/** The text AgentKeys hashes for an identity value, or undefined for a type it has no login for. */
function agentKeysValue(identity: AccountIdentity): string | undefined {
  switch (identity.type) {
    case 'evm':
      return normalizeEvmAddress(identity.value);
    case 'email':
      return identity.value.toLowerCase();
    case 'google':
      return identity.value;
    default:
      return undefined;
  }
}

/**
 * The actor identifier of an account, as bare lower-case hex: derived from its login identity as
 * AgentKeys derives it when AgentKeys has that kind of login, else (or when the account's identity
 * is not known) the account's OmniAccount without `0x`, as `build_oidc_jwt_claims` normalises
 * whatever actor it is given.
 */
export function agentKeysActorId(clientId: string, omniAccount: string, identity: AccountIdentity | undefined): string {
  if (identity) {
    const type = Object.hasOwn(AGENTKEYS_IDENTITY_TYPES, identity.type) ? AGENTKEYS_IDENTITY_TYPES[identity.type] : undefined;
    const value = agentKeysValue(identity);
    if (type !== undefined && value !== undefined) return deriveAgentKeysId(clientId, type, value);
  }
  return bareOmniHex(omniAccount);
}
