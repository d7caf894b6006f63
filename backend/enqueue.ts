import type { FastifyInstance } from 'fastify';
import { bullAttempts, QUEUE_NAMES, type JobKind } from '../jobs/queues.js';
import type { JobPayload, JobSource } from '../jobs/payloads.js';
import { countQueued, insertJobs, payloadOf, type PayloadFields } from '../db/repos/jobs.js';
import { claimRecords } from '../db/repos/records.js';
import type { NewJob } from '../db/schema.js';
import { newId, randomToken } from '../platform/ids.js';
import { keySegment } from '../platform/storage/index.js';

/**
 * The durable half of every enqueue route: the ledger rows (and batch row)
 * are committed in one transaction before anything reaches Redis, then the
 * Bull jobs are added with the ledger ids. If Redis fails after the commit
 * the jobs are not lost: the worker's reconciler queues them again.
 */
export interface JobSpec {
  kind: JobKind;
  projectId: string;
  recordId: string;
  source: JobSource;
  options: JobPayload['options'];
}

export interface EnqueueResult {
  jobIds: string[];
  batchId: string | null;
}

/** Bull's lowest priority; positions beyond it share it. */
const MAX_PRIORITY = 2_097_151;

type LedgerRow = NewJob & PayloadFields & { priority: number };

export async function enqueueJobs(
  app: FastifyInstance,
  vendorId: string,
  specs: JobSpec[],
  options: { attempts: number; batch: boolean },
): Promise<EnqueueResult> {
  const first = specs[0];
  if (!first) return { jobIds: [], batchId: null };
  const batchId = options.batch ? newId() : null;
  const rows: LedgerRow[] = specs.map((spec) => {
    const id = newId();
    return {
      id,
      vendor_id: vendorId,
      batch_id: batchId,
      kind: spec.kind,
      project_id: spec.projectId,
      record_id: spec.recordId,
      source_url: spec.source.url,
      source_key: spec.source.type === 'stored' ? spec.source.key : null,
      options: JSON.stringify(spec.options),
      output_prefix: `${vendorId}/${keySegment(spec.projectId)}/${id}-${randomToken(12)}`,
      status: 'queued',
      max_attempts: options.attempts,
      priority: 1,
      error_code: null,
      error_message: null,
      started_at: null,
      finished_at: null,
      duration_ms: null,
    };
  });

  await app.db.transaction().execute(async (trx) => {
    // Fair ordering: a vendor's n-th waiting job gets priority n, so the
    // queue interleaves vendors instead of serving one bulk to the end.
    const waitingByKind = new Map<JobKind, number>();
    for (const row of rows) {
      const waiting = waitingByKind.get(row.kind) ?? (await countQueued(trx, vendorId, row.kind));
      waitingByKind.set(row.kind, waiting + 1);
      row.priority = Math.min(MAX_PRIORITY, waiting + 1);
    }
    if (batchId) {
      await trx
        .insertInto('batches')
        .values({ id: batchId, vendor_id: vendorId, kind: first.kind, project_id: first.projectId, total: rows.length, finished_at: null })
        .execute();
    }
    await insertJobs(trx, rows);
    await claimRecords(
      trx,
      rows.map((r) => ({ vendorId, projectId: r.project_id, recordId: r.record_id, photoUrl: r.source_url ?? null, jobId: r.id })),
    );
  });

  await addToQueues(app, rows);
  return { jobIds: rows.map((r) => r.id), batchId };
}

async function addToQueues(app: FastifyInstance, rows: LedgerRow[]): Promise<void> {
  const byQueue = new Map<string, LedgerRow[]>();
  for (const row of rows) {
    const queue = QUEUE_NAMES[row.kind];
    byQueue.set(queue, [...(byQueue.get(queue) ?? []), row]);
  }
  try {
    await Promise.all(
      [...byQueue].map(([queue, list]) =>
        app.queues[queue as keyof typeof app.queues].addBulk(
          list.map((row) => ({
            data: payloadOf(row),
            opts: { jobId: row.id, priority: row.priority, attempts: bullAttempts(row.max_attempts) },
          })),
        ),
      ),
    );
  } catch (error) {
    // Committed to the ledger already: the reconciler will queue them.
    app.log.warn({ err: error, jobIds: rows.map((r) => r.id) }, 'jobs recorded but not yet queued in Redis; the reconciler will add them');
  }
}
