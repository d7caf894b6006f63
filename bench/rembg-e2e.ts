import { fixturePath } from '../test/helpers/fixtures.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { connectDb, serverPool } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { createVendor } from '../db/repos/vendors.js';
import { childEnv } from '../platform/config.js';
import { percentile, table, writeSection } from './results.js';
import { jpegHost, post, settle, untilHealthy } from './support.js';
import { freePort } from '../test/helpers/private-services.js';

/**
 * Background removal end to end, as deployed on one machine: vendor requests
 * to a listening API (POST /api/image-queue/remove-bg-queue), one worker
 * process, `--instances` rembg processes behind the worker's pool, sources
 * from a local image host, results on local disk, MySQL and Redis on this
 * machine. Against seed 003's quoted ~6 per minute with 3 workers; target
 * ≥ 150 per minute with 2 instances on 2 cores.
 *
 *   npm run bench -- rembg-e2e [--jobs 300] [--instances 2] [--concurrency 4]
 */
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '300' },
    instances: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '4' },
    'instance-threads': { type: 'string', default: '1' },
  },
});
const JOBS = Number(args.jobs);
const INSTANCES = Number(args.instances);
const CONCURRENCY = Number(args.concurrency);
const INSTANCE_THREADS = Number(args['instance-threads']);
const SEED_PER_MIN = 6;
const TARGET_PER_MIN = 150;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = fixturePath('rembg/');
const NAMES = ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'];
const MYSQL_BASE = 'mysql://root@127.0.0.1:3306';
const REDIS_URL = 'redis://127.0.0.1:6379';

async function main(): Promise<void> {
  const suffix = randomBytes(4).toString('hex');
  const mysqlUrl = `${MYSQL_BASE}/iqbench_${suffix}`;
  const storageDir = await mkdtemp(join(tmpdir(), 'iqbench-'));
  await ensureDatabase(mysqlUrl);
  const migrateDb = connectDb({ url: mysqlUrl, poolSize: 1 });
  await migrateToLatest(migrateDb);
  await migrateDb.destroy();
  const children: ChildProcess[] = [];
  const source = await jpegHost(new Map(await Promise.all(NAMES.map(async (n) => [`/${n}`, await readFile(`${FIXTURES}${n}`)] as [string, Buffer]))));
  const urls: string[] = [];
  for (let i = 0; i < INSTANCES; i++) {
    const port = await freePort();
    children.push(start('rembg/server.ts', { LOG_LEVEL: 'warn', NODE_ENV: 'production', REMBG_PORT: String(port), REMBG_THREADS: String(INSTANCE_THREADS) }));
    urls.push(`http://127.0.0.1:${port}`);
  }
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    MYSQL_URL: mysqlUrl,
    REDIS_URL,
    BULL_PREFIX: `iqbench${suffix}`,
    STORAGE_DRIVER: 'local',
    STORAGE_LOCAL_DIR: storageDir,
    JWT_SECRET: randomBytes(32).toString('hex'),
    ALLOW_PRIVATE_SOURCE_URLS: 'true',
    WORKER_QUEUES: 'background-removal',
    CONCURRENCY_BACKGROUND_REMOVAL: String(CONCURRENCY),
    REMBG_URLS: urls.join(','),
    JOB_TIMEOUT_MS: '120000',
  };
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const api = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  env['PUBLIC_BASE_URL'] = api;
  try {
    for (const url of urls) await untilHealthy(url);
    children.push(start('worker/main.ts', env));
    const { apiKey } = await createVendor(app.db, { name: 'Bench Studio', plan: 'unlimited' });
    const token = ((await (await fetch(`${api}/api/auth/token`, post({ apiKey }))).json()) as { token: string }).token;
    const submit = async (recordId: string, photo: string): Promise<string> => {
      const res = await fetch(`${api}/api/image-queue/remove-bg-queue`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ recordId, projectId: 'bench', photoUrl: `${source.url}/${photo}` }),
      });
      if (res.status !== 202) throw new Error(`remove-bg-queue answered ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { jobId: string }).jobId;
    };
    // warm-up: the worker starts, every instance sees every image
    await settle(app, await Promise.all(urls.flatMap((_, u) => NAMES.map((n, i) => submit(`warm-${u}-${i}`, n)))), 300_000);

    const started = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) ids.push(await submit(`job-${i}`, NAMES[i % NAMES.length]!));
    await settle(app, ids, 1_800_000);
    const elapsed = performance.now() - started;
    const rows = await app.db.selectFrom('jobs').select(['status', 'duration_ms', 'attempts']).where('id', 'in', ids).execute();
    const durations = rows.map((r) => r.duration_ms ?? 0).sort((a, b) => a - b);
    const perMinute = (JOBS / elapsed) * 60_000;
    const body = [
      `${JOBS} jobs submitted over HTTP to the API (this process), one worker process (CONCURRENCY_BACKGROUND_REMOVAL=${CONCURRENCY}), ${INSTANCES} rembg instances × REMBG_THREADS=${INSTANCE_THREADS}; photos ${NAMES.join(', ')} in turn from a local image host; PNG cut-outs stored on local disk.`,
      '',
      table(
        ['jobs/min', 'p50 job ms', 'p95 job ms', 'failed', 'retried'],
        [
          [
            perMinute.toFixed(0),
            percentile(durations, 50).toFixed(0),
            percentile(durations, 95).toFixed(0),
            rows.filter((r) => r.status !== 'completed').length,
            rows.filter((r) => r.attempts > 1).length,
          ],
        ],
      ),
      '',
      `Against seed 003's ~${SEED_PER_MIN}/min: ${(perMinute / SEED_PER_MIN).toFixed(0)}× (target ≥ ${TARGET_PER_MIN}/min: ${perMinute >= TARGET_PER_MIN ? 'met' : 'NOT met'}).`,
    ].join('\n');
    console.log(body);
    await writeSection('rembg-e2e', 'Background removal end to end (API → worker → rembg pool → storage)', body);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await app.close();
    source.server.close();
    const pool = serverPool(mysqlUrl);
    await pool.promise().query(`DROP DATABASE IF EXISTS \`iqbench_${suffix}\``);
    await pool.promise().end();
    await rm(storageDir, { recursive: true, force: true });
  }
}

function start(script: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'ignore', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') console.error(`${script} exited (${code ?? signal})`);
  });
  return child;
}

await main();
