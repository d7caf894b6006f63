import fp from 'fastify-plugin';
import fastifyJwt from '@fastify/jwt';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { findVendor } from '../../db/repos/vendors.js';
import type { Vendor, VendorRole } from '../../db/schema.js';
import { AppError } from '../../jobs/errors.js';

export interface TokenClaims {
  sub: string;
  plan: string;
  role: VendorRole;
}

export interface AuthVendor {
  id: string;
  name: string;
  plan: string;
  role: VendorRole;
  rateLimits: Record<string, unknown> | null;
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: TokenClaims;
    user: TokenClaims;
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler: a valid bearer token of a vendor that still exists */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    /** preHandler: as authenticate, and the vendor has the admin role */
    requireAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    signVendorToken: (vendor: Vendor) => Promise<{ token: string; expiresIn: number }>;
  }
  interface FastifyRequest {
    vendor: AuthVendor;
  }
}

export interface AuthPluginOptions {
  secret: string;
  expires: string;
  vendorCacheMs: number;
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
      // A dashboard sends the same token many times a second: its verified claims are cached (until it expires, at most 10 min).
      verify: { algorithms: ['HS256'], cache: true },
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

    app.decorateRequest('vendor', null as unknown as AuthVendor);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      if (!request.headers.authorization) throw new AppError('UNAUTHORIZED', 'missing bearer token (POST /api/auth/token to get one)');
      let claims: TokenClaims;
      try {
        claims = await request.jwtVerify<TokenClaims>();
      } catch (error) {
        const expired = (error as { code?: string }).code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED';
        throw new AppError('UNAUTHORIZED', expired ? 'token expired; get a new one from POST /api/auth/token' : 'invalid bearer token');
      }
      if (typeof claims.sub !== 'string') throw new AppError('UNAUTHORIZED', 'invalid bearer token');
      const vendor = await loadVendor(claims.sub);
      if (!vendor) throw new AppError('UNAUTHORIZED', 'the vendor of this token no longer exists');
      // The request's own child logger gains the binding: no second child logger per request.
      if (request.vendor?.id !== vendor.id) (request.log as { setBindings?: (bindings: object) => void }).setBindings?.({ vendorId: vendor.id });
      request.vendor = vendor;
    });
    // The rate limiter identifies the vendor before the reply's logger is
    // made; the request's last lines ("request completed") carry it too.
    app.addHook('onSend', async (request, reply) => {
      if (request.vendor && reply.log !== request.log) reply.log = request.log;
    });
    app.decorate('requireAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
      await app.authenticate(request, reply);
      if (request.vendor.role !== 'admin') throw new AppError('FORBIDDEN', 'this route needs an admin token');
    });
    app.decorate('signVendorToken', async (vendor: Vendor) => {
      const token = app.jwt.sign({ sub: vendor.id, plan: vendor.plan, role: vendor.role });
      return { token, expiresIn };
    });
  },
  { name: 'auth', dependencies: ['mysql'] },
);

export function toAuthVendor(row: Vendor): AuthVendor {
  let rateLimits: Record<string, unknown> | null = null;
  if (row.rate_limits) {
    try {
      rateLimits = JSON.parse(row.rate_limits) as Record<string, unknown>;
    } catch {
      rateLimits = null;
    }
  }
  return { id: row.id, name: row.name, plan: row.plan, role: row.role, rateLimits };
}

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, '': 1 };

export function durationSeconds(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!match) throw new Error(`bad duration ${value}`);
  return Math.round(Number(match[1]) * (UNIT_SECONDS[match[2] ?? ''] ?? 1));
}
