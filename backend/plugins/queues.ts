import fp from 'fastify-plugin';
import { BUILTIN_KINDS, type KindSet } from '../../jobs/kinds.js';
import { openQueues, type Queues, type QueueSettings } from '../../platform/queues.js';

declare module 'fastify' {
  interface FastifyInstance {
    queues: Queues;
    /** the job kinds this API serves: the registry's, and any a test added */
    jobKinds: KindSet;
  }
}

/**
 * The work queue of every job kind, for adding jobs and reading counts. The
 * API never processes jobs. Its command connection fails fast when Redis is gone.
 */
export default fp<Omit<QueueSettings, 'connectionName' | 'clientOptions'>>(
  async (app, opts) => {
    const kinds = opts.kinds ?? BUILTIN_KINDS;
    const set = openQueues({
      ...opts,
      kinds,
      connectionName: 'imagequeue-api-queues',
      clientOptions: { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000, connectTimeout: 2000 },
    });
    app.decorate('queues', set.queues);
    app.decorate('jobKinds', kinds);
    app.addHook('onClose', async () => {
      await set.close();
    });
  },
  { name: 'queues' },
);
