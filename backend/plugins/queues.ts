import fp from 'fastify-plugin';
import { openQueues, type Queues, type QueueSettings } from '../../platform/queues.js';

declare module 'fastify' {
  interface FastifyInstance {
    queues: Queues;
  }
}

/**
 * The three work queues, for adding jobs and reading counts. The API never
 * processes jobs. Its command connection fails fast when Redis is gone.
 */
export default fp<Omit<QueueSettings, 'connectionName' | 'clientOptions'>>(
  async (app, opts) => {
    const set = openQueues({
      ...opts,
      connectionName: 'imagequeue-api-queues',
      clientOptions: { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000, connectTimeout: 2000 },
    });
    app.decorate('queues', set.queues);
    app.addHook('onClose', async () => {
      await set.close();
    });
  },
  { name: 'queues' },
);
