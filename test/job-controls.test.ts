import t from 'tap';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { attemptRows, queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';

/**
 * A vendor's controls over its jobs (issue 21): delete, cancel and retry,
 * on one job and on a batch, in each state, and on another vendor's ids.
 */
const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

async function rowsOf(app: FastifyInstance, jobId: string) {
  const count = async (table: 'jobs' | 'job_attempts' | 'job_result_fields' | 'dead_letters', column: 'id' | 'job_id') =>
    Number(
      (
        await app.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where(column, '=', jobId)
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    jobs: await count('jobs', 'id'),
    attempts: await count('job_attempts', 'job_id'),
    results: await count('job_result_fields', 'job_id'),
    deadLetters: await count('dead_letters', 'job_id'),
  };
}

function call(app: FastifyInstance, vendor: TestVendor, method: 'POST' | 'DELETE' | 'GET', url: string) {
  return app.inject({
    method,
    url: `/api/image-queue${url}`,
    headers: { ...vendor.auth, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    ...(method === 'POST' ? { payload: '{}' } : {}),
  });
}

t.test('delete removes a finished job with its results, record and files; another vendor gets 404', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing' });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  const owner = await testVendor(app, { name: 'Owner' });
  const other = await testVendor(app, { name: 'Other' });

  const jobId = await queueResize(app, owner, `${images.url}/p.jpg`, 'rec-del');
  const job = await waitForFinal(app.db, jobId);
  t.equal(job.status, 'completed');
  const folder = join(env['STORAGE_LOCAL_DIR'] as string, job.output_prefix);
  t.ok((await readdir(folder)).length > 0, 'the job stored its output');

  for (const [method, url] of [
    ['DELETE', `/job/${jobId}`],
    ['POST', `/job/${jobId}/cancel`],
    ['POST', `/job/${jobId}/retry`],
  ] as const) {
    t.equal((await call(app, other, method, url)).statusCode, 404, `${method} ${url} by another vendor is 404`);
  }
  t.equal((await call(app, owner, 'GET', `/job/${jobId}`)).statusCode, 200, "another vendor's attempts changed nothing");
  t.ok(await exists(folder));

  const res = await call(app, owner, 'DELETE', `/job/${jobId}`);
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json(), { jobId, deleted: true, filesRemoved: true });
  t.equal((await call(app, owner, 'GET', `/job/${jobId}`)).statusCode, 404, 'the job reads as never existed');
  t.same(await rowsOf(app, jobId), { jobs: 0, attempts: 0, results: 0, deadLetters: 0 });
  const record = await app.db.selectFrom('data_records').selectAll().where('record_id', '=', 'rec-del').executeTakeFirst();
  t.equal(record, undefined, 'the record that showed the job is gone');
  t.notOk(await exists(folder), 'the stored output is gone');
  t.equal(
    Number(
      (
        await app.db
          .selectFrom('storage_garbage')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    ),
    0,
  );
  t.equal((await call(app, owner, 'DELETE', `/job/${jobId}`)).statusCode, 404, 'deleting twice is 404');
});

t.test('cancel stops queued and running jobs; retry queues failed, dead and cancelled ones', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', JOB_ATTEMPTS: '1', JOB_TIMEOUT_MS: '20000', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const images = await testServer(t);
  const jpeg = await makeJpeg(64, 48);
  let hanging = 0;
  images.route('/hang.jpg', (req) => {
    hanging++;
    req.socket.on('close', () => hanging--);
  });
  images.route('/p.jpg', serveBytes(jpeg, 'image/jpeg'));
  images.route('/broken.jpg', serveBytes(Buffer.from('not an image'), 'image/jpeg'));
  images.route('/down.jpg', (_req, res) => void res.writeHead(503).end());
  const vendor = await testVendor(app);
  const other = await testVendor(app, { name: 'Other' });

  // Queued (no worker yet): cancelled in the ledger, and its Bull copy removed.
  const queued = await queueResize(app, vendor, `${images.url}/p.jpg`);
  const cancelled = await call(app, vendor, 'POST', `/job/${queued}/cancel`);
  t.equal(cancelled.statusCode, 200, cancelled.body);
  t.same(cancelled.json(), { jobId: queued, state: 'cancelled', was: 'queued' });
  t.equal((await call(app, vendor, 'POST', `/job/${queued}/cancel`)).statusCode, 409, 'a cancelled job cannot be cancelled again');
  t.equal((await app.queues['image-processing'].getJob(queued)) ?? null, null, 'the waiting Bull job is removed');
  const status = (await call(app, vendor, 'GET', `/job/${queued}`)).json();
  t.equal(status.state, 'cancelled');
  t.equal(status.error.code, 'JOB_CANCELLED');

  await testWorker(t, env);

  // Running: the attempt stops its work (the hung download is closed) long before its timeout.
  const running = await queueResize(app, vendor, `${images.url}/hang.jpg`);
  await waitFor(
    async () => hanging > 0 && (await app.db.selectFrom('jobs').select('status').where('id', '=', running).executeTakeFirst())?.status === 'active',
  );
  t.equal((await call(app, other, 'POST', `/job/${running}/cancel`)).statusCode, 404, 'another vendor cannot cancel it');
  const started = Date.now();
  const stop = await call(app, vendor, 'POST', `/job/${running}/cancel`);
  t.same(stop.json(), { jobId: running, state: 'cancelled', was: 'active' });
  await waitFor(async () => hanging === 0 && (await attemptRows(app.db, running))[0]?.outcome === 'failed', 10_000);
  t.ok(Date.now() - started < 10_000, 'the attempt stopped well before its 20 s timeout');
  const [attempt] = await attemptRows(app.db, running);
  t.equal(attempt?.error_code, 'JOB_CANCELLED');
  t.equal((await waitForFinal(app.db, running)).status, 'cancelled', 'the ledger still says cancelled after the attempt ended');

  // Retry: cancelled, failed (bad image) and dead (out of attempts) jobs go back in line; others are 409.
  const completed = await queueResize(app, vendor, `${images.url}/p.jpg`);
  t.equal((await waitForFinal(app.db, completed)).status, 'completed');
  t.equal((await call(app, vendor, 'POST', `/job/${completed}/retry`)).statusCode, 409, 'a completed job is not retried');
  t.equal((await call(app, vendor, 'POST', `/job/${completed}/cancel`)).statusCode, 409, 'a completed job is not cancelled');

  const failed = await queueResize(app, vendor, `${images.url}/broken.jpg`);
  t.equal((await waitForFinal(app.db, failed)).status, 'failed');
  const dead = await queueResize(app, vendor, `${images.url}/down.jpg`);
  t.equal((await waitForFinal(app.db, dead)).status, 'dead');
  t.equal((await rowsOf(app, dead)).deadLetters, 1);

  t.equal((await call(app, other, 'POST', `/job/${failed}/retry`)).statusCode, 404, 'another vendor cannot retry it');
  images.route('/broken.jpg', serveBytes(jpeg, 'image/jpeg'));
  images.route('/down.jpg', serveBytes(jpeg, 'image/jpeg'));
  for (const jobId of [queued, failed, dead]) {
    const res = await call(app, vendor, 'POST', `/job/${jobId}/retry`);
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().state, 'queued');
    t.equal((await waitForFinal(app.db, jobId)).status, 'completed', 'the retried job ran again and completed');
  }
  t.equal((await rowsOf(app, dead)).deadLetters, 0, 'the retried dead job left the dead-letter list');
});

t.test('a batch: cancel its open jobs, retry them, delete it whole', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing' });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  const vendor = await testVendor(app);
  const other = await testVendor(app, { name: 'Other' });
  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-process',
    headers: vendor.auth,
    payload: { projectId: 'p', recordIds: ['a', 'b', 'c'], photoUrls: [1, 2, 3].map(() => `${images.url}/p.jpg`), operations: [{ op: 'resize', width: 8 }] },
  });
  t.equal(res.statusCode, 202, res.body);
  const { batchId } = res.json() as { batchId: string };

  for (const [method, url] of [
    ['DELETE', `/batch/${batchId}`],
    ['POST', `/batch/${batchId}/cancel`],
    ['POST', `/batch/${batchId}/retry`],
  ] as const) {
    t.equal((await call(app, other, method, url)).statusCode, 404, `${method} ${url} by another vendor is 404`);
  }

  const cancel = await call(app, vendor, 'POST', `/batch/${batchId}/cancel`);
  t.equal(cancel.statusCode, 200, cancel.body);
  const jobIds = (cancel.json() as { jobIds: string[] }).jobIds;
  t.equal(jobIds.length, 3);
  const batch = (await call(app, vendor, 'GET', `/batch/${batchId}`)).json();
  t.equal(batch.counts.cancelled, 3);
  t.ok(batch.finishedAt, 'a batch whose jobs were all cancelled is finished');

  await testWorker(t, env);
  const retry = await call(app, vendor, 'POST', `/batch/${batchId}/retry`);
  t.equal(retry.statusCode, 202, retry.body);
  t.same((retry.json() as { jobIds: string[] }).jobIds.sort(), [...jobIds].sort());
  for (const id of jobIds) t.equal((await waitForFinal(app.db, id)).status, 'completed');
  const prefixes = await app.db.selectFrom('jobs').select('output_prefix').where('batch_id', '=', batchId).execute();

  const del = await call(app, vendor, 'DELETE', `/batch/${batchId}`);
  t.equal(del.statusCode, 200, del.body);
  t.equal((await call(app, vendor, 'GET', `/batch/${batchId}`)).statusCode, 404);
  for (const id of jobIds) t.same(await rowsOf(app, id), { jobs: 0, attempts: 0, results: 0, deadLetters: 0 });
  for (const { output_prefix } of prefixes) t.notOk(await exists(join(env['STORAGE_LOCAL_DIR'] as string, output_prefix)), 'its files are gone');
});

t.test("the worker's sweep removes held-back and previously failed files, then their garbage rows", async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', SWEEP_INTERVAL_MS: '200' });
  const dir = env['STORAGE_LOCAL_DIR'] as string;
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const output = await app.storage.put(`${vendor.vendorId}/p/JOB1-abc/0-resize.jpg`, await makeJpeg(8, 8), 'image/jpeg');
  const upload = await app.storage.put(`${vendor.vendorId}/p/uploads/U1.jpg`, await makeJpeg(8, 8), 'image/jpeg');
  const later = await app.storage.put(`${vendor.vendorId}/p/JOB2-def/0-resize.jpg`, await makeJpeg(8, 8), 'image/jpeg');
  await app.db
    .insertInto('storage_garbage')
    .values([
      { vendor_id: vendor.vendorId, target: `${vendor.vendorId}/p/JOB1-abc`, is_prefix: 1 },
      { vendor_id: vendor.vendorId, target: upload.key, is_prefix: 0 },
      { vendor_id: vendor.vendorId, target: `${vendor.vendorId}/p/JOB2-def`, is_prefix: 1, not_before: new Date(Date.now() + 3_600_000) },
    ])
    .execute();
  await testWorker(t, env);
  await waitFor(async () => !(await exists(join(dir, output.key))) && !(await exists(join(dir, upload.key))));
  await waitFor(async () => (await app.db.selectFrom('storage_garbage').select('target').execute()).length === 1);
  t.same(
    await app.db.selectFrom('storage_garbage').select('target').execute(),
    [{ target: `${vendor.vendorId}/p/JOB2-def` }],
    'only the held-back row is left',
  );
  t.ok(await exists(join(dir, later.key)), 'a file held back (its job was running) stays until its time');
});
