import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Db } from '../db/connect.js';
import { openJobsBefore } from '../db/repos/jobs.js';
import type { Logger } from '../platform/logger.js';
import type { Queues } from '../platform/queues.js';
import type { KindSet } from '../jobs/kinds.js';
import { requeueJob } from '../platform/requeue.js';

/**
 * Redis is not the only copy of a job: the ledger is. The reconciler walks
 * the ledger's open jobs (queued/active, untouched for a grace period) and
 * puts back into Bull, under the same id, every one Redis has lost (a restart
 * without persistence, a FLUSHALL, an enqueue whose Redis write failed) or
 * that Bull finished with while the ledger did not hear of it. Bull ignores
 * an add whose id exists, so this is safe at any time; a short Redis lock
 * keeps several workers from walking the ledger at the same moment.
 */
export interface ReconcileResult {
  checked: number;
  requeued: number;
  /** false when another worker was reconciling and this run stood aside */
  ran: boolean;
}

export interface ReconcileLock {
  redis: Redis;
  key: string;
  ttlMs: number;
}

export function reconcileLockKey(prefix: string): string {
  return `${prefix}:reconciler:lock`;
}

export async function reconcile(
  db: Db,
  queues: Queues,
  kinds: KindSet,
  log: Logger,
  graceMs: number,
  lock?: ReconcileLock,
  pageSize = 500,
): Promise<ReconcileResult> {
  const token = randomUUID();
  if (lock && (await lock.redis.set(lock.key, token, 'PX', lock.ttlMs, 'NX')) !== 'OK') {
    log.debug('another worker is reconciling; skipping this run');
    return { checked: 0, requeued: 0, ran: false };
  }
  try {
    const result = await walk(db, queues, kinds, graceMs, pageSize);
    if (result.requeued > 0) log.warn(result, 'reconciler re-queued jobs that Redis had lost');
    else log.debug(result, 'reconciler found nothing to re-queue');
    return { ...result, ran: true };
  } finally {
    if (lock) await releaseLock(lock, token).catch(() => undefined);
  }
}

async function walk(db: Db, queues: Queues, kinds: KindSet, graceMs: number, pageSize: number): Promise<{ checked: number; requeued: number }> {
  const cutoff = new Date(Date.now() - graceMs);
  let afterId: string | null = null;
  let checked = 0;
  let requeued = 0;
  for (;;) {
    const page = await openJobsBefore(db, cutoff, afterId, pageSize);
    if (page.length === 0) break;
    afterId = page[page.length - 1]?.id ?? null;
    checked += page.length;
    const results = await Promise.all(page.map((job) => requeueJob(queues, job, kinds).catch(() => false)));
    requeued += results.filter(Boolean).length;
    if (page.length < pageSize) break;
  }
  return { checked, requeued };
}

async function releaseLock(lock: ReconcileLock, token: string): Promise<void> {
  await lock.redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0", 1, lock.key, token);
}
