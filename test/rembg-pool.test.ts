import t, { type Test } from 'tap';
import sharp from 'sharp';
import { enqueueJobs } from '../backend/enqueue.js';
import type { RemoveBgOptions } from '../jobs/payloads.js';
import { createLogger } from '../platform/logger.js';
import { RembgPool, type PoolSettings } from '../worker/rembg/pool.js';
import { testApp, testVendor } from './helpers/app.js';
import { isolatedEnv } from './helpers/env.js';
import { readFixture } from './helpers/fixtures.js';
import { serveBytes, testServer } from './helpers/http.js';
import { attemptRows, waitForFinal } from './helpers/jobs.js';
import { slowProxy, spawnRembg, type RembgProcess } from './helpers/rembg.js';
import { testWorker } from './helpers/worker.js';
import { waitFor } from './helpers/wait.js';

/**
 * The worker's rembg pool against three real service instances, each in its
 * own process on its own port: spreading by calls in flight, a slow
 * instance, an instance killed in the middle of a run of jobs, every
 * instance down and one coming back; and the background-removal job end to
 * end (API → Bull → worker → pool → storage → status).
 */
const log = createLogger('silent', 'test');

function pool(t: Test, urls: string[], extra: Partial<PoolSettings> = {}): RembgPool {
  const p = new RembgPool(
    { urls, defaultModel: 'u2netp', timeoutMs: 120_000, healthIntervalMs: 500, failureThreshold: 3, openMs: 2_000, waitMs: 2_000, ...extra },
    log,
  );
  t.teardown(() => p.close());
  return p;
}

// Three model loads and some ninety inferences: minutes on a loaded 2-core machine.
t.setTimeout(900_000);

const instances: RembgProcess[] = [];
let small: Buffer;

t.before(async () => {
  small = await sharp(await readFixture('rembg/car-1.jpg'))
    .resize(160)
    .jpeg()
    .toBuffer();
});

t.test('three instances', async (t) => {
  // started one after another: three model loads at once on two cores only make each slower
  for (let i = 0; i < 3; i++) instances.push(await spawnRembg(t, { REMBG_CONCURRENCY: '2', REMBG_QUEUE: '8' }));
  const urls = instances.map((i) => i.url);

  t.test('each call goes to the instance with the fewest calls in flight', async (t) => {
    const p = pool(t, urls);
    const calls = Array.from({ length: 6 }, () => p.removeBackground(small, { signal: AbortSignal.timeout(300_000) }));
    const during = p.rembgInstances().map((i) => i.inFlight);
    t.same(during, [2, 2, 2], 'six concurrent calls: two in flight on each');
    const cutOuts = await Promise.all(calls);
    for (const png of cutOuts) t.equal((await sharp(png).metadata()).channels, 4);
    t.same(Object.values(p.callCounts()), [2, 2, 2]);
    t.same(
      p.rembgInstances().map((i) => [i.circuit, i.healthy, i.inFlight]),
      urls.map(() => ['closed', true, 0]),
    );
    t.ok(
      p.rembgInstances().every((i) => (i.latencyMs ?? 0) > 0),
      'latency measured',
    );
  });

  t.test('a slow instance receives fewer calls', async (t) => {
    const slow = await slowProxy(t, urls[2]!, 1_000);
    const p = pool(t, [urls[0]!, urls[1]!, slow]);
    // three callers, seven images each, one after another
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        for (let i = 0; i < 7; i++) await p.removeBackground(small, { signal: AbortSignal.timeout(300_000) });
      }),
    );
    const counts = p.callCounts();
    const fast = Math.min(counts[urls[0]!]!, counts[urls[1]!]!);
    t.comment(`calls: ${JSON.stringify(Object.values(counts))}`);
    t.equal(
      Object.values(counts).reduce((a, b) => a + b, 0),
      21,
    );
    t.ok(counts[slow]! < fast, `the slow instance had ${counts[slow]} calls, the others at least ${fast}`);
  });

  t.test('a call that fails on an instance is retried on another; a bad image is not', async (t) => {
    // the dead instance comes first, so the first call meets it
    const p = pool(t, ['http://127.0.0.1:9', ...urls]);
    for (let i = 0; i < 2; i++) await p.removeBackground(small, { signal: AbortSignal.timeout(300_000) });
    const dead = p.rembgInstances().find((i) => i.url === 'http://127.0.0.1:9')!;
    t.equal(dead.healthy, false);
    t.not(dead.circuit, 'closed');
    t.match(dead.lastError, /ECONNREFUSED/);
    await t.rejects(p.removeBackground(Buffer.from('not an image'), { signal: AbortSignal.timeout(60_000) }), { code: 'BAD_IMAGE' });
    await t.rejects(p.removeBackground(small, { model: 'nope', signal: AbortSignal.timeout(60_000) }), { code: 'REMBG_FAILED', retryable: false });
  });

  t.test('jobs end to end', async (t) => {
    const env = await isolatedEnv(t, {
      LOG_LEVEL: 'error',
      WORKER_QUEUES: 'background-removal',
      CONCURRENCY_BACKGROUND_REMOVAL: '6',
      REMBG_URLS: urls.join(','),
      REMBG_HEALTH_INTERVAL_MS: '300',
      REMBG_TIMEOUT_MS: '120000',
      REMBG_OPEN_MS: '1000',
      REMBG_WAIT_MS: '500',
      JOB_BACKOFF_MS: '1000',
      JOB_TIMEOUT_MS: '120000',
    });
    const app = await testApp(t, env);
    const vendor = await testVendor(app);
    const images = await testServer(t);
    images.route('/car.jpg', serveBytes(small, 'image/jpeg'));
    const worker = await testWorker(t, env, { heartbeatIntervalMs: 200 });
    const enqueue = async (count: number, attempts: number, options: RemoveBgOptions = {}) =>
      (
        await enqueueJobs(
          app,
          vendor.vendorId,
          Array.from({ length: count }, (_, i) => ({
            kind: 'remove-bg' as const,
            projectId: 'cutouts',
            recordId: `r${Date.now()}-${i}`,
            source: { type: 'url' as const, url: `${images.url}/car.jpg` },
            options,
          })),
          { attempts, batch: false },
        )
      ).jobIds;
    const status = async (jobId: string) => (await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth })).json();
    const file = async (url: string) => (await app.inject({ method: 'GET', url: new URL(url).pathname })).rawPayload;

    t.test('through the API: a PNG cut-out, or a JPEG on the chosen colour', async (t) => {
      const res = await app.inject({
        method: 'POST',
        url: '/api/image-queue/remove-bg-queue',
        headers: vendor.auth,
        payload: { recordId: 'api-1', projectId: 'cutouts', photoUrl: `${images.url}/car.jpg` },
      });
      t.equal(res.statusCode, 202, res.body);
      const [green] = await enqueue(1, 3, { format: 'jpeg', background: '#00ff00' });
      const [tinted] = await enqueue(1, 3, { format: 'webp', background: '#0000ff80' });
      const png = await waitForFinal(app.db, res.json().jobId, 120_000);
      t.equal(png.status, 'completed', png.error_message ?? '');
      const body = await status(res.json().jobId);
      t.match(body.result, { success: true, format: 'png', model: 'u2netp', width: 160, height: 120, background: null });
      const cut = await sharp(await file(body.result.photoUrl))
        .raw()
        .toBuffer({ resolveWithObject: true });
      t.same([cut.info.width, cut.info.height, cut.info.channels], [160, 120, 4]);
      t.ok(cut.data[3]! < 30, `corner transparent (alpha ${cut.data[3]})`);

      t.equal((await waitForFinal(app.db, green!, 120_000)).status, 'completed');
      const g = (await status(green!)).result;
      t.match(g, { format: 'jpeg', background: '#00ff00', width: 160, height: 120 });
      const jpeg = await sharp(await file(g.photoUrl))
        .raw()
        .toBuffer({ resolveWithObject: true });
      t.equal((await sharp(await file(g.photoUrl)).metadata()).format, 'jpeg');
      const [r, gg, b] = jpeg.data;
      t.ok(r! < 40 && gg! > 215 && b! < 40, `corner green: ${[r, gg, b]}`);

      t.equal((await waitForFinal(app.db, tinted!, 120_000)).status, 'completed');
      const w = await sharp(await file((await status(tinted!)).result.photoUrl))
        .raw()
        .toBuffer({ resolveWithObject: true });
      t.equal(w.info.channels, 4);
      t.ok(Math.abs(w.data[3]! - 128) < 12 && w.data[2]! > 200, `corner half-transparent blue: ${Array.from(w.data.subarray(0, 4))}`);

      const record = await app.db.selectFrom('data_records').selectAll().where('record_id', '=', 'api-1').executeTakeFirst();
      t.equal(record?.processed_photo_url, body.result.photoUrl, 'the record carries the URL');
    });

    t.test('an instance killed in the middle of 30 jobs: none fails', async (t) => {
      const jobIds = await enqueue(30, 3);
      await waitFor(async () => {
        const done = await app.db.selectFrom('jobs').select('id').where('id', 'in', jobIds).where('status', '=', 'completed').execute();
        return done.length >= 6;
      }, 120_000);
      await instances[1]!.kill();
      const finals = await Promise.all(jobIds.map((id) => waitForFinal(app.db, id, 240_000)));
      t.same(
        finals.filter((j) => j.status !== 'completed').map((j) => [j.id, j.status, j.error_code]),
        [],
        'every job completed',
      );
      t.same(
        finals.filter((j) => j.attempts !== 1).map((j) => [j.id, j.attempts]),
        [],
        'each in its first attempt (retried on another instance within it)',
      );
      const health = await waitFor(async () => {
        const body = (await app.inject({ method: 'GET', url: '/api/worker/health' })).json();
        return body.rembg?.length === 3 && body.rembg.filter((r: { healthy: boolean }) => !r.healthy).length === 1 ? body : undefined;
      });
      t.match(health.reasons.join(';'), /1 of 3 rembg instances unhealthy/);
      t.match(
        health.rembg.find((r: { healthy: boolean }) => !r.healthy),
        { circuit: /open/ },
      );
    });

    t.test('every instance down: jobs are retried, then complete when one comes back', async (t) => {
      await Promise.all(instances.map((i) => i.kill()));
      const jobIds = await enqueue(3, 20);
      await waitFor(async () => {
        const rows = await Promise.all(jobIds.map((id) => attemptRows(app.db, id)));
        return rows.every((r) => r.some((a) => a.outcome === 'failed' && a.error_code === 'REMBG_UNAVAILABLE'));
      }, 60_000);
      const waiting = await Promise.all(jobIds.map(status));
      t.same(
        waiting.map((j) => j.state),
        ['queued', 'queued', 'queued'],
        'waiting for their next attempt, not failed',
      );
      const health = (await app.inject({ method: 'GET', url: '/api/worker/health' })).json();
      t.match(health.reasons.join(';'), /no healthy rembg instance/);

      await instances[0]!.start();
      const finals = await Promise.all(jobIds.map((id) => waitForFinal(app.db, id, 240_000)));
      t.same(
        finals.map((j) => j.status),
        ['completed', 'completed', 'completed'],
      );
      t.ok(
        finals.every((j) => j.attempts >= 2),
        `attempts: ${finals.map((j) => j.attempts)}`,
      );
      t.ok(worker);
    });
  });
});

t.test('credentials in an instance URL go in a header, never into logs or the heartbeat', async (t) => {
  const proxy = await testServer(t);
  const seen: (string | undefined)[] = [];
  proxy.route('/health', (req, res) => {
    seen.push(req.headers.authorization);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
  });
  const url = proxy.url.replace('http://', 'http://bench:s3cret@');
  const p = pool(t, [url], { healthIntervalMs: 100 });
  await waitFor(async () => seen.length > 0);
  t.equal(seen[0], `Basic ${Buffer.from('bench:s3cret').toString('base64')}`);
  t.same(
    p.rembgInstances().map((i) => i.url),
    [proxy.url],
  );
  t.notMatch(JSON.stringify(p.rembgInstances()), /s3cret/);
});
