import t, { type Test } from 'tap';
import { createSigner } from 'fast-jwt';
import sharp from 'sharp';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { createVendor } from '../db/repos/vendors.js';
import { createLogger, scrubLine } from '../platform/logger.js';
import { loadWorkerConfig } from '../worker/config.js';
import { createWorker } from '../worker/worker.js';
import { isolatedEnv, TEST_JWT_SECRET } from './helpers/env.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import { waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';

/**
 * Every log line the API and the worker write during a realistic run, at
 * trace level, through the same logger setup production uses: vendor keys,
 * tokens (good, forged, expired), the JWT and metrics secrets, the
 * Cloudinary secret, passwords in URLs and image bytes never appear, and job
 * lines carry jobId, vendorId, queue and attempt. The run goes through every
 * path that logs: token exchange and refusals, enqueue by URL and upload,
 * completion, a storage retry, retries to a dead letter, a non-retryable
 * failure, a webhook delivery refused then retried, rate limiting, admin
 * dead-letter routes, /metrics, and a worker waiting for a database it
 * cannot reach.
 */
const CLOUD = 'log-cloud';
const CLOUD_KEY = '987654321098765';
const CLOUD_SECRET = 'cloudinary-api-secret-never-logged';
const METRICS_TOKEN = 'metrics-token-never-logged-0123456789';
const DB_PASSWORD = 'db-password-never-logged';
const SOURCE_PASSWORD = 'source-password-never-logged';

interface Captured {
  lines: string[];
  write(line: string): void;
}

function capture(): Captured {
  const lines: string[] = [];
  return { lines, write: (chunk: string) => void lines.push(...chunk.split('\n').filter(Boolean)) };
}

/** A Cloudinary stand-in: ping, upload (the first one fails with a 500) and delivery of what was uploaded. */
async function fakeCloudinary(t: Test) {
  const server = await testServer(t);
  const state = { failNext: 1, uploads: 0 };
  server.route(`/v1_1/${CLOUD}/ping`, (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'));
  server.route(`/v1_1/${CLOUD}/image/upload`, async (req, res, body) => {
    if (state.failNext > 0) {
      state.failNext--;
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'try later' } }));
      return;
    }
    const form = await new Response(new Uint8Array(body), { headers: { 'content-type': String(req.headers['content-type']) } }).formData();
    const file = form.get('file') as Blob;
    const bytes = Buffer.from(await file.arrayBuffer());
    const meta = await sharp(bytes).metadata();
    const path = `/res/${CLOUD}/image/upload/v1/${String(form.get('public_id'))}.${meta.format === 'jpeg' ? 'jpg' : meta.format}`;
    server.route(path, serveBytes(bytes, `image/${meta.format}`));
    state.uploads++;
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ public_id: form.get('public_id'), version: 1, format: meta.format, bytes: bytes.length, secure_url: `${server.url}${path}` }));
  });
  return { state, url: `cloudinary://${CLOUD_KEY}:${CLOUD_SECRET}@${CLOUD}?upload_prefix=${server.url}` };
}

t.test('a full run logs no secrets and no image bytes, and job lines carry their ids', async (t) => {
  const logs = capture();
  const cloudinary = await fakeCloudinary(t);
  const env = await isolatedEnv(t, {
    LOG_LEVEL: 'trace',
    WORKER_QUEUES: 'image-processing',
    STORAGE_DRIVER: 'cloudinary',
    CLOUDINARY_URL: cloudinary.url,
    METRICS_TOKEN,
    JOB_ATTEMPTS: '2',
    RATE_LIMIT_PROCESSING_MAX: '6',
    ALLOW_PRIVATE_WEBHOOK_URLS: 'true',
    ALLOW_HTTP_WEBHOOKS: 'true',
    WEBHOOK_BACKOFF_MS: '200',
  });
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logStream: logs });
  t.teardown(() => app.close());
  await app.ready();
  const worker = createWorker(loadWorkerConfig({ env, processEnv: false }), { logger: createLogger('trace', 'worker', logs) });
  await worker.start();
  t.teardown(() => worker.close());

  const images = await testServer(t);
  const photo = await makeJpeg(96, 64);
  images.route('/photo.jpg', serveBytes(photo, 'image/jpeg'));
  images.route('/flaky.jpg', (_req, res) => void res.writeHead(503).end('busy'));
  images.route('/gone.jpg', (_req, res) => void res.writeHead(404).end('gone'));

  // Vendors and tokens, and the ways a token exchange or a token can be refused.
  const vendor = await createVendor(app.db, { name: 'Log Studio', plan: 'standard', role: 'vendor' });
  const admin = await createVendor(app.db, { name: 'Log Admin', plan: 'unlimited', role: 'admin' });
  const tokenOf = async (apiKey: string) => {
    const res = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey } });
    return { status: res.statusCode, token: res.statusCode === 200 ? (res.json() as { token: string }).token : '' };
  };
  const { token } = await tokenOf(vendor.apiKey);
  const { token: adminToken } = await tokenOf(admin.apiKey);
  const wrongKey = `iqk_${'x'.repeat(43)}`;
  t.equal((await tokenOf(wrongKey)).status, 401, 'an unknown key is refused');
  const forged = createSigner({ key: 'another-secret-that-is-long-enough-000000', algorithm: 'HS256' })({
    sub: vendor.vendorId,
    plan: 'unlimited',
    role: 'admin',
  });
  const expired = createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256', expiresIn: 1 })({
    sub: vendor.vendorId,
    plan: 'standard',
    role: 'vendor',
    iat: Math.floor(Date.now() / 1000) - 3600,
  });
  for (const bad of [forged, expired, 'not-a-jwt-at-all-0123456789']) {
    const res = await app.inject({ method: 'GET', url: '/api/image-queue/jobs', headers: { authorization: `Bearer ${bad}` } });
    t.equal(res.statusCode, 401);
  }
  const auth = { authorization: `Bearer ${token}` };
  const adminAuth = { authorization: `Bearer ${adminToken}` };

  // A webhook receiver that refuses the first delivery, so a retry is logged too.
  const receiver = await testServer(t);
  let deliveries = 0;
  receiver.route('/hook', (_req, res) => void res.writeHead(deliveries++ === 0 ? 500 : 200).end());
  const hook = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: auth, payload: { webhookUrl: `${receiver.url}/hook` } });
  t.equal(hook.statusCode, 200, hook.body);
  const webhookSecret = hook.json().secret as string;

  // Jobs: by URL (completes after one failed upload), from an upload, retried to death, failing at once.
  const enqueue = async (recordId: string, photoUrl: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: auth,
      payload: { recordId, projectId: 'logs', photoUrl, operations: [{ op: 'resize', width: 16 }] },
    });
    return res;
  };
  const ok = (await enqueue('ok', `${images.url}/photo.jpg`)).json().jobId as string;
  const form = await multipartBody({ recordId: 'upload', projectId: 'logs', operations: JSON.stringify([{ op: 'resize', width: 12 }]) }, [
    { field: 'photo', filename: 'me.jpg', contentType: 'image/jpeg', bytes: photo },
  ]);
  const uploaded = await app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: { ...auth, ...form.headers }, payload: form.payload });
  t.equal(uploaded.statusCode, 202, uploaded.body);
  const flaky = (await enqueue('flaky', `${images.url}/flaky.jpg`)).json().jobId as string;
  const gone = (await enqueue('gone', `${images.url}/gone.jpg`)).json().jobId as string;
  const withPassword = await enqueue('pw', `http://user:${SOURCE_PASSWORD}@127.0.0.1:1/photo.jpg`);
  t.ok(withPassword.statusCode === 202 || withPassword.statusCode === 400, `a source URL with a password is answered (${withPassword.statusCode})`);
  t.equal((await waitForFinal(app.db, ok)).status, 'completed');
  t.equal((await waitForFinal(app.db, uploaded.json().jobId as string)).status, 'completed');
  t.equal((await waitForFinal(app.db, flaky)).status, 'dead');
  t.equal((await waitForFinal(app.db, gone)).status, 'failed');
  t.ok(cloudinary.state.uploads >= 2, 'results (and the upload) went to the Cloudinary stand-in');
  await waitFor(async () => deliveries >= 2 || undefined, 30_000);

  // Rate limit reached: 429s are logged as refusals.
  let limited = 0;
  for (let i = 0; i < 6 && limited === 0; i++) if ((await enqueue(`rl-${i}`, `${images.url}/photo.jpg`)).statusCode === 429) limited++;
  t.equal(limited, 1, 'the processing tier ran out');

  // Admin: the dead letter is listed and retried (and dies again).
  const dead = await app.inject({ method: 'GET', url: '/api/admin/dead-letters', headers: adminAuth });
  t.equal(dead.statusCode, 200);
  const retried = await app.inject({ method: 'POST', url: `/api/admin/dead-letters/${flaky}/retry`, headers: adminAuth });
  t.ok(retried.statusCode < 300, retried.body);
  await waitFor(async () => (await app.db.selectFrom('job_attempts').select('attempt').where('job_id', '=', flaky).execute()).length >= 4 || undefined, 60_000);
  t.equal((await waitForFinal(app.db, flaky)).status, 'dead');

  // Metrics with and without the token.
  t.equal((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer wrong-token' } })).statusCode, 401);
  t.equal((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).statusCode, 200);

  // A worker that cannot reach its database says so, without the password.
  const blind = createWorker(loadWorkerConfig({ env: { ...env, MYSQL_URL: `mysql://root:${DB_PASSWORD}@127.0.0.1:1/iq` }, processEnv: false }), {
    logger: createLogger('trace', 'worker', logs),
  });
  const starting = blind.start().catch((error: unknown) => error);
  await waitFor(async () => logs.lines.some((l) => l.includes('waiting for its dependencies')) || undefined);
  await blind.close();
  await starting;

  await worker.close();
  await app.close();

  // The scan.
  const secrets: Record<string, string> = {
    'vendor API key': vendor.apiKey,
    'admin API key': admin.apiKey,
    'unknown API key': wrongKey,
    'vendor token': token,
    'admin token': adminToken,
    'forged token': forged,
    'expired token': expired,
    JWT_SECRET: TEST_JWT_SECRET,
    METRICS_TOKEN,
    'Cloudinary API secret': CLOUD_SECRET,
    'MySQL password': DB_PASSWORD,
    'source URL password': SOURCE_PASSWORD,
    'webhook secret': webhookSecret,
  };
  t.ok(logs.lines.length > 40, `a realistic amount of logging was scanned (${logs.lines.length} lines)`);
  for (const [what, secret] of Object.entries(secrets)) {
    t.ok(secret.length >= 16, `${what} is long enough to search for`);
    const leaks = logs.lines.filter((l) => l.includes(secret));
    t.same(leaks, [], `no log line contains the ${what}`);
  }
  const photoBase64 = photo.toString('base64');
  for (const fragment of [photoBase64.slice(40, 104), photoBase64.slice(-64, -4)]) {
    t.notOk(
      logs.lines.some((l) => l.includes(fragment)),
      'no line contains the photo as base64',
    );
  }
  t.notOk(
    logs.lines.some((l) => l.includes('"type":"Buffer"')),
    'no Buffer was serialized into a line',
  );
  t.notOk(
    logs.lines.some((l) => l.length > 16_384),
    'no line is huge',
  );

  const parsed = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(
    parsed.every((l) => typeof l['level'] === 'number' && typeof l['time'] === 'number' && typeof l['service'] === 'string'),
    'every line is structured JSON',
  );
  const jobLines = parsed.filter((l) => l['service'] === 'worker' && /^(job started|job completed|attempt failed)/.test(String(l['msg'])));
  t.ok(jobLines.length >= 8, `job lifecycle lines were written (${jobLines.length})`);
  for (const line of jobLines) {
    const missing = ['jobId', 'vendorId', 'queue', 'attempt', 'workerId'].filter((k) => line[k] === undefined);
    t.same(missing, [], `"${String(line['msg'])}" carries every id`);
  }
  t.ok(
    jobLines.some((l) => l['jobId'] === flaky && l['attempt'] === 2 && l['vendorId'] === vendor.vendorId && l['queue'] === 'image-processing'),
    'a retried attempt is logged with its number',
  );
  const requestLines = parsed.filter((l) => l['service'] === 'api' && l['msg'] === 'request completed' && l['vendorId'] === vendor.vendorId);
  t.ok(requestLines.length > 0, "an authenticated request's log lines carry the vendor id");
  const refused = parsed.filter((l) => l['msg'] === 'request refused' && l['code'] === 'RATE_LIMITED' && l['vendorId'] === vendor.vendorId);
  t.equal(refused.length, 1, 'the 429 is logged once, for its vendor');
});

t.test('scrubLine removes what slips into a message', async (t) => {
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
  t.equal(scrubLine(`{"msg":"got ${jwt}"}`), '{"msg":"got [redacted-jwt]"}');
  t.equal(scrubLine('{"msg":"key iqk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG refused"}'), '{"msg":"key iqk_[redacted] refused"}');
  t.equal(scrubLine('{"msg":"signed with whsec_abcdefghijklmnopqrstuvwxyz0123"}'), '{"msg":"signed with whsec_[redacted]"}');
  t.equal(scrubLine('{"msg":"Authorization: Bearer abc.def-ghi_jkl"}'), '{"msg":"Authorization: Bearer [redacted]"}');
  t.equal(scrubLine('{"msg":"mysql://root:hunter2-long@db:3306/iq down"}'), '{"msg":"mysql://root:[redacted]@db:3306/iq down"}');
  t.equal(scrubLine('{"url":"cloudinary://1234:s3cr3t@cloud"}'), '{"url":"cloudinary://1234:[redacted]@cloud"}');
  t.equal(scrubLine(`{"src":"data:image/png;base64,${'A'.repeat(100)}"}`), '{"src":"[redacted-data-url]"}');
  t.equal(scrubLine(`{"blob":"${'QUJD'.repeat(200)}"}`), '{"blob":"[redacted-base64]"}');
  const ordinary = '{"level":30,"msg":"job completed","jobId":"01K9ZXQ4V6ZB3Y0M5E2JQ9W8TA","url":"http://127.0.0.1:3000/files/a/b.jpg","ms":12}';
  t.equal(scrubLine(ordinary), ordinary, 'ordinary lines pass unchanged');
});
