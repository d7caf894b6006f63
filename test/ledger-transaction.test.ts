import t from 'tap';
import { sql } from 'kysely';
import { isolatedEnv } from './helpers/env.js';
import { connectDb } from '../db/connect.js';
import { LedgerTransactions, packets } from '../db/multi-statement.js';

/**
 * The enqueue path's multi-statement transaction against the real MariaDB
 * (whose max_allowed_packet here is small): a statement that fails anywhere
 * leaves nothing of the transaction behind, the connection is usable again,
 * and texts are split to fit the packet.
 */
t.test('multi-statement ledger transaction', async (t) => {
  const env = await isolatedEnv(t);
  const url = env['MYSQL_URL'] as string;
  const db = connectDb({ url, poolSize: 2 });
  const tx = new LedgerTransactions(url, 1);
  t.teardown(async () => {
    await tx.close();
    await db.destroy();
  });
  const batch = (id: string) =>
    db.insertInto('batches').values({ id, vendor_id: 'v', kind: 'process', project_id: 'p', total: 1, finished_at: null }).compile();
  const count = async () =>
    Number(
      (
        await db
          .selectFrom('batches')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  await tx.run([batch('A1'), batch('A2')], 32 * 1024);
  t.equal(await count(), 2, 'both rows committed');

  await t.rejects(tx.run([batch('B1'), batch('A1')], 32 * 1024), { code: 'ER_DUP_ENTRY' });
  t.equal(await count(), 2, 'the first statement of a failed transaction is rolled back');

  await t.rejects(tx.run([batch('C1'), sql`SELECT * FROM no_such_table`.compile(db)], 32 * 1024), { code: 'ER_NO_SUCH_TABLE' });
  t.equal(await count(), 2);

  // Many rows, split over several packets of at most 2 KiB, still one transaction.
  const many = Array.from({ length: 60 }, (_, i) => batch(`M${String(i).padStart(3, '0')}`));
  await tx.run(many, 2048);
  t.equal(await count(), 62, 'one connection (pool of 1) survived the failures and committed 60 more');
  await t.rejects(tx.run([...Array.from({ length: 30 }, (_, i) => batch(`N${i}`)), batch('M000')], 2048), { code: 'ER_DUP_ENTRY' });
  t.equal(await count(), 62, 'a failure in a later packet rolls back the earlier packets too');
});

t.test('packets stay under the limit, in order', async (t) => {
  const statements = Array.from({ length: 50 }, (_, i) => `INSERT ${'x'.repeat(i * 3)}`);
  const out = packets(statements, 300);
  t.ok(out.length > 1);
  for (const p of out) t.ok(Buffer.byteLength(p) <= 300 || !p.includes(';'), 'within the limit, or a single long statement');
  t.same(out.join(';').split(';'), statements, 'nothing lost or reordered');
});
