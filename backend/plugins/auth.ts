import fp from 'fastify-plugin';
import fastifyJwt from '@fastify/jwt';
import type { FastifyRequest, RouteOptions } from 'fastify';
import { findVendor } from '../../db/repos/vendors.js';
import type { Vendor, VendorRole } from '../../db/schema.js';
import { AppError } from '../../jobs/errors.js';
import { storedOrigins } from '../../platform/origins.js';

/**
 * Who may call a route is part of the route: every route declares
 * `config: { auth, scopes }` and this plugin resolves the caller once, in
 * one onRequest hook, before the rate limiter (which counts by the caller it
 * finds) and before the body is read. A route without `auth` stops the API
 * at startup. Plugins that mount routes of their own (Bull Board, OpenAPI,
 * static files) declare it for all of them with `mountAuth`.
 *
 * - `public`: no token needed; a token sent along is not looked at.
 * - `vendor`: a valid bearer token of a vendor that still exists, holding
 *   every scope the route names.
 * - `admin`: as vendor, and the vendor has the admin role (and the token is
 *   not a scoped browser token).
 */
export type AuthMode = 'public' | 'vendor' | 'admin';

/** What a scoped token may do; a token without `scope` (an API key's own) may do all. */
export const SCOPES = ['jobs:read', 'jobs:write', 'persons:read', 'persons:write', 'webhooks:read', 'webhooks:write'] as const;
export type Scope = (typeof SCOPES)[number];
/** What a project-restricted token may do when its minter names no scope: everything that is per project (webhooks are the whole vendor's). */
export const PROJECT_SCOPES: readonly Scope[] = ['jobs:read', 'jobs:write', 'persons:read'];
/** Longest life of a scoped or project-restricted (browser) token, in seconds. */
export const BROWSER_TOKEN_MAX_S = 3600;

export interface TokenClaims {
  sub: string;
  plan: string;
  role: VendorRole;
  /** space-separated scopes (OAuth style); absent: every scope */
  scope?: string;
  /** the one project a scoped token may touch */
  pid?: string;
  /** set on tokens that are not bearer tokens (a Bull Board session): refused as one */
  typ?: string;
  exp?: number;
  /** the vendor's token_version when minted; a token of an older version is revoked (absent: minted before versions, version 0) */
  ver?: number;
}

export interface AuthVendor {
  id: string;
  name: string;
  plan: string;
  role: VendorRole;
  rateLimits: Record<string, unknown> | null;
  /** web origins whose pages may call the API with this vendor's tokens; null: the operator's CORS_ORIGINS */
  corsOrigins: readonly string[] | null;
  /** tokens of another version are revoked */
  tokenVersion: number;
}

/** The resolved caller of a request on a `vendor` or `admin` route. */
export interface Caller {
  vendor: AuthVendor;
  /** null: every scope (a token minted from the API key) */
  scopes: ReadonlySet<Scope> | null;
  /** the only project this token may enqueue into or read; null: any */
  projectId: string | null;
  /** when the token expires (ms since the epoch), or null */
  expiresAt?: number | null;
}

export interface RouteAuth {
  auth: AuthMode;
  scopes?: readonly Scope[];
  /**
   * A credential this route accepts besides a bearer token (Bull Board's
   * operator token). True: let the request through without a caller.
   */
  alsoAccept?: (request: FastifyRequest) => boolean | Promise<boolean>;
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: TokenClaims;
    user: TokenClaims;
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** who may call this route (required on every route) */
    auth?: AuthMode;
    /** scopes a scoped token needs for this route */
    scopes?: readonly Scope[];
    alsoAccept?: RouteAuth['alsoAccept'];
  }
  interface FastifyInstance {
    /** the caller a request's bearer token names; throws 401 when there is none or it is not valid */
    resolveCaller: (request: FastifyRequest) => Promise<Caller>;
    /** the lifetime of a full vendor token (JWT_EXPIRES), in seconds */
    tokenLifetimeSeconds: number;
    /** Drops the cached row of a vendor (null: of every vendor), so its next request reads it again: a revocation applies at once. */
    forgetVendor: (vendorId: string | null) => void;
    signVendorToken: (
      vendor: Vendor,
      restriction?: { scopes?: readonly Scope[]; projectId?: string; expiresIn?: number },
    ) => Promise<{ token: string; expiresIn: number }>;
  }
  interface FastifyRequest {
    /** set on `vendor` and `admin` routes once the token is checked; null on public routes (and for Bull Board's operator token) */
    caller: Caller | null;
  }
}

export interface AuthPluginOptions {
  secret: string;
  expires: string;
  vendorCacheMs: number;
}

/** The vendor of a request on a `vendor` or `admin` route. */
export function vendorOf(request: FastifyRequest): AuthVendor {
  if (!request.caller) throw new AppError('UNAUTHORIZED', 'this route needs a bearer token');
  return request.caller.vendor;
}

/** True for a token minted from the API key without restrictions (no scope list, no project). */
export function isFullToken(caller: Caller): boolean {
  return caller.scopes === null && caller.projectId === null;
}

/** The one project the request's token may touch, or null: any of its vendor's. */
export function projectOf(request: FastifyRequest): string | null {
  return request.caller?.projectId ?? null;
}

/**
 * A project a request names (enqueue body, a filter) must be the token's own
 * when the token is restricted to one: 403 naming both otherwise.
 */
export function assertProject(request: FastifyRequest, projectId: string, path: string): void {
  const own = projectOf(request);
  if (own !== null && projectId !== own) {
    throw new AppError('FORBIDDEN', `this token is restricted to project ${JSON.stringify(own)}; ${path} names ${JSON.stringify(projectId)}`);
  }
}

/** Whether a job or batch of `projectId` may be shown to the request's token (another project's reads as not found). */
export function seesProject(request: FastifyRequest, projectId: string): boolean {
  const own = projectOf(request);
  return own === null || own === projectId;
}

/**
 * An onRoute hook for a scope that mounts a plugin's routes (static files,
 * OpenAPI, Bull Board): every route it adds gets this auth unless it names
 * its own.
 */
export function mountAuth(auth: RouteAuth): (route: RouteOptions) => void {
  return (route) => {
    route.config = { ...auth, ...route.config };
  };
}

/**
 * Vendor identity comes from the token and nowhere else. Tokens are HS256
 * only (an `alg: none` or RS-signed token is refused), short-lived, and
 * checked against the vendor row, cached for a moment, so a deleted vendor's
 * tokens stop working within VENDOR_CACHE_MS.
 */
export default fp<AuthPluginOptions>(
  async (app, opts) => {
    await app.register(fastifyJwt, {
      secret: opts.secret,
      sign: { algorithm: 'HS256', expiresIn: opts.expires },
      // Verified claims are cached here, by vendor (see verifyToken), so that a revocation can drop them.
      verify: { algorithms: ['HS256'] },
    });
    const expiresIn = durationSeconds(opts.expires);
    const cache = new Map<string, { vendor: AuthVendor | null; at: number }>();

    async function loadVendor(id: string): Promise<AuthVendor | null> {
      const hit = cache.get(id);
      if (hit && Date.now() - hit.at < opts.vendorCacheMs) return hit.vendor;
      const row = await findVendor(app.db, id);
      const vendor = row ? toAuthVendor(row) : null;
      if (opts.vendorCacheMs > 0) {
        if (cache.size > 10_000) cache.clear();
        cache.set(id, { vendor, at: Date.now() });
      }
      return vendor;
    }

    // Verified claims by token: a dashboard sends the same token many times a
    // second, and its signature need not be checked each time. Indexed by
    // vendor so that a revocation drops them with the vendor's row.
    const verified = new Map<string, { claims: TokenClaims; until: number }>();
    const tokensOf = new Map<string, Set<string>>();

    function verifyToken(token: string): TokenClaims {
      const hit = verified.get(token);
      if (hit && Date.now() < hit.until) return hit.claims;
      let claims: TokenClaims;
      try {
        claims = app.jwt.verify<TokenClaims>(token);
      } catch (error) {
        const code = (error as { code?: string }).code;
        const expired = code === 'FAST_JWT_EXPIRED' || code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED';
        throw new AppError('UNAUTHORIZED', expired ? 'token expired; get a new one from POST /api/auth/token' : 'invalid bearer token');
      }
      if (typeof claims.sub !== 'string' || claims.typ !== undefined) throw new AppError('UNAUTHORIZED', 'invalid bearer token');
      if (verified.size >= VERIFIED_MAX) {
        verified.clear();
        tokensOf.clear();
      }
      const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : Infinity;
      verified.set(token, { claims, until: Math.min(exp, Date.now() + VERIFIED_TTL_MS) });
      let set = tokensOf.get(claims.sub);
      if (!set) tokensOf.set(claims.sub, (set = new Set()));
      set.add(token);
      return claims;
    }

    app.decorate('forgetVendor', (vendorId: string | null) => {
      if (vendorId === null) {
        cache.clear();
        verified.clear();
        tokensOf.clear();
        return;
      }
      cache.delete(vendorId);
      for (const token of tokensOf.get(vendorId) ?? []) verified.delete(token);
      tokensOf.delete(vendorId);
    });

    app.decorateRequest('caller', null);
    const refusals = new WeakMap<FastifyRequest, AppError>();
    app.decorate('resolveCaller', async (request: FastifyRequest): Promise<Caller> => {
      const header = request.headers.authorization;
      if (!header) throw new AppError('UNAUTHORIZED', 'missing bearer token (POST /api/auth/token to get one)');
      const parts = header.split(' ');
      if (parts.length !== 2 || !/^Bearer$/i.test(parts[0] as string) || !parts[1]) {
        throw new AppError('UNAUTHORIZED', 'send the token as Authorization: Bearer <token>');
      }
      const claims = verifyToken(parts[1]);
      const vendor = await loadVendor(claims.sub);
      if (!vendor) throw new AppError('UNAUTHORIZED', 'the vendor of this token no longer exists');
      // Rotating the key or deleting the vendor raised its version: every token minted before is refused.
      if ((claims.ver ?? 0) !== vendor.tokenVersion) throw new AppError('UNAUTHORIZED', 'this token was revoked (the API key was rotated); get a new one');
      return {
        vendor,
        scopes: parseScopes(claims.scope),
        projectId: typeof claims.pid === 'string' ? claims.pid : null,
        expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : null,
      };
    });

    // Who calls is found out in onRequest, before the rate limiter's own
    // onRequest hook, so it counts a vendor's requests per vendor; a request
    // without a valid token counts per IP. The refusal waits for preParsing,
    // after the count, so that failed attempts are limited too.
    app.addHook('onRequest', async (request) => {
      const config = request.routeOptions.config;
      if (config.auth === undefined || config.auth === 'public') return;
      if (config.alsoAccept && (await config.alsoAccept(request))) return;
      try {
        const caller = await app.resolveCaller(request);
        // The request's own child logger gains the binding: no second child per request.
        (request.log as { setBindings?: (bindings: object) => void }).setBindings?.({ vendorId: caller.vendor.id });
        request.caller = caller;
      } catch (error) {
        refusals.set(request, error as AppError);
      }
    });
    app.addHook('preParsing', async (request) => {
      const config = request.routeOptions.config;
      if (config.auth === undefined || config.auth === 'public') return;
      const refusal = refusals.get(request);
      if (refusal) throw refusal;
      const caller = request.caller;
      if (!caller) return; // let through by alsoAccept
      if (config.auth === 'admin') {
        if (caller.vendor.role !== 'admin') throw new AppError('FORBIDDEN', 'this route needs an admin token');
        if (!isFullToken(caller)) throw new AppError('FORBIDDEN', 'a scoped or project-restricted token cannot call admin routes');
      }
      const missing = caller.scopes ? (config.scopes ?? []).filter((scope) => !caller.scopes?.has(scope)) : [];
      if (missing.length > 0) throw new AppError('FORBIDDEN', `this token lacks the scope ${missing.join(' ')} this route needs`);
    });

    app.decorate('tokenLifetimeSeconds', expiresIn);
    app.decorate('signVendorToken', async (vendor: Vendor, restriction: { scopes?: readonly Scope[]; projectId?: string; expiresIn?: number } = {}) => {
      const claims: TokenClaims = { sub: vendor.id, plan: vendor.plan, role: vendor.role, ver: vendor.token_version };
      // A project-restricted token always carries its scopes, so nothing reads it as a full token.
      const scopes = restriction.scopes ?? (restriction.projectId !== undefined ? PROJECT_SCOPES : undefined);
      if (scopes) claims.scope = scopes.join(' ');
      if (restriction.projectId !== undefined) claims.pid = restriction.projectId;
      const lifetime = restriction.expiresIn ?? expiresIn;
      const token = app.jwt.sign(claims, restriction.expiresIn !== undefined ? { expiresIn: restriction.expiresIn } : {});
      return { token, expiresIn: lifetime };
    });
  },
  { name: 'auth', dependencies: ['mysql', 'errors'] },
);

/**
 * Every route says who may call it; one that does not is a mistake found at
 * startup, not in production. Registered first, so it sees every route.
 */
export const routeAuthCheck = fp(
  async (app) => {
    const routes: RouteOptions[] = [];
    app.addHook('onRoute', (route) => {
      routes.push(route);
    });
    app.addHook('onReady', async () => {
      const missing = routes.filter((route) => !AUTH_MODES.has(route.config?.auth as AuthMode));
      routes.length = 0;
      if (missing.length > 0) {
        const names = missing.map((route) => `${[route.method].flat().join(',')} ${route.url}`);
        throw new Error(`routes without config.auth ('public' | 'vendor' | 'admin'): ${names.join(', ')}`);
      }
    });
  },
  { name: 'route-auth-check' },
);

/** Verified tokens kept (past it the cache starts over) and for how long at most. */
const VERIFIED_MAX = 100_000;
const VERIFIED_TTL_MS = 10 * 60_000;

const AUTH_MODES: ReadonlySet<AuthMode> = new Set<AuthMode>(['public', 'vendor', 'admin']);
const SCOPE_SET: ReadonlySet<string> = new Set(SCOPES);

function parseScopes(claim: unknown): ReadonlySet<Scope> | null {
  if (typeof claim !== 'string') return null;
  return new Set(claim.split(' ').filter((s): s is Scope => SCOPE_SET.has(s)));
}

export function toAuthVendor(row: Vendor): AuthVendor {
  let rateLimits: Record<string, unknown> | null = null;
  if (row.rate_limits) {
    try {
      rateLimits = JSON.parse(row.rate_limits) as Record<string, unknown>;
    } catch {
      rateLimits = null;
    }
  }
  return {
    id: row.id,
    name: row.name,
    plan: row.plan,
    role: row.role,
    rateLimits,
    corsOrigins: storedOrigins(row.cors_origins),
    tokenVersion: Number(row.token_version),
  };
}

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, '': 1 };

export function durationSeconds(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!match) throw new Error(`bad duration ${value}`);
  return Math.round(Number(match[1]) * (UNIT_SECONDS[match[2] ?? ''] ?? 1));
}
