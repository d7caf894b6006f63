import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import type { WorkerHeartbeat } from '../../../jobs/heartbeat.js';
import type { KindSet } from '../../../jobs/kinds.js';
import { readHeartbeats } from '../../heartbeats.js';
import { queueDepth, type QueueDepthView } from '../../queue-depth.js';
import { withTimeout } from '../../../platform/timeout.js';
import { healthSchemaFor, type HealthResponse } from './schemas.js';
import { isFullToken } from '../../plugins/auth.js';

/**
 * GET /api/worker/health. Unhealthy (503) when Redis or MySQL does not answer
 * or no worker has a live heartbeat: nothing can progress. Degraded (200)
 * when work is slowed: a queue nobody serves, a paused queue, a backlog above
 * HEALTH_BACKLOG_MAX, or rembg instances the workers report unhealthy.
 * Every check is bounded in time, so the answer comes within about a second
 * and a half even with a backing service gone.
 */
export interface WorkerRoutesOptions {
  bullPrefix: string;
  backlogMax: number;
}

const CHECK_TIMEOUT_MS = 1000;

const routes: FastifyPluginAsyncTypebox<WorkerRoutesOptions> = async (app, opts) => {
  const kinds = app.jobKinds;
  app.get('/health', { schema: healthSchemaFor(kinds), config: { auth: 'public', rateLimitTier: 'polling' } }, async (request, reply) => {
    const [admin, redis, mysql, heartbeats, ...depths] = await Promise.all([
      isAdmin(app, request),
      timed(() => app.redis.ping()),
      timed(() => sql`SELECT 1`.execute(app.db)),
      withTimeout(readHeartbeats(app.redis, opts.bullPrefix), CHECK_TIMEOUT_MS).catch(() => null),
      ...kinds.list.map((spec) => queueDepth(app, spec.kind, CHECK_TIMEOUT_MS)),
    ]);
    const body = assessHealth({
      kinds,
      redis,
      mysql,
      heartbeats,
      depths: new Map(kinds.list.map((spec, i) => [spec.kind, depths[i] ?? null])),
      backlogMax: opts.backlogMax,
      showInternals: admin,
      now: new Date(),
    });
    return reply.code(body.status === 'unhealthy' ? 503 : 200).send(body);
  });
};

export default routes;

interface Check {
  ok: boolean;
  latencyMs: number | null;
  error: string | null;
}

async function timed(probe: () => Promise<unknown>): Promise<Check> {
  const started = performance.now();
  try {
    await withTimeout(probe(), CHECK_TIMEOUT_MS);
    return { ok: true, latencyMs: Math.round(performance.now() - started), error: null };
  } catch (error) {
    return { ok: false, latencyMs: null, error: (error as Error).message.split('\n')[0]?.slice(0, 200) ?? 'unreachable' };
  }
}

/**
 * Health needs no token; an admin token (when one is sent and valid) also
 * sees what names our insides: rembg URLs and errors, worker ids, hosts and
 * pids, and the Redis and MySQL drivers' messages.
 */
async function isAdmin(app: FastifyInstance, request: FastifyRequest): Promise<boolean> {
  if (!request.headers.authorization) return false;
  try {
    const caller = await withTimeout(app.resolveCaller(request), CHECK_TIMEOUT_MS);
    return caller.vendor.role === 'admin' && isFullToken(caller);
  } catch {
    return false;
  }
}

export interface HealthInputs {
  kinds: KindSet;
  redis: Check;
  mysql: Check;
  /** null when they could not be read */
  heartbeats: WorkerHeartbeat[] | null;
  depths: ReadonlyMap<string, QueueDepthView | null>;
  backlogMax: number;
  showInternals: boolean;
  now: Date;
}

export function assessHealth(input: HealthInputs): HealthResponse {
  const unhealthy: string[] = [];
  const degraded: string[] = [];
  const heartbeats = input.heartbeats ?? [];
  // The driver's message names hosts and addresses: an admin token sees it, nobody else.
  const why = (check: Check) => (input.showInternals && check.error ? `: ${check.error}` : '');
  if (!input.redis.ok) unhealthy.push(`Redis unreachable${why(input.redis)}`);
  if (!input.mysql.ok) unhealthy.push(`MySQL unreachable${why(input.mysql)}`);
  if (input.redis.ok && input.heartbeats === null) degraded.push('worker heartbeats could not be read');
  else if (input.redis.ok && heartbeats.length === 0) unhealthy.push('no live worker (no heartbeat)');

  const queues: Record<string, HealthResponse['queues'][keyof HealthResponse['queues']]> = {};
  const sizes: Record<string, number | null> = {};
  for (const spec of input.kinds.list) {
    const name = spec.queue;
    const depth = input.depths.get(spec.kind) ?? null;
    const serving = heartbeats.filter((hb) => hb.queues[name] && !hb.queues[name].paused);
    const concurrency = serving.reduce((sum, hb) => sum + Math.max(0, hb.queues[name]?.concurrency ?? 0), 0);
    const size = depth ? depth.waiting + depth.delayed + depth.paused + depth.active : null;
    sizes[spec.healthSizeField] = size;
    queues[spec.statKey] = {
      size,
      waiting: depth?.waiting ?? null,
      active: depth?.active ?? null,
      delayed: depth?.delayed ?? null,
      isPaused: depth?.isPaused ?? null,
      workers: serving.length,
      concurrency,
    };
    if (heartbeats.length > 0 && serving.length === 0) degraded.push(`no live worker serves ${name}`);
    if (depth?.isPaused) degraded.push(`${name} is paused`);
    if (depth && depth.waiting + depth.paused > input.backlogMax)
      degraded.push(`${name} has ${depth.waiting + depth.paused} waiting jobs (more than ${input.backlogMax})`);
  }

  // Worker ids default to host:pid; without an admin token a worker is worker-N.
  const workerName = new Map(heartbeats.map((hb, i) => [hb.workerId, input.showInternals ? hb.workerId : `worker-${i + 1}`]));
  const rembg = latestRembg(heartbeats, input.showInternals, workerName);
  const unhealthyRembg = rembg.filter((r) => !r.healthy);
  if (rembg.length > 0 && unhealthyRembg.length === rembg.length) degraded.push('no healthy rembg instance: background removals are retried until one returns');
  else if (unhealthyRembg.length > 0) degraded.push(`${unhealthyRembg.length} of ${rembg.length} rembg instances unhealthy`);

  const status = unhealthy.length > 0 ? 'unhealthy' : degraded.length > 0 ? 'degraded' : 'healthy';
  return {
    status,
    ...(sizes as Pick<HealthResponse, 'bgRemovalQueueSize' | 'faceCropQueueSize' | 'imageProcessingQueueSize'>),
    timestamp: input.now.toISOString(),
    reasons: [...unhealthy, ...degraded],
    redis: input.showInternals ? input.redis : { ...input.redis, error: null },
    mysql: input.showInternals ? input.mysql : { ...input.mysql, error: null },
    queues: queues as HealthResponse['queues'],
    workers: heartbeats.map((hb) => ({
      name: workerName.get(hb.workerId) ?? 'worker',
      ...(input.showInternals ? { workerId: hb.workerId, host: hb.host, pid: hb.pid } : {}),
      startedAt: hb.startedAt,
      lastBeat: hb.lastBeat,
      ageMs: Math.max(0, input.now.getTime() - Date.parse(hb.lastBeat)),
      queues: hb.queues,
    })),
    rembg,
  };
}

/** Each rembg instance once, as the most recent heartbeat reports it. */
function latestRembg(heartbeats: readonly WorkerHeartbeat[], showInternals: boolean, workerName: ReadonlyMap<string, string>): HealthResponse['rembg'] {
  const byUrl = new Map<string, { state: WorkerHeartbeat['rembg'][number]; at: number; workerId: string }>();
  for (const hb of heartbeats) {
    const at = Date.parse(hb.lastBeat);
    for (const state of hb.rembg) {
      const seen = byUrl.get(state.url);
      if (!seen || seen.at < at) byUrl.set(state.url, { state, at, workerId: hb.workerId });
    }
  }
  return [...byUrl.values()]
    .sort((a, b) => a.state.url.localeCompare(b.state.url))
    .map(({ state, workerId }, i) => ({
      name: `rembg-${i + 1}`,
      ...(showInternals ? { url: state.url, lastError: state.lastError } : {}),
      healthy: state.healthy,
      circuit: state.circuit,
      inFlight: state.inFlight,
      latencyMs: state.latencyMs,
      reportedBy: workerName.get(workerId) ?? 'worker',
    }));
}
