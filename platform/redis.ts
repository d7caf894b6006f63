import { Redis, type RedisOptions } from 'ioredis';

/**
 * ioredis connections. Bull needs three kinds per queue: `client` (shared),
 * `subscriber` (shared) and `bclient` (one per queue, blocking). Subscriber and
 * bclient must not retry per request nor run the ready check (Bull's docs).
 */
export type RedisRole = 'client' | 'subscriber' | 'bclient';

export function createRedis(url: string, extra: RedisOptions = {}): Redis {
  const sentinel = parseSentinelUrl(url);
  return sentinel ? new Redis({ ...sentinel, ...extra }) : new Redis(url, extra);
}

/**
 * REDIS_URL names one Redis (`redis://[:password@]host:port[/db]`,
 * `rediss://` for TLS) or, for failover, the Sentinels that know the
 * current primary:
 *
 *   redis+sentinel://[:password@]host1:26379,host2:26379,host3:26379/<master-name>[/db][?sentinelPassword=…]
 *
 * Every connection then asks the Sentinels for the primary and reconnects to
 * the new one after a failover. `password` is the data nodes' password.
 */
export function parseSentinelUrl(url: string): RedisOptions | null {
  const match = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]+)\/([^/?]+)(?:\/(\d+))?\/?(?:\?(.*))?$/.exec(url);
  if (!url.startsWith('redis+sentinel:')) return null;
  if (!match) throw new Error('REDIS_URL: a Sentinel URL looks like redis+sentinel://[:password@]host1:26379,host2:26379/master-name[/db]');
  const [, user, password, hosts, name, db, query] = match;
  const sentinels = hosts!.split(',').map((hostPort) => {
    const [host, port] = hostPort.trim().split(':');
    if (!host) throw new Error(`REDIS_URL: bad Sentinel address "${hostPort}"`);
    return { host, port: port ? Number(port) : 26379 };
  });
  const params = new URLSearchParams(query ?? '');
  return {
    sentinels,
    name: decodeURIComponent(name!),
    ...(user ? { username: decodeURIComponent(user) } : {}),
    ...(password ? { password: decodeURIComponent(password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(params.get('sentinelPassword') ? { sentinelPassword: params.get('sentinelPassword')! } : {}),
  };
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
    const conn = createRedis(url, { connectionName, ...opts });
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
      // QUIT waits for a connection: one that is not up (Redis unreachable) is dropped instead.
      await Promise.all(opened.map((c) => (c.status === 'ready' ? c.quit().catch(() => c.disconnect()) : c.disconnect())));
    },
  };
}
