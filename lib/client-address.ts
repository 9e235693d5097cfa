import { isIPv4, isIPv6 } from 'node:net';

/**
 * One spelling per client address. Behind a trusted load balancer the client address is an entry
 * of X-Forwarded-For, taken as written: `[2001:db8::1]`, `[2001:db8::1]:443`, `198.51.100.7:5123`,
 * `198.051.100.007` and `::ffff:198.51.100.7` are one client, and a limit keyed by the raw text
 * would give each spelling its own budget (some balancers append the client's port, so an honest
 * client would get a fresh budget per connection). Everything that keys on the client (the rate
 * limits, the email send budget's requester network) goes through `canonicalClientAddress`.
 */

/** Minimal view of a request: Fastify's `ip` (the client as trusted) and `ips` (the chain, socket first). */
export interface ClientAddressSource {
  ip: string;
  ips?: string[];
}

const BRACKETED = /^\[([^\]]+)\](?::\d{1,5})?$/;
const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const DOTTED_QUAD_TAIL = /(^|:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const MAPPED_IPV4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/** Dotted-quad octets with leading zeros read as decimal (`010` is 10, as the reporter of the address meant). */
function decimalQuad(text: string): string | undefined {
  const m = DOTTED_QUAD_TAIL.exec(text);
  if (!m) return text;
  const octets = m.slice(2, 6).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return text.slice(0, m.index) + (m[1] ?? '') + octets.join('.');
}

/**
 * The canonical text of an IP address given in any common spelling, or undefined when the text is
 * not one: IPv4 as dotted decimal; IPv6 lower-case and compressed (RFC 5952, as the URL parser
 * prints it), an IPv4-mapped IPv6 address as its IPv4 address; brackets, a port and an IPv6 zone
 * dropped. Other IPv4 forms (hex, a single integer) are not addresses here.
 */
export function canonicalIp(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  let s = text.trim();
  s = BRACKETED.exec(s)?.[1] ?? IPV4_WITH_PORT.exec(s)?.[1] ?? s;
  if (s.includes(':')) s = s.replace(/%[^%:]*$/, ''); // an IPv6 zone (fe80::1%eth0) names an interface, not a client
  const quad = decimalQuad(s);
  if (quad === undefined) return undefined;
  if (isIPv4(quad)) return quad;
  if (!isIPv6(quad)) return undefined;
  const compressed = new URL(`http://[${quad}]/`).hostname.slice(1, -1);
  const mapped = MAPPED_IPV4.exec(compressed);
  if (!mapped) return compressed;
  const hi = parseInt(mapped[1] ?? '0', 16);
  const lo = parseInt(mapped[2] ?? '0', 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
}

/**
 * The client's canonical address. A client entry that is no IP address at all (a balancer that
 * forwards junk, or a client's forged entry a hop-count trust let through) counts as the hop that
 * reported it: the nearest address in the chain that is one, at worst the TCP peer. Junk thus
 * shares the budget of the balancer it came through instead of opening one per string.
 */
export function canonicalClientAddress(request: ClientAddressSource): string {
  const own = canonicalIp(request.ip);
  if (own !== undefined) return own;
  const chain = request.ips ?? [];
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = canonicalIp(chain[i]);
    if (hop !== undefined) return hop;
  }
  return 'unknown';
}

/** The eight 16-bit groups of a canonical IPv6 address (hex, no zone, no dotted tail). */
function ipv6Groups(ip: string): number[] {
  const [head = '', tail] = ip.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** Prefix lengths of a requester network: an IPv4 /24, an IPv6 /48 (one end site, RFC 6177). */
export const REQUESTER_NETWORK_BITS = { ipv4: 24, ipv6: 48 } as const;

/**
 * The network a canonical client address belongs to, as text: `198.51.100.0/24`, `2001:db8:aa::/48`.
 * A client holding many addresses in one network (a NAT pool, an IPv6 site) is one requester.
 */
export function requesterNetwork(canonical: string): string {
  if (isIPv4(canonical)) return `${canonical.split('.').slice(0, 3).join('.')}.0/${REQUESTER_NETWORK_BITS.ipv4}`;
  if (!isIPv6(canonical)) return canonical;
  const groups = ipv6Groups(canonical).slice(0, REQUESTER_NETWORK_BITS.ipv6 / 16);
  return `${groups.map((g) => g.toString(16)).join(':')}::/${REQUESTER_NETWORK_BITS.ipv6}`;
}

/** A URL on this machine's loopback (where plain http is tolerated: the dev stand-ins), by its host as URL parses it. */
export function isLoopbackUrl(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}
