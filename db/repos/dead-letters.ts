import { sql } from 'kysely';
import type { Db } from '../connect.js';
import type { Job } from '../schema.js';
import { appendEvents, countBatchJobReopened } from './events.js';

/**
 * The dead-letter queue: jobs that ran out of attempts and wait for an
 * operator. The ledger stays the record of each job (`status = 'dead'`, its
 * payload in `jobs`, every attempt's error in `job_attempts`); this list only
 * says which dead jobs still need a decision. Retry puts a job back in line
 * with a fresh budget of attempts; purge drops it from the list, dead.
 */
export interface AttemptRecord {
  attempt: number;
  workerId: string;
  startedAt: Date;
  finishedAt: Date | null;
  outcome: 'running' | 'completed' | 'failed';
  errorCode: string | null;
  errorMessage: string | null;
}

export interface DeadLetter {
  job: Job;
  queue: string;
  deadAt: Date;
  attempts: AttemptRecord[];
}

export interface DeadLetterFilter {
  queue?: string | undefined;
  vendorId?: string | undefined;
}

/** One page of dead letters, oldest job first, after `afterId`. */
export async function listDeadLetters(db: Db, filter: DeadLetterFilter, afterId: string | null, limit: number): Promise<DeadLetter[]> {
  let q = db
    .selectFrom('dead_letters as d')
    .innerJoin('jobs as j', 'j.id', 'd.job_id')
    .selectAll('j')
    .select(['d.queue as dl_queue', 'd.dead_at as dl_dead_at'])
    .where('j.status', '=', 'dead');
  if (filter.queue) q = q.where('d.queue', '=', filter.queue);
  if (filter.vendorId) q = q.where('d.vendor_id', '=', filter.vendorId);
  if (afterId) q = q.where('d.job_id', '>', afterId);
  const rows = await q.orderBy('d.job_id').limit(limit).execute();
  const attempts = await attemptsOf(
    db,
    rows.map((r) => r.id),
  );
  return rows.map(({ dl_queue, dl_dead_at, ...job }) => ({ job, queue: dl_queue, deadAt: dl_dead_at, attempts: attempts.get(job.id) ?? [] }));
}

export async function findDeadLetter(db: Db, jobId: string): Promise<DeadLetter | undefined> {
  const row = await db
    .selectFrom('dead_letters as d')
    .innerJoin('jobs as j', 'j.id', 'd.job_id')
    .selectAll('j')
    .select(['d.queue as dl_queue', 'd.dead_at as dl_dead_at'])
    .where('d.job_id', '=', jobId)
    .where('j.status', '=', 'dead')
    .executeTakeFirst();
  if (!row) return undefined;
  const { dl_queue, dl_dead_at, ...job } = row;
  return { job, queue: dl_queue, deadAt: dl_dead_at, attempts: (await attemptsOf(db, [jobId])).get(jobId) ?? [] };
}

export async function attemptsOf(db: Db, jobIds: readonly string[]): Promise<Map<string, AttemptRecord[]>> {
  const out = new Map<string, AttemptRecord[]>();
  if (jobIds.length === 0) return out;
  const rows = await db
    .selectFrom('job_attempts')
    .selectAll()
    .where('job_id', 'in', [...jobIds])
    .orderBy('job_id')
    .orderBy('attempt')
    .execute();
  for (const r of rows) {
    const list = out.get(r.job_id) ?? [];
    list.push({
      attempt: r.attempt,
      workerId: r.worker_id,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      outcome: r.outcome,
      errorCode: r.error_code,
      errorMessage: r.error_message,
    });
    out.set(r.job_id, list);
  }
  return out;
}

/** Dead letters per queue. */
export async function countDeadLetters(db: Db): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom('dead_letters')
    .select(['queue', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('queue')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.queue, Number(r.n)]));
}

/**
 * Takes a job off the dead-letter list and puts it back to `queued` with
 * `extraAttempts` more attempts. Attempt numbers go on from where they were,
 * so the earlier attempts and their errors stay in `job_attempts`. Returns
 * the job as it is now, or undefined when it is not a dead letter (already
 * retried, purged, or never dead).
 */
export async function reviveDeadLetter(db: Db, jobId: string, extraAttempts: number): Promise<Job | undefined> {
  return db.transaction().execute(async (trx) => {
    const removed = await trx.deleteFrom('dead_letters').where('job_id', '=', jobId).executeTakeFirst();
    if (Number(removed.numDeletedRows) === 0) return undefined;
    const updated = await trx
      .updateTable('jobs')
      .set({
        status: 'queued',
        max_attempts: sql<number>`attempts + ${extraAttempts}`,
        progress: 0,
        error_code: null,
        error_message: null,
        started_at: null,
        finished_at: null,
        duration_ms: null,
        updated_at: sql<Date>`NOW(3)`,
      })
      .where('id', '=', jobId)
      .where('status', '=', 'dead')
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) return undefined;
    const job = await trx.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow();
    await trx
      .updateTable('data_records')
      .set({ processing_status: 'queued', error_code: null, updated_at: sql<Date>`NOW(3)` })
      .where('vendor_id', '=', job.vendor_id)
      .where('project_id', '=', job.project_id)
      .where('record_id', '=', job.record_id)
      .where('last_job_id', '=', jobId)
      .execute();
    if (job.batch_id) await countBatchJobReopened(trx, job.batch_id);
    await appendEvents(trx, [{ vendorId: job.vendor_id, type: 'queued', jobId, batchId: job.batch_id, kind: job.kind }]);
    return job;
  });
}

/** Drops dead letters (one, or all matching the filter); the jobs stay dead in the ledger. */
export async function purgeDeadLetters(db: Db, filter: DeadLetterFilter & { jobId?: string | undefined }): Promise<number> {
  let q = db.deleteFrom('dead_letters');
  if (filter.jobId) q = q.where('job_id', '=', filter.jobId);
  if (filter.queue) q = q.where('queue', '=', filter.queue);
  if (filter.vendorId) q = q.where('vendor_id', '=', filter.vendorId);
  const result = await q.executeTakeFirst();
  return Number(result.numDeletedRows);
}
