/**
 * EVM address spellings a caller may use (the API's schemas, the CLI's checks before it sends). Kept
 * apart from lib/wallet-message.ts, which the workflow bundle imports: the checksum needs viem.
 */
import { getAddress } from 'viem';
import { EVM_ADDRESS_RE } from './wallet-message';

/**
 * Whether a `0x` address's letters are one spelling of it: all lower case, all upper case, or its
 * EIP-55 checksum. Mixed case with a broken checksum is a typo, never another spelling.
 */
export function isAddressSpelling(address: string): boolean {
  if (!EVM_ADDRESS_RE.test(address)) return false;
  const body = address.slice(2);
  return body === body.toLowerCase() || body === body.toUpperCase() || getAddress(address.toLowerCase()) === address;
}
