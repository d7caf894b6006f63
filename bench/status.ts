import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { Agent } from 'undici';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { connectDb, serverPool } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { createVendor, findVendor } from '../db/repos/vendors.js';
import { childEnv } from '../platform/config.js';
import { machineLine, table, writeSection } from './results.js';
import { jpegHost, settle } from './support.js';

/**
 * Status reads at dashboard scale (issue 20), all in one run:
 *
 *   1. `GET /job/:id` req/s and p99 against `/healthz` on the same server,
 *      same autocannon connections; and the same read answered 304 (a
 *      matching If-None-Match). Target ≥ 0.5× healthz, p99 < 10 ms.
 *   2. A worker process runs 200 processing jobs while they are watched by
 *      one poller (each job in turn), by 200 pollers at 5 Hz (one per job),
 *      and by 200 long-pollers (`?wait=30`); jobs/s of 200 pollers vs one
 *      poller, target ≥ 0.9×. The one-poller phase runs first and last.
 *   3. 1,000 long-polls held open at once: API RSS and event-loop delay.
 *
 * The vendor is on the standard plan with a polling limit no run reaches,
 * so the rate-limit counter runs as it does for real vendors. The API, the
 * load generators and the pollers share this process; the worker is its own.
 *
 *   npm run bench -- status [--duration 5] [--connections 20] [--jobs 200] [--long-polls 1000] [--dry]
 */
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '20' },
    jobs: { type: 'string', default: '200' },
    'long-polls': { type: 'string', default: '1000' },
    dry: { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const JOBS = Number(args.jobs);
const LONG_POLLS = Number(args['long-polls']);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FINISHED = new Set(['completed', 'failed', 'dead']);
let requests = 0;
const sleepers = new Set<() => void>();

const suffix = randomBytes(4).toString('hex');
const database = `iqbench_${suffix}`;
const mysqlUrl = `mysql://root@127.0.0.1:3306/${database}`;
await ensureDatabase(mysqlUrl);
const migrationDb = connectDb({ url: mysqlUrl, poolSize: 1 });
await migrateToLatest(migrationDb);
await migrationDb.destroy();
const storageDir = await mkdtemp(join(tmpdir(), 'iqbench-storage-'));
const env = {
  NODE_ENV: 'production',
  LOG_LEVEL: 'warn',
  MYSQL_URL: mysqlUrl,
  MYSQL_POOL_SIZE: '10',
  REDIS_URL: 'redis://127.0.0.1:6379',
  BULL_PREFIX: `iqbench${suffix}`,
  STORAGE_DRIVER: 'local',
  STORAGE_LOCAL_DIR: storageDir,
  PUBLIC_BASE_URL: 'http://127.0.0.1:3000',
  JWT_SECRET: randomBytes(24).toString('hex'),
  ALLOW_PRIVATE_SOURCE_URLS: 'true',
  WORKER_QUEUES: 'image-processing',
  RECONCILE_INTERVAL_MS: '0',
  CONCURRENCY_IMAGE_PROCESSING: '4',
};
const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
const api = await app.listen({ host: '127.0.0.1', port: 0 });
const created = await createVendor(app.db, { name: 'bench', plan: 'standard' });
await app.db
  .updateTable('vendors')
  .set({ rate_limits: JSON.stringify({ polling: { max: 1_000_000, windowMs: 60_000 }, bulk: null, bulkMaxItems: 10_000 }) })
  .where('id', '=', created.vendorId)
  .execute();
const { token } = await app.signVendorToken((await findVendor(app.db, created.vendorId))!);
const auth = { authorization: `Bearer ${token}` };
const photo = await sharp({ create: { width: 1200, height: 900, channels: 3, background: '#3a7' } })
  .jpeg()
  .toBuffer();
const images = await jpegHost(new Map([['/p.jpg', photo]]));
const many = new Agent({ connections: null, pipelining: 0, keepAliveTimeout: 60_000 });
let worker: ChildProcess | null = null;

try {
  await until(() => app.eventHub.live, 5000);

  // 1. Request rate of a status read against /healthz.
  const [single] = await enqueue(1);
  const jobUrl = `${api}/api/image-queue/job/${single}`;
  const etag = (await fetch(jobUrl, { headers: auth })).headers.get('etag') as string;
  await load(`${api}/healthz`, {}, 2); // warm-up
  await load(jobUrl, auth, 2);
  const rounds = { healthz: [] as Load[], job: [] as Load[], notModified: [] as Load[] };
  for (let round = 0; round < 2; round++) {
    rounds.healthz.push(await load(`${api}/healthz`, {}));
    rounds.job.push(await load(jobUrl, auth));
    rounds.notModified.push(await load(jobUrl, { ...auth, 'if-none-match': etag }));
  }
  const best = (list: Load[]) => list.reduce((a, b) => (b.rps > a.rps ? b : a));
  const rps = { healthz: best(rounds.healthz), job: best(rounds.job), notModified: best(rounds.notModified) };

  // 2. Jobs/s of a worker while its jobs are polled.
  worker = startWorker();
  await runJobs(20, 'warm-up', async () => undefined);
  const phases: { name: string; jobsPerSecond: number; requests: number }[] = [];
  const onePoller = (ids: string[], done: () => boolean) =>
    pollLoop(async () => {
      for (const id of ids) {
        if (done()) return;
        await read(`${api}/api/image-queue/job/${id}`);
      }
    }, done);
  phases.push(await runJobs(JOBS, 'one poller (each job in turn)', onePoller));
  phases.push(
    await runJobs(JOBS, `${JOBS} pollers at 5 Hz`, (ids, done) =>
      Promise.all(
        ids.map((id) =>
          pollLoop(async () => {
            const body = await read(`${api}/api/image-queue/job/${id}`);
            if (!FINISHED.has(body.state)) await sleep(200);
            else await sleep(10_000_000, done);
          }, done),
        ),
      ).then(() => undefined),
    ),
  );
  phases.push(
    await runJobs(JOBS, `${JOBS} long-pollers (?wait=30)`, (ids, done) =>
      Promise.all(
        ids.map(async (id) => {
          for (;;) {
            const body = await read(`${api}/api/image-queue/job/${id}?wait=30`);
            if (FINISHED.has(body.state) || done()) return;
          }
        }),
      ).then(() => undefined),
    ),
  );
  phases.push(await runJobs(JOBS, 'one poller again', onePoller));
  await stopWorker(worker);
  worker = null;
  const baseline = ((phases[0]?.jobsPerSecond ?? 0) + (phases[3]?.jobsPerSecond ?? 0)) / 2;

  // 3. Many long-polls held open at once.
  const held = await enqueue(LONG_POLLS);
  const rssBefore = process.memoryUsage().rss;
  const abort = new AbortController();
  const polls = held.map((id) =>
    fetch(`${api}/api/image-queue/job/${id}?wait=60`, { headers: auth, signal: abort.signal, dispatcher: many } as RequestInit)
      .then((r) => r.arrayBuffer())
      .catch(() => undefined),
  );
  await until(() => app.jobStatus.waiting() >= LONG_POLLS, 30_000);
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  await sleep(3000);
  delay.disable();
  const healthWhileHeld = await load(`${api}/healthz`, {}, 3);
  const rssHeld = process.memoryUsage().rss;
  const heldCount = app.jobStatus.waiting();
  abort.abort();
  await Promise.all(polls);

  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  const ratio = rps.job.rps / rps.healthz.rps;
  const pollRatio = (phases[1]?.jobsPerSecond ?? 0) / baseline;
  const longRatio = (phases[2]?.jobsPerSecond ?? 0) / baseline;
  const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
  const body = [
    `autocannon, ${CONNECTIONS} connections, ${DURATION} s per run, 2 rounds (best of each); one API process with the load generators in it; vendor on the`,
    'standard plan with a polling limit no run reaches (the rate-limit counter runs); the job read is a queued job of the process kind.',
    '',
    table(
      ['route', 'req/s', 'p50 ms', 'p99 ms', 'req/s per round'],
      [
        ['`/healthz`', Math.round(rps.healthz.rps), rps.healthz.p50, rps.healthz.p99, rounds.healthz.map((r) => Math.round(r.rps)).join(' / ')],
        ['`GET /job/:id` (200)', Math.round(rps.job.rps), rps.job.p50, rps.job.p99, rounds.job.map((r) => Math.round(r.rps)).join(' / ')],
        [
          '`GET /job/:id`, matching ETag (304)',
          Math.round(rps.notModified.rps),
          rps.notModified.p50,
          rps.notModified.p99,
          rounds.notModified.map((r) => Math.round(r.rps)).join(' / '),
        ],
      ],
    ),
    '',
    `- job / healthz: **${ratio.toFixed(2)}×** (target ≥ 0.5×: ${verdict(ratio >= 0.5)}); job p99 **${rps.job.p99} ms** (target < 10 ms: ${verdict(rps.job.p99 < 10)})`,
    '',
    `${JOBS} processing jobs (1200×900 JPEG, resize to 320, PNG out) per phase, one worker process at concurrency 4, submitted in one bulk request;`,
    'jobs/s from the submission to the last job over in the ledger:',
    '',
    table(
      ['watchers', 'jobs/s', 'status requests', 'vs one poller'],
      phases.map((p) => [p.name, p.jobsPerSecond.toFixed(1), p.requests, (p.jobsPerSecond / baseline).toFixed(2)]),
    ),
    '',
    `- ${JOBS} pollers at 5 Hz / one poller: **${pollRatio.toFixed(2)}×** (target ≥ 0.9×: ${verdict(pollRatio >= 0.9)}); ${JOBS} long-pollers: **${longRatio.toFixed(2)}×**`,
    '',
    `${heldCount} long-polls held open at once (\`?wait=60\` on queued jobs, one connection each, clients in the same process):`,
    '',
    `- RSS ${mb(rssBefore)} MiB before, **${mb(rssHeld)} MiB** while held (+${mb(rssHeld - rssBefore)} MiB, clients' sockets included)`,
    `- event-loop delay over 3 s while held: p50 ${(delay.percentile(50) / 1e6).toFixed(1)} ms, p99 **${(delay.percentile(99) / 1e6).toFixed(1)} ms**, max ${(delay.max / 1e6).toFixed(1)} ms`,
    `- \`/healthz\` meanwhile: ${Math.round(healthWhileHeld.rps)} req/s, p99 ${healthWhileHeld.p99} ms`,
    '',
    'Numbers are from a shared 2-core machine with other work running; compare rows within this section only.',
  ].join('\n');
  if (args.dry) console.log(`## Status reads\n\n_${machineLine()}_\n\n${body}`);
  else {
    await writeSection('status', 'Status reads at dashboard scale (issue 20)', body);
    console.log(body);
  }
} finally {
  if (worker) await stopWorker(worker);
  await many.close().catch(() => undefined);
  images.server.close();
  await app.queues['image-processing'].obliterate({ force: true }).catch(() => undefined);
  await app.close();
  const pool = serverPool(mysqlUrl);
  await pool.promise().query(`DROP DATABASE IF EXISTS \`${database}\``);
  await pool.promise().end();
  await rm(storageDir, { recursive: true, force: true });
}

interface Load {
  rps: number;
  p50: number;
  p99: number;
}

async function load(url: string, headers: Record<string, string>, duration = DURATION): Promise<Load> {
  const result = await autocannon({ url, connections: CONNECTIONS, duration, headers });
  if (result.errors + result.timeouts > 0 || result['2xx'] + result['3xx'] === 0) throw new Error(`${url}: ${result.errors} errors, ${result.non2xx} non-2xx`);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
}

async function read(url: string): Promise<{ state: string }> {
  requests += 1;
  const res = await fetch(url, { headers: auth, dispatcher: many } as RequestInit);
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  return (await res.json()) as { state: string };
}

async function enqueue(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let from = 0; from < n; from += 1000) {
    const count = Math.min(1000, n - from);
    const res = await fetch(`${api}/api/image-queue/bulk-process`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        projectId: 'bench',
        items: Array.from({ length: count }, (_, i) => ({ recordId: `r-${randomBytes(6).toString('hex')}-${i}`, photoUrl: `${images.url}/p.jpg` })),
        operations: [
          { op: 'resize', width: 320 },
          { op: 'convert', format: 'png' },
        ],
      }),
    });
    if (res.status !== 202) throw new Error(`bulk: ${res.status} ${await res.text()}`);
    ids.push(...((await res.json()) as { jobIds: string[] }).jobIds);
  }
  return ids;
}

/** Submits `n` jobs, runs the watchers until they are all over, and times it. */
async function runJobs(n: number, name: string, watch: (ids: string[], done: () => boolean) => Promise<void>) {
  const before = requests;
  const started = performance.now();
  const ids = await enqueue(n);
  let over = false;
  const watching = watch(ids, () => over);
  await settle(app, ids, 600_000);
  const seconds = (performance.now() - started) / 1000;
  over = true;
  wakeSleepers();
  await watching;
  return { name, jobsPerSecond: n / seconds, requests: requests - before };
}

async function pollLoop(step: () => Promise<void>, done: () => boolean): Promise<void> {
  while (!done()) await step();
}

function wakeSleepers(): void {
  for (const wake of [...sleepers]) wake();
}
function sleep(ms: number, done?: () => boolean): Promise<void> {
  if (done?.()) return Promise.resolve();
  return new Promise((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      sleepers.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    if (done) sleepers.add(wake);
  });
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function startWorker(): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'ignore', 'inherit'] });
  child.once('exit', (code) => {
    if (code !== 0 && code !== null) console.error(`worker exited with ${code}`);
  });
  return child;
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
