import type { JobState } from './queues.js';

/**
 * Job events on Redis pub/sub, one channel per vendor. Workers publish, the
 * API streams them to that vendor's dashboards (SSE) and nobody else's.
 */
export interface JobEvent {
  type: JobState | 'progress';
  jobId: string;
  vendorId: string;
  batchId: string | null;
  kind: string;
  progress?: number;
  error?: { code: string; message: string };
  at: string;
}

export function eventsChannel(prefix: string, vendorId: string): string {
  return `${prefix}:events:${vendorId}`;
}
