import t from 'tap';
import { createPool } from 'mysql2/promise';
import { connectDb } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { packetLimit, readFields, toFieldRows, withChunkHalving, writeFieldRowsWith } from '../db/repos/result-fields.js';
import { LedgerTransactions } from '../db/multi-statement.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { privateMariadb } from './helpers/private-services.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { processImage } from '../worker/processors/process-image.js';
import type { JobContext } from '../worker/context.js';

/**
 * Chunked result writes against a private MariaDB whose max_allowed_packet is
 * 16 KiB (never the shared server's). MariaDB answers an oversized statement by
 * closing the connection, so these tests also prove the write survives that.
 */
const PACKET = 16_384;

/** A value full of characters mysql2 escapes, so the escaped size matters. */
function awkward(n: number, seed: number): string {
  return `"quoted" \\slash\\ 'single' line\nbreak #${seed} `.repeat(Math.ceil(n / 45)).slice(0, n);
}

t.test('results far larger than max_allowed_packet', async (t) => {
  const mariadb = await privateMariadb(t, { maxAllowedPacket: PACKET });
  const mysqlUrl = `${mariadb.url}/iq`;
  await ensureDatabase(mysqlUrl);
  const migrator = connectDb({ url: mysqlUrl, poolSize: 1 });
  await migrateToLatest(migrator);
  await migrator.destroy();

  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', MYSQL_URL: mysqlUrl, LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const bigFields = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`blob_${i}`, awkward(1500 + i * 37, i)]));
  const bigRecord = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`process.extra_${i}`, { note: awkward(2000, i), i }]));
  await testWorker(t, env, {
    processors: {
      async process(ctx: JobContext<'process'>) {
        const out = await processImage(ctx);
        const record = ctx.payload.recordId;
        if (record.startsWith('too-big')) return { ...out, result: { ...out.result, huge: awkward(PACKET * 2, 0) } };
        return { ...out, result: { ...out.result, ...bigFields }, recordFields: { ...out.recordFields, ...bigRecord } };
      },
    },
  });
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(40, 30), 'image/jpeg'));
  const vendor = await testVendor(app);

  const jobId = await queueResize(app, vendor, `${images.url}/p.jpg`, 'rec-big');
  const job = await waitForFinal(app.db, jobId);
  t.equal(job.status, 'completed', `${job.error_code}: ${job.error_message}`);
  const status = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth });
  const result = status.json().result as Record<string, unknown>;
  const resultBytes = Buffer.byteLength(JSON.stringify(result));
  t.ok(resultBytes > 5 * PACKET, `the result is ${resultBytes} bytes, over five times the packet limit`);
  for (const [field, value] of Object.entries(bigFields)) {
    if (result[field] !== value) t.fail(`field ${field} came back different`);
  }
  t.equal(Object.keys(result).filter((k) => k.startsWith('blob_')).length, 60, 'every field was written');
  t.equal(result['width'], 8);
  const record = await app.db.selectFrom('data_records').select('id').where('record_id', '=', 'rec-big').executeTakeFirstOrThrow();
  const fields = (await readFields(app.db, 'record_fields', [record.id])).get(String(record.id)) ?? {};
  t.same(
    Object.keys(fields)
      .filter((k) => k.startsWith('process.extra_'))
      .sort(),
    Object.keys(bigRecord).sort(),
  );
  t.same(fields['process.extra_7'], bigRecord['process.extra_7']);

  const tooBig = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/p.jpg`, 'too-big-1'));
  t.equal(tooBig.status, 'failed');
  t.equal(tooBig.error_code, 'RESULT_TOO_LARGE');
  t.match(tooBig.error_message, /"huge".*max_allowed_packet/);
  t.equal(tooBig.attempts, 1, 'not retried: it cannot fit next time either');

  const after = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/p.jpg`, 'rec-after'));
  t.equal(after.status, 'completed', 'the worker writes normally afterwards');
});

t.test('a statement refused because the limit was lowered after it was read is retried with the chunk halved', async (t) => {
  const mariadb = await privateMariadb(t, { maxAllowedPacket: 1024 * 1024 });
  const url = `${mariadb.url}/iq`;
  await ensureDatabase(url);
  const db = connectDb({ url, poolSize: 1 });
  t.teardown(() => db.destroy());
  await migrateToLatest(db);
  const admin = createPool({ uri: mariadb.url, connectionLimit: 1 });
  t.teardown(() => admin.end());

  t.equal(await packetLimit(db), 1024 * 1024, 'the limit as first read (and cached)');
  await admin.query(`SET GLOBAL max_allowed_packet = ${PACKET}`);
  // The pooled connection keeps its session limit until it is replaced.
  const [[{ id }]] = (await admin.query('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = ? LIMIT 1', ['iq'])) as unknown as [[{ id: number }]];
  await admin.query(`KILL ${id}`);
  await waitFor(async () => {
    const [rows] = (await admin.query('SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?', [id])) as unknown as [unknown[]];
    return rows.length === 0;
  }, 5000);

  const rows = toFieldRows('JOB1', Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f${i}`, awkward(4000, i)])));
  const tries: number[] = [];
  // The worker's way: a multi-statement transaction on its own pool (db/multi-statement.ts).
  const multi = new LedgerTransactions(url, 1);
  t.teardown(() => multi.close());
  const statements = await withChunkHalving(db, 10, async (plan) => {
    tries.push(plan.size);
    await multi.session(async (send) => {
      await send(['START TRANSACTION']);
      await writeFieldRowsWith(send, db, [['job_result_fields', rows]], plan);
    });
    return plan.statements;
  });
  t.same(tries.slice(0, 2), [10, 5], 'refused at 10 fields per statement, tried again with 5');
  t.ok(statements >= 4, `${statements} statements for 10 fields of 4 KB under a 16 KB limit`);
  const back = (await readFields(db, 'job_result_fields', ['JOB1'])).get('JOB1') ?? {};
  t.same(back, Object.fromEntries(rows.map((r) => [r.field, JSON.parse(r.value)])), 'all ten fields, intact');
  t.equal(await packetLimit(db), PACKET, 'the limit was read again after the refusal');
  await admin.query('SET GLOBAL max_allowed_packet = 1048576');
});
