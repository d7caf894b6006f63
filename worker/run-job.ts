import type Bull from 'bull';
import type { Redis } from 'ioredis';
import type { Db } from '../db/connect.js';
import { completeJob, failAttempt, setProgress, startAttempt } from '../db/repos/jobs.js';
import { markRecordProcessing } from '../db/repos/records.js';
import { AppError } from '../jobs/errors.js';
import type { JobKind } from '../jobs/queues.js';
import type { JobOutput, JobPayload, PayloadOf } from '../jobs/payloads.js';
import type { Logger } from '../platform/logger.js';
import type { FetchLimits } from '../platform/source-fetch.js';
import { CONTENT_TYPES, type Storage } from '../platform/storage/index.js';
import type { JobContext, Processor } from './context.js';
import { publishJobEvent } from './events.js';
import { retryDb } from './retry-db.js';
import { loadSource } from './source.js';

/**
 * Wraps a processor with everything every job needs: the ledger moves
 * `queued → active → completed | failed | dead` with attempts and progress,
 * the attempt is aborted on timeout, results are written in chunks together
 * with the completion, and errors that cannot succeed on retry end the job at
 * once. The ledger, not Bull, decides whether a job may run: a copy of a job
 * that already finished is skipped.
 */
export interface RunnerDeps {
  db: Db;
  redis: Redis;
  storage: Storage;
  log: Logger;
  workerId: string;
  bullPrefix: string;
  fetchLimits: FetchLimits;
  maxPixels: number;
  timeoutMs: number;
  chunkFields: number;
  dbWriteRetryMs: number;
  /** aborted when the worker is shutting down past its grace period */
  shutdown: AbortSignal;
}

export type JobHandler = (job: Bull.Job<JobPayload>) => Promise<{ jobId: string; status: string }>;

export function jobHandler<K extends JobKind>(deps: RunnerDeps, queue: string, processor: Processor<K>): JobHandler {
  return async (job) => {
    const payload = job.data as PayloadOf<K>;
    const { jobId, vendorId, batchId, kind } = payload;
    const log = deps.log.child({ jobId, vendorId, queue, bullAttempt: job.attemptsMade + 1 });
    const event = { jobId, vendorId, batchId, kind };

    const started = await retryDb(() => startAttempt(deps.db, jobId, deps.workerId), deps.dbWriteRetryMs);
    if (started === null) {
      log.info('ledger says this job already finished; skipping the duplicate');
      return { jobId, status: 'skipped' };
    }
    const { attempt, maxAttempts } = started;
    const attemptLog = log.child({ attempt });
    attemptLog.info('job started');
    publishJobEvent(deps.redis, deps.bullPrefix, { ...event, type: 'active' });
    await markRecordProcessing(deps.db, vendorId, payload.projectId, payload.recordId, jobId).catch(() => undefined);

    const timeout = AbortSignal.timeout(deps.timeoutMs);
    const signal = AbortSignal.any([timeout, deps.shutdown]);
    const ctx = jobContext(deps, job, payload, attempt, signal, attemptLog);
    const startedAt = performance.now();
    try {
      const output = await raceAbort(processor(ctx), signal, () => abortError(timeout, deps.timeoutMs));
      const completed = await retryDb(
        () =>
          completeJob(
            deps.db,
            {
              jobId,
              attempt,
              vendorId,
              projectId: payload.projectId,
              recordId: payload.recordId,
              result: output.result,
              record: output.record,
              recordFields: output.recordFields,
            },
            deps.chunkFields,
          ),
        deps.dbWriteRetryMs,
        (error, delayMs) => attemptLog.warn({ err: error, delayMs }, 'result write failed; retrying'),
      );
      if (!completed) {
        attemptLog.warn('another copy of this job completed first; this result is dropped');
        return { jobId, status: 'duplicate' };
      }
      attemptLog.info({ ms: Math.round(performance.now() - startedAt) }, 'job completed');
      publishJobEvent(deps.redis, deps.bullPrefix, { ...event, type: 'completed', progress: 100 });
      return { jobId, status: 'completed' };
    } catch (raw) {
      const error = asAppError(raw, timeout, deps.timeoutMs);
      // The ledger counts attempts; Bull's own count has slack for attempts
      // cut short by shutdowns, which are refunded here and never count.
      const refund = error.code === 'WORKER_SHUTDOWN';
      const retrying = refund || (error.retryable && attempt < maxAttempts);
      const status = retrying ? 'queued' : error.retryable ? 'dead' : 'failed';
      attemptLog[status === 'queued' ? 'warn' : 'error']({ code: error.code, err: error.cause ?? error, status }, `attempt failed: ${error.message}`);
      await retryDb(() => failAttempt(deps.db, { jobId, attempt, status, code: error.code, message: error.message, refund }), deps.dbWriteRetryMs).catch(
        (e: unknown) => attemptLog.error({ err: e }, 'could not record the failure in the ledger'),
      );
      if (!retrying) await job.discard();
      publishJobEvent(deps.redis, deps.bullPrefix, { ...event, type: status, error: { code: error.code, message: error.message } });
      throw Object.assign(new Error(`${error.code}: ${error.message}`), { code: error.code });
    }
  };
}

function jobContext<K extends JobKind>(
  deps: RunnerDeps,
  job: Bull.Job<JobPayload>,
  payload: PayloadOf<K>,
  attempt: number,
  signal: AbortSignal,
  log: Logger,
): JobContext<K> {
  return {
    payload,
    attempt,
    signal,
    log,
    async progress(percent) {
      const value = Math.max(0, Math.min(99, Math.round(percent)));
      await job.progress(value).catch(() => undefined);
      await setProgress(deps.db, payload.jobId, value).catch(() => undefined);
      publishJobEvent(deps.redis, deps.bullPrefix, {
        jobId: payload.jobId,
        vendorId: payload.vendorId,
        batchId: payload.batchId,
        kind: payload.kind,
        type: 'progress',
        progress: value,
      });
    },
    loadSource: () => loadSource(payload.source, { storage: deps.storage, limits: deps.fetchLimits, maxPixels: deps.maxPixels }, signal),
    async store(name, bytes, meta): Promise<JobOutput> {
      const ext = meta.format === 'jpeg' ? 'jpg' : meta.format;
      const key = `${payload.outputPrefix}/${name}.${ext}`;
      const stored = await deps.storage.put(key, bytes, CONTENT_TYPES[meta.format] ?? 'application/octet-stream', signal);
      return { name, url: stored.url, key: stored.key, format: meta.format, width: meta.width, height: meta.height, bytes: stored.bytes };
    },
  };
}

/** Resolves with the work, or rejects as soon as the signal aborts. */
async function raceAbort<T>(work: Promise<T>, signal: AbortSignal, reason: () => unknown): Promise<T> {
  if (signal.aborted) throw reason();
  let onAbort: () => void = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    work.catch(() => undefined);
  }
}

function abortError(timeout: AbortSignal, timeoutMs: number): AppError {
  return timeout.aborted
    ? new AppError('JOB_TIMEOUT', `the attempt took longer than ${timeoutMs} ms and was aborted`)
    : new AppError('WORKER_SHUTDOWN', 'the worker shut down before the attempt finished');
}

function asAppError(error: unknown, timeout: AbortSignal, timeoutMs: number): AppError {
  if (error instanceof AppError) return error;
  if (timeout.aborted || (error as Error)?.name === 'AbortError' || (error as Error)?.name === 'TimeoutError') return abortError(timeout, timeoutMs);
  return new AppError('INTERNAL', (error as Error)?.message ?? String(error), { cause: error });
}
