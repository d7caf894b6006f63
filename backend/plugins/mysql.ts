import fp from 'fastify-plugin';
import { connectDb, type Db } from '../../db/connect.js';

declare module 'fastify' {
  interface FastifyInstance {
    db: Db;
  }
}

export interface MysqlPluginOptions {
  url: string;
  poolSize: number;
}

export default fp<MysqlPluginOptions>(
  async (app, opts) => {
    const db = connectDb({ url: opts.url, poolSize: opts.poolSize });
    app.decorate('db', db);
    app.addHook('onClose', async () => {
      await db.destroy();
    });
  },
  { name: 'mysql' },
);
