import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { countDeadLetters, findDeadLetter, listDeadLetters, purgeDeadLetters, reviveDeadLetter, type DeadLetter } from '../../../db/repos/dead-letters.js';
import { payloadOf } from '../../../db/repos/jobs.js';
import type { Job } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import { ALL_QUEUES } from '../../../jobs/queues.js';
import { requeueJob } from '../../../platform/requeue.js';
import {
  getDeadLetterSchema,
  listDeadLettersSchema,
  listQueuesSchema,
  pauseQueueSchema,
  purgeDeadLetterSchema,
  purgeDeadLettersSchema,
  resumeQueueSchema,
  retryAllDeadLettersSchema,
  retryDeadLetterSchema,
  type DeadLetterItem,
} from './queue-schemas.js';
import { vendorOf } from '../../plugins/auth.js';

/**
 * Admin control of the queues: pause/resume one for every worker, and the
 * dead-letter queue (list, retry one or all, purge). The dead-letter list
 * lives in MySQL with the ledger, so a Redis flush cannot lose it; a retry
 * resets the ledger first and then re-adds the Bull job under the same id.
 */
export interface AdminQueueOptions {
  /** attempts a retried dead job gets (JOB_ATTEMPTS) */
  attempts: number;
}

const routes: FastifyPluginAsyncTypebox<AdminQueueOptions> = async (app, opts) => {
  const admin = { auth: 'admin' } as const;
  // A retried POST (same Idempotency-Key) answers as the first one did, and does nothing again.
  const idempotent = app.idempotency.check;

  app.get('/queues', { schema: listQueuesSchema, config: admin }, async () => {
    const dead = await countDeadLetters(app.db);
    const queues = await Promise.all(
      ALL_QUEUES.map(async (name) => {
        const queue = app.queues[name];
        const [counts, paused] = await Promise.all([queue.getJobCounts(), queue.isPaused()]);
        return {
          name,
          paused,
          counts: {
            waiting: counts.waiting,
            active: counts.active,
            delayed: counts.delayed,
            completed: counts.completed,
            failed: counts.failed,
            paused: (counts as unknown as { paused?: number }).paused ?? 0,
          },
          deadLetters: dead[name] ?? 0,
        };
      }),
    );
    return { queues };
  });

  app.post('/queues/:queue/pause', { schema: pauseQueueSchema, config: admin, preHandler: idempotent }, async (request) => {
    await app.queues[request.params.queue].pause();
    request.log.warn({ queue: request.params.queue, admin: vendorOf(request).id }, 'queue paused');
    return { queue: request.params.queue, paused: true };
  });

  app.post('/queues/:queue/resume', { schema: resumeQueueSchema, config: admin, preHandler: idempotent }, async (request) => {
    await app.queues[request.params.queue].resume();
    request.log.warn({ queue: request.params.queue, admin: vendorOf(request).id }, 'queue resumed');
    return { queue: request.params.queue, paused: false };
  });

  app.get('/dead-letters', { schema: listDeadLettersSchema, config: admin }, async (request) => {
    const { queue, vendorId, limit, cursor } = request.query;
    const page = await listDeadLetters(app.db, { queue, vendorId }, cursor ?? null, limit + 1);
    const items = page.slice(0, limit).map(presentDeadLetter);
    return { items, nextCursor: page.length > limit ? (items[items.length - 1]?.jobId ?? null) : null };
  });

  app.get('/dead-letters/:jobId', { schema: getDeadLetterSchema, config: admin }, async (request) => {
    const letter = await findDeadLetter(app.db, request.params.jobId);
    if (!letter) throw new AppError('NOT_FOUND', 'no such dead letter');
    return presentDeadLetter(letter);
  });

  app.post('/dead-letters/:jobId/retry', { schema: retryDeadLetterSchema, config: admin, preHandler: idempotent }, async (request, reply) => {
    const job = await reviveDeadLetter(app.db, request.params.jobId, opts.attempts);
    if (!job) throw new AppError('NOT_FOUND', 'no such dead letter');
    const inRedis = await queueAgain(app, job);
    app.eventHub.nudge(job.vendor_id);
    request.log.info({ jobId: job.id, admin: vendorOf(request).id }, 'dead letter retried');
    return reply.code(202).send({ jobId: job.id, state: 'queued' as const, attempts: job.attempts, maxAttempts: job.max_attempts, inRedis });
  });

  app.post('/dead-letters/retry', { schema: retryAllDeadLettersSchema, config: admin, preHandler: idempotent }, async (request, reply) => {
    const jobIds: string[] = [];
    let cursor: string | null = null;
    for (;;) {
      const page = await listDeadLetters(app.db, request.query, cursor, 200);
      if (page.length === 0) break;
      cursor = page[page.length - 1]?.job.id ?? null;
      for (const letter of page) {
        const job = await reviveDeadLetter(app.db, letter.job.id, opts.attempts);
        if (!job) continue;
        await queueAgain(app, job);
        jobIds.push(job.id);
      }
    }
    request.log.info({ retried: jobIds.length, admin: vendorOf(request).id, ...request.query }, 'dead letters retried');
    return reply.code(202).send({ retried: jobIds.length, jobIds });
  });

  app.delete('/dead-letters/:jobId', { schema: purgeDeadLetterSchema, config: admin }, async (request) => {
    const purged = await purgeDeadLetters(app.db, { jobId: request.params.jobId });
    if (purged === 0) throw new AppError('NOT_FOUND', 'no such dead letter');
    return { purged };
  });

  app.delete('/dead-letters', { schema: purgeDeadLettersSchema, config: admin }, async (request) => {
    const purged = await purgeDeadLetters(app.db, request.query);
    request.log.warn({ purged, admin: vendorOf(request).id, ...request.query }, 'dead letters purged');
    return { purged };
  });
};

export default routes;

/** Re-adds the Bull job; when Redis is away the ledger row (queued) is enough: the reconciler adds it. */
async function queueAgain(app: FastifyInstance, job: Job): Promise<boolean> {
  try {
    await requeueJob(app.queues, job, app.jobKinds);
    return true;
  } catch (error) {
    app.log.warn({ err: error, jobId: job.id }, 'dead letter re-queued in the ledger only; the reconciler will add it to Redis');
    return false;
  }
}

function presentDeadLetter(letter: DeadLetter): DeadLetterItem {
  const { job } = letter;
  return {
    jobId: job.id,
    queue: letter.queue,
    kind: job.kind,
    vendorId: job.vendor_id,
    batchId: job.batch_id,
    projectId: job.project_id,
    recordId: job.record_id,
    deadAt: letter.deadAt.toISOString(),
    createdAt: job.created_at.toISOString(),
    attempts: job.attempts,
    maxAttempts: job.max_attempts,
    error: job.error_code ? { code: job.error_code, message: job.error_message ?? '' } : null,
    payload: payloadOf(job) as unknown as Record<string, unknown>,
    attemptHistory: letter.attempts.map((a) => ({
      attempt: a.attempt,
      workerId: a.workerId,
      startedAt: a.startedAt.toISOString(),
      finishedAt: a.finishedAt?.toISOString() ?? null,
      outcome: a.outcome,
      errorCode: a.errorCode,
      errorMessage: a.errorMessage,
    })),
  };
}
