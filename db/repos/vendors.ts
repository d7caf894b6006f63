import type { Db } from '../connect.js';
import type { Vendor, VendorRole } from '../schema.js';
import { apiKeyPrefix, generateApiKey, hashApiKey } from '../../platform/api-keys.js';
import { newId } from '../../platform/ids.js';

export interface CreatedVendor {
  vendorId: string;
  apiKey: string;
}

/** A new vendor; face tagging starts off (opt-in) unless `faceTagging` says otherwise. */
export async function createVendor(db: Db, input: { name: string; plan?: string; role?: VendorRole; faceTagging?: boolean }): Promise<CreatedVendor> {
  const apiKey = generateApiKey();
  const vendorId = newId();
  await db
    .insertInto('vendors')
    .values({
      id: vendorId,
      name: input.name,
      plan: input.plan ?? 'standard',
      role: input.role ?? 'vendor',
      api_key_hash: hashApiKey(apiKey),
      api_key_prefix: apiKeyPrefix(apiKey),
      webhook_url: null,
      webhook_secret: null,
      rate_limits: null,
      face_tagging: input.faceTagging ? 1 : 0,
      deleted_at: null,
    })
    .execute();
  return { vendorId, apiKey };
}

export async function findVendorByApiKey(db: Db, apiKey: string): Promise<Vendor | undefined> {
  return db.selectFrom('vendors').selectAll().where('api_key_hash', '=', hashApiKey(apiKey)).where('deleted_at', 'is', null).executeTakeFirst();
}

export async function findVendor(db: Db, vendorId: string): Promise<Vendor | undefined> {
  return db.selectFrom('vendors').selectAll().where('id', '=', vendorId).where('deleted_at', 'is', null).executeTakeFirst();
}

export async function deleteVendor(db: Db, vendorId: string): Promise<boolean> {
  const result = await db
    .updateTable('vendors')
    .set((eb) => ({ deleted_at: new Date(), token_version: eb('token_version', '+', 1) }))
    .where('id', '=', vendorId)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export async function rotateApiKey(db: Db, vendorId: string): Promise<string | undefined> {
  const apiKey = generateApiKey();
  const result = await db
    .updateTable('vendors')
    // A new key revokes every token of the old one: they carry the version before.
    .set((eb) => ({ api_key_hash: hashApiKey(apiKey), api_key_prefix: apiKeyPrefix(apiKey), token_version: eb('token_version', '+', 1) }))
    .where('id', '=', vendorId)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0 ? apiKey : undefined;
}

/** Vendors for the admin listing, by id, keyset-paginated. */
export async function listVendors(db: Db, afterId: string | null, limit: number): Promise<Vendor[]> {
  let q = db.selectFrom('vendors').selectAll().where('deleted_at', 'is', null);
  if (afterId) q = q.where('id', '>', afterId);
  return q.orderBy('id').limit(limit).execute();
}

export interface VendorLimitsChange {
  plan?: string;
  /** rate-limit overrides, JSON; null clears them */
  rateLimits?: string | null;
  /** CORS origins, JSON list; null: the operator's CORS_ORIGINS */
  corsOrigins?: string | null;
  /** retention overrides, JSON; null clears them */
  retention?: string | null;
  /** face tagging opt-in */
  faceTagging?: boolean;
}

/** Sets a vendor's plan, rate-limit overrides, CORS origins, retention overrides and/or face tagging opt-in; the row after, or undefined. */
export async function updateVendorLimits(db: Db, vendorId: string, change: VendorLimitsChange): Promise<Vendor | undefined> {
  const set: { plan?: string; rate_limits?: string | null; cors_origins?: string | null; retention?: string | null; face_tagging?: number } = {};
  if (change.plan !== undefined) set.plan = change.plan;
  if (change.rateLimits !== undefined) set.rate_limits = change.rateLimits;
  if (change.corsOrigins !== undefined) set.cors_origins = change.corsOrigins;
  if (change.retention !== undefined) set.retention = change.retention;
  if (change.faceTagging !== undefined) set.face_tagging = change.faceTagging ? 1 : 0;
  if (Object.keys(set).length > 0) await db.updateTable('vendors').set(set).where('id', '=', vendorId).where('deleted_at', 'is', null).execute();
  return findVendor(db, vendorId);
}
