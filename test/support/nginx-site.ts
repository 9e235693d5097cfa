/**
 * The production nginx site (deploy/nginx/agentkeys-broker.conf) read as nginx picks a location for
 * a request path, so tests can say which of the broker's routes its public server passes on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface NginxLocation {
  /** '' (prefix), '=' (exact), '^~' (prefix that stops the regular-expression search), '~', '~*'. */
  modifier: string;
  pattern: string;
  body: string;
  /** Passes the request to the broker. */
  proxied: boolean;
  /** Ends in `deny all` (only the addresses allowed above it get through). */
  fenced: boolean;
}

/** The site's public server block (from its marker to the ops server's), placeholders left as comments. */
export function publicServerBlock(): string {
  const site = readFileSync(join(__dirname, '..', '..', 'deploy', 'nginx', 'agentkeys-broker.conf'), 'utf8');
  const start = site.indexOf('# --- public');
  const end = site.indexOf('# --- ops');
  if (start < 0 || end <= start) throw new Error('the nginx site has no public / ops markers');
  return site.slice(start, end).replace(/\{\{([A-Z_]+)\}\}/g, '# $1');
}

/** The locations of the public server, in order (named locations such as @unavailable left out). */
export function publicLocations(): NginxLocation[] {
  return [...publicServerBlock().matchAll(/location\s+(=|~\*|~|\^~)?\s*([^\s@{][^\s{]*)\s*\{([^}]*)\}/g)].map(([, modifier = '', pattern = '', body = '']) => ({
    modifier,
    pattern,
    body,
    proxied: /\bproxy_pass\b/.test(body),
    fenced: /\bdeny\s+all\s*;/.test(body),
  }));
}

/**
 * The location nginx picks for `path` (ngx_http_core_module, "location"): an exact match; else the
 * longest matching prefix if it is `^~`; else the first matching regular expression in order; else
 * the longest matching prefix.
 */
export function locationFor(locations: NginxLocation[], path: string): NginxLocation | undefined {
  const exact = locations.find((l) => l.modifier === '=' && l.pattern === path);
  if (exact) return exact;
  const longest = locations
    .filter((l) => (l.modifier === '' || l.modifier === '^~') && path.startsWith(l.pattern))
    .sort((a, b) => b.pattern.length - a.pattern.length)[0];
  if (longest?.modifier === '^~') return longest;
  const regex = locations.find((l) => (l.modifier === '~' || l.modifier === '~*') && new RegExp(l.pattern, l.modifier === '~*' ? 'i' : '').test(path));
  return regex ?? longest;
}
