import { Kysely, MysqlDialect } from 'kysely';
import { createPool, type Pool, type PoolOptions } from 'mysql2';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

export interface DbSettings {
  url: string;
  poolSize: number;
}

/**
 * Kysely over a mysql2 pool. Dates travel as UTC; BIGINT columns come back as
 * numbers (ids here stay far below 2^53).
 */
export function connectDb(settings: DbSettings): Db {
  return new Kysely<Database>({ dialect: new MysqlDialect({ pool: createPool(poolOptions(settings)) }) });
}

export function poolOptions(settings: DbSettings, overrides: PoolOptions = {}): PoolOptions {
  const url = new URL(settings.url);
  return {
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password),
    database: databaseName(settings.url),
    connectionLimit: settings.poolSize,
    timezone: 'Z',
    dateStrings: false,
    supportBigNumbers: true,
    charset: 'utf8mb4',
    connectTimeout: 5000,
    enableKeepAlive: true,
    ...overrides,
  };
}

export function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_]{1,64}$/.test(name)) throw new Error(`MYSQL_URL must name a database of letters, digits and _ (got "${name}")`);
  return name;
}

/** A pool with no default database, for CREATE/DROP DATABASE. */
export function serverPool(url: string): Pool {
  return createPool(poolOptions({ url, poolSize: 1 }, { database: undefined }));
}
