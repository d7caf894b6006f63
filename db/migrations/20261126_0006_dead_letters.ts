import { sql, type Kysely } from 'kysely';

/**
 * The dead-letter queue. A job that ran out of attempts is `dead` in the
 * ledger for good (its history stays); this table lists the dead jobs an
 * operator has not dealt with yet. Retrying one re-queues the job and takes
 * it off the list; purging takes it off the list and leaves the job dead.
 * The payload and every attempt's error are in `jobs` and `job_attempts`.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE dead_letters (
      job_id CHAR(26) NOT NULL PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      queue VARCHAR(64) NOT NULL,
      dead_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      KEY dead_letters_queue (queue, job_id),
      KEY dead_letters_vendor (vendor_id, job_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('dead_letters').ifExists().execute();
}
