import type { Redis } from 'ioredis';
import type { Db } from '../db/connect.js';
import {
  expireDeadLetters,
  expireEvents,
  expireJobs,
  expireUploads,
  expireWebhookDeliveries,
  retentionVendors,
  type RetentionVendor,
} from '../db/repos/retention.js';
import { effectiveRetention, retentionMs, type RetentionConfig, type RetentionKind } from '../jobs/retention.js';
import type { Logger } from '../platform/logger.js';
import { redisLock } from '../platform/redis-lock.js';

/**
 * The retention sweeper (issue 21): for every vendor, removes what is older
 * than the vendor's retention periods (jobs/retention.ts), in batches of
 * `batch` rows, each its own short transaction; stored files go to
 * `storage_garbage` with their rows and the garbage sweep removes them.
 * One run at a time across all workers (platform/redis-lock.ts, renewed as
 * the run goes); a worker that finds the lock taken skips its run.
 */
export interface RetentionSettings extends RetentionConfig {
  /** rows removed per transaction */
  batch: number;
  /** the lock's key and how long it lives unless renewed */
  lockKey: string;
  lockTtlMs: number;
}

export type RetentionCounts = Record<RetentionKind, number>;

export interface RetentionRun {
  /** false when another worker was sweeping and this run stood aside */
  ran: boolean;
  removed: RetentionCounts;
}

export function retentionLockKey(prefix: string): string {
  return `${prefix}:retention:lock`;
}

const VENDOR_PAGE = 200;

type Expire = (db: Db, vendorId: string, before: Date, limit: number) => Promise<number>;
// Uploads before jobs: a job expiring in this run takes its upload with it anyway.
const STEPS: [RetentionKind, Expire][] = [
  ['jobs', expireJobs],
  ['uploads', expireUploads],
  ['deadLetters', expireDeadLetters],
  ['events', expireEvents],
  ['webhookDeliveries', expireWebhookDeliveries],
];

export async function runRetention(db: Db, redis: Redis, settings: RetentionSettings, log: Logger, signal?: AbortSignal): Promise<RetentionRun> {
  const removed: RetentionCounts = { jobs: 0, uploads: 0, deadLetters: 0, events: 0, webhookDeliveries: 0 };
  const run = await redisLock(redis, settings.lockKey, { ttlMs: settings.lockTtlMs }).run(async (held) => {
    let afterId: string | null = null;
    for (;;) {
      const vendors: RetentionVendor[] = await retentionVendors(db, afterId, VENDOR_PAGE);
      for (const vendor of vendors) {
        const periods = retentionMs(effectiveRetention(settings, vendor));
        for (const [kind, expire] of STEPS) {
          const before = new Date(Date.now() - periods[kind]);
          for (;;) {
            signal?.throwIfAborted();
            // Lost the lease (Redis away longer than its TTL): another worker may be sweeping now.
            held.signal.throwIfAborted();
            const n = await expire(db, vendor.id, before, settings.batch);
            removed[kind] += n;
            if (n === 0) break;
          }
        }
      }
      if (vendors.length < VENDOR_PAGE) break;
      afterId = vendors[vendors.length - 1]?.id ?? null;
    }
  });
  if (!run.ran) {
    log.debug('another worker is applying retention; skipping this run');
    return { ran: false, removed };
  }
  if (Object.values(removed).some((n) => n > 0)) log.info({ removed }, 'retention removed expired data');
  return { ran: true, removed };
}
