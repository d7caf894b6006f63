import { sql, type Kysely } from 'kysely';

/**
 * Retention (issue 21). The sweeper removes the uploads of finished jobs
 * before the jobs themselves; `has_upload` (a virtual column: no storage,
 * kept by the server) with its index lets it find a vendor's finished jobs
 * that still hold an upload without reading every finished job whose upload
 * is already gone.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs ADD COLUMN has_upload TINYINT(1) AS (source_key IS NOT NULL) VIRTUAL,
    ADD KEY jobs_vendor_upload_finished (vendor_id, has_upload, finished_at)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs DROP KEY jobs_vendor_upload_finished, DROP COLUMN has_upload`.execute(db);
}
