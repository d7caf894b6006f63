import type { FastifyInstance } from 'fastify';
import type { Db } from '../../db/connect.js';
import type { Job } from '../../db/schema.js';
import type { TestVendor } from './app.js';
import { waitFor } from './wait.js';

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

/** The ledger row once the job is over (completed, failed or dead). */
export async function waitForFinal(db: Db, jobId: string, timeoutMs = 30_000): Promise<Job> {
  return waitFor(async () => {
    const job = await db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
    return job && (job.status === 'completed' || job.status === 'failed' || job.status === 'dead') ? job : undefined;
  }, timeoutMs);
}

export async function attemptRows(db: Db, jobId: string) {
  return db.selectFrom('job_attempts').selectAll().where('job_id', '=', jobId).orderBy('attempt').execute();
}
