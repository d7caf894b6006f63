import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { queueOf } from '../platform/queues.js';
import { liveConcurrency, readHeartbeats } from './heartbeats.js';

/**
 * `estimatedTime` for enqueue responses: how long until the new jobs are
 * done, from the jobs ahead of them (queue depth), how many run at once (the
 * live workers' concurrency from their heartbeats, the seed's defaults when
 * none beat) and how long recent jobs of the kind took (the ledger). Each
 * input is cached briefly so that estimating costs an enqueue nothing on
 * most requests; a failed read falls back instead of failing the request.
 * The fallbacks are the kind's registry entry (jobs/kinds.ts): the worker's
 * default concurrency and a typical duration.
 */
const DURATION_REFRESH_MS = 5000;
const CONCURRENCY_REFRESH_MS = 5000;

export interface EstimateSettings {
  bullPrefix: string;
  /** how long a queue depth is reused */
  depthCacheMs: number;
}

interface Cached<T> {
  at: number;
  value: Promise<T>;
}

interface EstimateState {
  depth: Map<string, Cached<number>>;
  duration: Map<string, Cached<number>>;
  concurrency: Map<string, Cached<number>>;
}

const states = new WeakMap<FastifyInstance, EstimateState>();

export interface Estimate {
  seconds: number;
  text: string;
}

export async function estimate(app: FastifyInstance, settings: EstimateSettings, kind: string, newJobs: number): Promise<Estimate> {
  const [ahead, avgMs, concurrency] = await Promise.all([queueDepth(app, settings, kind), averageDuration(app, kind), workerConcurrency(app, settings, kind)]);
  const seconds = estimateSeconds({ ahead, newJobs, concurrency, avgMs });
  return { seconds, text: formatRange(seconds) };
}

export async function estimateTime(app: FastifyInstance, settings: EstimateSettings, kind: string, newJobs: number): Promise<string> {
  return (await estimate(app, settings, kind, newJobs)).text;
}

/** Jobs ahead and the new ones drain `concurrency` at a time; the last one still takes one job's time. */
export function estimateSeconds(input: { ahead: number; newJobs: number; concurrency: number; avgMs: number }): number {
  const perJob = input.avgMs / 1000;
  const waves = Math.ceil((input.ahead + input.newJobs) / Math.max(1, input.concurrency));
  return Math.max(1, waves) * perJob;
}

export function formatRange(seconds: number): string {
  const low = Math.max(1, Math.round(seconds * 0.7));
  const high = Math.max(low + 1, Math.round(seconds * 1.5));
  if (high < 120) return `${low}-${high} seconds`;
  const lowMin = Math.max(1, Math.round(low / 60));
  return `${lowMin}-${Math.max(lowMin + 1, Math.round(high / 60))} minutes`;
}

function stateOf(app: FastifyInstance): EstimateState {
  let state = states.get(app);
  if (!state) states.set(app, (state = { depth: new Map(), duration: new Map(), concurrency: new Map() }));
  return state;
}

function cachedRead<T>(map: Map<string, Cached<T>>, kind: string, maxAgeMs: number, read: () => Promise<T>, fallback: T): Promise<T> {
  const hit = map.get(kind);
  if (hit && Date.now() - hit.at < maxAgeMs) return hit.value;
  const value = read().catch(() => {
    map.delete(kind);
    return fallback;
  });
  map.set(kind, { at: Date.now(), value });
  return value;
}

function queueDepth(app: FastifyInstance, settings: EstimateSettings, kind: string): Promise<number> {
  return cachedRead(
    stateOf(app).depth,
    kind,
    settings.depthCacheMs,
    async () => {
      const counts = await queueOf(app.queues, app.jobKinds.get(kind).queue).getJobCounts();
      return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) + ((counts as { paused?: number }).paused ?? 0);
    },
    0,
  );
}

function averageDuration(app: FastifyInstance, kind: string): Promise<number> {
  const fallback = app.jobKinds.get(kind).defaultDurationMs;
  return cachedRead(
    stateOf(app).duration,
    kind,
    DURATION_REFRESH_MS,
    async () => {
      const row = await sql<{ avg_ms: number | null }>`
        SELECT AVG(duration_ms) AS avg_ms FROM (
          SELECT duration_ms FROM jobs WHERE status = 'completed' AND updated_at > NOW(3) - INTERVAL 1 HOUR AND kind = ${kind} AND finished_at > NOW(3) - INTERVAL 1 HOUR
          ORDER BY finished_at DESC LIMIT 200) recent`.execute(app.db);
      const avg = Number(row.rows[0]?.avg_ms ?? 0);
      return avg > 0 ? avg : fallback;
    },
    fallback,
  );
}

function workerConcurrency(app: FastifyInstance, settings: EstimateSettings, kind: string): Promise<number> {
  const spec = app.jobKinds.get(kind);
  return cachedRead(
    stateOf(app).concurrency,
    kind,
    CONCURRENCY_REFRESH_MS,
    async () => {
      const live = liveConcurrency(await readHeartbeats(app.redis, settings.bullPrefix), app.jobKinds).get(spec.queue) ?? 0;
      return live > 0 ? live : spec.concurrency.default;
    },
    spec.concurrency.default,
  );
}
