import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { QUEUE_NAMES, type JobKind } from '../jobs/queues.js';

/**
 * `estimatedTime` for enqueue responses: how long until the new jobs are
 * done, from the jobs ahead of them, the worker concurrency and how long
 * recent jobs of the kind took. Recent durations are read from the ledger at
 * most every few seconds.
 */
const DEFAULT_DURATION_MS: Record<JobKind, number> = { 'remove-bg': 1500, 'face-crop': 1000, process: 300 };
const DEFAULT_CONCURRENCY: Record<JobKind, number> = { 'remove-bg': 3, 'face-crop': 3, process: 5 };
const REFRESH_MS = 5000;

interface Sample {
  at: number;
  avgMs: number;
}

const samples = new WeakMap<FastifyInstance, Map<JobKind, Sample>>();

export async function estimateTime(app: FastifyInstance, kind: JobKind, newJobs: number, concurrency = DEFAULT_CONCURRENCY[kind]): Promise<string> {
  const [ahead, avgMs] = await Promise.all([jobsAhead(app, kind), averageDuration(app, kind)]);
  const seconds = ((ahead + newJobs) / Math.max(1, concurrency)) * (avgMs / 1000) + avgMs / 1000;
  return formatRange(seconds);
}

async function jobsAhead(app: FastifyInstance, kind: JobKind): Promise<number> {
  const counts = await app.queues[QUEUE_NAMES[kind]].getJobCounts();
  return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0);
}

async function averageDuration(app: FastifyInstance, kind: JobKind): Promise<number> {
  let perKind = samples.get(app);
  if (!perKind) samples.set(app, (perKind = new Map()));
  const cached = perKind.get(kind);
  if (cached && Date.now() - cached.at < REFRESH_MS) return cached.avgMs;
  const row = await sql<{ avg_ms: number | null }>`
    SELECT AVG(duration_ms) AS avg_ms FROM (
      SELECT duration_ms FROM jobs WHERE status = 'completed' AND kind = ${kind} AND finished_at > NOW(3) - INTERVAL 1 HOUR
      ORDER BY finished_at DESC LIMIT 200) recent`.execute(app.db);
  const avg = Number(row.rows[0]?.avg_ms ?? 0);
  const avgMs = avg > 0 ? avg : DEFAULT_DURATION_MS[kind];
  perKind.set(kind, { at: Date.now(), avgMs });
  return avgMs;
}

function formatRange(seconds: number): string {
  const low = Math.max(1, Math.round(seconds * 0.7));
  const high = Math.max(low + 1, Math.round(seconds * 1.5));
  if (high < 120) return `${low}-${high} seconds`;
  return `${Math.round(low / 60)}-${Math.max(Math.round(low / 60) + 1, Math.round(high / 60))} minutes`;
}
