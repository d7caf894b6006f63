import type { Batch, Job } from '../../../db/schema.js';
import type { LedgerCount } from '../../../db/repos/job-queries.js';
import type { KindSet } from '../../../jobs/kinds.js';
import type { JobState } from '../../../jobs/queues.js';
import type { QueueDepthView } from '../../queue-depth.js';
import type { BatchResponse, JobStatusResponse, LedgerQueueCounts, QueueStatsResponse } from './schemas.js';

/** The public views of ledger rows: what the status routes return. */
export function presentJob(job: Job, result: Record<string, unknown> | null, liveProgress: number | null): JobStatusResponse {
  return {
    id: job.id,
    state: job.status,
    progress: job.status === 'completed' ? 100 : Math.max(job.progress, liveProgress ?? 0),
    attempts: job.attempts,
    maxAttempts: job.max_attempts,
    data: {
      kind: job.kind,
      recordId: job.record_id,
      projectId: job.project_id,
      batchId: job.batch_id,
      source: job.source_key ? 'upload' : 'url',
      photoUrl: job.source_key ? null : job.source_url,
      options: JSON.parse(job.options) as Record<string, unknown>,
    },
    result,
    error: job.error_code ? { code: job.error_code, message: job.error_message ?? '' } : null,
    createdAt: job.created_at.toISOString(),
    startedAt: job.started_at?.toISOString() ?? null,
    finishedAt: job.finished_at?.toISOString() ?? null,
    durationMs: job.duration_ms,
  };
}

export function presentBatch(batch: Batch, jobs: readonly Job[], results: Map<string, Record<string, unknown>>): BatchResponse {
  const counts: Record<JobState, number> = { queued: 0, active: 0, completed: 0, failed: 0, dead: 0, cancelled: 0 };
  let progress = 0;
  let finishedAt: Date | null = null;
  for (const job of jobs) {
    counts[job.status] += 1;
    progress += job.status === 'completed' ? 100 : job.progress;
    if (job.finished_at && (!finishedAt || job.finished_at > finishedAt)) finishedAt = job.finished_at;
  }
  const open = counts.queued + counts.active;
  const finished = jobs.length - open;
  const state: BatchResponse['state'] =
    open > 0
      ? counts.queued === jobs.length
        ? 'queued'
        : 'active'
      : counts.completed === jobs.length
        ? 'completed'
        : counts.completed > 0
          ? 'partial'
          : 'failed';
  return {
    id: batch.id,
    kind: batch.kind,
    projectId: batch.project_id,
    total: batch.total,
    state,
    progress: jobs.length > 0 ? Math.floor(progress / jobs.length) : 0,
    counts,
    createdAt: batch.created_at.toISOString(),
    finishedAt: open === 0 && finished > 0 ? ((batch.finished_at ?? finishedAt)?.toISOString() ?? null) : null,
    items: jobs.map((job) => ({
      jobId: job.id,
      recordId: job.record_id,
      state: job.status,
      progress: job.status === 'completed' ? 100 : job.progress,
      attempts: job.attempts,
      result: results.get(job.id) ?? null,
      error: job.error_code ? { code: job.error_code, message: job.error_message ?? '' } : null,
      finishedAt: job.finished_at?.toISOString() ?? null,
    })),
  };
}

/**
 * Seed 003's queue-stats shape from ledger counts (one vendor's, or every
 * vendor's for an admin) and the live depth of each queue. A job waiting in a
 * paused queue counts as paused, not waiting.
 */
export function presentQueueStats(
  kinds: KindSet,
  counts: readonly LedgerCount[],
  depths: ReadonlyMap<string, QueueDepthView | null>,
  scope: 'vendor' | 'all',
  now: Date,
): QueueStatsResponse {
  const totals = emptyByKind(kinds);
  const byVendor = new Map<string, Map<string, LedgerQueueCounts>>();
  for (const c of counts) {
    const paused = depths.get(c.kind)?.isPaused ?? false;
    const total = totals.get(c.kind);
    // A kind the ledger holds but this process does not serve (a test's, gone) is left out.
    if (!total) continue;
    add(total, c, paused);
    if (scope === 'all') {
      let vendor = byVendor.get(c.vendorId);
      if (!vendor) byVendor.set(c.vendorId, (vendor = emptyByKind(kinds)));
      add(vendor.get(c.kind) as LedgerQueueCounts, c, paused);
    }
  }
  const perKind = <T>(value: (kind: string) => T) => Object.fromEntries(kinds.list.map((spec) => [spec.statKey, value(spec.kind)]));
  const response = {
    scope,
    ...perKind((kind) => ({ ...totals.get(kind), queue: depths.get(kind) ?? null })),
    timestamp: now.toISOString(),
  } as QueueStatsResponse;
  if (scope === 'all') {
    response.vendors = [...byVendor].map(
      ([vendorId, v]) => ({ vendorId, ...perKind((kind) => v.get(kind)) }) as NonNullable<QueueStatsResponse['vendors']>[number],
    );
  }
  return response;
}

function emptyCounts(): LedgerQueueCounts {
  return { waiting: 0, active: 0, completed: 0, failed: 0, delayed: 0, paused: 0, dead: 0, cancelled: 0 };
}

function emptyByKind(kinds: KindSet): Map<string, LedgerQueueCounts> {
  return new Map(kinds.list.map((spec) => [spec.kind, emptyCounts()]));
}

function add(target: LedgerQueueCounts, c: LedgerCount, queuePaused: boolean): void {
  if (c.status === 'queued') {
    const notRetrying = c.count - c.retrying;
    target.delayed += c.retrying;
    if (queuePaused) target.paused += notRetrying;
    else target.waiting += notRetrying;
    return;
  }
  target[c.status] += c.count;
}
