import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { childEnv } from '../platform/config.js';
import { openQueues } from '../platform/queues.js';
import { loadWorkerConfig } from '../worker/config.js';
import { freePort } from '../test/helpers/private-services.js';
import { table, writeSection } from './results.js';
import { jpegHost } from './support.js';
import { benchEnv, completedCount, enqueueProcessJobs } from './worker-setup.js';

/**
 * Does a worker process leak? One real worker process (`worker/main.ts`)
 * runs `jobs` real image-processing jobs (fetch from a local server, decode,
 * resize, encode, store, chunked ledger write) while its RSS is sampled from
 * /proc. The reference is the same process's RSS once warmed up (after 10 %
 * of the jobs); the target is growth of at most 10 % from there to the end.
 *
 * `npm run bench -- worker-memory [jobs=10000]`
 */
const jobs = Number(process.argv[2] ?? 10_000);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const photo = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#3a7' } })
  .jpeg()
  .toBuffer();
const { server, url: host } = await jpegHost(new Map([['/p.jpg', photo]]));
const photoUrl = `${host}/p.jpg`;

const metricsPort = await freePort();
const bench = await benchEnv({ LOG_LEVEL: 'error', WORKER_METRICS_PORT: String(metricsPort), WORKER_METRICS_HOST: '127.0.0.1' });
const queues = openQueues({
  redisUrl: bench.env['REDIS_URL'] as string,
  prefix: bench.env['BULL_PREFIX'] as string,
  connectionName: 'iq-bench',
  attempts: 3,
  backoffMs: 2000,
  keepCompleted: 1000,
  keepFailed: 5000,
});
await enqueueProcessJobs(bench.db, queues.queues['image-processing'], jobs, photoUrl);

const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], { cwd: ROOT, env: childEnv(bench.env), stdio: ['ignore', 'ignore', 'inherit'] });
const samples: { done: number; rssMb: number; heapMb: number; externalMb: number; at: number }[] = [];
const started = performance.now();
try {
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    const done = await completedCount(bench.db);
    const { heapMb, externalMb } = await heapOf(metricsPort);
    if (Number.isFinite(rssKb)) samples.push({ done, rssMb: rssKb / 1024, heapMb, externalMb, at: performance.now() - started });
    if (done >= jobs) break;
    if (child.exitCode !== null) throw new Error(`worker exited with ${child.exitCode}`);
  }
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await Promise.all(Object.values(queues.queues).map((q) => q.obliterate({ force: true }).catch(() => undefined)));
  await queues.close();
  await bench.cleanup();
  server.close();
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const warm = samples.filter((s) => s.done >= jobs * 0.1);
const baseline = mean(warm.slice(0, 5).map((s) => s.rssMb));
const end = mean(warm.slice(-5).map((s) => s.rssMb));
const peak = Math.max(...samples.map((s) => s.rssMb));
const growth = ((end - baseline) / baseline) * 100;
const seconds = (samples[samples.length - 1]?.at ?? 0) / 1000;
const checkpoints = [0.1, 0.25, 0.5, 0.75, 1].map((f) => {
  const s = samples.find((x) => x.done >= jobs * f) ?? samples[samples.length - 1];
  return [`${Math.round(f * 100)} %`, s?.done ?? 0, (s?.rssMb ?? 0).toFixed(1), (s?.heapMb ?? NaN).toFixed(1), (s?.externalMb ?? NaN).toFixed(1)];
});
const body = `${jobs} real image-processing jobs (640×480 JPEG → 16 px resize, stored on local disk) through one worker process (concurrency 5, WORKER_HEAP_GROWING_PERCENT=${loadWorkerConfig().WORKER_HEAP_GROWING_PERCENT}), ${seconds.toFixed(0)} s, ${(jobs / seconds).toFixed(1)} jobs/s. RSS of the worker process sampled every 500 ms, V8 heap and external memory from its /metrics.

${table(['progress', 'jobs done', 'RSS MiB', 'V8 heap used MiB', 'external (Buffers) MiB'], checkpoints)}

Warmed-up RSS (after 10 % of the jobs) ${baseline.toFixed(1)} MiB, at the end ${end.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB: growth **${growth.toFixed(1)} %** (target ≤ 10 %: ${growth <= 10 ? 'met' : 'NOT met'}).`;
console.log(body);
await writeSection('worker-memory', 'Worker memory over many jobs', body);
process.exit(0);

/** The worker's own view of its memory, from its /metrics (prom-client's default metrics). */
async function heapOf(port: number): Promise<{ heapMb: number; externalMb: number }> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`)
    .then((r) => r.text())
    .catch(() => '');
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1048576;
  return { heapMb: value('nodejs_heap_size_used_bytes'), externalMb: value('nodejs_external_memory_bytes') };
}
