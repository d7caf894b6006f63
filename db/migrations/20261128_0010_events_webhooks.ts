import { sql, type Kysely } from 'kysely';

/**
 * Live events and webhooks (issue 10).
 *
 * `job_events` is the ledger's own event log: every state change of a job
 * (and a batch finishing) writes a row in the same transaction as the change.
 * Its `seq` is per vendor and taken from `event_seqs` by the last statement of
 * that transaction: the counter row stays locked until the commit, so one
 * vendor's events commit in `seq` order and a reader that has seen `seq = n`
 * can never later find a committed event below n. That is what lets an SSE
 * client resume with `Last-Event-ID: n` and miss nothing.
 *
 * `webhook_pending` makes the same rows a transactional outbox: the worker
 * turns pending final events into webhook deliveries and clears the flag.
 * `batches.jobs_finished` counts the batch's jobs that ended, so exactly one
 * transaction sees the last one end and writes `batch.finished`.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE event_seqs (
      vendor_id CHAR(26) NOT NULL PRIMARY KEY,
      seq BIGINT UNSIGNED NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE job_events (
      vendor_id CHAR(26) NOT NULL,
      seq BIGINT UNSIGNED NOT NULL,
      type VARCHAR(32) NOT NULL,
      job_id CHAR(26) NULL,
      batch_id CHAR(26) NULL,
      kind VARCHAR(32) NOT NULL,
      error_code VARCHAR(64) NULL,
      error_message VARCHAR(1024) NULL,
      webhook_pending TINYINT(1) NOT NULL DEFAULT 0,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (vendor_id, seq),
      KEY job_events_webhook (webhook_pending, created_at),
      KEY job_events_created (created_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE webhook_deliveries (
      id CHAR(26) NOT NULL PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      event_seq BIGINT UNSIGNED NOT NULL,
      event_type VARCHAR(32) NOT NULL,
      url VARCHAR(2048) NOT NULL,
      attempt INT UNSIGNED NOT NULL,
      outcome VARCHAR(16) NOT NULL,
      status_code SMALLINT UNSIGNED NULL,
      error VARCHAR(1024) NULL,
      duration_ms INT UNSIGNED NOT NULL,
      next_retry_at DATETIME(3) NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      KEY webhook_deliveries_vendor (vendor_id, id),
      KEY webhook_deliveries_created (created_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`ALTER TABLE batches ADD COLUMN jobs_finished INT UNSIGNED NOT NULL DEFAULT 0 AFTER total`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE batches DROP COLUMN jobs_finished`.execute(db);
  await db.schema.dropTable('webhook_deliveries').ifExists().execute();
  await db.schema.dropTable('job_events').ifExists().execute();
  await db.schema.dropTable('event_seqs').ifExists().execute();
}
