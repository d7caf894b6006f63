import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp } from './helpers/app.js';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { privateRedis } from './helpers/private-services.js';
import { waitFor } from './helpers/wait.js';
import { createVendor, findVendor } from '../db/repos/vendors.js';

/**
 * Redis stopped under a running API (a private Redis: the shared one must
 * never be stopped). Enqueue routes answer 503 within a second, for every
 * plan, and write nothing; status reads keep working from MySQL; health says
 * unhealthy; once Redis is back, enqueueing works again.
 */
const URL_A = 'https://images.example.com/a.jpg';

async function token(app: FastifyInstance, plan: string): Promise<{ vendorId: string; auth: { authorization: string } }> {
  const created = await createVendor(app.db, { name: plan, plan });
  const { token } = await app.signVendorToken((await findVendor(app.db, created.vendorId))!);
  return { vendorId: created.vendorId, auth: { authorization: `Bearer ${token}` } };
}

t.test('Redis down: POST routes answer 503 fast and write nothing', async (t) => {
  const redis = await privateRedis(t);
  const env = await isolatedEnv(t, { REDIS_URL: redis.url });
  const app = await testApp(t, env);
  const standard = await token(app, 'standard');
  const unlimited = await token(app, 'unlimited');
  const single = { recordId: 'r', projectId: 'p', photoUrl: URL_A, operations: [{ op: 'resize', width: 10 }] };
  const post = (v: { auth: { authorization: string } }, url: string, payload: object) =>
    app.inject({ method: 'POST', url: `/api/image-queue/${url}`, headers: v.auth, payload });

  const before = await post(standard, 'process-queue', single);
  t.equal(before.statusCode, 202, before.body);
  const jobId = before.json().jobId;

  await redis.stop();
  const rows = async () =>
    Number(
      (
        await app.db
          .selectFrom('jobs')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const count = await rows();

  for (const [who, v] of [
    ['standard plan (rate limiter needs Redis)', standard],
    ['unlimited plan (no rate limiter)', unlimited],
  ] as const) {
    for (const [url, body] of [
      ['process-queue', single],
      ['remove-bg-queue', { recordId: 'r2', projectId: 'p', photoUrl: URL_A }],
      ['bulk-remove-bg', { projectId: 'p', recordIds: ['x', 'y'], photoUrls: [URL_A, URL_A] }],
    ] as const) {
      const started = performance.now();
      const res = await post(v, url, body);
      const ms = performance.now() - started;
      t.equal(res.statusCode, 503, `${who} ${url}: ${res.body}`);
      t.equal(res.json().code, 'SERVICE_UNAVAILABLE');
      t.ok(res.headers['retry-after'], 'Retry-After');
      t.ok(ms < 1000, `${who} ${url} answered in ${Math.round(ms)} ms`);
    }
  }
  t.equal(await rows(), count, 'nothing was written to the ledger');

  const status = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: standard.auth });
  t.equal(status.statusCode, 200, 'status reads come from MySQL and keep working');
  const stats = await app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: standard.auth });
  t.equal(stats.statusCode, 200);
  t.equal(stats.json().imageProcessing.queue, null, 'queue depth unknown, ledger counts still given');
  t.equal(stats.json().imageProcessing.waiting, 1);

  const started = performance.now();
  const health = await app.inject({ method: 'GET', url: '/api/worker/health' });
  t.equal(health.statusCode, 503);
  t.equal(health.json().status, 'unhealthy');
  t.equal(health.json().redis.ok, false);
  t.equal(health.json().redis.error, null, "the driver's message (host, port) is for admin tokens only");
  t.notMatch(health.body, /ECONNREFUSED|127\.0\.0\.1|Connection is closed/);
  t.equal(health.json().mysql.ok, true);
  t.equal(health.json().bgRemovalQueueSize, null);
  t.ok(performance.now() - started < 2500, 'health answers promptly');

  await redis.start();
  const after = await waitFor(
    async () => {
      const res = await post(standard, 'process-queue', { ...single, recordId: 'after' });
      return res.statusCode === 202 ? res : null;
    },
    15_000,
    200,
  );
  t.ok(await app.queues['image-processing'].getJob(after.json().jobId), 'queued in Redis again once it is back');
});

t.test('an API that never reached Redis still closes at once (no QUIT waiting for a connection)', async (t) => {
  const env = await isolatedEnv(t, { REDIS_URL: 'redis://127.0.0.1:1' });
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
  await app.ready();
  const started = Date.now();
  await app.close();
  t.ok(Date.now() - started < 10_000, `closed in ${Date.now() - started} ms`);
});
