import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TTL_MS, heartbeatKey, type WorkerHeartbeat } from '../jobs/heartbeat.js';
import type { Logger } from '../platform/logger.js';

/**
 * Writes this worker's heartbeat (jobs/heartbeat.ts) every few seconds with a
 * TTL of a few beats, so `/api/worker/health` sees live workers only: a
 * worker that dies simply expires. Closing deletes the key at once.
 */
export interface HeartbeatSource {
  queues(): Promise<WorkerHeartbeat['queues']>;
  rembg(): WorkerHeartbeat['rembg'];
  /** called after each beat that reached Redis (metrics count them) */
  written?(): void;
}

export interface Heartbeat {
  /** writes one beat now (also the first, at start) */
  beat(): Promise<void>;
  stop(): Promise<void>;
}

export function startHeartbeat(
  redis: Redis,
  prefix: string,
  workerId: string,
  source: HeartbeatSource,
  log: Logger,
  intervalMs = HEARTBEAT_INTERVAL_MS,
): Heartbeat {
  const key = heartbeatKey(prefix, workerId);
  const startedAt = new Date().toISOString();
  const ttlMs = Math.max(HEARTBEAT_TTL_MS, 3 * intervalMs);
  let stopped = false;
  let pending: Promise<void> = Promise.resolve();

  async function write(): Promise<void> {
    const beat: WorkerHeartbeat = {
      workerId,
      host: hostname(),
      pid: process.pid,
      startedAt,
      lastBeat: new Date().toISOString(),
      queues: await source.queues(),
      rembg: source.rembg(),
    };
    if (stopped) return;
    await redis.set(key, JSON.stringify(beat), 'PX', ttlMs);
    source.written?.();
  }

  const beat = () => {
    pending = write().catch((error: unknown) => log.debug({ err: error }, 'heartbeat not written'));
    return pending;
  };
  const timer = setInterval(() => void beat(), intervalMs);
  timer.unref();
  return {
    beat,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await pending;
      await redis.del(key).catch(() => undefined);
    },
  };
}
