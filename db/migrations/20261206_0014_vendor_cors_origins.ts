import { sql, type Kysely } from 'kysely';

/**
 * Browser access (issue 19): `vendors.cors_origins` (JSON list of exact
 * origins such as `https://app.example.com`) are the web origins whose pages
 * may call the API with this vendor's tokens. NULL: the operator's default,
 * CORS_ORIGINS; `[]`: no browser origin at all.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE vendors ADD COLUMN cors_origins TEXT NULL`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE vendors DROP COLUMN cors_origins`.execute(db);
}
