import type { FastifyInstance } from 'fastify';
import { queueOf } from '../platform/queues.js';
import { withTimeout } from '../platform/timeout.js';

/**
 * The live depth of a Bull queue, for queue-stats and health. Reads are
 * bounded in time and a failed one is null: these routes degrade while Redis
 * is away instead of failing.
 */
export interface QueueDepthView {
  waiting: number;
  active: number;
  delayed: number;
  paused: number;
  isPaused: boolean;
}

export const REDIS_READ_TIMEOUT_MS = 1500;

export async function queueDepth(app: FastifyInstance, kind: string, timeoutMs = REDIS_READ_TIMEOUT_MS): Promise<QueueDepthView | null> {
  try {
    const queue = queueOf(app.queues, app.jobKinds.get(kind).queue);
    const [counts, isPaused] = await withTimeout(Promise.all([queue.getJobCounts(), queue.isPaused()]), timeoutMs);
    const c = counts as unknown as Record<string, number | undefined>;
    return { waiting: c['waiting'] ?? 0, active: c['active'] ?? 0, delayed: c['delayed'] ?? 0, paused: c['paused'] ?? 0, isPaused };
  } catch {
    return null;
  }
}
