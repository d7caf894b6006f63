import t from 'tap';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { isolatedEnv } from './helpers/env.js';
import { listeningApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import { waitForFinal } from './helpers/jobs.js';

/**
 * Hostile multipart bodies against the listening API: each is refused while
 * it is still being sent (413, or 400 for a second photo on a single route),
 * without the API keeping what it was sent, and a slow upload is cut off by
 * REQUEST_TIMEOUT_MS. Another vendor's upload is then processed normally.
 */
const BOUNDARY = 'hostileboundary';
const MiB = 1024 * 1024;

interface Streamed {
  status: number;
  body: string;
  ms: number;
  sentBytes: number;
}

/**
 * POSTs a multipart body produced part by part (backpressure respected) and
 * stops sending as soon as the response head arrives; `stall` stops sending
 * after the given parts without ending the request.
 */
function streamForm(base: string, path: string, vendor: TestVendor, parts: Iterable<Buffer>, options: { stall?: boolean } = {}): Promise<Streamed> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let answered = false;
    let sentBytes = 0;
    const req = httpRequest(`${base}${path}`, {
      method: 'POST',
      headers: { ...vendor.auth, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'transfer-encoding': 'chunked' },
    });
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      const ms = performance.now() - started;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms, sentBytes });
        req.destroy();
      });
    });
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    const iterator = parts[Symbol.iterator]();
    const pump = () => {
      while (!answered) {
        const next = iterator.next();
        if (next.done) {
          if (!options.stall) req.end(`--${BOUNDARY}--\r\n`);
          return;
        }
        sentBytes += next.value.length;
        if (!req.write(next.value)) {
          req.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

function fieldHead(name: string): Buffer {
  return Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n`);
}
function fileHead(name: string, filename: string): Buffer {
  return Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="${name}"; filename="${filename}"\r\ncontent-type: image/jpeg\r\n\r\n`);
}
const CRLF = Buffer.from('\r\n');

/** `count` fields of `bytes` each; small ones go out one write per field, large ones head, value, CRLF. */
function* fields(count: number, bytes: number): Generator<Buffer> {
  const value = Buffer.alloc(bytes, 'a');
  for (let i = 0; i < count; i++) {
    if (bytes > 4096) yield* [fieldHead(`f${i}`), value, CRLF];
    else yield Buffer.concat([fieldHead(`f${i}`), value, CRLF]);
  }
}

function errorOf(res: Streamed): { code: string; message: string; fields?: { path: string; message: string }[] } {
  return JSON.parse(res.body) as { code: string; message: string };
}

t.test('hostile forms are refused while they are sent; a slow upload is cut off; another vendor is unaffected', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', REQUEST_TIMEOUT_MS: '1500', UPLOAD_MAX_FILES: '4', UPLOAD_MAX_TOTAL_BYTES: '300000' });
  const { app, url } = await listeningApp(t, env);
  const attacker = await testVendor(app, { name: 'Form Bomber' });
  const other = await testVendor(app, { name: 'Bystander' });
  const jpeg = await makeJpeg(64, 48);

  t.test('10,000 fields of 1 MiB: 413 in under a second, API memory bounded', async (t) => {
    global.gc?.();
    const before = process.memoryUsage().rss;
    const res = await streamForm(url, '/api/image-queue/process-queue', attacker, fields(10_000, MiB));
    const grew = process.memoryUsage().rss - before;
    t.equal(res.status, 413, res.body);
    t.equal(errorOf(res).code, 'PAYLOAD_TOO_LARGE');
    t.match(errorOf(res).message, /form field f0 is larger than 65536 bytes/);
    t.ok(res.ms < 1000, `answered in ${res.ms.toFixed(0)} ms`);
    t.ok(res.sentBytes < 64 * MiB, `stopped after ${(res.sentBytes / MiB).toFixed(1)} MiB of the 10,000 MiB`);
    t.ok(grew < 96 * MiB, `RSS grew ${(grew / MiB).toFixed(1)} MiB`);
  });

  t.test('10,000 small fields: 413 at the route field count', async (t) => {
    const res = await streamForm(url, '/api/image-queue/process-queue', attacker, fields(10_000, 10));
    t.equal(res.status, 413, res.body);
    t.match(errorOf(res).message, /more than 32 fields/);
    t.ok(res.ms < 2000, `answered in ${res.ms.toFixed(0)} ms`);
  });

  t.test('a single route refuses a second photo as soon as it starts', async (t) => {
    const parts = [fieldHead('recordId'), Buffer.from('r1'), CRLF, fieldHead('projectId'), Buffer.from('p'), CRLF];
    parts.push(fileHead('photo', 'a.jpg'), jpeg, CRLF, fileHead('photo', 'b.jpg'), jpeg.subarray(0, 10));
    const res = await streamForm(url, '/api/image-queue/process-queue', attacker, parts, { stall: true });
    t.equal(res.status, 400, res.body);
    t.same(errorOf(res).fields, [{ path: 'body/photo', message: 'must be one file' }]);
  });

  t.test('a bulk form over the running byte total (fields and files) is a 413', async (t) => {
    // Each file is under UPLOAD_MAX_FILE_BYTES; fields and files together pass UPLOAD_MAX_TOTAL_BYTES.
    const parts = [...fields(4, 60_000), fileHead('photos', 'a.jpg'), Buffer.alloc(100_000, 1), CRLF];
    const res = await streamForm(url, '/api/image-queue/bulk-process', attacker, parts, { stall: true });
    t.equal(res.status, 413, res.body);
    t.match(errorOf(res).message, /larger than 300000 bytes in total/);
  });

  t.test('a bulk form with more photos than UPLOAD_MAX_FILES is a 413', async (t) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 6; i++) parts.push(fileHead('photos', `${i}.jpg`), jpeg, CRLF);
    const res = await streamForm(url, '/api/image-queue/bulk-process', attacker, parts, { stall: true });
    t.equal(res.status, 413, res.body);
    t.match(errorOf(res).message, /more than 4 photos/);
  });

  t.test('an upload that trickles is cut off by REQUEST_TIMEOUT_MS', async (t) => {
    const parts = [fieldHead('recordId'), Buffer.from('r1'), CRLF, fileHead('photo', 'a.jpg'), jpeg.subarray(0, 100)];
    const res = await streamForm(url, '/api/image-queue/process-queue', attacker, parts, { stall: true });
    t.equal(res.status, 408, res.body);
    t.ok(res.ms >= 1400 && res.ms < 5000, `cut off after ${res.ms.toFixed(0)} ms`);
  });

  t.test("another vendor's upload is processed normally", async (t) => {
    await testWorker(t, env);
    const form = await multipartBody({ recordId: 'r1', projectId: 'p', operations: JSON.stringify([{ op: 'resize', width: 8 }]) }, [
      { field: 'photo', filename: 'a.jpg', contentType: 'image/jpeg', bytes: jpeg },
    ]);
    const res = await app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: { ...other.auth, ...form.headers }, payload: form.payload });
    t.equal(res.statusCode, 202, res.body);
    const job = await waitForFinal(app.db, (res.json() as { jobId: string }).jobId);
    t.equal(job.status, 'completed');
  });
});
