import { sql } from 'kysely';
import type { Db } from '../connect.js';
import { isPacketTooLarge } from '../errors.js';
import { AppError } from '../../jobs/errors.js';

/**
 * Chunked result writes (seed 003, "Database Optimization"). A result is a set
 * of top-level fields, each stored as its own row of JSON, so no single row or
 * statement has to hold the whole result. Rows are written `chunkSize` fields
 * per statement; a statement the server refuses for `max_allowed_packet` is
 * tried again with the chunk halved, down to one field. A single field larger
 * than the limit cannot be written: RESULT_TOO_LARGE.
 */
export type FieldTable = 'job_result_fields' | 'record_fields';

export interface FieldRow {
  owner: string | number;
  field: string;
  value: string;
}

const OWNER_COLUMN = { job_result_fields: 'job_id', record_fields: 'record_pk' } as const satisfies Record<FieldTable, string>;

export function toFieldRows(owner: string | number, result: Record<string, unknown>): FieldRow[] {
  return Object.entries(result)
    .filter(([, value]) => value !== undefined)
    .map(([field, value]) => ({ owner, field, value: JSON.stringify(value) }));
}

/**
 * The chunk size for one try, and a flag the writer raises when the server
 * refuses a packet: the refusal kills the connection, so the error that
 * finally escapes a transaction is often the failed ROLLBACK, not the refusal.
 */
export interface ChunkPlan {
  readonly size: number;
  refused: boolean;
}

/** Writes rows in chunks of `plan.size` per INSERT … ON DUPLICATE KEY UPDATE. */
export async function writeFieldRows(db: Db, table: FieldTable, rows: FieldRow[], plan: ChunkPlan): Promise<number> {
  const owner = sql.ref(OWNER_COLUMN[table]);
  let statements = 0;
  for (let i = 0; i < rows.length; i += plan.size) {
    const chunk = rows.slice(i, i + plan.size);
    const values = sql.join(chunk.map((r) => sql`(${r.owner}, ${r.field}, ${r.value})`));
    try {
      await sql`INSERT INTO ${sql.table(table)} (${owner}, field, value) VALUES ${values} ON DUPLICATE KEY UPDATE value = VALUES(value)`.execute(db);
    } catch (error) {
      if (isPacketTooLarge(error)) plan.refused = true;
      throw error;
    }
    statements++;
  }
  return statements;
}

/**
 * Runs `write(chunkSize)` (usually a whole transaction) and, when the server
 * refuses a packet, runs it again with half the chunk size. The refused
 * statement killed its connection and the transaction with it, so the retry
 * starts from the top; everything it writes is an upsert, so that is safe.
 */
export async function withChunkHalving<T>(initialChunkSize: number, write: (plan: ChunkPlan) => Promise<T>): Promise<T> {
  let chunkSize = Math.max(1, initialChunkSize);
  for (;;) {
    const plan: ChunkPlan = { size: chunkSize, refused: false };
    try {
      return await write(plan);
    } catch (error) {
      if (!plan.refused && !isPacketTooLarge(error)) throw error;
      if (chunkSize === 1) {
        throw new AppError('RESULT_TOO_LARGE', 'a single result field is larger than the database max_allowed_packet', { cause: error });
      }
      chunkSize = Math.max(1, Math.floor(chunkSize / 2));
    }
  }
}

/** Reads the fields of many owners back into objects. */
export async function readFields(db: Db, table: FieldTable, owners: readonly (string | number)[]): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  if (owners.length === 0) return out;
  const column = OWNER_COLUMN[table];
  const rows = await sql<{ owner: string | number; field: string; value: string }>`
    SELECT ${sql.ref(column)} AS owner, field, value FROM ${sql.table(table)} WHERE ${sql.ref(column)} IN (${sql.join([...owners])})`.execute(db);
  for (const row of rows.rows) {
    const key = String(row.owner);
    const fields = out.get(key) ?? {};
    fields[row.field] = JSON.parse(row.value);
    out.set(key, fields);
  }
  return out;
}
