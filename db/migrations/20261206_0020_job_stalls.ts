import { sql, type Kysely } from 'kysely';

/**
 * Poison jobs (issue 18): how many runs of a job ended with their worker
 * dying under them. A job with stalls > 0 is a suspect and runs alone on its
 * worker; a run that dies while alone counts as a failed attempt
 * (worker/run-gate.ts, db/repos/jobs.ts recordDeadRun).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs ADD COLUMN stalls SMALLINT UNSIGNED NOT NULL DEFAULT 0`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE jobs DROP COLUMN stalls`.execute(db);
}
