import t from 'tap';
import sharp from 'sharp';
import { cloudinaryStorage, parseCloudinaryUrl, type CloudinarySettings } from '../platform/storage/cloudinary.js';
import { createStorage } from '../platform/storage/index.js';
import { AppError } from '../jobs/errors.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { CLOUD, fakeCloudinary, KEY, SECRET } from './helpers/cloudinary.js';
import { waitFor } from './helpers/wait.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';

/**
 * The Cloudinary adapter through the official SDK, against a real local HTTP
 * server standing in for Cloudinary's API (the SDK's `upload_prefix`). The
 * stand-in checks the request signature the way Cloudinary documents it
 * (SHA-1 of the sorted parameters and the API secret) and keeps the bytes.
 */
function settings(url: string, extra: Partial<CloudinarySettings> = {}): CloudinarySettings {
  return { credentials: parseCloudinaryUrl(url), folder: 'imagequeue', timeoutMs: 1500, retries: 2, ...extra };
}

t.test('uploads are signed, land in the vendor/project folder and come back byte for byte', async (t) => {
  const fake = await fakeCloudinary(t);
  const storage = cloudinaryStorage(settings(fake.url));
  await storage.check();
  const jpeg = await makeJpeg(20, 10);
  const stored = await storage.put('VENDOR1/proj-1/JOB1-abc/0-resize.jpg', jpeg, 'image/jpeg');
  t.equal(fake.uploads.length, 1);
  const [upload] = fake.uploads;
  t.same(upload?.bytes, jpeg, 'the uploaded bytes are the image');
  t.equal(upload?.params['public_id'], 'imagequeue/VENDOR1/proj-1/JOB1-abc/0-resize');
  t.equal(upload?.params['asset_folder'], 'imagequeue/VENDOR1/proj-1');
  t.equal(upload?.params['overwrite'], '1');
  t.match(upload?.params['timestamp'], /^\d{10}$/);
  t.notOk(Object.values(upload?.params ?? {}).includes(SECRET), 'the secret itself is never sent');
  t.match(stored.url, /\/res\/demo-cloud\/image\/upload\/v1\/imagequeue\/VENDOR1\/proj-1\/JOB1-abc\/0-resize\.jpg$/);
  t.equal(stored.bytes, jpeg.length);
  t.same(await storage.get(stored), jpeg, 'read back through its URL');

  const wrong = cloudinaryStorage(settings(`cloudinary://${KEY}:wrong-secret@${CLOUD}?upload_prefix=${fake.server.url}`));
  await t.rejects(wrong.check(), /Cloudinary ping failed: .*401/);
  const refused = await wrong.put('V/p/J/x.jpg', jpeg, 'image/jpeg').catch((e: unknown) => e);
  t.ok(refused instanceof AppError && refused.code === 'STORAGE_FAILED' && !refused.retryable, 'a bad signature fails without retrying');
  t.equal(fake.uploads.length, 1);
});

t.test('failed uploads are retried; a hung upload is abandoned when the job is aborted', async (t) => {
  const fake = await fakeCloudinary(t);
  const storage = cloudinaryStorage(settings(fake.url));
  const jpeg = await makeJpeg(20, 10);

  fake.state.failNext = 2;
  await storage.put('V/p/J/a.jpg', jpeg, 'image/jpeg');
  t.equal(fake.server.hits.get(`/v1_1/${CLOUD}/image/upload`), 3, 'two 500s, then success');

  fake.state.failNext = 5;
  const exhausted = await storage.put('V/p/J/b.jpg', jpeg, 'image/jpeg').catch((e: unknown) => e);
  t.ok(exhausted instanceof AppError && exhausted.code === 'STORAGE_FAILED' && exhausted.retryable, 'out of retries: retryable STORAGE_FAILED');
  fake.state.failNext = 0;

  fake.state.hang = true;
  const started = Date.now();
  const timedOut = await storage.put('V/p/J/c.jpg', jpeg, 'image/jpeg').catch((e: unknown) => e);
  t.ok(timedOut instanceof AppError && /no answer within 1500 ms/.test(timedOut.message), String(timedOut));
  t.ok(Date.now() - started >= 3 * 1500, 'each of the three tries waited for its own timeout');

  const job = new AbortController();
  const hangingBefore = fake.state.hanging;
  const closedBefore = fake.state.closedWhileHanging;
  const put = storage.put('V/p/J/d.jpg', jpeg, 'image/jpeg', job.signal).catch((e: unknown) => e);
  await waitFor(async () => fake.state.hanging > hangingBefore, 5000);
  job.abort(new Error('job timed out'));
  const aborted = await put;
  t.match(String(aborted), /job timed out/, 'the abort reason comes back at once');
  await waitFor(async () => fake.state.closedWhileHanging > closedBefore, 5000);
  t.pass('the upload connection was closed, not left running');
});

t.test('CLOUDINARY_URL is validated and selects the driver', async (t) => {
  t.throws(() => parseCloudinaryUrl('https://example.com'), /cloudinary:\/\//);
  t.throws(() => parseCloudinaryUrl('cloudinary://onlykey@cloud'), /cloudinary:\/\//);
  t.same(parseCloudinaryUrl('cloudinary://k:s%2Fx@my-cloud'), { cloudName: 'my-cloud', apiKey: 'k', apiSecret: 's/x', uploadPrefix: undefined });
  const base = {
    STORAGE_LOCAL_DIR: '/tmp/x',
    PUBLIC_BASE_URL: 'http://localhost',
    PORT: 3000,
    CLOUDINARY_FOLDER: 'f',
    STORAGE_TIMEOUT_MS: 1000,
    STORAGE_RETRIES: 0,
  };
  t.equal((await createStorage({ ...base, STORAGE_DRIVER: 'auto', CLOUDINARY_URL: 'cloudinary://k:s@c' })).driver, 'cloudinary');
  t.equal((await createStorage({ ...base, STORAGE_DRIVER: 'auto', CLOUDINARY_URL: '' })).driver, 'local');
  await t.rejects(createStorage({ ...base, STORAGE_DRIVER: 'cloudinary', CLOUDINARY_URL: '' }), /needs CLOUDINARY_URL/);
});

t.test('a worker stores its results in Cloudinary', async (t) => {
  const fake = await fakeCloudinary(t);
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent', STORAGE_DRIVER: 'auto', CLOUDINARY_URL: fake.url });
  const app = await testApp(t, { ...env, CLOUDINARY_URL: '' });
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(300, 200), 'image/jpeg'));
  const vendor = await testVendor(app);
  const job = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/p.jpg`, 'rec-c'));
  t.equal(job.status, 'completed', `${job.error_code} ${job.error_message}`);
  const status = (await app.inject({ method: 'GET', url: `/api/image-queue/job/${job.id}`, headers: vendor.auth })).json();
  t.ok(String(status.result.photoUrl).startsWith(`${fake.server.url}/res/${CLOUD}/image/upload/`), status.result.photoUrl);
  const [upload] = fake.uploads;
  t.equal(upload?.params['asset_folder'], `imagequeue/${vendor.vendorId}/proj`);
  t.equal((await sharp(upload?.bytes).metadata()).width, 8, 'the uploaded file is the resized image');
});

t.test('removing: one key is a signed destroy, several are delete_resources, a prefix takes every output of a job', async (t) => {
  const fake = await fakeCloudinary(t);
  const storage = cloudinaryStorage(settings(fake.url));
  const jpeg = await makeJpeg(20, 10);
  const a = await storage.put('V/p/JOB1-x/0-a.jpg', jpeg, 'image/jpeg');
  await storage.put('V/p/JOB1-x/1-b.jpg', jpeg, 'image/jpeg');
  await storage.put('V/p/JOB10-y/0-a.jpg', jpeg, 'image/jpeg');
  const u1 = await storage.put('V/p/uploads/U1.jpg', jpeg, 'image/jpeg');
  const u2 = await storage.put('V/p/uploads/U2.jpg', jpeg, 'image/jpeg');
  const u3 = await storage.put('V/p/uploads/U3.jpg', jpeg, 'image/jpeg');

  await storage.remove({ keys: [u1.key] });
  t.same(fake.deletes.at(-1), { api: 'destroy', target: ['imagequeue/V/p/uploads/U1'] });
  await t.rejects(storage.get(u1), { code: 'SOURCE_NOT_FOUND' }, 'a destroyed image is no longer delivered');

  await storage.remove({ keys: [u2.key, u3.key] });
  t.same(fake.deletes.at(-1), { api: 'delete_resources', target: ['imagequeue/V/p/uploads/U2', 'imagequeue/V/p/uploads/U3'] });

  await storage.remove({ prefix: 'V/p/JOB1-x' });
  t.same(fake.deletes.at(-1), { api: 'delete_resources_by_prefix', target: ['imagequeue/V/p/JOB1-x/'] });
  await t.rejects(storage.get(a), { code: 'SOURCE_NOT_FOUND' });
  t.same([...fake.paths.keys()], ['imagequeue/V/p/JOB10-y/0-a'], 'another job whose id starts the same is left alone');

  await storage.remove({ keys: [u1.key] });
  t.pass('removing what is already gone is not an error');

  const wrong = cloudinaryStorage(settings(`cloudinary://${KEY}:wrong-secret@${CLOUD}?upload_prefix=${fake.server.url}`));
  await t.rejects(wrong.remove({ keys: ['V/p/JOB10-y/0-a.jpg'] }), { code: 'STORAGE_FAILED' }, 'a bad signature fails the destroy');
  await t.rejects(wrong.remove({ prefix: 'V/p/JOB10-y' }), { code: 'STORAGE_FAILED' }, 'bad credentials fail the admin delete');
  t.equal(fake.paths.size, 1);
});
