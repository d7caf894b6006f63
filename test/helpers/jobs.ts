import type { FastifyInstance } from 'fastify';
import type { Db } from '../../db/connect.js';
import type { Job } from '../../db/schema.js';
import type { TestVendor } from './app.js';
import type { Test } from 'tap';
import type { Ledger } from '../../db/repos/jobs.js';
import { LedgerTransactions } from '../../db/multi-statement.js';
import type { TestEnv } from './env.js';
import { waitFor } from './wait.js';
import { FINAL_STATES } from '../../jobs/queues.js';

/** Queues one resize of `photoUrl` through the API and returns the job id. */
export async function queueResize(
  app: FastifyInstance,
  vendor: TestVendor,
  photoUrl: string,
  recordId = `rec-${Math.random().toString(36).slice(2)}`,
): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/process-queue',
    headers: vendor.auth,
    payload: { recordId, projectId: 'proj', photoUrl, operations: [{ op: 'resize', width: 8 }] },
  });
  if (res.statusCode !== 202) throw new Error(`enqueue failed: ${res.statusCode} ${res.body}`);
  return (res.json() as { jobId: string }).jobId;
}

/** The ledger row once the job is over (completed, failed, dead or cancelled). */
export async function waitForFinal(db: Db, jobId: string, timeoutMs = 30_000): Promise<Job> {
  return waitFor(async () => {
    const job = await db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
    return job && FINAL_STATES.includes(job.status) ? job : undefined;
  }, timeoutMs);
}

export async function attemptRows(db: Db, jobId: string) {
  return db.selectFrom('job_attempts').selectAll().where('job_id', '=', jobId).orderBy('attempt').execute();
}

/** The worker's ledger (db/repos/jobs.ts) over the test's database, for driving attempts by hand. */
export function testLedger(t: Test, db: Db, env: TestEnv): Ledger {
  const multi = new LedgerTransactions(env['MYSQL_URL'] as string, 1);
  t.teardown(() => multi.close());
  return { db, multi };
}
