import fp from 'fastify-plugin';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { sql, type CompiledQuery } from 'kysely';
import type { Db } from '../db/connect.js';
import { idempotencyKeyQueries } from '../db/repos/idempotency.js';
import { countQueued, payloadOf, type PayloadFields } from '../db/repos/jobs.js';
import { appendEventsQueries } from '../db/repos/events.js';
import { claimRecordsQuery, type RecordClaim } from '../db/repos/records.js';
import type { NewBatch, NewIdempotencyKey, NewJob } from '../db/schema.js';
import { AppError } from '../jobs/errors.js';
import { eventsChannel, type EventLogNudge } from '../jobs/events.js';
import type { JobPayload, JobSource } from '../jobs/payloads.js';
import { bullAttempts, type JobKind } from '../jobs/queues.js';
import type { KindSet } from '../jobs/kinds.js';
import { newId, randomToken } from '../platform/ids.js';
import { queueOf, type Queues } from '../platform/queues.js';
import { withTimeout } from '../platform/timeout.js';
import { keySegment } from '../platform/storage/index.js';
import { IdempotencyConflictError } from './plugins/idempotency.js';
import { LedgerTransactions } from '../db/multi-statement.js';

/**
 * The durable half of every enqueue route. Ledger rows (and the batch row,
 * and the request's Idempotency-Key) are committed in one transaction before
 * anything reaches Redis; then the Bull jobs are added with the ledger ids.
 *
 * Group commit: the cost of an enqueue is the ledger commit's fsync, so
 * requests that arrive while a commit is in flight wait for the next one and
 * share it: one transaction, one multi-row INSERT per table, one addBulk per
 * queue. An idle API commits at once (no timer); under load each commit
 * carries many requests. If a shared transaction fails, each request is
 * committed on its own, so one bad request cannot fail its neighbours.
 *
 * Bull add failing after the commit (Redis went away in between): the jobs
 * are accepted (202) because they exist in the ledger; the worker's reconciler
 * queues every ledger job that Redis lacks. Routes check that Redis is up
 * before committing, so this only happens in that narrow window.
 */
export interface JobSpec {
  kind: JobKind;
  projectId: string;
  recordId: string;
  source: JobSource;
  options: JobPayload['options'];
}

export interface PlannedJobs {
  vendorId: string;
  batchId: string | null;
  jobIds: string[];
  rows: LedgerRow[];
  batch: NewBatch | null;
}

export interface EnqueueResult {
  jobIds: string[];
  batchId: string | null;
}

export interface Enqueuer {
  /** Commits planned jobs (with the request's Idempotency-Key row, if any), then adds them to Bull. */
  commit(plan: PlannedJobs, idempotency?: NewIdempotencyKey | null): Promise<void>;
  /** Waits for every commit in flight and the queue adds that follow them. */
  drain(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    enqueuer: Enqueuer;
  }
}

export interface EnqueueOptions {
  /** the ledger database (the writer keeps a small pool of its own, see ledger-transaction.ts) */
  mysqlUrl: string;
  /** most ledger rows one grouped transaction carries */
  maxRows: number;
  /** grouped transactions in flight at once */
  concurrency: number;
  idempotencyTtlMs: number;
  /** Bull prefix, which also names the vendors' event channels */
  bullPrefix: string;
}

/** Bull's lowest priority; positions beyond it share it. */
const MAX_PRIORITY = 2_097_151;
/** tries of a ledger transaction that InnoDB chose as a deadlock victim */
const LOCK_RETRIES = 3;
/** how long a vendor's count of waiting jobs (fair ordering) is trusted before it is read again */
const FAIR_REFRESH_MS = 1000;

type LedgerRow = NewJob & PayloadFields & { priority: number; batch_seq: number | null };

/** Ids, rows and the batch row for the specs, made before anything is written (ids are client-made). */
export function planJobs(vendorId: string, specs: readonly JobSpec[], options: { attempts: number; batch: boolean }): PlannedJobs {
  const first = specs[0];
  const batchId = options.batch && first ? newId() : null;
  const segments = new Map<string, string>();
  const segmentOf = (projectId: string) => {
    let segment = segments.get(projectId);
    if (segment === undefined) segments.set(projectId, (segment = keySegment(projectId)));
    return segment;
  };
  const rows: LedgerRow[] = specs.map((spec, i) => {
    const id = newId();
    return {
      id,
      vendor_id: vendorId,
      batch_id: batchId,
      batch_seq: batchId ? i : null,
      kind: spec.kind,
      project_id: spec.projectId,
      record_id: spec.recordId,
      source_url: spec.source.url,
      source_key: spec.source.type === 'stored' ? spec.source.key : null,
      options: JSON.stringify(spec.options),
      output_prefix: `${vendorId}/${segmentOf(spec.projectId)}/${id}-${randomToken(12)}`,
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
  const batch: NewBatch | null =
    batchId && first ? { id: batchId, vendor_id: vendorId, kind: first.kind, project_id: first.projectId, total: rows.length, finished_at: null } : null;
  return { vendorId, batchId, jobIds: rows.map((r) => r.id), rows, batch };
}

/** Plans and commits in one call, for callers that do not build a response first. */
export async function enqueueJobs(
  app: FastifyInstance,
  vendorId: string,
  specs: JobSpec[],
  options: { attempts: number; batch: boolean },
): Promise<EnqueueResult> {
  if (specs.length === 0) return { jobIds: [], batchId: null };
  const plan = planJobs(vendorId, specs, options);
  await app.enqueuer.commit(plan);
  return { jobIds: plan.jobIds, batchId: plan.batchId };
}

/**
 * Refuses at once (503) when Redis is not connected: the connections do not
 * queue commands while Redis is away, and accepting jobs that cannot be
 * queued would leave them to the reconciler.
 */
export function assertQueueable(app: FastifyInstance): void {
  const down = app.redis.status !== 'ready' || Object.values(app.queues).some((q) => q.client.status !== 'ready');
  if (down) throw new AppError('SERVICE_UNAVAILABLE', 'the queue (Redis) is unavailable; nothing was queued, retry shortly');
}

export default fp<EnqueueOptions>(
  async (app, opts) => {
    const transactions = new LedgerTransactions(opts.mysqlUrl, opts.concurrency * 2);
    const writer = new LedgerWriter(app.db, transactions, app.queues, app.jobKinds, app.redis, app.log, opts);
    app.decorate('enqueuer', {
      commit: (plan: PlannedJobs, idempotency?: NewIdempotencyKey | null) => writer.write(plan, idempotency ?? null),
      drain: () => writer.drain(),
    });
    app.addHook('onReady', async () => {
      // The queues connect in the background; wait a little so the first
      // requests do not see a connection that is still coming up as down.
      await withTimeout(
        Promise.all(Object.values(app.queues).map((q) => q.isReady())).catch(() => undefined),
        3000,
        { orElse: undefined },
      );
    });
    app.addHook('preClose', async () => writer.drain());
    app.addHook('onClose', async () => transactions.close());
  },
  { name: 'enqueue', dependencies: ['mysql', 'queues', 'redis'] },
);

interface WriteUnit {
  plan: PlannedJobs;
  idempotency: NewIdempotencyKey | null;
  resolve: () => void;
  reject: (error: unknown) => void;
}

class LedgerWriter {
  private readonly pending: WriteUnit[] = [];
  private readonly flushes = new Set<Promise<void>>();
  private readonly adds = new Set<Promise<void>>();
  private readonly keysInFlight = new Set<string>();
  private readonly fair: FairPositions;
  private packetBudget: Promise<number> | null = null;

  constructor(
    private readonly db: Db,
    private readonly transactions: LedgerTransactions,
    private readonly queues: Queues,
    private readonly kinds: KindSet,
    private readonly redis: Redis,
    private readonly log: FastifyBaseLogger,
    private readonly opts: EnqueueOptions,
  ) {
    this.fair = new FairPositions(db, log);
  }

  write(plan: PlannedJobs, idempotency: NewIdempotencyKey | null): Promise<void> {
    if (plan.rows.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ plan, idempotency, resolve, reject });
      this.pump();
    });
  }

  async drain(): Promise<void> {
    while (this.flushes.size > 0 || this.adds.size > 0) await Promise.allSettled([...this.flushes, ...this.adds]);
  }

  private pump(): void {
    while (this.flushes.size < this.opts.concurrency && this.pending.length > 0) {
      const group = this.take();
      if (group.length === 0) return;
      const flush = this.flush(group).finally(() => {
        for (const unit of group) {
          const key = idempotencyKeyOf(unit);
          if (key !== null) this.keysInFlight.delete(key);
        }
        this.flushes.delete(flush);
        this.pump();
      });
      this.flushes.add(flush);
    }
  }

  /**
   * The next group: requests in arrival order, up to maxRows rows (always at
   * least one request). A request whose Idempotency-Key is already in this or
   * an in-flight group waits for the next one, so it meets the committed key
   * (and replays it) instead of racing it for the same row.
   */
  private take(): WriteUnit[] {
    const group: WriteUnit[] = [];
    let rows = 0;
    for (let i = 0; i < this.pending.length;) {
      const next = this.pending[i] as WriteUnit;
      const key = idempotencyKeyOf(next);
      if (key !== null && this.keysInFlight.has(key)) {
        i++;
        continue;
      }
      if (group.length > 0 && rows + next.plan.rows.length > this.opts.maxRows) break;
      group.push(next);
      rows += next.plan.rows.length;
      if (key !== null) this.keysInFlight.add(key);
      this.pending.splice(i, 1);
    }
    return group;
  }

  /**
   * Commits a group and hands it to the queue step. The slot is free again
   * once the commit is done: the next group commits while this one's Bull
   * jobs are added.
   */
  private async flush(group: WriteUnit[]): Promise<void> {
    let committed: WriteUnit[];
    try {
      await this.assignPriorities(group);
      await this.commitUnits(group);
      committed = group;
    } catch (error) {
      if (group.length === 1) {
        (group[0] as WriteUnit).reject(error);
        return;
      }
      this.log.debug({ err: error, requests: group.length }, 'grouped ledger commit failed; committing its requests one by one');
      committed = [];
      await Promise.all(
        group.map((unit) =>
          this.commitUnits([unit]).then(
            () => committed.push(unit),
            (e: unknown) => unit.reject(e),
          ),
        ),
      );
    }
    this.nudge(committed);
    const adding = this.addToQueues(committed).then(() => {
      for (const unit of committed) unit.resolve();
    });
    this.adds.add(adding);
    void adding.finally(() => this.adds.delete(adding));
  }

  /** Tells the vendors' event streams that their log has new `queued` events (best effort: streams also re-read on their heartbeat). */
  private nudge(units: readonly WriteUnit[]): void {
    const at = new Date().toISOString();
    for (const vendorId of new Set(units.map((u) => u.plan.vendorId))) {
      const message: EventLogNudge = { type: 'log', vendorId, at };
      this.redis.publish(eventsChannel(this.opts.bullPrefix, vendorId), JSON.stringify(message)).catch(() => undefined);
    }
  }

  /** Fair ordering: a vendor's n-th waiting job of a kind gets priority n, so the queue interleaves vendors. */
  private async assignPriorities(group: WriteUnit[]): Promise<void> {
    const pairs = new Set<string>();
    for (const unit of group) for (const row of unit.plan.rows) pairs.add(FairPositions.key(row.vendor_id, row.kind));
    await this.fair.refresh(pairs);
    for (const unit of group) {
      for (const row of unit.plan.rows) row.priority = Math.min(MAX_PRIORITY, this.fair.next(row.vendor_id, row.kind));
    }
  }

  /** InnoDB may pick a transaction as a deadlock victim (concurrent upserts of one vendor's records): run it again. */
  private async commitUnits(units: WriteUnit[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.commitOnce(units);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (attempt >= LOCK_RETRIES || (code !== 'ER_LOCK_DEADLOCK' && code !== 'ER_LOCK_WAIT_TIMEOUT')) throw error;
        this.log.debug({ err: error, attempt }, 'ledger commit hit a lock conflict; retrying');
      }
    }
  }

  private async commitOnce(units: WriteUnit[]): Promise<void> {
    const budget = await this.statementBudget();
    const rows = units.flatMap((u) => u.plan.rows);
    const batches = units.flatMap((u) => (u.plan.batch ? [u.plan.batch] : []));
    const keys = units.flatMap((u) => (u.idempotency ? [u.idempotency] : []));
    const claims: RecordClaim[] = rows.map((r) => ({
      vendorId: r.vendor_id,
      projectId: r.project_id,
      recordId: r.record_id,
      photoUrl: r.source_url ?? null,
      jobId: r.id,
    }));
    // The key goes first: a duplicate (a concurrent retry committed first)
    // fails the transaction before anything else is written.
    const statements: CompiledQuery[] = [
      ...idempotencyKeyQueries(this.db, keys, this.opts.idempotencyTtlMs),
      ...(batches.length > 0 ? [this.db.insertInto('batches').values(batches).compile()] : []),
      ...chunkBySize(rows, rowSize, budget).map((chunk) => this.db.insertInto('jobs').values(chunk).compile()),
      ...chunkBySize(claims, claimSize, budget).map((chunk) => claimRecordsQuery(this.db, chunk).compile()),
      // Last: the vendors' event counters stay locked from here to the commit.
      ...appendEventsQueries(
        this.db,
        rows.map((r) => ({ vendorId: r.vendor_id, type: 'queued' as const, jobId: r.id, batchId: r.batch_id ?? null, kind: r.kind })),
      ),
    ];
    try {
      await this.transactions.run(statements, budget);
    } catch (error) {
      if (keys.length > 0 && (error as { code?: string }).code === 'ER_DUP_ENTRY') {
        throw new IdempotencyConflictError('Idempotency-Key committed by another request', { cause: error });
      }
      throw error;
    }
  }

  private async addToQueues(units: WriteUnit[]): Promise<void> {
    const byQueue = new Map<string, LedgerRow[]>();
    for (const unit of units) {
      for (const row of unit.plan.rows) {
        const queue = this.kinds.get(row.kind).queue;
        let list = byQueue.get(queue);
        if (!list) byQueue.set(queue, (list = []));
        list.push(row);
      }
    }
    await Promise.all(
      [...byQueue].map(async ([queue, list]) => {
        try {
          await queueOf(this.queues, queue).addBulk(
            list.map((row) => ({ data: payloadOf(row), opts: { jobId: row.id, priority: row.priority, attempts: bullAttempts(row.max_attempts) } })),
          );
        } catch (error) {
          // Committed to the ledger already: the reconciler will queue them.
          this.log.warn({ err: error, queue, jobIds: list.map((r) => r.id) }, 'jobs recorded but not yet queued in Redis; the reconciler will add them');
        }
      }),
    );
  }

  /** Bytes one INSERT may take: half the server's max_allowed_packet, leaving room for escaping. */
  private statementBudget(): Promise<number> {
    this.packetBudget ??= sql<{ p: number }>`SELECT @@max_allowed_packet AS p`
      .execute(this.db)
      .then((r) => Math.max(8 * 1024, Math.floor(Number(r.rows[0]?.p ?? 65536) / 2)))
      .catch((error: unknown) => {
        this.packetBudget = null;
        throw error;
      });
    return this.packetBudget;
  }
}

/**
 * Per vendor and kind, how many jobs wait in line: read from the ledger,
 * counted up locally in between, and read again in the background once it is
 * FAIR_REFRESH_MS old (a commit waits for the count only the first time a
 * vendor and kind are seen: a vendor with a large backlog can take tens of
 * milliseconds to count). Approximate across API processes, which is all
 * fair ordering needs.
 */
class FairPositions {
  private readonly counts = new Map<string, { base: number; added: number; at: number; refreshing: boolean }>();

  constructor(
    private readonly db: Db,
    private readonly log: FastifyBaseLogger,
  ) {}

  static key(vendorId: string, kind: JobKind): string {
    return `${vendorId}|${kind}`;
  }

  async refresh(keys: Set<string>): Promise<void> {
    const now = Date.now();
    const unknown: Promise<void>[] = [];
    for (const k of keys) {
      const c = this.counts.get(k);
      if (!c) unknown.push(this.load(k));
      else if (now - c.at > FAIR_REFRESH_MS && !c.refreshing) {
        c.refreshing = true;
        this.load(k).catch((error: unknown) => {
          c.refreshing = false;
          this.log.debug({ err: error }, 'could not refresh a waiting-jobs count; keeping the old one');
        });
      }
    }
    await Promise.all(unknown);
    if (this.counts.size > 50_000) {
      for (const [k, c] of this.counts) if (now - c.at > 60 * FAIR_REFRESH_MS) this.counts.delete(k);
    }
  }

  next(vendorId: string, kind: JobKind): number {
    const k = FairPositions.key(vendorId, kind);
    let c = this.counts.get(k);
    if (!c) this.counts.set(k, (c = { base: 0, added: 0, at: 0, refreshing: false }));
    c.added += 1;
    return c.base + c.added;
  }

  private async load(k: string): Promise<void> {
    const [vendorId, kind] = k.split('|') as [string, JobKind];
    const base = await countQueued(this.db, vendorId, kind);
    this.counts.set(k, { base, added: 0, at: Date.now(), refreshing: false });
  }
}

function idempotencyKeyOf(unit: WriteUnit): string | null {
  return unit.idempotency ? `${unit.idempotency.vendor_id}|${unit.idempotency.idem_key}` : null;
}

/** Splits rows so that each multi-row INSERT stays under `budget` bytes. */
export function chunkBySize<T>(items: readonly T[], sizeOf: (item: T) => number, budget: number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 512;
  for (const item of items) {
    const size = sizeOf(item);
    if (current.length > 0 && bytes + size > budget) {
      chunks.push(current);
      current = [];
      bytes = 512;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function rowSize(row: LedgerRow): number {
  let bytes = 64;
  for (const value of Object.values(row)) bytes += typeof value === 'string' ? value.length + 4 : 12;
  return bytes;
}

function claimSize(claim: RecordClaim): number {
  return 96 + claim.vendorId.length + claim.projectId.length + claim.recordId.length + (claim.photoUrl?.length ?? 0) + claim.jobId.length;
}
