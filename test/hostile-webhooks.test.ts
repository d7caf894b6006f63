import t from 'tap';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postWebhook, RESPONSE_READ_BYTES } from '../worker/webhooks/deliver.js';
import { type AppError } from '../jobs/errors.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';

/**
 * A hostile webhook receiver answers 200 with an endless body. The worker
 * reads at most RESPONSE_READ_BYTES of it, counts the delivery, and drops the
 * connection instead of buffering what the receiver sends.
 */
t.test('an endless receiver answer is read only up to a few KiB', async (t) => {
  let sent = 0;
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const pump = () => {
      while (!res.destroyed && sent < 2 * 1024 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    res.on('close', () => undefined);
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;
  const started = performance.now();
  const result = await postWebhook(`http://${host}/hook`, '{}', {}, { allowPrivate: false, allowedPrivateHosts: [host], allowHttp: true, timeoutMs: 5000 });
  const ms = performance.now() - started;
  t.equal(result.statusCode, 200, 'the delivery counts');
  t.ok(ms < 2000, `returned in ${ms.toFixed(0)} ms`);
  t.ok(RESPONSE_READ_BYTES <= 4096);
  // What the server managed to write before the socket closed is kernel buffers plus our few KiB, not the 2 GiB it offered.
  t.ok(sent < 64 * 1024 * 1024, `the receiver got ${(sent / 1024 / 1024).toFixed(1)} MiB out before the worker hung up`);
});

t.test('webhook URLs must be https unless ALLOW_HTTP_WEBHOOKS=true', async (t) => {
  const env = await isolatedEnv(t, { ALLOW_PRIVATE_WEBHOOK_URLS: 'false' });
  const strict = await testApp(t, env);
  const vendor = await testVendor(strict);
  const refused = await strict.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: 'http://hooks.example.com/in' } });
  t.equal(refused.statusCode, 400);
  t.match(refused.json(), { code: 'SOURCE_URL_FORBIDDEN', message: /webhook URL must use https/, fields: [{ path: 'body/webhookUrl' }] });
  const https = await strict.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: 'https://hooks.example.com/in' } });
  t.equal(https.statusCode, 200, https.body);

  const relaxed = await testApp(t, { ...env, ALLOW_HTTP_WEBHOOKS: 'true' });
  const allowed = await relaxed.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: 'http://hooks.example.com/in' } });
  t.equal(allowed.statusCode, 200, 'plain http when the operator allows it');

  // A URL set while http was allowed is not POSTed in the clear once it is not.
  const error = await postWebhook(
    'http://hooks.example.com/in',
    '{}',
    {},
    { allowPrivate: false, allowedPrivateHosts: [], allowHttp: false, timeoutMs: 1000 },
  ).then(
    () => undefined,
    (e: unknown) => e as AppError,
  );
  t.equal(error?.code, 'SOURCE_URL_FORBIDDEN');
  t.match(error?.message, /must use https/);
});

/**
 * Vendor A's receiver accepts the connection and never answers. With one
 * slot per vendor and four per worker, A's ten events hold one slot (until
 * the long timeout) and are put back otherwise, so vendor B's events are
 * delivered while A's receiver still hangs.
 */
t.test("one vendor's hanging receiver does not hold the other vendors' deliveries", async (t) => {
  const hanging = await testServer(t);
  const open = new Set<ServerResponse>();
  let openMax = 0;
  let answering = false;
  hanging.route('/hook', (_req, res) => {
    if (answering) return void res.writeHead(200).end('ok');
    open.add(res);
    openMax = Math.max(openMax, open.size);
    res.on('close', () => open.delete(res));
    // never answers
  });
  const prompt = await testServer(t);
  const arrived: number[] = [];
  prompt.route('/hook', (_req, res) => {
    arrived.push(Date.now());
    res.writeHead(200).end('ok');
  });
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    ALLOW_PRIVATE_WEBHOOK_URLS: 'true',
    ALLOW_HTTP_WEBHOOKS: 'true',
    WEBHOOK_OUTBOX_INTERVAL_MS: '100',
    WEBHOOK_CONCURRENCY: '4',
    WEBHOOK_VENDOR_CONCURRENCY: '1',
    // far longer than the test waits for B: A's POSTs hold their slot throughout
    WEBHOOK_TIMEOUT_MS: '120000',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(16, 16), 'image/jpeg'));
  const a = await testVendor(app, { name: 'Slow receiver' });
  const b = await testVendor(app, { name: 'Prompt receiver' });
  for (const [vendor, url] of [
    [a, `${hanging.url}/hook`],
    [b, `${prompt.url}/hook`],
  ] as const) {
    const set = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: url } });
    t.equal(set.statusCode, 200, set.body);
  }

  const aJobs = await Promise.all(Array.from({ length: 10 }, (_, i) => queueResize(app, a, `${images.url}/p.jpg`, `a-${i}`)));
  await Promise.all(aJobs.map((id) => waitForFinal(app.db, id)));
  await waitFor(async () => open.size >= 1);
  const bJobs = await Promise.all(Array.from({ length: 3 }, (_, i) => queueResize(app, b, `${images.url}/p.jpg`, `b-${i}`)));
  await Promise.all(bJobs.map((id) => waitForFinal(app.db, id)));
  await waitFor(async () => arrived.length >= 3, 30_000);
  t.equal(arrived.length, 3, "all of B's events arrived");
  t.ok(open.size >= 1, "while A's receiver still holds a delivery open");
  t.equal(openMax, 1, `A never had more than its one slot (${openMax} open at most)`);
  const aLogged = await app.db.selectFrom('webhook_deliveries').select('id').where('vendor_id', '=', a.vendorId).execute();
  t.equal(aLogged.length, 0, "none of A's deliveries has ended: put-backs are not tries and are not logged");
  // A's receiver answers from now on, so the worker can close without waiting out the timeout.
  answering = true;
  for (const res of open) res.writeHead(200).end('ok');
});
