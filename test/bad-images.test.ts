import t from 'tap';
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { attemptRows, queueResize, waitForFinal } from './helpers/jobs.js';
import { spawnWorker } from './helpers/worker-process.js';
import { multipartBody } from './helpers/multipart.js';
import { jpegWithHugeExif, pngBomb, pngWithHugeExif, svgWithExternalRefs, truncatedJpeg } from './helpers/bad-images.js';

/**
 * Hostile images through the real worker path (a worker process fetching
 * from a local server) and through the upload route: each ends as a failed
 * job (or a 4xx) with a code that says why, after one attempt, the worker
 * alive and its peak memory far below what decoding the bomb would take.
 */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

async function queue(app: FastifyInstance, vendor: TestVendor, route: string, payload: object): Promise<string> {
  const res = await app.inject({ method: 'POST', url: `/api/image-queue/${route}`, headers: vendor.auth, payload });
  if (res.statusCode !== 202) throw new Error(`${route}: ${res.statusCode} ${res.body}`);
  return res.json().jobId as string;
}

t.test('hostile images fail with clear codes, once, without hurting the worker', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing,face-crop', LOG_LEVEL: 'warn', RECONCILE_INTERVAL_MS: '0' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const images = await testServer(t);
  const bomb = await pngBomb(30_000, 30_000);
  t.ok(bomb.length < 8 << 20, `the bomb is ${(bomb.length / 2 ** 20).toFixed(1)} MB on the wire and 900 MB decoded`);
  images.route('/bomb.png', serveBytes(bomb, 'image/png'));
  images.route('/cut.jpg', serveBytes(await truncatedJpeg(0.5), 'image/jpeg'));
  images.route('/page.jpg', serveBytes(Buffer.from('<!doctype html><html><body>not a photo</body></html>'), 'image/jpeg'));
  images.route('/zip.jpg', serveBytes(Buffer.from('PK\u0003\u0004 definitely a zip file'), 'image/jpeg'));
  images.route('/evil.svg', serveBytes(svgWithExternalRefs(images.url), 'image/svg+xml'));
  images.route('/evil.jpg', serveBytes(svgWithExternalRefs(images.url), 'image/jpeg'));
  images.route('/exif.jpg', serveBytes(await jpegWithHugeExif(), 'image/jpeg'));
  images.route('/exif.png', serveBytes(await pngWithHugeExif(8 << 20), 'image/png'));
  images.route('/fine.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));

  const worker = await spawnWorker(t, env, 'bad-images');
  const pid = worker.child.pid as number;
  const resize = (path: string) => queueResize(app, vendor, `${images.url}${path}`);
  const metadata = (path: string, recordId: string) =>
    queue(app, vendor, 'process-queue', {
      recordId,
      projectId: 'p',
      photoUrl: `${images.url}${path}`,
      operations: [{ op: 'metadata' }, { op: 'resize', width: 8 }],
    });
  const jobs = {
    bomb: await resize('/bomb.png'),
    bombMetadata: await metadata('/bomb.png', 'bomb-meta'),
    bombFace: await queue(app, vendor, 'crop-face-queue', { recordId: 'bomb-face', projectId: 'p', photoUrl: `${images.url}/bomb.png`, mode: 'passport' }),
    truncated: await resize('/cut.jpg'),
    truncatedMetadata: await metadata('/cut.jpg', 'cut-meta'),
    html: await resize('/page.jpg'),
    zip: await resize('/zip.jpg'),
    svg: await resize('/evil.svg'),
    svgAsJpeg: await resize('/evil.jpg'),
    svgFace: await queue(app, vendor, 'crop-face-queue', { recordId: 'svg-face', projectId: 'p', photoUrl: `${images.url}/evil.svg`, mode: 'idcard' }),
    exifJpeg: await metadata('/exif.jpg', 'exif-jpg'),
    exifPng: await metadata('/exif.png', 'exif-png'),
  };
  const expected: Record<keyof typeof jobs, string | null> = {
    bomb: 'TOO_MANY_PIXELS',
    bombMetadata: 'TOO_MANY_PIXELS',
    bombFace: 'TOO_MANY_PIXELS',
    truncated: 'BAD_IMAGE',
    truncatedMetadata: 'BAD_IMAGE',
    html: 'BAD_IMAGE',
    zip: 'BAD_IMAGE',
    svg: 'UNSUPPORTED_FORMAT',
    svgAsJpeg: 'UNSUPPORTED_FORMAT',
    svgFace: 'UNSUPPORTED_FORMAT',
    // oversized or nonsensical EXIF is ignored, not fatal: the photo itself is fine
    exifJpeg: null,
    exifPng: null,
  };
  for (const [name, jobId] of Object.entries(jobs) as [keyof typeof jobs, string][]) {
    const job = await waitForFinal(app.db, jobId, 120_000);
    const code = expected[name];
    if (code === null) {
      t.equal(job.status, 'completed', `${name}: completed (${job.error_code} ${job.error_message})`);
    } else {
      t.equal(job.status, 'failed', `${name}: failed`);
      t.equal(job.error_code, code, `${name}: ${job.error_code} — ${job.error_message}`);
      // Not retried once the image was seen: one attempt ends with the code, and it is the last. (On a
      // loaded machine an earlier attempt may fail for another, transient reason, such as a slow fetch.)
      const attempts = await attemptRows(app.db, jobId);
      const withCode = attempts.filter((a) => a.error_code === code);
      t.equal(withCode.length, 1, `${name}: not retried (${attempts.map((a) => a.error_code).join(', ')})`);
      t.equal(attempts.at(-1)?.error_code, code, `${name}: the last attempt is the one that saw the image`);
      t.ok(job.error_message && job.error_message.length < 400 && !/at \w+ \(/.test(job.error_message), `${name}: a message for people, no stack`);
    }
  }
  const status = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobs.exifPng}`, headers: vendor.auth });
  t.equal(status.json().result.width, 8, 'the photo with 8 MB of EXIF was processed');

  for (const path of ['/leak.png', '/style.css', '/entity.txt', '/sprite.svg']) t.equal(images.hits.get(path) ?? 0, 0, `the SVG's ${path} was never fetched`);

  t.equal(worker.child.exitCode, null, 'the worker is still running');
  const after = await waitForFinal(app.db, await resize('/fine.jpg'), 60_000);
  t.equal(after.status, 'completed', 'and still does work');
  const peak = await peakRssMb(pid);
  t.ok(peak < 600, `worker peak RSS ${peak.toFixed(0)} MB (decoding the bomb would take 900 MB)`);
  t.comment(`worker peak RSS ${peak.toFixed(0)} MB`);
});

t.test('the upload route refuses hostile files before anything is stored or queued', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const cases: [string, Buffer, string, number, string][] = [
    ['bomb.png', await pngBomb(30_000, 30_000), 'image/png', 413, 'TOO_MANY_PIXELS'],
    ['evil.svg', svgWithExternalRefs('http://127.0.0.1:9'), 'image/svg+xml', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['evil.jpg', svgWithExternalRefs('http://127.0.0.1:9'), 'image/jpeg', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['page.jpg', Buffer.from('<html>no</html>'), 'image/jpeg', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['empty.jpg', Buffer.alloc(0), 'image/jpeg', 415, 'UNSUPPORTED_MEDIA_TYPE'],
  ];
  for (const [filename, bytes, contentType, status, code] of cases) {
    const body = await multipartBody({ recordId: filename, projectId: 'p', operations: '[{"op":"resize","width":8}]' }, [
      { field: 'photo', filename, contentType, bytes },
    ]);
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: { ...vendor.auth, ...body.headers },
      payload: body.payload,
    });
    t.equal(res.statusCode, status, `${filename}: ${res.body.slice(0, 200)}`);
    t.equal(res.json().code, code);
  }
  const rows = await app.db.selectFrom('jobs').select('id').execute();
  t.same(rows, [], 'nothing was queued');
});

t.test('a rembg instance that answers with a decompression bomb cannot blow up the worker', async (t) => {
  const rembg = await testServer(t);
  const bomb = await pngBomb(30_000, 30_000);
  rembg.route('/health', (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'));
  rembg.route('/api/remove', serveBytes(bomb, 'image/png'));
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'background-removal',
    REMBG_URLS: rembg.url,
    JOB_ATTEMPTS: '1',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const images = await testServer(t);
  images.route('/small.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  const worker = await spawnWorker(t, env, 'bomb-rembg');
  const jobId = await queue(app, vendor, 'remove-bg-queue', { recordId: 'r', projectId: 'p', photoUrl: `${images.url}/small.jpg` });
  const job = await waitForFinal(app.db, jobId, 120_000);
  t.not(job.status, 'completed');
  t.equal(job.error_code, 'REMBG_FAILED', `${job.error_message}`);
  t.match(job.error_message, /30000×30000/, 'the message says what came back');
  t.ok((rembg.hits.get('/api/remove') ?? 0) >= 1, 'the instance was called');
  t.equal(worker.child.exitCode, null, 'the worker is still running');
  const peak = await peakRssMb(worker.child.pid as number);
  t.ok(peak < 600, `worker peak RSS ${peak.toFixed(0)} MB (the answer decoded would take 3.6 GB)`);
});
