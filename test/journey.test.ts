import t from 'tap';
import sharp from 'sharp';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { waitFor } from './helpers/wait.js';
import { findVendorRecord } from '../db/repos/records.js';

/**
 * One real job the whole way: vendor → API → ledger → Bull → worker → storage
 * → MySQL → status.
 */
t.test('a resize job travels from the API through the worker to a stored image', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing' });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(1200, 800), 'image/jpeg'));
  const vendor = await testVendor(app);

  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/process-queue',
    headers: vendor.auth,
    payload: { recordId: 'rec-1', projectId: 'proj-1', photoUrl: `${images.url}/photo.jpg`, operations: [{ op: 'resize', width: 320 }] },
  });
  t.equal(res.statusCode, 202, res.body);
  const queued = res.json();
  t.equal(queued.success, true);
  t.match(queued.jobId, /^[0-9A-Z]{26}$/);
  t.equal(queued.recordId, 'rec-1');
  t.equal(queued.statusUrl, `/api/image-queue/job/${queued.jobId}`);
  t.match(queued.estimatedTime, /\d+-\d+ (seconds|minutes)/);

  const bullJob = await app.queues['image-processing'].getJob(queued.jobId);
  t.ok(bullJob, 'the Bull job id is the ledger id');
  t.notOk(JSON.stringify(bullJob?.data).includes(vendor.apiKey), 'payload carries no key');
  t.notOk(JSON.stringify(bullJob?.data).includes(vendor.token), 'payload carries no token');

  const done = await waitFor(async () => {
    const status = await app.inject({ method: 'GET', url: queued.statusUrl, headers: vendor.auth });
    const body = status.json();
    return body.state === 'completed' || body.state === 'failed' || body.state === 'dead' ? body : undefined;
  });
  t.equal(done.state, 'completed', JSON.stringify(done.error));
  t.equal(done.progress, 100);
  t.equal(done.attempts, 1);
  t.equal(done.data.recordId, 'rec-1');
  t.ok(done.finishedAt);
  t.equal(done.result.width, 320);
  t.equal(done.result.height, 213);

  // The stored result is served by the API and is an image of the asked width.
  const fileUrl = new URL(done.result.photoUrl as string);
  t.match(fileUrl.pathname, /^\/files\/[0-9A-Z]{26}\/proj-1\/[0-9A-Z]{26}-[A-Za-z0-9_-]{16}\/0-resize\.jpg$/);
  const file = await app.inject({ method: 'GET', url: fileUrl.pathname });
  t.equal(file.statusCode, 200);
  t.equal(file.headers['content-type'], 'image/jpeg');
  const meta = await sharp(file.rawPayload).metadata();
  t.equal(meta.width, 320);
  t.equal(meta.format, 'jpeg');

  const record = await findVendorRecord(app.db, vendor.vendorId, 'proj-1', 'rec-1');
  t.equal(record?.processing_status, 'completed');
  t.equal(record?.processed_photo_url, done.result.photoUrl);
  t.equal(record?.result_width, 320);
  t.same((record?.fields['process.outputs'] as { width: number }[])[0]?.width, 320);
});
