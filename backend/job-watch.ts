import type { FastifyInstance } from 'fastify';
import { findVendorJob } from '../db/repos/jobs.js';
import type { Job } from '../db/schema.js';
import type { ChannelMessage } from '../jobs/events.js';

/**
 * Waiting for one job to end, for routes that answer with the result
 * (remove.bg's synchronous API). The vendor's job-event channel (Redis
 * pub/sub, the same one the SSE stream listens to) says when the job
 * completed, failed or died; the ledger row is then read and returned. Watch
 * before committing the job, so its end cannot be missed; the ledger is also
 * read every FALLBACK_MS in case a message was lost (pub/sub is best effort).
 */
export interface JobWatch {
  /** The job's ledger row once it has ended, or null when `timeoutMs` passed first. */
  until(timeoutMs: number, signal?: AbortSignal): Promise<Job | null>;
  close(): void;
}

const FINAL = new Set<string>(['completed', 'failed', 'dead']);
const FALLBACK_MS = 1000;

export async function watchJob(app: FastifyInstance, vendorId: string, jobId: string): Promise<JobWatch> {
  let pulses = 0;
  let wake: (() => void) | null = null;
  const stop = await app.eventHub.listen(vendorId, (message: ChannelMessage) => {
    if (message.type === 'log' || message.jobId !== jobId || !FINAL.has(message.type)) return;
    pulses++;
    wake?.();
  });
  return {
    async until(timeoutMs, signal) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const before = pulses;
        const job = await findVendorJob(app.db, vendorId, jobId);
        if (job && FINAL.has(job.status)) return job;
        const left = end - Date.now();
        if (left <= 0 || signal?.aborted) return null;
        // A message that came while the row was read needs no wait; otherwise wait for one, or read again after FALLBACK_MS.
        if (pulses === before) await pause(Math.min(left, FALLBACK_MS), signal, (resolve) => (wake = resolve));
        wake = null;
      }
    },
    close: stop,
  };
}

function pause(ms: number, signal: AbortSignal | undefined, onWake: (resolve: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    onWake(done);
  });
}
