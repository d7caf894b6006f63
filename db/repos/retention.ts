import { sql, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database } from '../schema.js';
import { FINAL_STATES } from '../../jobs/queues.js';
import { deleteJobsIn } from './lifecycle.js';

/**
 * Retention (issue 21): each function removes at most `limit` of one
 * vendor's rows older than `before`, in one short transaction, and says how
 * many it removed, so the sweeper (worker/retention.ts) can go batch by
 * batch and never hold locks for long. Only ended jobs are touched: a queued
 * or running job is never expired, whatever its age. Files go to
 * `storage_garbage` in the transaction that removes their rows, and are
 * removed from storage after it commits (platform/garbage.ts).
 */
export interface RetentionVendor {
  id: string;
  plan: string;
  retention: string | null;
}

/** Vendors by id, keyset-paginated; deleted vendors too (their data still expires). */
export async function retentionVendors(db: Db, afterId: string | null, limit: number): Promise<RetentionVendor[]> {
  let q = db.selectFrom('vendors').select(['id', 'plan', 'retention']);
  if (afterId) q = q.where('id', '>', afterId);
  return q.orderBy('id').limit(limit).execute();
}

/** Deletes ended jobs that ended before `before`, with everything deleting a job removes (db/repos/lifecycle.ts). */
export async function expireJobs(db: Db, vendorId: string, before: Date, limit: number): Promise<number> {
  const candidates = await db
    .selectFrom('jobs')
    .select('id')
    .where('vendor_id', '=', vendorId)
    .where('finished_at', '<', before)
    .where('status', 'in', FINAL_STATES)
    .orderBy('finished_at')
    .limit(limit)
    .execute();
  if (candidates.length === 0) return 0;
  return db.transaction().execute(async (trx) => {
    const due = await lockDue(trx, vendorId, before, candidates);
    if (due.length === 0) return 0;
    const deleted = await deleteJobsIn(
      trx,
      vendorId,
      due.map((j) => j.id),
      0,
    );
    return deleted.length;
  });
}

/**
 * Removes the uploads of ended jobs that ended before `before`: the job
 * keeps its row and results but no longer names the upload (nor does its
 * record), and the file goes to `storage_garbage` in the same transaction.
 * Such a job can no longer be retried.
 */
export async function expireUploads(db: Db, vendorId: string, before: Date, limit: number): Promise<number> {
  const candidates = await db
    .selectFrom('jobs')
    .select('id')
    .where('vendor_id', '=', vendorId)
    .where('has_upload', '=', 1)
    .where('finished_at', '<', before)
    .where('status', 'in', FINAL_STATES)
    .orderBy('finished_at')
    .limit(limit)
    .execute();
  if (candidates.length === 0) return 0;
  return db.transaction().execute(async (trx) => {
    const due = (await lockDue(trx, vendorId, before, candidates)).filter((j) => j.source_key !== null);
    if (due.length === 0) return 0;
    const ids = due.map((j) => j.id);
    await trx.updateTable('jobs').set({ source_key: null, source_url: null }).where('id', 'in', ids).execute();
    for (const j of due) {
      if (!j.source_url) continue;
      await trx
        .updateTable('data_records')
        .set({ photo_url: null })
        .where('vendor_id', '=', vendorId)
        .where('project_id', '=', j.project_id)
        .where('record_id', '=', j.record_id)
        .where('last_job_id', '=', j.id)
        .where('photo_url', '=', j.source_url)
        .execute();
    }
    await trx
      .insertInto('storage_garbage')
      .values(due.map((j) => ({ vendor_id: vendorId, target: j.source_key as string, is_prefix: 0 })))
      .execute();
    return due.length;
  });
}

/**
 * Locks the candidates by primary key and keeps those still due (a retry may
 * have reopened one since it was read). Candidates are read without locks
 * first: a locking read over the (vendor, finished_at) range would also lock
 * the gap where the vendor's new, unfinished jobs are inserted, and hold up
 * its enqueues for the transaction.
 */
async function lockDue(trx: Transaction<Database>, vendorId: string, before: Date, candidates: readonly { id: string }[]) {
  return trx
    .selectFrom('jobs')
    .select(['id', 'project_id', 'record_id', 'source_key', 'source_url'])
    .where(
      'id',
      'in',
      candidates.map((c) => c.id),
    )
    .where('vendor_id', '=', vendorId)
    .where('finished_at', '<', before)
    .where('status', 'in', FINAL_STATES)
    .forUpdate()
    .execute();
}

/** Dead-letter entries older than `before` (the dead job itself stays until its own period ends). */
export async function expireDeadLetters(db: Db, vendorId: string, before: Date, limit: number): Promise<number> {
  const result = await sql`DELETE FROM dead_letters WHERE vendor_id = ${vendorId} AND dead_at < ${before} ORDER BY job_id LIMIT ${limit}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Events older than `before`. Reads the vendor's oldest `limit` events (by
 * seq, which follows time) and deletes the expired ones among them, so a run
 * with nothing to expire reads one page, not the vendor's whole log; an event
 * whose webhook is not queued yet stays.
 */
export async function expireEvents(db: Db, vendorId: string, before: Date, limit: number): Promise<number> {
  const head = await db
    .selectFrom('job_events')
    .select(['seq', 'created_at', 'webhook_pending'])
    .where('vendor_id', '=', vendorId)
    .orderBy('seq')
    .limit(limit)
    .execute();
  const seqs = head.filter((e) => e.created_at < before && !e.webhook_pending).map((e) => e.seq);
  if (seqs.length === 0) return 0;
  const result = await db.deleteFrom('job_events').where('vendor_id', '=', vendorId).where('seq', 'in', seqs).executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Delivery log rows older than `before`, read from the vendor's oldest (ids follow time) like events. */
export async function expireWebhookDeliveries(db: Db, vendorId: string, before: Date, limit: number): Promise<number> {
  const head = await db.selectFrom('webhook_deliveries').select(['id', 'created_at']).where('vendor_id', '=', vendorId).orderBy('id').limit(limit).execute();
  const ids = head.filter((d) => d.created_at < before).map((d) => d.id);
  if (ids.length === 0) return 0;
  const result = await db.deleteFrom('webhook_deliveries').where('vendor_id', '=', vendorId).where('id', 'in', ids).executeTakeFirst();
  return Number(result.numDeletedRows);
}
