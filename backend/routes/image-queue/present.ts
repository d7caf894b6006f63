import type { Job } from '../../../db/schema.js';
import type { JobStatusResponse } from './schemas.js';

/** The public view of a ledger row: what `GET /job/:jobId` returns. */
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
