import { Type, type Static, type TInteger } from '@sinclair/typebox';
import { BUILTIN_KINDS, type ConcurrencyVariable } from '../jobs/kinds.js';
import { env, loadConfig, type LoadOptions } from '../platform/config.js';
import {
  LogSection,
  MetricsSection,
  MysqlSection,
  RedisSection,
  RetentionSection,
  SourceSection,
  StorageSection,
  WebhookSection,
} from '../platform/config-sections.js';
import { WebhookWorkerSection } from './webhooks/config-section.js';
import { FaceSection } from './faces/config-section.js';
import { RembgPoolSection } from './rembg/config-section.js';

export const WorkerConfigSchema = Type.Object({
  ...LogSection,
  ...MysqlSection,
  ...RedisSection,
  ...StorageSection,
  ...SourceSection,
  WORKER_ID: env.string('', 'name of this worker in heartbeats and attempt records (default <hostname>:<pid>)'),
  WORKER_QUEUES: env.string(BUILTIN_KINDS.queues.join(','), 'comma-separated queues this worker process serves'),
  ...concurrencySection(),
  JOB_TIMEOUT_MS: env.int(60_000, 'one attempt is aborted after this long (fetches, rembg calls and uploads stop)', { minimum: 100 }),
  RESULT_CHUNK_FIELDS: env.int(10, 'result fields per MySQL statement (halved on max_allowed_packet errors)', { minimum: 1, maximum: 1000 }),
  DB_WRITE_RETRY_MS: env.int(30_000, 'how long a worker keeps retrying a result write while MySQL is unavailable', { minimum: 0 }),
  LOCK_DURATION_MS: env.int(30_000, 'Bull job lock; a job whose worker died is picked up again after about this long', { minimum: 1000 }),
  STALLED_INTERVAL_MS: env.int(30_000, 'how often Bull looks for jobs whose worker died', { minimum: 1000 }),
  MAX_STALLED_COUNT: env.int(
    3,
    'stalls Bull allows a job before handing it back to the ledger, which queues it again as a suspect (it then runs alone) or dead-letters it: docs/worker.md',
    { minimum: 0 },
  ),
  RECONCILE_INTERVAL_MS: env.int(60_000, 'how often the ledger is compared with Redis to re-queue lost jobs (0 = only at start)', { minimum: 0 }),
  SWEEP_INTERVAL_MS: env.int(60_000, 'how often stored files of deleted jobs are removed (storage_garbage; 0 = never)', { minimum: 0 }),
  SWEEP_BATCH: env.int(500, 'most files removed per sweep run', { minimum: 1, maximum: 100_000 }),
  ...RetentionSection,
  RETENTION_INTERVAL_MS: env.int(600_000, 'how often expired data is removed (retention; one worker at a time; 0 = never)', { minimum: 0 }),
  RETENTION_BATCH: env.int(200, 'rows the retention sweeper removes per transaction', { minimum: 1, maximum: 10_000 }),
  RECONCILE_GRACE_MS: env.int(30_000, 'a ledger job must be this old before the reconciler may re-queue it', { minimum: 0 }),
  SHUTDOWN_GRACE_MS: env.int(25_000, 'on SIGTERM, time active jobs get to finish before they are aborted (and retried elsewhere)', { minimum: 0 }),
  JOB_BACKOFF_MS: env.int(2000, 'first retry delay; doubles each retry (2 s, 4 s, 8 s)', { minimum: 0 }),
  QUEUE_KEEP_COMPLETED: env.int(1000, 'completed jobs Bull keeps in Redis (the ledger keeps all)', { minimum: 0 }),
  QUEUE_KEEP_FAILED: env.int(5000, 'failed jobs Bull keeps in Redis (the ledger keeps all)', { minimum: 0 }),
  WORKER_METRICS_PORT: env.int(9464, "port of the worker's /metrics server (0 = no metrics server); npm start gives each worker process the next port", {
    minimum: 0,
    maximum: 65535,
  }),
  WORKER_METRICS_HOST: env.string('0.0.0.0', "address the worker's /metrics server listens on"),
  ...MetricsSection,
  WORKER_HEAP_GROWING_PERCENT: env.int(
    30,
    "after each full GC, V8 lets the worker's heap grow this much (%) before the next; 0 = V8's own factor (up to 4× on big machines)",
    { minimum: 0, maximum: 400 },
  ),
  READY_RETRY_MS: env.int(5_000, 'while MySQL, Redis or storage is not ready, how often the worker checks again', { minimum: 100 }),
  ...FaceSection,
  ...WebhookSection,
  ...WebhookWorkerSection,
  ...RembgPoolSection,
});

export type WorkerConfig = Static<typeof WorkerConfigSchema>;

export function loadWorkerConfig(options?: LoadOptions): WorkerConfig {
  return loadConfig(WorkerConfigSchema, options);
}

/** One CONCURRENCY_* variable per registry kind (jobs/kinds.ts), with the kind's default. */
function concurrencySection(): Record<ConcurrencyVariable, TInteger> {
  return Object.fromEntries(
    BUILTIN_KINDS.list.map((spec) => [
      spec.concurrency.variable,
      env.int(spec.concurrency.default, `${spec.queue} jobs run at once per worker process`, { minimum: 1, maximum: 256 }),
    ]),
  ) as Record<ConcurrencyVariable, TInteger>;
}
