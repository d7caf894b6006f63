import t from 'tap';
import sharp from 'sharp';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { waitForFinal } from './helpers/jobs.js';

/**
 * Issue 18: an attempt that times out stops its work. Before, the runner gave
 * the slot back while libvips went on computing, so a worker ran more than
 * its concurrency. Now libvips stops at the attempt's deadline and the slot
 * is taken until the work has stopped: with concurrency 1, libvips never
 * runs two pipelines at once, and the slow job ends soon after its deadline
 * instead of when its work would have finished.
 */
t.test('a timed-out pipeline stops computing, and holds its slot until it has', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    CONCURRENCY_IMAGE_PROCESSING: '1',
    JOB_TIMEOUT_MS: '800',
    JOB_ATTEMPTS: '1',
  });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  // noise does not compress: a turn by 33° and a WebP at effort 6 of it take several seconds
  const noise = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 50 } } })
    .jpeg({ quality: 90 })
    .toBuffer();
  images.route('/noise.jpg', serveBytes(noise, 'image/jpeg'));
  images.route('/small.jpg', serveBytes(await makeJpeg(120, 80), 'image/jpeg'));
  const attacker = await testVendor(app, { name: 'Attacker' });
  const other = await testVendor(app, { name: 'Neighbour' });
  const queue = async (vendor: TestVendor, recordId: string, photo: string, operations: unknown[]) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: vendor.auth,
      payload: { projectId: 'p', recordId, photoUrl: `${images.url}${photo}`, operations },
    });
    t.equal(res.statusCode, 202, res.body);
    return res.json().jobId as string;
  };

  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, sharp.counters().process)), 5);
  t.teardown(() => clearInterval(sampler));

  const slow = await queue(attacker, 'slow', '/noise.jpg', [
    { op: 'rotate', angle: 33 },
    { op: 'convert', format: 'webp', effort: 6 },
  ]);
  const normal = await Promise.all([1, 2, 3].map((i) => queue(other, `n${i}`, '/small.jpg', [{ op: 'resize', width: 60 }])));

  const slowJob = await waitForFinal(app.db, slow);
  t.equal(slowJob.status, 'dead');
  t.equal(slowJob.error_code, 'JOB_TIMEOUT');
  t.ok(
    slowJob.duration_ms !== null && slowJob.duration_ms < 4000,
    `the attempt ended ${slowJob.duration_ms} ms after it began: libvips stopped near the deadline`,
  );
  for (const jobId of normal) t.equal((await waitForFinal(app.db, jobId)).status, 'completed', "the neighbour's job completes");
  t.equal(most, 1, 'libvips never ran more pipelines at once than the concurrency of 1');
});
