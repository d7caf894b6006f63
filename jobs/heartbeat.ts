/**
 * Worker heartbeats: each worker process writes one Redis key every few
 * seconds with a TTL of a few beats; `/api/worker/health` reads them. A worker
 * whose key expired is gone.
 */
export interface RembgInstanceState {
  url: string;
  /** closed = healthy, open = failing (not used), half-open = on probation */
  circuit: 'closed' | 'open' | 'half-open';
  healthy: boolean;
  inFlight: number;
  lastError: string | null;
  latencyMs: number | null;
}

export interface WorkerHeartbeat {
  workerId: string;
  host: string;
  pid: number;
  startedAt: string;
  lastBeat: string;
  /** per served queue: concurrency and jobs running now */
  queues: Record<string, { concurrency: number; active: number; paused: boolean }>;
  rembg: RembgInstanceState[];
}

export const HEARTBEAT_INTERVAL_MS = 5_000;
export const HEARTBEAT_TTL_MS = 3 * HEARTBEAT_INTERVAL_MS;

export function heartbeatKey(prefix: string, workerId: string): string {
  return `${prefix}:workers:${workerId}`;
}

export function heartbeatPattern(prefix: string): string {
  return `${prefix}:workers:*`;
}
