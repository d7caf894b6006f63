import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A lease in Redis that one process at a time holds: the periodic work that
 * must not run twice at once across workers (the reconciler, the webhook
 * outbox, sweepers) takes it before running.
 *
 * - acquire: SET key token PX ttl NX, with a random token per holder;
 * - renew: while held, every `renewEveryMs` (default ttl/3) the TTL is
 *   extended, but only if the key still holds our token (Lua
 *   compare-and-pexpire), so a run may last longer than the TTL;
 * - release: Lua compare-and-delete, so a holder whose lease expired and
 *   was taken by another never deletes the other's lock.
 *
 * A holder that crashes stops renewing; its lease expires after `ttlMs` and
 * the next run takes it. A holder that finds it has lost the lease (the key
 * expired or holds another token: Redis was away longer than the TTL, or was
 * flushed) is told through `held.signal`, and should stop its work: someone
 * else may be doing it now.
 */
export interface RedisLockOptions {
  /** how long the lease lasts without a renewal; a crashed holder blocks others this long */
  ttlMs: number;
  /** how often a holder renews (default ttlMs / 3); 0 turns renewal off */
  renewEveryMs?: number;
}

export interface HeldLock {
  readonly key: string;
  readonly token: string;
  /** aborted when the lease is released or lost; `lost()` tells which */
  readonly signal: AbortSignal;
  /** true once a renewal found the key gone or holding another token (or none succeeded within the TTL) */
  lost(): boolean;
  /** extends the lease now; false when this holder no longer owns it */
  renew(): Promise<boolean>;
  /** deletes the key if it still holds our token; false when it did not (expired or taken) */
  release(): Promise<boolean>;
}

export type LockRun<T> = { ran: true; value: T } | { ran: false };

export interface RedisLock {
  readonly key: string;
  /** takes the lease when free (and keeps renewing it until released), or null when another holds it */
  acquire(): Promise<HeldLock | null>;
  /**
   * Runs `work` under the lease and releases it after, or answers
   * `{ ran: false }` without running it while another holds the lease.
   */
  run<T>(work: (held: HeldLock) => Promise<T>): Promise<LockRun<T>>;
}

const RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0";
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

export function redisLock(redis: Redis, key: string, options: RedisLockOptions): RedisLock {
  const { ttlMs } = options;
  if (!(ttlMs > 0)) throw new Error('redisLock: ttlMs must be positive');
  const renewEveryMs = options.renewEveryMs ?? Math.max(1, Math.floor(ttlMs / 3));

  async function acquire(): Promise<HeldLock | null> {
    const token = randomUUID();
    const taken = await redis.set(key, token, 'PX', ttlMs, 'NX');
    if (taken !== 'OK') return null;
    const controller = new AbortController();
    let lost = false;
    let released = false;
    // The lease is ours until at least this moment, counted from before the command that set or extended it.
    let validUntil = Date.now() + ttlMs;
    const markLost = () => {
      if (lost || released) return;
      lost = true;
      stopRenewing();
      controller.abort(new Error(`lost the lock ${key}`));
    };
    const renew = async (): Promise<boolean> => {
      if (lost || released) return false;
      const sent = Date.now();
      const extended = Number(await redis.eval(RENEW, 1, key, token, String(ttlMs)));
      if (extended === 1) {
        validUntil = sent + ttlMs;
        return true;
      }
      markLost();
      return false;
    };
    let renewing: Promise<unknown> | null = null;
    const timer =
      renewEveryMs > 0
        ? setInterval(() => {
            if (renewing) return;
            renewing = renew()
              .catch(() => {
                // Redis did not answer: the lease may still be ours, until it would have expired.
                if (Date.now() >= validUntil) markLost();
              })
              .finally(() => {
                renewing = null;
              });
          }, renewEveryMs)
        : undefined;
    timer?.unref();
    function stopRenewing() {
      if (timer) clearInterval(timer);
    }
    const held: HeldLock = {
      key,
      token,
      signal: controller.signal,
      lost: () => lost,
      renew,
      async release() {
        if (released) return false;
        released = true;
        stopRenewing();
        await renewing;
        if (!controller.signal.aborted) controller.abort(new Error(`released the lock ${key}`));
        if (lost) return false;
        return Number(await redis.eval(RELEASE, 1, key, token)) === 1;
      },
    };
    return held;
  }

  return {
    key,
    acquire,
    async run<T>(work: (held: HeldLock) => Promise<T>): Promise<LockRun<T>> {
      const held = await acquire();
      if (!held) return { ran: false };
      try {
        return { ran: true, value: await work(held) };
      } finally {
        await held.release().catch(() => undefined);
      }
    },
  };
}
