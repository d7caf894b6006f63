import { sql, type ExpressionBuilder, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import { affectedRows, type LedgerTransactions } from '../multi-statement.js';
import type { Database, Job, NewJob } from '../schema.js';
import { QUEUE_NAMES, type JobKind, type JobState } from '../../jobs/queues.js';
import type { JobPayload, JobSource } from '../../jobs/payloads.js';
import { readFields, toFieldRows, withChunkHalving, writeFieldRowsWith } from './result-fields.js';
import { appendEvents, appendEventsQueries, countBatchJobFinished, type NewEvent } from './events.js';

/**
 * The job ledger. Every state change goes through one of these functions,
 * and every change that ends an attempt is conditional on the state the
 * worker expects, so a job re-run after a stall can never complete twice.
 */
type Conn = Db | Transaction<Database>;

/**
 * What the worker's ledger writes go through: Kysely builds and compiles each
 * statement, and the multi-statement pool sends a transaction's statements
 * in as few round trips as it can.
 */
export interface Ledger {
  db: Db;
  multi: LedgerTransactions;
}

export async function insertJobs(db: Conn, jobs: NewJob[]): Promise<void> {
  if (jobs.length === 0) return;
  await db.insertInto('jobs').values(jobs).execute();
}

export async function findJob(db: Conn, jobId: string): Promise<Job | undefined> {
  return db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
}

/** A vendor's job; another vendor's id reads as not found. */
export async function findVendorJob(db: Conn, vendorId: string, jobId: string): Promise<Job | undefined> {
  return db.selectFrom('jobs').selectAll().where('id', '=', jobId).where('vendor_id', '=', vendorId).executeTakeFirst();
}

export async function readJobResults(db: Db, jobIds: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  return readFields(db, 'job_result_fields', jobIds);
}

/** How many of a vendor's jobs of this kind wait in line (drives fair ordering). */
export async function countQueued(db: Conn, vendorId: string, kind: JobKind): Promise<number> {
  const row = await db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('vendor_id', '=', vendorId)
    .where('kind', '=', kind)
    .where('status', '=', 'queued')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Starts an attempt and returns its number, or null when the ledger says the
 * job is already over (completed, failed or dead): a stalled copy that must
 * not run again. A job coming from `queued` starts a new attempt; one found
 * `active` is a copy restarted after its worker died, and keeps the number.
 *
 * Two round trips and one commit: the status change, the attempt row and the
 * record's `processing` hang on the job being `active` after the first
 * UPDATE, which holds its row lock to the end; the `active` event goes with
 * the COMMIT.
 */
/**
 * Marks a job's attempt started. Answers the attempt, its limit and the job's
 * payload as the ledger holds it (null when the ledger has the job ended): the
 * worker works from this copy, not from the one in Redis, so whoever can write
 * to Redis cannot choose a job's vendor, source or output place.
 */
export async function startAttempt(
  ledger: Ledger,
  jobId: string,
  workerId: string,
): Promise<{ attempt: number; maxAttempts: number; payload: JobPayload } | null> {
  const { db } = ledger;
  const ours = (eb: ExpressionBuilder<Database, 'jobs'>) => eb.and([eb('jobs.id', '=', jobId), eb('jobs.status', '=', 'active')]);
  return ledger.multi.session(async (send) => {
    const results = await send([
      'START TRANSACTION',
      db
        .updateTable('jobs')
        .set({
          attempts: sql<number>`IF(status = 'queued', attempts + 1, GREATEST(attempts, 1))`,
          status: 'active',
          progress: 0,
          started_at: sql<Date>`COALESCE(started_at, NOW(3))`,
          updated_at: sql<Date>`NOW(3)`,
        })
        .where('id', '=', jobId)
        .where('status', 'in', ['queued', 'active'])
        .compile(),
      sql`INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, outcome)
          SELECT id, attempts, ${workerId}, NOW(3), 'running' FROM jobs WHERE id = ${jobId} AND status = 'active'
          ON DUPLICATE KEY UPDATE worker_id = VALUES(worker_id), started_at = VALUES(started_at), outcome = 'running', finished_at = NULL, error_code = NULL, error_message = NULL`.compile(
        db,
      ),
      // The record shows the work has started, in the same commit.
      sql`UPDATE data_records r JOIN jobs j
            ON j.vendor_id = r.vendor_id AND j.project_id = r.project_id AND j.record_id = r.record_id AND j.id = r.last_job_id
          SET r.processing_status = 'processing', r.updated_at = NOW(3)
          WHERE j.id = ${jobId} AND j.status = 'active'`.compile(db),
      db
        .selectFrom('jobs')
        .select(['attempts', 'max_attempts', ...PAYLOAD_FIELDS])
        .where(ours)
        .compile(),
    ]);
    const job = (results[4] as (Pick<Job, 'attempts' | 'max_attempts'> & PayloadFields)[])[0];
    if (!job) {
      await send(['ROLLBACK']);
      return null;
    }
    // The `active` event is appended last, as the event log requires.
    await send([...appendEventsQueries(db, [{ vendorId: job.vendor_id, type: 'active', jobId, batchId: job.batch_id, kind: job.kind }]), 'COMMIT']);
    return { attempt: job.attempts, maxAttempts: job.max_attempts, payload: payloadOf(job) };
  });
}

/** Writes an attempt's progress; false when the ledger no longer has the job active (cancelled, deleted, ended). */
export async function setProgress(db: Db, jobId: string, progress: number): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ progress, updated_at: sql<Date>`NOW(3)` })
    .where('id', '=', jobId)
    .where('status', '=', 'active')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export interface Completion {
  jobId: string;
  attempt: number;
  vendorId: string;
  batchId: string | null;
  kind: JobKind;
  projectId: string;
  recordId: string;
  result: Record<string, unknown>;
  /** what the data record shows at a glance */
  record: { processedPhotoUrl: string | null; width: number | null; height: number | null };
  /** fields written to the record, namespaced by kind */
  recordFields: Record<string, unknown>;
}

/**
 * Ends an attempt as completed, with its results, in one transaction. The
 * status change comes first and is conditional: if another copy of the job
 * already completed it, nothing is written and false comes back.
 *
 * Two round trips: the conditional status change with the attempt row, the
 * record and the batch count (each hanging on the first statement's row
 * count), then the result fields and the events with the COMMIT, in one
 * packet when they fit under max_allowed_packet and chunk by chunk otherwise.
 */
export async function completeJob(ledger: Ledger, c: Completion, chunkSize: number): Promise<boolean> {
  const { db } = ledger;
  const done = sql<boolean>`@iq_completed = 1`;
  const recordKey = (eb: ExpressionBuilder<Database, 'data_records'>) =>
    eb.and([eb('vendor_id', '=', c.vendorId), eb('project_id', '=', c.projectId), eb('record_id', '=', c.recordId)]);
  return withChunkHalving(db, chunkSize, (plan) =>
    ledger.multi.session(async (send) => {
      const first = await send([
        'START TRANSACTION',
        db
          .updateTable('jobs')
          .set({
            status: 'completed',
            progress: 100,
            error_code: null,
            error_message: null,
            finished_at: sql<Date>`NOW(3)`,
            updated_at: sql<Date>`NOW(3)`,
            duration_ms: sql<number>`GREATEST(0, TIMESTAMPDIFF(MICROSECOND, started_at, NOW(3)) DIV 1000)`,
          })
          .where('id', '=', c.jobId)
          .where('status', '=', 'active')
          .where('attempts', '=', c.attempt)
          .compile(),
        'SET @iq_completed = ROW_COUNT()',
        db
          .updateTable('job_attempts')
          .set({ outcome: 'completed', finished_at: sql<Date>`NOW(3)`, error_code: null, error_message: null })
          .where('job_id', '=', c.jobId)
          .where('attempt', '=', c.attempt)
          .where(done)
          .compile(),
        db
          .updateTable('data_records')
          .set({
            processing_status: 'completed',
            processed_photo_url: c.record.processedPhotoUrl,
            result_width: c.record.width,
            result_height: c.record.height,
            error_code: null,
            updated_at: sql<Date>`NOW(3)`,
          })
          .where(recordKey)
          .where('last_job_id', '=', c.jobId)
          .where(done)
          .compile(),
        db.selectFrom('data_records').select('id').where(recordKey).compile(),
        // A bulk job counts itself finished in its batch; the last one finishes the batch.
        ...(c.batchId
          ? [
              sql`UPDATE batches SET finished_at = IF(finished_at IS NULL AND jobs_finished + 1 >= total, NOW(3), finished_at), jobs_finished = jobs_finished + 1
                  WHERE id = ${c.batchId} AND ${done}`.compile(db),
              db.selectFrom('batches').select(['jobs_finished', 'total']).where('id', '=', c.batchId).compile(),
            ]
          : []),
      ]);
      if (affectedRows(first[1]) === 0) {
        await send(['ROLLBACK']);
        return false;
      }
      const record = (first[5] as { id: number | string }[])[0];
      const batch = c.batchId ? (first[7] as { jobs_finished: number; total: number }[])[0] : undefined;
      const event: NewEvent = { vendorId: c.vendorId, type: 'completed', jobId: c.jobId, batchId: c.batchId, kind: c.kind };
      const events: NewEvent[] = [event];
      if (batch && Number(batch.jobs_finished) === Number(batch.total)) events.push({ ...event, type: 'batch.finished', jobId: null });
      const resultRows = toFieldRows(c.jobId, c.result);
      const recordRows = record ? toFieldRows(Number(record.id), c.recordFields) : [];
      await writeFieldRowsWith(
        send,
        db,
        [
          ['job_result_fields', resultRows],
          ['record_fields', recordRows],
        ],
        plan,
        // the events last, as the event log requires
        appendEventsQueries(db, events),
      );
      return true;
    }),
  );
}

export interface AttemptFailure {
  jobId: string;
  attempt: number;
  /** queued: another attempt will follow; failed: not retryable; dead: out of attempts */
  status: Extract<JobState, 'queued' | 'failed' | 'dead'>;
  code: string;
  message: string;
  /** the attempt was cut short by a worker shutdown: it does not count */
  refund?: boolean;
}

/**
 * Ends an attempt as failed. `queued` puts the job back in line for its next
 * attempt; `failed` and `dead` end it, mark its record failed, and a dead job
 * is listed in the dead-letter queue, all in one transaction.
 */
export async function failAttempt(db: Db, f: AttemptFailure): Promise<boolean> {
  return db.transaction().execute((trx) => failAttemptIn(trx, f));
}

async function failAttemptIn(trx: Transaction<Database>, f: AttemptFailure): Promise<boolean> {
  const final = f.status !== 'queued';
  const result = await trx
    .updateTable('jobs')
    .set({
      status: f.status,
      ...(f.refund ? { attempts: sql<number>`GREATEST(attempts - 1, 0)` } : {}),
      error_code: f.code,
      error_message: f.message.slice(0, 1024),
      updated_at: sql<Date>`NOW(3)`,
      ...(final ? { finished_at: sql<Date>`NOW(3)`, duration_ms: sql<number>`GREATEST(0, TIMESTAMPDIFF(MICROSECOND, started_at, NOW(3)) DIV 1000)` } : {}),
    })
    .where('id', '=', f.jobId)
    .where('status', '=', 'active')
    .where('attempts', '=', f.attempt)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 0) return false;
  await finishAttemptRow(trx, f.jobId, f.attempt, 'failed', f.code, f.message);
  const job = await trx
    .selectFrom('jobs')
    .select(['vendor_id', 'project_id', 'record_id', 'kind', 'batch_id'])
    .where('id', '=', f.jobId)
    .executeTakeFirstOrThrow();
  const event: NewEvent = {
    vendorId: job.vendor_id,
    type: f.status,
    jobId: f.jobId,
    batchId: job.batch_id,
    kind: job.kind,
    errorCode: f.code,
    errorMessage: f.message,
  };
  if (final) {
    await trx
      .updateTable('data_records')
      .set({ processing_status: 'failed', error_code: f.code, updated_at: sql<Date>`NOW(3)` })
      .where('vendor_id', '=', job.vendor_id)
      .where('project_id', '=', job.project_id)
      .where('record_id', '=', job.record_id)
      .where('last_job_id', '=', f.jobId)
      .execute();
    if (f.status === 'dead') {
      await trx
        .insertInto('dead_letters')
        .values({ job_id: f.jobId, vendor_id: job.vendor_id, queue: queueNameOf(job.kind) })
        .onDuplicateKeyUpdate({ dead_at: sql<Date>`NOW(3)` })
        .execute();
    }
  }
  await appendEvents(trx, final ? await finalEvents(trx, event) : [event]);
  return true;
}

/** The registry's queue of a kind; a kind outside the registry (a test's) is listed under its own name. */
function queueNameOf(kind: string): string {
  return (QUEUE_NAMES as Record<string, string | undefined>)[kind] ?? kind;
}

/** A job's final event, and its batch's when it was the batch's last job to end. */
async function finalEvents(trx: Transaction<Database>, event: NewEvent): Promise<NewEvent[]> {
  if (!event.batchId || !(await countBatchJobFinished(trx, event.batchId))) return [event];
  return [event, { vendorId: event.vendorId, type: 'batch.finished', jobId: null, batchId: event.batchId, kind: event.kind }];
}

/**
 * Poison jobs (issue 18). A run of a job whose worker died under it (the
 * ledger still says `active` when the job comes round again, or Bull gave
 * up on it after MAX_STALLED_COUNT stalls) is a *dead run*. Which of the
 * jobs running on that worker killed it cannot be told, so:
 *
 * - the first dead run of a job costs it nothing (the worker may have died of
 *   another job, or of something else entirely), but makes it a suspect
 *   (`stalls` > 0): from then on it runs alone on its worker (worker/run-gate.ts);
 * - a dead run of a suspect (it ran alone, so it killed its worker) counts
 *   as a failed attempt (JOB_STALLED): the job is queued again or, out of
 *   attempts, dead.
 *
 * So another vendor's job never loses an attempt to a poison job it shared a
 * worker with, and a poison job runs at most max_attempts times alone, after
 * the one shared run that made it a suspect.
 *
 * Either way the job is `queued` (or `dead`) after: a job waiting for its
 * turn to run alone is not active, so its worker dying meanwhile costs it
 * nothing. Returns the job's status after, or null when the ledger no longer
 * has it active (another copy finished it, or it was already recorded).
 */
export async function recordDeadRun(db: Db, jobId: string, message: string): Promise<JobState | null> {
  return db.transaction().execute(async (trx) => {
    const job = await trx.selectFrom('jobs').select(['status', 'attempts', 'max_attempts', 'stalls']).where('id', '=', jobId).forUpdate().executeTakeFirst();
    if (!job || job.status !== 'active') return null;
    await trx
      .updateTable('jobs')
      .set({ stalls: sql<number>`stalls + 1` })
      .where('id', '=', jobId)
      .execute();
    // The first dead run is refunded: it may not be this job's doing.
    const counted = job.stalls > 0;
    const status = counted && job.attempts >= job.max_attempts ? 'dead' : 'queued';
    const done = await failAttemptIn(trx, { jobId, attempt: job.attempts, status, code: 'JOB_STALLED', message, refund: !counted });
    return done ? status : null;
  });
}

/**
 * What a worker must know before it starts a job: whether it is a suspect
 * (runs alone), and its status after any dead run found here was recorded
 * (a job found active has one behind it).
 */
export async function checkRun(db: Db, jobId: string, message: string): Promise<{ suspect: boolean; status: JobState | null }> {
  const row = await db.selectFrom('jobs').select(['status', 'stalls']).where('id', '=', jobId).executeTakeFirst();
  if (!row) return { suspect: false, status: null };
  if (row.status !== 'active') return { suspect: row.stalls > 0, status: row.status };
  const status = (await recordDeadRun(db, jobId, message)) ?? (await findJob(db, jobId))?.status ?? null;
  return { suspect: true, status };
}

async function finishAttemptRow(
  trx: Transaction<Database>,
  jobId: string,
  attempt: number,
  outcome: 'completed' | 'failed',
  code: string | null,
  message: string | null,
) {
  await trx
    .updateTable('job_attempts')
    .set({ outcome, finished_at: sql<Date>`NOW(3)`, error_code: code, error_message: message?.slice(0, 1024) ?? null })
    .where('job_id', '=', jobId)
    .where('attempt', '=', attempt)
    .execute();
}

/** Where a walk of open jobs stopped: the last row's (updated_at, id). */
export interface OpenJobsCursor {
  updatedAt: Date;
  id: string;
}

/**
 * Open jobs last touched before `olderThan`, for the reconciler to check
 * against Redis: one page of the jobs in `status`, in
 * (updated_at, id) order after `after`. The order is the one of the
 * jobs_status_updated index (status, updated_at, and the primary key InnoDB
 * appends), so a page is a range read of `limit` index entries and a walk of
 * the whole backlog costs linear in it (paging by id alone sorted every open
 * row again for each page).
 */
export async function openJobsBefore(db: Db, status: 'queued' | 'active', olderThan: Date, after: OpenJobsCursor | null, limit: number): Promise<Job[]> {
  let q = db.selectFrom('jobs').selectAll().where('status', '=', status).where('updated_at', '<', olderThan);
  if (after) {
    q = q.where((eb) => eb.or([eb('updated_at', '>', after.updatedAt), eb.and([eb('updated_at', '=', after.updatedAt), eb('id', '>', after.id)])]));
  }
  return q.orderBy('updated_at').orderBy('id').limit(limit).execute();
}

/**
 * The Bull payload of a ledger row. The ledger holds everything needed to
 * queue a job again, which is what lets the reconciler rebuild lost jobs.
 */
export type PayloadFields = Pick<
  Job,
  'id' | 'vendor_id' | 'project_id' | 'record_id' | 'batch_id' | 'kind' | 'source_url' | 'source_key' | 'output_prefix' | 'options'
>;

const PAYLOAD_FIELDS = [
  'id',
  'vendor_id',
  'project_id',
  'record_id',
  'batch_id',
  'kind',
  'source_url',
  'source_key',
  'output_prefix',
  'options',
] as const satisfies readonly (keyof PayloadFields)[];

export function payloadOf(job: PayloadFields): JobPayload {
  const source: JobSource = job.source_key ? { type: 'stored', key: job.source_key, url: job.source_url ?? '' } : { type: 'url', url: job.source_url ?? '' };
  return {
    jobId: job.id,
    vendorId: job.vendor_id,
    projectId: job.project_id,
    recordId: job.record_id,
    batchId: job.batch_id,
    kind: job.kind,
    source,
    outputPrefix: job.output_prefix,
    options: JSON.parse(job.options),
  } as JobPayload;
}
