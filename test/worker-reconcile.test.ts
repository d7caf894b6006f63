import t from 'tap';
import { Redis } from 'ioredis';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { privateRedis } from './helpers/private-services.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';

/**
 * Redis is not the only copy of a job. 100 accepted jobs, Redis flushed while
 * the worker is busy with them (a private Redis: the shared one is never
 * flushed): every job still completes, each exactly once.
 */
t.test('accept 100 jobs, FLUSHALL Redis mid-run, all 100 still complete exactly once', async (t) => {
  const redis = await privateRedis(t);
  const env = await isolatedEnv(t, {
    REDIS_URL: redis.url,
    WORKER_QUEUES: 'image-processing',
    RECONCILE_INTERVAL_MS: '1000',
    RECONCILE_GRACE_MS: '1000',
    QUEUE_KEEP_COMPLETED: '10',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(32, 24), 'image/jpeg'));
  const vendor = await testVendor(app);

  const jobIds: string[] = [];
  for (let i = 0; i < 100; i++) jobIds.push(await queueResize(app, vendor, `${images.url}/p.jpg`, `rec-${i}`));
  t.equal(await app.queues['image-processing'].count(), 100, 'all 100 in Redis');

  await testWorker(t, env);
  const completed = () =>
    app.db
      .selectFrom('jobs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('status', '=', 'completed')
      .executeTakeFirstOrThrow()
      .then((r) => Number(r.n));
  await waitFor(async () => (await completed()) >= 10, 30_000);

  const client = new Redis(redis.url);
  await client.flushall();
  const keys = await client.keys(`${env['BULL_PREFIX']}:*`);
  client.disconnect();
  t.same(keys, [], 'Redis is empty');
  const doneAtFlush = await completed();
  t.ok(doneAtFlush < 100, `${doneAtFlush} jobs were done when Redis was flushed`);

  await waitFor(async () => (await completed()) === 100, 90_000, 250);
  const rows = await app.db.selectFrom('jobs').select(['id', 'status', 'attempts']).where('id', 'in', jobIds).execute();
  t.equal(rows.filter((r) => r.status === 'completed').length, 100);
  const completions = await app.db
    .selectFrom('job_attempts')
    .select(['job_id', (eb) => eb.fn.countAll<number>().as('n')])
    .where('outcome', '=', 'completed')
    .groupBy('job_id')
    .execute();
  t.equal(completions.length, 100);
  t.ok(
    completions.every((c) => Number(c.n) === 1),
    'each job completed exactly once in the ledger',
  );
  const counts = await app.queues['image-processing'].getJobCounts();
  t.ok(counts.completed <= 10, `Redis keeps only the last completed jobs (${counts.completed}); the ledger keeps all 100`);
  const records = await app.db.selectFrom('data_records').select('processing_status').execute();
  t.ok(
    records.every((r) => r.processing_status === 'completed'),
    'every record shows its result',
  );
});
