import t from 'tap';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { fakeCloudinary } from './helpers/cloudinary.js';
import { createRedis } from '../platform/redis.js';
import { retentionLockKey } from '../worker/retention.js';
import { newId } from '../platform/ids.js';

/**
 * Retention (issue 21): with a short period, the worker's sweeper removes a
 * vendor's ended jobs with everything that hangs on them (results, records,
 * dead letters, stored files), its old uploads, events and webhook
 * deliveries, while a running job of that vendor and another vendor's data
 * under a longer period stay.
 */
const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

const count = async (app: FastifyInstance, table: 'jobs' | 'job_result_fields' | 'job_attempts' | 'dead_letters' | 'data_records', where: [string, string]) =>
  Number(
    (
      await app.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where(where[0] as never, '=', where[1] as never)
        .executeTakeFirstOrThrow()
    ).n,
  );

async function setRetention(app: FastifyInstance, admin: TestVendor, vendorId: string, retention: Record<string, string> | null) {
  const res = await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${vendorId}`, headers: admin.auth, payload: { retention } });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json() as { retention: unknown; effective: { retention: Record<string, string> } };
}

async function uploadResize(app: FastifyInstance, vendor: TestVendor, bytes: Buffer, recordId: string): Promise<string> {
  const body = await multipartBody({ recordId, projectId: 'proj', operations: '[{"op":"resize","width":8}]' }, [
    { field: 'photo', filename: 'p.jpg', contentType: 'image/jpeg', bytes },
  ]);
  const res = await app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: { ...vendor.auth, ...body.headers }, payload: body.payload });
  if (res.statusCode !== 202) throw new Error(`upload failed: ${res.statusCode} ${res.body}`);
  return (res.json() as { jobId: string }).jobId;
}

/** Waits until every given job ended more than `periodMs` ago, so that it is due. */
async function untilDue(app: FastifyInstance, jobIds: string[], periodMs: number) {
  await waitFor(async () => {
    const rows = await app.db.selectFrom('jobs').select('finished_at').where('id', 'in', jobIds).execute();
    return rows.every((r) => r.finished_at && Date.now() - r.finished_at.getTime() > periodMs + 50);
  }, 30_000);
}

t.test(
  'a short retention removes ended jobs, uploads, dead letters, events and deliveries with their files; running jobs and other vendors stay',
  async (t) => {
    const env = await isolatedEnv(t, {
      WORKER_QUEUES: 'image-processing',
      JOB_ATTEMPTS: '1',
      LOG_LEVEL: 'silent',
      SWEEP_INTERVAL_MS: '100',
      RETENTION_INTERVAL_MS: '0',
      RETENTION_BATCH: '2',
      SHUTDOWN_GRACE_MS: '100',
    });
    const app = await testApp(t, env);
    const worker = await testWorker(t, env);
    const images = await testServer(t);
    const jpeg = await makeJpeg(64, 48);
    images.route('/p.jpg', serveBytes(jpeg, 'image/jpeg'));
    images.route('/down.jpg', (_req, res) => void res.writeHead(503).end());
    let hanging = 0;
    images.route('/hang.jpg', (req) => {
      hanging++;
      req.socket.on('close', () => hanging--);
    });
    const admin = await testVendor(app, { role: 'admin', name: 'Admin' });
    const short = await testVendor(app, { name: 'Short' });
    const uploadsOnly = await testVendor(app, { name: 'Uploads only' });
    const long = await testVendor(app, { name: 'Long' });

    const set = await setRetention(app, admin, short.vendorId, { jobs: '1s', events: '1s', webhookDeliveries: '1s' });
    t.same(set.retention, { jobs: '1s', events: '1s', webhookDeliveries: '1s' });
    t.same(
      set.effective.retention,
      { jobs: '1s', uploads: '1s', deadLetters: '1s', events: '1s', webhookDeliveries: '1s' },
      'uploads and dead letters never outlive their job',
    );
    await setRetention(app, admin, uploadsOnly.vendorId, { uploads: '1s' });
    const refused = await app.inject({
      method: 'PATCH',
      url: `/api/admin/vendors/${short.vendorId}`,
      headers: admin.auth,
      payload: { retention: { jobs: 'forever' } },
    });
    t.equal(refused.statusCode, 400, 'a period that is not one is refused');
    t.equal(
      (await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${short.vendorId}`, headers: short.auth, payload: { retention: null } })).statusCode,
      403,
      'a vendor cannot set its own retention',
    );

    // The short vendor: a completed job, a completed upload, a dead job (dead letter), and one still running.
    const completed = await queueResize(app, short, `${images.url}/p.jpg`, 'rec-completed');
    const uploaded = await uploadResize(app, short, jpeg, 'rec-upload');
    const dead = await queueResize(app, short, `${images.url}/down.jpg`, 'rec-dead');
    const jobs = { completed: await waitForFinal(app.db, completed), uploaded: await waitForFinal(app.db, uploaded), dead: await waitForFinal(app.db, dead) };
    t.same([jobs.completed.status, jobs.uploaded.status, jobs.dead.status], ['completed', 'completed', 'dead']);
    t.equal(await count(app, 'dead_letters', ['job_id', dead]), 1);
    const running = await queueResize(app, short, `${images.url}/hang.jpg`, 'rec-running');
    await waitFor(
      async () => hanging > 0 && (await app.db.selectFrom('jobs').select('status').where('id', '=', running).executeTakeFirst())?.status === 'active',
    );

    // The other vendors: one with only its uploads expiring, one on its plan's (long) periods.
    const keptUpload = await uploadResize(app, uploadsOnly, jpeg, 'rec-kept');
    const longJob = await queueResize(app, long, `${images.url}/p.jpg`, 'rec-long');
    const kept = { upload: await waitForFinal(app.db, keptUpload), long: await waitForFinal(app.db, longJob) };

    // Webhook delivery log rows, old ones for both vendors.
    const old = new Date(Date.now() - 3_600_000);
    for (const v of [short, long]) {
      await app.db
        .insertInto('webhook_deliveries')
        .values({
          id: newId(),
          vendor_id: v.vendorId,
          event_seq: 1,
          event_type: 'completed',
          url: 'https://example.com/hook',
          attempt: 1,
          outcome: 'delivered',
          status_code: 200,
          error: null,
          duration_ms: 5,
          next_retry_at: null,
          created_at: old,
        })
        .execute();
    }

    const storage = env['STORAGE_LOCAL_DIR'] as string;
    const files = {
      completed: join(storage, jobs.completed.output_prefix),
      uploadedOutput: join(storage, jobs.uploaded.output_prefix),
      upload: join(storage, jobs.uploaded.source_key as string),
      keptUpload: join(storage, kept.upload.source_key as string),
      keptUploadOutput: join(storage, kept.upload.output_prefix),
      long: join(storage, kept.long.output_prefix),
    };
    for (const [name, path] of Object.entries(files)) t.ok(await exists(path), `${name} is stored before the sweep`);

    await untilDue(app, [completed, uploaded, dead, keptUpload, longJob], 1000);
    const run = await worker.applyRetention();
    t.ok(run.ran);
    t.equal(run.removed.jobs, 3, 'the three ended jobs of the short vendor, in batches of two');
    t.equal(run.removed.uploads, 1, "the other vendor's upload");
    t.equal(run.removed.webhookDeliveries, 1, "only the short vendor's old delivery");

    for (const id of [completed, uploaded, dead]) {
      for (const table of ['job_result_fields', 'job_attempts', 'dead_letters'] as const)
        t.equal(await count(app, table, ['job_id', id]), 0, `${table} of ${id} gone`);
      t.equal(await count(app, 'jobs', ['id', id]), 0);
      t.equal((await app.inject({ method: 'GET', url: `/api/image-queue/job/${id}`, headers: short.auth })).statusCode, 404);
    }
    const records = await app.db.selectFrom('data_records').select('record_id').where('vendor_id', '=', short.vendorId).execute();
    t.same(
      records.map((r) => r.record_id),
      ['rec-running'],
      "only the running job's record is left",
    );
    const stillRunning = await app.db.selectFrom('jobs').selectAll().where('id', '=', running).executeTakeFirstOrThrow();
    t.equal(stillRunning.status, 'active', 'the running job is untouched');
    t.equal(hanging, 1, 'and its attempt still runs');

    await waitFor(
      async () =>
        Number(
          (
            await app.db
              .selectFrom('storage_garbage')
              .select((eb) => eb.fn.countAll<number>().as('n'))
              .executeTakeFirstOrThrow()
          ).n,
        ) === 0,
    );
    t.notOk(await exists(files.completed), 'outputs of expired jobs are removed');
    t.notOk(await exists(files.uploadedOutput));
    t.notOk(await exists(files.upload), 'and their uploads');
    t.notOk(await exists(files.keptUpload), "the uploads-only vendor's upload is removed");
    t.ok(await exists(files.keptUploadOutput), 'its output stays');
    t.ok(await exists(files.long), "the long-retention vendor's output stays");

    const afterUpload = await app.db.selectFrom('jobs').selectAll().where('id', '=', keptUpload).executeTakeFirstOrThrow();
    t.same([afterUpload.source_key, afterUpload.source_url], [null, null], 'the job no longer names its upload');
    const keptRecord = await app.db.selectFrom('data_records').selectAll().where('record_id', '=', 'rec-kept').executeTakeFirstOrThrow();
    t.equal(keptRecord.photo_url, null, 'nor does its record');
    t.ok(keptRecord.processed_photo_url, 'which still shows the output');
    t.equal(await count(app, 'jobs', ['id', longJob]), 1);
    t.equal((await count(app, 'job_result_fields', ['job_id', longJob])) > 0, true);

    const eventsLeft = await app.db.selectFrom('job_events').select(['vendor_id', 'created_at']).execute();
    const cutoff = Date.now() - 1000 - 5_000;
    t.notOk(
      eventsLeft.some((e) => e.vendor_id === short.vendorId && e.created_at.getTime() < cutoff),
      "the short vendor's old events are gone",
    );
    t.ok(
      eventsLeft.some((e) => e.vendor_id === long.vendorId),
      "the long vendor's events stay",
    );
    const deliveries = await app.db.selectFrom('webhook_deliveries').select('vendor_id').execute();
    t.same(
      deliveries.map((d) => d.vendor_id),
      [long.vendorId],
    );

    t.equal((await worker.applyRetention()).removed.jobs, 0, 'a second run finds nothing more');
  },
);

t.test('one run at a time across workers', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent', RETENTION_INTERVAL_MS: '0' });
  const worker = await testWorker(t, env);
  const redis = createRedis(env['REDIS_URL'] as string);
  t.teardown(() => redis.quit());
  const key = retentionLockKey(env['BULL_PREFIX'] as string);
  await redis.set(key, 'another-worker', 'PX', 10_000);
  t.same(
    await worker.applyRetention(),
    { ran: false, removed: { jobs: 0, uploads: 0, deadLetters: 0, events: 0, webhookDeliveries: 0 } },
    'stands aside while another holds the lock',
  );
  t.equal(await redis.get(key), 'another-worker', "and leaves the other's lock alone");
  await redis.del(key);
  t.ok((await worker.applyRetention()).ran);
  t.equal(await redis.get(key), null, 'its own lock is released after the run');
});

t.test('expired jobs stored in Cloudinary are deleted there (signed API calls)', async (t) => {
  const fake = await fakeCloudinary(t);
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    LOG_LEVEL: 'silent',
    STORAGE_DRIVER: 'auto',
    CLOUDINARY_URL: fake.url,
    SWEEP_INTERVAL_MS: '100',
    RETENTION_INTERVAL_MS: '0',
  });
  const app = await testApp(t, env);
  const worker = await testWorker(t, env);
  const images = await testServer(t);
  const jpeg = await makeJpeg(64, 48);
  images.route('/p.jpg', serveBytes(jpeg, 'image/jpeg'));
  const admin = await testVendor(app, { role: 'admin', name: 'Admin' });
  const vendor = await testVendor(app);
  await setRetention(app, admin, vendor.vendorId, { jobs: '1s' });

  const url = await queueResize(app, vendor, `${images.url}/p.jpg`);
  const upload = await uploadResize(app, vendor, jpeg, 'rec-up');
  const [a, b] = [await waitForFinal(app.db, url), await waitForFinal(app.db, upload)];
  t.same([a.status, b.status], ['completed', 'completed']);
  const storedBefore = fake.paths.size;
  t.ok(storedBefore >= 3, 'two outputs and an upload are in Cloudinary');

  await untilDue(app, [url, upload], 1000);
  t.equal((await worker.applyRetention()).removed.jobs, 2);
  await waitFor(
    async () =>
      Number(
        (
          await app.db
            .selectFrom('storage_garbage')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      ) === 0,
  );
  t.equal(fake.paths.size, 0, 'nothing is left in Cloudinary');
  const prefixes = fake.deletes.filter((d) => d.api === 'delete_resources_by_prefix').flatMap((d) => d.target);
  t.ok(
    prefixes.some((p) => p.endsWith(`${a.output_prefix}/`)),
    "the job's outputs were deleted by prefix",
  );
  t.ok(
    fake.deletes.some((d) => d.api !== 'delete_resources_by_prefix' && d.target.some((id) => id.includes('/uploads/'))),
    'the upload by its public id',
  );
});
