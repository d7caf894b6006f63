import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isolatedEnv } from './helpers/env.js';
import { listeningApp } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { rembgListening } from './helpers/rembg.js';
import { serveBytes, testServer } from './helpers/http.js';
import { readFixture } from './helpers/fixtures.js';
import { createVendor } from '../db/repos/vendors.js';
import { createQueueAPI, JobFailedError } from '../sdk/index.js';

/**
 * Seed 003's frontend `queueAPI` (createQueueAPI) against the real API, a
 * real worker and rembg: the seed's positional calls, polling to the end,
 * and the client's resilience through a real proxy that answers 503 or drops
 * the connection: retried, with one Idempotency-Key, so the job is queued once.
 */
t.test("seed 003's queueAPI: queue, poll, stats, health, retries", async (t) => {
  const rembg = await rembgListening(t);
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'background-removal', REMBG_URLS: rembg.url });
  const { app, url } = await listeningApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/car.jpg', serveBytes(await readFixture('rembg/car-1.jpg'), 'image/jpeg'));
  const { apiKey } = await createVendor(app.db, { name: 'Seed', plan: 'unlimited' });
  const mint = async () =>
    (
      (await (
        await fetch(`${url}/api/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiKey }) })
      ).json()) as { token: string }
    ).token;

  // The first token is stale: the client asks getToken again after the 401.
  let tokens = 0;
  const queueAPI = createQueueAPI({ baseUrl: url, getToken: async () => (++tokens === 1 ? 'stale' : mint()) });
  const response = await queueAPI.queueBackgroundRemoval('record-123', 'project-456', `${images.url}/car.jpg`);
  t.equal(tokens, 2, 'a 401 fetched a new token once');
  t.match(response, { success: true, jobId: String, recordId: 'record-123' });
  const result = await queueAPI.pollJobUntilComplete(response.jobId, 60_000);
  t.match(result, { id: response.jobId, state: 'completed', result: { photoUrl: String, width: 480, height: 360 } });

  const bulk = await queueAPI.queueBulkBackgroundRemoval(['rec-1', 'rec-2'], 'project-456', [`${images.url}/car.jpg`, `${images.url}/missing.jpg`]);
  t.equal(bulk.count, 2);
  t.match(await queueAPI.pollJobUntilComplete(bulk.jobIds[0] as string, 60_000), { state: 'completed' });
  const failed = await queueAPI.pollJobUntilComplete(bulk.jobIds[1] as string, 60_000).catch((e: unknown) => e);
  t.ok(failed instanceof JobFailedError, 'a failed job rejects (React Query onError)');
  t.match((failed as JobFailedError).job, { state: 'failed', error: { code: 'SOURCE_NOT_FOUND' } });

  t.match(await queueAPI.getJobStatus(response.jobId), { id: response.jobId, state: 'completed' });
  t.match(await queueAPI.getQueueStats(), { backgroundRemoval: { completed: Number } });
  t.match(await queueAPI.getWorkerHealth(), { status: String, timestamp: String });
  t.match(await queueAPI.queueFaceCrop('face-1', 'project-456', `${images.url}/car.jpg`, 'idcard'), { success: true, jobId: String });

  // A proxy that answers 503 (Retry-After: 0) to the first POST and drops the second one's connection.
  const seen: { method: string; key: string | undefined }[] = [];
  let posts = 0;
  const proxy = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST') {
        seen.push({ method: req.method, key: req.headers['idempotency-key'] as string | undefined });
        posts++;
        if (posts === 1) return res.writeHead(503, { 'retry-after': '0', 'content-type': 'application/json' }).end('{"message":"busy"}');
        if (posts === 2) return req.socket.destroy();
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
      fetch(`${url}${req.url}`, { method: req.method as string, headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) })
        .then(async (upstream) => {
          res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await upstream.arrayBuffer()));
        })
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => (proxy.closeAllConnections(), proxy.close(() => resolve()))));
  const viaProxy = createQueueAPI({ baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, getToken: mint });
  const retried = await viaProxy.queueBackgroundRemoval('record-retry', 'project-456', `${images.url}/car.jpg`);
  t.equal(seen.length, 3, '503, dropped connection, then through');
  t.ok(seen[0]?.key && seen.every((s) => s.key === seen[0]?.key), 'every try carried the same Idempotency-Key');
  const rows = await app.db.selectFrom('jobs').select('id').where('record_id', '=', 'record-retry').execute();
  t.same(
    rows.map((r) => r.id),
    [retried.jobId],
    'queued once',
  );
});
