import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { Redis } from 'ioredis';
import { connectDb, type Db } from '../db/connect.js';
import { ALL_QUEUES, kindOfQueue, type JobKind, type QueueName } from '../jobs/queues.js';
import { createLogger, type Logger } from '../platform/logger.js';
import { openQueues, type QueueSet } from '../platform/queues.js';
import { createStorage, type Storage } from '../platform/storage/index.js';
import type { WorkerConfig } from './config.js';
import type { Processor } from './context.js';
import { buildProcessors, type ProcessorMap, type WorkerResource } from './processors/index.js';
import { reconcile } from './reconciler.js';
import { jobHandler, type RunnerDeps } from './run-job.js';

/**
 * A worker process: serves the configured queues once MySQL, Redis and
 * storage all answer (the play/pause idea of seed 000: no job starts against
 * a half-ready system), reconciles the ledger with Redis at start and
 * periodically, and on close stops taking jobs, lets active ones finish
 * within the grace period, aborts the rest (they are retried), then closes
 * queues before connections.
 */
export interface Worker {
  readonly id: string;
  start(): Promise<void>;
  close(): Promise<void>;
  readonly log: Logger;
}

export interface WorkerOptions {
  logger?: Logger;
  /** processors by kind, replacing the built ones (tests swap one in) */
  processors?: ProcessorMap;
}

export function servedQueues(config: WorkerConfig): QueueName[] {
  const names = config.WORKER_QUEUES.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of names) {
    if (!(ALL_QUEUES as readonly string[]).includes(name)) throw new Error(`WORKER_QUEUES names an unknown queue "${name}" (known: ${ALL_QUEUES.join(', ')})`);
  }
  return names as QueueName[];
}

export function concurrencyOf(config: WorkerConfig, queue: QueueName): number {
  switch (queue) {
    case 'background-removal':
      return config.CONCURRENCY_BACKGROUND_REMOVAL;
    case 'face-crop':
      return config.CONCURRENCY_FACE_CROP;
    case 'image-processing':
      return config.CONCURRENCY_IMAGE_PROCESSING;
  }
}

export function createWorker(config: WorkerConfig, options: WorkerOptions = {}): Worker {
  const id = config.WORKER_ID || `${hostname()}:${process.pid}`;
  const log = options.logger ?? createLogger(config.LOG_LEVEL, 'worker');
  const queuesServed = servedQueues(config);

  const db: Db = connectDb({ url: config.MYSQL_URL, poolSize: config.MYSQL_POOL_SIZE });
  const redis = new Redis(config.REDIS_URL, { connectionName: `imagequeue-worker:${id}`, maxRetriesPerRequest: null });
  redis.on('error', (error) => log.debug({ err: error }, 'redis connection error'));
  const queueSet: QueueSet = openQueues({
    redisUrl: config.REDIS_URL,
    prefix: config.BULL_PREFIX,
    connectionName: `imagequeue-worker:${id}`,
    attempts: 3,
    backoffMs: 2000,
    keepCompleted: 1000,
    keepFailed: 5000,
    lockDurationMs: config.LOCK_DURATION_MS,
    stalledIntervalMs: config.STALLED_INTERVAL_MS,
    maxStalledCount: config.MAX_STALLED_COUNT,
  });
  const shutdown = new AbortController();
  let storage: Storage | undefined;
  let resources: WorkerResource[] = [];
  let reconcileTimer: NodeJS.Timeout | undefined;
  let stopping = false;

  async function waitUntilReady(): Promise<Storage> {
    for (;;) {
      const problems: string[] = [];
      await sql`SELECT 1`.execute(db).catch((e: Error) => problems.push(`MySQL at ${redactUrl(config.MYSQL_URL)}: ${e.message}`));
      await redis.ping().catch((e: Error) => problems.push(`Redis at ${redactUrl(config.REDIS_URL)}: ${e.message}`));
      const s = storage ?? (await createStorage(config).catch((e: Error) => (problems.push(`storage: ${e.message}`), undefined)));
      if (s) await s.check().catch((e: Error) => problems.push(`storage (${s.driver}): ${e.message}`));
      for (const resource of resources) await resource.check?.().catch((e: Error) => problems.push(`${resource.name}: ${e.message}`));
      if (problems.length === 0 && s) return s;
      storage = s;
      log.warn({ problems }, `worker waiting for its dependencies; checking again in ${config.READY_RETRY_MS} ms`);
      if (stopping) throw new Error('worker closed before it was ready');
      await sleep(config.READY_RETRY_MS);
    }
  }

  async function runReconciler() {
    try {
      await reconcile(db, queueSet.queues, log, config.RECONCILE_GRACE_MS);
    } catch (error) {
      log.warn({ err: error }, 'reconciler run failed; will try again');
    }
  }

  return {
    id,
    log,
    async start() {
      const built = await buildProcessors(config, log, { db });
      resources = built.resources;
      const processors: ProcessorMap = { ...built.processors, ...options.processors };
      for (const queue of queuesServed) {
        if (!processors[kindOfQueue(queue)]) throw new Error(`no processor for queue ${queue}`);
      }
      storage = await waitUntilReady();
      const deps: RunnerDeps = {
        db,
        redis,
        storage,
        log,
        workerId: id,
        bullPrefix: config.BULL_PREFIX,
        fetchLimits: {
          allowPrivate: config.ALLOW_PRIVATE_SOURCE_URLS,
          maxBytes: config.SOURCE_MAX_BYTES,
          timeoutMs: config.SOURCE_TIMEOUT_MS,
          maxRedirects: config.SOURCE_MAX_REDIRECTS,
        },
        maxPixels: config.MAX_INPUT_PIXELS,
        timeoutMs: config.JOB_TIMEOUT_MS,
        chunkFields: config.RESULT_CHUNK_FIELDS,
        dbWriteRetryMs: config.DB_WRITE_RETRY_MS,
        shutdown: shutdown.signal,
      };
      await runReconciler();
      if (config.RECONCILE_INTERVAL_MS > 0) {
        reconcileTimer = setInterval(() => void runReconciler(), config.RECONCILE_INTERVAL_MS);
        reconcileTimer.unref();
      }
      for (const queue of queuesServed) {
        const processor = processors[kindOfQueue(queue)] as unknown as Processor<JobKind>;
        void queueSet.queues[queue].process(concurrencyOf(config, queue), jobHandler(deps, queue, processor));
      }
      log.info({ workerId: id, queues: queuesServed.map((q) => `${q}×${concurrencyOf(config, q)}`) }, 'worker started');
    },
    async close() {
      stopping = true;
      if (reconcileTimer) clearInterval(reconcileTimer);
      const queues = Object.values(queueSet.queues);
      // Stop taking jobs; wait for the active ones, up to the grace period.
      const drained = Promise.all(queues.map((q) => q.pause(true).catch(() => undefined)));
      const inTime = await Promise.race([drained.then(() => true), sleep(config.SHUTDOWN_GRACE_MS, false, { ref: false })]);
      if (!inTime) {
        log.warn({ graceMs: config.SHUTDOWN_GRACE_MS }, 'active jobs did not finish in time; aborting them (they will be retried)');
        shutdown.abort();
        await Promise.race([drained, sleep(5000, undefined, { ref: false })]);
      }
      await queueSet.close();
      await Promise.all(resources.map((r) => r.close().catch((e: unknown) => log.warn({ err: e }, `closing ${r.name} failed`))));
      await redis.quit().catch(() => redis.disconnect());
      await db.destroy();
      log.info('worker closed');
    },
  };
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
