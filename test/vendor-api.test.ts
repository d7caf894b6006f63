import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import type { QueueName } from '../jobs/queues.js';

/**
 * The vendor API of seed 003 against the real MariaDB and Redis: every
 * enqueue route with its seed body, bulk in request order, the status routes,
 * tenancy, validation, idempotency and uploads. No worker runs: jobs stay
 * queued, which is what these routes are about.
 */
const URL_A = 'https://images.example.com/a.jpg';
const urls = (n: number) => Array.from({ length: n }, (_, i) => `https://images.example.com/p${i}.jpg`);
const ids = (n: number, prefix = 'rec') => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

async function ledgerCount(app: FastifyInstance, vendorId: string): Promise<number> {
  const row = await app.db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('vendor_id', '=', vendorId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The queue's waiting jobs in the order a worker will take them (Bull pops from the tail). */
async function processingOrder(app: FastifyInstance, queue: QueueName): Promise<string[]> {
  const q = app.queues[queue];
  return (await q.client.lrange(q.toKey('wait'), 0, -1)).reverse();
}

t.test('vendor API', async (t) => {
  const env = await isolatedEnv(t, { UPLOAD_MAX_FILE_BYTES: '300000', STATS_CACHE_MS: '0' });
  const app = await testApp(t, env);
  const a = await testVendor(app, { name: 'Studio A' });
  const b = await testVendor(app, { name: 'Studio B' });
  const admin = await testVendor(app, { name: 'Operator', role: 'admin' });
  const post = (vendor: TestVendor, url: string, payload: object, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: `/api/image-queue/${url}`, headers: { ...vendor.auth, ...headers }, payload });
  const get = (vendor: TestVendor, url: string) => app.inject({ method: 'GET', url: `/api/image-queue/${url}`, headers: vendor.auth });

  t.test('each single route takes its seed body and answers 202 with the seed fields', async (t) => {
    const cases = [
      {
        url: 'remove-bg-queue',
        body: { recordId: 'record-123', projectId: 'project-456', photoUrl: URL_A, vendorId: a.vendorId },
        queue: 'background-removal',
      },
      { url: 'crop-face-queue', body: { recordId: 'record-124', projectId: 'project-456', photoUrl: URL_A, mode: 'passport' }, queue: 'face-crop' },
      {
        url: 'process-queue',
        body: { recordId: 'record-125', projectId: 'project-456', photoUrl: URL_A, operations: [{ op: 'resize', width: 320 }] },
        queue: 'image-processing',
      },
    ] as const;
    for (const c of cases) {
      const res = await post(a, c.url, c.body);
      t.equal(res.statusCode, 202, `${c.url}: ${res.body}`);
      const body = res.json();
      t.equal(body.success, true);
      t.match(body.jobId, /^[0-9A-Z]{26}$/);
      t.equal(body.recordId, c.body.recordId);
      t.equal(body.statusUrl, `/api/image-queue/job/${body.jobId}`);
      t.equal(body.message, 'Job queued for processing');
      t.match(body.estimatedTime, /^\d+-\d+ (seconds|minutes)$/);
      const bullJob = await app.queues[c.queue].getJob(body.jobId);
      t.ok(bullJob, `${c.url}: Bull job in ${c.queue} under the ledger id`);
      t.same(bullJob?.data.source, { type: 'url', url: URL_A });
      const status = await get(a, `job/${body.jobId}`);
      t.equal(status.statusCode, 200);
      t.equal(status.json().state, 'queued');
      t.equal(status.json().data.recordId, c.body.recordId);
    }
    const crop = await post(a, 'crop-face-queue', { recordId: 'r-opt', projectId: 'p', photoUrl: URL_A, mode: 'idcard', options: { format: 'png' } });
    t.equal(crop.statusCode, 202);
    const job = (await get(a, `job/${crop.json().jobId}`)).json();
    t.match(job.data.options, { mode: 'idcard', format: 'png', background: 'original' }, 'options stored with the contract defaults');
    const bg = (await get(a, `job/${(await post(a, 'remove-bg-queue', { recordId: 'r-bg', projectId: 'p', photoUrl: URL_A })).json().jobId}`)).json();
    t.match(bg.data.options, { model: 'u2netp', format: 'png' });
  });

  t.test('bulk routes take recordIds + photoUrls or items, and answer with jobIds in request order', async (t) => {
    const res = await post(a, 'bulk-remove-bg', { recordIds: ['rec-1', 'rec-2', 'rec-3'], projectId: 'project-456', photoUrls: urls(3), vendorId: a.vendorId });
    t.equal(res.statusCode, 202, res.body);
    const body = res.json();
    t.equal(body.success, true);
    t.equal(body.count, 3);
    t.equal(body.jobIds.length, 3);
    t.equal(body.message, 'Bulk jobs queued for processing');
    t.match(body.estimatedTime, /^\d+-\d+ (seconds|minutes)$/);
    t.equal(body.statusUrl, `/api/image-queue/batch/${body.batchId}`);

    const batch = await get(a, `batch/${body.batchId}`);
    t.equal(batch.statusCode, 200);
    t.same(
      batch.json().items.map((i: { jobId: string; recordId: string }) => [i.jobId, i.recordId]),
      body.jobIds.map((id: string, i: number) => [id, `rec-${i + 1}`]),
    );
    t.match(batch.json(), { total: 3, state: 'queued', counts: { queued: 3, active: 0, completed: 0, failed: 0, dead: 0 }, kind: 'remove-bg' });

    const crop = await post(a, 'bulk-crop-face', {
      projectId: 'p',
      mode: 'idcard',
      items: [
        { recordId: 'c1', photoUrl: URL_A },
        { recordId: 'c2', photoUrl: URL_A },
      ],
    });
    t.equal(crop.statusCode, 202, crop.body);
    const cropJob = (await get(a, `job/${crop.json().jobIds[1]}`)).json();
    t.equal(cropJob.data.recordId, 'c2');
    t.equal(cropJob.data.options.mode, 'idcard');
    t.equal(cropJob.data.batchId, crop.json().batchId);

    const proc = await post(a, 'bulk-process', { projectId: 'p', recordIds: ['x1', 'x2'], photoUrls: urls(2), operations: [{ op: 'resize', height: 100 }] });
    t.equal(proc.statusCode, 202, proc.body);
    t.ok(await app.queues['image-processing'].getJob(proc.json().jobIds[0]));
  });

  t.test('a 100-item bulk makes 100 ledger rows and 100 Bull jobs, in request order', async (t) => {
    const c = await testVendor(app, { name: 'Studio C' });
    const recordIds = ids(100);
    const res = await post(c, 'bulk-process', { projectId: 'big', recordIds, photoUrls: urls(100), operations: [{ op: 'resize', width: 64 }] });
    t.equal(res.statusCode, 202, res.body);
    const { jobIds, batchId } = res.json();
    t.equal(jobIds.length, 100);
    const rows = await app.db
      .selectFrom('jobs')
      .select(['id', 'record_id', 'batch_seq', 'status'])
      .where('batch_id', '=', batchId)
      .orderBy('batch_seq')
      .execute();
    t.equal(rows.length, 100, '100 ledger rows');
    t.same(
      rows.map((r) => r.id),
      jobIds,
      'ledger order = request order',
    );
    t.same(
      rows.map((r) => r.record_id),
      recordIds,
    );
    t.ok(
      rows.every((r) => r.status === 'queued'),
      'all queued',
    );
    const bullJobs = await Promise.all(jobIds.map((id: string) => app.queues['image-processing'].getJob(id)));
    t.equal(bullJobs.filter(Boolean).length, 100, '100 Bull jobs');
    t.same(
      bullJobs.map((j) => j?.data.recordId),
      recordIds,
    );
    const order = (await processingOrder(app, 'image-processing')).filter((id) => jobIds.includes(id));
    t.same(order, jobIds, 'a worker takes them in request order');
    const records = await app.db.selectFrom('data_records').select('record_id').where('vendor_id', '=', c.vendorId).execute();
    t.equal(records.length, 100, 'one data record per item');
  });

  t.test("one vendor's bulk does not starve another vendor's single job", async (t) => {
    const big = await testVendor(app, { name: 'Big Studio' });
    const small = await testVendor(app, { name: 'Small Studio' });
    const bulk = await post(big, 'bulk-process', { projectId: 'p', recordIds: ids(10, 'f'), photoUrls: urls(10), operations: [{ op: 'resize', width: 8 }] });
    const single = await post(small, 'process-queue', { recordId: 's', projectId: 'p', photoUrl: URL_A, operations: [{ op: 'resize', width: 8 }] });
    const mine = [...bulk.json().jobIds, single.json().jobId];
    const order = (await processingOrder(app, 'image-processing')).filter((id) => mine.includes(id));
    t.equal(order.length, 11);
    t.ok(order.indexOf(single.json().jobId) <= 1, `the single job is taken first or second, not 11th (at ${order.indexOf(single.json().jobId)})`);
  });

  t.test('bad bodies are 400 naming the field', async (t) => {
    const expect400 = async (url: string, payload: object, field: RegExp, label: string) => {
      const res = await post(a, url, payload);
      t.equal(res.statusCode, 400, `${label}: ${res.body}`);
      t.equal(res.json().code, 'BAD_REQUEST', label);
      t.match(res.json().message, field, label);
      t.ok(Array.isArray(res.json().fields), `${label}: fields listed`);
    };
    await expect400('remove-bg-queue', { projectId: 'p', photoUrl: URL_A }, /body\/recordId/, 'missing recordId');
    await expect400('remove-bg-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A, options: { format: 'gif' } }, /body\/options\/format/, 'bad option');
    await expect400('remove-bg-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A, colour: 'red' }, /body\/colour/, 'unknown field');
    await expect400('crop-face-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A, mode: 'selfie' }, /body\/mode/, 'bad mode');
    await expect400('crop-face-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A }, /body\/mode/, 'missing mode');
    await expect400(
      'crop-face-queue',
      { recordId: 'r', projectId: 'p', photoUrl: URL_A, mode: 'passport', options: { background: 'transparent', format: 'jpeg' } },
      /body\/options\/format jpeg cannot be transparent/,
      'transparent jpeg',
    );
    await expect400(
      'bulk-crop-face',
      { projectId: 'p', items: [{ recordId: 'a', photoUrl: URL_A }], mode: 'idcard', options: { face: 'several' } },
      /body\/options\/face/,
      'bad face choice',
    );
    await expect400(
      'bulk-process',
      { projectId: 'p', items: [{ recordId: 'a', photoUrl: URL_A }], preset: 'gallery-variants', presetOptions: { faces: true } },
      /body\/presetOptions\/faces is not an option of preset gallery-variants/,
      'bulk preset option of another preset',
    );
    await expect400(
      'process-queue',
      { recordId: 'r', projectId: 'p', photoUrl: URL_A, operations: [{ op: 'resize' }] },
      /body\/operations\/0/,
      'resize without size',
    );
    await expect400('bulk-remove-bg', { projectId: 'p', recordIds: ['a', 'b'], photoUrls: urls(3) }, /body\/photoUrls/, 'unequal lengths');
    await expect400('bulk-remove-bg', { projectId: 'p', recordIds: ['a', 'b'] }, /body\/photoUrls/, 'recordIds without photoUrls');
    await expect400('bulk-remove-bg', { projectId: 'p' }, /body\/items/, 'no items at all');
    await expect400(
      'bulk-remove-bg',
      { projectId: 'p', items: [{ recordId: 'a', photoUrl: URL_A }], recordIds: ['a'], photoUrls: [URL_A] },
      /body\/items/,
      'both forms',
    );
    await expect400('bulk-remove-bg', { projectId: 'p', recordIds: ['a', 'b', 'a'], photoUrls: urls(3) }, /body\/recordIds\/2/, 'repeated record');
    await expect400('bulk-crop-face', { projectId: 'p', items: [{ recordId: 'a', photoUrl: URL_A }] }, /body\/mode/, 'bulk crop without mode');
    await expect400(
      'bulk-process',
      { projectId: 'p', items: [{ recordId: 'a' }], operations: [{ op: 'resize', width: 10 }] },
      /body\/items\/0\/photoUrl/,
      'item without url',
    );
    const badUrl = await post(a, 'bulk-remove-bg', { projectId: 'p', recordIds: ['a', 'b'], photoUrls: [URL_A, 'ftp://example.com/x.jpg'] });
    t.equal(badUrl.statusCode, 400);
    t.match(badUrl.json().message, /body\/photoUrls\/1/);
    t.equal(await ledgerCount(app, a.vendorId), await ledgerCount(app, a.vendorId), 'sanity');

    const plain = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: { ...a.auth, 'content-type': 'text/plain' },
      payload: 'hello',
    });
    t.equal(plain.statusCode, 415, 'a text/plain body is refused, not passed through unvalidated');
    t.equal(plain.json().code, 'UNSUPPORTED_MEDIA_TYPE');
  });

  t.test("a body vendorId that is not the token's is 403 on every enqueue route", async (t) => {
    for (const [url, body] of [
      ['remove-bg-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A }],
      ['crop-face-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A, mode: 'passport' }],
      ['process-queue', { recordId: 'r', projectId: 'p', photoUrl: URL_A, operations: [{ op: 'resize', width: 5 }] }],
      ['bulk-remove-bg', { projectId: 'p', items: [{ recordId: 'r', photoUrl: URL_A }] }],
      ['bulk-crop-face', { projectId: 'p', items: [{ recordId: 'r', photoUrl: URL_A }], mode: 'passport' }],
      ['bulk-process', { projectId: 'p', items: [{ recordId: 'r', photoUrl: URL_A }], operations: [{ op: 'resize', width: 5 }] }],
    ] as const) {
      const res = await post(a, url, { ...body, vendorId: b.vendorId });
      t.equal(res.statusCode, 403, url);
      t.equal(res.json().code, 'FORBIDDEN', url);
    }
  });

  t.test("every route refuses another vendor's ids with 404", async (t) => {
    const single = (await post(a, 'remove-bg-queue', { recordId: 'mine', projectId: 'p', photoUrl: URL_A })).json();
    const bulk = (await post(a, 'bulk-remove-bg', { projectId: 'p', items: [{ recordId: 'mine2', photoUrl: URL_A }] })).json();
    t.equal((await get(b, `job/${single.jobId}`)).statusCode, 404, 'job');
    t.equal((await get(b, `batch/${bulk.batchId}`)).statusCode, 404, 'batch');
    t.equal((await get(b, `jobs?batchId=${bulk.batchId}`)).statusCode, 404, 'jobs filtered by a foreign batch');
    t.equal((await get(b, `batch/${single.jobId}`)).statusCode, 404, 'a job id is no batch id');
    const bJobs = (await get(b, 'jobs?limit=200')).json().jobs as { id: string }[];
    t.notOk(
      bJobs.some((j) => j.id === single.jobId),
      "B's listing never shows A's jobs",
    );
    t.equal((await get(a, `job/${single.jobId}`)).statusCode, 200);
    t.equal((await get(a, `batch/${bulk.batchId}`)).statusCode, 200);
  });

  t.test('jobs listing: newest first, filtered, cursor-paginated', async (t) => {
    const d = await testVendor(app, { name: 'Studio D' });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await post(d, 'remove-bg-queue', { recordId: `l${i}`, projectId: 'p', photoUrl: URL_A })).json().jobId);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(d, `jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      t.equal(res.statusCode, 200, res.body);
      const page = res.json();
      t.ok(page.jobs.length <= 2);
      seen.push(...page.jobs.map((j: { id: string }) => j.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    t.equal(pages, 3);
    t.same(seen, [...made].sort().reverse(), 'every job once, newest first');
    t.equal((await get(d, 'jobs?status=completed')).json().jobs.length, 0);
    t.equal((await get(d, 'jobs?status=queued&status=completed')).json().jobs.length, 5);
    t.equal((await get(d, 'jobs?kind=face-crop')).json().jobs.length, 0);
    const bad = await get(d, 'jobs?status=finished');
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /querystring\/status/);
  });

  t.test('queue-stats: a vendor sees its own counts and the global depth; an admin sees every vendor', async (t) => {
    const e = await testVendor(app, { name: 'Studio E' });
    await post(e, 'bulk-crop-face', { projectId: 'p', mode: 'passport', items: ids(4, 'q').map((recordId) => ({ recordId, photoUrl: URL_A })) });
    const mine = await get(e, 'queue-stats');
    t.equal(mine.statusCode, 200, mine.body);
    const stats = mine.json();
    t.equal(stats.scope, 'vendor');
    t.match(stats.faceCrop, { waiting: 4, active: 0, completed: 0, failed: 0, delayed: 0, paused: 0, dead: 0 });
    t.match(stats.backgroundRemoval, { waiting: 0 });
    t.ok(stats.faceCrop.queue.waiting >= 4, 'global depth includes every vendor');
    t.notOk('vendors' in stats, 'no other vendors for a vendor token');

    const all = (await get(admin, 'queue-stats')).json();
    t.equal(all.scope, 'all');
    t.ok(all.backgroundRemoval.waiting >= stats.backgroundRemoval.waiting);
    const eRow = all.vendors.find((v: { vendorId: string }) => v.vendorId === e.vendorId);
    t.match(eRow, { faceCrop: { waiting: 4 } });
    t.ok(all.vendors.some((v: { vendorId: string }) => v.vendorId === a.vendorId));
  });

  t.test('Idempotency-Key: a retry returns the first response and creates nothing; another body is 422', async (t) => {
    const f = await testVendor(app, { name: 'Studio F' });
    const body = { recordId: 'idem-1', projectId: 'p', photoUrl: URL_A };
    const first = await post(f, 'remove-bg-queue', body, { 'idempotency-key': 'key-1' });
    t.equal(first.statusCode, 202);
    const again = await post(f, 'remove-bg-queue', { projectId: 'p', photoUrl: URL_A, recordId: 'idem-1' }, { 'idempotency-key': 'key-1' });
    t.equal(again.statusCode, 202);
    t.same(again.json(), first.json(), 'same response (key order in the body does not matter)');
    t.equal(again.headers['idempotent-replayed'], 'true');
    t.equal(await ledgerCount(app, f.vendorId), 1, 'no second job');

    const other = await post(f, 'remove-bg-queue', { ...body, recordId: 'idem-2' }, { 'idempotency-key': 'key-1' });
    t.equal(other.statusCode, 422);
    t.equal(other.json().code, 'IDEMPOTENCY_MISMATCH');
    const otherRoute = await post(f, 'crop-face-queue', { ...body, mode: 'passport' }, { 'idempotency-key': 'key-1' });
    t.equal(otherRoute.statusCode, 422, 'the same key on another route');
    t.equal(await ledgerCount(app, f.vendorId), 1);

    const badKey = await post(f, 'remove-bg-queue', body, { 'idempotency-key': 'spaces are not allowed' });
    t.equal(badKey.statusCode, 400);
    t.match(badKey.json().message, /headers\/idempotency-key/);

    // Another vendor's key of the same name is its own.
    const g = await testVendor(app, { name: 'Studio G' });
    t.equal((await post(g, 'remove-bg-queue', { ...body, recordId: 'g' }, { 'idempotency-key': 'key-1' })).statusCode, 202);

    // Concurrent retries of one request: one set of jobs, every answer the same.
    const bulkBody = { projectId: 'p', recordIds: ids(5, 'cc'), photoUrls: urls(5) };
    const answers = await Promise.all(Array.from({ length: 6 }, () => post(f, 'bulk-remove-bg', bulkBody, { 'idempotency-key': 'bulk-key' })));
    t.same(
      answers.map((r) => r.statusCode),
      Array(6).fill(202),
    );
    const batchIds = new Set(answers.map((r) => r.json().batchId));
    t.equal(batchIds.size, 1, 'one batch for all six');
    t.equal(await ledgerCount(app, f.vendorId), 1 + 5, 'five jobs, not thirty');
    const batchJobs = await app.db.selectFrom('batches').select('id').where('vendor_id', '=', f.vendorId).execute();
    t.equal(batchJobs.length, 1);

    // A refused request is not remembered: fixing the body and retrying with the key works.
    const refused = await post(f, 'remove-bg-queue', { recordId: 'fix', projectId: 'p' }, { 'idempotency-key': 'key-fix' });
    t.equal(refused.statusCode, 400);
    t.equal((await post(f, 'remove-bg-queue', { recordId: 'fix', projectId: 'p', photoUrl: URL_A }, { 'idempotency-key': 'key-fix' })).statusCode, 202);
  });

  t.test("Idempotency-Key also covers other areas' POST routes (remembered after the response)", async (t) => {
    const pause = () => app.inject({ method: 'POST', url: '/api/admin/queues/face-crop/pause', headers: { ...admin.auth, 'idempotency-key': 'pause-1' } });
    const first = await pause();
    t.equal(first.statusCode, 200, first.body);
    t.notOk(first.headers['idempotent-replayed']);
    const again = await pause();
    t.equal(again.statusCode, 200);
    t.equal(again.headers['idempotent-replayed'], 'true');
    t.same(again.json(), first.json());
    const other = await app.inject({ method: 'POST', url: '/api/admin/queues/face-crop/resume', headers: { ...admin.auth, 'idempotency-key': 'pause-1' } });
    t.equal(other.statusCode, 422, 'the same key on another route');
    t.equal((await app.inject({ method: 'POST', url: '/api/admin/queues/face-crop/resume', headers: admin.auth })).statusCode, 200);
  });

  t.test('uploads: an image is stored before queueing; anything else is 415', async (t) => {
    const u = await testVendor(app, { name: 'Studio U' });
    const jpeg = await makeJpeg(64, 48);
    const form = await multipartBody({ recordId: 'up-1', projectId: 'uploads' }, [
      { field: 'photo', filename: 'me.jpg', contentType: 'image/jpeg', bytes: jpeg },
    ]);
    const res = await app.inject({ method: 'POST', url: '/api/image-queue/remove-bg-queue', headers: { ...u.auth, ...form.headers }, payload: form.payload });
    t.equal(res.statusCode, 202, res.body);
    const jobId = res.json().jobId;
    const row = await app.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow();
    t.match(row.source_key, new RegExp(`^${u.vendorId}/uploads/uploads/[0-9A-Z]{26}-[A-Za-z0-9_-]{16}\\.jpg$`));
    t.same(await readFile(join(env['STORAGE_LOCAL_DIR'] as string, row.source_key as string)), jpeg, 'the stored file is the upload');
    const bullJob = await app.queues['background-removal'].getJob(jobId);
    t.same(bullJob?.data.source, { type: 'stored', key: row.source_key, url: `http://localhost:3000/files/${row.source_key}` });
    const status = (await get(u, `job/${jobId}`)).json();
    t.equal(status.data.source, 'upload');
    t.equal(status.data.photoUrl, null);

    // The type comes from the bytes, not the name or the declared type.
    const png = await (
      await import('sharp')
    )
      .default({ create: { width: 8, height: 8, channels: 3, background: '#08f' } })
      .png()
      .toBuffer();
    const disguised = await multipartBody({ recordId: 'up-2', projectId: 'uploads', operations: JSON.stringify([{ op: 'resize', width: 4 }]) }, [
      { field: 'photo', filename: 'notes.txt', contentType: 'text/plain', bytes: png },
    ]);
    const ok = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: { ...u.auth, ...disguised.headers },
      payload: disguised.payload,
    });
    t.equal(ok.statusCode, 202, ok.body);
    t.match((await app.db.selectFrom('jobs').select('source_key').where('id', '=', ok.json().jobId).executeTakeFirstOrThrow()).source_key, /\.png$/);

    const before = await ledgerCount(app, u.vendorId);
    const text = await multipartBody({ recordId: 'up-3', projectId: 'uploads' }, [
      { field: 'photo', filename: 'photo.jpg', contentType: 'image/jpeg', bytes: Buffer.from('this is a text file, not a photo\n'.repeat(20)) },
    ]);
    const refused = await app.inject({
      method: 'POST',
      url: '/api/image-queue/remove-bg-queue',
      headers: { ...u.auth, ...text.headers },
      payload: text.payload,
    });
    t.equal(refused.statusCode, 415, refused.body);
    t.equal(refused.json().code, 'UNSUPPORTED_MEDIA_TYPE');
    t.match(refused.json().message, /body\/photo/);

    const pdf = await multipartBody({ recordId: 'up-4', projectId: 'uploads' }, [
      {
        field: 'photo',
        filename: 'x.pdf',
        contentType: 'application/pdf',
        bytes: Buffer.from('%PDF-1.4\n%âãÏÓ\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n'),
      },
    ]);
    t.equal(
      (await app.inject({ method: 'POST', url: '/api/image-queue/remove-bg-queue', headers: { ...u.auth, ...pdf.headers }, payload: pdf.payload })).statusCode,
      415,
      'a pdf is 415',
    );

    const big = await multipartBody({ recordId: 'up-5', projectId: 'uploads' }, [
      { field: 'photo', filename: 'big.jpg', contentType: 'image/jpeg', bytes: Buffer.concat([jpeg, Buffer.alloc(400_000)]) },
    ]);
    const tooBig = await app.inject({ method: 'POST', url: '/api/image-queue/remove-bg-queue', headers: { ...u.auth, ...big.headers }, payload: big.payload });
    t.equal(tooBig.statusCode, 413, 'larger than UPLOAD_MAX_FILE_BYTES');
    t.equal(await ledgerCount(app, u.vendorId), before, 'refused uploads queue nothing');

    const noPhoto = await multipartBody({ recordId: 'up-6', projectId: 'uploads' }, []);
    const missing = await app.inject({
      method: 'POST',
      url: '/api/image-queue/remove-bg-queue',
      headers: { ...u.auth, ...noPhoto.headers },
      payload: noPhoto.payload,
    });
    t.equal(missing.statusCode, 400);
    t.match(missing.json().message, /body\/photo/);

    // Bulk: photos in the order of recordIds.
    const one = await makeJpeg(40, 30);
    const two = await makeJpeg(30, 40);
    const bulk = await multipartBody({ projectId: 'uploads', recordIds: ['b-1', 'b-2'], mode: 'passport' }, [
      { field: 'photos', filename: '1.jpg', contentType: 'image/jpeg', bytes: one },
      { field: 'photos', filename: '2.jpg', contentType: 'image/jpeg', bytes: two },
    ]);
    const bulkRes = await app.inject({
      method: 'POST',
      url: '/api/image-queue/bulk-crop-face',
      headers: { ...u.auth, ...bulk.headers },
      payload: bulk.payload,
    });
    t.equal(bulkRes.statusCode, 202, bulkRes.body);
    const rows = await app.db
      .selectFrom('jobs')
      .select(['record_id', 'source_key'])
      .where('batch_id', '=', bulkRes.json().batchId)
      .orderBy('batch_seq')
      .execute();
    t.same(
      rows.map((r) => r.record_id),
      ['b-1', 'b-2'],
    );
    t.same(await readFile(join(env['STORAGE_LOCAL_DIR'] as string, rows[1]?.source_key as string)), two, 'second photo with second record');

    const uneven = await multipartBody({ projectId: 'uploads', recordIds: ['c-1', 'c-2'] }, [
      { field: 'photos', filename: '1.jpg', contentType: 'image/jpeg', bytes: one },
    ]);
    const unevenRes = await app.inject({
      method: 'POST',
      url: '/api/image-queue/bulk-remove-bg',
      headers: { ...u.auth, ...uneven.headers },
      payload: uneven.payload,
    });
    t.equal(unevenRes.statusCode, 400);
    t.match(unevenRes.json().message, /body\/photos/);
  });

  t.test('the bulk item cap is per plan, overridable by an admin, and a clear 413', async (t) => {
    const h = await testVendor(app, { name: 'Studio H' });
    const patch = await app.inject({
      method: 'PATCH',
      url: `/api/admin/vendors/${h.vendorId}`,
      headers: admin.auth,
      payload: { rateLimits: { bulkMaxItems: 5 } },
    });
    t.equal(patch.statusCode, 200, patch.body);
    t.equal(patch.json().effective.bulkMaxItems, 5);
    const over = await post(h, 'bulk-remove-bg', { projectId: 'p', recordIds: ids(6), photoUrls: urls(6) });
    t.equal(over.statusCode, 413);
    t.equal(over.json().code, 'PAYLOAD_TOO_LARGE');
    t.match(over.json().message, /at most 5/);
    t.equal((await post(h, 'bulk-remove-bg', { projectId: 'p', recordIds: ids(5), photoUrls: urls(5) })).statusCode, 202);
    t.equal((await app.inject({ method: 'GET', url: `/api/admin/vendors/${h.vendorId}`, headers: a.auth })).statusCode, 403, 'admin routes need an admin');
  });

  t.test('/docs: every route and status has a schema', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/docs/json' });
    t.equal(res.statusCode, 200);
    const spec = res.json();
    const paths = [
      '/api/image-queue/remove-bg-queue',
      '/api/image-queue/bulk-remove-bg',
      '/api/image-queue/crop-face-queue',
      '/api/image-queue/bulk-crop-face',
      '/api/image-queue/process-queue',
      '/api/image-queue/bulk-process',
      '/api/image-queue/job/{jobId}',
      '/api/image-queue/jobs',
      '/api/image-queue/batch/{batchId}',
      '/api/image-queue/queue-stats',
      '/api/worker/health',
      '/api/admin/vendors/{vendorId}',
    ];
    for (const path of paths) t.ok(spec.paths[path], `${path} documented`);
    const post202 = spec.paths['/api/image-queue/remove-bg-queue'].post;
    t.ok(post202.requestBody.content['multipart/form-data'], 'uploads documented');
    t.ok(post202.requestBody.content['application/json']);
    for (const [path, methods] of Object.entries(spec.paths as Record<string, Record<string, { responses: Record<string, { content?: unknown }> }>>)) {
      if (!path.startsWith('/api/')) continue;
      for (const [method, op] of Object.entries(methods)) {
        for (const [status, response] of Object.entries(op.responses)) {
          // 204 No Content and 304 Not Modified are the answers that have no body to describe
          if (status === '204' || status === '304') t.notOk(response.content, `${method.toUpperCase()} ${path} ${status} has no body`);
          else t.ok(response.content, `${method.toUpperCase()} ${path} ${status} has a schema`);
        }
      }
    }
    t.equal((await app.inject({ method: 'GET', url: '/docs/' })).statusCode, 200, 'browsable');
  });
});
