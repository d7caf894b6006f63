import type { Redis } from 'ioredis';
import { HEARTBEAT_TTL_MS, heartbeatPattern, type WorkerHeartbeat } from '../jobs/heartbeat.js';
import type { KindSet } from '../jobs/kinds.js';

/**
 * The API's view of the workers, from the heartbeat keys they write
 * (jobs/heartbeat.ts). A worker is live while its key exists and its last
 * beat is recent; `estimatedTime` and `/api/worker/health` both read this.
 */
const STALE_AFTER_MS = 2 * HEARTBEAT_TTL_MS;

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

/** Jobs of each queue the live workers run at once (paused queues serve nothing); a queue of `kinds` nobody serves is 0. */
export function liveConcurrency(heartbeats: readonly WorkerHeartbeat[], kinds: KindSet): Map<string, number> {
  const total = new Map(kinds.queues.map((q) => [q, 0]));
  for (const hb of heartbeats) {
    for (const [queue, state] of Object.entries(hb.queues)) {
      const sum = total.get(queue);
      if (sum !== undefined && !state.paused && Number.isFinite(state.concurrency)) total.set(queue, sum + Math.max(0, state.concurrency));
    }
  }
  return total;
}
