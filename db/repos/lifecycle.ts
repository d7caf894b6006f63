import { sql, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database, Job } from '../schema.js';
import { OPEN_STATES, RETRYABLE_STATES } from '../../jobs/queues.js';
import { appendEvents, countBatchJobFinished, countBatchJobReopened, type NewEvent } from './events.js';
import { dropFaces } from './faces.js';

/**
 * A vendor's controls over its jobs (issue 21): cancel, retry, delete. Each
 * takes the vendor id and touches only that vendor's rows, so another
 * vendor's id reads as not found. Every change is one short transaction
 * that writes its events like the worker's own state changes do.
 *
 * Deleting removes the job's rows (ledger row, attempts, results, dead
 * letter, faces, and its record when the record shows this job) and writes
 * its files to `storage_garbage` in the same transaction; the files are
 * removed after the commit (platform/garbage.ts). A deleted job leaves no
 * tombstone: its id reads as not found, like an id that never existed. Its
 * events stay in the event log until their own retention ends.
 */
export const CANCEL_CODE = 'JOB_CANCELLED';

export type CancelOutcome = { outcome: 'cancelled'; job: Job; was: 'queued' | 'active' } | { outcome: 'not-found' } | { outcome: 'ended'; job: Job };

export async function cancelJob(db: Db, vendorId: string, jobId: string): Promise<CancelOutcome> {
  return db.transaction().execute(async (trx): Promise<CancelOutcome> => {
    const job = await lockVendorJob(trx, vendorId, jobId);
    if (!job) return { outcome: 'not-found' };
    if (!OPEN_STATES.includes(job.status)) return { outcome: 'ended', job };
    const was = job.status as 'queued' | 'active';
    const message = 'the vendor cancelled the job';
    await trx
      .updateTable('jobs')
      .set({
        status: 'cancelled',
        error_code: CANCEL_CODE,
        error_message: message,
        finished_at: sql<Date>`NOW(3)`,
        updated_at: sql<Date>`NOW(3)`,
        duration_ms: sql<number>`GREATEST(0, TIMESTAMPDIFF(MICROSECOND, started_at, NOW(3)) DIV 1000)`,
      })
      .where('id', '=', jobId)
      .execute();
    await trx
      .updateTable('job_attempts')
      .set({ outcome: 'failed', finished_at: sql<Date>`NOW(3)`, error_code: CANCEL_CODE, error_message: message })
      .where('job_id', '=', jobId)
      .where('outcome', '=', 'running')
      .execute();
    await trx
      .updateTable('data_records')
      .set({ processing_status: 'failed', error_code: CANCEL_CODE, updated_at: sql<Date>`NOW(3)` })
      .where('vendor_id', '=', vendorId)
      .where('project_id', '=', job.project_id)
      .where('record_id', '=', job.record_id)
      .where('last_job_id', '=', jobId)
      .execute();
    const event: NewEvent = { vendorId, type: 'cancelled', jobId, batchId: job.batch_id, kind: job.kind, errorCode: CANCEL_CODE, errorMessage: message };
    const events = [event];
    if (job.batch_id && (await countBatchJobFinished(trx, job.batch_id)))
      events.push({ ...event, type: 'batch.finished', jobId: null, errorCode: null, errorMessage: null });
    await appendEvents(trx, events);
    return { outcome: 'cancelled', job: { ...job, status: 'cancelled' }, was };
  });
}

export type RetryOutcome =
  { outcome: 'queued'; job: Job } | { outcome: 'not-found' } | { outcome: 'not-retryable'; job: Job } | { outcome: 'source-gone'; job: Job };

/**
 * Puts a failed, dead or cancelled job back in line with `extraAttempts`
 * more attempts; a dead one leaves the dead-letter list. A job whose
 * upload retention has removed cannot be retried.
 */
export async function retryJob(db: Db, vendorId: string, jobId: string, extraAttempts: number): Promise<RetryOutcome> {
  return db.transaction().execute(async (trx): Promise<RetryOutcome> => {
    const job = await lockVendorJob(trx, vendorId, jobId);
    if (!job) return { outcome: 'not-found' };
    if (!RETRYABLE_STATES.includes(job.status)) return { outcome: 'not-retryable', job };
    // Its upload was removed by retention (db/repos/retention.ts): nothing left to work on.
    if (!job.source_url && !job.source_key) return { outcome: 'source-gone', job };
    await trx.deleteFrom('dead_letters').where('job_id', '=', jobId).execute();
    await trx
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
      .execute();
    await trx
      .updateTable('data_records')
      .set({ processing_status: 'queued', error_code: null, updated_at: sql<Date>`NOW(3)` })
      .where('vendor_id', '=', vendorId)
      .where('project_id', '=', job.project_id)
      .where('record_id', '=', job.record_id)
      .where('last_job_id', '=', jobId)
      .execute();
    if (job.batch_id) await countBatchJobReopened(trx, job.batch_id);
    await appendEvents(trx, [{ vendorId, type: 'queued', jobId, batchId: job.batch_id, kind: job.kind }]);
    const after = await trx.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow();
    return { outcome: 'queued', job: after };
  });
}

export interface DeletedJob {
  id: string;
  kind: Job['kind'];
  status: Job['status'];
  batchId: string | null;
}

/**
 * Deletes a vendor's jobs, whatever their state, with everything that hangs
 * on them, in one transaction; their files go to `storage_garbage`. A job
 * that was running keeps its files `holdActiveMs` longer, so an attempt that
 * has not noticed yet cannot write a file after its removal. Returns the
 * jobs deleted (ids of other vendors, or unknown ids, are left out).
 */
export async function deleteJobs(db: Db, vendorId: string, jobIds: readonly string[], holdActiveMs: number): Promise<DeletedJob[]> {
  if (jobIds.length === 0) return [];
  return db.transaction().execute((trx) => deleteJobsIn(trx, vendorId, jobIds, holdActiveMs));
}

export async function deleteJobsIn(trx: Transaction<Database>, vendorId: string, jobIds: readonly string[], holdActiveMs: number): Promise<DeletedJob[]> {
  const jobs = await trx
    .selectFrom('jobs')
    .select(['id', 'kind', 'status', 'batch_id', 'project_id', 'record_id', 'output_prefix', 'source_key'])
    .where('vendor_id', '=', vendorId)
    .where('id', 'in', jobIds)
    .forUpdate()
    .execute();
  if (jobs.length === 0) return [];
  const ids = jobs.map((j) => j.id);

  await dropFaces(trx, vendorId, { jobIds: ids });
  await trx.deleteFrom('job_result_fields').where('job_id', 'in', ids).execute();
  await trx.deleteFrom('job_attempts').where('job_id', 'in', ids).execute();
  await trx.deleteFrom('dead_letters').where('job_id', 'in', ids).execute();

  // A record that shows one of these jobs goes with it: its photo URLs are the job's files.
  const records = await trx
    .selectFrom('data_records')
    .select('id')
    .where('vendor_id', '=', vendorId)
    .where((eb) => eb.or(jobs.map((j) => eb.and([eb('project_id', '=', j.project_id), eb('record_id', '=', j.record_id)]))))
    .where('last_job_id', 'in', ids)
    .execute();
  if (records.length > 0) {
    const pks = records.map((r) => r.id);
    await trx.deleteFrom('record_fields').where('record_pk', 'in', pks).execute();
    await trx.deleteFrom('data_records').where('id', 'in', pks).execute();
  }
  await trx.deleteFrom('jobs').where('id', 'in', ids).execute();
  await shrinkBatches(trx, vendorId, jobs);

  const hold = (status: string) => new Date(Date.now() + (status === 'active' ? holdActiveMs : 0));
  const garbage = jobs.flatMap((j) => [
    { vendor_id: vendorId, target: j.output_prefix, is_prefix: 1, not_before: hold(j.status) },
    ...(j.source_key ? [{ vendor_id: vendorId, target: j.source_key, is_prefix: 0, not_before: hold(j.status) }] : []),
  ]);
  await trx.insertInto('storage_garbage').values(garbage).execute();
  return jobs.map((j) => ({ id: j.id, kind: j.kind, status: j.status, batchId: j.batch_id }));
}

/**
 * The batches of deleted jobs count them no more: a batch whose every job
 * is gone is deleted; one whose remaining jobs have all ended is finished.
 */
async function shrinkBatches(trx: Transaction<Database>, vendorId: string, jobs: readonly { batch_id: string | null; status: string }[]): Promise<void> {
  const byBatch = new Map<string, { total: number; finished: number }>();
  for (const j of jobs) {
    if (!j.batch_id) continue;
    const n = byBatch.get(j.batch_id) ?? { total: 0, finished: 0 };
    n.total += 1;
    if (!OPEN_STATES.includes(j.status as Job['status'])) n.finished += 1;
    byBatch.set(j.batch_id, n);
  }
  for (const [batchId, n] of byBatch) {
    await sql`UPDATE batches SET total = GREATEST(total, ${n.total}) - ${n.total}, jobs_finished = GREATEST(jobs_finished, ${n.finished}) - ${n.finished},
                finished_at = IF(finished_at IS NULL AND jobs_finished >= total, NOW(3), finished_at)
              WHERE id = ${batchId} AND vendor_id = ${vendorId}`.execute(trx);
  }
  if (byBatch.size > 0) {
    await trx
      .deleteFrom('batches')
      .where('vendor_id', '=', vendorId)
      .where('id', 'in', [...byBatch.keys()])
      .where('total', '=', 0)
      .execute();
  }
}

/** A vendor's job ids in a batch (request order), or undefined when the batch is not the vendor's. */
export async function batchJobIds(db: Db, vendorId: string, batchId: string, projectId: string | null = null): Promise<string[] | undefined> {
  let q = db.selectFrom('batches').select('id').where('id', '=', batchId).where('vendor_id', '=', vendorId);
  if (projectId !== null) q = q.where('project_id', '=', projectId);
  const batch = await q.executeTakeFirst();
  if (!batch) return undefined;
  const rows = await db.selectFrom('jobs').select('id').where('vendor_id', '=', vendorId).where('batch_id', '=', batchId).orderBy('batch_seq').execute();
  return rows.map((r) => r.id);
}

async function lockVendorJob(trx: Transaction<Database>, vendorId: string, jobId: string): Promise<Job | undefined> {
  return trx.selectFrom('jobs').selectAll().where('id', '=', jobId).where('vendor_id', '=', vendorId).forUpdate().executeTakeFirst();
}
