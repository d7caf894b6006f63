import { sql, type Kysely } from 'kysely';

/**
 * The vendor API (issue 5): remembered Idempotency-Keys, the position of a
 * job in its batch (ULIDs made in the same millisecond do not sort in request
 * order), and an index for listing a vendor's jobs newest first.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE idempotency_keys (
      vendor_id CHAR(26) NOT NULL,
      idem_key VARCHAR(255) NOT NULL,
      fingerprint CHAR(64) NOT NULL,
      route VARCHAR(255) NOT NULL,
      status_code SMALLINT UNSIGNED NOT NULL,
      response MEDIUMTEXT NOT NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (vendor_id, idem_key),
      KEY idempotency_keys_created (created_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`ALTER TABLE jobs ADD COLUMN batch_seq INT UNSIGNED NULL AFTER batch_id, ADD KEY jobs_vendor_id (vendor_id, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs DROP KEY jobs_vendor_id, DROP COLUMN batch_seq`.execute(db);
  await db.schema.dropTable('idempotency_keys').ifExists().execute();
}
