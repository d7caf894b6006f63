import { env } from '../platform/config.js';

/**
 * Configuration of the vendor API (issue 5): rate-limit tiers and plans, bulk
 * caps, uploads, idempotency, the ledger writer and status caches. Defaults
 * are the limits of seed 003 ("Rate Limiting"); tests shrink windows and
 * limits to stay fast.
 */
const MINUTE = 60_000;

export const VendorApiSection = {
  RATE_LIMIT_GLOBAL_MAX: env.int(100, 'global tier: requests per window per client IP on routes without a vendor tier (token exchange)', { minimum: 0 }),
  RATE_LIMIT_GLOBAL_WINDOW_MS: env.int(15 * MINUTE, 'global tier window in ms', { minimum: 1 }),
  RATE_LIMIT_PROCESSING_MAX: env.int(50, 'processing tier (process-queue, crop-face-queue): requests per window per vendor, standard plan', { minimum: 0 }),
  RATE_LIMIT_PROCESSING_WINDOW_MS: env.int(15 * MINUTE, 'processing tier window in ms', { minimum: 1 }),
  RATE_LIMIT_BG_REMOVAL_MAX: env.int(30, 'background-removal tier (remove-bg-queue): requests per window per vendor, standard plan', { minimum: 0 }),
  RATE_LIMIT_BG_REMOVAL_WINDOW_MS: env.int(60 * MINUTE, 'background-removal tier window in ms', { minimum: 1 }),
  RATE_LIMIT_BULK_MAX: env.int(10, 'bulk tier (bulk-* routes): requests per window per vendor, standard plan', { minimum: 0 }),
  RATE_LIMIT_BULK_WINDOW_MS: env.int(60 * MINUTE, 'bulk tier window in ms', { minimum: 1 }),
  RATE_LIMIT_POLLING_MAX: env.int(1200, 'polling tier (job, jobs, batch, queue-stats, health): requests per window per vendor (per IP when anonymous)', {
    minimum: 0,
  }),
  RATE_LIMIT_POLLING_WINDOW_MS: env.int(MINUTE, 'polling tier window in ms', { minimum: 1 }),
  ADMIN_RATE_LIMIT_PER_MINUTE: env.int(
    300,
    'admin tier: requests per minute per client IP on /api/admin/* and Bull Board (/admin/queues, its sign-in included), whatever the token; 0 blocks them',
    { minimum: 0 },
  ),
  BULK_MAX_ITEMS: env.int(100, 'most items one bulk request may carry on the standard plan (per-vendor override: bulkMaxItems)', {
    minimum: 1,
    maximum: 10_000,
  }),
  BULK_MAX_ITEMS_UNLIMITED: env.int(1000, 'most items one bulk request may carry on the unlimited plan', { minimum: 1, maximum: 10_000 }),
  BULK_BODY_LIMIT_BYTES: env.int(4 * 1024 * 1024, 'largest JSON body a bulk route accepts', { minimum: 1024 }),
  UPLOAD_MAX_FILE_BYTES: env.int(25 * 1024 * 1024, 'largest uploaded photo, in bytes (413 beyond)', { minimum: 1024 }),
  UPLOAD_MAX_FILES: env.int(100, 'most photos one multipart request may carry', { minimum: 1, maximum: 10_000 }),
  UPLOAD_MAX_TOTAL_BYTES: env.int(200 * 1024 * 1024, 'largest total of uploaded photos in one request, in bytes (413 beyond)', { minimum: 1024 }),
  IDEMPOTENCY_TTL_MS: env.int(24 * 60 * MINUTE, 'how long an Idempotency-Key is remembered (same key + same body replays the first response)', {
    minimum: 1000,
  }),
  ENQUEUE_GROUP_MAX_ROWS: env.int(1000, 'most ledger rows the API commits in one grouped transaction (requests arriving together share a commit)', {
    minimum: 1,
  }),
  ENQUEUE_GROUP_CONCURRENCY: env.int(2, 'grouped ledger transactions in flight at once per API process', { minimum: 1, maximum: 64 }),
  STATS_CACHE_MS: env.int(1000, 'how long queue-stats and queue depths are cached per viewer', { minimum: 0 }),
  HEALTH_BACKLOG_MAX: env.int(100, 'waiting jobs in a queue above which /api/worker/health says degraded (seed: alert above 100)', { minimum: 1 }),
};
