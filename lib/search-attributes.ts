import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Custom search attributes every flow upserts; registered on the Temporal server at start-up. */
export const SEARCH_ATTRIBUTE_NAMES = ['AkFlow', 'AkOmniAccount', 'AkStage', 'AkOutcome'] as const;
export type SearchAttributeName = (typeof SEARCH_ATTRIBUTE_NAMES)[number];

export const AkFlow = defineSearchAttributeKey('AkFlow', SearchAttributeType.KEYWORD);
export const AkOmniAccount = defineSearchAttributeKey('AkOmniAccount', SearchAttributeType.KEYWORD);
export const AkStage = defineSearchAttributeKey('AkStage', SearchAttributeType.KEYWORD);
export const AkOutcome = defineSearchAttributeKey('AkOutcome', SearchAttributeType.KEYWORD);
