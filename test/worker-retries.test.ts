import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { attemptRows, queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';

/**
 * Retries, timeouts and dead letters with real source servers: a source that
 * fails twice then works, one that always fails, one that hangs, and content
 * that can never succeed. Backoff is shortened to 400 ms (doubling) and the
 * attempt timeout to 3 s so the file stays quick.
 */
const BACKOFF_MS = 400;

t.test('retries, timeouts and the dead-letter queue', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    JOB_BACKOFF_MS: String(BACKOFF_MS),
    JOB_TIMEOUT_MS: '3000',
    MAX_INPUT_PIXELS: '1000000',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const vendor = await testVendor(app);
  const admin = await testVendor(app, { name: 'Ops', role: 'admin' });
  const jpeg = await makeJpeg(64, 48);
  const images = await testServer(t);

  await t.test('a source that fails twice then works: three attempts, spaced by the doubling backoff', async (t) => {
    const hits: number[] = [];
    images.route('/flaky.jpg', (req, res) => {
      hits.push(Date.now());
      if (hits.length <= 2) res.writeHead(503).end('busy');
      else serveBytes(jpeg, 'image/jpeg')(req, res, Buffer.alloc(0));
    });
    const jobId = await queueResize(app, vendor, `${images.url}/flaky.jpg`);
    const job = await waitForFinal(app.db, jobId);
    t.equal(job.status, 'completed');
    t.equal(job.attempts, 3);
    t.equal(job.error_code, null, 'the error of an earlier attempt is cleared on success');
    t.equal(hits.length, 3);
    const [first, second, third] = hits as [number, number, number];
    // Bull's exponential backoff: BACKOFF_MS, then twice that (small slack for timer granularity).
    t.ok(second - first >= BACKOFF_MS - 50, `first retry waited ${second - first} ms (>= ${BACKOFF_MS})`);
    t.ok(third - second >= 2 * BACKOFF_MS - 50, `second retry waited ${third - second} ms (>= ${2 * BACKOFF_MS})`);
    const attempts = await attemptRows(app.db, jobId);
    t.same(
      attempts.map((a) => [a.attempt, a.outcome, a.error_code]),
      [
        [1, 'failed', 'SOURCE_FETCH_FAILED'],
        [2, 'failed', 'SOURCE_FETCH_FAILED'],
        [3, 'completed', null],
      ],
    );
    t.ok(job.duration_ms !== null && job.duration_ms >= 3 * BACKOFF_MS - 100, 'duration spans the retries');
  });

  let deadJobId = '';
  await t.test('a source that always fails: dead after three attempts, listed with payload and every error', async (t) => {
    let hits = 0;
    let healthy = false;
    images.route('/down.jpg', (req, res) => {
      hits++;
      if (healthy) serveBytes(jpeg, 'image/jpeg')(req, res, Buffer.alloc(0));
      else res.writeHead(502).end('bad gateway');
    });
    deadJobId = await queueResize(app, vendor, `${images.url}/down.jpg`, 'rec-dead');
    const job = await waitForFinal(app.db, deadJobId);
    t.equal(job.status, 'dead');
    t.equal(job.attempts, 3);
    t.equal(job.error_code, 'SOURCE_FETCH_FAILED');
    t.equal(hits, 3, 'no attempt beyond the third');

    const status = await app.inject({ method: 'GET', url: `/api/image-queue/job/${deadJobId}`, headers: vendor.auth });
    t.equal(status.json().state, 'dead');

    const list = await app.inject({ method: 'GET', url: '/api/admin/dead-letters?queue=image-processing', headers: admin.auth });
    t.equal(list.statusCode, 200, list.body);
    const [letter] = list.json().items;
    t.equal(letter.jobId, deadJobId);
    t.equal(letter.queue, 'image-processing');
    t.equal(letter.vendorId, vendor.vendorId);
    t.same(letter.payload.source, { type: 'url', url: `${images.url}/down.jpg` });
    t.match(letter.payload.options, { operations: [{ op: 'resize', width: 8 }] });
    t.same(
      letter.attemptHistory.map((a: { attempt: number; errorCode: string; errorMessage: string }) => [a.attempt, a.errorCode, /502/.test(a.errorMessage)]),
      [
        [1, 'SOURCE_FETCH_FAILED', true],
        [2, 'SOURCE_FETCH_FAILED', true],
        [3, 'SOURCE_FETCH_FAILED', true],
      ],
    );

    const bullJob = await app.queues['image-processing'].getJob(deadJobId);
    t.equal(await bullJob?.getState(), 'failed', 'Bull gave up too (the ledger decided)');

    t.equal((await app.inject({ method: 'GET', url: '/api/admin/dead-letters', headers: vendor.auth })).statusCode, 403, 'vendors cannot see dead letters');
    t.equal((await app.inject({ method: 'GET', url: '/api/admin/dead-letters' })).statusCode, 401);

    // The source is fixed; an operator retries the dead letter: same job id, fresh attempts, history kept.
    healthy = true;
    const retry = await app.inject({ method: 'POST', url: `/api/admin/dead-letters/${deadJobId}/retry`, headers: admin.auth });
    t.equal(retry.statusCode, 202, retry.body);
    t.same(retry.json(), { jobId: deadJobId, state: 'queued', attempts: 3, maxAttempts: 6, inRedis: true });
    const revived = await waitForFinal(app.db, deadJobId);
    t.equal(revived.status, 'completed');
    t.equal(revived.attempts, 4);
    t.same(
      (await attemptRows(app.db, deadJobId)).map((a) => a.outcome),
      ['failed', 'failed', 'failed', 'completed'],
    );
    const after = await app.inject({ method: 'GET', url: `/api/image-queue/job/${deadJobId}`, headers: vendor.auth });
    t.equal(after.json().state, 'completed');
    t.equal(after.json().result.width, 8);
    const again = await app.inject({ method: 'POST', url: `/api/admin/dead-letters/${deadJobId}/retry`, headers: admin.auth });
    t.equal(again.statusCode, 404, 'a job is retried from the dead-letter queue once');
  });

  await t.test('retry all and purge', async (t) => {
    images.route('/gone.jpg', (_req, res) => void res.writeHead(500).end());
    const ids = [await queueResize(app, vendor, `${images.url}/gone.jpg`), await queueResize(app, vendor, `${images.url}/gone.jpg`)];
    for (const id of ids) t.equal((await waitForFinal(app.db, id)).status, 'dead');
    const queues = await app.inject({ method: 'GET', url: '/api/admin/queues', headers: admin.auth });
    t.equal(queues.statusCode, 200, queues.body);
    t.equal(queues.json().queues.find((q: { name: string }) => q.name === 'image-processing').deadLetters, 2);

    const purgeOne = await app.inject({ method: 'DELETE', url: `/api/admin/dead-letters/${ids[0]}`, headers: admin.auth });
    t.same(purgeOne.json(), { purged: 1 });
    t.equal((await waitForFinal(app.db, ids[0] as string)).status, 'dead', 'a purged job stays dead in the ledger');
    t.equal((await app.inject({ method: 'POST', url: `/api/admin/dead-letters/${ids[0]}/retry`, headers: admin.auth })).statusCode, 404);

    images.route('/gone.jpg', serveBytes(jpeg, 'image/jpeg'));
    const all = await app.inject({ method: 'POST', url: '/api/admin/dead-letters/retry?queue=image-processing', headers: admin.auth });
    t.equal(all.statusCode, 202, all.body);
    t.same(all.json(), { retried: 1, jobIds: [ids[1]] });
    t.equal((await waitForFinal(app.db, ids[1] as string)).status, 'completed');

    images.route('/gone.jpg', (_req, res) => void res.writeHead(500).end());
    const third = await queueResize(app, vendor, `${images.url}/gone.jpg`);
    t.equal((await waitForFinal(app.db, third)).status, 'dead');
    const purgeAll = await app.inject({ method: 'DELETE', url: '/api/admin/dead-letters?queue=image-processing', headers: admin.auth });
    t.same(purgeAll.json(), { purged: 1 });
    const empty = await app.inject({ method: 'GET', url: '/api/admin/dead-letters', headers: admin.auth });
    t.same(empty.json(), { items: [], nextCursor: null });
  });

  await t.test('errors that cannot succeed on retry fail at once', async (t) => {
    let hits = 0;
    images.route('/not-an-image.jpg', (_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end('<html>not a photo</html>');
    });
    const bad = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/not-an-image.jpg`));
    t.equal(bad.status, 'failed');
    t.equal(bad.error_code, 'BAD_IMAGE');
    t.equal(bad.attempts, 1);
    t.equal(hits, 1);

    images.route('/huge.jpg', serveBytes(await makeJpeg(1200, 1000), 'image/jpeg'));
    const huge = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/huge.jpg`));
    t.equal(huge.status, 'failed');
    t.equal(huge.error_code, 'TOO_MANY_PIXELS', 'MAX_INPUT_PIXELS is checked from the header');
    t.equal(huge.attempts, 1);

    images.route('/missing.jpg', (_req, res) => void res.writeHead(404).end());
    const missing = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/missing.jpg`));
    t.equal(missing.status, 'failed');
    t.equal(missing.error_code, 'SOURCE_NOT_FOUND');
    const dead = await app.inject({ method: 'GET', url: '/api/admin/dead-letters', headers: admin.auth });
    t.equal(dead.json().items.length, 0, 'failures that cannot be retried are not dead letters');
  });

  await t.test('an attempt that exceeds the job timeout is aborted (its fetch stops) and retried', async (t) => {
    let hits = 0;
    let firstClosedAt = 0;
    const startedAt = Date.now();
    images.route('/slow.jpg', (req, res) => {
      hits++;
      if (hits === 1) {
        // never answers; the worker must give up and hang up
        req.socket.on('close', () => (firstClosedAt = Date.now()));
        return;
      }
      serveBytes(jpeg, 'image/jpeg')(req, res, Buffer.alloc(0));
    });
    const jobId = await queueResize(app, vendor, `${images.url}/slow.jpg`);
    const job = await waitForFinal(app.db, jobId);
    t.equal(job.status, 'completed');
    t.equal(job.attempts, 2);
    const attempts = await attemptRows(app.db, jobId);
    t.equal(attempts[0]?.error_code, 'JOB_TIMEOUT');
    await waitFor(async () => firstClosedAt > 0, 5000);
    const closedAfter = firstClosedAt - startedAt;
    t.ok(closedAfter >= 2900 && closedAfter < 8000, `the hung request was closed by the worker after ${closedAfter} ms (timeout 3000)`);
  });
});
