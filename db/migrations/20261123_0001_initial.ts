import { sql, type Kysely } from 'kysely';

/**
 * The ledger and its neighbours. Times are DATETIME(3) in UTC; ids are
 * client-made ULIDs (MySQL has no RETURNING), except data_records whose
 * numeric id is internal.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE vendors (
      id CHAR(26) NOT NULL PRIMARY KEY,
      name VARCHAR(200) NOT NULL,
      plan VARCHAR(32) NOT NULL DEFAULT 'standard',
      role ENUM('vendor','admin') NOT NULL DEFAULT 'vendor',
      api_key_hash CHAR(64) NOT NULL,
      api_key_prefix VARCHAR(16) NOT NULL,
      webhook_url VARCHAR(2048) NULL,
      webhook_secret VARCHAR(128) NULL,
      rate_limits TEXT NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      deleted_at DATETIME(3) NULL,
      UNIQUE KEY vendors_api_key_hash (api_key_hash)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE batches (
      id CHAR(26) NOT NULL PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      kind VARCHAR(32) NOT NULL,
      project_id VARCHAR(191) NOT NULL,
      total INT UNSIGNED NOT NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      finished_at DATETIME(3) NULL,
      KEY batches_vendor (vendor_id, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE jobs (
      id CHAR(26) NOT NULL PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      batch_id CHAR(26) NULL,
      kind VARCHAR(32) NOT NULL,
      project_id VARCHAR(191) NOT NULL,
      record_id VARCHAR(191) NOT NULL,
      source_url TEXT NULL,
      source_key VARCHAR(512) NULL,
      options TEXT NOT NULL,
      output_prefix VARCHAR(512) NOT NULL,
      status ENUM('queued','active','completed','failed','dead') NOT NULL DEFAULT 'queued',
      progress TINYINT UNSIGNED NOT NULL DEFAULT 0,
      attempts SMALLINT UNSIGNED NOT NULL DEFAULT 0,
      max_attempts SMALLINT UNSIGNED NOT NULL,
      priority INT UNSIGNED NOT NULL DEFAULT 0,
      error_code VARCHAR(64) NULL,
      error_message VARCHAR(1024) NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      started_at DATETIME(3) NULL,
      finished_at DATETIME(3) NULL,
      updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      duration_ms INT UNSIGNED NULL,
      KEY jobs_vendor_status (vendor_id, status, id),
      KEY jobs_vendor_kind_status (vendor_id, kind, status),
      KEY jobs_vendor_batch (vendor_id, batch_id, id),
      KEY jobs_status_updated (status, updated_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE job_attempts (
      job_id CHAR(26) NOT NULL,
      attempt SMALLINT UNSIGNED NOT NULL,
      worker_id VARCHAR(128) NOT NULL,
      started_at DATETIME(3) NOT NULL,
      finished_at DATETIME(3) NULL,
      outcome ENUM('running','completed','failed') NOT NULL DEFAULT 'running',
      error_code VARCHAR(64) NULL,
      error_message VARCHAR(1024) NULL,
      PRIMARY KEY (job_id, attempt)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE job_result_fields (
      job_id CHAR(26) NOT NULL,
      field VARCHAR(191) NOT NULL,
      value LONGTEXT NOT NULL,
      PRIMARY KEY (job_id, field)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE data_records (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      vendor_id CHAR(26) NOT NULL,
      project_id VARCHAR(191) NOT NULL,
      record_id VARCHAR(191) NOT NULL,
      photo_url TEXT NULL,
      processing_status ENUM('pending','queued','processing','completed','failed') NOT NULL DEFAULT 'pending',
      processed_photo_url TEXT NULL,
      result_width INT UNSIGNED NULL,
      result_height INT UNSIGNED NULL,
      last_job_id CHAR(26) NULL,
      error_code VARCHAR(64) NULL,
      created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      UNIQUE KEY data_records_vendor_record (vendor_id, project_id, record_id),
      KEY data_records_vendor_status (vendor_id, processing_status)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);

  await sql`
    CREATE TABLE record_fields (
      record_pk BIGINT UNSIGNED NOT NULL,
      field VARCHAR(191) NOT NULL,
      value LONGTEXT NOT NULL,
      PRIMARY KEY (record_pk, field)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['record_fields', 'data_records', 'job_result_fields', 'job_attempts', 'jobs', 'batches', 'vendors']) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
