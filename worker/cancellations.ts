import type { Redis } from 'ioredis';
import { cancelChannel } from '../jobs/events.js';
import type { Logger } from '../platform/logger.js';
import { createRedis } from '../platform/redis.js';

/**
 * The attempts this worker is running, by job id, each with a signal that
 * aborts when the vendor cancels or deletes the job (a message on the cancel
 * channel, or the ledger row found no longer active) or when the worker
 * shuts down. One subscriber connection per worker process.
 */
export interface AttemptWatch {
  readonly signal: AbortSignal;
  /** true once the job was cancelled (not a shutdown) */
  readonly cancelled: boolean;
  /** the job is no longer the attempt's to finish: abort it as cancelled */
  cancel(): void;
  release(): void;
}

export interface Cancellations {
  watch(jobId: string): AttemptWatch;
  close(): Promise<void>;
}

export function listenForCancellations(redisUrl: string, prefix: string, shutdown: AbortSignal, log: Logger): Cancellations {
  const running = new Map<string, Set<AttemptWatchImpl>>();
  const subscriber: Redis = createRedis(redisUrl, { connectionName: 'imagequeue-worker-cancel', maxRetriesPerRequest: null, enableReadyCheck: false });
  subscriber.on('error', (error) => log.debug({ err: error }, 'cancel subscriber connection error'));
  subscriber.subscribe(cancelChannel(prefix)).catch((error: unknown) => log.warn({ err: error }, 'cannot subscribe to cancellations yet'));
  subscriber.on('message', (_channel: string, jobId: string) => {
    for (const watch of running.get(jobId) ?? []) {
      log.info({ jobId }, 'job cancelled by its vendor; aborting the attempt');
      watch.cancel();
    }
  });
  const onShutdown = () => {
    for (const set of running.values()) for (const watch of set) watch.controller.abort(shutdown.reason);
  };
  shutdown.addEventListener('abort', onShutdown, { once: true });

  return {
    watch(jobId) {
      const watch = new AttemptWatchImpl(() => {
        const set = running.get(jobId);
        set?.delete(watch);
        if (set?.size === 0) running.delete(jobId);
      });
      if (shutdown.aborted) watch.controller.abort(shutdown.reason);
      let set = running.get(jobId);
      if (!set) running.set(jobId, (set = new Set()));
      set.add(watch);
      return watch;
    },
    async close() {
      shutdown.removeEventListener('abort', onShutdown);
      await subscriber.quit().catch(() => subscriber.disconnect());
    },
  };
}

class AttemptWatchImpl implements AttemptWatch {
  readonly controller = new AbortController();
  cancelled = false;
  constructor(private readonly onRelease: () => void) {}
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  cancel(): void {
    if (this.controller.signal.aborted) return;
    this.cancelled = true;
    this.controller.abort(new DOMException('the job was cancelled', 'AbortError'));
  }
  release(): void {
    this.onRelease();
  }
}
