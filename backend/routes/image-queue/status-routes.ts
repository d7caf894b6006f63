import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { findVendorJob, readJobResults } from '../../../db/repos/jobs.js';
import { batchJobs, findVendorBatch, ledgerCounts, listVendorJobs } from '../../../db/repos/job-queries.js';
import type { Job } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import { JOB_KINDS, QUEUE_NAMES, type JobKind } from '../../../jobs/queues.js';
import { queueDepth, REDIS_READ_TIMEOUT_MS, withTimeout, type QueueDepthView } from '../../queue-depth.js';
import type { ImageQueueOptions } from './index.js';
import { presentBatch, presentJob, presentQueueStats } from './present.js';
import { batchSchema, jobListSchema, jobStatusSchema, queueStatsSchema, type QueueStatsResponse } from './schemas.js';

/**
 * Status routes, in the polling tier (generous, separate from the enqueue
 * tiers, so a dashboard is never locked out by its own uploads). Everything
 * comes from the ledger, scoped by the token's vendor; only live progress and
 * queue depth come from Redis, and their absence degrades the answer rather
 * than failing it.
 */
const routes: FastifyPluginAsyncTypebox<ImageQueueOptions> = async (app, opts) => {
  const polling = { rateLimitTier: 'polling' as const };

  app.get('/job/:jobId', { schema: jobStatusSchema, config: polling }, async (request) => {
    const job = await findVendorJob(app.db, request.vendor.id, request.params.jobId);
    if (!job) throw new AppError('NOT_FOUND', 'no such job');
    const [results, live] = await Promise.all([
      job.status === 'completed' ? readJobResults(app.db, [job.id]) : Promise.resolve(new Map<string, Record<string, unknown>>()),
      job.status === 'active' ? liveProgress(app, job.kind, job.id) : Promise.resolve(null),
    ]);
    return presentJob(job, results.get(job.id) ?? null, live);
  });

  app.get('/jobs', { schema: jobListSchema, config: polling }, async (request) => {
    const { status, kind, batchId, cursor, limit } = request.query;
    if (batchId && !(await findVendorBatch(app.db, request.vendor.id, batchId))) throw new AppError('NOT_FOUND', 'no such batch');
    const page = await listVendorJobs(app.db, {
      vendorId: request.vendor.id,
      ...(status ? { states: status } : {}),
      ...(kind ? { kind } : {}),
      ...(batchId ? { batchId } : {}),
      ...(cursor ? { before: cursor } : {}),
      limit: limit + 1,
    });
    const jobs = page.slice(0, limit);
    const results = await resultsOf(app, jobs);
    return {
      jobs: jobs.map((job) => presentJob(job, results.get(job.id) ?? null, null)),
      nextCursor: page.length > limit ? (jobs[jobs.length - 1]?.id ?? null) : null,
    };
  });

  app.get('/batch/:batchId', { schema: batchSchema, config: polling }, async (request) => {
    const batch = await findVendorBatch(app.db, request.vendor.id, request.params.batchId);
    if (!batch) throw new AppError('NOT_FOUND', 'no such batch');
    const jobs = await batchJobs(app.db, request.vendor.id, batch.id);
    return presentBatch(batch, jobs, await resultsOf(app, jobs));
  });

  const statsCache = new Map<string, { at: number; value: Promise<QueueStatsResponse> }>();
  app.get('/queue-stats', { schema: queueStatsSchema, config: polling }, async (request) => {
    const viewer = request.vendor.role === 'admin' ? null : request.vendor.id;
    const cacheKey = viewer ?? '*admin*';
    const hit = statsCache.get(cacheKey);
    if (hit && Date.now() - hit.at < opts.statsCacheMs) return hit.value;
    const value = queueStats(app, viewer);
    if (statsCache.size > 10_000) statsCache.clear();
    statsCache.set(cacheKey, { at: Date.now(), value });
    value.catch(() => statsCache.delete(cacheKey));
    return value;
  });
};

export default routes;

async function queueStats(app: FastifyInstance, vendorId: string | null): Promise<QueueStatsResponse> {
  const [counts, ...depths] = await Promise.all([ledgerCounts(app.db, vendorId), ...JOB_KINDS.map((kind) => queueDepth(app, kind))]);
  const byKind = Object.fromEntries(JOB_KINDS.map((kind, i) => [kind, depths[i] ?? null])) as Record<JobKind, QueueDepthView | null>;
  return presentQueueStats(counts, byKind, vendorId === null ? 'all' : 'vendor', new Date());
}

async function resultsOf(app: FastifyInstance, jobs: readonly Job[]): Promise<Map<string, Record<string, unknown>>> {
  const completed = jobs.filter((j) => j.status === 'completed').map((j) => j.id);
  return completed.length > 0 ? readJobResults(app.db, completed) : new Map();
}

async function liveProgress(app: FastifyInstance, kind: JobKind, jobId: string): Promise<number | null> {
  try {
    const bullJob = await withTimeout(app.queues[QUEUE_NAMES[kind]].getJob(jobId), REDIS_READ_TIMEOUT_MS);
    const progress = bullJob ? Number(await bullJob.progress()) : NaN;
    return Number.isFinite(progress) ? progress : null;
  } catch {
    return null;
  }
}
