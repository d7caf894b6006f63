import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { findVendorJob } from '../../../db/repos/jobs.js';
import { batchJobIds, cancelJob, deleteJobs, retryJob, type DeletedJob } from '../../../db/repos/lifecycle.js';
import type { Job } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import { cancelChannel, eventsChannel, type JobEvent } from '../../../jobs/events.js';
import { QUEUE_NAMES, type JobState } from '../../../jobs/queues.js';
import { collectGarbage } from '../../../platform/garbage.js';
import { requeueJob } from '../../../platform/requeue.js';
import { projectOf, vendorOf } from '../../plugins/auth.js';
import type { ImageQueueOptions } from './index.js';
import { cancelBatchSchema, cancelJobSchema, deleteBatchSchema, deleteJobSchema, retryBatchSchema, retryJobSchema } from './schemas.js';

/**
 * A vendor's controls (issue 21): delete, cancel and retry a job or a whole
 * batch. The ledger decides (db/repos/lifecycle.ts); Redis is told after the
 * commit: a waiting Bull job is removed, a running attempt is told to stop
 * (cancel channel), a retried job is added again. When Redis is away the
 * ledger is still right: a worker skips a job the ledger has ended, notices
 * a cancelled attempt at its next progress write, and the reconciler adds a
 * re-queued job.
 *
 * Deleted jobs' files are removed right after the commit (a bounded number;
 * the worker's sweeper removes the rest, and retries what failed). A job
 * that was running keeps its files until its attempt has surely stopped.
 */
const ACTIVE_FILES_HOLD_MS = 15 * 60_000;
/** files removed in the request itself; more are left to the sweeper */
const INLINE_GARBAGE = 50;

const routes: FastifyPluginAsyncTypebox<ImageQueueOptions> = async (app, opts) => {
  const control = { auth: 'vendor', scopes: ['jobs:write'], rateLimitTier: 'processing' } as const;
  const bulk = { auth: 'vendor', scopes: ['jobs:write'], rateLimitTier: 'bulk' } as const;

  // A project-restricted token controls its project's jobs only; another project's job is not found.
  const ownJob = async (request: FastifyRequest<{ Params: { jobId: string } }>) => {
    const projectId = projectOf(request);
    if (projectId === null) return;
    const job = await findVendorJob(app.db, vendorOf(request).id, request.params.jobId);
    if (!job || job.project_id !== projectId) throw new AppError('NOT_FOUND', 'no such job');
  };

  app.delete('/job/:jobId', { schema: deleteJobSchema, config: control, preHandler: ownJob }, async (request) => {
    const deleted = await deleteJobs(app.db, vendorOf(request).id, [request.params.jobId], ACTIVE_FILES_HOLD_MS);
    const [job] = deleted;
    if (!job) throw new AppError('NOT_FOUND', 'no such job');
    await afterDelete(app, opts, vendorOf(request).id, deleted);
    const filesRemoved = job.status !== 'active' && (await removeFiles(app, vendorOf(request).id));
    request.log.info({ jobId: job.id, vendorId: vendorOf(request).id, was: job.status }, 'job deleted by its vendor');
    return { jobId: job.id, deleted: true as const, filesRemoved };
  });

  app.post('/job/:jobId/cancel', { schema: cancelJobSchema, config: control, preHandler: ownJob }, async (request) => {
    const result = await cancelJob(app.db, vendorOf(request).id, request.params.jobId);
    if (result.outcome === 'not-found') throw new AppError('NOT_FOUND', 'no such job');
    if (result.outcome === 'ended') throw new AppError('CONFLICT', `the job already ended (${result.job.status}); only queued or active jobs can be cancelled`);
    await afterCancel(app, opts, vendorOf(request).id, [result.job]);
    return { jobId: result.job.id, state: 'cancelled' as const, was: result.was };
  });

  app.post('/job/:jobId/retry', { schema: retryJobSchema, config: control, preHandler: ownJob }, async (request, reply) => {
    const result = await retryJob(app.db, vendorOf(request).id, request.params.jobId, opts.attempts);
    if (result.outcome === 'not-found') throw new AppError('NOT_FOUND', 'no such job');
    if (result.outcome === 'not-retryable')
      throw new AppError('CONFLICT', `the job is ${result.job.status}; only failed, dead or cancelled jobs can be retried`);
    if (result.outcome === 'source-gone') throw new AppError('CONFLICT', 'the upload of this job has been removed (retention); queue the photo again instead');
    await queueAgain(app, result.job);
    announce(app, opts, vendorOf(request).id, [result.job], 'queued');
    return reply.code(202).send({ jobId: result.job.id, state: 'queued' as const, attempts: result.job.attempts, maxAttempts: result.job.max_attempts });
  });

  app.delete('/batch/:batchId', { schema: deleteBatchSchema, config: bulk }, async (request) => {
    const { batchId } = request.params;
    const ids = await vendorBatch(app, request, batchId);
    const deleted: DeletedJob[] = [];
    for (let i = 0; i < ids.length; i += 200) deleted.push(...(await deleteJobs(app.db, vendorOf(request).id, ids.slice(i, i + 200), ACTIVE_FILES_HOLD_MS)));
    await afterDelete(app, opts, vendorOf(request).id, deleted);
    await removeFiles(app, vendorOf(request).id);
    request.log.info({ batchId, vendorId: vendorOf(request).id, jobs: deleted.length }, 'batch deleted by its vendor');
    return { batchId, jobIds: deleted.map((j) => j.id) };
  });

  app.post('/batch/:batchId/cancel', { schema: cancelBatchSchema, config: bulk }, async (request) => {
    const { batchId } = request.params;
    const cancelled: Job[] = [];
    for (const id of await vendorBatch(app, request, batchId)) {
      const result = await cancelJob(app.db, vendorOf(request).id, id);
      if (result.outcome === 'cancelled') cancelled.push(result.job);
    }
    await afterCancel(app, opts, vendorOf(request).id, cancelled);
    return { batchId, jobIds: cancelled.map((j) => j.id) };
  });

  app.post('/batch/:batchId/retry', { schema: retryBatchSchema, config: bulk }, async (request, reply) => {
    const { batchId } = request.params;
    const retried: Job[] = [];
    for (const id of await vendorBatch(app, request, batchId)) {
      const result = await retryJob(app.db, vendorOf(request).id, id, opts.attempts);
      if (result.outcome !== 'queued') continue;
      await queueAgain(app, result.job);
      retried.push(result.job);
    }
    announce(app, opts, vendorOf(request).id, retried, 'queued');
    return reply.code(202).send({ batchId, jobIds: retried.map((j) => j.id) });
  });
};

export default routes;

async function vendorBatch(app: FastifyInstance, request: FastifyRequest, batchId: string): Promise<string[]> {
  const ids = await batchJobIds(app.db, vendorOf(request).id, batchId, projectOf(request));
  if (!ids) throw new AppError('NOT_FOUND', 'no such batch');
  return ids;
}

/** Bull's copies of deleted jobs: waiting ones removed, running ones told to stop. */
async function afterDelete(app: FastifyInstance, opts: ImageQueueOptions, vendorId: string, jobs: readonly DeletedJob[]): Promise<void> {
  await stopInRedis(
    app,
    opts,
    jobs.filter((j) => j.status === 'queued' || j.status === 'active'),
  );
  announce(
    app,
    opts,
    vendorId,
    jobs.map((j) => ({ id: j.id, kind: j.kind, batch_id: j.batchId })),
    'cancelled',
  );
}

async function afterCancel(app: FastifyInstance, opts: ImageQueueOptions, vendorId: string, jobs: readonly Job[]): Promise<void> {
  await stopInRedis(app, opts, jobs);
  announce(app, opts, vendorId, jobs, 'cancelled');
}

/**
 * Tells every API process the jobs changed (cached status views are dropped,
 * long-polls wake) and the vendor's event streams to read the log. A deleted
 * job is announced as ended; its next read is a 404.
 */
function announce(
  app: FastifyInstance,
  opts: ImageQueueOptions,
  vendorId: string,
  jobs: readonly Pick<Job, 'id' | 'kind' | 'batch_id'>[],
  type: JobState,
): void {
  if (jobs.length === 0) return;
  const at = new Date().toISOString();
  for (const job of jobs) {
    const message: JobEvent = { type, jobId: job.id, vendorId, batchId: job.batch_id, kind: job.kind, at };
    app.redis.publish(eventsChannel(opts.bullPrefix, vendorId), JSON.stringify(message)).catch(() => undefined);
  }
  app.eventHub.nudge(vendorId);
}

async function stopInRedis(app: FastifyInstance, opts: ImageQueueOptions, jobs: readonly Pick<Job, 'id' | 'kind'>[]): Promise<void> {
  for (const job of jobs) {
    try {
      await app.redis.publish(cancelChannel(opts.bullPrefix), job.id);
      const bullJob = await app.queues[QUEUE_NAMES[job.kind]].getJob(job.id);
      const state = await bullJob?.getState();
      if (bullJob && state !== 'active') await bullJob.remove();
    } catch (error) {
      // The ledger already says the job is over: a worker that takes it skips it.
      app.log.warn({ err: error, jobId: job.id }, 'could not stop the Bull copy of a job; workers will skip it');
    }
  }
}

async function queueAgain(app: FastifyInstance, job: Job): Promise<void> {
  try {
    await requeueJob(app.queues, job, app.jobKinds);
  } catch (error) {
    app.log.warn({ err: error, jobId: job.id }, 'job re-queued in the ledger only; the reconciler will add it to Redis');
  }
}

/** Removes the vendor's due files now; true when none are left due. */
async function removeFiles(app: FastifyInstance, vendorId: string): Promise<boolean> {
  try {
    const run = await collectGarbage(app.db, app.storage, INLINE_GARBAGE, { vendorId, log: app.log });
    return run.failed === 0 && run.removed < INLINE_GARBAGE;
  } catch (error) {
    app.log.warn({ err: error, vendorId }, 'removing deleted files failed; the sweeper will');
    return false;
  }
}
