import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { childEnv } from '../platform/config.js';
import { openQueues } from '../platform/queues.js';
import { newId } from '../platform/ids.js';
import { percentile, table, writeSection } from './results.js';
import { jpegHost } from './support.js';
import { benchEnv, enqueueProcessJobs } from './worker-setup.js';

/**
 * Issue 18: do hostile pipelines hurt the vendors sharing a worker? One real
 * worker process (concurrency 5) runs 200 normal jobs (640×480 JPEG → 320 px
 * WebP) alone, then the same 200 with 20 hostile pipelines queued among them
 * (a 2000×2000 JPEG turned by 45° five times: 64 Mpx by the fourth turn,
 * the issue's attack with a source the API cannot see; and seven 90° turns
 * of it, 28 Mpx encoded, heavy but within the default budget). They reach the worker as the
 * API would queue them, past its enqueue check. Worker RSS is sampled from
 * /proc every 100 ms; a normal job's time is its ledger duration.
 * Targets: peak RSS ≤ 1.25× and normal p95 ≤ 1.5× the run without them.
 *
 * `npm run bench -- hostile [normal=200] [hostile=20]`
 */
const normalCount = Number(process.argv[2] ?? 200);
const hostileCount = Number(process.argv[3] ?? 20);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const photo = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#3a7' } })
  .jpeg()
  .toBuffer();
const big = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#a37' } })
  .jpeg()
  .toBuffer();
const { server, url: host } = await jpegHost(
  new Map([
    ['/p.jpg', photo],
    ['/big.jpg', big],
  ]),
);
const NORMAL = [
  { op: 'resize', width: 320 },
  { op: 'convert', format: 'webp' },
];
const HOSTILE = [Array.from({ length: 5 }, () => ({ op: 'rotate', angle: 45 })), Array.from({ length: 7 }, () => ({ op: 'rotate', angle: 90 }))];

interface Run {
  peakMb: number;
  p50: number;
  p95: number;
  seconds: number;
  hostile: Record<string, number>;
}

async function run(withHostile: boolean): Promise<Run> {
  const bench = await benchEnv({ LOG_LEVEL: 'fatal', WORKER_METRICS_PORT: '0', CONCURRENCY_IMAGE_PROCESSING: '5' });
  const queues = openQueues({
    redisUrl: bench.env['REDIS_URL'] as string,
    prefix: bench.env['BULL_PREFIX'] as string,
    connectionName: 'iq-bench',
    attempts: 3,
    backoffMs: 2000,
    keepCompleted: 1000,
    keepFailed: 5000,
  });
  const queue = queues.queues['image-processing'];
  const normal: string[] = [];
  const hostile: string[] = [];
  const attacker = newId();
  // in slices, so the hostile jobs are spread among the normal ones
  const slices = withHostile ? hostileCount : 10;
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], { cwd: ROOT, env: childEnv(bench.env), stdio: ['ignore', 'ignore', 'inherit'] });
  let peakKb = 0;
  const started = performance.now();
  try {
    for (let i = 0; i < slices; i++) {
      normal.push(...(await enqueueProcessJobs(bench.db, queue, Math.ceil(normalCount / slices), `${host}/p.jpg`, newId(), NORMAL)));
      if (withHostile) hostile.push(...(await enqueueProcessJobs(bench.db, queue, 1, `${host}/big.jpg`, attacker, HOSTILE[i % 2])));
    }
    for (;;) {
      await new Promise((r) => setTimeout(r, 100));
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      peakKb = Math.max(peakKb, Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0));
      const row = await bench.db
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('status', 'in', ['completed', 'failed', 'dead'])
        .executeTakeFirstOrThrow();
      if (Number(row.n) >= normal.length + hostile.length) break;
      if (child.exitCode !== null) throw new Error(`worker exited with ${child.exitCode}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const durations = (await bench.db.selectFrom('jobs').select(['duration_ms', 'status']).where('id', 'in', normal).execute())
      .map((r) => Number(r.duration_ms))
      .sort((a, b) => a - b);
    const outcomes: Record<string, number> = {};
    if (hostile.length > 0) {
      for (const r of await bench.db.selectFrom('jobs').select(['status', 'error_code']).where('id', 'in', hostile).execute()) {
        const key = `${r.status} ${r.error_code ?? ''}`.trim();
        outcomes[key] = (outcomes[key] ?? 0) + 1;
      }
    }
    return { peakMb: peakKb / 1024, p50: percentile(durations, 50), p95: percentile(durations, 95), seconds, hostile: outcomes };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await Promise.all(Object.values(queues.queues).map((q) => q.obliterate({ force: true }).catch(() => undefined)));
    await queues.close();
    await bench.cleanup();
  }
}

const alone = await run(false);
const mixed = await run(true);
server.close();
const rss = mixed.peakMb / alone.peakMb;
const p95 = mixed.p95 / alone.p95;
const body = `One worker process (concurrency 5): ${normalCount} normal jobs (640×480 JPEG → 320 px WebP) alone, then the same with ${hostileCount} hostile pipelines queued among them (2000×2000 JPEG turned by 45° five times, 64 Mpx by the fourth turn; and seven full-size 90° turns of it, 28 Mpx encoded: within the default budget, so it runs), queued straight into the ledger and Bull as the API would, so the worker's own checks are what stands between them and the other jobs.

${table(
  ['run', 'worker RSS peak MiB', 'normal p50 ms', 'normal p95 ms', 'wall s'],
  [
    ['normal alone', alone.peakMb.toFixed(1), alone.p50.toFixed(0), alone.p95.toFixed(0), alone.seconds.toFixed(1)],
    ['with hostile', mixed.peakMb.toFixed(1), mixed.p50.toFixed(0), mixed.p95.toFixed(0), mixed.seconds.toFixed(1)],
  ],
)}

Hostile jobs: ${Object.entries(mixed.hostile)
  .map(([k, n]) => `${n} ${k}`)
  .join(
    ', ',
  )}. Peak RSS ratio **${rss.toFixed(2)}** (target ≤ 1.25: ${rss <= 1.25 ? 'met' : 'NOT met'}), normal p95 ratio **${p95.toFixed(2)}** (target ≤ 1.5: ${p95 <= 1.5 ? 'met' : 'NOT met'}).`;
console.log(body);
await writeSection('hostile', 'Hostile pipelines among normal jobs', body);
process.exit(0);
