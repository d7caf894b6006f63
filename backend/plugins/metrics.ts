import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { sql } from 'kysely';
import { countDeadLetters } from '../../db/repos/dead-letters.js';
import { ALL_QUEUES } from '../../jobs/queues.js';
import { VENDOR_TIERS, type Tier } from '../plans.js';
import { readHeartbeats } from '../heartbeats.js';
import { withTimeout } from '../../platform/timeout.js';
import { createRegistry, HTTP_BUCKETS, METRIC_PREFIX, metricsAuthorized } from '../../platform/metrics.js';

/**
 * `GET /metrics` (Prometheus text format) for the API process: request
 * latency by route and status, rate-limit rejections by tier, and, read at
 * scrape time, the depth of every queue by state, dead letters, live workers
 * and their heartbeat age, and whether Redis and MySQL answered. Open unless
 * METRICS_TOKEN is set, then it needs `Authorization: Bearer <token>`.
 *
 * Queue depths, dead letters and heartbeats describe the whole deployment:
 * every API process reports the same numbers, so dashboards take `max`
 * over instances, not `sum`.
 */
declare module 'fastify' {
  interface FastifyInstance {
    metrics: ApiMetrics;
  }
}

export interface ApiMetrics {
  registry: Registry;
  /** counts one request refused by the rate limiter */
  rateLimited(tier: Tier | 'admin'): void;
}

export interface MetricsPluginOptions {
  token: string;
  bullPrefix: string;
}

/** Each scrape's reads of Redis and MySQL give up after this long; the series they feed are then left out. */
const SCRAPE_READ_TIMEOUT_MS = 1500;

export default fp<MetricsPluginOptions>(
  async (app, opts) => {
    const registry = createRegistry('api');
    const httpDuration = new Histogram({
      name: `${METRIC_PREFIX}http_request_duration_seconds`,
      help: 'API request latency, by route pattern and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: HTTP_BUCKETS,
      registers: [registry],
    });
    const rateLimitRejections = new Counter({
      name: `${METRIC_PREFIX}rate_limit_rejections_total`,
      help: 'requests refused with 429 by the rate limiter, by tier',
      labelNames: ['tier'] as const,
      registers: [registry],
    });
    const queueJobs = new Gauge({
      name: `${METRIC_PREFIX}queue_jobs`,
      help: 'jobs in each Bull queue by state, read at scrape time',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
    });
    const queuePaused = new Gauge({
      name: `${METRIC_PREFIX}queue_paused`,
      help: '1 while a queue is paused for every worker',
      labelNames: ['queue'] as const,
      registers: [registry],
    });
    const deadLetters = new Gauge({
      name: `${METRIC_PREFIX}dead_letters`,
      help: 'jobs on the dead-letter list waiting for an operator, by queue',
      labelNames: ['queue'] as const,
      registers: [registry],
    });
    const workersLive = new Gauge({
      name: `${METRIC_PREFIX}workers_live`,
      help: 'worker processes with a live heartbeat',
      registers: [registry],
    });
    const heartbeatAge = new Gauge({
      name: `${METRIC_PREFIX}worker_heartbeat_age_seconds`,
      help: 'seconds since each live worker last wrote its heartbeat',
      labelNames: ['worker'] as const,
      registers: [registry],
    });
    const backendUp = new Gauge({
      name: `${METRIC_PREFIX}backend_up`,
      help: '1 when the backing service answered during the last scrape',
      labelNames: ['backend'] as const,
      registers: [registry],
    });

    // Every tier's series exists from the start, so a rate() over it works before the first rejection.
    for (const tier of ['global', ...VENDOR_TIERS]) rateLimitRejections.inc({ tier }, 0);

    app.decorate('metrics', {
      registry,
      rateLimited: (tier: Tier | 'admin') => rateLimitRejections.inc({ tier }),
    } satisfies ApiMetrics);

    app.addHook('onResponse', async (request, reply) => {
      httpDuration.observe(
        { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    });

    async function refresh(): Promise<void> {
      const now = Date.now();
      const [redisOk, mysqlOk] = await Promise.all([
        (async () => {
          const depths = await withTimeout(
            Promise.all(ALL_QUEUES.map(async (queue) => [queue, await app.queues[queue].getJobCounts(), await app.queues[queue].isPaused()] as const)),
            SCRAPE_READ_TIMEOUT_MS,
          );
          const beats = await withTimeout(readHeartbeats(app.redis, opts.bullPrefix, now), SCRAPE_READ_TIMEOUT_MS);
          queueJobs.reset();
          for (const [queue, counts, paused] of depths) {
            for (const [state, n] of Object.entries(counts as unknown as Record<string, number>)) queueJobs.set({ queue, state }, n);
            queuePaused.set({ queue }, paused ? 1 : 0);
          }
          workersLive.set(beats.length);
          heartbeatAge.reset();
          for (const hb of beats) heartbeatAge.set({ worker: hb.workerId }, Math.max(0, (now - Date.parse(hb.lastBeat)) / 1000));
          return true;
        })().catch(() => {
          queueJobs.reset();
          heartbeatAge.reset();
          return false;
        }),
        (async () => {
          await withTimeout(sql`SELECT 1`.execute(app.db), SCRAPE_READ_TIMEOUT_MS);
          const dead = await withTimeout(countDeadLetters(app.db), SCRAPE_READ_TIMEOUT_MS);
          for (const queue of ALL_QUEUES) deadLetters.set({ queue }, dead[queue] ?? 0);
          return true;
        })().catch(() => {
          deadLetters.reset();
          return false;
        }),
      ]);
      backendUp.set({ backend: 'redis' }, redisOk ? 1 : 0);
      backendUp.set({ backend: 'mysql' }, mysqlOk ? 1 : 0);
    }

    // Liveness for orchestrators (docker compose, Kubernetes): the process
    // answers. Readiness of the whole system is /api/worker/health.
    app.get('/healthz', { schema: { hide: true }, logLevel: 'warn', config: { auth: 'public' } }, async (_request, reply) =>
      reply.type('text/plain').send('ok\n'),
    );

    // Public to the API's auth: METRICS_TOKEN (not a vendor token) guards it.
    app.get('/metrics', { schema: { hide: true }, logLevel: 'warn', config: { auth: 'public' } }, async (request, reply) => {
      if (!metricsAuthorized(opts.token, request.headers.authorization)) {
        return reply.code(401).header('www-authenticate', 'Bearer').type('text/plain').send('unauthorized\n');
      }
      await refresh();
      return reply.type(registry.contentType).send(await registry.metrics());
    });
  },
  { name: 'metrics', dependencies: ['route-auth-check'] },
);
