import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Custom search attributes every flow upserts; registered on the Temporal server at start-up. */
export const SEARCH_ATTRIBUTE_NAMES = ['AkFlow', 'AkAccount', 'AkStage', 'AkOutcome'] as const;
export type SearchAttributeName = (typeof SEARCH_ATTRIBUTE_NAMES)[number];

export const AkFlow = defineSearchAttributeKey('AkFlow', SearchAttributeType.KEYWORD);
/**
 * The account a flow belongs to, as its keyed tag (lib/digest.ts accountTag): a namespace reader
 * without the broker's secret cannot test an address for an account. `npm run account:tag` gives
 * an operator the tag of an address or OmniAccount.
 */
export const AkAccount = defineSearchAttributeKey('AkAccount', SearchAttributeType.KEYWORD);
/**
 * Retired in 1.3.0: the OmniAccount itself, an unkeyed hash of the client id and the identity.
 * Only the `false` branch of `patched('keyed-account-attribute')` sets it (runs recorded before);
 * the namespace no longer needs it registered.
 */
export const AkOmniAccount = defineSearchAttributeKey('AkOmniAccount', SearchAttributeType.KEYWORD);
export const AkStage = defineSearchAttributeKey('AkStage', SearchAttributeType.KEYWORD);
export const AkOutcome = defineSearchAttributeKey('AkOutcome', SearchAttributeType.KEYWORD);
