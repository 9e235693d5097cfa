import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { AgentKeysError } from './errors';

/**
 * A source-address allow-list from comma-separated CIDRs or bare addresses (IPv4 and IPv6),
 * e.g. BROKER_TEE_CALLBACK_ALLOW="127.0.0.0/8,::1/128,10.20.0.0/16". IPv4-mapped IPv6 sources
 * (`::ffff:10.20.1.2`) match the IPv4 entries.
 */
export interface SourceAllowList {
  allows(address: string | undefined): boolean;
  /** The entries as configured, for messages and docs. */
  readonly entries: readonly string[];
}

export class AllowListError extends AgentKeysError {
  override readonly code: string = 'ERR_ALLOW_LIST';
  override name = 'AllowListError';
}

function addEntry(list: BlockList, entry: string): void {
  const [address, prefixText, ...rest] = entry.split('/');
  if (!address || rest.length > 0) throw new AllowListError(`"${entry}" is not an address or CIDR`);
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  if (!family) throw new AllowListError(`"${entry}" is not an IPv4 or IPv6 address or CIDR`);
  if (prefixText === undefined) {
    list.addAddress(address, family);
    return;
  }
  const max = family === 'ipv4' ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) throw new AllowListError(`"${entry}" has a bad prefix length (0-${max})`);
  list.addSubnet(address, Number(prefixText), family);
}

export function parseSourceAllowList(text: string): SourceAllowList {
  const entries = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const list = new BlockList();
  for (const entry of entries) addEntry(list, entry);
  return {
    entries,
    allows(address) {
      if (!address) return false;
      if (isIPv4(address)) return list.check(address, 'ipv4');
      if (!isIPv6(address)) return false;
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
      if (mapped?.[1] && list.check(mapped[1], 'ipv4')) return true;
      return list.check(address, 'ipv6');
    },
  };
}
