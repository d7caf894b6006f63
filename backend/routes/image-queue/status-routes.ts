import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { findVendorBatch, ledgerCounts, listVendorJobs } from '../../../db/repos/job-queries.js';
import { AppError } from '../../../jobs/errors.js';
import { queueDepth } from '../../queue-depth.js';
import { resultsOf, type View } from '../../plugins/job-status.js';
import { heldEtag, render, rendered, sendRendered, serializerOf, type Serialize } from './conditional.js';
import type { ImageQueueOptions } from './index.js';
import { presentJob, presentQueueStats } from './present.js';
import {
  batchSchema,
  jobListSchemaFor,
  jobStatusSchema,
  queueStatsSchemaFor,
  type BatchResponse,
  type JobStatusResponse,
  type QueueStatsResponse,
} from './schemas.js';
import { isFullToken, projectOf, seesProject, vendorOf } from '../../plugins/auth.js';

/**
 * Status routes, in the polling tier (generous, separate from the enqueue
 * tiers, so a dashboard is never locked out by its own uploads). Everything
 * comes from the ledger, scoped by the token's vendor; only live progress and
 * queue depth come from Redis, and their absence degrades the answer rather
 * than failing it.
 */
const routes: FastifyPluginAsyncTypebox<ImageQueueOptions> = async (app, opts) => {
  const polling = { auth: 'vendor', scopes: ['jobs:read'], rateLimitTier: 'polling' } as const;

  app.get('/job/:jobId', { schema: jobStatusSchema, config: polling }, async (request, reply) => {
    const serialize = serializerOf(reply);
    const found = await readOrWait<JobStatusResponse>(app, request, reply, { jobId: request.params.jobId }, request.query.wait, serialize);
    if (!found) throw new AppError('NOT_FOUND', 'no such job');
    return sendRendered(request, reply, rendered(found, serialize));
  });

  app.get('/jobs', { schema: jobListSchemaFor(app.jobKinds), config: polling }, async (request, reply) => {
    const { status, kind, batchId, cursor, limit } = request.query;
    const projectId = projectOf(request);
    if (batchId) {
      const batch = await findVendorBatch(app.db, vendorOf(request).id, batchId);
      if (!batch || !seesProject(request, batch.project_id)) throw new AppError('NOT_FOUND', 'no such batch');
    }
    const page = await listVendorJobs(app.db, {
      vendorId: vendorOf(request).id,
      ...(projectId !== null ? { projectId } : {}),
      ...(status ? { states: status } : {}),
      ...(kind ? { kind } : {}),
      ...(batchId ? { batchId } : {}),
      ...(cursor ? { before: cursor } : {}),
      limit: limit + 1,
    });
    const jobs = page.slice(0, limit);
    const results = await resultsOf(app, jobs);
    const list = {
      jobs: jobs.map((job) => presentJob(job, results.get(job.id) ?? null, null)),
      nextCursor: page.length > limit ? (jobs[jobs.length - 1]?.id ?? null) : null,
    };
    return sendRendered(request, reply, render(serializerOf(reply)(list)));
  });

  app.get('/batch/:batchId', { schema: batchSchema, config: polling }, async (request, reply) => {
    const serialize = serializerOf(reply);
    const found = await readOrWait<BatchResponse>(app, request, reply, { batchId: request.params.batchId }, request.query.wait, serialize);
    if (!found) throw new AppError('NOT_FOUND', 'no such batch');
    return sendRendered(request, reply, rendered(found, serialize));
  });

  const statsCache = new Map<string, { at: number; value: Promise<QueueStatsResponse> }>();
  app.get('/queue-stats', { schema: queueStatsSchemaFor(app.jobKinds), config: polling }, async (request) => {
    // An admin's full token sees every vendor's counts; a project token its project's only.
    const projectId = projectOf(request);
    const viewer = vendorOf(request).role === 'admin' && isFullToken(request.caller!) ? null : vendorOf(request).id;
    const cacheKey = viewer === null ? '*admin*' : projectId === null ? viewer : `${viewer}\n${projectId}`;
    const hit = statsCache.get(cacheKey);
    if (hit && Date.now() - hit.at < opts.statsCacheMs) return hit.value;
    const value = queueStats(app, viewer, projectId);
    if (statsCache.size > 10_000) statsCache.clear();
    statsCache.set(cacheKey, { at: Date.now(), value });
    value.catch(() => statsCache.delete(cacheKey));
    return value;
  });
};

export default routes;

async function queueStats(app: FastifyInstance, vendorId: string | null, projectId: string | null): Promise<QueueStatsResponse> {
  const kinds = app.jobKinds.list;
  const [counts, ...depths] = await Promise.all([ledgerCounts(app.db, vendorId, projectId), ...kinds.map((spec) => queueDepth(app, spec.kind))]);
  const byKind = new Map(kinds.map((spec, i) => [spec.kind, depths[i] ?? null]));
  return presentQueueStats(app.jobKinds, counts, byKind, vendorId === null ? 'all' : 'vendor', new Date());
}

/**
 * A job's or batch's view: at once, or with `?wait=N` held until it changes
 * (a long-poll). The caller's If-None-Match is what it waits to see change.
 */
async function readOrWait<T>(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  target: { jobId: string } | { batchId: string },
  wait: number | undefined,
  serialize: Serialize,
): Promise<View<T> | null> {
  const vendorId = vendorOf(request).id;
  const projectId = projectOf(request);
  if (!wait) {
    const view = await ('jobId' in target ? app.jobStatus.job(vendorId, target.jobId) : app.jobStatus.batch(vendorId, target.batchId));
    // Another project's job or batch reads as not found, as another vendor's does.
    return view && seesProject(request, view.projectId) ? (view as View<T>) : null;
  }
  const left = new AbortController();
  const onClose = () => left.abort();
  reply.raw.once('close', onClose);
  try {
    const { view, outcome } = await app.jobStatus.untilChanged<T>({
      vendorId,
      projectId,
      target,
      since: heldEtag(request.headers['if-none-match']),
      ms: wait * 1000,
      signal: left.signal,
      etag: (v) => rendered(v, serialize).etag,
    });
    // Woken by a revocation of the vendor's tokens: the token is checked again (its vendor row was dropped), so a revoked one gets 401 now.
    if (outcome === 'revoked') await app.resolveCaller(request);
    return view;
  } finally {
    reply.raw.off('close', onClose);
  }
}
