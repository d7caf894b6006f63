import type { Redis } from 'ioredis';
import type { JobState } from '../jobs/queues.js';

/**
 * Job events on Redis pub/sub, one channel per vendor, for the API to stream
 * to that vendor's dashboards. Fire-and-forget: the ledger is the record, an
 * event is only a nudge.
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

export function publishJobEvent(redis: Redis, prefix: string, event: Omit<JobEvent, 'at'>): void {
  redis.publish(eventsChannel(prefix, event.vendorId), JSON.stringify({ ...event, at: new Date().toISOString() })).catch(() => undefined);
}
