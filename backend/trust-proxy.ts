import { isIP } from 'node:net';

/**
 * TRUST_PROXY as Fastify's `trustProxy` (proxy-addr underneath), which
 * decides whose X-Forwarded-For is believed and so what `request.ip` is:
 * the per-IP rate limits and the logs key on it.
 *
 * - `false` (default): X-Forwarded-For is ignored; request.ip is the peer.
 * - `true`: every proxy is trusted: request.ip is the left-most address a
 *   client sent, which that client can write itself. Only behind a proxy
 *   that replaces (not appends to) the header.
 * - a hop count (`1`, `2`): the last N addresses of the chain are our own
 *   proxies; request.ip is the one before them, whatever a client prepends.
 * - a comma list of IPs and CIDRs (`10.0.0.0/8, 192.168.1.7`, also
 *   proxy-addr's `loopback`, `linklocal`, `uniquelocal`): only those
 *   peers' headers are believed, walking the chain from the right.
 */
export type TrustProxy = boolean | number | string[];

const NAMED = new Set(['loopback', 'linklocal', 'uniquelocal']);

export function parseTrustProxy(raw: string): TrustProxy {
  const value = raw.trim();
  if (/^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  if (/^[0-9]+$/.test(value)) {
    const hops = Number(value);
    if (hops > 64) throw new Error(`TRUST_PROXY: ${hops} hops is not a real proxy chain (at most 64)`);
    return hops === 0 ? false : hops;
  }
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (entries.length === 0) throw new Error('TRUST_PROXY: give true, false, a hop count or a comma list of IPs/CIDRs');
  for (const entry of entries) {
    if (!isAddressOrRange(entry)) {
      throw new Error(`TRUST_PROXY: "${entry}" is not true/false, a hop count, an IP address or a CIDR range (e.g. 10.0.0.0/8, fd00::/8)`);
    }
  }
  return entries;
}

function isAddressOrRange(entry: string): boolean {
  if (NAMED.has(entry)) return true;
  const [address, prefix, extra] = entry.split('/');
  if (extra !== undefined || !address) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^[0-9]{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

/** As Fastify takes it: a hop count becomes the function Fastify makes of one (its types leave numbers out). */
export function trustProxyOption(raw: string): boolean | string[] | ((address: string, hop: number) => boolean) {
  const parsed = parseTrustProxy(raw);
  return typeof parsed === 'number' ? (_address, hop) => hop < parsed : parsed;
}
