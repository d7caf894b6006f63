import fp from 'fastify-plugin';
import fastifyStatic from '@fastify/static';
import { resolve } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { createStorage, storageDriver, type Storage, type StorageConfig } from '../../platform/storage/index.js';
import { FILES_ROUTE } from '../../platform/storage/local.js';
import { mountAuth } from './auth.js';

declare module 'fastify' {
  interface FastifyInstance {
    storage: Storage;
  }
}

/**
 * The storage layer, and for local storage the route that serves its files.
 * Keys carry a random part, so a URL cannot be guessed; nothing is listed.
 */
export default fp<StorageConfig>(
  async (app, opts) => {
    app.decorate('storage', await createStorage(opts));
    if (storageDriver(opts) === 'local') {
      const root = resolve(opts.STORAGE_LOCAL_DIR);
      await mkdir(root, { recursive: true });
      // Public: keys carry a random part; nothing is listed.
      await app.register(async (scope) => {
        scope.addHook('onRoute', mountAuth({ auth: 'public' }));
        await scope.register(fastifyStatic, {
          root,
          prefix: `${FILES_ROUTE}/`,
          index: false,
          list: false,
          dotfiles: 'deny',
          immutable: true,
          maxAge: '30d',
          decorateReply: false,
          schemaHide: true,
        });
      });
    }
  },
  { name: 'storage', dependencies: ['route-auth-check'] },
);
