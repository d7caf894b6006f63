import { createPool } from 'mysql2';
import type { Pool, PoolConnection } from 'mysql2/promise';
import type { CompiledQuery } from 'kysely';
import { poolOptions } from './connect.js';

/**
 * Ledger transactions in as few round trips as the packet size allows.
 *
 * `run` (the API's enqueue):
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

  /**
   * A transaction whose statements come in a few batches, each one round
   * trip, on one pinned connection; `send` answers with each statement's
   * result in order (an OK packet with `affectedRows`, or the rows of a
   * SELECT). The worker's ledger path uses it: starting an attempt is one
   * round trip, completing one is two, where through Kysely they were six and
   * eight. `work` must end with COMMIT or ROLLBACK; if it throws, or leaves
   * the transaction open, the transaction is rolled back.
   */
  async session<T>(work: (send: (statements: readonly BatchStatement[]) => Promise<unknown[]>) => Promise<T>): Promise<T> {
    const conn = await this.pool.getConnection();
    let open = false;
    const send = async (statements: readonly BatchStatement[]): Promise<unknown[]> => {
      const texts = statements.map((q) => (typeof q === 'string' ? q : conn.format(q.sql, q.parameters as unknown[])));
      for (const text of texts) {
        if (/^START TRANSACTION/.test(text)) open = true;
        if (/^(COMMIT|ROLLBACK)$/.test(text)) open = false;
      }
      const [results] = await conn.query(texts.join(';\n'));
      return texts.length === 1 ? [results] : (results as unknown[]);
    };
    let result: T;
    try {
      result = await work(send);
    } catch (error) {
      await rollback(conn);
      throw error;
    }
    if (open) await rollback(conn);
    else conn.release();
    return result;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** A compiled, parameterised statement, or a fixed text such as `COMMIT`. */
export type BatchStatement = CompiledQuery | 'START TRANSACTION' | 'COMMIT' | 'ROLLBACK' | `SET @${string}`;

/** The affected (found) rows of an OK packet among a batch's results. */
export function affectedRows(result: unknown): number {
  return Number((result as { affectedRows?: number } | undefined)?.affectedRows ?? 0);
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
