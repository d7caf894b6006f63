import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { findVendorJob, readJobResults } from '../../db/repos/jobs.js';
import { batchWithJobs } from '../../db/repos/job-queries.js';
import type { Job } from '../../db/schema.js';
import type { ChannelMessage } from '../../jobs/events.js';
import type { JobState } from '../../jobs/queues.js';
import { queueOf } from '../../platform/queues.js';
import { REDIS_READ_TIMEOUT_MS } from '../queue-depth.js';
import { withTimeout } from '../../platform/timeout.js';
import { presentBatch, presentJob } from '../routes/image-queue/present.js';
import type { BatchResponse, JobStatusResponse } from '../routes/image-queue/schemas.js';

/**
 * Status reads at dashboard scale. A job's or a batch's public view is read
 * from the ledger once and kept in memory for JOB_READ_CACHE_MS, and every
 * job event on the Redis pub/sub the workers already publish (one pattern
 * subscription per process, see plugins/events.ts) drops the views it
 * concerns at once, so a reader never sees an older state than the last
 * event it could have heard of. While the subscription is not live (Redis
 * lost, not yet subscribed) nothing is cached: every read goes to the ledger.
 *
 * Long-polls wait here too: `untilChanged` reads, and while the view is the
 * one the caller already has, waits for an event about it, the end of the
 * wait, or the process closing. Waiters are bounded per process and per
 * vendor; a wait beyond the caps answers at once with the current view.
 */
export interface View<T> {
  readonly view: T;
  readonly state: JobState | BatchResponse['state'];
  /** over: no event will change it again (short of an operator's retry) */
  readonly finished: boolean;
  readonly projectId: string;
  /** the serialized body and its ETag, made once per view by the route (see routes/image-queue/conditional.ts) */
  rendered?: { body: Buffer; etag: string };
}

export type JobView = View<JobStatusResponse>;
export type BatchView = View<BatchResponse>;

/** 'revoked': the vendor's tokens were revoked while it waited (the route checks its token again) */
export type WaitOutcome = 'changed' | 'unchanged' | 'full' | 'closed' | 'revoked';

export interface WaitRequest<T> {
  vendorId: string;
  /** a project-restricted token's project: another project's job or batch reads as not found */
  projectId?: string | null;
  target: { jobId: string } | { batchId: string };
  /** the ETag the caller holds (If-None-Match), or null: wait for another state */
  since: string | null;
  ms: number;
  signal: AbortSignal;
  etag: (view: View<T>) => string;
  /** 'finished': keep waiting through other changes until the job or batch is over (Prefer: wait) */
  until?: 'changed' | 'finished';
}

export interface JobStatus {
  /** One of the vendor's jobs (null: not found, or another vendor's). */
  job(vendorId: string, jobId: string): Promise<JobView | null>;
  batch(vendorId: string, batchId: string): Promise<BatchView | null>;
  /**
   * Reads until the view differs from `since` (an ETag; without one: until
   * its state differs from the first read's), the target is finished, or
   * `ms` pass. A wait beyond the caps returns the first read at once.
   * `etag` is the route's (routes/image-queue/conditional.ts).
   */
  untilChanged<T>(wait: WaitRequest<T>): Promise<{ view: View<T> | null; outcome: WaitOutcome }>;
  /** Open waits, in this process and for one vendor. */
  waiting(vendorId?: string): number;
}

declare module 'fastify' {
  interface FastifyInstance {
    jobStatus: JobStatus;
  }
}

export interface JobStatusOptions {
  cacheMs: number;
  waitsMax: number;
  waitsMaxPerVendor: number;
}

/** The most views kept; past it the cache starts over (a burst of one-off reads must not grow the heap). */
const CACHE_MAX_ENTRIES = 100_000;
/** While the subscription is not live a long-poll cannot hear events: it reads again this often instead. */
const BLIND_RECHECK_MS = 1000;

const FINISHED_JOB: ReadonlySet<string> = new Set(['completed', 'failed', 'dead']);
const FINISHED_BATCH: ReadonlySet<string> = new Set(['completed', 'partial', 'failed']);

interface Entry {
  at: number;
  value: Promise<View<unknown> | null>;
}

interface Waiter {
  vendorId: string;
  /** wake on progress events too (the caller holds an ETag, which progress changes) */
  progress: boolean;
  wake: (outcome: 'event' | 'gap' | 'closed' | 'revoked') => void;
}

export default fp<JobStatusOptions>(
  async (app, opts) => {
    const cache = new Map<string, Entry>();
    const waiters = new Map<string, Set<Waiter>>();
    const perVendor = new Map<string, number>();
    let total = 0;

    const jobKey = (vendorId: string, jobId: string) => `j:${vendorId}:${jobId}`;
    const batchKey = (vendorId: string, batchId: string) => `b:${vendorId}:${batchId}`;

    app.eventHub.listenAll((message) => onMessage(message));
    // A gap (subscriber lost or back) may have hidden events: nothing cached is trusted, every waiter reads again.
    app.eventHub.onGap(() => {
      cache.clear();
      for (const set of [...waiters.values()]) for (const waiter of [...set]) waiter.wake('gap');
    });
    // A revoked vendor's long-polls end now, in every process (the route answers 401).
    app.eventHub.onRevoke((vendorId) => {
      for (const set of [...waiters.values()]) for (const waiter of [...set]) if (waiter.vendorId === vendorId) waiter.wake('revoked');
    });

    function onMessage(message: ChannelMessage): void {
      const jobId = 'jobId' in message ? message.jobId : undefined;
      const batchId = 'batchId' in message ? message.batchId : undefined;
      if (message.type === 'progress') {
        if (jobId) patchProgress(jobKey(message.vendorId, jobId), message.progress ?? 0);
      } else {
        if (jobId) cache.delete(jobKey(message.vendorId, jobId));
        if (batchId) cache.delete(batchKey(message.vendorId, batchId));
      }
      const state = message.type !== 'progress';
      if (jobId) wakeAll(jobKey(message.vendorId, jobId), message.vendorId, state);
      if (batchId) wakeAll(batchKey(message.vendorId, batchId), message.vendorId, state);
    }

    function wakeAll(key: string, vendorId: string, state: boolean): void {
      const set = waiters.get(key);
      if (!set) return;
      for (const waiter of [...set]) if (waiter.vendorId === vendorId && (state || waiter.progress)) waiter.wake('event');
    }

    /** Progress travels on the channel only: a cached active job takes it rather than being read again. */
    function patchProgress(key: string, progress: number): void {
      const entry = cache.get(key);
      if (!entry) return;
      const patched = entry.value.then((current) => {
        const view = current as JobView | null;
        if (!view || view.state !== 'active' || view.view.progress >= progress) return current;
        return jobView({ ...view.view, progress });
      });
      cache.set(key, { at: entry.at, value: patched });
    }

    /** The cached read of `key`, or a new one (shared by every request that asks while it runs). */
    function cached<T>(key: string, read: () => Promise<View<T> | null>): Promise<View<T> | null> {
      if (!app.eventHub.live || opts.cacheMs <= 0) return read();
      const now = Date.now();
      const hit = cache.get(key);
      if (hit && now - hit.at < opts.cacheMs) return hit.value as Promise<View<T> | null>;
      const entry: Entry = { at: now, value: read() };
      if (cache.size >= CACHE_MAX_ENTRIES) cache.clear();
      cache.set(key, entry);
      // Not found and failures are not kept: the job may be committed a moment later, the database may come back.
      entry.value.then(
        (view) => {
          if (!view && cache.get(key) === entry) cache.delete(key);
        },
        () => {
          if (cache.get(key) === entry) cache.delete(key);
        },
      );
      return entry.value as Promise<View<T> | null>;
    }

    const status: JobStatus = {
      job: (vendorId, jobId) => cached(jobKey(vendorId, jobId), () => readJob(app, vendorId, jobId)),
      batch: (vendorId, batchId) => cached(batchKey(vendorId, batchId), () => readBatch(app, vendorId, batchId)),

      async untilChanged<T>({
        vendorId,
        projectId = null,
        target,
        since,
        ms,
        signal,
        etag,
        until = 'changed',
      }: WaitRequest<T>): Promise<{ view: View<T> | null; outcome: WaitOutcome }> {
        const deadline = Date.now() + ms;
        const isJob = 'jobId' in target;
        const key = isJob ? jobKey(vendorId, target.jobId) : batchKey(vendorId, target.batchId);
        const read = async () => {
          const found = (await (isJob ? status.job(vendorId, target.jobId) : status.batch(vendorId, target.batchId))) as View<T> | null;
          return found && (projectId === null || found.projectId === projectId) ? found : null;
        };
        let view = await read();
        const startState = view?.state;
        const changed = (v: View<T>) => until === 'changed' && (since !== null ? etag(v) !== since : v.state !== startState);
        if (!view || view.finished || changed(view) || ms <= 0) return { view, outcome: 'changed' };
        if (total >= opts.waitsMax || (perVendor.get(vendorId) ?? 0) >= opts.waitsMaxPerVendor) return { view, outcome: 'full' };
        total += 1;
        perVendor.set(vendorId, (perVendor.get(vendorId) ?? 0) + 1);
        try {
          for (;;) {
            const remaining = deadline - Date.now();
            if (remaining <= 0) return { view: await read(), outcome: 'unchanged' };
            const woke = await wait(key, vendorId, since !== null, app.eventHub.live ? remaining : Math.min(remaining, BLIND_RECHECK_MS), signal);
            if (woke === 'closed' || woke === 'revoked') return { view, outcome: woke };
            view = await read();
            if (!view || view.finished || changed(view)) return { view, outcome: 'changed' };
          }
        } finally {
          total -= 1;
          const left = (perVendor.get(vendorId) ?? 1) - 1;
          if (left > 0) perVendor.set(vendorId, left);
          else perVendor.delete(vendorId);
        }
      },

      waiting: (vendorId) => (vendorId === undefined ? total : (perVendor.get(vendorId) ?? 0)),
    };

    /** Until an event about `key`, a gap, `ms`, the caller leaving or the app closing. */
    function wait(
      key: string,
      vendorId: string,
      progress: boolean,
      ms: number,
      signal: AbortSignal,
    ): Promise<'event' | 'gap' | 'timeout' | 'closed' | 'revoked'> {
      return new Promise((resolve) => {
        if (signal.aborted) return resolve('closed');
        let set = waiters.get(key);
        if (!set) waiters.set(key, (set = new Set()));
        const done = (outcome: 'event' | 'gap' | 'timeout' | 'closed' | 'revoked') => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          set.delete(waiter);
          if (set.size === 0 && waiters.get(key) === set) waiters.delete(key);
          resolve(outcome);
        };
        const waiter: Waiter = { vendorId, progress, wake: done };
        const onAbort = () => done('closed');
        const timer = setTimeout(() => done('timeout'), ms);
        signal.addEventListener('abort', onAbort, { once: true });
        set.add(waiter);
      });
    }

    app.decorate('jobStatus', status);
    // Long-polls never end by themselves before their wait: end them so the server can stop.
    app.addHook('preClose', async () => {
      for (const set of [...waiters.values()]) for (const waiter of [...set]) waiter.wake('closed');
    });
  },
  { name: 'job-status', dependencies: ['mysql', 'queues', 'events'] },
);

function jobView(view: JobStatusResponse): JobView {
  return { view, state: view.state, finished: FINISHED_JOB.has(view.state), projectId: view.data.projectId };
}

async function readJob(app: FastifyInstance, vendorId: string, jobId: string): Promise<JobView | null> {
  const job = await findVendorJob(app.db, vendorId, jobId);
  if (!job) return null;
  const [results, live] = await Promise.all([
    job.status === 'completed' ? readJobResults(app.db, [job.id]) : Promise.resolve(new Map<string, Record<string, unknown>>()),
    job.status === 'active' ? liveProgress(app, job.kind, job.id) : Promise.resolve(null),
  ]);
  return jobView(presentJob(job, results.get(job.id) ?? null, live));
}

async function readBatch(app: FastifyInstance, vendorId: string, batchId: string): Promise<BatchView | null> {
  const found = await batchWithJobs(app.db, vendorId, batchId);
  if (!found) return null;
  const view = presentBatch(found.batch, found.jobs, await resultsOf(app, found.jobs));
  return { view, state: view.state, finished: FINISHED_BATCH.has(view.state), projectId: view.projectId };
}

export async function resultsOf(app: FastifyInstance, jobs: readonly Job[]): Promise<Map<string, Record<string, unknown>>> {
  const completed = jobs.filter((j) => j.status === 'completed').map((j) => j.id);
  return completed.length > 0 ? readJobResults(app.db, completed) : new Map();
}

async function liveProgress(app: FastifyInstance, kind: string, jobId: string): Promise<number | null> {
  try {
    const bullJob = await withTimeout(queueOf(app.queues, app.jobKinds.get(kind).queue).getJob(jobId), REDIS_READ_TIMEOUT_MS);
    const progress = bullJob ? Number(await bullJob.progress()) : NaN;
    return Number.isFinite(progress) ? progress : null;
  } catch {
    return null;
  }
}
