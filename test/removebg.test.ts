import t, { type Test } from 'tap';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv, type TestEnv } from './helpers/env.js';
import { listeningApp, testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { rembgListening } from './helpers/rembg.js';
import { serveBytes, testServer, type TestServer } from './helpers/http.js';
import { makeJpeg, readFixture } from './helpers/fixtures.js';
import { unzipStored } from '../platform/zip.js';
import { createVendor } from '../db/repos/vendors.js';
import { waitForFinal } from './helpers/jobs.js';

/**
 * POST /v1.0/removebg against the real API, a real worker and a real rembg
 * instance, driven by the request examples of remove.bg's API reference
 * (https://www.remove.bg/api: curl with -F image_file and size=auto, the Node
 * fetch + FormData sample, image_url as a form field, JSON with
 * image_file_b64), then its parameters and its error answers.
 */
interface Setup {
  env: TestEnv;
  app: FastifyInstance;
  url: string;
  vendor: TestVendor;
  images: TestServer;
  car: Buffer;
}

async function setup(t: Test, extra: TestEnv = {}): Promise<Setup> {
  const rembg = await rembgListening(t);
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'background-removal', REMBG_URLS: rembg.url, ...extra });
  const { app, url } = await listeningApp(t, env);
  await testWorker(t, env);
  const vendor = await testVendor(app);
  const images = await testServer(t);
  const car = await readFixture('rembg/car-1.jpg');
  images.route('/car.jpg', serveBytes(car, 'image/jpeg'));
  images.route('/background.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  return { env, app, url, vendor, images, car };
}

async function post(s: Setup, body: FormData | URLSearchParams | string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${s.url}/v1.0/removebg`, { method: 'POST', headers: { 'X-Api-Key': s.vendor.apiKey, ...headers }, body });
}

async function errorOf(
  response: Response,
): Promise<{ status: number; code: string | undefined; body: { errors: { code: string; title: string; detail?: string }[]; requestId?: string } }> {
  const body = (await response.json()) as { errors: { code: string; title: string; detail?: string }[] };
  return { status: response.status, code: body.errors[0]?.code, body };
}

t.test('remove.bg request examples answer with the image, through the job queue', async (t) => {
  const s = await setup(t);

  // remove.bg's Node sample: fetch with a FormData of size=auto and the file as image_file.
  const form = new FormData();
  form.append('size', 'auto');
  form.append('image_file', new Blob([new Uint8Array(s.car)]), 'car-1.jpg');
  const res = await post(s, form);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'image/png');
  t.equal(res.headers.get('x-width'), '480');
  t.equal(res.headers.get('x-height'), '360');
  t.equal(res.headers.get('x-type'), 'other', 'type=auto answers other (no classifier)');
  t.equal(res.headers.get('x-credits-charged'), '1');
  const jobId = res.headers.get('x-job-id') as string;
  const png = Buffer.from(await res.arrayBuffer());
  const meta = await sharp(png).metadata();
  t.match(meta, { format: 'png', width: 480, height: 360, channels: 4 });
  const stats = await sharp(png).extractChannel(3).stats();
  t.ok((stats.channels[0]?.min ?? 255) < 10 && (stats.channels[0]?.max ?? 0) > 245, 'the cut-out has transparent background and opaque subject');

  // The job is an ordinary job: the vendor's job list and the ledger show it.
  const jobs = await s.app.inject({ method: 'GET', url: '/api/image-queue/jobs?kind=remove-bg', headers: s.vendor.auth });
  t.match(jobs.json(), { jobs: [{ id: jobId, state: 'completed', data: { kind: 'remove-bg', projectId: 'removebg' } }] });

  // curl -F 'image_url=…' -F 'size=auto', here as remove.bg's form-urlencoded variant (-d), with size=preview.
  const anime = await readFixture('rembg/anime-girl-1.jpg');
  s.images.route('/anime.jpg', serveBytes(anime, 'image/jpeg'));
  const preview = await post(s, new URLSearchParams({ image_url: `${s.images.url}/anime.jpg`, size: 'preview', type: 'person' }));
  t.equal(preview.status, 200);
  const [w, h] = [Number(preview.headers.get('x-width')), Number(preview.headers.get('x-height'))];
  t.ok(w * h <= 250_000 && w * h > 240_000, `preview is at most 0.25 megapixels (${w}×${h})`);
  t.equal(Math.round((w / h) * 100), Math.round((850 / 601) * 100), 'the aspect ratio is kept');
  t.equal(preview.headers.get('x-type'), 'person');

  // JSON with image_file_b64 and format=zip: color.jpg + alpha.png.
  const zip = await post(s, JSON.stringify({ image_file_b64: s.car.toString('base64'), format: 'zip', size: 'full' }), { 'content-type': 'application/json' });
  t.equal(zip.status, 200);
  t.equal(zip.headers.get('content-type'), 'application/zip');
  const files = unzipStored(Buffer.from(await zip.arrayBuffer()));
  t.same(
    files.map((f) => f.name),
    ['color.jpg', 'alpha.png'],
  );
  t.match(await sharp(files[0]?.data).metadata(), { format: 'jpeg', width: 480, height: 360, channels: 3 });
  t.match(await sharp(files[1]?.data).metadata(), { format: 'png', width: 480, height: 360, channels: 1 });

  // Accept: application/json answers remove.bg's { data: { result_b64 } }.
  const asJson = await post(s, new URLSearchParams({ image_url: `${s.images.url}/car.jpg`, bg_color: '81d4fa' }), { accept: 'application/json' });
  t.equal(asJson.status, 200);
  const b64 = ((await asJson.json()) as { data: { result_b64: string } }).data.result_b64;
  t.match(await sharp(Buffer.from(b64, 'base64')).metadata(), { format: 'jpeg', width: 480, height: 360 }, 'an opaque bg_color makes format=auto a jpg');
});

t.test('crop, margin, scale, position, channels and a background image', async (t) => {
  const s = await setup(t);
  const source = `${s.images.url}/car.jpg`;
  const cut = async (params: Record<string, string>) => {
    const res = await post(s, new URLSearchParams({ image_url: source, ...params }));
    t.equal(res.status, 200, JSON.stringify(params));
    return { res, bytes: Buffer.from(await res.arrayBuffer()) };
  };

  const plain = await cut({});
  const box = await subjectBox(plain.bytes);
  t.ok(box.width < 480 || box.height < 360, 'the car does not fill the photo');

  const cropped = await cut({ crop: 'true' });
  t.match(await sharp(cropped.bytes).metadata(), { width: box.width, height: box.height }, 'crop keeps the subject only');
  const margin = await cut({ crop: 'true', crop_margin: '10px 5px' });
  t.match(await sharp(margin.bytes).metadata(), { width: box.width + 10, height: box.height + 20 }, 'crop_margin: top/bottom 10px, left/right 5px');

  const scaled = await cut({ scale: '50%' });
  const small = await subjectBox(scaled.bytes);
  t.match(await sharp(scaled.bytes).metadata(), { width: 480, height: 360 }, 'scale keeps the canvas');
  t.ok(Math.abs(Math.max(small.width / 480, small.height / 360) - 0.5) < 0.02, 'the subject fills half the canvas');
  t.ok(Math.abs(small.left + small.width / 2 - 240) <= 2 && Math.abs(small.top + small.height / 2 - 180) <= 2, 'scale implies position=center');
  const corner = await subjectBox((await cut({ scale: '50%', position: '0% 100%' })).bytes);
  t.ok(corner.left <= 1 && corner.top + corner.height >= 359, 'position 0% 100%: bottom left');

  const alpha = await cut({ channels: 'alpha' });
  t.match(await sharp(alpha.bytes).metadata(), { format: 'png', channels: 1, width: 480, height: 360 }, 'channels=alpha: the matte alone');

  const roi = await cut({ roi: '0% 0% 50% 100%', crop: 'true' });
  const roiBox = await sharp(roi.bytes).metadata();
  t.ok((roiBox.width ?? 0) <= 240, 'nothing right of the region of interest is kept');

  const behind = await cut({ bg_image_url: `${s.images.url}/background.jpg` });
  t.equal(behind.res.headers.get('content-type'), 'image/jpeg', 'a background image makes the result opaque (auto → jpg)');
  t.match(await sharp(behind.bytes).metadata(), { width: 480, height: 360, channels: 3 });

  // The same options on the async route.
  const queued = await s.app.inject({
    method: 'POST',
    url: '/api/image-queue/remove-bg-queue',
    headers: s.vendor.auth,
    payload: { recordId: 'async-1', projectId: 'p', photoUrl: source, options: { crop: true, cropMargin: '10px', channels: 'alpha' } },
  });
  t.equal(queued.statusCode, 202);
  const jobId = (queued.json() as { jobId: string }).jobId;
  await waitForFinal(s.app.db, jobId, 60_000);
  const done = (await s.app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: s.vendor.auth })).json();
  t.match(done, { state: 'completed', result: { width: box.width + 20, height: box.height + 20 } });
  const refused = await s.app.inject({
    method: 'POST',
    url: '/api/image-queue/remove-bg-queue',
    headers: s.vendor.auth,
    payload: { recordId: 'async-2', projectId: 'p', photoUrl: source, options: { scale: '5%' } },
  });
  t.equal(refused.statusCode, 400);
  t.match(refused.json(), { fields: [{ path: 'body/options/scale' }] });
});

t.test("errors are remove.bg's, with its status codes", async (t) => {
  const s = await setup(t, { RATE_LIMIT_BG_REMOVAL_MAX: '3' });
  const source = `${s.images.url}/car.jpg`;

  const noKey = await fetch(`${s.url}/v1.0/removebg`, { method: 'POST', body: new URLSearchParams({ image_url: source }) });
  t.match(await errorOf(noKey), { status: 403, code: 'auth_failed' });
  t.equal(noKey.headers.get('x-credits-charged'), '0');
  const badKey = await fetch(`${s.url}/v1.0/removebg`, {
    method: 'POST',
    headers: { 'X-Api-Key': 'iqk_nope' },
    body: new URLSearchParams({ image_url: source }),
  });
  t.match(await errorOf(badKey), { status: 403, code: 'auth_failed' });

  const cases: [Record<string, string>, string][] = [
    [{}, 'missing_source'],
    [{ image_url: source, image_file_b64: 'aGVsbG8=' }, 'multiple_sources'],
    [{ image_url: source, size: 'huge' }, 'invalid_size'],
    [{ image_url: source, format: 'gif' }, 'invalid_format'],
    [{ image_url: source, channels: 'rgb' }, 'invalid_channels'],
    [{ image_url: source, bg_color: 'not-a-colour' }, 'invalid_bg_color'],
    [{ image_url: source, bg_color: 'fff', bg_image_url: source }, 'multiple_bg_sources'],
    [{ image_url: source, crop_margin: '1px 2px 3px' }, 'invalid_crop_margin'],
    [{ image_url: source, scale: '5%' }, 'invalid_scale'],
    [{ image_url: source, position: '120%' }, 'invalid_position'],
    [{ image_url: source, roi: '0 0 10' }, 'invalid_roi'],
    [{ image_url: 'ftp://example.com/a.jpg' }, 'invalid_image_url'],
    [{ image_file_b64: Buffer.from('not an image at all').toString('base64') }, 'invalid_file_type'],
  ];
  for (const [params, code] of cases) {
    const error = await errorOf(await post(s, new URLSearchParams(params)));
    t.match(error, { status: 400, code, body: { errors: [{ title: String }], requestId: String } }, code);
  }

  // Failures of the job itself: the photo cannot be downloaded, the ROI leaves the image.
  t.match(await errorOf(await post(s, new URLSearchParams({ image_url: `${s.images.url}/missing.jpg` }))), { status: 400, code: 'failed_image_download' });
  t.match(await errorOf(await post(s, new URLSearchParams({ image_url: source, roi: '0px 0px 900px 10px' }))), { status: 400, code: 'roi_exceeds_bounds' });
  t.match(await errorOf(await post(s, new URLSearchParams({ image_url: source, bg_image_url: `${s.images.url}/gone.jpg` }))), {
    status: 400,
    code: 'failed_bg_download',
  });

  // The background-removal tier counts per vendor (standard plan: 3 here).
  const { apiKey } = await createVendor(s.app.db, { name: 'Small', plan: 'standard' });
  const asSmall = (body: URLSearchParams) => fetch(`${s.url}/v1.0/removebg`, { method: 'POST', headers: { 'X-Api-Key': apiKey }, body });
  for (let i = 0; i < 3; i++) t.equal((await asSmall(new URLSearchParams({}))).status, 400);
  const limited = await asSmall(new URLSearchParams({ image_url: source }));
  t.match(await errorOf(limited), { status: 429, code: 'rate_limit_exceeded' });
  t.ok(Number(limited.headers.get('retry-after')) > 0, 'Retry-After says when');
});

t.test('a job longer than SYNC_WAIT_MS answers 202, and its Location the image', async (t) => {
  const s = await setup(t, { SYNC_WAIT_MS: '0' });
  const res = await post(s, new URLSearchParams({ image_url: `${s.images.url}/car.jpg` }));
  t.equal(res.status, 202);
  const body = (await res.json()) as { data: { jobId: string; statusUrl: string } };
  t.equal(res.headers.get('location'), body.data.statusUrl);
  // A second API process with a longer wait serves the Location (the wait is per request, the job is shared).
  const patient = await testApp(t, { ...s.env, SYNC_WAIT_MS: '60000' });
  const result = await patient.inject({ method: 'GET', url: body.data.statusUrl, headers: { 'x-api-key': s.vendor.apiKey } });
  t.equal(result.statusCode, 200);
  t.equal(result.headers['content-type'], 'image/png');
  t.equal(result.headers['x-width'], '480');
  const other = await testVendor(s.app, { name: 'Other' });
  const theirs = await patient.inject({ method: 'GET', url: body.data.statusUrl, headers: { 'x-api-key': other.apiKey } });
  t.equal(theirs.statusCode, 404, "another vendor's job is not found");
});

async function subjectBox(png: Buffer): Promise<{ left: number; top: number; width: number; height: number }> {
  const { data, info } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  let [left, top, right, bottom] = [info.width, info.height, -1, -1];
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < info.width; x++) {
      if ((data[(y * info.width + x) * 4 + 3] as number) > 8) {
        left = Math.min(left, x);
        right = Math.max(right, x);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
      }
    }
  }
  return { left, top, width: right - left + 1, height: bottom - top + 1 };
}
