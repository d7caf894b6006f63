import { Migrator, type MigrationResultSet } from 'kysely';
import type { Pool } from 'mysql2';
import { databaseName, serverPool, type Db } from './connect.js';
import { migrations } from './migrations/index.js';

/** Creates the database named in the URL when it does not exist yet. */
export async function ensureDatabase(url: string): Promise<void> {
  const pool: Pool = serverPool(url);
  try {
    await pool.promise().query(`CREATE DATABASE IF NOT EXISTS \`${databaseName(url)}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await pool.promise().end();
  }
}

export async function migrateToLatest(db: Db): Promise<MigrationResultSet> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const result = await migrator.migrateToLatest();
  if (result.error) throw result.error instanceof Error ? result.error : new Error(String(result.error));
  return result;
}
