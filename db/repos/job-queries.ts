import { sql } from 'kysely';
import type { Db } from '../connect.js';
import type { Batch, Job } from '../schema.js';
import type { JobKind, JobState } from '../../jobs/queues.js';

/**
 * Read side of the ledger for the vendor API: listings, batches and counts.
 * Every query that takes a vendor id is scoped by it, so another vendor's
 * ids read as not found.
 */
export interface JobListFilter {
  vendorId: string;
  /** only this project's jobs (a project-restricted token) */
  projectId?: string;
  states?: readonly JobState[];
  kind?: JobKind;
  batchId?: string;
  /** the id of the last job of the previous page (newest first) */
  before?: string;
  limit: number;
}

/** A vendor's jobs, newest first, keyset-paginated by id (ULIDs sort by creation time). */
export async function listVendorJobs(db: Db, filter: JobListFilter): Promise<Job[]> {
  let q = db.selectFrom('jobs').selectAll().where('vendor_id', '=', filter.vendorId);
  if (filter.projectId !== undefined) q = q.where('project_id', '=', filter.projectId);
  if (filter.states && filter.states.length > 0) q = q.where('status', 'in', filter.states);
  if (filter.kind) q = q.where('kind', '=', filter.kind);
  if (filter.batchId) q = q.where('batch_id', '=', filter.batchId);
  if (filter.before) q = q.where('id', '<', filter.before);
  return q.orderBy('id', 'desc').limit(filter.limit).execute();
}

export async function findVendorBatch(db: Db, vendorId: string, batchId: string): Promise<Batch | undefined> {
  return db.selectFrom('batches').selectAll().where('id', '=', batchId).where('vendor_id', '=', vendorId).executeTakeFirst();
}

/** A batch's jobs in request order. */
export async function batchJobs(db: Db, vendorId: string, batchId: string): Promise<Job[]> {
  return db.selectFrom('jobs').selectAll().where('vendor_id', '=', vendorId).where('batch_id', '=', batchId).orderBy('batch_seq').orderBy('id').execute();
}

/** A batch and its jobs in request order, both read at once (two queries in flight together, not one per item). */
export async function batchWithJobs(db: Db, vendorId: string, batchId: string): Promise<{ batch: Batch; jobs: Job[] } | null> {
  const [batch, jobs] = await Promise.all([findVendorBatch(db, vendorId, batchId), batchJobs(db, vendorId, batchId)]);
  return batch ? { batch, jobs } : null;
}

export interface LedgerCount {
  vendorId: string;
  kind: JobKind;
  status: JobState;
  count: number;
  /** queued jobs that already had an attempt: waiting out a retry backoff */
  retrying: number;
}

/**
 * Jobs by vendor, kind and state (one vendor, or all when vendorId is null).
 * The per-state counts come from the (vendor, kind, status) index alone; the
 * retrying count only reads queued rows.
 */
export async function ledgerCounts(db: Db, vendorId: string | null, projectId: string | null = null): Promise<LedgerCount[]> {
  const vendorFilter =
    vendorId === null ? sql`` : projectId === null ? sql`AND vendor_id = ${vendorId}` : sql`AND vendor_id = ${vendorId} AND project_id = ${projectId}`;
  const [counts, retrying] = await Promise.all([
    sql<{ vendor_id: string; kind: JobKind; status: JobState; n: number }>`
      SELECT vendor_id, kind, status, COUNT(*) AS n FROM jobs WHERE 1 = 1 ${vendorFilter} GROUP BY vendor_id, kind, status`.execute(db),
    sql<{ vendor_id: string; kind: JobKind; n: number }>`
      SELECT vendor_id, kind, COUNT(*) AS n FROM jobs WHERE status = 'queued' AND attempts > 0 ${vendorFilter} GROUP BY vendor_id, kind`.execute(db),
  ]);
  const retryingBy = new Map(retrying.rows.map((r) => [`${r.vendor_id}|${r.kind}`, Number(r.n)]));
  return counts.rows.map((r) => ({
    vendorId: r.vendor_id,
    kind: r.kind,
    status: r.status,
    count: Number(r.n),
    retrying: r.status === 'queued' ? (retryingBy.get(`${r.vendor_id}|${r.kind}`) ?? 0) : 0,
  }));
}
