import { Redis, type RedisOptions } from 'ioredis';

/**
 * ioredis connections. Bull needs three kinds per queue: `client` (shared),
 * `subscriber` (shared) and `bclient` (one per queue, blocking). Subscriber and
 * bclient must not retry per request nor run the ready check (Bull's docs).
 */
export type RedisRole = 'client' | 'subscriber' | 'bclient';

export function createRedis(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, { lazyConnect: false, ...extra });
}

export interface BullConnections {
  createClient: (type: RedisRole) => Redis;
  close: () => Promise<void>;
}

/**
 * `clientOptions` tunes the shared command connection: the API fails fast when
 * Redis is gone (so a request gets a 503, not a hang), the worker waits it out.
 */
export function bullConnections(url: string, connectionName: string, clientOptions: RedisOptions = {}): BullConnections {
  const opened: Redis[] = [];
  let client: Redis | undefined;
  let subscriber: Redis | undefined;
  const open = (opts: RedisOptions) => {
    const conn = new Redis(url, { connectionName, ...opts });
    // Errors surface through the queue; without a listener ioredis prints them unformatted.
    conn.on('error', () => {});
    opened.push(conn);
    return conn;
  };
  return {
    createClient(type) {
      if (type === 'client') return (client ??= open({ maxRetriesPerRequest: null, enableReadyCheck: false, ...clientOptions }));
      if (type === 'subscriber') return (subscriber ??= open({ maxRetriesPerRequest: null, enableReadyCheck: false }));
      return open({ maxRetriesPerRequest: null, enableReadyCheck: false });
    },
    async close() {
      await Promise.all(opened.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
