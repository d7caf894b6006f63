/**
 * Web origins for CORS (issue 19): a vendor's `cors_origins`, the operator's
 * CORS_ORIGINS. An origin is written exactly as a browser sends it in the
 * Origin header: scheme, host and a port other than the default, no path and
 * no trailing slash (`https://app.example.com`, `http://localhost:5173`).
 * No wildcards: each origin is named.
 */
export const MAX_ORIGINS = 50;

/** a DNS name, an IPv4 address or a bracketed IPv6 one, as the URL parser leaves them (lower case, punycode) */
const HOSTNAME = /^(?:\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*)$/;

/** Why `value` is not an exact origin, or null when it is one. */
export function originProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${JSON.stringify(value)} is not an origin (write it as https://app.example.com)`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `${JSON.stringify(value)}: only http and https origins can be allowed`;
  if (!HOSTNAME.test(url.hostname)) return `${JSON.stringify(value)} does not name one host (no wildcards)`;
  if (url.origin !== value)
    return `${JSON.stringify(value)} is not an exact origin: write it as ${url.origin} (scheme://host[:port], lower case, no path or trailing slash)`;
  return null;
}

/** Checks a list of origins; returns it without duplicates, or throws with every problem. */
export function checkOrigins(values: readonly string[]): string[] {
  const problems = values.map(originProblem).filter((p): p is string => p !== null);
  if (values.length > MAX_ORIGINS) problems.push(`at most ${MAX_ORIGINS} origins`);
  if (problems.length > 0) throw new Error(problems.join('; '));
  return [...new Set(values)];
}

/** A comma-separated list (CORS_ORIGINS, the CLI's --origins); blanks are skipped. */
export function parseOriginList(raw: string): string[] {
  return checkOrigins(
    raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
}

/** The stored JSON of vendors.cors_origins: a list, or null when unset (or unreadable, which falls back to the default too). */
export function storedOrigins(json: string | null | undefined): string[] | null {
  if (json === null || json === undefined) return null;
  try {
    const value = JSON.parse(json) as unknown;
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : null;
  } catch {
    return null;
  }
}
