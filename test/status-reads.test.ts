import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv, type TestEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { queueResize, testLedger } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { completeJob, failAttempt, startAttempt, type Ledger } from '../db/repos/jobs.js';
import { publishJobEvent } from '../worker/events.js';
import { deleteVendor } from '../db/repos/vendors.js';

/**
 * Status reads at dashboard scale (issue 20): ETags and 304s, the in-memory
 * view cache that job events invalidate, long-polls (`?wait=`) woken by the
 * same events, and the caps on waiting requests. Attempts are driven by hand
 * through the worker's own ledger functions and event publisher, so each
 * state change happens exactly when the test says.
 */
const PHOTO = 'https://images.example.com/a.jpg';

/** What the worker does around an attempt: the ledger write, then the event. */
function driver(t: Test, app: FastifyInstance, env: TestEnv) {
  const ledger: Ledger = testLedger(t, app.db, env);
  const prefix = env['BULL_PREFIX'] as string;
  const payload = async (jobId: string) => {
    const job = await app.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow();
    return { job, event: { jobId, vendorId: job.vendor_id, batchId: job.batch_id, kind: job.kind } };
  };
  return {
    async start(jobId: string): Promise<number> {
      const started = await startAttempt(ledger, jobId, 'test-worker');
      if (!started) throw new Error('not startable');
      publishJobEvent(app.redis, prefix, { ...(await payload(jobId)).event, type: 'active', progress: 0 });
      return started.attempt;
    },
    async complete(jobId: string, attempt: number): Promise<void> {
      const { job, event } = await payload(jobId);
      const done = await completeJob(
        ledger,
        {
          ...event,
          attempt,
          projectId: job.project_id,
          recordId: job.record_id,
          result: { url: 'https://cdn.example.com/out.png', width: 8, height: 6 },
          record: { processedPhotoUrl: 'https://cdn.example.com/out.png', width: 8, height: 6 },
          recordFields: {},
        },
        10,
      );
      if (!done) throw new Error('not completed');
      publishJobEvent(app.redis, prefix, { ...event, type: 'completed', progress: 100 });
    },
    async fail(jobId: string, attempt: number): Promise<void> {
      const { event } = await payload(jobId);
      await failAttempt(app.db, { jobId, attempt, status: 'failed', code: 'BAD_IMAGE', message: 'not an image' });
      publishJobEvent(app.redis, prefix, { ...event, type: 'failed', error: { code: 'BAD_IMAGE', message: 'not an image' } });
    },
    progress(jobId: string, vendorId: string, progress: number): void {
      publishJobEvent(app.redis, prefix, { jobId, vendorId, batchId: null, kind: 'process', type: 'progress', progress });
    },
  };
}

async function liveApp(t: Test, extra: TestEnv = {}) {
  // A long cache: only an event can make a read see a change within the test.
  const env = await isolatedEnv(t, { JOB_READ_CACHE_MS: '600000', ...extra });
  const app = await testApp(t, env);
  await waitFor(async () => app.eventHub.live, 5000, 20);
  return { env, app };
}

const get = (app: FastifyInstance, vendor: TestVendor, url: string, headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url, headers: { ...vendor.auth, ...headers } });

async function bulk(app: FastifyInstance, vendor: TestVendor, n: number): Promise<{ batchId: string; jobIds: string[] }> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-process',
    headers: vendor.auth,
    payload: {
      projectId: 'proj',
      items: Array.from({ length: n }, (_, i) => ({ recordId: `b-${i}`, photoUrl: PHOTO })),
      operations: [{ op: 'resize', width: 8 }],
    },
  });
  if (res.statusCode !== 202) throw new Error(`bulk failed: ${res.statusCode} ${res.body}`);
  return res.json() as { batchId: string; jobIds: string[] };
}

t.test('ETag and If-None-Match on job, batch and list reads; events refresh cached views', async (t) => {
  const { env, app } = await liveApp(t);
  const vendor = await testVendor(app);
  const run = driver(t, app, env);
  const jobId = await queueResize(app, vendor, PHOTO);
  const { batchId, jobIds } = await bulk(app, vendor, 2);

  for (const url of [`/api/image-queue/job/${jobId}`, `/api/image-queue/batch/${batchId}`, '/api/image-queue/jobs?limit=10']) {
    const first = await get(app, vendor, url);
    t.equal(first.statusCode, 200, url);
    const etag = first.headers['etag'] as string;
    t.match(etag, /^"[\w-]{10,}"$/, `${url}: a strong ETag`);
    t.equal(first.headers['cache-control'], 'private, no-cache', `${url}: revalidated on every use`);
    const again = await get(app, vendor, url, { 'if-none-match': etag });
    t.equal(again.statusCode, 304, `${url}: the same ETag is Not Modified`);
    t.equal(again.body, '', `${url}: 304 has no body`);
    t.equal(again.headers['etag'], etag, `${url}: 304 repeats the ETag`);
    t.equal((await get(app, vendor, url, { 'if-none-match': `"other", W/${etag}` })).statusCode, 304, `${url}: a list of ETags, weak form too`);
    t.equal((await get(app, vendor, url, { 'if-none-match': '"stale"' })).statusCode, 200, `${url}: another ETag gets the body`);
  }

  const other = await testVendor(app, { name: 'Other' });
  const mine = await get(app, vendor, `/api/image-queue/job/${jobId}`);
  t.equal((await get(app, other, `/api/image-queue/job/${jobId}`)).statusCode, 404, "another vendor's job is not found, cached or not");
  t.equal((await get(app, other, `/api/image-queue/job/${jobId}`, { 'if-none-match': mine.headers['etag'] as string })).statusCode, 404, 'nor 304');

  // The cache keeps views for ten minutes here: only the events can show the changes.
  const before = mine.headers['etag'] as string;
  const attempt = await run.start(jobId);
  const active = await waitFor(async () => {
    const res = await get(app, vendor, `/api/image-queue/job/${jobId}`, { 'if-none-match': before });
    return res.statusCode === 200 && res;
  }, 5000);
  t.equal(active.json().state, 'active', 'the active event dropped the cached view');
  run.progress(jobId, vendor.vendorId, 40);
  const progressed = await waitFor(async () => {
    const res = await get(app, vendor, `/api/image-queue/job/${jobId}`);
    return res.json().progress === 40 && res;
  }, 5000);
  t.not(progressed.headers['etag'], active.headers['etag'], 'progress changes the ETag');
  await run.complete(jobId, attempt);
  const completed = await waitFor(async () => {
    const res = await get(app, vendor, `/api/image-queue/job/${jobId}`);
    return res.json().state === 'completed' && res;
  }, 5000);
  t.same(completed.json().result, { url: 'https://cdn.example.com/out.png', width: 8, height: 6 }, 'the result comes with it');

  const batchBefore = (await get(app, vendor, `/api/image-queue/batch/${batchId}`)).headers['etag'] as string;
  await run.start(jobIds[0] as string);
  const batch = await waitFor(async () => {
    const res = await get(app, vendor, `/api/image-queue/batch/${batchId}`, { 'if-none-match': batchBefore });
    return res.statusCode === 200 && res;
  }, 5000);
  t.equal(batch.json().state, 'active', "an item's event drops the cached batch view");
});

t.test('long-polls wake on completion, on failure, on a state change of a batch item, and at the end of the wait', async (t) => {
  const { env, app } = await liveApp(t);
  const vendor = await testVendor(app);
  const run = driver(t, app, env);
  const poll = (url: string, headers: Record<string, string> = {}) => {
    const started = Date.now();
    return get(app, vendor, url, headers).then((res) => ({ res, ms: Date.now() - started }));
  };
  const waiting = (n: number) => waitFor(async () => app.jobStatus.waiting(vendor.vendorId) === n, 5000, 10);

  const completing = await queueResize(app, vendor, PHOTO);
  const attempt = await run.start(completing);
  const held = poll(`/api/image-queue/job/${completing}?wait=30`);
  await waiting(1);
  await run.complete(completing, attempt);
  const done = await held;
  t.equal(done.res.statusCode, 200);
  t.equal(done.res.json().state, 'completed', 'the long-poll answers with the completed job');
  t.ok(done.ms < 10_000, `it answered when the job completed, not at the end of the wait (${done.ms} ms)`);
  t.equal(app.jobStatus.waiting(), 0, 'the waiter is gone');

  const failing = await queueResize(app, vendor, PHOTO);
  const failingAttempt = await run.start(failing);
  const current = (await get(app, vendor, `/api/image-queue/job/${failing}`)).headers['etag'] as string;
  const heldFail = poll(`/api/image-queue/job/${failing}?wait=30`, { 'if-none-match': current });
  await waiting(1);
  await run.fail(failing, failingAttempt);
  const failed = await heldFail;
  t.equal(failed.res.statusCode, 200, 'a changed job is a 200 even with If-None-Match');
  t.same([failed.res.json().state, failed.res.json().error?.code], ['failed', 'BAD_IMAGE'], 'the long-poll answers with the failure');
  t.ok(failed.ms < 10_000, `at once (${failed.ms} ms)`);

  const finished = await poll(`/api/image-queue/job/${failing}?wait=30`);
  t.equal(finished.res.json().state, 'failed', 'a finished job answers at once');
  t.ok(finished.ms < 5000, `without waiting (${finished.ms} ms)`);

  const { batchId, jobIds } = await bulk(app, vendor, 2);
  const heldBatch = poll(`/api/image-queue/batch/${batchId}?wait=30`);
  await waiting(1);
  await run.start(jobIds[1] as string);
  const batch = await heldBatch;
  t.equal(batch.res.json().state, 'active', 'a batch long-poll wakes when an item starts');
  t.ok(batch.ms < 10_000, `at once (${batch.ms} ms)`);

  const idle = await queueResize(app, vendor, PHOTO);
  const timedOut = await poll(`/api/image-queue/job/${idle}?wait=1`);
  t.equal(timedOut.res.statusCode, 200);
  t.equal(timedOut.res.json().state, 'queued', 'nothing happened: the current state at the end of the wait');
  t.ok(timedOut.ms >= 950, `after the wait (${timedOut.ms} ms)`);
  const etag = timedOut.res.headers['etag'] as string;
  const notModified = await poll(`/api/image-queue/job/${idle}?wait=1`, { 'if-none-match': etag });
  t.equal(notModified.res.statusCode, 304, 'with a current ETag, the end of the wait is a 304');
  t.ok(notModified.ms >= 950, `after the wait (${notModified.ms} ms)`);

  t.equal((await get(app, vendor, `/api/image-queue/job/${idle}?wait=61`)).statusCode, 400, 'a wait beyond 60 s is refused');
  t.equal((await get(app, vendor, '/api/image-queue/job/01M0000000000000000000000Z?wait=5')).statusCode, 404, 'an unknown job is 404 at once');
});

t.test('waiter caps: beyond them a long-poll answers at once, and closing the app ends the rest', async (t) => {
  const { app } = await liveApp(t, { JOB_WAITS_MAX_PER_VENDOR: '2', JOB_WAITS_MAX: '3' });
  const a = await testVendor(app, { name: 'A' });
  const b = await testVendor(app, { name: 'B' });
  const jobA = await queueResize(app, a, PHOTO);
  const jobB = await queueResize(app, b, PHOTO);
  const hold = (vendor: TestVendor, jobId: string) => get(app, vendor, `/api/image-queue/job/${jobId}?wait=60`);

  const held = [hold(a, jobA), hold(a, jobA)];
  await waitFor(async () => app.jobStatus.waiting(a.vendorId) === 2, 5000, 10);
  const third = await hold(a, jobA);
  t.equal(third.statusCode, 200, 'the vendor is at its cap: answered at once, not an error');
  t.equal(third.json().state, 'queued');
  t.equal(app.jobStatus.waiting(a.vendorId), 2, "the vendor's other long-polls still wait");

  held.push(hold(b, jobB));
  await waitFor(async () => app.jobStatus.waiting() === 3, 5000, 10);
  const fourth = await hold(b, jobB);
  t.equal(fourth.statusCode, 200, 'the process is at its cap: answered at once');
  t.equal(app.jobStatus.waiting(), 3);

  await app.close();
  const ended = await Promise.all(held);
  t.same(
    ended.map((r) => r.statusCode),
    [200, 200, 200],
    'closing the API answers every waiting long-poll',
  );
});

t.test('Prefer: wait=N on an enqueue route answers with the finished job, or 202 when it does not finish in time', async (t) => {
  const { env, app } = await liveApp(t);
  const vendor = await testVendor(app);
  const run = driver(t, app, env);
  const enqueue = (prefer: string, recordId: string) =>
    app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: { ...vendor.auth, prefer },
      payload: { recordId, projectId: 'proj', photoUrl: PHOTO, operations: [{ op: 'resize', width: 8 }] },
    });

  const held = enqueue('respond-async, wait=20', 'rec-wait');
  await waitFor(async () => app.jobStatus.waiting(vendor.vendorId) === 1, 5000, 10);
  const job = await app.db
    .selectFrom('jobs')
    .select('id')
    .where('vendor_id', '=', vendor.vendorId)
    .where('record_id', '=', 'rec-wait')
    .executeTakeFirstOrThrow();
  const attempt = await run.start(job.id);
  t.equal(app.jobStatus.waiting(vendor.vendorId), 1, 'starting is not finishing: still held');
  await run.complete(job.id, attempt);
  const done = await held;
  t.equal(done.statusCode, 200, 'finished within the wait: 200');
  t.equal(done.headers['preference-applied'], 'wait=20');
  t.same([done.json().id, done.json().state, done.json().result?.width], [job.id, 'completed', 8], 'the body is the finished job, as GET /job/:id shows it');

  const started = Date.now();
  const late = await enqueue('wait=1', 'rec-late');
  t.equal(late.statusCode, 202, 'not finished within the wait: the usual 202');
  t.equal(late.headers['preference-applied'], undefined, 'and no Preference-Applied');
  t.ok(Date.now() - started >= 950, 'after the wait');
  t.ok(late.json().jobId, 'with the queued answer');
});

t.test('a deleted vendor is refused at once although its token and job views are cached (VENDOR_CACHE_MS=0, as in every test env)', async (t) => {
  const { app } = await liveApp(t);
  const vendor = await testVendor(app);
  const jobId = await queueResize(app, vendor, PHOTO);
  const url = `/api/image-queue/job/${jobId}`;
  const first = await get(app, vendor, url);
  t.equal(first.statusCode, 200);
  t.equal((await get(app, vendor, url, { 'if-none-match': first.headers['etag'] as string })).statusCode, 304, 'token verified and view cached');
  await deleteVendor(app.db, vendor.vendorId);
  const after = await get(app, vendor, url, { 'if-none-match': first.headers['etag'] as string });
  t.equal(after.statusCode, 401, 'the next read is refused: neither the verified token nor the cached view answers for a deleted vendor');
  t.equal((await get(app, vendor, `${url}?wait=5`)).statusCode, 401, 'nor does a long-poll');
});
