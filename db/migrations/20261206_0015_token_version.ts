import { sql, type Kysely } from 'kysely';

/**
 * Token revocation (issues 18 and 20).
 *
 * - `vendors.token_version`: every token a vendor gets carries the version it
 *   was minted under; rotating the API key or deleting the vendor adds one,
 *   and the API refuses a token whose version is not the vendor's (checked
 *   with the vendor load, whose cache every API process drops at once on the
 *   Redis message the rotation publishes).
 * - `jobs_vendor_project`: a project-restricted (browser) token lists and
 *   counts its project's jobs by index.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE vendors ADD COLUMN token_version INT UNSIGNED NOT NULL DEFAULT 0`.execute(db);
  await sql`ALTER TABLE jobs ADD KEY jobs_vendor_project (vendor_id, project_id, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs DROP KEY jobs_vendor_project`.execute(db);
  await sql`ALTER TABLE vendors DROP COLUMN token_version`.execute(db);
}
