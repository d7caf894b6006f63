import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { AppError } from '../jobs/errors.js';

/**
 * Server-side request forgery guard, shared by source fetching, the rembg
 * service's `?url=` and webhook delivery. Only public unicast addresses pass:
 * loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT,
 * unique-local, multicast, reserved and v6 forms that embed a v4 address are
 * refused. The check runs on every address a name resolves to, at connect
 * time, so a name that changes between check and connect (DNS rebinding)
 * cannot slip through.
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  return parsed.range() === 'unicast';
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
  if (url.username || url.password) {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL must not carry credentials`);
  }
  if (policy.allowPrivate || isAllowlisted(url, policy)) return url;
  const host = bareHost(url.hostname);
  if (isAddressLiteral(host) && !isPublicAddress(host)) {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL points to a private or reserved address (${host})`);
  }
  if (host === 'localhost' || host.endsWith('.localhost')) {
    throw new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} URL points to localhost`);
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
          const refusal = new AppError('SOURCE_URL_FORBIDDEN', `${policy.purpose} host ${hostname} resolves to a private or reserved address (${bad.address})`);
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
