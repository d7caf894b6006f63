import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { serveBytes, testServer, type TestServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { attemptRows, queueResize, waitForFinal } from './helpers/jobs.js';
import { spawnWorker } from './helpers/worker-process.js';
import { waitFor } from './helpers/wait.js';
import type { Db } from '../db/connect.js';

/**
 * Real worker processes, killed and signalled. Short Bull locks
 * (LOCK_DURATION_MS / STALLED_INTERVAL_MS) make a dead worker's jobs
 * recoverable within seconds.
 */
function slowFirstTime(server: TestServer, path: string, body: Buffer, delayMs: number): { closedEarly: () => boolean } {
  let calls = 0;
  let closedEarly = false;
  server.route(path, (req, res) => {
    calls++;
    if (calls > 1) return serveBytes(body, 'image/jpeg')(req, res, Buffer.alloc(0));
    res.on('close', () => {
      if (!res.writableEnded) closedEarly = true;
    });
    setTimeout(() => {
      if (!res.destroyed) serveBytes(body, 'image/jpeg')(req, res, Buffer.alloc(0));
    }, delayMs);
  });
  return { closedEarly: () => closedEarly };
}

async function statuses(db: Db, ids: string[]) {
  return db.selectFrom('jobs').select(['id', 'status', 'attempts']).where('id', 'in', ids).execute();
}

t.test('SIGKILL with jobs in flight: another worker picks them up and each completes once', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    CONCURRENCY_IMAGE_PROCESSING: '3',
    LOCK_DURATION_MS: '2000',
    STALLED_INTERVAL_MS: '1000',
    RECONCILE_INTERVAL_MS: '0',
  });
  const app = await testApp(t, env);
  const images = await testServer(t);
  const jpeg = await makeJpeg(32, 24);
  const vendor = await testVendor(app);
  // The first three fetches (worker A's) hang; every later one answers at once.
  let fetches = 0;
  images.route('/p.jpg', (req, res) => {
    if (++fetches > 3) serveBytes(jpeg, 'image/jpeg')(req, res, Buffer.alloc(0));
  });
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await queueResize(app, vendor, `${images.url}/p.jpg`, `rec-${i}`));

  const a = await spawnWorker(t, env, 'worker-a');
  // Kill A only once its three fetches reached the server: on a loaded machine
  // a job can be active in the ledger before its fetch is sent.
  await waitFor(async () => fetches >= 3 && (await statuses(app.db, ids)).filter((j) => j.status === 'active').length === 3, 30_000);
  a.child.kill('SIGKILL');
  t.equal(await a.exited, null, 'worker A was killed');
  const inFlight = (await statuses(app.db, ids)).filter((j) => j.status === 'active').map((j) => j.id);
  t.equal(inFlight.length, 3, 'three jobs were mid-attempt when it died');

  const b = await spawnWorker(t, env, 'worker-b');
  for (const id of ids) {
    const job = await waitForFinal(app.db, id, 60_000);
    t.equal(job.status, 'completed', `${id} completed`);
    t.equal(job.attempts, 1, 'a dead worker does not cost the job an attempt');
    if (job.attempts !== 1) t.comment(JSON.stringify(await attemptRows(app.db, id)));
  }
  for (const id of inFlight) {
    const attempts = await attemptRows(app.db, id);
    t.same(
      attempts.map((a) => [a.attempt, a.outcome, a.worker_id]),
      [[1, 'completed', 'worker-b']],
      'the recovered attempt finished on worker B',
    );
  }
  const completions = await app.db.selectFrom('job_attempts').select('job_id').where('outcome', '=', 'completed').where('job_id', 'in', ids).execute();
  t.equal(completions.length, 6, 'six completions for six jobs');
  b.child.kill('SIGTERM');
  t.equal(await b.exited, 0);
});

t.test('SIGTERM: stop taking jobs, finish what fits in the grace period, hand back the rest', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    CONCURRENCY_IMAGE_PROCESSING: '2',
    SHUTDOWN_GRACE_MS: '2500',
    JOB_BACKOFF_MS: '300',
    RECONCILE_INTERVAL_MS: '0',
  });
  const app = await testApp(t, env);
  const images = await testServer(t);
  const jpeg = await makeJpeg(32, 24);
  const vendor = await testVendor(app);
  slowFirstTime(images, '/quick.jpg', jpeg, 1000);
  const long = slowFirstTime(images, '/long.jpg', jpeg, 60_000);
  const quick = await queueResize(app, vendor, `${images.url}/quick.jpg`, 'rec-quick');
  const slow = await queueResize(app, vendor, `${images.url}/long.jpg`, 'rec-long');

  const c = await spawnWorker(t, env, 'worker-c');
  await waitFor(async () => (await statuses(app.db, [quick, slow])).every((j) => j.status === 'active'), 30_000);
  const signalledAt = Date.now();
  c.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  const late = await queueResize(app, vendor, `${images.url}/quick.jpg`, 'rec-late');

  const code = await c.exited;
  t.equal(code, 0, 'worker C closed cleanly');
  if (code !== 0) t.comment(c.output().slice(-3000));
  const took = Date.now() - signalledAt;
  t.ok(took >= 2400 && took < 20_000, `closed after ${took} ms (grace 2500)`);
  t.equal((await waitForFinal(app.db, quick)).status, 'completed', 'the job that fit in the grace period finished');
  const [slowRow, lateRow] = await statuses(app.db, [slow, late]).then((rows) => [rows.find((r) => r.id === slow), rows.find((r) => r.id === late)]);
  t.equal(slowRow?.status, 'queued', 'the job cut short went back in line');
  t.equal(slowRow?.attempts, 0, 'its attempt was refunded');
  t.equal((await attemptRows(app.db, slow))[0]?.error_code, 'WORKER_SHUTDOWN');
  t.ok(long.closedEarly(), 'its source fetch was really aborted');
  t.equal(lateRow?.status, 'queued', 'no job was taken after SIGTERM');

  const d = await spawnWorker(t, env, 'worker-d');
  const done = await waitForFinal(app.db, slow, 60_000);
  t.equal(done.status, 'completed');
  t.equal(done.attempts, 1);
  t.equal((await waitForFinal(app.db, late, 60_000)).status, 'completed');
  d.child.kill('SIGTERM');
  t.equal(await d.exited, 0);
});
