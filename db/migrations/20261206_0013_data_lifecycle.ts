import { sql, type Kysely } from 'kysely';

/**
 * Data lifecycle (issue 21).
 *
 * - `cancelled`: a vendor stopped a queued or running job; final, like failed.
 * - `storage_garbage`: files whose rows are gone, waiting to be removed from
 *   storage. Deleting a job writes its output prefix and upload key here in
 *   the transaction that deletes its rows, so a file can never outlive its
 *   row unnoticed, and a row is never left pointing at a removed file: the
 *   rows go first, the files after, retried until storage says they are gone.
 *   `not_before` holds back the files of a job that was running when it was
 *   deleted, until its attempt has surely stopped writing.
 * - `vendors.retention` (JSON): an admin's per-vendor override of the plan's
 *   retention periods; `vendors.face_tagging`: face tagging is opt-in.
 * - `persons.name`: a vendor may name a person.
 * - `jobs_vendor_finished`: the sweeper finds a vendor's expired jobs by end time.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs MODIFY COLUMN status ENUM('queued','active','completed','failed','dead','cancelled') NOT NULL DEFAULT 'queued',
    ADD KEY jobs_vendor_finished (vendor_id, finished_at)`.execute(db);

  await sql`
    CREATE TABLE storage_garbage (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      target VARCHAR(512) NOT NULL,
      is_prefix TINYINT(1) NOT NULL,
      not_before DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      tries INT UNSIGNED NOT NULL DEFAULT 0,
      last_error VARCHAR(512) NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      KEY storage_garbage_due (not_before, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`ALTER TABLE vendors ADD COLUMN retention TEXT NULL, ADD COLUMN face_tagging TINYINT(1) NOT NULL DEFAULT 0`.execute(db);
  await sql`ALTER TABLE persons ADD COLUMN name VARCHAR(191) NULL AFTER vendor_id`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE persons DROP COLUMN name`.execute(db);
  await sql`ALTER TABLE vendors DROP COLUMN face_tagging, DROP COLUMN retention`.execute(db);
  await db.schema.dropTable('storage_garbage').ifExists().execute();
  await sql`UPDATE jobs SET status = 'failed' WHERE status = 'cancelled'`.execute(db);
  await sql`ALTER TABLE jobs DROP KEY jobs_vendor_finished,
    MODIFY COLUMN status ENUM('queued','active','completed','failed','dead') NOT NULL DEFAULT 'queued'`.execute(db);
}
