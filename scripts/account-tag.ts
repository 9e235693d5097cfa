/**
 * `npm run account:tag -- <who>...`: what Temporal lists an account's flows under. Temporal shows
 * no OmniAccount (an unkeyed hash anyone could compute from an address): the AkAccount search
 * attribute and the TEE bookkeeping workflow's id carry the account's keyed tag, which needs the
 * broker's BROKER_SECRET (lib/digest.ts accountTag). `<who>` is an OmniAccount (`0x` + 64 hex), an
 * EVM address, an email address, or `<identity type>:<value>` (e.g. `google:1234567890`).
 * Prints, per account, the tag, the Temporal list query and the TEE workflow id (`--json`: one
 * JSON object per line).
 */
import { resolveSecrets } from '../adapters/secrets';
import { loadConfig } from '../lib/config';
import { accountTag } from '../lib/digest';
import { normalizeEmail } from '../lib/email-login-code';
import { IDENTITY_TYPES, OMNI_ACCOUNT_RE, omniAccountOf, type Identity, type IdentityType } from '../lib/omni';
import { normalizeEvmAddress } from '../lib/wallet-message';
import { TEE_ACCOUNT_ID_PREFIX } from '../workflows/tee-account.definitions';

/** The identity `who` names, as the broker's login doors normalise it. */
function identityOf(who: string): Identity {
  const evm = normalizeEvmAddress(who);
  if (evm) return { type: 'evm', value: evm };
  const colon = who.indexOf(':');
  const type = colon > 0 ? who.slice(0, colon) : '';
  if ((IDENTITY_TYPES as readonly string[]).includes(type)) {
    const value = who.slice(colon + 1);
    if (type === 'evm') return identityOf(value);
    return { type: type as IdentityType, value: type === 'email' ? normalizeEmail(value) : value };
  }
  if (who.includes('@')) return { type: 'email', value: normalizeEmail(who) };
  throw new Error(`${who}: not an OmniAccount, an EVM address, an email address or <type>:<value> (types: ${IDENTITY_TYPES.join(', ')})`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const whos = args.filter((a) => a !== '--json');
  if (whos.length === 0) throw new Error('name an account: an OmniAccount, an EVM address, an email address or <type>:<value>');
  const config = loadConfig(process.env);
  const { hmacSecret } = await resolveSecrets(config);
  for (const who of whos) {
    const omniAccount = OMNI_ACCOUNT_RE.test(who.toLowerCase()) ? who.toLowerCase() : omniAccountOf(config.BROKER_CLIENT_ID, identityOf(who));
    const tag = accountTag(hmacSecret, omniAccount);
    const query = `AkAccount="${tag}"`;
    const teeWorkflowId = TEE_ACCOUNT_ID_PREFIX + tag;
    if (json) console.log(JSON.stringify({ input: who, omni_account: omniAccount, account_tag: tag, query, tee_workflow_id: teeWorkflowId }));
    else console.log(`${who}\n  omni_account     ${omniAccount}\n  account_tag      ${tag}\n  list query       ${query}\n  tee workflow id  ${teeWorkflowId}`);
  }
}

main().catch((e: unknown) => {
  console.error(`account:tag failed: ${(e as Error).message}`);
  process.exit(1);
});
