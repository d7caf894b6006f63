import Bull from 'bull';
import type { RedisOptions } from 'ioredis';
import { bullAttempts } from '../jobs/queues.js';
import { BUILTIN_KINDS, type JobPayload, type KindSet, type QueueName } from '../jobs/kinds.js';
import { bullConnections } from './redis.js';
import { withTimeout } from './timeout.js';

export type JobQueue = Bull.Queue<JobPayload>;
/** The work queues by name: the registry's, typed; a test's extra kinds add theirs (reached through queueOf). */
export type Queues = Record<QueueName, JobQueue>;

/** The queue of a kind (or a ledger row's kind); throws for a queue this process did not open. */
export function queueOf(queues: Queues, queue: string): JobQueue {
  const found = (queues as Record<string, JobQueue | undefined>)[queue];
  if (!found) throw new Error(`no open queue "${queue}"`);
  return found;
}

export interface QueueSettings {
  redisUrl: string;
  prefix: string;
  connectionName: string;
  /** ledger attempts per job; Bull gets a little slack on top (see bullAttempts) */
  attempts: number;
  backoffMs: number;
  /** completed/failed jobs Bull keeps in Redis; the ledger keeps everything */
  keepCompleted: number;
  keepFailed: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  maxStalledCount?: number;
  clientOptions?: RedisOptions;
  /** the kinds whose queues to open (default: the registry's) */
  kinds?: KindSet;
}

export interface QueueSet {
  queues: Queues;
  close(): Promise<void>;
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
  return {
    queues,
    async close() {
      // Bull's close waits for its connections to be ready; with Redis away it would wait forever.
      const bounded = (q: Bull.Queue) =>
        withTimeout(
          q.close().catch(() => undefined),
          3000,
          { orElse: undefined },
        );
      await Promise.all(Object.values(queues).map(bounded));
      await connections.close();
    },
  };
}
