import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import { createRedis } from '../../platform/redis.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** general-purpose connection: rate limits, idempotency, health */
    redis: Redis;
  }
}

export interface RedisPluginOptions {
  url: string;
}

/**
 * The API's own Redis connection. It never queues commands while Redis is
 * away (enableOfflineQueue off) and gives up on a command after a second, so a
 * request that needs Redis gets a quick 503 instead of hanging.
 */
export default fp<RedisPluginOptions>(
  async (app, opts) => {
    const redis = createRedis(opts.url, {
      connectionName: 'imagequeue-api',
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
      connectTimeout: 2000,
      lazyConnect: true,
    });
    redis.on('error', (error) => app.log.debug({ err: error }, 'redis connection error'));
    await redis.connect().catch((error) => app.log.warn({ err: error }, 'redis is not reachable yet; requests that need it will answer 503'));
    app.decorate('redis', redis);
    app.addHook('onClose', async () => {
      if (redis.status !== 'ready') redis.disconnect();
      else await redis.quit().catch(() => redis.disconnect());
    });
  },
  { name: 'redis' },
);
