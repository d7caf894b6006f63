import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { LimitSchema, PLANS, RateLimitOverrides } from '../../plans.js';
import { RetentionOverrides, RetentionPeriods } from '../../../jobs/retention.js';
import { withErrors } from '../../schemas/common.js';
import { MAX_ORIGINS } from '../../../platform/origins.js';

/** Admin: vendor plans and per-vendor rate-limit overrides. */
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const PlanSchema = Type.Unsafe<(typeof PLANS)[number]>({ type: 'string', enum: [...PLANS] });

export const AdminVendor = Type.Object({
  id: Type.String(),
  name: Type.String(),
  plan: Type.String(),
  role: Type.String(),
  rateLimits: Nullable(RateLimitOverrides),
  corsOrigins: Type.Union([Type.Array(Type.String()), Type.Null()], {
    description: "web origins whose pages may call the API with this vendor's tokens (CORS); null: the operator's CORS_ORIGINS",
  }),
  retention: Nullable(RetentionOverrides),
  faceTagging: Type.Boolean({ description: 'face tagging (biometric descriptors) is opt-in: off until an admin turns it on' }),
  effective: Type.Object(
    {
      plan: PlanSchema,
      tiers: Type.Object({
        processing: Nullable(LimitSchema),
        backgroundRemoval: Nullable(LimitSchema),
        bulk: Nullable(LimitSchema),
        polling: Nullable(LimitSchema),
      }),
      bulkMaxItems: Type.Integer(),
      retention: RetentionPeriods,
    },
    { description: 'the limits and retention periods in force: plan defaults with the overrides applied (null = no limit)' },
  ),
  createdAt: Type.String({ format: 'date-time' }),
});
export type AdminVendor = Static<typeof AdminVendor>;

export const VendorParams = Type.Object({ vendorId: Type.String({ minLength: 1, maxLength: 64 }) });

export const VendorListQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'nextCursor of the previous page' })),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  },
  { additionalProperties: false },
);

export const VendorLimitsPatch = Type.Object(
  {
    plan: Type.Optional(PlanSchema),
    rateLimits: Type.Optional(Nullable(RateLimitOverrides)),
    corsOrigins: Type.Optional(
      Type.Union([Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: MAX_ORIGINS }), Type.Null()], {
        description: 'exact origins (https://app.example.com) whose pages may call the API as this vendor; [] none; null: CORS_ORIGINS',
      }),
    ),
    retention: Type.Optional(Nullable(RetentionOverrides)),
    faceTagging: Type.Optional(Type.Boolean({ description: "turn the vendor's face tagging on or off" })),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: 'rateLimits replaces all overrides, retention all retention overrides and corsOrigins all origins; null removes them',
  },
);
export type VendorLimitsPatch = Static<typeof VendorLimitsPatch>;

const security = [{ bearerAuth: [] }];

export const listVendorsSchema = {
  tags: ['admin'],
  operationId: 'listVendors',
  summary: 'Vendors with their plans and limits (admin)',
  security,
  querystring: VendorListQuery,
  response: withErrors({ 200: Type.Object({ vendors: Type.Array(AdminVendor), nextCursor: Nullable(Type.String()) }) }, 403, 429),
};

export const getVendorSchema = {
  tags: ['admin'],
  operationId: 'getVendor',
  summary: "A vendor's plan, overrides and limits in force (admin)",
  security,
  params: VendorParams,
  response: withErrors({ 200: AdminVendor }, 403, 404, 429),
};

export const patchVendorSchema = {
  tags: ['admin'],
  operationId: 'updateVendor',
  summary:
    "Set a vendor's plan, rate-limit or retention overrides and/or CORS origins (admin); limits apply within VENDOR_CACHE_MS, retention at the next sweep",
  security,
  params: VendorParams,
  body: VendorLimitsPatch,
  response: withErrors({ 200: AdminVendor }, 403, 404, 429),
};
