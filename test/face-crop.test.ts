import t, { type Test } from 'tap';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv, type TestEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer, type TestServer } from './helpers/http.js';
import { readFixture } from './helpers/fixtures.js';
import { waitFor } from './helpers/wait.js';
import { DEMO_FACES, demoPhotoPath, measureCrop, portrait } from './helpers/faces.js';
import { rembgListening } from './helpers/rembg.js';
import { enqueueJobs } from '../backend/enqueue.js';
import { findVendorRecord } from '../db/repos/records.js';
import type { FaceCropOptions } from '../jobs/payloads.js';
import { FACE_PRESETS } from '../jobs/face-presets.js';
import { faceEngineResource } from '../worker/faces/engine.js';
import { createFaceCropProcessor } from '../worker/processors/face-crop.js';
import { RembgPool } from '../worker/rembg/pool.js';
import { createLogger } from '../platform/logger.js';
import { readFile } from 'node:fs/promises';

/**
 * Face crops end to end: ledger → Bull → a real worker with face-api on
 * wasm → storage → status. Outputs are measured again here with another
 * detector, not taken from the job's own report.
 */
interface CropResult {
  success: boolean;
  photoUrl: string;
  width: number;
  height: number;
  format: string;
  scale: number;
  padding: Record<string, number>;
  checks: { pass: boolean; eyeTilt: { before: number; after: number } };
  [field: string]: unknown;
}

interface Crop {
  id: string;
  state: string;
  attempts: number;
  error: { code: string; message: string } | null;
  result: CropResult | null;
}

function harness(app: FastifyInstance, vendor: TestVendor, images: TestServer) {
  return {
    async enqueue(recordId: string, path: string, options: FaceCropOptions): Promise<string> {
      const { jobIds } = await enqueueJobs(
        app,
        vendor.vendorId,
        [{ kind: 'face-crop', projectId: 'faces', recordId, source: { type: 'url', url: `${images.url}${path}` }, options }],
        { attempts: 3, batch: false },
      );
      return jobIds[0] as string;
    },
    async settle(jobId: string): Promise<Crop> {
      return waitFor(
        async () => {
          const body = (await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth })).json() as Crop;
          return ['completed', 'failed', 'dead'].includes(body.state) ? body : undefined;
        },
        120_000,
        200,
      );
    },
    async file(url: string): Promise<Buffer> {
      const res = await app.inject({ method: 'GET', url: new URL(url).pathname });
      if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`);
      return res.rawPayload;
    },
  };
}

async function setup(t: Test, extra: TestEnv = {}) {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'face-crop', JOB_TIMEOUT_MS: '120000', ...extra });
  const app = await testApp(t, env);
  const images = await testServer(t);
  const vendor = await testVendor(app);
  return { env, app, images, vendor, ...harness(app, vendor, images) };
}

t.test('passport and ID-card crops meet their presets; bad photos fail at once with a clear code', async (t) => {
  const s = await setup(t);
  await testWorker(t, s.env);
  s.images.route('/ann.jpg', serveBytes(await portrait(DEMO_FACES.ann), 'image/jpeg'));
  s.images.route('/ann-turned.jpg', serveBytes(await portrait(DEMO_FACES.ann, { rotate: 10 }), 'image/jpeg'));
  s.images.route('/bea.jpg', serveBytes(await portrait(DEMO_FACES.bea), 'image/jpeg'));
  // a phone photo: stored sideways, with EXIF orientation 6 saying "turn me 90° clockwise"
  const sideways = await sharp(await portrait(DEMO_FACES.ann))
    .rotate(-90)
    .withMetadata({ orientation: 6 })
    .jpeg()
    .toBuffer();
  s.images.route('/ann-exif.jpg', serveBytes(sideways, 'image/jpeg'));
  s.images.route('/ann-tiny.jpg', serveBytes(await portrait(DEMO_FACES.ann, { scale: 0.35 }), 'image/jpeg'));
  s.images.route('/car.jpg', serveBytes(await readFixture('rembg/car-1.jpg'), 'image/jpeg'));
  s.images.route('/group.jpg', serveBytes(await readFile(demoPhotoPath(1)), 'image/jpeg'));

  // all queued at once: the worker runs three at a time
  const jobs = {
    passport: await s.enqueue('ann', '/ann.jpg', { mode: 'passport' }),
    turned: await s.enqueue('ann-turned', '/ann-turned.jpg', { mode: 'passport', face: 'only' }),
    idcard: await s.enqueue('bea', '/bea.jpg', { mode: 'idcard', format: 'png' }),
    exif: await s.enqueue('ann-exif', '/ann-exif.jpg', { mode: 'passport', format: 'webp' }),
    car: await s.enqueue('car', '/car.jpg', { mode: 'passport' }),
    group: await s.enqueue('group', '/group.jpg', { mode: 'passport', face: 'only' }),
    tiny: await s.enqueue('tiny', '/ann-tiny.jpg', { mode: 'passport' }),
    jpegTransparent: await s.enqueue('bad-options', '/ann.jpg', { mode: 'passport', background: 'transparent', format: 'jpeg' }),
  };

  t.test('passport: 827×1063 at 600 dpi, eyes level, head 70–80 %, centred', async (t) => {
    const job = await s.settle(jobs.passport);
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    const r = job.result as CropResult;
    t.match(r, { success: true, width: 827, height: 1063, format: 'jpeg', mode: 'passport', background: 'original', upscaled: true });
    t.match(r.face, { box: { x: Number, y: Number, width: Number, height: Number }, facesFound: 1 });
    t.ok(r.scale > 1, `the portrait was upscaled (×${r.scale}) and the result says so`);
    t.equal(r.checks.pass, true, JSON.stringify(r.checks));
    t.ok(Math.abs(r.checks.eyeTilt.after) <= 2);

    const bytes = await s.file(r.photoUrl);
    const meta = await sharp(bytes).metadata();
    t.same([meta.width, meta.height, meta.format, meta.density], [827, 1063, 'jpeg', 600]);
    const measured = await measureCrop(bytes);
    t.equal(measured.faces, 1);
    const face = measured.face!;
    t.ok(Math.abs(face.tiltDeg) <= 2, `eye line level within 2° (measured ${face.tiltDeg.toFixed(2)}°)`);
    const ratio = face.headHeight / 1063;
    t.ok(ratio >= 0.7 && ratio <= 0.8, `head is ${(ratio * 100).toFixed(1)} % of the height`);
    t.ok(Math.abs(face.centre.x - 827 / 2) / 827 < 0.05, `face centred (centre line at x=${face.centre.x.toFixed(0)})`);

    const record = await findVendorRecord(s.app.db, s.vendor.vendorId, 'faces', 'ann');
    t.equal(record?.processing_status, 'completed');
    t.equal(record?.processed_photo_url, r.photoUrl);
    t.match(record?.fields['faceCrop.checks'], { pass: true });
  });

  t.test('a face turned 10° comes out level', async (t) => {
    const job = await s.settle(jobs.turned);
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    const r = job.result as CropResult;
    t.ok(Math.abs(r.checks.eyeTilt.before) >= 7, `the source tilt was seen (${r.checks.eyeTilt.before}°)`);
    const measured = await measureCrop(await s.file(r.photoUrl));
    t.ok(Math.abs(measured.face!.tiltDeg) <= 2, `eye line level within 2° (measured ${measured.face!.tiltDeg.toFixed(2)}°)`);
    t.same(r.padding, { top: 0, right: 0, bottom: 0, left: 0 }, 'the photo covers the crop (its grey corners stay outside)');
  });

  t.test('idcard: its own preset, png', async (t) => {
    const job = await s.settle(jobs.idcard);
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    const r = job.result as CropResult;
    const preset = FACE_PRESETS.idcard;
    t.match(r, { width: preset.width, height: preset.height, format: 'png', preset: { dpi: 350 } });
    const bytes = await s.file(r.photoUrl);
    const meta = await sharp(bytes).metadata();
    t.same([meta.width, meta.height, meta.format, meta.density], [358, 441, 'png', 350]);
    const face = (await measureCrop(bytes)).face!;
    const ratio = face.headHeight / preset.height;
    t.ok(ratio >= preset.headRatio.min && ratio <= preset.headRatio.max, `head is ${(ratio * 100).toFixed(1)} % of the height`);
    t.ok(preset.height - face.eyeMid.y >= 207, 'eye line at least 207 px above the bottom (GA 461-2004)');
  });

  t.test('EXIF orientation is applied before the face is looked for', async (t) => {
    const job = await s.settle(jobs.exif);
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    t.match(job.result, { width: 827, height: 1063, format: 'webp', source: { width: Number, height: Number } });
    t.ok(Math.abs((job.result as CropResult).checks.eyeTilt.before) < 10, 'the face was found upright, not at 90°');
    const measured = await measureCrop(await s.file((job.result as CropResult).photoUrl));
    t.ok(Math.abs(measured.face!.tiltDeg) <= 2, `eye line level (measured ${measured.face!.tiltDeg.toFixed(2)}°)`);
  });

  t.test('failures that cannot succeed on retry end the job at once', async (t) => {
    const car = await s.settle(jobs.car);
    t.match(car, { state: 'failed', attempts: 1, error: { code: 'NO_FACE' } });
    const group = await s.settle(jobs.group);
    t.match(group, { state: 'failed', attempts: 1, error: { code: 'MULTIPLE_FACES', message: /3 faces/ } });
    const tiny = await s.settle(jobs.tiny);
    t.match(tiny, { state: 'failed', attempts: 1, error: { code: 'FACE_TOO_SMALL', message: /needs at least 240 px/ } });
    const bad = await s.settle(jobs.jpegTransparent);
    t.match(bad, { state: 'failed', attempts: 1, error: { code: 'BAD_REQUEST', message: /jpeg cannot be transparent/ } });
    const record = await findVendorRecord(s.app.db, s.vendor.vendorId, 'faces', 'car');
    t.equal(record?.error_code, 'NO_FACE');
  });
});

t.test('white and transparent backgrounds cut the person out through background removal', async (t) => {
  const s = await setup(t);
  // a real rembg service instance, reached through the worker's pool
  const service = await rembgListening(t);
  const rembg = new RembgPool(
    { urls: [service.url], defaultModel: 'u2netp', timeoutMs: 60_000, healthIntervalMs: 1_000, failureThreshold: 3, openMs: 1_000, waitMs: 5_000 },
    createLogger('silent', 'test'),
  );
  t.teardown(() => rembg.close());
  const faces = faceEngineResource({ detector: 'tinyFaceDetector', maxSide: 640, minScore: 0.5, tinyInputSizes: [224, 416] });
  t.teardown(() => faces.resource.close());
  const processor = createFaceCropProcessor({
    engine: faces.engine,
    rembg,
    tagger: null,
    settings: { minHeadPx: { passport: 240, idcard: 160 }, onlyIgnoreBelow: 0.35, backgroundModel: null },
  });
  await testWorker(t, s.env, { processors: { 'face-crop': processor } });
  s.images.route('/ann.jpg', serveBytes(await portrait(DEMO_FACES.ann), 'image/jpeg'));
  const white = await s.enqueue('white', '/ann.jpg', { mode: 'passport', background: 'white' });
  const clear = await s.enqueue('clear', '/ann.jpg', { mode: 'idcard', background: 'transparent' });

  const w = await s.settle(white);
  t.equal(w.state, 'completed', JSON.stringify(w.error));
  const wImage = sharp(await s.file(w.result!.photoUrl)).raw();
  const { data: wData, info: wInfo } = await wImage.toBuffer({ resolveWithObject: true });
  const px = (x: number, y: number) => Array.from(wData.subarray((y * wInfo.width + x) * wInfo.channels, (y * wInfo.width + x) * wInfo.channels + 3));
  for (const [x, y] of [
    [5, 5],
    [821, 5],
  ]) {
    t.ok(
      px(x as number, y as number).every((v) => v >= 235),
      `corner (${x},${y}) is white: ${px(x as number, y as number)}`,
    );
  }
  const centre = px(413, 600);
  t.notOk(
    centre.every((v) => v >= 235),
    `the face is kept (${centre})`,
  );

  const c = await s.settle(clear);
  t.equal(c.state, 'completed', JSON.stringify(c.error));
  t.equal(c.result!.format, 'png', 'transparent defaults to png');
  const { data, info } = await sharp(await s.file(c.result!.photoUrl))
    .raw()
    .toBuffer({ resolveWithObject: true });
  t.equal(info.channels, 4);
  const alpha = (x: number, y: number) => data[(y * info.width + x) * 4 + 3] as number;
  t.ok(alpha(3, 3) < 30 && alpha(354, 3) < 30, `top corners are transparent (${alpha(3, 3)}, ${alpha(354, 3)})`);
  t.ok(alpha(179, 200) > 220, `the face is opaque (${alpha(179, 200)})`);
  t.same(Object.values(rembg.callCounts()), [2], 'both went through the pool');
});
