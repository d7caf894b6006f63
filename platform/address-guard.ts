import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { AppError } from '../jobs/errors.js';

/**
 * Server-side request forgery guard, shared by source fetching, background
 * image URLs, the rembg service's `?url=` and webhook delivery. Only public
 * unicast addresses pass: loopback, private, link-local, CGNAT, unique-local,
 * multicast, reserved, 0.0.0.0/8 and the cloud metadata services are
 * refused, and so is every IPv6 form that carries an IPv4 address (mapped,
 * IPv4-compatible, SIIT, 6to4, Teredo, local-use NAT64) except well-known
 * NAT64 (64:ff9b::/96) of a public IPv4 address, which DNS64 networks hand
 * out for ordinary hosts. The check runs on every address a name resolves
 * to, at connect time, so a name that changes between check and connect
 * (DNS rebinding) cannot slip through.
 */
export function isPublicAddress(address: string): boolean {
  return addressRefusal(address) === null;
}

/**
 * Why an address may not be reached, in words for an error message, or
 * null when it may. Not a valid address at all is refused too.
 */
export function addressRefusal(address: string): string | null {
  if (!ipaddr.isValid(address)) return 'not a valid address';
  const parsed = ipaddr.parse(address);
  return parsed.kind() === 'ipv4' ? ipv4Refusal(parsed as ipaddr.IPv4) : ipv6Refusal(parsed as ipaddr.IPv6);
}

/**
 * Cloud metadata services beyond link-local 169.254.169.254 (which the
 * link-local rule already refuses): Azure's wireserver, Alibaba's metadata
 * (also CGNAT), Oracle's legacy one, AWS and GCP over IPv6 (also
 * unique-local). Listed so the refusal names them and so a rule change
 * elsewhere cannot reopen them.
 */
const METADATA_RANGES = [
  '168.63.129.16/32',
  '100.100.100.200/32',
  '192.0.0.192/32',
  '169.254.169.254/32',
  '169.254.170.2/32',
  'fd00:ec2::254/128',
  'fd20:ce::254/128',
].map((cidr) => ipaddr.parseCIDR(cidr));

/** Names of metadata services (resolved at connect time too: this only gives them a clear refusal before). */
const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal']);

function isMetadata(address: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return METADATA_RANGES.some(([range, bits]) => range.kind() === address.kind() && address.match(range, bits));
}

function ipv4Refusal(v4: ipaddr.IPv4): string | null {
  if (isMetadata(v4)) return `a cloud metadata address (${v4.toString()})`;
  const range = v4.range();
  if (range === 'unicast') return null;
  return `a ${V4_RANGE_WORDS[range] ?? 'reserved'} address (${v4.toString()})`;
}

const V4_RANGE_WORDS: Record<string, string> = {
  unspecified: 'this-network (0.0.0.0/8)',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'carrier-grade NAT',
  private: 'private',
  reserved: 'reserved',
};

const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96');
const NAT64_LOCAL_USE = ipaddr.parseCIDR('64:ff9b:1::/48');

function ipv6Refusal(v6: ipaddr.IPv6): string | null {
  const text = v6.toString();
  if (isMetadata(v6)) return `a cloud metadata address (${text})`;
  const p = v6.parts;
  const top80Zero = p[0] === 0 && p[1] === 0 && p[2] === 0 && p[3] === 0 && p[4] === 0;
  if (top80Zero && p[5] === 0xffff) {
    // ::ffff:a.b.c.d reaches a.b.c.d on a dual-stack socket: judge the IPv4 address.
    const inner = ipv4Refusal(embeddedV4(p));
    return inner && `an IPv4-mapped address of ${inner} (${text})`;
  }
  if (top80Zero && p[5] === 0) {
    if (p[6] === 0 && (p[7] === 0 || p[7] === 1)) return `a ${p[7] === 0 ? 'unspecified' : 'loopback'} address (${text})`;
    // ::a.b.c.d, deprecated (RFC 4291); some stacks still tunnel it to a.b.c.d.
    return `an IPv4-compatible IPv6 address (${text}, which embeds ${embeddedV4(p).toString()})`;
  }
  if (v6.match(NAT64_WELL_KNOWN)) {
    const inner = ipv4Refusal(embeddedV4(p));
    return inner && `a NAT64 address of ${inner} (${text})`;
  }
  if (v6.match(NAT64_LOCAL_USE)) return `a local-use NAT64 address (${text}): where it leads is the network's choice`;
  const range = v6.range();
  if (range === 'unicast') return null;
  return `a ${V6_RANGE_WORDS[range] ?? 'reserved'} address (${text})`;
}

const V6_RANGE_WORDS: Record<string, string> = {
  unspecified: 'unspecified',
  linkLocal: 'link-local',
  multicast: 'multicast',
  loopback: 'loopback',
  uniqueLocal: 'unique-local (private)',
  rfc6145: 'SIIT IPv4-translated (::ffff:0:a.b.c.d)',
  rfc6052: 'NAT64',
  '6to4': '6to4 (2002::/16, embeds an IPv4 address)',
  teredo: 'Teredo (2001::/32, embeds an IPv4 address)',
  discard: 'discard-only',
  reserved: 'reserved',
};

function embeddedV4(parts: number[]): ipaddr.IPv4 {
  const hi = parts[6] ?? 0;
  const lo = parts[7] ?? 0;
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

/** Strips the brackets URL gives IPv6 literals. */
export function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

export interface UrlPolicy {
  allowPrivate: boolean;
  /** what the URL is for, used in error messages ("source", "webhook") */
  purpose: string;
  /**
   * `host:port` pairs (from parseHostAllowlist) that may be fetched even
   * though they are private: an internal image host, say. Only the exact
   * host and port pass; a redirect from one to anywhere else is checked as
   * usual.
   */
  allowedPrivateHosts?: readonly string[];
  /** refuse http: (webhooks, unless ALLOW_HTTP_WEBHOOKS): what we send must not travel in the clear */
  requireHttps?: boolean;
}

/**
 * Normalizes a comma-separated list of `host:port` entries (`images.internal:8080`,
 * `10.0.0.5:80`, `[fd00::5]:443`); throws naming a bad entry.
 */
export function parseHostAllowlist(raw: string): string[] {
  return raw
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      let url: URL;
      try {
        url = new URL(`http://${entry}`);
      } catch {
        throw new Error(`"${entry}" is not a host:port pair`);
      }
      if (url.username || url.password || url.pathname !== '/' || url.search || !/:\d+$/.test(entry)) {
        throw new Error(`"${entry}" is not a host:port pair (the port is required)`);
      }
      return `${url.hostname}:${url.port || '80'}`;
    });
}

/** Whether the URL's exact host and port are on the policy's private allowlist. */
export function isAllowlisted(url: URL, policy: UrlPolicy): boolean {
  if (!policy.allowedPrivateHosts?.length) return false;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return policy.allowedPrivateHosts.includes(`${url.hostname}:${port}`);
}

/** Checks scheme, credentials and literal addresses of a URL before any connection. */
export function checkUrl(raw: string, policy: UrlPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError('SOURCE_URL_INVALID', `${policy.purpose} URL is not a valid absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL scheme ${url.protocol.replace(':', '')} is not allowed (http and https only)`);
  }
  if (policy.requireHttps && url.protocol !== 'https:') {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL must use https (events carry job results; plain http is off on this service)`);
  }
  if (url.username || url.password) {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL must not carry credentials`);
  }
  if (policy.allowPrivate || isAllowlisted(url, policy)) return url;
  const host = bareHost(url.hostname);
  if (isAddressLiteral(host)) {
    const why = addressRefusal(host);
    if (why) throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL points to ${why}`);
    return url;
  }
  // A trailing dot names the same host ("localhost." is localhost).
  const name = host.replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL points to localhost`);
  }
  if (METADATA_NAMES.has(name)) {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL points to a cloud metadata service`);
  }
  return url;
}

/**
 * Whether a hostname from `new URL()` is an IP literal. URL has already turned
 * every IPv4 spelling (hex, octal, shortened) into dotted decimal and kept
 * IPv6 in brackets, so these two shapes are the only literals; everything else
 * is a name, checked at connect time. (ipaddr.isValid on a name costs tens of
 * microseconds, a throw and a catch, on every enqueue.)
 */
const DOTTED_IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

function isAddressLiteral(host: string): boolean {
  return (host.includes(':') || DOTTED_IPV4.test(host)) && ipaddr.isValid(host);
}

/**
 * A `lookup` for net/tls.connect (undici passes it through) that refuses
 * names resolving to any non-public address.
 */
export function guardedLookup(policy: UrlPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '', 0);
      const list = addresses as unknown as LookupAddress[];
      if (!policy.allowPrivate) {
        const bad = list.find((a) => !isPublicAddress(a.address));
        if (bad) {
          // Neither the name nor the address it resolved to goes into the
          // message: it reaches the vendor, and would tell them what an
          // internal name points at. The operator's log has both.
          const refusal = new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL's host resolves to a private or reserved address`, {
            details: { host: hostname, address: bad.address, reason: addressRefusal(bad.address) },
          });
          return callback(refusal as unknown as NodeJS.ErrnoException, '', 0);
        }
      }
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}
