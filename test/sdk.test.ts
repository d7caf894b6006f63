import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { listeningApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { waitFor } from './helpers/wait.js';
import { createVendor } from '../db/repos/vendors.js';
import { ImageQueueClient, ImageQueueError, JobFailedError, PollTimeoutError, RateLimitedError, verifyWebhook, type StreamEvent } from '../sdk/index.js';

/**
 * The SDK against the real app on a real socket, with a real worker: enqueue
 * → poll → result, uploads, typed failures, 429 waited out, token renewal,
 * the event iterator resuming across token expiry, and webhook signatures
 * checked by a real receiver with the SDK's verifyWebhook.
 */
t.test('enqueue, poll, upload, events and typed errors', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', JWT_EXPIRES: '4s' });
  const { app, url } = await listeningApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  const jpeg = await makeJpeg(640, 480);
  images.route('/photo.jpg', serveBytes(jpeg, 'image/jpeg'));
  const { apiKey } = await createVendor(app.db, { name: 'SDK', plan: 'unlimited' });
  // The bearer of each call the client makes, to see its token change.
  const bearers: string[] = [];
  const recordingFetch: typeof fetch = (input, init) => {
    const auth = new Headers(init?.headers).get('authorization');
    if (auth) bearers.push(auth);
    return fetch(input, init);
  };
  const iq = new ImageQueueClient({ baseUrl: url, apiKey, fetch: recordingFetch });

  const events: StreamEvent[] = [];
  const stop = new AbortController();
  const collecting = (async () => {
    try {
      for await (const event of iq.events({ signal: stop.signal })) events.push(event);
    } catch (error) {
      if (!stop.signal.aborted) throw error;
    }
  })();
  await waitFor(async () => events.some((e) => e.type === 'ready'));

  const queued = await iq.queueProcessing({ recordId: 'r1', projectId: 'p1', photoUrl: `${images.url}/photo.jpg`, operations: [{ op: 'resize', width: 160 }] });
  t.match(queued.jobId, /^[0-9A-Z]{26}$/);
  const done = await iq.pollJobUntilComplete(queued.jobId, 60_000, { intervalMs: 100 });
  t.equal(done.state, 'completed');
  t.equal((done.result as { width: number }).width, 160);

  // A bulk request, then its batch.
  const bulk = await iq.queueBulkProcessing({
    projectId: 'p1',
    recordIds: ['b1', 'b2'],
    photoUrls: [`${images.url}/photo.jpg`, `${images.url}/photo.jpg`],
    operations: [{ op: 'resize', width: 32 }],
  });
  t.equal(bulk.jobIds.length, 2);
  await Promise.all(bulk.jobIds.map((id) => iq.pollJobUntilComplete(id, 60_000, { intervalMs: 100 })));
  const batch = await iq.getBatch(bulk.batchId);
  t.equal(batch.id, bulk.batchId);
  t.equal(batch.state, 'completed');
  t.equal(batch.total, 2);

  // Upload: the photo itself, no URL.
  const uploaded = await iq.upload(
    'process',
    { data: jpeg, filename: 'me.jpg', recordId: 'u1' },
    { projectId: 'p1', operations: [{ op: 'resize', width: 64 }] },
  );
  const up = await iq.pollJobUntilComplete(uploaded.jobId, 60_000, { intervalMs: 100 });
  t.equal((up.result as { width: number }).width, 64);
  const uploadedMany = await iq.upload(
    'process',
    [
      { data: jpeg, recordId: 'u2' },
      { data: new Blob([new Uint8Array(jpeg)]), recordId: 'u3' },
    ],
    { projectId: 'p1', operations: [{ op: 'resize', width: 48 }] },
  );
  t.equal(uploadedMany.jobIds.length, 2);

  // Failures are typed.
  const missing = await iq.queueProcessing({ recordId: 'r2', projectId: 'p1', photoUrl: `${images.url}/nope.jpg`, operations: [{ op: 'resize', width: 10 }] });
  const failure = await iq.pollJobUntilComplete(missing.jobId, 60_000, { intervalMs: 100 }).catch((e: unknown) => e);
  t.ok(failure instanceof JobFailedError, 'a failed job rejects with JobFailedError');
  t.equal((failure as JobFailedError).code, 'SOURCE_NOT_FOUND');
  t.equal((failure as JobFailedError).job.state, 'failed');
  const notFound = await iq.getJob('01ARZ3NDEKTSV4RRFFQ69G5FAV').catch((e: unknown) => e);
  t.ok(notFound instanceof ImageQueueError);
  t.equal((notFound as ImageQueueError).status, 404);
  t.equal((notFound as ImageQueueError).code, 'NOT_FOUND');
  const invalid = await iq.queueProcessing({ recordId: 'r3', projectId: 'p1', photoUrl: 'not a url', operations: [] }).catch((e: unknown) => e);
  t.equal((invalid as ImageQueueError).status, 400);

  // A job nobody serves: the poll times out, or stops when aborted.
  const stuck = await iq.queueFaceCrop({ recordId: 'f1', projectId: 'p1', photoUrl: `${images.url}/photo.jpg`, mode: 'passport' });
  const timedOut = await iq.pollJobUntilComplete(stuck.jobId, 400, { intervalMs: 100 }).catch((e: unknown) => e);
  t.ok(timedOut instanceof PollTimeoutError, 'PollTimeoutError after timeoutMs');
  t.equal((timedOut as PollTimeoutError).job?.state, 'queued');
  const abort = new AbortController();
  setTimeout(() => abort.abort(new Error('user left')), 200);
  const aborted = await iq.pollJobUntilComplete(stuck.jobId, 60_000, { signal: abort.signal, intervalMs: 100 }).catch((e: unknown) => e);
  t.equal((aborted as Error).message, 'user left', 'the AbortSignal stops polling with its reason');

  // Tokens live 4 s here: once the API refuses the first token, the client still works, with another one.
  const firstBearer = bearers[0]!;
  await waitFor(async () => (await fetch(`${url}/api/image-queue/queue-stats`, { headers: { authorization: firstBearer } })).status === 401, 15_000);
  const stats = await iq.getQueueStats();
  t.ok(stats.imageProcessing, 'queue stats after the first token expired');
  t.not(bearers.at(-1), firstBearer, 'the client renewed its token');
  const health = await iq.getWorkerHealth();
  t.ok(['healthy', 'degraded', 'unhealthy'].includes(health.status));

  // The event stream ended with its token and resumed with a new one, missing nothing.
  const last = await iq.queueProcessing({ recordId: 'r9', projectId: 'p1', photoUrl: `${images.url}/photo.jpg`, operations: [{ op: 'resize', width: 20 }] });
  await waitFor(async () => events.some((e) => e.type === 'completed' && e.data.jobId === last.jobId), 30_000);
  stop.abort();
  await collecting;
  t.ok(events.filter((e) => e.type === 'ready').length >= 2, 'the iterator reconnected after the token expired');
  const ids = events.flatMap((e) => (e.type !== 'ready' && e.type !== 'progress' ? [e.data.id] : []));
  t.same(
    ids,
    ids.map((_, i) => (ids[0] as number) + i),
    'event ids are consecutive across the reconnect',
  );
  for (const jobId of [queued.jobId, ...bulk.jobIds, uploaded.jobId, last.jobId]) {
    t.ok(
      events.some((e) => e.type === 'completed' && e.data.jobId === jobId),
      `completed event for ${jobId}`,
    );
  }
  t.ok(events.some((e) => e.type === 'batch.finished' && e.data.batchId === bulk.batchId));
});

t.test('429: the SDK waits out Retry-After, or throws RateLimitedError', async (t) => {
  const env = await isolatedEnv(t, { RATE_LIMIT_PROCESSING_MAX: '1', RATE_LIMIT_PROCESSING_WINDOW_MS: '2000' });
  const { app, url } = await listeningApp(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(64, 64), 'image/jpeg'));
  const vendor = await testVendor(app, { plan: 'standard' });
  const body = (recordId: string) => ({ recordId, projectId: 'p', photoUrl: `${images.url}/photo.jpg`, operations: [{ op: 'resize' as const, width: 8 }] });

  const impatient = new ImageQueueClient({ baseUrl: url, token: vendor.token, maxRateLimitRetries: 0 });
  await impatient.queueProcessing(body('a'));
  const refused = await impatient.queueProcessing(body('b')).catch((e: unknown) => e);
  t.ok(refused instanceof RateLimitedError, 'with no retries allowed, a typed 429');
  t.ok((refused as RateLimitedError).retryAfterMs > 0 && (refused as RateLimitedError).retryAfterMs <= 2000, 'carrying Retry-After');
  t.equal((refused as RateLimitedError).code, 'RATE_LIMITED');

  const patient = new ImageQueueClient({ baseUrl: url, token: vendor.token });
  const started = Date.now();
  const accepted = await patient.queueProcessing(body('c'));
  t.match(accepted.jobId, /^[0-9A-Z]{26}$/, 'accepted once the window passed');
  t.ok(Date.now() - started >= 500, `waited ${Date.now() - started} ms as Retry-After said`);
});

t.test('webhooks: a real receiver checks signatures with verifyWebhook and fails twice before accepting', async (t) => {
  const receiver = await testServer(t);
  let secret = '';
  const tries: { valid: boolean; answered: number; body: string }[] = [];
  receiver.route('/hooks/iq', async (req, res, raw) => {
    const valid = await verifyWebhook(secret, new Uint8Array(raw), req.headers['x-imagequeue-signature'] as string | undefined);
    const answered = !valid ? 401 : tries.filter((x) => x.valid).length < 2 ? 503 : 204;
    tries.push({ valid, answered, body: raw.toString('utf8') });
    res.writeHead(answered).end();
  });
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    WEBHOOK_ALLOWED_PRIVATE_HOSTS: new URL(receiver.url).host,
    ALLOW_HTTP_WEBHOOKS: 'true',
    WEBHOOK_BACKOFF_MS: '150',
    WEBHOOK_OUTBOX_INTERVAL_MS: '100',
  });
  const { app, url } = await listeningApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(100, 100), 'image/jpeg'));
  const { apiKey } = await createVendor(app.db, { name: 'Hooks', plan: 'unlimited' });
  const iq = new ImageQueueClient({ baseUrl: url, apiKey });

  const set = await iq.setWebhook(`${receiver.url}/hooks/iq`);
  secret = set.secret;
  t.same(await iq.getWebhook(), { webhookUrl: `${receiver.url}/hooks/iq`, hasSecret: true, signatureHeader: 'x-imagequeue-signature' });
  const { jobId } = await iq.queueProcessing({
    recordId: 'w1',
    projectId: 'p',
    photoUrl: `${images.url}/photo.jpg`,
    operations: [{ op: 'resize', width: 10 }],
  });
  await waitFor(async () => tries.some((x) => x.answered === 204), 60_000);
  t.same(
    tries.map((x) => [x.valid, x.answered]),
    [
      [true, 503],
      [true, 503],
      [true, 204],
    ],
    'every try is validly signed; two refused, the third accepted',
  );
  const event = JSON.parse(tries[2]?.body ?? '{}');
  t.equal(event.type, 'completed');
  t.equal(event.job.jobId, jobId);
  t.notOk(await verifyWebhook('whsec_other', tries[2]?.body ?? '', 't=1,v1=00'), 'a wrong signature is refused');

  const log = await waitFor(async () => {
    const page = await iq.listWebhookDeliveries();
    return page.deliveries.length >= 3 ? page.deliveries : undefined;
  });
  t.same(
    log.map((d) => [d.attempt, d.outcome, d.statusCode]),
    [
      [3, 'delivered', 204],
      [2, 'failed', 503],
      [1, 'failed', 503],
    ],
  );
  await iq.deleteWebhook();
  t.equal((await iq.getWebhook()).webhookUrl, null);
});
