import t from 'tap';
import { Redis } from 'ioredis';
import { isolatedEnv, REDIS_URL } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { waitFor } from './helpers/wait.js';
import { HEARTBEAT_TTL_MS, heartbeatKey, type RembgInstanceState, type WorkerHeartbeat } from '../jobs/heartbeat.js';

/**
 * GET /api/worker/health and estimatedTime from worker heartbeats. To reach
 * each state (stale, degraded rembg, several workers) most subtests write
 * heartbeat keys themselves, exactly as jobs/heartbeat.ts defines them; the
 * last one runs a real worker and reads what worker/heartbeat.ts writes.
 */
type Queues = WorkerHeartbeat['queues'];
const ALL: Queues = {
  'background-removal': { concurrency: 3, active: 0, paused: false },
  'face-crop': { concurrency: 3, active: 0, paused: false },
  'image-processing': { concurrency: 5, active: 0, paused: false },
};
const rembgState = (url: string, healthy: boolean): RembgInstanceState => ({
  url,
  circuit: healthy ? 'closed' : 'open',
  healthy,
  inFlight: 0,
  lastError: healthy ? null : 'connect ECONNREFUSED',
  latencyMs: healthy ? 120 : null,
});

t.test('worker health', async (t) => {
  const env = await isolatedEnv(t, { HEALTH_BACKLOG_MAX: '3' });
  const prefix = env['BULL_PREFIX'] as string;
  const redis = new Redis(REDIS_URL);
  const written = new Set<string>();
  t.teardown(async () => {
    if (written.size > 0) await redis.del(...written);
    await redis.quit();
  });
  const beat = async (p: string, workerId: string, queues: Queues, rembg: RembgInstanceState[] = [], lastBeat = new Date()) => {
    const hb: WorkerHeartbeat = {
      workerId,
      host: 'worker-host',
      pid: 4242,
      startedAt: new Date(Date.now() - 60_000).toISOString(),
      lastBeat: lastBeat.toISOString(),
      queues,
      rembg,
    };
    const key = heartbeatKey(p, workerId);
    written.add(key);
    await redis.set(key, JSON.stringify(hb), 'PX', HEARTBEAT_TTL_MS);
  };
  const forget = async (p: string, workerId: string) => redis.del(heartbeatKey(p, workerId));

  const app = await testApp(t, env);
  const admin = await testVendor(app, { role: 'admin', name: 'Operator' });
  const health = async (auth?: { authorization: string }) => {
    const res = await app.inject({ method: 'GET', url: '/api/worker/health', ...(auth ? { headers: auth } : {}) });
    return { code: res.statusCode, body: res.json() };
  };

  t.test('no live worker: unhealthy, 503, with the seed fields', async (t) => {
    const { code, body } = await health();
    t.equal(code, 503);
    t.equal(body.status, 'unhealthy');
    t.match(body.reasons.join(';'), /no live worker/);
    t.equal(body.bgRemovalQueueSize, 0);
    t.equal(body.faceCropQueueSize, 0);
    t.ok(Date.parse(body.timestamp) > Date.now() - 60_000);
    t.same(body.redis.ok, true);
    t.same(body.mysql.ok, true);
  });

  t.test('a worker serving every queue with healthy rembg: healthy', async (t) => {
    await beat(prefix, 'w1', ALL, [rembgState('http://10.0.0.5:7000', true), rembgState('http://10.0.0.6:7000', true)]);
    const { code, body } = await health();
    t.equal(code, 200);
    t.equal(body.status, 'healthy', body.reasons.join(';'));
    t.equal(body.workers.length, 1);
    t.equal(body.workers[0].name, 'worker-1');
    t.notOk('workerId' in body.workers[0], 'the worker id (host:pid by default) is hidden without an admin token');
    t.notOk(JSON.stringify(body).includes('w1'));
    t.match(body.queues, { backgroundRemoval: { workers: 1, concurrency: 3 }, imageProcessing: { workers: 1, concurrency: 5 } });
    t.equal(body.rembg.length, 2);
    t.notOk(JSON.stringify(body).includes('10.0.0.5'), 'internal addresses hidden without an admin token');
    t.notOk('host' in body.workers[0]);
    const detailed = await health(admin.auth);
    t.equal(detailed.body.rembg[0].url, 'http://10.0.0.5:7000', 'an admin token sees them');
    t.equal(detailed.body.workers[0].host, 'worker-host');
    t.equal(detailed.body.workers[0].workerId, 'w1');
    t.equal(detailed.body.rembg[0].reportedBy, 'w1');
  });

  t.test('degraded: a queue nobody serves, an unhealthy rembg, a paused queue, a backlog', async (t) => {
    await beat(prefix, 'w1', { 'image-processing': ALL['image-processing']! }, [
      rembgState('http://10.0.0.5:7000', true),
      rembgState('http://10.0.0.6:7000', false),
    ]);
    let { code, body } = await health();
    t.equal(code, 200);
    t.equal(body.status, 'degraded');
    t.match(body.reasons.join(';'), /no live worker serves background-removal/);
    t.match(body.reasons.join(';'), /no live worker serves face-crop/);
    t.match(body.reasons.join(';'), /1 of 2 rembg instances unhealthy/);

    await beat(prefix, 'w1', ALL);
    await app.queues['face-crop'].pause();
    ({ body } = await health());
    t.equal(body.status, 'degraded');
    t.match(body.reasons, ['face-crop is paused']);
    t.equal(body.queues.faceCrop.isPaused, true);
    await app.queues['face-crop'].resume();
    t.equal((await health()).body.status, 'healthy');

    const vendor = await testVendor(app);
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/bulk-process',
      headers: vendor.auth,
      payload: {
        projectId: 'p',
        recordIds: ['a', 'b', 'c', 'd', 'e'],
        photoUrls: Array(5).fill('https://images.example.com/x.jpg'),
        operations: [{ op: 'resize', width: 9 }],
      },
    });
    t.equal(res.statusCode, 202);
    ({ code, body } = await health());
    t.equal(code, 200);
    t.equal(body.imageProcessingQueueSize, 5);
    t.match(body.reasons, ['image-processing has 5 waiting jobs (more than 3)']);
  });

  t.test('a heartbeat key left without its TTL, long stale, is a dead worker', async (t) => {
    await beat(prefix, 'w1', ALL, [], new Date(Date.now() - 3 * HEARTBEAT_TTL_MS));
    const { code, body } = await health();
    t.equal(code, 503);
    t.equal(body.workers.length, 0);
    await forget(prefix, 'w1');
  });

  t.test('estimatedTime uses the live workers’ concurrency, else the seed defaults', async (t) => {
    const bulk = async (prefixSuffix: string, beatFirst: boolean) => {
      const p = `${prefix}${prefixSuffix}`;
      if (beatFirst) {
        await beat(p, 'big-1', { ...ALL, 'image-processing': { concurrency: 60, active: 0, paused: false } });
        await beat(p, 'big-2', { ...ALL, 'image-processing': { concurrency: 40, active: 0, paused: false } });
      }
      const other = await testApp(t, { ...env, BULL_PREFIX: p });
      const v = await testVendor(other);
      const res = await other.inject({
        method: 'POST',
        url: '/api/image-queue/bulk-process',
        headers: v.auth,
        payload: {
          projectId: 'e',
          recordIds: Array.from({ length: 100 }, (_, i) => `e${i}`),
          photoUrls: Array(100).fill('https://images.example.com/x.jpg'),
          operations: [{ op: 'resize', width: 9 }],
        },
      });
      t.equal(res.statusCode, 202);
      return res.json().estimatedTime as string;
    };
    // 100 jobs of ~300 ms (no history yet): 100 at once take one round, 5 at once take 20.
    t.equal(await bulk('x', true), '1-2 seconds', 'two workers beating 60 + 40');
    t.equal(await bulk('y', false), '4-9 seconds', 'no heartbeat: the seed default of 5');
  });

  t.test("a real worker's heartbeat (worker/heartbeat.ts) is read the same way", async (t) => {
    const workerEnv = { ...env, BULL_PREFIX: `${prefix}w`, WORKER_QUEUES: 'image-processing', CONCURRENCY_IMAGE_PROCESSING: '4' };
    const api = await testApp(t, workerEnv);
    const worker = await testWorker(t, workerEnv);
    const body = await waitFor(async () => {
      const res = await api.inject({ method: 'GET', url: '/api/worker/health' });
      const json = res.json();
      return json.workers.length === 1 ? json : null;
    }, 10_000);
    t.equal(body.workers[0].name, 'worker-1');
    t.notOk(JSON.stringify(body).includes(worker.id), 'nor its id, which names the host');
    t.match(body.queues.imageProcessing, { workers: 1, concurrency: 4 });
    t.equal(body.status, 'degraded', 'the other two queues have no worker');
    t.match(body.reasons, ['no live worker serves background-removal', 'no live worker serves face-crop']);
  });
});
