import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { hasSeries, sample } from './helpers/metrics.js';
import { freePort, privateRedis } from './helpers/private-services.js';
import { createWorkerMetrics } from '../worker/metrics.js';

/**
 * /metrics on the API and on the worker: the series an operator alerts on
 * exist, and they move when jobs run, fail, retry, die and when vendors hit
 * their rate limits.
 */
t.test('API and worker metrics move as jobs complete, retry, die and hit rate limits', async (t) => {
  const workerPort = await freePort();
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    WORKER_METRICS_PORT: String(workerPort),
    WORKER_METRICS_HOST: '127.0.0.1',
    JOB_ATTEMPTS: '2',
    RATE_LIMIT_PROCESSING_MAX: '4',
  });
  const app = await testApp(t, env);
  const worker = await testWorker(t, env, { heartbeatIntervalMs: 200 });
  t.equal(worker.metricsPort(), workerPort, 'the worker serves /metrics on WORKER_METRICS_PORT');
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  images.route('/flaky.jpg', (_req, res) => void res.writeHead(503).end('busy'));
  images.route('/gone.jpg', (_req, res) => void res.writeHead(404).end('gone'));
  const vendor = await testVendor(app, { plan: 'standard' });

  const scrapeApi = async () => {
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    t.equal(res.statusCode, 200);
    return res.body;
  };
  const scrapeWorker = async () => {
    const res = await fetch(`http://127.0.0.1:${workerPort}/metrics`);
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type'), /^text\/plain/);
    return res.text();
  };

  const apiBefore = await scrapeApi();
  const workerBefore = await scrapeWorker();
  const queue = { queue: 'image-processing' };
  for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds', 'process_resident_memory_bytes']) {
    t.ok(hasSeries(apiBefore, name), `API exports ${name}`);
    t.ok(hasSeries(workerBefore, name), `worker exports ${name}`);
  }
  t.equal(sample(apiBefore, 'iq_queue_jobs', { ...queue, state: 'completed' }), 0);
  t.equal(sample(apiBefore, 'iq_backend_up', { backend: 'redis' }), 1);
  t.equal(sample(apiBefore, 'iq_backend_up', { backend: 'mysql' }), 1);
  t.equal(sample(apiBefore, 'iq_workers_live'), 1, 'the one worker is live');
  t.ok(hasSeries(apiBefore, 'iq_rate_limit_rejections_total'), 'rejection series exist before the first rejection');
  t.equal(sample(workerBefore, 'iq_job_attempts_total', { ...queue, outcome: 'completed' }), 0);
  t.equal(sample(workerBefore, 'iq_worker_concurrency', queue), 5);

  // One job that completes, one that retries then dies, one that fails at once.
  const ok = await queueResize(app, vendor, `${images.url}/photo.jpg`);
  const flaky = await queueResize(app, vendor, `${images.url}/flaky.jpg`);
  const gone = await queueResize(app, vendor, `${images.url}/gone.jpg`);
  t.equal((await waitForFinal(app.db, ok)).status, 'completed');
  t.equal((await waitForFinal(app.db, flaky)).status, 'dead');
  t.equal((await waitForFinal(app.db, gone)).status, 'failed');

  // The worker's counters move right after the ledger write; wait for them.
  const workerAfter = await waitFor(async () => {
    const text = await scrapeWorker();
    return sample(text, 'iq_job_attempts_total', { ...queue, outcome: 'dead' }) === 1 &&
      sample(text, 'iq_job_attempts_total', { ...queue, outcome: 'failed' }) === 1
      ? text
      : undefined;
  });
  t.equal(sample(workerAfter, 'iq_job_attempts_total', { ...queue, outcome: 'completed' }), 1);
  t.equal(sample(workerAfter, 'iq_job_attempts_total', { ...queue, outcome: 'retry' }), 1, 'the flaky job was retried once (JOB_ATTEMPTS=2)');
  t.equal(sample(workerAfter, 'iq_job_retries_total', { ...queue, code: 'SOURCE_FETCH_FAILED' }), 1);
  t.equal(sample(workerAfter, 'iq_job_dead_letters_total', { ...queue, code: 'SOURCE_FETCH_FAILED' }), 1);
  t.equal(sample(workerAfter, 'iq_job_duration_seconds_count', { ...queue, outcome: 'completed' }), 1);
  t.ok(sample(workerAfter, 'iq_job_duration_seconds_sum', { ...queue, outcome: 'completed' }) > 0, 'a completed job took some time');
  t.equal(sample(workerAfter, 'iq_job_duration_seconds_count', queue), 4, 'every attempt is timed');
  t.ok(sample(workerAfter, 'iq_worker_heartbeats_total') >= 1, 'heartbeats are counted');
  t.ok(Math.abs(sample(workerAfter, 'iq_worker_last_heartbeat_timestamp_seconds') - Date.now() / 1000) < 60, 'the last heartbeat is recent');
  t.equal(sample(workerAfter, 'iq_worker_active_jobs', queue), 0, 'nothing runs any more');

  // Rate limits: the processing tier allows 4 per window; the 3 jobs used 3.
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: vendor.auth,
      payload: { recordId: `rl-${i}`, projectId: 'proj', photoUrl: `${images.url}/photo.jpg`, operations: [{ op: 'resize', width: 8 }] },
    });
    statuses.push(res.statusCode);
  }
  t.same(statuses, [202, 429, 429]);

  const apiAfter = await waitFor(async () => {
    const text = await scrapeApi();
    return sample(text, 'iq_queue_jobs', { ...queue, state: 'completed' }) >= 2 ? text : undefined;
  });
  t.equal(sample(apiAfter, 'iq_rate_limit_rejections_total', { tier: 'processing' }), 2);
  t.equal(sample(apiAfter, 'iq_rate_limit_rejections_total', { tier: 'bulk' }), 0);
  const route = { method: 'POST', route: '/api/image-queue/process-queue' };
  t.equal(sample(apiAfter, 'iq_http_request_duration_seconds_count', { ...route, status_code: '202' }), 4);
  t.equal(sample(apiAfter, 'iq_http_request_duration_seconds_count', { ...route, status_code: '429' }), 2);
  t.ok(sample(apiAfter, 'iq_http_request_duration_seconds_sum', { ...route, status_code: '202' }) > 0);
  t.equal(sample(apiAfter, 'iq_dead_letters', queue), 1, 'the dead job is on the dead-letter list');
  t.ok(sample(apiAfter, 'iq_queue_jobs', { ...queue, state: 'failed' }) >= 1, 'Bull keeps the failed jobs it was told to keep');
  t.ok(sample(apiAfter, 'iq_worker_heartbeat_age_seconds', { worker: worker.id }) < 30);
});

t.test('METRICS_TOKEN protects /metrics on the API and the worker', async (t) => {
  const workerPort = await freePort();
  const token = 'metrics-token-for-the-test-0123456789';
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', WORKER_METRICS_PORT: String(workerPort), METRICS_TOKEN: token });
  const app = await testApp(t, env);
  await testWorker(t, env);

  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
  t.equal((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode, 401);
  const api = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
  t.equal(api.statusCode, 200);
  t.ok(hasSeries(api.body, 'iq_queue_jobs'));

  const url = `http://127.0.0.1:${workerPort}/metrics`;
  t.equal((await fetch(url)).status, 401);
  const worker = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  t.equal(worker.status, 200);
  t.ok(hasSeries(await worker.text(), 'iq_job_attempts_total'));
  t.equal((await fetch(`http://127.0.0.1:${workerPort}/healthz`)).status, 200, "the worker's liveness probe needs no token");
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, "the API's liveness probe needs no token");
});

t.test('the API keeps answering /metrics with Redis series left out while Redis is unreachable', async (t) => {
  const redis = await privateRedis(t);
  const env = await isolatedEnv(t, { REDIS_URL: redis.url });
  const app = await testApp(t, env);
  await redis.stop();
  // Back before the app closes: closing is not what this test is about.
  t.teardown(() => redis.start());
  const started = Date.now();
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.ok(Date.now() - started < 5000, 'the scrape is bounded in time');
  t.equal(sample(res.body, 'iq_backend_up', { backend: 'redis' }), 0);
  t.equal(sample(res.body, 'iq_backend_up', { backend: 'mysql' }), 1);
  t.notOk(hasSeries(res.body, 'iq_queue_jobs'), 'no made-up queue depths');
});

t.test("rembg instances from the worker's pool appear per instance, without credentials in labels", async (t) => {
  const metrics = createWorkerMetrics(['background-removal']);
  metrics.refresh({
    queues: { 'background-removal': { concurrency: 3, active: 2, paused: false } },
    rembg: [
      { url: 'http://user:pass@rembg:5000/', circuit: 'closed', healthy: true, inFlight: 2, lastError: null, latencyMs: 850 },
      { url: 'http://rembg-1:5000', circuit: 'open', healthy: false, inFlight: 0, lastError: 'ECONNREFUSED', latencyMs: null },
    ],
  });
  const text = await metrics.registry.metrics();
  t.notMatch(text, /pass/, 'no password in any label');
  t.equal(sample(text, 'iq_rembg_instance_up', { instance: 'rembg:5000' }), 1);
  t.equal(sample(text, 'iq_rembg_instance_up', { instance: 'rembg-1:5000' }), 0);
  t.equal(sample(text, 'iq_rembg_instance_circuit', { instance: 'rembg-1:5000', state: 'open' }), 1);
  t.equal(sample(text, 'iq_rembg_instance_circuit', { instance: 'rembg-1:5000', state: 'closed' }), 0);
  t.equal(sample(text, 'iq_rembg_instance_in_flight', { instance: 'rembg:5000' }), 2);
  t.equal(sample(text, 'iq_rembg_instance_latency_seconds', { instance: 'rembg:5000' }), 0.85);
  t.notOk(
    hasSeries(text.replace(/^iq_rembg_instance_latency_seconds\{[^}]*rembg:5000.*$/m, ''), 'iq_rembg_instance_latency_seconds'),
    'no latency yet for the down one',
  );
  t.equal(sample(text, 'iq_worker_active_jobs', { queue: 'background-removal' }), 2);

  // An instance removed from the pool disappears from the next scrape.
  metrics.refresh({ queues: {}, rembg: [] });
  t.notOk(hasSeries(await metrics.registry.metrics(), 'iq_rembg_instance_up'));
});

t.test("the worker's /metrics shows each instance of its rembg pool as the pool's probes see it", async (t) => {
  const workerPort = await freePort();
  const rembg = await testServer(t);
  rembg.route('/health', (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'));
  const closedPort = await freePort();
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'background-removal',
    WORKER_METRICS_PORT: String(workerPort),
    REMBG_URLS: `${rembg.url},http://127.0.0.1:${closedPort}`,
    REMBG_HEALTH_INTERVAL_MS: '200',
  });
  await testWorker(t, env);
  const up = new URL(rembg.url).host;
  const down = `127.0.0.1:${closedPort}`;
  const text = await waitFor(async () => {
    const body = await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text();
    return sample(body, 'iq_rembg_instance_up', { instance: up }) === 1 && sample(body, 'iq_rembg_instance_circuit', { instance: down, state: 'open' }) === 1
      ? body
      : undefined;
  });
  t.equal(sample(text, 'iq_rembg_instance_up', { instance: down }), 0, 'the closed port is down');
  t.equal(sample(text, 'iq_rembg_instance_circuit', { instance: up, state: 'closed' }), 1);
  t.ok(hasSeries(text, 'iq_rembg_instance_in_flight'));
  t.ok((rembg.hits.get('/health') ?? 0) >= 1, 'the pool probed the instance');
});
