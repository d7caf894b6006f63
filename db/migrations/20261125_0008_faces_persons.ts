import { sql, type Kysely } from 'kysely';

/**
 * Face tagging: every face found in a vendor's photo, with its 128-d
 * descriptor, and the persons those faces are grouped into. Both are
 * vendor-scoped: a vendor's faces are only ever compared with, and grouped
 * into, that vendor's persons.
 *
 * A person keeps the running sum of its faces' descriptors (float64 × 128,
 * little-endian) and their count, so its mean is exact and updates in O(1)
 * as faces join or leave.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE persons (
      id CHAR(26) NOT NULL PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      face_count INT UNSIGNED NOT NULL DEFAULT 0,
      descriptor_sum VARBINARY(1024) NOT NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      KEY persons_vendor (vendor_id, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE faces (
      id CHAR(26) NOT NULL PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      person_id CHAR(26) NOT NULL,
      job_id CHAR(26) NOT NULL,
      project_id VARCHAR(191) NOT NULL,
      record_id VARCHAR(191) NOT NULL,
      face_index SMALLINT UNSIGNED NOT NULL,
      image_width INT UNSIGNED NOT NULL,
      image_height INT UNSIGNED NOT NULL,
      box_x INT NOT NULL,
      box_y INT NOT NULL,
      box_width INT UNSIGNED NOT NULL,
      box_height INT UNSIGNED NOT NULL,
      score FLOAT NOT NULL,
      distance FLOAT NULL,
      descriptor VARBINARY(512) NOT NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      UNIQUE KEY faces_job_face (job_id, face_index),
      KEY faces_vendor_person (vendor_id, person_id, id),
      KEY faces_vendor_record (vendor_id, project_id, record_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('faces').ifExists().execute();
  await db.schema.dropTable('persons').ifExists().execute();
}
