import type { Redis } from 'ioredis';
import { eventsChannel, type JobEvent } from '../jobs/events.js';

/** Fire-and-forget: the ledger is the record, an event is only a nudge. */
export function publishJobEvent(redis: Redis, prefix: string, event: Omit<JobEvent, 'at'>): void {
  redis.publish(eventsChannel(prefix, event.vendorId), JSON.stringify({ ...event, at: new Date().toISOString() })).catch(() => undefined);
}
