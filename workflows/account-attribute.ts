import type { SearchAttributePair } from '@temporalio/common';
import { patched, upsertSearchAttributes } from '@temporalio/workflow';
import { AkAccount, AkOmniAccount } from '../lib/search-attributes';

/** What a flow knows of its account: the OmniAccount and, from 1.3.0 on, its keyed tag. */
export interface AccountOfFlow {
  omni_account: string;
  /** lib/digest.ts accountTag; absent in results recorded before 1.3.0. */
  account_tag?: string;
}

/**
 * The search attribute naming a flow's account. From 1.3.0 (`keyed-account-attribute`) it is
 * AkAccount, the keyed tag: a namespace reader cannot test addresses for accounts. A run whose
 * history predates the patch keeps setting AkOmniAccount. A result without a tag (computed by an
 * older worker before a deploy) names no account rather than the OmniAccount.
 */
export function accountAttributes(account: AccountOfFlow): SearchAttributePair[] {
  if (patched('keyed-account-attribute')) return account.account_tag ? [{ key: AkAccount, value: account.account_tag }] : [];
  return [{ key: AkOmniAccount, value: account.omni_account }];
}

/** Upserts accountAttributes, when there is one. */
export function showAccount(account: AccountOfFlow): void {
  const pairs = accountAttributes(account);
  if (pairs.length > 0) upsertSearchAttributes(pairs);
}
