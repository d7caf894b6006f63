import { isDeepStrictEqual } from 'node:util';
import type Bull from 'bull';
import type { Redis } from 'ioredis';
import type { Db } from '../db/connect.js';
import { checkRun, completeJob, failAttempt, findJob, setProgress, startAttempt, type Ledger } from '../db/repos/jobs.js';
import { AppError, publicMessage } from '../jobs/errors.js';
import type { AnyJobKind, JobKind } from '../jobs/kinds.js';
import { payloadCheck } from '../jobs/payload-check.js';
import type { JobOutput, JobPayload, PayloadOf } from '../jobs/payloads.js';
import type { Logger } from '../platform/logger.js';
import type { FetchLimits } from '../platform/source-fetch.js';
import { CONTENT_TYPES, type Storage } from '../platform/storage/index.js';
import { deadline, type Deadline } from '../platform/deadline.js';
import { withTimeout } from '../platform/timeout.js';
import type { JobContext, Processor } from './context.js';
import { publishJobEvent } from './events.js';
import type { JobMetrics, JobOutcome } from './metrics.js';
import { retryDb } from './retry-db.js';
import { loadSource } from './source.js';
import { attemptDeadline } from '../platform/images.js';
import type { AttemptWatch, Cancellations } from './cancellations.js';
import type { RunGate } from './run-gate.js';

/**
 * Wraps a processor with everything every job needs: the ledger moves
 * `queued → active → completed | failed | dead` with attempts and progress,
 * the attempt is aborted on timeout, results are written in chunks together
 * with the completion, and errors that cannot succeed on retry end the job at
 * once. The ledger, not Bull, decides whether a job may run: a copy of a job
 * that already finished is skipped.
 *
 * Attempts: the ledger counts them and decides `dead` against the job's
 * `max_attempts`; Bull is given BULL_ATTEMPT_SLACK more, so that attempts cut
 * short by a worker shutdown (refunded here, never counted) cannot exhaust
 * Bull first. Bull only supplies the retry and its exponential backoff.
 */
export interface RunnerDeps {
  db: Db;
  /** the ledger's multi-statement transactions (attempt start and completion) */
  ledger: Ledger;
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
  metrics?: JobMetrics;
  /** aborts an attempt whose job its vendor cancelled or deleted */
  cancellations?: Cancellations;
  /** who runs at once in this process: suspects of killing their worker run alone */
  gate?: RunGate;
}

export type JobHandler = (job: Bull.Job<JobPayload>) => Promise<{ jobId: string; status: string }>;

/**
 * After an abort, the runner keeps the concurrency slot until the processor
 * has actually stopped, so a worker never runs more work than its
 * concurrency (issue 18). Everything a processor does through its context
 * stops at once, and libvips stops computing pixels at the attempt deadline
 * (platform/images.ts, timeLimited); what may still run is one encoder call
 * or model call. Past this long it is logged, and again every period.
 */
const ABORT_SETTLE_MS = 10_000;

export function jobHandler<K extends string>(deps: RunnerDeps, spec: AnyJobKind, processor: Processor<K>): JobHandler {
  const { queue } = spec;
  const check = payloadCheck(spec);
  return async (job) => {
    const problems = check.problems(job.data);
    if (problems) return refuseInvalidPayload(deps, queue, job, problems);
    const payload = job.data as PayloadOf<K>;
    const { jobId, vendorId, batchId, kind } = payload;
    // vendorId is bound per line until the ledger's copy of the job is read (in attempt), so no line carries it twice.
    const log = deps.log.child({ jobId, queue, bullAttempt: job.attemptsMade + 1 });
    // A job found active died with its last worker: recorded now; a suspect runs alone (worker/run-gate.ts).
    const run = await retryDb(() => checkRun(deps.db, jobId, DEAD_RUN_MESSAGE), deps.dbWriteRetryMs);
    if (run.status === 'dead') {
      log.error({ vendorId }, 'job dead: it stopped its worker while running alone, out of attempts');
      deps.metrics?.attemptEnded(queue, 'dead', 0, 'JOB_STALLED');
      publishJobEvent(deps.redis, deps.bullPrefix, { jobId, vendorId, batchId, kind, type: 'dead', error: { code: 'JOB_STALLED', message: DEAD_RUN_MESSAGE } });
      await job.discard();
      throw Object.assign(new Error(`JOB_STALLED: ${DEAD_RUN_MESSAGE}`), { code: 'JOB_STALLED' });
    }
    if (run.suspect) log.warn({ vendorId }, 'a suspect: an earlier run of this job ended with its worker dying; it runs alone');
    const release = await (run.suspect ? deps.gate?.alone() : deps.gate?.shared());
    try {
      return await attempt(job, payload, log);
    } finally {
      release?.();
    }
  };

  async function attempt(job: Bull.Job<JobPayload>, queued: PayloadOf<K>, log: Logger): Promise<{ jobId: string; status: string }> {
    const { jobId } = queued;
    const measuredFrom = performance.now();
    const ended = (outcome: JobOutcome, code?: string) => deps.metrics?.attemptEnded(queue, outcome, (performance.now() - measuredFrom) / 1000, code);
    const started = await retryDb(() => startAttempt(deps.ledger, jobId, deps.workerId), deps.dbWriteRetryMs);
    if (started === null) {
      log.info({ vendorId: queued.vendorId }, 'ledger says this job already finished; skipping the duplicate');
      ended('skipped');
      return { jobId, status: 'skipped' };
    }
    const { attempt, maxAttempts } = started;
    // The ledger's copy is the job: vendor, source, options and output place
    // as the API recorded them, whatever the copy in Redis says.
    const payload = started.payload as PayloadOf<K>;
    const { vendorId, batchId, kind } = payload;
    const event = { jobId, vendorId, batchId, kind };
    const attemptLog = log.child({ attempt, vendorId });
    const differs = PAYLOAD_KEYS.filter((key) => !isDeepStrictEqual(queued[key], payload[key]));
    if (differs.length > 0) attemptLog.warn({ fields: differs }, "the queued copy of this job differs from the ledger's; the ledger's is used");
    attemptLog.info('job started');
    publishJobEvent(deps.redis, deps.bullPrefix, { ...event, type: 'active', progress: 0 });

    const watch = deps.cancellations?.watch(jobId);
    const limit = deadline(deps.timeoutMs, watch?.signal ?? deps.shutdown);
    const { signal } = limit;
    const stopped = () => abortError(limit, deps.timeoutMs, watch);
    const ctx = jobContext(deps, job, payload, attempt, signal, attemptLog, watch);
    const startedAt = performance.now();
    let processed = false;
    try {
      const work = attemptDeadline.run({ endsAt: Date.now() + deps.timeoutMs }, () => processor(ctx));
      const output = await untilAborted(work, signal, stopped, attemptLog);
      processed = true;
      const completed = await retryDb(
        () =>
          completeJob(
            deps.ledger,
            {
              jobId,
              attempt,
              vendorId,
              batchId,
              // the ledger types kind by the registry; a test's extra kind is stored as it is
              kind: kind as JobKind,
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
        attemptLog.warn('the ledger no longer has this attempt running (another copy completed it, or its vendor cancelled it); this result is dropped');
        ended('duplicate');
        return { jobId, status: 'duplicate' };
      }
      attemptLog.info({ ms: Math.round(performance.now() - startedAt) }, 'job completed');
      ended('completed');
      publishJobEvent(deps.redis, deps.bullPrefix, { ...event, type: 'completed', progress: 100 });
      return { jobId, status: 'completed' };
    } catch (raw) {
      // While the processor ran, an abort is the cause of whatever it threw.
      const error = !processed && signal.aborted ? stopped() : asAppError(raw, limit, deps.timeoutMs, watch);
      // A shutdown is not the job's fault: the attempt is refunded and the
      // job goes back in line, whatever its count.
      const refund = error.code === 'WORKER_SHUTDOWN';
      if (error.code === 'JOB_CANCELLED') {
        // The ledger already says cancelled (or the row is gone): nothing to record.
        attemptLog.info('attempt stopped: its vendor cancelled the job');
        ended('cancelled', error.code);
        await job.discard();
        throw Object.assign(new Error(`${error.code}: ${error.message}`), { code: error.code });
      }
      const retrying = refund || (error.retryable && attempt < maxAttempts);
      const status = retrying ? 'queued' : error.retryable ? 'dead' : 'failed';
      attemptLog[status === 'queued' ? 'warn' : 'error']({ code: error.code, err: error.cause ?? error, status }, `attempt failed: ${error.message}`);
      // The log above keeps the whole message; the vendor reads its public form.
      const message = publicMessage(error);
      await retryDb(() => failAttempt(deps.db, { jobId, attempt, status, code: error.code, message, refund }), deps.dbWriteRetryMs).catch((e: unknown) =>
        attemptLog.error({ err: e }, 'could not record the failure in the ledger; the reconciler will queue the job again'),
      );
      ended(refund ? 'shutdown' : retrying ? 'retry' : status === 'dead' ? 'dead' : 'failed', error.code);
      if (!retrying) await job.discard();
      publishJobEvent(deps.redis, deps.bullPrefix, { ...event, type: status, error: { code: error.code, message } });
      throw Object.assign(new Error(`${error.code}: ${error.message}`), { code: error.code });
    } finally {
      limit.release();
      watch?.release();
    }
  }
}

/** The fields of a payload that decide whose job it is, what it reads and where it writes. */
const PAYLOAD_KEYS = ['vendorId', 'projectId', 'recordId', 'batchId', 'kind', 'source', 'outputPrefix', 'options'] as const;

/** What a job's dead run is recorded with (db/repos/jobs.ts, recordDeadRun). */
export const DEAD_RUN_MESSAGE = 'the worker running this job stopped mid-attempt';

/**
 * A Bull job whose payload does not match its kind's schema (written by
 * something other than this service's enqueue, or by an older version) fails
 * at once, before any work: the ledger records a failed attempt with
 * INVALID_PAYLOAD (not retryable) and Bull's copy is discarded. The Bull job
 * id is the ledger id; a payload with no ledger row behind it is only
 * discarded.
 */
async function refuseInvalidPayload(deps: RunnerDeps, queue: string, job: Bull.Job<JobPayload>, problems: string[]): Promise<never> {
  const jobId = String(job.id);
  const message = `the queued job's data does not match its kind (${problems.join('; ')})`;
  const log = deps.log.child({ jobId, queue, bullAttempt: job.attemptsMade + 1 });
  const started = await retryDb(() => startAttempt(deps.ledger, jobId, deps.workerId), deps.dbWriteRetryMs);
  if (started) {
    await retryDb(() => failAttempt(deps.db, { jobId, attempt: started.attempt, status: 'failed', code: 'INVALID_PAYLOAD', message }), deps.dbWriteRetryMs);
    const row = await findJob(deps.db, jobId).catch(() => undefined);
    if (row) {
      publishJobEvent(deps.redis, deps.bullPrefix, {
        jobId,
        vendorId: row.vendor_id,
        batchId: row.batch_id,
        kind: row.kind,
        type: 'failed',
        error: { code: 'INVALID_PAYLOAD', message },
      });
    }
  }
  log.error({ problems, inLedger: Boolean(started) }, 'job refused: its payload does not match its kind');
  deps.metrics?.attemptEnded(queue, 'failed', 0, 'INVALID_PAYLOAD');
  await job.discard();
  throw Object.assign(new Error(`INVALID_PAYLOAD: ${message}`), { code: 'INVALID_PAYLOAD' });
}

/** The least time between two ledger progress writes of one attempt. */
const LEDGER_PROGRESS_INTERVAL_MS = 1000;

function jobContext<K extends string>(
  deps: RunnerDeps,
  job: Bull.Job<JobPayload>,
  payload: PayloadOf<K>,
  attempt: number,
  signal: AbortSignal,
  log: Logger,
  watch: AttemptWatch | undefined,
): JobContext<K> {
  // Every step checks the signal first: an aborted attempt that is still
  // running (a CPU step finishing late) can neither write nor start new work.
  // Progress reaches Bull and the vendor's event stream at every stage; the
  // ledger row only once a second at most, so short jobs cost no extra
  // commits (their ledger row goes from 0 to 100 at completion).
  let ledgerProgressAt = Date.now();
  return {
    payload,
    attempt,
    signal,
    log,
    async progress(percent) {
      signal.throwIfAborted();
      const value = Math.max(0, Math.min(99, Math.round(percent)));
      await job.progress(value).catch(() => undefined);
      if (Date.now() - ledgerProgressAt >= LEDGER_PROGRESS_INTERVAL_MS) {
        ledgerProgressAt = Date.now();
        // The row no longer active: cancelled or deleted, and the cancel message missed.
        void setProgress(deps.db, payload.jobId, value).then(
          (stillActive) => stillActive || watch?.cancel(),
          () => undefined,
        );
      }
      publishJobEvent(deps.redis, deps.bullPrefix, {
        jobId: payload.jobId,
        vendorId: payload.vendorId,
        batchId: payload.batchId,
        kind: payload.kind,
        type: 'progress',
        progress: value,
      });
    },
    async loadSource() {
      signal.throwIfAborted();
      return loadSource(payload.source, { storage: deps.storage, limits: deps.fetchLimits, maxPixels: deps.maxPixels }, signal);
    },
    async loadUrl(url) {
      signal.throwIfAborted();
      return loadSource({ type: 'url', url }, { storage: deps.storage, limits: deps.fetchLimits, maxPixels: deps.maxPixels }, signal);
    },
    async store(name, bytes, meta): Promise<JobOutput> {
      signal.throwIfAborted();
      const ext = meta.format === 'jpeg' ? 'jpg' : meta.format;
      const key = `${payload.outputPrefix}/${name}.${ext}`;
      const stored = await deps.storage.put(key, bytes, CONTENT_TYPES[meta.format] ?? 'application/octet-stream', signal);
      return { name, url: stored.url, key: stored.key, format: meta.format, width: meta.width, height: meta.height, bytes: stored.bytes };
    },
  };
}

/**
 * The work's result; when the signal aborts first, waits for the work to
 * stop, then rejects with the abort reason. The slot is not given back to
 * Bull while the aborted work is still running.
 */
async function untilAborted<T>(work: Promise<T>, signal: AbortSignal, reason: () => unknown, log: Logger): Promise<T> {
  let onAbort: () => void = () => {};
  const aborted = new Promise<'aborted'>((resolve) => {
    onAbort = () => resolve('aborted');
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const first = await Promise.race([work, aborted]);
    if (first !== 'aborted' || !signal.aborted) return first as T;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  const stopped = work.then(
    () => true,
    () => true,
  );
  const since = performance.now();
  while (!(await withTimeout(stopped, ABORT_SETTLE_MS, { orElse: false }))) {
    log.error({ waitedMs: Math.round(performance.now() - since) }, 'the aborted processor is still running; its slot stays taken until it stops');
  }
  throw reason();
}

function abortError(limit: Deadline, timeoutMs: number, watch: AttemptWatch | undefined): AppError {
  if (watch?.cancelled) return new AppError('JOB_CANCELLED', 'the vendor cancelled the job while it ran');
  return limit.timedOut
    ? new AppError('JOB_TIMEOUT', `the attempt took longer than ${timeoutMs} ms and was aborted`)
    : new AppError('WORKER_SHUTDOWN', 'the worker shut down before the attempt finished');
}

function asAppError(error: unknown, limit: Deadline, timeoutMs: number, watch: AttemptWatch | undefined): AppError {
  if (watch?.cancelled) return abortError(limit, timeoutMs, watch);
  if (error instanceof AppError) return error;
  if (limit.timedOut || (error as Error)?.name === 'AbortError' || (error as Error)?.name === 'TimeoutError') return abortError(limit, timeoutMs, watch);
  return new AppError('INTERNAL', (error as Error)?.message ?? String(error), { cause: error });
}
