import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connectDb, serverPool, type Db } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { insertJobs, payloadOf, type PayloadFields } from '../db/repos/jobs.js';
import { claimRecords } from '../db/repos/records.js';
import type { NewJob } from '../db/schema.js';
import { bullAttempts } from '../jobs/queues.js';
import { loadWorkerConfig } from '../worker/config.js';
import { newId } from '../platform/ids.js';
import type { JobQueue } from '../platform/queues.js';

/**
 * What the worker benchmarks share: a scratch database and Bull prefix next
 * to the configured MySQL/Redis (never the real ones' data), and a way to
 * enqueue many process jobs the way the API does (ledger rows, records, then
 * Bull jobs with the ledger ids).
 */
export interface BenchEnv {
  env: Record<string, string>;
  db: Db;
  cleanup(): Promise<void>;
}

export async function benchEnv(extra: Record<string, string> = {}): Promise<BenchEnv> {
  const base = loadWorkerConfig();
  const suffix = randomBytes(4).toString('hex');
  const url = new URL(base.MYSQL_URL);
  url.pathname = `/iqbench_${suffix}`;
  const mysqlUrl = url.toString();
  await ensureDatabase(mysqlUrl);
  const db = connectDb({ url: mysqlUrl, poolSize: 5 });
  await migrateToLatest(db);
  const storageDir = await mkdtemp(join(tmpdir(), 'iqbench-'));
  const env = {
    LOG_LEVEL: 'warn',
    MYSQL_URL: mysqlUrl,
    REDIS_URL: base.REDIS_URL,
    BULL_PREFIX: `iqbench${suffix}`,
    STORAGE_DRIVER: 'local',
    STORAGE_LOCAL_DIR: storageDir,
    ALLOW_PRIVATE_SOURCE_URLS: 'true',
    WORKER_QUEUES: 'image-processing',
    RECONCILE_INTERVAL_MS: '0',
    ...extra,
  };
  return {
    env,
    db,
    async cleanup() {
      await db.destroy();
      const pool = serverPool(mysqlUrl);
      await pool.promise().query(`DROP DATABASE IF EXISTS \`iqbench_${suffix}\``);
      await pool.promise().end();
      await rm(storageDir, { recursive: true, force: true });
    },
  };
}

/** Enqueues `count` jobs of `photoUrl` (a 16 px resize unless `operations` says otherwise) as the API would, in slices. */
export async function enqueueProcessJobs(
  db: Db,
  queue: JobQueue,
  count: number,
  photoUrl: string,
  vendorId = newId(),
  operations: readonly object[] = [{ op: 'resize', width: 16 }],
): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 100) {
    const rows: NewJob[] = [];
    for (let i = start; i < Math.min(count, start + 100); i++) {
      const id = newId();
      rows.push({
        id,
        vendor_id: vendorId,
        batch_id: null,
        kind: 'process',
        project_id: 'bench',
        record_id: `r-${i}`,
        source_url: photoUrl,
        source_key: null,
        options: JSON.stringify({ operations }),
        output_prefix: `${vendorId}/bench/${id}`,
        status: 'queued',
        max_attempts: 3,
        priority: i + 1,
        error_code: null,
        error_message: null,
        started_at: null,
        finished_at: null,
        duration_ms: null,
      });
    }
    await db.transaction().execute(async (trx) => {
      await insertJobs(trx, rows);
      await claimRecords(
        trx,
        rows.map((r) => ({ vendorId, projectId: 'bench', recordId: r.record_id as string, photoUrl, jobId: r.id })),
      );
    });
    await queue.addBulk(
      rows.map((r) => ({
        data: payloadOf(r as PayloadFields),
        opts: { jobId: r.id, priority: r.priority as number, attempts: bullAttempts(3), removeOnComplete: 1000, removeOnFail: 5000 },
      })),
    );
    ids.push(...rows.map((r) => r.id));
  }
  return ids;
}

export async function completedCount(db: Db): Promise<number> {
  const row = await db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'completed')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
