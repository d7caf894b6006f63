import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type Bull from 'bull';
import { sql } from 'kysely';
import type { Redis } from 'ioredis';
import { connectDb, type Db } from '../db/connect.js';
import { findJob, recordDeadRun, type Ledger } from '../db/repos/jobs.js';
import { LedgerTransactions } from '../db/multi-statement.js';
import type { RembgInstanceState, WorkerHeartbeat } from '../jobs/heartbeat.js';
import type { JobPayload } from '../jobs/payloads.js';
import { kindSet, type AnyJobKind, type KindSet } from '../jobs/kinds.js';
import { parseHostAllowlist } from '../platform/address-guard.js';
import { createLogger, type Logger } from '../platform/logger.js';
import { openQueues, queueOf, type QueueSet } from '../platform/queues.js';
import { createRedis } from '../platform/redis.js';
import { requeueJob } from '../platform/requeue.js';
import { createStorage, type Storage } from '../platform/storage/index.js';
import type { WorkerConfig } from './config.js';
import type { AnyProcessor } from './context.js';
import { publishJobEvent } from './events.js';
import { startHeartbeat, type Heartbeat } from './heartbeat.js';
import { buildProcessors, type ExtraProcessors, type WorkerResource } from './processors/index.js';
import { reconcile, reconcileLockKey } from './reconciler.js';
import { redisLock } from '../platform/redis-lock.js';
import { withTimeout } from '../platform/timeout.js';
import { DEAD_RUN_MESSAGE, jobHandler, type RunnerDeps } from './run-job.js';
import { createRunGate } from './run-gate.js';
import { listenForCancellations, type Cancellations } from './cancellations.js';
import { collectGarbage } from '../platform/garbage.js';
import { retentionLockKey, runRetention, type RetentionRun } from './retention.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';
import { startMetricsServer, type MetricsServer } from '../platform/metrics.js';
import { startWebhooks, type Webhooks } from './webhooks/index.js';
import { composeUnits, type Unit } from './units.js';

/**
 * A worker process: serves the configured queues once MySQL, Redis and
 * storage all answer (the play/pause idea of seed 000: no job starts against
 * a half-ready system), reconciles the ledger with Redis at start and
 * periodically, beats a heartbeat into Redis, and on close stops taking jobs,
 * lets active ones finish within the grace period, aborts the rest (they are
 * retried, the attempt refunded), then closes queues before connections.
 */
export interface Worker {
  readonly id: string;
  start(): Promise<void>;
  close(): Promise<void>;
  /** jobs running now, per served queue */
  active(): Record<string, number>;
  /** this worker's Prometheus registry (served on WORKER_METRICS_PORT) */
  readonly metrics: WorkerMetrics;
  /** applies retention now (one run at a time across workers); tests call it instead of waiting for RETENTION_INTERVAL_MS */
  applyRetention(): Promise<RetentionRun>;
  /** the port /metrics listens on, or null when WORKER_METRICS_PORT is 0 (or before start) */
  metricsPort(): number | null;
  readonly log: Logger;
}

export interface WorkerOptions {
  logger?: Logger;
  /** processors by kind, replacing the built ones (tests swap one in) or for `kinds` */
  processors?: ExtraProcessors;
  /** job kinds served beside the registry's (jobs/kinds.ts); each needs a processor in `processors` */
  kinds?: readonly AnyJobKind[];
  /** heartbeat period (tests shorten it) */
  heartbeatIntervalMs?: number;
}

/** Bull's own message for a job whose workers kept dying (queue.js, moveUnlockedJobsToWait). */
const STALLED_LIMIT_MESSAGE = 'job stalled more than allowable limit';

/** The kinds of the queues WORKER_QUEUES names, in its order. */
export function servedKinds(config: WorkerConfig, kinds: KindSet): AnyJobKind[] {
  const names = config.WORKER_QUEUES.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return names.map((name) => {
    const spec = kinds.byQueue(name);
    if (!spec) throw new Error(`WORKER_QUEUES names an unknown queue "${name}" (known: ${kinds.queues.join(', ')})`);
    return spec;
  });
}

/** Jobs of a kind run at once: its CONCURRENCY_* variable, or the registry default for a kind without one in the config. */
export function concurrencyOf(config: WorkerConfig, spec: AnyJobKind): number {
  const configured = (config as unknown as Record<string, unknown>)[spec.concurrency.variable];
  return typeof configured === 'number' ? configured : spec.concurrency.default;
}

export function createWorker(config: WorkerConfig, options: WorkerOptions = {}): Worker {
  const id = config.WORKER_ID || `${hostname()}:${process.pid}`;
  const log = (options.logger ?? createLogger(config.LOG_LEVEL, 'worker')).child({ workerId: id });
  const kinds = kindSet(options.kinds);
  const kindsServed = servedKinds(config, kinds);
  const queuesServed = kindsServed.map((spec) => spec.queue);
  const concurrency = Object.fromEntries(kindsServed.map((spec) => [spec.queue, concurrencyOf(config, spec)])) as Record<string, number>;
  const allowedPrivateHosts = allowlistOf(config);

  const db: Db = connectDb({ url: config.MYSQL_URL, poolSize: config.MYSQL_POOL_SIZE });
  // Attempts start and complete through multi-statement transactions (db/multi-statement.ts): one connection per running job.
  const ledger: Ledger = { db, multi: new LedgerTransactions(config.MYSQL_URL, config.MYSQL_POOL_SIZE) };
  const redis: Redis = createRedis(config.REDIS_URL, { connectionName: `imagequeue-worker:${id}`, maxRetriesPerRequest: null });
  redis.on('error', (error) => log.debug({ err: error }, 'redis connection error'));
  const queueSet: QueueSet = openQueues({
    redisUrl: config.REDIS_URL,
    prefix: config.BULL_PREFIX,
    connectionName: `imagequeue-worker:${id}`,
    // Jobs this worker adds (the reconciler's) carry their own attempts.
    attempts: 3,
    backoffMs: config.JOB_BACKOFF_MS,
    keepCompleted: config.QUEUE_KEEP_COMPLETED,
    keepFailed: config.QUEUE_KEEP_FAILED,
    lockDurationMs: config.LOCK_DURATION_MS,
    stalledIntervalMs: config.STALLED_INTERVAL_MS,
    maxStalledCount: config.MAX_STALLED_COUNT,
    kinds,
  });
  for (const queue of Object.values(queueSet.queues)) queue.on('error', (error) => log.warn({ err: error, queue: queue.name }, 'queue error'));
  /** aborted when active jobs must stop (past the shutdown grace period) */
  const shutdown = new AbortController();
  /** aborted when the worker starts closing: waits and periodic runs stop */
  const closingSignal = new AbortController();
  const activeJobs: Record<string, number> = Object.fromEntries(queuesServed.map((q) => [q, 0]));
  const metrics = createWorkerMetrics(queuesServed);
  const stopping = () => closingSignal.signal.aborted;

  /** A timer that runs `run` every `everyMs` (none when 0); stopped first on close. */
  function periodic(name: string, everyMs: number, run: () => Promise<unknown>, first?: () => Promise<unknown>): Unit {
    let timer: NodeJS.Timeout | undefined;
    return {
      name,
      async start() {
        await first?.();
        if (everyMs > 0 && !stopping()) {
          timer = setInterval(() => void run(), everyMs);
          timer.unref();
        }
      },
      stop() {
        if (timer) clearInterval(timer);
      },
    };
  }

  // --- the units, each owning its state ---

  const metricsUnit = (() => {
    let server: MetricsServer | undefined;
    return {
      name: 'metrics server',
      port: () => server?.port ?? null,
      async start() {
        // Up before the dependencies are: a worker waiting for MySQL or Redis is worth seeing.
        if (config.WORKER_METRICS_PORT <= 0) return;
        server = await startMetricsServer(metrics.registry, {
          host: config.WORKER_METRICS_HOST,
          port: config.WORKER_METRICS_PORT,
          token: config.METRICS_TOKEN,
          // A Redis that does not answer must not hold the scrape: the paused flags then come from this process alone.
          beforeScrape: async () => metrics.refresh({ queues: await withTimeout(queueStates(), 1000, { orElse: localQueueStates() }), rembg: rembgStates() }),
        });
      },
      close: () => server?.close(),
    };
  })();

  const processorsUnit = (() => {
    let resources: WorkerResource[] = [];
    let processors: Record<string, AnyProcessor | undefined> = {};
    return {
      name: 'processors',
      resources: () => resources,
      of: (kind: string) => processors[kind] as AnyProcessor,
      async start() {
        const built = await buildProcessors(config, log, { db }, kinds);
        resources = built.resources;
        processors = { ...built.processors, ...options.processors };
        for (const spec of kindsServed) {
          if (!processors[spec.kind]) throw new Error(`no processor for queue ${spec.queue} (kind ${spec.kind})`);
        }
      },
      close: () => Promise.all(resources.map((r) => r.close().catch((e: unknown) => log.warn({ err: e }, `closing ${r.name} failed`)))).then(() => undefined),
    };
  })();

  /** Waits until MySQL, Redis, storage and the processors' resources all answer (seed 000's play/pause). */
  const readiness = (() => {
    let storage: Storage | undefined;
    const ready = (): Storage => {
      if (!storage) throw new Error('the worker is not ready');
      return storage;
    };
    return {
      name: 'readiness',
      storage: ready,
      async start() {
        for (;;) {
          const problems: string[] = [];
          await sql`SELECT 1`.execute(db).catch((e: Error) => problems.push(`MySQL at ${redactUrl(config.MYSQL_URL)}: ${e.message}`));
          // The worker's connection queues commands while Redis is away; a ping that does not answer soon is a problem too.
          await withTimeout(redis.ping(), 2000).catch((e: Error) => problems.push(`Redis at ${redactUrl(config.REDIS_URL)}: ${e.message}`));
          const s = storage ?? (await createStorage(config).catch((e: Error) => (problems.push(`storage: ${e.message}`), undefined)));
          if (s) await s.check().catch((e: Error) => problems.push(`storage (${s.driver}): ${e.message}`));
          for (const resource of processorsUnit.resources()) await resource.check?.().catch((e: Error) => problems.push(`${resource.name}: ${e.message}`));
          storage = s;
          if (problems.length === 0 && s) return;
          log.warn({ problems }, `worker waiting for its dependencies; checking again in ${config.READY_RETRY_MS} ms`);
          if (stopping()) throw new Error('worker closed before it was ready');
          await sleep(config.READY_RETRY_MS, undefined, { signal: closingSignal.signal }).catch(() => undefined);
          if (stopping()) throw new Error('worker closed before it was ready');
        }
      },
    };
  })();

  const cancellationsUnit = (() => {
    let cancellations: Cancellations | undefined;
    return {
      name: 'cancellations',
      get: () => cancellations,
      start() {
        cancellations = listenForCancellations(config.REDIS_URL, config.BULL_PREFIX, shutdown.signal, log);
      },
      close: () => cancellations?.close(),
    };
  })();

  // Renewed while a run lasts; a worker that dies mid-run blocks the others for at most the TTL.
  const reconcileLock = redisLock(redis, reconcileLockKey(config.BULL_PREFIX), { ttlMs: 30_000 });
  async function runReconciler() {
    try {
      await reconcile(db, queueSet.queues, kinds, log, config.RECONCILE_GRACE_MS, reconcileLock);
    } catch (error) {
      log.warn({ err: error }, 'reconciler run failed; will try again');
    }
  }
  /** At start, then every RECONCILE_INTERVAL_MS. */
  const reconciler = periodic('reconciler', config.RECONCILE_INTERVAL_MS, runReconciler, runReconciler);

  /** Removes files whose rows were deleted (platform/garbage.ts); one run at a time in this process. */
  const sweep = (() => {
    let sweeping = false;
    return periodic('sweep', config.SWEEP_INTERVAL_MS, async () => {
      if (sweeping) return;
      sweeping = true;
      try {
        await collectGarbage(db, readiness.storage(), config.SWEEP_BATCH, { log, signal: shutdown.signal });
      } catch (error) {
        log.warn({ err: error }, 'sweep run failed; will try again');
      } finally {
        sweeping = false;
      }
    });
  })();

  /** Removes expired data (worker/retention.ts); one run at a time in this process, and across workers by the lock. */
  const retention = (() => {
    let retaining: Promise<RetentionRun> | null = null;
    const apply = (): Promise<RetentionRun> => {
      retaining ??= runRetention(
        db,
        redis,
        {
          RETENTION_STANDARD: config.RETENTION_STANDARD,
          RETENTION_UNLIMITED: config.RETENTION_UNLIMITED,
          batch: config.RETENTION_BATCH,
          lockKey: retentionLockKey(config.BULL_PREFIX),
          lockTtlMs: 60_000,
        },
        log,
        // A closing worker stops between batches; the next run goes on where this one stopped.
        closingSignal.signal,
      ).finally(() => {
        retaining = null;
      });
      return retaining;
    };
    const timer = periodic('retention', config.RETENTION_INTERVAL_MS, () =>
      apply().catch((error: unknown) => log.warn({ err: error }, 'retention run failed; will try again')),
    );
    return { ...timer, apply, close: async () => void (await retaining?.catch(() => undefined)) };
  })();

  /**
   * Bull gives up on a job whose workers died mid-attempt MAX_STALLED_COUNT
   * times. The ledger records it as a dead run (db/repos/jobs.ts,
   * recordDeadRun: free the first time, a failed attempt once the job ran
   * alone) and the job is queued again or dead-lettered, so a poison job
   * cannot cycle forever and a job that only shared its worker loses nothing.
   */
  const stalledHandler: Unit = {
    name: 'stalled handler',
    start() {
      for (const spec of kindsServed) {
        queueOf(queueSet.queues, spec.queue).on('failed', (job: Bull.Job<JobPayload> | null, error: Error) => {
          if (error?.message === STALLED_LIMIT_MESSAGE) void onStalledLimit(spec.queue, job);
        });
      }
    },
  };
  async function onStalledLimit(queue: string, job: Bull.Job<JobPayload> | null) {
    if (!job) return;
    const jobId = String(job.id);
    try {
      const status = await recordDeadRun(db, jobId, DEAD_RUN_MESSAGE);
      if (status) {
        log.error({ jobId, vendorId: job.data.vendorId, queue, status }, 'job stalled more than the allowed number of times');
        publishJobEvent(redis, config.BULL_PREFIX, {
          jobId,
          vendorId: job.data.vendorId,
          batchId: job.data.batchId,
          kind: job.data.kind,
          type: status,
          error: { code: 'JOB_STALLED', message: DEAD_RUN_MESSAGE },
        });
      }
      // Queued in the ledger (now, or already: it was waiting its turn when its worker died): Bull must carry it again.
      const row = await findJob(db, jobId);
      if (row?.status === 'queued') await requeueJob(queueSet.queues, row, kinds);
    } catch (error) {
      log.warn({ err: error, jobId, vendorId: job.data.vendorId, queue }, 'could not record a stalled job; the reconciler will pick it up');
    }
  }

  /** Serves the queues; on close stops taking jobs, lets active ones finish within the grace period, aborts the rest. */
  const queueRunner: Unit = {
    name: 'queue runner',
    start() {
      const deps: RunnerDeps = {
        db,
        ledger,
        redis,
        storage: readiness.storage(),
        log,
        workerId: id,
        bullPrefix: config.BULL_PREFIX,
        fetchLimits: {
          allowPrivate: config.ALLOW_PRIVATE_SOURCE_URLS,
          allowedPrivateHosts,
          maxBytes: config.SOURCE_MAX_BYTES,
          timeoutMs: config.SOURCE_TIMEOUT_MS,
          maxRedirects: config.SOURCE_MAX_REDIRECTS,
        },
        maxPixels: config.MAX_INPUT_PIXELS,
        timeoutMs: config.JOB_TIMEOUT_MS,
        chunkFields: config.RESULT_CHUNK_FIELDS,
        dbWriteRetryMs: config.DB_WRITE_RETRY_MS,
        shutdown: shutdown.signal,
        metrics,
        ...(cancellationsUnit.get() ? { cancellations: cancellationsUnit.get() } : {}),
        gate: createRunGate(),
      };
      for (const spec of kindsServed) {
        const queue = spec.queue;
        const handle = jobHandler(deps, spec, processorsUnit.of(spec.kind));
        void queueOf(queueSet.queues, queue)
          .process(concurrencyOf(config, spec), async (job: Bull.Job<JobPayload>) => {
            activeJobs[queue] = (activeJobs[queue] ?? 0) + 1;
            try {
              return await handle(job);
            } finally {
              activeJobs[queue] = (activeJobs[queue] ?? 1) - 1;
            }
          })
          .catch((error: unknown) => log.error({ err: error, queue }, 'queue stopped processing'));
      }
    },
    async close() {
      // The heartbeat says paused from now on.
      void heartbeat.beat();
      const drained = Promise.all(Object.values(queueSet.queues).map((q) => q.pause(true).catch(() => undefined)));
      const inTime = await withTimeout(
        drained.then(() => true),
        config.SHUTDOWN_GRACE_MS,
        { orElse: false },
      );
      if (!inTime) {
        log.warn({ graceMs: config.SHUTDOWN_GRACE_MS, active: activeJobs }, 'active jobs did not finish in time; aborting them (they will be retried)');
        shutdown.abort();
        await withTimeout(drained, 15_000, { orElse: undefined });
      }
    },
  };

  const webhooksUnit = (() => {
    let webhooks: Webhooks | undefined;
    return {
      name: 'webhooks',
      start() {
        if (!config.WEBHOOK_DELIVERY) return;
        webhooks = startWebhooks(db, redis, log, {
          redisUrl: config.REDIS_URL,
          prefix: config.BULL_PREFIX,
          workerId: id,
          attempts: config.WEBHOOK_ATTEMPTS,
          backoffMs: config.WEBHOOK_BACKOFF_MS,
          concurrency: config.WEBHOOK_CONCURRENCY,
          vendorConcurrency: config.WEBHOOK_VENDOR_CONCURRENCY,
          outboxIntervalMs: config.WEBHOOK_OUTBOX_INTERVAL_MS,
          policy: {
            allowPrivate: config.ALLOW_PRIVATE_WEBHOOK_URLS,
            allowedPrivateHosts: webhookAllowlistOf(config),
            allowHttp: config.ALLOW_HTTP_WEBHOOKS,
            timeoutMs: config.WEBHOOK_TIMEOUT_MS,
          },
        });
      },
      close: () => webhooks?.close(),
    };
  })();

  const heartbeat = (() => {
    let beating: Heartbeat | undefined;
    return {
      name: 'heartbeat',
      beat: () => beating?.beat() ?? Promise.resolve(),
      async start() {
        beating = startHeartbeat(
          redis,
          config.BULL_PREFIX,
          id,
          { queues: queueStates, rembg: rembgStates, written: () => metrics.heartbeat() },
          log,
          options.heartbeatIntervalMs,
        );
        await beating.beat();
      },
      close: () => beating?.stop(),
    };
  })();

  /** The connections under everything: closed last, queues before the connections they use. */
  const readinessStop: Unit = { name: 'closing signal', stop: () => closingSignal.abort() };
  const queuesUnit: Unit = { name: 'queues', close: () => queueSet.close() };
  const connections: Unit = {
    name: 'connections',
    async close() {
      await redis.quit().catch(() => redis.disconnect());
      await ledger.multi.close();
      await db.destroy();
    },
  };

  const units = composeUnits(
    [metricsUnit, processorsUnit, readiness, cancellationsUnit, reconciler, sweep, retention, stalledHandler, queueRunner, webhooksUnit, heartbeat],
    [
      readinessStop,
      reconciler,
      sweep,
      queueRunner,
      heartbeat,
      retention,
      webhooksUnit,
      cancellationsUnit,
      stalledHandler,
      readiness,
      queuesUnit,
      processorsUnit,
      connections,
      metricsUnit,
    ],
    log,
  );

  async function queueStates(): Promise<WorkerHeartbeat['queues']> {
    const entries = await Promise.all(
      queuesServed.map(async (queue) => {
        const globallyPaused = await queueOf(queueSet.queues, queue)
          .isPaused()
          .catch(() => false);
        return [queue, { concurrency: concurrency[queue] ?? 0, active: activeJobs[queue] ?? 0, paused: stopping() || globallyPaused }] as const;
      }),
    );
    return Object.fromEntries(entries);
  }

  function localQueueStates(): WorkerHeartbeat['queues'] {
    return Object.fromEntries(
      queuesServed.map((queue) => [queue, { concurrency: concurrency[queue] ?? 0, active: activeJobs[queue] ?? 0, paused: stopping() }]),
    );
  }

  function rembgStates(): RembgInstanceState[] {
    return processorsUnit.resources().flatMap((r) => r.rembgInstances?.() ?? []);
  }

  let closing: Promise<void> | undefined;
  return {
    id,
    log,
    active: () => ({ ...activeJobs }),
    metrics,
    metricsPort: () => metricsUnit.port(),
    applyRetention: () => retention.apply(),
    async start() {
      await units.start();
      log.info({ queues: queuesServed.map((q) => `${q}×${concurrency[q]}`) }, 'worker started');
    },
    close() {
      closing ??= units.close().then(() => log.info('worker closed'));
      return closing;
    },
  };
}

function allowlistOf(config: WorkerConfig): string[] {
  try {
    return parseHostAllowlist(config.SOURCE_ALLOWED_PRIVATE_HOSTS);
  } catch (error) {
    throw new Error(`SOURCE_ALLOWED_PRIVATE_HOSTS: ${(error as Error).message}`, { cause: error });
  }
}

function webhookAllowlistOf(config: WorkerConfig): string[] {
  try {
    return parseHostAllowlist(config.WEBHOOK_ALLOWED_PRIVATE_HOSTS);
  } catch (error) {
    throw new Error(`WEBHOOK_ALLOWED_PRIVATE_HOSTS: ${(error as Error).message}`, { cause: error });
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
