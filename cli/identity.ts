/** Who a profile is logged in as, the way the person knows it. */
import type { Identity } from '../lib/omni';

/** `email you@example.com`, `evm 0x…`; a Google login by its verified email when the broker gave one. */
export function displayIdentity(s: { identity?: Identity; email?: string; omni_account?: string }): string {
  if (s.identity?.type === 'google' && s.email) return `google ${s.email}`;
  return s.identity ? `${s.identity.type} ${s.identity.value}` : (s.omni_account ?? 'unknown account');
}
