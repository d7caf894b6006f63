import t from 'tap';
import sharp, { type Sharp } from 'sharp';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import { attemptRows, waitForFinal } from './helpers/jobs.js';
import { pipelineSizes } from '../jobs/pixel-budget.js';
import type { Operation } from '../jobs/operations.js';

/**
 * Issue 18, pixel budget: no pipeline step may make an image over
 * MAX_OUTPUT_PIXELS, nor a job store more than MAX_JOB_ENCODED_PIXELS. What
 * the request tells is refused at enqueue (400 naming the step); what only
 * the source tells fails at once in the worker, not retried, before any
 * output is made. Another vendor's jobs run normally meanwhile.
 */
const dot = () =>
  sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();

async function post(app: FastifyInstance, vendor: TestVendor, body: object) {
  return app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: vendor.auth, payload: { projectId: 'p', ...body } });
}

async function upload(app: FastifyInstance, vendor: TestVendor, photo: Buffer, operations: unknown[]) {
  const form = await multipartBody({ recordId: `r-${Math.random()}`, projectId: 'p', operations: JSON.stringify(operations) }, [
    { field: 'photo', filename: 'a.png', contentType: 'image/png', bytes: photo },
  ]);
  return app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: { ...vendor.auth, ...form.headers }, payload: form.payload });
}

t.test("the issue's 1×1 PNG pipeline is refused at enqueue with the default limits", async (t) => {
  const env = await isolatedEnv(t);
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const attack = [
    { op: 'force_resize', width: 8192, height: 8192 },
    { op: 'rotate', angle: 45 },
    { op: 'rotate', angle: 45 },
  ];
  const uploaded = await upload(app, vendor, await dot(), attack);
  t.equal(uploaded.statusCode, 400, uploaded.body);
  t.equal(uploaded.json().code, 'OUTPUT_TOO_LARGE');
  t.same(
    uploaded.json().fields.map((f: { path: string }) => f.path),
    ['body/operations/0'],
    '8192×8192 is 67 Mpx, over the default 50 Mpx already',
  );
  t.match(uploaded.json().message, /force_resize would make a 8192×8192 image \(67108864 pixels\); the limit is 50000000/);

  const byUrl = await post(app, vendor, { recordId: 'r1', photoUrl: 'http://127.0.0.1:1/x.png', operations: attack });
  t.equal(byUrl.statusCode, 400, 'the same from a URL: force_resize fixes the size whatever the source');

  const second = await post(app, vendor, {
    recordId: 'r2',
    photoUrl: 'http://127.0.0.1:1/x.png',
    operations: [
      { op: 'force_resize', width: 6000, height: 6000 },
      { op: 'rotate', angle: 45 },
    ],
  });
  t.equal(second.statusCode, 400);
  t.equal(second.json().code, 'OUTPUT_TOO_LARGE');
  t.equal(second.json().fields[0].path, 'body/operations/1', "rotate's larger canvas is counted: 6000² turned by 45° is 8486² (72 Mpx)");

  const contain = await post(app, vendor, {
    recordId: 'r3',
    photoUrl: 'http://127.0.0.1:1/x.png',
    operations: [{ op: 'resize', width: 8000, height: 8000, fit: 'contain' }],
  });
  t.equal(contain.json().fields?.[0]?.path, 'body/operations/0', 'contain pads to the box whatever the source, so it is known too');

  const fine = await post(app, vendor, {
    recordId: 'r4',
    photoUrl: 'http://127.0.0.1:1/x.png',
    operations: [{ op: 'force_resize', width: 7000, height: 7000 }],
  });
  t.equal(fine.statusCode, 202, '49 Mpx is within the limit');
});

t.test('sizes follow sharp: the budget sees what the worker makes', async (t) => {
  const source = { width: 100, height: 50 };
  const cases: Operation[][] = [
    [{ op: 'rotate', angle: 30 }],
    [
      { op: 'rotate', angle: -17 },
      { op: 'rotate', angle: 200 },
    ],
    [{ op: 'rotate', angle: 90 }],
    [{ op: 'resize', width: 400, height: 400, fit: 'outside', withoutEnlargement: false }],
    [{ op: 'resize', width: 80, height: 400, fit: 'cover' }],
    [{ op: 'resize', width: 400, height: 40, fit: 'fill' }],
    [{ op: 'resize', width: 400, height: 400, fit: 'contain' }],
    [{ op: 'resize', width: 400, withoutEnlargement: false }],
    [{ op: 'resize', height: 20 }],
    [{ op: 'resize', width: 400, height: 40 }],
    [{ op: 'force_resize', width: 33, height: 77 }],
  ];
  for (const operations of cases) {
    let image = sharp({ create: { ...source, channels: 3, background: '#000' } });
    for (const op of operations) {
      const { info } = await applyOp(image, op).raw().toBuffer({ resolveWithObject: true });
      image = sharp({ create: { width: info.width, height: info.height, channels: 3, background: '#000' } });
    }
    const { width, height } = await image.metadata();
    const predicted = pipelineSizes(operations, source).at(-1);
    // an upper bound (a turn is rounded up), off by at most a pixel per turn
    const close = (p: number, actual: number) => p >= actual && p - actual <= operations.length;
    t.ok(
      predicted && close(predicted.width, width!) && close(predicted.height, height!),
      `${JSON.stringify(operations)}: predicted ${JSON.stringify(predicted)}, sharp made ${width}×${height}`,
    );
  }
});

/** The sharp call each step makes (worker/processors/process-image.ts STEPS). */
function applyOp(image: Sharp, op: Operation): Sharp {
  switch (op.op) {
    case 'rotate':
      return image.rotate(op.angle);
    case 'force_resize':
      return image.resize({ width: op.width, height: op.height, fit: 'fill' });
    case 'resize':
      return image.resize({ width: op.width, height: op.height, fit: op.fit ?? 'inside', withoutEnlargement: op.withoutEnlargement ?? true });
    default:
      return image;
  }
}

t.test('what only the source tells fails at once in the worker; the other vendor is not held up', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    CONCURRENCY_IMAGE_PROCESSING: '2',
    MAX_OUTPUT_PIXELS: '1000000',
  });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  const square = await makeJpeg(800, 800);
  images.route('/square.jpg', serveBytes(square, 'image/jpeg'));
  images.route('/small.jpg', serveBytes(await makeJpeg(120, 80), 'image/jpeg'));
  const attacker = await testVendor(app, { name: 'Attacker' });
  const other = await testVendor(app, { name: 'Neighbour' });

  // 800² is 0.64 Mpx; turned by 45° it is 1132² (1.28 Mpx), over the 1 Mpx limit.
  const rotate = [{ op: 'rotate', angle: 45 }];
  // seven exact turns of 0.64 Mpx store 4.48 Mpx, over the job's 4 × 1 Mpx
  const turns = Array.from({ length: 7 }, () => ({ op: 'rotate', angle: 90 }));

  const refused = await upload(app, attacker, square, rotate);
  t.equal(refused.statusCode, 400, 'an upload tells its size at enqueue');
  t.same([refused.json().code, refused.json().fields[0].path], ['OUTPUT_TOO_LARGE', 'body/operations/0']);
  const refusedTotal = await upload(app, attacker, square, turns);
  t.same([refusedTotal.statusCode, refusedTotal.json().code, refusedTotal.json().fields[0].path], [400, 'JOB_TOO_LARGE', 'body/operations/6']);

  const queued = async (vendor: TestVendor, recordId: string, path: string, operations: unknown[]) => {
    const res = await post(app, vendor, { recordId, photoUrl: `${images.url}${path}`, operations });
    t.equal(res.statusCode, 202, res.body);
    return res.json().jobId as string;
  };
  const attacks = [
    await queued(attacker, 'a1', '/square.jpg', rotate),
    await queued(attacker, 'a2', '/square.jpg', turns),
    await queued(attacker, 'a3', '/square.jpg', [{ op: 'variants', sizes: { a: 800, b: 800, c: 800, d: 800 }, formats: ['webp', 'jpeg'] }]),
  ];
  const normal = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      queued(other, `n${i}`, '/small.jpg', [
        { op: 'rotate', angle: 45 },
        { op: 'convert', format: 'webp' },
      ]),
    ),
  );

  const expected = [
    ['OUTPUT_TOO_LARGE', /operations\/0: rotate would make a 1132×1132 image/],
    ['JOB_TOO_LARGE', /operations\/6: the images stored up to rotate hold 4480000 pixels together; a job may store at most 4000000/],
    ['JOB_TOO_LARGE', /operations\/0/],
  ] as const;
  for (const [i, jobId] of attacks.entries()) {
    const job = await waitForFinal(app.db, jobId);
    t.equal(job.status, 'failed', `${jobId}: failed for good, not dead after retries`);
    t.equal(job.error_code, expected[i]![0]);
    t.match(job.error_message, expected[i]![1]);
    t.equal((await attemptRows(app.db, jobId)).length, 1, 'one attempt: the refusal is not retried');
    const status = await app.inject({ url: `/api/image-queue/job/${jobId}`, headers: attacker.auth });
    t.same(status.json().result?.outputs ?? [], [], 'nothing was made or stored');
  }
  for (const jobId of normal) {
    const job = await waitForFinal(app.db, jobId);
    t.equal(job.status, 'completed', "the neighbour's jobs complete");
  }
});
