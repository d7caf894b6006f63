import { sql, type CompiledQuery, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database, EventType, JobEventRow } from '../schema.js';
import type { JobKind } from '../../jobs/queues.js';

/**
 * The ledger's event log (see migration 0010). Events are appended by the
 * last statements of the transaction that makes the change: the vendor's
 * counter row in `event_seqs` is locked from there to the commit, so one
 * vendor's events commit in `seq` order. Readers page by `seq > n` and can
 * never skip an event that commits later.
 */
export interface NewEvent {
  vendorId: string;
  type: EventType;
  jobId: string | null;
  batchId: string | null;
  kind: JobKind;
  errorCode?: string | null;
  errorMessage?: string | null;
}

/** Event types that are delivered by webhook. */
export const WEBHOOK_EVENT_TYPES: readonly EventType[] = ['completed', 'failed', 'dead', 'batch.finished'];

type Conn = Db | Transaction<Database>;

/**
 * The statements that append `events`; they must run LAST in their
 * transaction (nothing may wait on another lock after the counter is taken).
 * Vendors are taken in id order, so two transactions that append for the
 * same vendors cannot deadlock on their counters.
 */
export function appendEventsQueries(db: Conn, events: readonly NewEvent[]): CompiledQuery[] {
  const byVendor = new Map<string, NewEvent[]>();
  for (const event of events) {
    let list = byVendor.get(event.vendorId);
    if (!list) byVendor.set(event.vendorId, (list = []));
    list.push(event);
  }
  const statements: CompiledQuery[] = [];
  for (const vendorId of [...byVendor.keys()].sort()) {
    const list = byVendor.get(vendorId) as NewEvent[];
    const n = list.length;
    statements.push(sql`INSERT INTO event_seqs (vendor_id, seq) VALUES (${vendorId}, ${n}) ON DUPLICATE KEY UPDATE seq = seq + ${n}`.compile(db));
    const hooked = list.some((e) => WEBHOOK_EVENT_TYPES.includes(e.type))
      ? sql`COALESCE((SELECT webhook_url IS NOT NULL AND webhook_url <> '' FROM vendors WHERE id = ${vendorId}), 0)`
      : sql`0`;
    const rows = list.map(
      (e, k) =>
        sql`(${vendorId}, (SELECT seq FROM event_seqs WHERE vendor_id = ${vendorId}) - ${n - 1 - k}, ${e.type}, ${e.jobId}, ${e.batchId}, ${e.kind}, ${
          e.errorCode ?? null
        }, ${e.errorMessage?.slice(0, 1024) ?? null}, ${WEBHOOK_EVENT_TYPES.includes(e.type) ? hooked : sql`0`})`,
    );
    statements.push(
      sql`INSERT INTO job_events (vendor_id, seq, type, job_id, batch_id, kind, error_code, error_message, webhook_pending) VALUES ${sql.join(rows)}`.compile(
        db,
      ),
    );
  }
  return statements;
}

/** Appends events inside a Kysely transaction; call it as the transaction's last step. */
export async function appendEvents(trx: Transaction<Database>, events: readonly NewEvent[]): Promise<void> {
  for (const query of appendEventsQueries(trx, events)) await trx.executeQuery(query);
}

/** A vendor's events after `afterSeq`, oldest first. */
export async function eventsAfter(db: Db, vendorId: string, afterSeq: number, limit: number): Promise<JobEventRow[]> {
  return db.selectFrom('job_events').selectAll().where('vendor_id', '=', vendorId).where('seq', '>', afterSeq).orderBy('seq').limit(limit).execute();
}

/**
 * As eventsAfter, each row with the project of its job (or batch); null
 * when the job is gone. A project-restricted event stream keeps its own
 * project's rows and still moves past the others.
 */
export async function eventsAfterWithProject(
  db: Db,
  vendorId: string,
  afterSeq: number,
  limit: number,
): Promise<(JobEventRow & { project_id: string | null })[]> {
  return db
    .selectFrom('job_events as e')
    .leftJoin('jobs as j', 'j.id', 'e.job_id')
    .leftJoin('batches as b', 'b.id', 'e.batch_id')
    .selectAll('e')
    .select((eb) => eb.fn.coalesce('j.project_id', 'b.project_id').as('project_id'))
    .where('e.vendor_id', '=', vendorId)
    .where('e.seq', '>', afterSeq)
    .orderBy('e.seq')
    .limit(limit)
    .execute();
}

/** The vendor's last committed event number (0 before its first event). */
export async function lastEventSeq(db: Db, vendorId: string): Promise<number> {
  const row = await db.selectFrom('event_seqs').select('seq').where('vendor_id', '=', vendorId).executeTakeFirst();
  return row ? Number(row.seq) : 0;
}

/** The oldest event the vendor still has (events are pruned after a retention period), or null. */
export async function firstEventSeq(db: Db, vendorId: string): Promise<number | null> {
  const row = await db.selectFrom('job_events').select('seq').where('vendor_id', '=', vendorId).orderBy('seq').limit(1).executeTakeFirst();
  return row ? Number(row.seq) : null;
}

/** Final events waiting for their webhook delivery to be queued (the outbox). */
export async function pendingWebhookEvents(db: Db, limit: number): Promise<JobEventRow[]> {
  return db.selectFrom('job_events').selectAll().where('webhook_pending', '=', 1).orderBy('created_at').limit(limit).execute();
}

export async function clearWebhookPending(db: Db, events: readonly { vendor_id: string; seq: number }[]): Promise<void> {
  if (events.length === 0) return;
  await db
    .updateTable('job_events')
    .set({ webhook_pending: 0 })
    .where((eb) => eb.or(events.map((e) => eb.and([eb('vendor_id', '=', e.vendor_id), eb('seq', '=', e.seq)]))))
    .execute();
}

export async function findEvent(db: Db, vendorId: string, seq: number): Promise<JobEventRow | undefined> {
  return db.selectFrom('job_events').selectAll().where('vendor_id', '=', vendorId).where('seq', '=', seq).executeTakeFirst();
}

/**
 * Counts one more finished job of a batch; when it was the last one, the
 * batch is stamped finished and `true` comes back. Exactly one transaction
 * sees the last job end: the batch row is locked by the UPDATE until commit.
 * (MySQL evaluates SET left to right: finished_at reads the old count.)
 */
export async function countBatchJobFinished(trx: Transaction<Database>, batchId: string): Promise<boolean> {
  await sql`UPDATE batches SET finished_at = IF(finished_at IS NULL AND jobs_finished + 1 >= total, NOW(3), finished_at), jobs_finished = jobs_finished + 1
            WHERE id = ${batchId}`.execute(trx);
  const row = await trx.selectFrom('batches').select(['jobs_finished', 'total']).where('id', '=', batchId).executeTakeFirst();
  return row !== undefined && Number(row.jobs_finished) === Number(row.total);
}

/** A finished job of the batch is running again (a dead letter retried): the batch is open again. */
export async function countBatchJobReopened(trx: Transaction<Database>, batchId: string): Promise<void> {
  await sql`UPDATE batches SET jobs_finished = GREATEST(jobs_finished, 1) - 1, finished_at = NULL WHERE id = ${batchId}`.execute(trx);
}
