import { Type } from '@sinclair/typebox';
import { connectDb } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { loadConfig } from '../platform/config.js';
import { MysqlSection } from '../platform/config-sections.js';
import { describeConnectError } from './preflight.js';

/** `npm run migrate`: creates the database if needed and applies every migration. */
const config = loadConfig(Type.Object({ ...MysqlSection }));
try {
  await ensureDatabase(config.MYSQL_URL);
  const db = connectDb({ url: config.MYSQL_URL, poolSize: 1 });
  try {
    const { results } = await migrateToLatest(db);
    const applied = (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
    console.log(applied.length ? `applied migrations: ${applied.join(', ')}` : 'database is up to date');
  } finally {
    await db.destroy();
  }
} catch (error) {
  console.error(describeConnectError('MySQL', config.MYSQL_URL, error));
  process.exit(1);
}
