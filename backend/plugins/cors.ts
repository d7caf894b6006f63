import fp from 'fastify-plugin';
import fastifyCors from '@fastify/cors';
import type { FastifyRequest, RouteOptions } from 'fastify';
import { AppError } from '../../jobs/errors.js';
import { storedOrigins } from '../../platform/origins.js';
import type { AuthVendor } from './auth.js';

/**
 * Browser pages on other origins (a vendor's dashboard) calling the API
 * (issue 19), with @fastify/cors.
 *
 * Which origins: each vendor's `cors_origins` (set by an admin: PATCH
 * /api/admin/vendors/:id or `npm run vendor -- cors`), or CORS_ORIGINS for
 * a vendor with none of its own.
 *
 * - A preflight carries no credentials, so it cannot tell whose page asks:
 *   it is answered for the union of every vendor's origins and
 *   CORS_ORIGINS (read from MySQL at most once per VENDOR_CACHE_MS), with
 *   Access-Control-Max-Age so the browser asks again rarely. A preflight
 *   from any other origin is 403 without Access-Control-Allow-Origin.
 * - The real request names its vendor (bearer token, or X-Api-Key on
 *   /v1.0): an Origin that is not one of that vendor's is refused 403
 *   FORBIDDEN, without CORS headers, before the body is read. Requests
 *   without an Origin (servers, curl) and same-origin pages (the dashboard
 *   at /dashboard, Swagger UI) are not affected.
 * - Credentials are never cookies: tokens travel in Authorization (or
 *   X-Api-Key), so `Access-Control-Allow-Credentials` is never sent.
 */
export interface CorsPluginOptions {
  /** CORS_ORIGINS, checked */
  defaultOrigins: readonly string[];
  /** Access-Control-Max-Age of a preflight answer */
  maxAgeSeconds: number;
  /** how long the union of known origins is kept (VENDOR_CACHE_MS) */
  cacheMs: number;
  /** PUBLIC_BASE_URL: pages served from it are same-origin */
  publicBaseUrl: string;
}

export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** Request headers a page may send (beyond the CORS-safelisted ones). */
export const CORS_ALLOWED_HEADERS = ['authorization', 'content-type', 'x-api-key', 'idempotency-key', 'prefer', 'if-none-match', 'x-request-id'] as const;

/** Response headers a page may read (beyond the CORS-safelisted ones). */
export const CORS_EXPOSED_HEADERS = [
  'ETag',
  'Location',
  'Retry-After',
  'X-Request-Id',
  'X-Job-Id',
  'X-Width',
  'X-Height',
  'X-Type',
  'X-Credits-Charged',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'RateLimit-Policy',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
  'Idempotent-Replayed',
  'Preference-Applied',
] as const;

declare module 'fastify' {
  interface FastifyInstance {
    cors: {
      /** the origins a preflight is answered for: every vendor's and CORS_ORIGINS (cached) */
      knownOrigins: () => Promise<ReadonlySet<string>>;
      /** the origins whose pages may call the API as this vendor */
      originsOf: (vendor: AuthVendor) => readonly string[];
    };
  }
}

export default fp<CorsPluginOptions>(
  async (app, opts) => {
    const defaults = new Set(opts.defaultOrigins);
    const ownOrigin = new URL(opts.publicBaseUrl).origin;
    let known: { origins: ReadonlySet<string>; at: number } | null = null;
    let loading: Promise<ReadonlySet<string>> | null = null;

    async function loadKnown(): Promise<ReadonlySet<string>> {
      try {
        const rows = await app.db.selectFrom('vendors').select('cors_origins').where('deleted_at', 'is', null).where('cors_origins', 'is not', null).execute();
        const origins = new Set(defaults);
        for (const row of rows) for (const origin of storedOrigins(row.cors_origins) ?? []) origins.add(origin);
        known = { origins, at: Date.now() };
        return origins;
      } catch (error) {
        // MySQL down: answer from what was known (or the operator's list) rather than fail every preflight.
        app.log.warn({ err: error }, 'CORS: could not read the vendors’ origins; using the last known ones');
        return known?.origins ?? defaults;
      }
    }

    const knownOrigins = async (): Promise<ReadonlySet<string>> => {
      if (known && Date.now() - known.at < opts.cacheMs) return known.origins;
      if (!loading) loading = loadKnown().finally(() => (loading = null));
      return loading;
    };
    const originsOf = (vendor: AuthVendor): readonly string[] => vendor.corsOrigins ?? opts.defaultOrigins;
    app.decorate('cors', { knownOrigins, originsOf });

    // @fastify/cors adds OPTIONS * for preflights: public (a preflight never carries a token).
    app.addHook('onRoute', (route: RouteOptions) => {
      if (route.method === 'OPTIONS' && route.url === '*' && route.config?.auth === undefined) route.config = { ...route.config, auth: 'public' };
    });

    await app.register(fastifyCors, {
      hook: 'onRequest',
      // Reflected when known; otherwise no CORS header at all (and a preflight is refused by the not-found handler, below).
      origin: async (origin: string | undefined) => origin !== undefined && (await knownOrigins()).has(origin),
      methods: [...CORS_METHODS],
      allowedHeaders: [...CORS_ALLOWED_HEADERS],
      exposedHeaders: [...CORS_EXPOSED_HEADERS],
      credentials: false,
      maxAge: opts.maxAgeSeconds,
      strictPreflight: true,
    });

    // The real request: now that the caller is known (auth's onRequest, or
    // remove.bg's X-Api-Key hook), its Origin must be one of its vendor's.
    // Registered after auth, so a bad token is a 401 first.
    app.addHook('preParsing', async (request, reply) => {
      const origin = request.headers.origin;
      const vendor = request.caller?.vendor;
      if (origin === undefined || !vendor) return;
      if (originsOf(vendor).includes(origin) || sameOrigin(request, origin, ownOrigin)) return;
      void reply.removeHeader('access-control-allow-origin');
      void reply.removeHeader('access-control-expose-headers');
      throw new AppError(
        'FORBIDDEN',
        `origin ${origin} is not allowed to call this API for this vendor: an admin adds it to the vendor's corsOrigins (PATCH /api/admin/vendors/${vendor.id}, or npm run vendor -- cors)`,
      );
    });
  },
  { name: 'cors', dependencies: ['auth', 'mysql', 'errors'] },
);

/** A page served by the API itself (the dashboard): its own origin, as configured or as the request reached it. */
function sameOrigin(request: FastifyRequest, origin: string, ownOrigin: string): boolean {
  if (origin === ownOrigin) return true;
  try {
    return new URL(origin).host === request.host;
  } catch {
    return false;
  }
}
