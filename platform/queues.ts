import Bull from 'bull';
import type { RedisOptions } from 'ioredis';
import { bullAttempts } from '../jobs/queues.js';
import { BUILTIN_KINDS, type JobPayload, type KindSet, type QueueName } from '../jobs/kinds.js';
import { WEBHOOK_QUEUE, type WebhookPayload } from '../jobs/webhooks.js';
import { bullConnections, type BullConnections } from './redis.js';
import { withTimeout } from './timeout.js';

/**
 * Every Bull queue of the service is built here: the work queue of each job
 * kind (openQueues) and the webhook delivery queue (openWebhookQueue), for
 * the API, the worker and Bull Board alike, so prefixes, connections, lock
 * and stall settings and the bounded close are the same everywhere.
 */
export type JobQueue = Bull.Queue<JobPayload>;
/** The work queues by name: the registry's, typed; a test's extra kinds add theirs (reached through queueOf). */
export type Queues = Record<QueueName, JobQueue>;

/** The queue of a kind (or a ledger row's kind); throws for a queue this process did not open. */
export function queueOf(queues: Queues, queue: string): JobQueue {
  const found = (queues as Record<string, JobQueue | undefined>)[queue];
  if (!found) throw new Error(`no open queue "${queue}"`);
  return found;
}

/** How a process reaches Redis for its queues. */
export interface QueueConnection {
  redisUrl: string;
  prefix: string;
  connectionName: string;
  /** the shared command connection's options: the API fails fast while Redis is away, the worker waits it out */
  clientOptions?: RedisOptions;
}

export interface QueueSettings extends QueueConnection {
  /** ledger attempts per job; Bull gets a little slack on top (see bullAttempts) */
  attempts: number;
  backoffMs: number;
  /** completed/failed jobs Bull keeps in Redis; the ledger keeps everything */
  keepCompleted: number;
  keepFailed: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  maxStalledCount?: number;
  /** the kinds whose queues to open (default: the registry's) */
  kinds?: KindSet;
}

export interface QueueSet {
  queues: Queues;
  close(): Promise<void>;
}

/** Bull's close waits for its connections to be ready; with Redis away it would wait forever. */
const CLOSE_WAIT_MS = 3000;

function closeAll(queues: Bull.Queue[], connections: BullConnections): () => Promise<void> {
  return async () => {
    await Promise.all(
      queues.map((q) =>
        withTimeout(
          q.close().catch(() => undefined),
          CLOSE_WAIT_MS,
          { orElse: undefined },
        ),
      ),
    );
    await connections.close();
  };
}

/**
 * Opens the work queue of every kind over shared connections. Closing closes the
 * queues first, then the connections, as Bull requires.
 */
export function openQueues(settings: QueueSettings): QueueSet {
  const connections = bullConnections(settings.redisUrl, settings.connectionName, settings.clientOptions);
  const queues = Object.fromEntries(
    (settings.kinds ?? BUILTIN_KINDS).queues.map((name) => [
      name,
      new Bull<JobPayload>(name, {
        prefix: settings.prefix,
        createClient: (type) => connections.createClient(type),
        defaultJobOptions: {
          attempts: bullAttempts(settings.attempts),
          backoff: { type: 'exponential', delay: settings.backoffMs },
          removeOnComplete: settings.keepCompleted,
          removeOnFail: settings.keepFailed,
        },
        settings: {
          ...(settings.lockDurationMs ? { lockDuration: settings.lockDurationMs, lockRenewTime: Math.floor(settings.lockDurationMs / 2) } : {}),
          ...(settings.stalledIntervalMs ? { stalledInterval: settings.stalledIntervalMs } : {}),
          ...(settings.maxStalledCount !== undefined ? { maxStalledCount: settings.maxStalledCount } : {}),
        },
      }),
    ]),
  ) as Queues;
  return { queues, close: closeAll(Object.values(queues), connections) };
}

export interface WebhookQueueSettings extends QueueConnection {
  /** delivery tries per event (the worker's; readers such as Bull Board leave it out) */
  attempts?: number;
  backoffMs?: number;
  /**
   * The worker's own retry delay (worker/webhooks): given the failed try's
   * error, the wait before the next, or -1 for none. Replaces the
   * exponential `backoffMs` when set.
   */
  backoffStrategy?: (attemptsMade: number, error: unknown) => number;
}

export interface WebhookQueue {
  queue: Bull.Queue<WebhookPayload>;
  close(): Promise<void>;
}

/** The webhook delivery queue (worker/webhooks), on connections of its own. */
export function openWebhookQueue(settings: WebhookQueueSettings): WebhookQueue {
  const connections = bullConnections(settings.redisUrl, settings.connectionName, settings.clientOptions);
  const strategy = settings.backoffStrategy;
  const queue = new Bull<WebhookPayload>(WEBHOOK_QUEUE, {
    prefix: settings.prefix,
    createClient: (type) => connections.createClient(type),
    ...(strategy ? { settings: { backoffStrategies: { webhook: strategy } } } : {}),
    defaultJobOptions: {
      ...(settings.attempts !== undefined ? { attempts: settings.attempts } : {}),
      ...(strategy
        ? { backoff: { type: 'webhook' } }
        : settings.backoffMs !== undefined
          ? { backoff: { type: 'exponential', delay: settings.backoffMs } }
          : {}),
      removeOnComplete: 1000,
      removeOnFail: 5000,
    },
  });
  return { queue, close: closeAll([queue], connections) };
}
