import type { Redis } from 'ioredis';
import { HEARTBEAT_TTL_MS, heartbeatPattern, type WorkerHeartbeat } from '../jobs/heartbeat.js';
import { QUEUE_NAMES, type JobKind, type QueueName } from '../jobs/queues.js';

/**
 * The API's view of the workers, from the heartbeat keys they write
 * (jobs/heartbeat.ts). A worker is live while its key exists and its last
 * beat is recent; `estimatedTime` and `/api/worker/health` both read this.
 */
const STALE_AFTER_MS = 2 * HEARTBEAT_TTL_MS;

export const DEFAULT_CONCURRENCY: Record<JobKind, number> = { 'remove-bg': 3, 'face-crop': 3, process: 5 };

export async function readHeartbeats(redis: Redis, prefix: string, now = Date.now()): Promise<WorkerHeartbeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', heartbeatPattern(prefix), 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  // The key's TTL is what retires a dead worker; the age check only guards
  // against a key written without one.
  return values.map((v) => parseHeartbeat(v)).filter((hb): hb is WorkerHeartbeat => hb !== null && now - Date.parse(hb.lastBeat) <= STALE_AFTER_MS);
}

/** A heartbeat as written by a worker, or null for anything malformed. */
export function parseHeartbeat(value: string | null): WorkerHeartbeat | null {
  if (!value) return null;
  try {
    const hb = JSON.parse(value) as Partial<WorkerHeartbeat>;
    if (typeof hb.workerId !== 'string' || typeof hb.lastBeat !== 'string' || Number.isNaN(Date.parse(hb.lastBeat))) return null;
    if (!hb.queues || typeof hb.queues !== 'object') return null;
    return { host: '', pid: 0, startedAt: hb.lastBeat, ...hb, rembg: Array.isArray(hb.rembg) ? hb.rembg : [] } as WorkerHeartbeat;
  } catch {
    return null;
  }
}

/** Jobs of each queue the live workers run at once (paused queues serve nothing). */
export function liveConcurrency(heartbeats: readonly WorkerHeartbeat[]): Record<QueueName, number> {
  const total = Object.fromEntries(Object.values(QUEUE_NAMES).map((q) => [q, 0])) as Record<QueueName, number>;
  for (const hb of heartbeats) {
    for (const [queue, state] of Object.entries(hb.queues)) {
      if (queue in total && !state.paused && Number.isFinite(state.concurrency)) total[queue as QueueName] += Math.max(0, state.concurrency);
    }
  }
  return total;
}
