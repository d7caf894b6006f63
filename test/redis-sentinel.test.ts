import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { parseSentinelUrl } from '../platform/redis.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { freePort, privateRedis } from './helpers/private-services.js';
import { waitFor } from './helpers/wait.js';

/**
 * REDIS_URL may name Redis Sentinels instead of one Redis: every connection
 * of the API and the worker (commands, Bull's clients, subscribers) asks a
 * Sentinel for the primary. A real Sentinel watches a private Redis here, and
 * a job goes the whole way through it.
 */
async function sentinel(t: Test, primaryPort: number, master: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'iqt-sentinel-'));
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  await writeFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${master} 127.0.0.1 ${primaryPort} 1`,
      `sentinel down-after-milliseconds ${master} 5000`,
      '',
    ].join('\n'),
  );
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  t.teardown(async () => {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 100 });
  probe.on('error', () => {});
  try {
    await waitFor(
      async () => {
        if (probe.status !== 'ready') await probe.connect().catch(() => undefined);
        const addr = (await probe.call('SENTINEL', 'get-master-addr-by-name', master).catch(() => null)) as string[] | null;
        return addr?.[1] === String(primaryPort);
      },
      15_000,
      100,
    );
  } finally {
    probe.disconnect();
  }
  return port;
}

t.test('the API and a worker run a job through Redis found by Sentinel', async (t) => {
  const primary = await privateRedis(t);
  const sentinelPort = await sentinel(t, primary.port, 'iqprimary');
  const env = await isolatedEnv(t, { REDIS_URL: `redis+sentinel://127.0.0.1:${sentinelPort}/iqprimary`, WORKER_QUEUES: 'image-processing' });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  const vendor = await testVendor(app);

  const jobId = await queueResize(app, vendor, `${images.url}/photo.jpg`);
  t.equal((await waitForFinal(app.db, jobId)).status, 'completed');

  // The work really went through the private primary the Sentinel names.
  const direct = new Redis(primary.url);
  t.teardown(() => direct.quit());
  t.ok((await direct.keys(`${env['BULL_PREFIX']}:image-processing:*`)).length > 0, 'the queue lives on the Sentinel-named primary');
  t.ok((await direct.keys(`${env['BULL_PREFIX']}:workers:*`)).length > 0, 'so does the heartbeat');
  const health = await app.inject({ method: 'GET', url: '/api/worker/health' });
  t.equal(health.json().redis.ok, true);
});

t.test('Sentinel URLs are parsed, plain URLs are left to ioredis', async (t) => {
  t.equal(parseSentinelUrl('redis://127.0.0.1:6379'), null);
  t.same(parseSentinelUrl('redis+sentinel://s1:26379,s2,s3:26380/mymaster'), {
    sentinels: [
      { host: 's1', port: 26379 },
      { host: 's2', port: 26379 },
      { host: 's3', port: 26380 },
    ],
    name: 'mymaster',
  });
  t.same(parseSentinelUrl('redis+sentinel://:p%40ss@s1:26379/mymaster/2?sentinelPassword=sp'), {
    sentinels: [{ host: 's1', port: 26379 }],
    name: 'mymaster',
    password: 'p@ss',
    db: 2,
    sentinelPassword: 'sp',
  });
  t.throws(() => parseSentinelUrl('redis+sentinel://s1:26379'), /master-name/);
});
