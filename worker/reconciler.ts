import type { Db } from '../db/connect.js';
import { openJobsBefore, payloadOf } from '../db/repos/jobs.js';
import { bullAttempts, QUEUE_NAMES } from '../jobs/queues.js';
import type { Logger } from '../platform/logger.js';
import type { Queues } from '../platform/queues.js';

/**
 * Redis is not the only copy of a job: the ledger is. The reconciler walks
 * the ledger's open jobs (queued/active, untouched for a grace period) and
 * puts back into Bull every one Redis has lost (a restart without
 * persistence, a FLUSHALL, an enqueue whose Redis write failed). Bull ignores
 * an add whose id exists, so several workers may reconcile at once.
 */
export interface ReconcileResult {
  checked: number;
  requeued: number;
}

export async function reconcile(db: Db, queues: Queues, log: Logger, graceMs: number, pageSize = 500): Promise<ReconcileResult> {
  const cutoff = new Date(Date.now() - graceMs);
  let afterId: string | null = null;
  let checked = 0;
  let requeued = 0;
  for (;;) {
    const page = await openJobsBefore(db, cutoff, afterId, pageSize);
    if (page.length === 0) break;
    afterId = page[page.length - 1]?.id ?? null;
    checked += page.length;
    const results = await Promise.all(
      page.map(async (job) => {
        const queue = queues[QUEUE_NAMES[job.kind]];
        const existing = await queue.getJob(job.id);
        if (existing) {
          const state = await existing.getState();
          // Bull finished with it but the ledger did not hear: the ledger wins.
          if (state !== 'completed' && state !== 'failed') return false;
          await existing.remove();
        }
        const remaining = Math.max(1, job.max_attempts - job.attempts);
        await queue.add(payloadOf(job), { jobId: job.id, priority: Math.max(1, job.priority), attempts: bullAttempts(remaining) });
        return true;
      }),
    );
    requeued += results.filter(Boolean).length;
    if (page.length < pageSize) break;
  }
  if (requeued > 0) log.warn({ checked, requeued }, 'reconciler re-queued jobs that Redis had lost');
  else log.debug({ checked }, 'reconciler found nothing to re-queue');
  return { checked, requeued };
}
