import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { ApiConfig } from './config.js';

/**
 * Plans and rate-limit tiers. A vendor's plan (`vendors.plan`) picks the
 * default limits; an admin may override any tier, or the bulk item cap, for
 * one vendor (`vendors.rate_limits`, JSON). Pure: no I/O.
 *
 *   global             per client IP, routes without a vendor tier (token exchange)
 *   processing         process-queue, crop-face-queue
 *   backgroundRemoval  remove-bg-queue
 *   bulk               bulk-remove-bg, bulk-crop-face, bulk-process
 *   polling            job, jobs, batch, queue-stats, health, admin reads
 */
export const VENDOR_TIERS = ['processing', 'backgroundRemoval', 'bulk', 'polling'] as const;
export type VendorTier = (typeof VENDOR_TIERS)[number];
export type Tier = VendorTier | 'global';

export const PLANS = ['standard', 'unlimited'] as const;
export type Plan = (typeof PLANS)[number];

export interface Limit {
  max: number;
  windowMs: number;
}

/** What a vendor may do: each tier's limit (null = not limited) and the bulk item cap. */
export interface EffectiveLimits {
  plan: Plan;
  tiers: Record<VendorTier, Limit | null>;
  bulkMaxItems: number;
}

export const LimitSchema = Type.Object(
  {
    max: Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'requests per window (0 blocks the tier)' }),
    windowMs: Type.Integer({ minimum: 1000, maximum: 30 * 24 * 3600 * 1000, description: 'window length in ms' }),
  },
  { additionalProperties: false },
);

const TierOverride = Type.Union([LimitSchema, Type.Null()], { description: 'a limit for this tier, or null for no limit' });

export const RateLimitOverrides = Type.Object(
  {
    processing: Type.Optional(TierOverride),
    backgroundRemoval: Type.Optional(TierOverride),
    bulk: Type.Optional(TierOverride),
    polling: Type.Optional(TierOverride),
    bulkMaxItems: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'most items in one bulk request' })),
  },
  { additionalProperties: false, description: "per-vendor overrides of the plan's limits; a tier left out keeps the plan's limit" },
);
export type RateLimitOverrides = Static<typeof RateLimitOverrides>;

export type PlanConfig = Pick<
  ApiConfig,
  | 'RATE_LIMIT_GLOBAL_MAX'
  | 'RATE_LIMIT_GLOBAL_WINDOW_MS'
  | 'RATE_LIMIT_PROCESSING_MAX'
  | 'RATE_LIMIT_PROCESSING_WINDOW_MS'
  | 'RATE_LIMIT_BG_REMOVAL_MAX'
  | 'RATE_LIMIT_BG_REMOVAL_WINDOW_MS'
  | 'RATE_LIMIT_BULK_MAX'
  | 'RATE_LIMIT_BULK_WINDOW_MS'
  | 'RATE_LIMIT_POLLING_MAX'
  | 'RATE_LIMIT_POLLING_WINDOW_MS'
  | 'BULK_MAX_ITEMS'
  | 'BULK_MAX_ITEMS_UNLIMITED'
>;

export function globalLimit(config: PlanConfig): Limit {
  return { max: config.RATE_LIMIT_GLOBAL_MAX, windowMs: config.RATE_LIMIT_GLOBAL_WINDOW_MS };
}

export function planLimits(config: PlanConfig, plan: Plan): EffectiveLimits {
  if (plan === 'unlimited') {
    return { plan, tiers: { processing: null, backgroundRemoval: null, bulk: null, polling: null }, bulkMaxItems: config.BULK_MAX_ITEMS_UNLIMITED };
  }
  return {
    plan,
    tiers: {
      processing: { max: config.RATE_LIMIT_PROCESSING_MAX, windowMs: config.RATE_LIMIT_PROCESSING_WINDOW_MS },
      backgroundRemoval: { max: config.RATE_LIMIT_BG_REMOVAL_MAX, windowMs: config.RATE_LIMIT_BG_REMOVAL_WINDOW_MS },
      bulk: { max: config.RATE_LIMIT_BULK_MAX, windowMs: config.RATE_LIMIT_BULK_WINDOW_MS },
      polling: { max: config.RATE_LIMIT_POLLING_MAX, windowMs: config.RATE_LIMIT_POLLING_WINDOW_MS },
    },
    bulkMaxItems: config.BULK_MAX_ITEMS,
  };
}

/** An unknown plan name (a row edited by hand) gets the standard plan, never "no limits". */
export function asPlan(value: string): Plan {
  return (PLANS as readonly string[]).includes(value) ? (value as Plan) : 'standard';
}

/** Overrides as stored; anything that does not match the schema is ignored rather than trusted. */
export function parseOverrides(value: unknown): RateLimitOverrides {
  return Value.Check(RateLimitOverrides, value) ? value : {};
}

export function effectiveLimits(config: PlanConfig, vendor: { plan: string; rateLimits: unknown }): EffectiveLimits {
  const base = planLimits(config, asPlan(vendor.plan));
  const overrides = parseOverrides(vendor.rateLimits);
  const tiers = { ...base.tiers };
  for (const tier of VENDOR_TIERS) {
    const override = overrides[tier];
    if (override !== undefined) tiers[tier] = override;
  }
  return { plan: base.plan, tiers, bulkMaxItems: overrides.bulkMaxItems ?? base.bulkMaxItems };
}
