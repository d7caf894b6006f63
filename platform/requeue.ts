import type { Job } from '../db/schema.js';
import { payloadOf } from '../db/repos/jobs.js';
import { bullAttempts } from '../jobs/queues.js';
import { BUILTIN_KINDS, type KindSet } from '../jobs/kinds.js';
import { queueOf, type Queues } from './queues.js';

/**
 * Puts a ledger job (back) into its Bull queue under its own id. Bull ignores
 * an add whose id exists, so a Bull job still waiting, delayed or running is
 * left alone; one Bull already finished with (completed or failed while the
 * ledger says otherwise) is removed first, since only the ledger decides.
 * Used by the reconciler and the admin dead-letter retry.
 *
 * Returns false when Bull still holds a live copy.
 */
export type RequeueFields = Pick<
  Job,
  | 'id'
  | 'vendor_id'
  | 'project_id'
  | 'record_id'
  | 'batch_id'
  | 'kind'
  | 'source_url'
  | 'source_key'
  | 'output_prefix'
  | 'options'
  | 'priority'
  | 'attempts'
  | 'max_attempts'
>;

export async function requeueJob(queues: Queues, job: RequeueFields, kinds: KindSet = BUILTIN_KINDS): Promise<boolean> {
  const queue = queueOf(queues, kinds.get(job.kind).queue);
  const existing = await queue.getJob(job.id);
  if (existing) {
    const state = await existing.getState();
    if (state !== 'completed' && state !== 'failed') return false;
    await existing.remove();
  }
  const remaining = Math.max(1, job.max_attempts - job.attempts);
  await queue.add(payloadOf(job), { jobId: job.id, priority: Math.max(1, job.priority), attempts: bullAttempts(remaining) });
  return true;
}
