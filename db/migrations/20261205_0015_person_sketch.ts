import { sql, type Kysely } from 'kysely';
import { personSketch } from '../repos/faces.js';

/**
 * Face tagging loads a bounded set of a vendor's persons per job (issue 18),
 * not all of them: `sketch` is the projection of a person's mean descriptor
 * on a fixed unit direction, indexed with the vendor. A projection never
 * grows a distance (|sketch(a) − sketch(b)| ≤ ‖a − b‖), so every person a
 * face may join lies within FACE_PERSON_MAX_DISTANCE of the face's own
 * sketch, and the nearest few on either side are read by index range.
 * Existing persons get their sketch here.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE persons ADD COLUMN sketch DOUBLE NOT NULL DEFAULT 0, ADD KEY persons_vendor_sketch (vendor_id, sketch)`.execute(db);
  let after = '';
  for (;;) {
    const rows = await db.selectFrom('persons').select(['id', 'face_count', 'descriptor_sum']).where('id', '>', after).orderBy('id').limit(1000).execute();
    if (rows.length === 0) break;
    for (const row of rows) {
      await db
        .updateTable('persons')
        .set({ sketch: personSketch(row.descriptor_sum as Buffer, row.face_count as number) })
        .where('id', '=', row.id)
        .execute();
    }
    after = rows[rows.length - 1]!.id as string;
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE persons DROP KEY persons_vendor_sketch, DROP COLUMN sketch`.execute(db);
}
