import { sql, type CompiledQuery, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database, IdempotencyKey, NewIdempotencyKey } from '../schema.js';

/**
 * Remembered Idempotency-Keys. A key lives `ttlMs` from its first use; an
 * expired row is treated as absent and replaced by the next use of the key.
 */
type Conn = Db | Transaction<Database>;

export async function findIdempotencyKey(db: Conn, vendorId: string, key: string, ttlMs: number): Promise<IdempotencyKey | undefined> {
  return db
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('vendor_id', '=', vendorId)
    .where('idem_key', '=', key)
    .where('created_at', '>', sql<Date>`NOW(3) - INTERVAL ${ttlMs * 1000} MICROSECOND`)
    .executeTakeFirst();
}

/**
 * Inserts the keys of requests being committed. An expired row for the same
 * key is removed first; a live one makes the INSERT fail with a duplicate
 * key, which the caller turns into a replay of the first response.
 */
export async function insertIdempotencyKeys(trx: Conn, rows: NewIdempotencyKey[], ttlMs: number): Promise<void> {
  for (const query of idempotencyKeyQueries(trx, rows, ttlMs)) await trx.executeQuery(query);
}

/** The statements insertIdempotencyKeys runs, compiled, for callers that batch statements themselves. */
export function idempotencyKeyQueries(db: Conn, rows: NewIdempotencyKey[], ttlMs: number): CompiledQuery[] {
  if (rows.length === 0) return [];
  const expired = rows.map((row) =>
    db
      .deleteFrom('idempotency_keys')
      .where('vendor_id', '=', row.vendor_id)
      .where('idem_key', '=', row.idem_key)
      .where('created_at', '<=', sql<Date>`NOW(3) - INTERVAL ${ttlMs * 1000} MICROSECOND`)
      .compile(),
  );
  return [...expired, db.insertInto('idempotency_keys').values(rows).compile()];
}

/** Best-effort insert for routes whose work is not in a transaction of ours. */
export async function rememberIdempotencyKey(db: Conn, row: NewIdempotencyKey): Promise<void> {
  await db.insertInto('idempotency_keys').values(row).ignore().execute();
}

export async function deleteExpiredIdempotencyKeys(db: Db, ttlMs: number, batch = 1000): Promise<number> {
  let deleted = 0;
  for (;;) {
    const result = await sql`DELETE FROM idempotency_keys WHERE created_at <= NOW(3) - INTERVAL ${ttlMs * 1000} MICROSECOND LIMIT ${batch}`.execute(db);
    const n = Number(result.numAffectedRows ?? 0);
    deleted += n;
    if (n < batch) return deleted;
  }
}
