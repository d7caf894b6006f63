import type { Db } from '../db/connect.js';
import { openJobsBefore, type OpenJobsCursor } from '../db/repos/jobs.js';
import type { Logger } from '../platform/logger.js';
import type { Queues } from '../platform/queues.js';
import type { KindSet } from '../jobs/kinds.js';
import type { RedisLock } from '../platform/redis-lock.js';
import { requeueJob } from '../platform/requeue.js';

/**
 * Redis is not the only copy of a job: the ledger is. The reconciler walks
 * the ledger's open jobs (queued/active, untouched for a grace period) and
 * puts back into Bull, under the same id, every one Redis has lost (a restart
 * without persistence, a FLUSHALL, an enqueue whose Redis write failed) or
 * that Bull finished with while the ledger did not hear of it. Bull ignores
 * an add whose id exists, so this is safe at any time.
 *
 * One run at a time across workers: a run holds a Redis lease
 * (platform/redis-lock.ts) that is renewed while it lasts, however long the
 * backlog makes it, and stops walking if the lease is lost. The walk reads the
 * backlog in index order, a page at a time, so a run costs linear in it.
 */
export interface ReconcileResult {
  checked: number;
  requeued: number;
  /** false when another worker was reconciling and this run stood aside */
  ran: boolean;
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
  lock?: RedisLock,
  pageSize = 500,
): Promise<ReconcileResult> {
  const run = async (signal?: AbortSignal) => {
    const result = await walk(db, queues, kinds, graceMs, pageSize, signal);
    if (result.requeued > 0) log.warn(result, 'reconciler re-queued jobs that Redis had lost');
    else log.debug(result, 'reconciler found nothing to re-queue');
    return { ...result, ran: true };
  };
  if (!lock) return run();
  const outcome = await lock.run((held) => run(held.signal));
  if (outcome.ran) return outcome.value;
  log.debug('another worker is reconciling; skipping this run');
  return { checked: 0, requeued: 0, ran: false };
}

async function walk(
  db: Db,
  queues: Queues,
  kinds: KindSet,
  graceMs: number,
  pageSize: number,
  signal?: AbortSignal,
): Promise<{ checked: number; requeued: number }> {
  const cutoff = new Date(Date.now() - graceMs);
  let checked = 0;
  let requeued = 0;
  for (const status of ['queued', 'active'] as const) {
    let after: OpenJobsCursor | null = null;
    for (;;) {
      // Lost the lease (Redis away past its TTL): another worker may be walking now; stop rather than walk twice.
      signal?.throwIfAborted();
      const page = await openJobsBefore(db, status, cutoff, after, pageSize);
      if (page.length === 0) break;
      const last = page[page.length - 1]!;
      after = { updatedAt: last.updated_at, id: last.id };
      checked += page.length;
      const results = await Promise.all(page.map((job) => requeueJob(queues, job, kinds).catch(() => false)));
      requeued += results.filter(Boolean).length;
      if (page.length < pageSize) break;
    }
  }
  return { checked, requeued };
}
