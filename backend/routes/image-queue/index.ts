import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../../../jobs/errors.js';
import { QUEUE_NAMES } from '../../../jobs/queues.js';
import { checkOperations, type Operation } from '../../../jobs/operations.js';
import { findVendorJob, readJobResults } from '../../../db/repos/jobs.js';
import { checkUrl } from '../../../platform/address-guard.js';
import { enqueueJobs } from '../../enqueue.js';
import { badFields } from '../../plugins/errors.js';
import { estimateTime } from '../../estimate.js';
import { presentJob } from './present.js';
import { jobStatusSchema, processQueueSchema } from './schemas.js';

export interface ImageQueueOptions {
  attempts: number;
  maxOutputDimension: number;
  allowPrivateSourceUrls: boolean;
}

const routes: FastifyPluginAsyncTypebox<ImageQueueOptions> = async (app, opts) => {
  app.addHook('preHandler', app.authenticate);

  app.post('/process-queue', { schema: processQueueSchema }, async (request, reply) => {
    const body = request.body;
    assertBodyVendor(request, body.vendorId);
    assertOperations(body.operations, opts.maxOutputDimension);
    checkUrl(body.photoUrl, { allowPrivate: opts.allowPrivateSourceUrls, purpose: 'photoUrl' });
    const { jobIds } = await enqueueJobs(
      app,
      request.vendor.id,
      [
        {
          kind: 'process',
          projectId: body.projectId,
          recordId: body.recordId,
          source: { type: 'url', url: body.photoUrl },
          options: { operations: body.operations },
        },
      ],
      { attempts: opts.attempts, batch: false },
    );
    const jobId = jobIds[0] as string;
    return reply.code(202).send({
      success: true as const,
      jobId,
      recordId: body.recordId,
      statusUrl: `/api/image-queue/job/${jobId}`,
      message: 'Job queued for processing',
      estimatedTime: await estimateTime(app, 'process', 1),
    });
  });

  app.get('/job/:jobId', { schema: jobStatusSchema }, async (request) => {
    const job = await findVendorJob(app.db, request.vendor.id, request.params.jobId);
    if (!job) throw new AppError('NOT_FOUND', 'no such job');
    const [results, live] = await Promise.all([
      job.status === 'completed' ? readJobResults(app.db, [job.id]) : Promise.resolve(new Map<string, Record<string, unknown>>()),
      job.status === 'active' ? liveProgress(app, job.kind, job.id) : Promise.resolve(null),
    ]);
    return presentJob(job, results.get(job.id) ?? null, live);
  });
};

export default routes;

/** The vendor is the token's; a body that names another one is refused. */
export function assertBodyVendor(request: FastifyRequest, bodyVendorId: string | undefined): void {
  if (bodyVendorId !== undefined && bodyVendorId !== request.vendor.id) {
    throw new AppError('FORBIDDEN', 'vendorId in the body does not match the token');
  }
}

function assertOperations(operations: readonly Operation[], maxDimension: number): void {
  const problems = checkOperations(operations, { maxDimension });
  if (problems.length > 0) throw badFields(problems.map((p) => ({ path: `body/${p.path}`, message: p.message })));
}

async function liveProgress(app: Parameters<FastifyPluginAsyncTypebox>[0], kind: keyof typeof QUEUE_NAMES, jobId: string): Promise<number | null> {
  try {
    const bullJob = await app.queues[QUEUE_NAMES[kind]].getJob(jobId);
    const progress = bullJob ? Number(await bullJob.progress()) : NaN;
    return Number.isFinite(progress) ? progress : null;
  } catch {
    return null;
  }
}
