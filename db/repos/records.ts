import { sql, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database, DataRecord } from '../schema.js';
import { readFields } from './result-fields.js';

type Conn = Db | Transaction<Database>;

export interface RecordClaim {
  vendorId: string;
  projectId: string;
  recordId: string;
  photoUrl: string | null;
  jobId: string;
}

/**
 * Creates or re-points the vendor's records at the jobs just queued for them,
 * many rows per statement. The record follows its latest job: results of an
 * older job that finishes late do not overwrite a newer one's.
 */
export async function claimRecords(db: Conn, claims: RecordClaim[]): Promise<void> {
  if (claims.length === 0) return;
  await claimRecordsQuery(db, claims).execute();
}

/** The statement claimRecords runs, for callers that batch statements themselves. */
export function claimRecordsQuery(db: Conn, claims: RecordClaim[]) {
  return db
    .insertInto('data_records')
    .values(
      claims.map((c) => ({
        vendor_id: c.vendorId,
        project_id: c.projectId,
        record_id: c.recordId,
        photo_url: c.photoUrl,
        processing_status: 'queued' as const,
        last_job_id: c.jobId,
        processed_photo_url: null,
        result_width: null,
        result_height: null,
        error_code: null,
      })),
    )
    .onDuplicateKeyUpdate({
      photo_url: sql`VALUES(photo_url)`,
      processing_status: 'queued',
      last_job_id: sql`VALUES(last_job_id)`,
      error_code: null,
      updated_at: sql`NOW(3)`,
    });
}

export async function markRecordProcessing(db: Db, vendorId: string, projectId: string, recordId: string, jobId: string): Promise<void> {
  await db
    .updateTable('data_records')
    .set({ processing_status: 'processing', updated_at: sql`NOW(3)` })
    .where('vendor_id', '=', vendorId)
    .where('project_id', '=', projectId)
    .where('record_id', '=', recordId)
    .where('last_job_id', '=', jobId)
    .execute();
}

export async function findVendorRecord(
  db: Db,
  vendorId: string,
  projectId: string,
  recordId: string,
): Promise<(DataRecord & { fields: Record<string, unknown> }) | undefined> {
  const row = await db
    .selectFrom('data_records')
    .selectAll()
    .where('vendor_id', '=', vendorId)
    .where('project_id', '=', projectId)
    .where('record_id', '=', recordId)
    .executeTakeFirst();
  if (!row) return undefined;
  const fields = await readFields(db, 'record_fields', [row.id]);
  return { ...row, fields: fields.get(String(row.id)) ?? {} };
}
