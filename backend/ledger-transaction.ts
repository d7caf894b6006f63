import { createPool } from 'mysql2';
import type { Pool, PoolConnection } from 'mysql2/promise';
import type { CompiledQuery } from 'kysely';
import { poolOptions } from '../db/connect.js';

/**
 * A ledger transaction in as few round trips as the packet size allows:
 * `START TRANSACTION; INSERT …; INSERT …; COMMIT` sent as one multi-statement
 * query (more packets only when the statements do not fit in one). Through a
 * Kysely transaction the same work is four round trips or more, and on a busy
 * host each round trip, not the INSERTs, is what an enqueue waits for.
 *
 * The connections of this pool allow multiple statements, so they are used
 * for nothing else, and every value in the text is escaped by mysql2's own
 * `format` from a compiled, parameterised Kysely query, exactly as a
 * `query(sql, params)` call would send it. A failure stops the batch where it
 * happened; the transaction is rolled back (or the connection dropped) before
 * the error is passed on, so nothing half-written is ever committed.
 */
export class LedgerTransactions {
  private readonly pool: Pool;

  constructor(url: string, poolSize: number) {
    this.pool = createPool(poolOptions({ url, poolSize }, { multipleStatements: true })).promise();
  }

  /** Runs the statements in one transaction; `packetBytes` bounds each query text sent. */
  async run(statements: readonly CompiledQuery[], packetBytes: number): Promise<void> {
    const conn = await this.pool.getConnection();
    try {
      const texts = statements.map((q) => conn.format(q.sql, q.parameters as unknown[]));
      for (const packet of packets(['START TRANSACTION', ...texts, 'COMMIT'], packetBytes)) await conn.query(packet);
    } catch (error) {
      await rollback(conn);
      throw error;
    }
    conn.release();
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function rollback(conn: PoolConnection): Promise<void> {
  try {
    await conn.query('ROLLBACK');
    conn.release();
  } catch {
    conn.destroy();
  }
}

/** Joins statements with `;` into texts of at most `limit` bytes (a longer statement goes alone). */
export function packets(statements: readonly string[], limit: number): string[] {
  const out: string[] = [];
  let current = '';
  let bytes = 0;
  for (const statement of statements) {
    const size = Buffer.byteLength(statement);
    if (current && bytes + 1 + size > limit) {
      out.push(current);
      current = '';
      bytes = 0;
    }
    current = current ? `${current};${statement}` : statement;
    bytes += (bytes ? 1 : 0) + size;
  }
  if (current) out.push(current);
  return out;
}
