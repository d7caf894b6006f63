import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { privateRedis } from './helpers/private-services.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { heartbeatKey, type WorkerHeartbeat } from '../jobs/heartbeat.js';
import { eventsChannel, type ChannelMessage, type JobEvent } from '../jobs/events.js';
import { loadWorkerConfig } from '../worker/config.js';
import { createWorker } from '../worker/worker.js';
import { createLogger } from '../platform/logger.js';

/** Heartbeats, pause/resume by an admin, job events, and the readiness gate. */
t.test('heartbeat, events and pause/resume', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent', WORKER_ID: 'w-control' });
  const app = await testApp(t, env);
  const worker = await testWorker(t, env, { heartbeatIntervalMs: 200 });
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(32, 24), 'image/jpeg'));
  const vendor = await testVendor(app);
  const other = await testVendor(app, { name: 'Other' });
  const admin = await testVendor(app, { role: 'admin' });
  const redis = new Redis(env['REDIS_URL'] as string);
  t.teardown(() => redis.disconnect());
  const key = heartbeatKey(env['BULL_PREFIX'] as string, 'w-control');

  const beat = JSON.parse((await redis.get(key)) ?? 'null') as WorkerHeartbeat;
  t.equal(beat.workerId, worker.id);
  t.equal(beat.pid, process.pid);
  t.ok(beat.host.length > 0);
  t.same(beat.queues, { 'image-processing': { concurrency: 5, active: 0, paused: false } });
  t.same(beat.rembg, []);
  const ttl = await redis.pttl(key);
  t.ok(ttl > 0 && ttl <= 15_000, `the heartbeat expires on its own (ttl ${ttl} ms)`);

  // Events: the vendor's channel sees its job move; another vendor's does not.
  const sub = new Redis(env['REDIS_URL'] as string);
  t.teardown(() => sub.disconnect());
  const events: JobEvent[] = [];
  const otherEvents: JobEvent[] = [];
  const mine = eventsChannel(env['BULL_PREFIX'] as string, vendor.vendorId);
  await sub.subscribe(mine, eventsChannel(env['BULL_PREFIX'] as string, other.vendorId));
  sub.on('message', (channel, message) => {
    const parsed = JSON.parse(message) as ChannelMessage;
    // the API's "new events in the log" nudges (enqueue) are not the worker's job events
    if (parsed.type !== 'log') (channel === mine ? events : otherEvents).push(parsed);
  });
  const first = await queueResize(app, vendor, `${images.url}/p.jpg`);
  t.equal((await waitForFinal(app.db, first)).status, 'completed');
  await waitFor(async () => events.some((e) => e.type === 'completed'), 5000);
  const types = events.map((e) => e.type);
  t.equal(types[0], 'active', 'first event: active');
  t.equal(types[types.length - 1], 'completed', 'last event: completed');
  const progress = events.map((e) => e.progress ?? -1);
  t.ok(types.slice(1, -1).length > 0 && types.slice(1, -1).every((x) => x === 'progress'), 'progress events between, at stage boundaries');
  t.ok(
    progress.every((p, i) => i === 0 || p >= (progress[i - 1] as number)),
    `progress never goes back (${progress.join(' → ')})`,
  );
  t.equal(progress[progress.length - 1], 100);
  t.ok(events.every((e) => e.jobId === first && e.vendorId === vendor.vendorId));
  t.same(otherEvents, []);

  // Pause for every worker: jobs are accepted and wait; resume: they run.
  const paused = await app.inject({ method: 'POST', url: '/api/admin/queues/image-processing/pause', headers: admin.auth });
  t.same(paused.json(), { queue: 'image-processing', paused: true });
  t.equal((await app.inject({ method: 'POST', url: '/api/admin/queues/image-processing/pause', headers: vendor.auth })).statusCode, 403);
  t.equal((await app.inject({ method: 'POST', url: '/api/admin/queues/nope/pause', headers: admin.auth })).statusCode, 400);
  await waitFor(async () => (JSON.parse((await redis.get(key)) ?? '{}') as WorkerHeartbeat).queues?.['image-processing']?.paused === true, 5000);
  const waiting = await queueResize(app, vendor, `${images.url}/p.jpg`);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal((await app.db.selectFrom('jobs').select('status').where('id', '=', waiting).executeTakeFirstOrThrow()).status, 'queued', 'nothing runs while paused');
  const overview = await app.inject({ method: 'GET', url: '/api/admin/queues', headers: admin.auth });
  const ip = overview.json().queues.find((q: { name: string }) => q.name === 'image-processing');
  t.equal(ip.paused, true);
  t.equal(ip.counts.paused, 1, 'the job waits in the paused list');
  const resumed = await app.inject({ method: 'POST', url: '/api/admin/queues/image-processing/resume', headers: admin.auth });
  t.same(resumed.json(), { queue: 'image-processing', paused: false });
  t.equal((await waitForFinal(app.db, waiting)).status, 'completed');

  await worker.close();
  t.equal(await redis.exists(key), 0, 'a closed worker removes its heartbeat');
});

t.test('the worker takes no job until Redis, MySQL and storage are all ready', async (t) => {
  const redis = await privateRedis(t);
  const dir = await mkdtemp(join(tmpdir(), 'iqt-blocked-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const blocker = join(dir, 'not-a-dir');
  await writeFile(blocker, 'a file where the storage directory should be');
  const env = await isolatedEnv(t, {
    REDIS_URL: redis.url,
    WORKER_QUEUES: 'image-processing',
    LOG_LEVEL: 'silent',
    READY_RETRY_MS: '200',
    RECONCILE_GRACE_MS: '0',
  });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(32, 24), 'image/jpeg'));
  const vendor = await testVendor(app);
  const jobId = await queueResize(app, vendor, `${images.url}/p.jpg`);

  // Redis goes away (and, without persistence, loses the job); storage is broken.
  await redis.stop();
  const workerEnv = { ...env, STORAGE_LOCAL_DIR: join(blocker, 'storage') };
  const worker = createWorker(loadWorkerConfig({ env: workerEnv, processEnv: false }), { logger: createLogger('silent', 'worker') });
  let started = false;
  const starting = worker.start().then(() => (started = true));
  t.teardown(async () => {
    await starting.catch(() => undefined);
    await worker.close();
  });

  await new Promise((r) => setTimeout(r, 1000));
  t.equal(started, false, 'waiting while Redis is down and storage unwritable');
  await redis.start();
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(started, false, 'still waiting: storage is not writable');
  t.equal((await app.db.selectFrom('jobs').select('status').where('id', '=', jobId).executeTakeFirstOrThrow()).status, 'queued');

  await rm(blocker);
  await waitFor(async () => started, 10_000);
  const job = await waitForFinal(app.db, jobId);
  t.equal(job.status, 'completed', 'the job Redis lost was queued again from the ledger at start and ran');
});
