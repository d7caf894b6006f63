import { sql, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database } from '../schema.js';
import type { BatchStatement } from '../multi-statement.js';
import { isPacketTooLarge, isTransientDbError } from '../errors.js';
import { AppError } from '../../jobs/errors.js';

/**
 * Chunked result writes (seed 003, "Database Optimization"). A result is a set
 * of top-level fields, each stored as its own row of JSON, so no single row or
 * statement has to hold the whole result. Rows are written `chunkSize` fields
 * per statement.
 *
 * The server's `max_allowed_packet` is read (and cached) before a write, and a
 * statement that would exceed it is split in halves before it is sent, down
 * to one field; a single field that cannot fit fails with RESULT_TOO_LARGE.
 * That matters because MariaDB answers an oversized packet by closing the
 * connection, and the client usually sees only ECONNRESET, not the
 * "packet too large" error. When a statement is refused anyway (the limit was
 * lowered since it was read), the whole write is tried again with the chunk
 * halved and the limit read afresh.
 */
export type FieldTable = 'job_result_fields' | 'record_fields';

export interface FieldRow {
  owner: string | number;
  field: string;
  value: string;
}

const OWNER_COLUMN = { job_result_fields: 'job_id', record_fields: 'record_pk' } as const satisfies Record<FieldTable, string>;

/** Bytes kept free under max_allowed_packet for the statement text and the packet header. */
const PACKET_HEADROOM = 1024;
/** How long a read max_allowed_packet is trusted before it is read again. */
const PACKET_LIMIT_TTL_MS = 60_000;
/** Connection-level failures a write survives before it gives up (a refused packet leaves a dead pooled connection behind). */
const TRANSIENT_RETRIES = 3;

type Conn = Db | Transaction<Database>;

export function toFieldRows(owner: string | number, result: Record<string, unknown>): FieldRow[] {
  return Object.entries(result)
    .filter(([, value]) => value !== undefined)
    .map(([field, value]) => ({ owner, field, value: JSON.stringify(value) }));
}

/**
 * The chunk size for one try, the largest statement the server accepts, and
 * what the writer reports back when a statement is refused: the refusal kills
 * the connection, so the error that finally escapes a transaction is often the
 * failed ROLLBACK, not the refusal.
 */
export interface ChunkPlan {
  readonly size: number;
  /** largest statement, in bytes, this write may send */
  readonly maxStatementBytes: number;
  refused: boolean;
  /** rows in the statement that was refused */
  refusedRows: number;
  /** statements sent */
  statements: number;
}

/**
 * Writes rows `plan.size` at a time per INSERT … ON DUPLICATE KEY UPDATE,
 * splitting any statement that would not fit, inside a multi-statement
 * session (db/multi-statement.ts), packed into as few packets as max_allowed_packet allows, the last one
 * ending with `tail` and COMMIT: for a usual result, one round trip.
 */
export async function writeFieldRowsWith(
  send: (statements: readonly BatchStatement[]) => Promise<unknown[]>,
  db: Db,
  tables: readonly (readonly [FieldTable, FieldRow[]])[],
  plan: ChunkPlan,
  /** statements that go last, just before the COMMIT */
  tail: readonly BatchStatement[] = [],
): Promise<void> {
  const chunks = tables.flatMap(([table, rows]) => planChunks(rows, plan).map((chunk) => ({ table, chunk, bytes: statementBytes(chunk) })));
  let packet: typeof chunks = [];
  let bytes = 0;
  const flush = async (last: boolean) => {
    try {
      await send([...packet.map((c) => fieldInsert(c.table, c.chunk).compile(db)), ...(last ? [...tail, 'COMMIT' as const] : [])]);
    } catch (error) {
      throw refusal(error, plan, Math.max(0, ...packet.map((c) => c.chunk.length)));
    }
    plan.statements += packet.length;
    packet = [];
    bytes = 0;
  };
  for (const c of chunks) {
    if (packet.length > 0 && bytes + c.bytes + 2 > plan.maxStatementBytes) await flush(false);
    packet.push(c);
    bytes += c.bytes + 2;
  }
  await flush(true);
}

/** Rows in statements of at most `plan.size` rows, each split in halves until it fits; a single row that cannot is RESULT_TOO_LARGE. */
function planChunks(rows: FieldRow[], plan: ChunkPlan): FieldRow[][] {
  const out: FieldRow[][] = [];
  const split = (chunk: FieldRow[]) => {
    const bytes = statementBytes(chunk);
    if (bytes <= plan.maxStatementBytes) return void out.push(chunk);
    const [first] = chunk;
    if (chunk.length === 1 && first) throw resultTooLarge(first, bytes, plan.maxStatementBytes + PACKET_HEADROOM);
    const half = Math.ceil(chunk.length / 2);
    split(chunk.slice(0, half));
    split(chunk.slice(half));
  };
  for (let i = 0; i < rows.length; i += plan.size) split(rows.slice(i, i + plan.size));
  return out;
}

function fieldInsert(table: FieldTable, chunk: readonly FieldRow[]) {
  const owner = sql.ref(OWNER_COLUMN[table]);
  const values = sql.join(chunk.map((r) => sql`(${r.owner}, ${r.field}, ${r.value})`));
  return sql`INSERT INTO ${sql.table(table)} (${owner}, field, value) VALUES ${values} ON DUPLICATE KEY UPDATE value = VALUES(value)`;
}

/** Notes a refused statement in the plan (so the retry halves the chunk) and passes the error on. */
function refusal(error: unknown, plan: ChunkPlan, rows: number): unknown {
  if (isPacketTooLarge(error) || isTransientDbError(error)) {
    plan.refused = true;
    plan.refusedRows = rows;
  }
  return error;
}

/**
 * Runs `write(plan)` (usually a whole transaction). A refused statement killed
 * its connection and the transaction with it, so the retry starts from the
 * top, with the chunk halved and the packet limit read again; everything it
 * writes is an upsert or a conditional update, so that is safe.
 */
export async function withChunkHalving<T>(db: Db, initialChunkSize: number, write: (plan: ChunkPlan) => Promise<T>): Promise<T> {
  let chunkSize = Math.max(1, initialChunkSize);
  let transientLeft = TRANSIENT_RETRIES;
  for (;;) {
    const limit = await packetLimit(db);
    const plan: ChunkPlan = { size: chunkSize, maxStatementBytes: limit - PACKET_HEADROOM, refused: false, refusedRows: 0, statements: 0 };
    try {
      return await write(plan);
    } catch (error) {
      if (error instanceof AppError) throw error;
      const refused = plan.refused || isPacketTooLarge(error);
      if (!refused && !isTransientDbError(error)) throw error;
      forgetPacketLimit(db);
      if (refused && plan.refusedRows > 1) {
        chunkSize = Math.max(1, Math.floor(Math.min(chunkSize, plan.refusedRows) / 2));
        continue;
      }
      // One row refused, or the connection died elsewhere (often the dead
      // connection a refusal left in the pool): try again as it was. A row
      // really too large is caught before sending once the limit is re-read.
      if (transientLeft-- <= 0) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Reads the fields of many owners back into objects. */
export async function readFields(db: Conn, table: FieldTable, owners: readonly (string | number)[]): Promise<Map<string, Record<string, unknown>>> {
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

const packetLimits = new WeakMap<Db, { bytes: number; at: number }>();

/**
 * The server's max_allowed_packet. The session value is fixed when a pooled
 * connection opens, so the smaller of global and session is the safe one.
 */
export async function packetLimit(db: Db): Promise<number> {
  const cached = packetLimits.get(db);
  if (cached && Date.now() - cached.at < PACKET_LIMIT_TTL_MS) return cached.bytes;
  const { rows } = await sql<{ bytes: number | string }>`SELECT LEAST(@@GLOBAL.max_allowed_packet, @@SESSION.max_allowed_packet) AS bytes`.execute(db);
  const bytes = Number(rows[0]?.bytes ?? 0);
  if (!Number.isFinite(bytes) || bytes <= PACKET_HEADROOM) throw new Error(`unexpected max_allowed_packet ${String(rows[0]?.bytes)}`);
  packetLimits.set(db, { bytes, at: Date.now() });
  return bytes;
}

function forgetPacketLimit(db: Db): void {
  packetLimits.delete(db);
}

/** The size of the INSERT statement for these rows as mysql2 sends it (strings escaped, quoted). */
export function statementBytes(rows: readonly FieldRow[]): number {
  let bytes = 96; // INSERT INTO … (…) VALUES … ON DUPLICATE KEY UPDATE value = VALUES(value)
  for (const r of rows) bytes += escapedBytes(String(r.owner)) + escapedBytes(r.field) + escapedBytes(r.value) + 6;
  return bytes;
}

function escapedBytes(value: string): number {
  let escapes = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    // mysql2 escapes \0 \b \t \n \r \x1a " ' and \ with a backslash
    if (c === 0 || c === 8 || c === 9 || c === 10 || c === 13 || c === 26 || c === 34 || c === 39 || c === 92) escapes++;
  }
  return Buffer.byteLength(value, 'utf8') + escapes + 2;
}

function resultTooLarge(row: FieldRow, bytes: number, limit: number): AppError {
  return new AppError(
    'RESULT_TOO_LARGE',
    `result field "${row.field.slice(0, 64)}" needs a ${bytes}-byte statement; the database accepts at most ${limit} bytes (max_allowed_packet)`,
    { details: { field: row.field, bytes, limit } },
  );
}
