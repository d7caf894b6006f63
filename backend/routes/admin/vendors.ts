import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { findVendor, listVendors, updateVendorLimits } from '../../../db/repos/vendors.js';
import type { Vendor } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import { asPlan, parseOverrides, type EffectiveLimits } from '../../plans.js';
import { badFields } from '../../plugins/errors.js';
import { checkOrigins, storedOrigins } from '../../../platform/origins.js';
import { effectiveRetention, parseRetentionOverrides, type RetentionConfig } from '../../../jobs/retention.js';
import { getVendorSchema, listVendorsSchema, patchVendorSchema, type AdminVendor } from './vendors-schemas.js';

/**
 * /api/admin/vendors: plans (`standard`, `unlimited`), per-vendor
 * overrides of any rate-limit tier or the bulk item cap, of any retention
 * period (jobs/retention.ts), and the web origins allowed to call the API as
 * the vendor (CORS), stored in vendors.plan, vendors.rate_limits,
 * vendors.retention and vendors.cors_origins. Admin tokens only. The API
 * caches a vendor row for VENDOR_CACHE_MS, so a limit change applies within
 * that time; the worker's retention sweeper reads the row at each run.
 */
export interface AdminVendorOptions {
  retention: RetentionConfig;
}

const routes: FastifyPluginAsyncTypebox<AdminVendorOptions> = async (app, opts) => {
  const present = (vendor: Vendor) => presentVendor(vendor, app.vendorLimits(limitInput(vendor)), opts.retention);
  const polling = { auth: 'admin', rateLimitTier: 'polling' } as const;

  app.get('/', { schema: listVendorsSchema, config: polling }, async (request) => {
    const page = await listVendors(app.db, request.query.cursor ?? null, request.query.limit + 1);
    const vendors = page.slice(0, request.query.limit);
    return {
      vendors: vendors.map((v) => present(v)),
      nextCursor: page.length > request.query.limit ? (vendors[vendors.length - 1]?.id ?? null) : null,
    };
  });

  app.get('/:vendorId', { schema: getVendorSchema, config: polling }, async (request) => {
    const vendor = await findVendor(app.db, request.params.vendorId);
    if (!vendor) throw new AppError('NOT_FOUND', 'no such vendor');
    return present(vendor);
  });

  app.patch('/:vendorId', { schema: patchVendorSchema, config: polling }, async (request) => {
    const { plan, rateLimits, corsOrigins, retention, faceTagging } = request.body;
    let origins: string[] | null | undefined = corsOrigins;
    if (corsOrigins) {
      try {
        origins = checkOrigins(corsOrigins);
      } catch (error) {
        throw badFields([{ path: 'body/corsOrigins', message: (error as Error).message }]);
      }
    }
    const vendor = await updateVendorLimits(app.db, request.params.vendorId, {
      ...(plan !== undefined ? { plan } : {}),
      ...(rateLimits !== undefined ? { rateLimits: rateLimits === null ? null : JSON.stringify(rateLimits) } : {}),
      ...(origins !== undefined ? { corsOrigins: origins === null ? null : JSON.stringify(origins) } : {}),
      ...(retention !== undefined ? { retention: retention === null ? null : JSON.stringify(retention) } : {}),
      ...(faceTagging !== undefined ? { faceTagging } : {}),
    });
    if (!vendor) throw new AppError('NOT_FOUND', 'no such vendor');
    request.log.info(
      {
        targetVendorId: vendor.id,
        plan: vendor.plan,
        rateLimits: vendor.rate_limits,
        corsOrigins: vendor.cors_origins,
        retention: vendor.retention,
        faceTagging: vendor.face_tagging,
      },
      'vendor limits changed',
    );
    return present(vendor);
  });
};

export default routes;

function limitInput(vendor: Vendor): { plan: string; rateLimits: unknown } {
  return { plan: vendor.plan, rateLimits: storedOverrides(vendor) };
}

function storedOverrides(vendor: Vendor): unknown {
  if (!vendor.rate_limits) return null;
  try {
    return JSON.parse(vendor.rate_limits) as unknown;
  } catch {
    return null;
  }
}

function presentVendor(vendor: Vendor, effective: EffectiveLimits, retention: RetentionConfig): AdminVendor {
  const stored = storedOverrides(vendor);
  return {
    id: vendor.id,
    name: vendor.name,
    plan: vendor.plan,
    role: vendor.role,
    rateLimits: stored === null ? null : parseOverrides(stored),
    corsOrigins: storedOrigins(vendor.cors_origins),
    retention: vendor.retention === null ? null : parseRetentionOverrides(vendor.retention),
    faceTagging: vendor.face_tagging === 1,
    effective: { ...effective, plan: asPlan(vendor.plan), retention: effectiveRetention(retention, { plan: vendor.plan, retention: vendor.retention }) },
    createdAt: vendor.created_at.toISOString(),
  };
}
