import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { connectDb, serverPool } from '../../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../../db/migrate.js';

/**
 * Each test file gets its own MySQL database, Bull prefix and storage
 * directory, so files run in parallel against the machine's real MariaDB and
 * Redis without seeing each other. Everything is removed at teardown.
 */
export const MYSQL_BASE = 'mysql://root@127.0.0.1:3306';
export const REDIS_URL = 'redis://127.0.0.1:6379';
export const TEST_JWT_SECRET = 'test-secret-0123456789-abcdefghijklmnop';

export type TestEnv = Record<string, string>;

export async function isolatedEnv(t: Test, extra: TestEnv = {}): Promise<TestEnv> {
  const suffix = randomBytes(4).toString('hex');
  const database = `iqt_${suffix}`;
  const url = `${MYSQL_BASE}/${database}`;
  await ensureDatabase(url);
  const db = connectDb({ url, poolSize: 1 });
  await migrateToLatest(db);
  await db.destroy();
  const storageDir = await mkdtemp(join(tmpdir(), 'iqt-storage-'));
  t.teardown(async () => {
    const pool = serverPool(url);
    await pool.promise().query(`DROP DATABASE IF EXISTS \`${database}\``);
    await pool.promise().end();
    await rm(storageDir, { recursive: true, force: true });
  });
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    MYSQL_URL: url,
    MYSQL_POOL_SIZE: '5',
    REDIS_URL,
    BULL_PREFIX: `iqt${suffix}`,
    STORAGE_DRIVER: 'local',
    STORAGE_LOCAL_DIR: storageDir,
    PUBLIC_BASE_URL: 'http://localhost:3000',
    JWT_SECRET: TEST_JWT_SECRET,
    ALLOW_PRIVATE_SOURCE_URLS: 'true',
    VENDOR_CACHE_MS: '0',
    JOB_BACKOFF_MS: '200',
    READY_RETRY_MS: '200',
    RECONCILE_GRACE_MS: '1000',
    // Many workers run at once in tests; a test that scrapes one gives it a port of its own.
    WORKER_METRICS_PORT: '0',
    ...extra,
  };
}
