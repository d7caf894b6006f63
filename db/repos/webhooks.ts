import type { Db } from '../connect.js';
import type { Vendor, WebhookDelivery, WebhookDeliveriesTable } from '../schema.js';
import type { Insertable } from 'kysely';

/** A vendor's webhook settings and the log of delivery attempts. */
export async function setVendorWebhook(db: Db, vendorId: string, url: string | null, secret: string | null): Promise<boolean> {
  const result = await db
    .updateTable('vendors')
    .set({ webhook_url: url, webhook_secret: secret })
    .where('id', '=', vendorId)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export async function vendorWebhook(db: Db, vendorId: string): Promise<Pick<Vendor, 'webhook_url' | 'webhook_secret'> | undefined> {
  return db.selectFrom('vendors').select(['webhook_url', 'webhook_secret']).where('id', '=', vendorId).where('deleted_at', 'is', null).executeTakeFirst();
}

export async function recordDelivery(db: Db, row: Insertable<WebhookDeliveriesTable>): Promise<void> {
  await db.insertInto('webhook_deliveries').values(row).execute();
}

/** A vendor's delivery attempts, newest first, keyset-paginated by id. */
export async function listDeliveries(db: Db, vendorId: string, before: string | null, limit: number): Promise<WebhookDelivery[]> {
  let q = db.selectFrom('webhook_deliveries').selectAll().where('vendor_id', '=', vendorId);
  if (before) q = q.where('id', '<', before);
  return q.orderBy('id', 'desc').limit(limit).execute();
}

/** How a batch's jobs ended. */
export async function batchOutcome(db: Db, batchId: string): Promise<{ completed: number; failed: number; dead: number }> {
  const rows = await db
    .selectFrom('jobs')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .where('batch_id', '=', batchId)
    .groupBy('status')
    .execute();
  const count = (s: string) => Number(rows.find((r) => r.status === s)?.n ?? 0);
  return { completed: count('completed'), failed: count('failed'), dead: count('dead') };
}
