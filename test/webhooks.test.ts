import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { lastRetryAfterMs, verifySignature, type WebhookEvent } from '../jobs/webhooks.js';

/**
 * Webhooks end to end: a vendor sets its URL through the API, a real job
 * completes, the worker POSTs a signed event to a real local receiver that
 * fails twice before accepting, and the delivery log shows every try.
 */
interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

t.test('a completed job is POSTed, signed, retried until the receiver accepts, and logged', async (t) => {
  const receiver = await testServer(t);
  const received: Received[] = [];
  receiver.route('/hook', (req, res, body) => {
    const status = received.length < 2 ? 500 : 200;
    received.push({ headers: req.headers, body: body.toString('utf8'), status });
    res.writeHead(status).end(status === 200 ? 'ok' : 'try later');
  });
  const receiverHost = new URL(receiver.url).host;
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    WEBHOOK_ALLOWED_PRIVATE_HOSTS: receiverHost,
    // the receiver is a local http server
    ALLOW_HTTP_WEBHOOKS: 'true',
    WEBHOOK_BACKOFF_MS: '200',
    WEBHOOK_OUTBOX_INTERVAL_MS: '100',
  });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(300, 200), 'image/jpeg'));
  const vendor = await testVendor(app, { name: 'Hooked' });
  const other = await testVendor(app, { name: 'Other' });

  // The SSRF guard: private addresses are refused unless allow-listed host:port.
  for (const url of ['http://169.254.169.254/latest', 'http://127.0.0.1:9/hook', 'http://localhost:8080/x', 'ftp://example.com/x']) {
    const refused = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: url } });
    t.equal(refused.statusCode, 400, `${url} is refused`);
  }
  const before = await app.inject({ method: 'GET', url: '/api/webhooks', headers: vendor.auth });
  t.same(before.json(), { webhookUrl: null, hasSecret: false, signatureHeader: 'x-imagequeue-signature' });

  const set = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: `${receiver.url}/hook` } });
  t.equal(set.statusCode, 200, set.body);
  const { secret, webhookUrl } = set.json() as { secret: string; webhookUrl: string };
  t.match(secret, /^whsec_[A-Za-z0-9_-]{40,}$/);
  t.equal(webhookUrl, `${receiver.url}/hook`);
  const after = await app.inject({ method: 'GET', url: '/api/webhooks', headers: vendor.auth });
  t.same(after.json(), { webhookUrl, hasSecret: true, signatureHeader: 'x-imagequeue-signature' }, 'the secret is not shown again');

  const jobId = await queueResize(app, vendor, `${images.url}/photo.jpg`, 'rec-hook');
  // The other vendor has no webhook: its job produces no delivery anywhere.
  const otherJob = await queueResize(app, other, `${images.url}/photo.jpg`, 'rec-other');
  await waitFor(async () => received.some((r) => r.status === 200), 60_000);

  t.equal(received.length, 3, 'two refused tries, then the one accepted');
  const bodies = received.map((r) => r.body);
  t.equal(new Set(bodies).size, 1, 'every try carries the same event');
  const delivery = received[2] as Received;
  const signature = String(delivery.headers['x-imagequeue-signature']);
  t.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/);
  t.ok(verifySignature(secret, delivery.body, signature, Math.floor(Date.now() / 1000)), 'the signature verifies with the secret');
  t.notOk(verifySignature(secret, delivery.body.replace('completed', 'failed'), signature, Math.floor(Date.now() / 1000)), 'a changed body does not');
  t.notOk(verifySignature('whsec_wrong', delivery.body, signature, Math.floor(Date.now() / 1000)), 'another secret does not');
  t.notOk(verifySignature(secret, delivery.body, signature, Math.floor(Date.now() / 1000) + 3600), 'an old signature is refused (replay)');
  t.equal(delivery.headers['x-imagequeue-event'], 'completed');
  t.equal(delivery.headers['content-type'], 'application/json');
  t.notOk(delivery.body.includes(secret), 'the body never carries the secret');

  const event = JSON.parse(delivery.body) as WebhookEvent;
  t.equal(event.type, 'completed');
  t.equal(event.vendorId, vendor.vendorId);
  t.equal(event.job?.jobId, jobId);
  t.equal(event.job?.recordId, 'rec-hook');
  t.equal(event.job?.state, 'completed');
  t.equal((event.job?.result as { width?: number } | null)?.width, 8, 'the result is in the event');
  t.notOk(
    bodies.some((b) => b.includes(otherJob)),
    "another vendor's job is never sent here",
  );

  const log = await waitFor(async () => {
    const res = await app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: vendor.auth });
    const body = res.json() as { deliveries: { attempt: number; outcome: string; statusCode: number | null; nextRetryAt: string | null; eventId: number }[] };
    return body.deliveries.length >= 3 ? body.deliveries : undefined;
  });
  t.same(
    log.map((d) => [d.attempt, d.outcome, d.statusCode]),
    [
      [3, 'delivered', 200],
      [2, 'failed', 500],
      [1, 'failed', 500],
    ],
    'every try is logged, newest first',
  );
  t.ok(log[1]?.nextRetryAt && log[2]?.nextRetryAt, 'failed tries say when the next is due');
  t.equal(log[0]?.nextRetryAt, null);
  t.equal(log[0]?.eventId, event.id, 'the log names the event');
  const otherLog = await app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: other.auth });
  t.same(otherLog.json(), { deliveries: [], nextCursor: null }, 'a vendor sees only its own deliveries');

  const removed = await app.inject({ method: 'DELETE', url: '/api/webhooks', headers: vendor.auth });
  t.equal(removed.statusCode, 204);
  t.same((await app.inject({ method: 'GET', url: '/api/webhooks', headers: vendor.auth })).json().webhookUrl, null);
});

t.test('the default retry schedule spans about a day', async (t) => {
  const lastMs = lastRetryAfterMs(10_500, 13);
  t.ok(lastMs > 22 * 3_600_000 && lastMs < 26 * 3_600_000, `last try ${(lastMs / 3_600_000).toFixed(1)} h after the first`);
});
