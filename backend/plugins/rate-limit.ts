import fp from 'fastify-plugin';
import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit';
import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { AppError } from '../../jobs/errors.js';
import { effectiveLimits, globalLimit, type EffectiveLimits, type Limit, type PlanConfig, type Tier } from '../plans.js';

/**
 * Per-vendor rate limits (seed 003, "Rate Limiting") with @fastify/rate-limit
 * on Redis. A route names its tier in `config.rateLimitTier`; on /api routes
 * that name none, anonymous requests count in the per-IP `global` tier (token
 * exchange) and authenticated ones in their vendor's `polling` tier. Vendor
 * tiers are keyed by the caller the auth plugin resolved (its onRequest hook runs first, before
 * the body is read), so every route of a tier shares one counter per vendor
 * and vendors never share one. Counting is one atomic Lua INCRBY per batch of
 * requests (see tierStore): exact under concurrency, across API processes.
 *
 * Redis down: enqueue tiers fail closed (503 SERVICE_UNAVAILABLE at once: the
 * API's Redis connection has no offline queue), while the polling and global
 * tiers let requests through, since status reads and token exchange need
 * only MySQL.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    /** the rate-limit tier of this route (see backend/plans.ts) */
    rateLimitTier?: Tier;
    /** set by this plugin on /api/admin/* and Bull Board: counted per client IP in the admin tier */
    adminRateLimit?: boolean;
  }
  interface FastifyInstance {
    /** the limits that apply to a vendor now: its plan and an admin's overrides */
    vendorLimits: (vendor: { plan: string; rateLimits: unknown }) => EffectiveLimits;
  }
}

export interface RateLimitPluginOptions {
  plans: PlanConfig;
  /** requests per minute per client IP on /api/admin/* and Bull Board (ADMIN_RATE_LIMIT_PER_MINUTE) */
  adminPerMinute: number;
  /** key namespace, so several deployments (and test files) can share a Redis */
  prefix: string;
}

/** how long a counter increment may take before the request is answered 503 (or let through, for fail-open tiers) */
const STORE_TIMEOUT_MS = 500;
const FAIL_OPEN: ReadonlySet<Tier> = new Set<Tier>(['global', 'polling']);

export default fp<RateLimitPluginOptions>(
  async (app, opts) => {
    // The auth plugin hands out one vendor object per cache period, so its
    // limits are worked out once per period rather than on every hook call.
    const computed = new WeakMap<object, EffectiveLimits>();
    app.decorate('vendorLimits', (vendor: { plan: string; rateLimits: unknown }) => {
      let limits = computed.get(vendor);
      if (!limits) computed.set(vendor, (limits = effectiveLimits(opts.plans, vendor)));
      return limits;
    });

    const limitOf = (request: FastifyRequest, tier: Tier): Limit | null => {
      const vendor = request.caller?.vendor;
      if (tier === 'global' || !vendor) return tier === 'global' ? globalLimit(opts.plans) : anonymousLimit(opts.plans, tier);
      return app.vendorLimits(vendor).tiers[tier];
    };

    // Runs before @fastify/rate-limit's own onRoute hook (registered below),
    // which turns `config.rateLimit` into the route's limiter.
    app.addHook('onRoute', (route) => {
      // The operators' surface counts per client IP, whoever's token it carries, so a leaked or guessed
      // credential (or a board sign-in form) cannot be tried or used without bound.
      if (isAdminUrl(route.url) && route.config?.rateLimit === undefined) {
        route.config = { ...route.config, adminRateLimit: true, rateLimit: adminOptions(opts.adminPerMinute) };
        return;
      }
      // /api routes, and routes elsewhere that name their tier (remove.bg's /v1.0).
      if (route.config?.rateLimit !== undefined || (!route.url.startsWith('/api/') && route.config?.rateLimitTier === undefined)) return;
      const choice: TierChoice = route.config?.rateLimitTier ?? 'auto';
      route.config = { ...route.config, rateLimit: tierOptions(choice, limitOf) };
    });

    await app.register(rateLimit, {
      global: false,
      enableDraftSpec: true,
      hook: 'onRequest',
      store: tierStore(app.redis, `${opts.prefix}:rl:`),
      errorResponseBuilder: (request, context) => {
        if (request.routeOptions.config.adminRateLimit) {
          app.metrics.rateLimited('admin');
          return new AppError(
            'RATE_LIMITED',
            `rate limit reached: ${context.max} requests per minute per client IP on admin routes; retry in ${context.after}`,
          );
        }
        const tier = resolveTier(request.routeOptions.config.rateLimitTier ?? 'auto', request);
        app.metrics.rateLimited(tier);
        return new AppError(
          'RATE_LIMITED',
          `rate limit reached: ${context.max} requests per ${describeWindow(request, tier, limitOf)} in the ${tier} tier; retry in ${context.after}`,
        );
      },
    });
  },
  { name: 'rate-limit', dependencies: ['redis', 'auth', 'metrics', 'errors'] },
);

/**
 * A route names its tier, or leaves it to the request: 'auto' counts an
 * anonymous request in the per-IP global tier (token exchange, public routes) and an
 * authenticated one in its vendor's polling tier (admin and other areas' routes).
 */
type TierChoice = Tier | 'auto';

function resolveTier(choice: TierChoice, request: FastifyRequest): Tier {
  if (choice !== 'auto') return choice;
  return request.caller ? 'polling' : 'global';
}

function tierOptions(choice: TierChoice, limitOf: (request: FastifyRequest, tier: Tier) => Limit | null): RateLimitOptions {
  const tierOf = (request: FastifyRequest) => resolveTier(choice, request);
  return {
    hook: 'onRequest',
    skipOnError: choice === 'auto' || FAIL_OPEN.has(choice),
    keyGenerator: (request) => {
      const tier = tierOf(request);
      return tier !== 'global' && request.caller ? `${tier}:v:${request.caller.vendor.id}` : `${tier}:ip:${request.ip}`;
    },
    allowList: (request) => limitOf(request, tierOf(request)) === null,
    max: (request) => limitOf(request, tierOf(request))?.max ?? 0,
    timeWindow: (request) => limitOf(request, tierOf(request))?.windowMs ?? 1000,
  };
}

function isAdminUrl(url: string): boolean {
  return url === '/api/admin' || url.startsWith('/api/admin/') || url === '/admin' || url.startsWith('/admin/');
}

/** The admin tier: per client IP (request.ip, see TRUST_PROXY), a one-minute window; lets requests through while Redis is away, as operators need the API then. */
function adminOptions(perMinute: number): RateLimitOptions {
  return {
    hook: 'onRequest',
    skipOnError: true,
    keyGenerator: (request) => `admin:ip:${request.ip}`,
    max: perMinute,
    timeWindow: 60_000,
  };
}

/** A route of a vendor tier reached without a vendor (health): the tier's standard limit, per IP. */
function anonymousLimit(plans: PlanConfig, tier: Exclude<Tier, 'global'>): Limit {
  return effectiveLimits(plans, { plan: 'standard', rateLimits: null }).tiers[tier] ?? globalLimit(plans);
}

function describeWindow(request: FastifyRequest, tier: Tier, limitOf: (request: FastifyRequest, tier: Tier) => Limit | null): string {
  const ms = limitOf(request, tier)?.windowMs ?? 0;
  if (ms % 3_600_000 === 0) return ms === 3_600_000 ? 'hour' : `${ms / 3_600_000} hours`;
  if (ms % 60_000 === 0) return ms === 60_000 ? 'minute' : `${ms / 60_000} minutes`;
  return `${ms / 1000} s`;
}

/**
 * @fastify/rate-limit's Redis store keys counters by route; tiers span
 * several routes, so this store keys them by what keyGenerator returns (tier
 * and vendor) and nothing else. Same script shape: INCR, PEXPIRE on the first
 * hit of a window.
 *
 * Requests for one counter that arrive while its increment is in flight are
 * counted together in the next one (INCRBY n, like a group commit): each
 * still gets its own count (current − n + 1 … current), so limits stay exact
 * across processes, while a busy poller costs one Redis round trip per batch
 * rather than one per request.
 */
const INCR_SCRIPT = `
local current = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl
if current == tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
else
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
  end
end
return {current, ttl}`;

type IncrCallback = (error: Error | null, result?: { current: number; ttl: number }) => void;
type RedisWithTierCommand = Redis & {
  iqRateLimitIncrBy(key: string, windowMs: number, by: number, callback: (error: Error | null, result?: [number, number]) => void): void;
};

interface Pending {
  windowMs: number;
  callbacks: IncrCallback[];
}

function tierStore(redis: Redis, namespace: string) {
  const client = redis as RedisWithTierCommand;
  if (typeof client.iqRateLimitIncrBy !== 'function') redis.defineCommand('iqRateLimitIncrBy', { numberOfKeys: 1, lua: INCR_SCRIPT });
  /** per counter: the requests waiting for the increment in flight to come back (absent: none in flight) */
  const waiting = new Map<string, Pending | null>();

  const unavailable = (cause: unknown) =>
    new AppError('SERVICE_UNAVAILABLE', 'rate limiting is unavailable (Redis is not answering); nothing was done, retry shortly', { cause });

  function send(key: string, windowMs: number, callbacks: IncrCallback[]): void {
    waiting.set(key, null);
    let answered = false;
    const answer = (error: Error | null, result?: [number, number]) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      const current = result ? Number(result[0]) : 0;
      const ttl = result ? Number(result[1]) : 0;
      callbacks.forEach((callback, i) => {
        if (error || !result) callback(error ?? unavailable(new Error('no result')));
        else callback(null, { current: current - callbacks.length + 1 + i, ttl });
      });
      const next = waiting.get(key);
      if (next) send(key, next.windowMs, next.callbacks);
      else waiting.delete(key);
    };
    // A Redis that stops answering without closing the connection must not
    // hold the request past the 503-within-a-second promise.
    const timer = setTimeout(() => answer(unavailable(new Error(`no answer within ${STORE_TIMEOUT_MS} ms`))), STORE_TIMEOUT_MS);
    client.iqRateLimitIncrBy(namespace + key, windowMs, callbacks.length, (error, result) => answer(error ? unavailable(error) : null, result));
  }

  return class TierStore {
    incr(key: string, callback: IncrCallback, timeWindow: number): void {
      if (!waiting.has(key)) return send(key, timeWindow, [callback]);
      const pending = waiting.get(key);
      if (pending) pending.callbacks.push(callback);
      else waiting.set(key, { windowMs: timeWindow, callbacks: [callback] });
    }
    child(): TierStore {
      return this;
    }
  };
}
