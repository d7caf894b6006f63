import { sql } from 'kysely';
import type { Db } from '../db/connect.js';
import type { Logger } from './logger.js';
import type { Storage } from './storage/index.js';

/**
 * Removes stored files whose rows are gone (`storage_garbage`, written in
 * the transaction that deleted the rows; migration 0013). A file is removed
 * and only then is its garbage row deleted, so a failure leaves the row to
 * be tried again later, with a growing wait, and nothing is ever forgotten.
 * Removing twice is harmless, so two processes collecting at once are fine.
 */
export interface GarbageRun {
  removed: number;
  failed: number;
}

export interface CollectOptions {
  /** only this vendor's files (the API, after a vendor's delete) */
  vendorId?: string;
  log?: Pick<Logger, 'warn'> | { warn(details: object, message: string): void };
  signal?: AbortSignal;
}

export async function collectGarbage(db: Db, storage: Storage, limit: number, options: CollectOptions = {}): Promise<GarbageRun> {
  const { log, signal } = options;
  let q = db
    .selectFrom('storage_garbage')
    .select(['id', 'vendor_id', 'target', 'is_prefix', 'tries'])
    .where('not_before', '<=', sql<Date>`NOW(3)`);
  if (options.vendorId) q = q.where('vendor_id', '=', options.vendorId);
  const due = await q.orderBy('not_before').orderBy('id').limit(limit).execute();
  const done: number[] = [];
  let failed = 0;
  // Single keys (uploads) go to storage together, prefixes (a job's outputs) one by one.
  const keys = due.filter((g) => !g.is_prefix);
  if (keys.length > 0) {
    try {
      await storage.remove({ keys: keys.map((g) => g.target) }, signal);
      done.push(...keys.map((g) => g.id));
    } catch (error) {
      failed += keys.length;
      await retryLater(db, keys, error);
      log?.warn({ err: error, files: keys.length }, 'removing stored uploads failed; will try again');
    }
  }
  for (const g of due.filter((g) => g.is_prefix)) {
    signal?.throwIfAborted();
    try {
      await storage.remove({ prefix: g.target }, signal);
      done.push(g.id);
    } catch (error) {
      failed += 1;
      await retryLater(db, [g], error);
      log?.warn({ err: error, vendorId: g.vendor_id, prefix: g.target }, 'removing stored outputs failed; will try again');
    }
  }
  if (done.length > 0) await db.deleteFrom('storage_garbage').where('id', 'in', done).execute();
  return { removed: done.length, failed };
}

/** Garbage rows not yet collected (for usage and tests). */
export async function pendingGarbage(db: Db, vendorId?: string): Promise<number> {
  let q = db.selectFrom('storage_garbage').select((eb) => eb.fn.countAll<number>().as('n'));
  if (vendorId) q = q.where('vendor_id', '=', vendorId);
  return Number((await q.executeTakeFirstOrThrow()).n);
}

async function retryLater(db: Db, rows: readonly { id: number; tries: number }[], error: unknown): Promise<void> {
  const message = String((error as Error)?.message ?? error).slice(0, 500);
  for (const row of rows) {
    const waitMs = Math.min(3_600_000, 1000 * 2 ** Math.min(row.tries, 12));
    await db
      .updateTable('storage_garbage')
      .set({ tries: sql<number>`tries + 1`, last_error: message, not_before: new Date(Date.now() + waitMs) })
      .where('id', '=', row.id)
      .execute();
  }
}
