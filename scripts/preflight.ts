import { createRedis } from '../platform/redis.js';
import { serverPool } from '../db/connect.js';

/**
 * Start-up checks with answers a newcomer can act on: which service is
 * missing, at which address, and the command that starts it on this kind of
 * machine.
 */
const HOW_TO_START: Record<string, string> = {
  MySQL: 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd   (or: docker compose up -d mysql)',
  Redis: 'redis-server --daemonize yes --port 6379 --save "" --appendonly no   (or: docker compose up -d redis)',
};

export function describeConnectError(service: 'MySQL' | 'Redis', url: string, error: unknown): string {
  const e = error as { code?: string; message?: string };
  const where = safeAddress(url);
  return [
    `${service} is not reachable at ${where}: ${e.code ?? ''} ${e.message ?? String(error)}`.trim(),
    `  check ${service === 'MySQL' ? 'MYSQL_URL' : 'REDIS_URL'} in .env, or start ${service}:`,
    `  ${HOW_TO_START[service]}`,
  ].join('\n');
}

export async function checkMysql(url: string): Promise<void> {
  const pool = serverPool(url);
  try {
    await pool.promise().query('SELECT 1');
  } finally {
    await pool
      .promise()
      .end()
      .catch(() => undefined);
  }
}

export async function checkRedis(url: string): Promise<void> {
  const redis = createRedis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 3000, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    await redis.ping();
  } finally {
    redis.disconnect();
  }
}

function safeAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === 'mysql:' ? 3306 : 6379)}`;
  } catch {
    return '(unparseable URL)';
  }
}
