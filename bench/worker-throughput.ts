import Bull from 'bull';
import { bullConnections } from '../platform/redis.js';
import { openQueues } from '../platform/queues.js';
import { createLogger } from '../platform/logger.js';
import { loadWorkerConfig } from '../worker/config.js';
import { createWorker } from '../worker/worker.js';
import type { JobContext, ProcessorOutput } from '../worker/context.js';
import { table, writeSection } from './results.js';
import { benchEnv, completedCount, enqueueProcessJobs } from './worker-setup.js';

/**
 * What the ledger costs per job. The same number of no-op jobs, at the same
 * concurrency, through (a) raw Bull: add, process, complete; and (b) the full
 * worker path: ledger rows and records written as the API does, then
 * startAttempt, progress-free no-op processor, chunked completeJob with its
 * record update, events. Both run in this process, one after the other.
 *
 * `npm run bench -- worker-throughput [jobs=2000] [concurrency=5]`
 */
const jobs = Number(process.argv[2] ?? 2000);
const concurrency = Number(process.argv[3] ?? 5);

const noop = async (ctx: JobContext<'process'>): Promise<ProcessorOutput> => ({
  result: { success: true, jobId: ctx.payload.jobId },
  record: { processedPhotoUrl: null, width: null, height: null },
  recordFields: { 'process.noop': true },
});

async function rawBull(redisUrl: string, prefix: string): Promise<number> {
  const connections = bullConnections(redisUrl, 'iq-bench-raw');
  const queue = new Bull('bench-raw', { prefix, createClient: (type) => connections.createClient(type) });
  await queue.isReady();
  let done = 0;
  const finished = new Promise<void>((resolve) =>
    queue.on('completed', () => {
      if (++done === jobs) resolve();
    }),
  );
  const started = performance.now();
  for (let i = 0; i < jobs; i += 500) {
    await queue.addBulk(Array.from({ length: Math.min(500, jobs - i) }, (_, k) => ({ data: { i: i + k }, opts: { removeOnComplete: true, attempts: 8 } })));
  }
  void queue.process(concurrency, async () => ({ ok: true }));
  await finished;
  const ms = performance.now() - started;
  await queue.obliterate({ force: true });
  await queue.close();
  await connections.close();
  return ms;
}

async function ledgerPath(): Promise<number> {
  const bench = await benchEnv({ CONCURRENCY_IMAGE_PROCESSING: String(concurrency), LOG_LEVEL: 'error' });
  try {
    const config = loadWorkerConfig({ env: bench.env, processEnv: false });
    const worker = createWorker(config, { logger: createLogger('error', 'worker'), processors: { process: noop } });
    await worker.start();
    const queues = openQueues({
      redisUrl: config.REDIS_URL,
      prefix: config.BULL_PREFIX,
      connectionName: 'iq-bench',
      attempts: 3,
      backoffMs: 2000,
      keepCompleted: 1000,
      keepFailed: 5000,
    });
    const started = performance.now();
    await enqueueProcessJobs(bench.db, queues.queues['image-processing'], jobs, 'http://127.0.0.1:9/unused.jpg');
    while ((await completedCount(bench.db)) < jobs) await new Promise((r) => setTimeout(r, 50));
    const ms = performance.now() - started;
    await worker.close();
    await Promise.all(Object.values(queues.queues).map((q) => q.obliterate({ force: true }).catch(() => undefined)));
    await queues.close();
    return ms;
  } finally {
    await bench.cleanup();
  }
}

const config = loadWorkerConfig();
const rawMs = await rawBull(config.REDIS_URL, `iqbenchraw${process.pid}`);
const ledgerMs = await ledgerPath();
const rawRate = (jobs / rawMs) * 1000;
const ledgerRate = (jobs / ledgerMs) * 1000;
const body = `${jobs} no-op jobs, concurrency ${concurrency}, one worker process; enqueue included in both (the ledger path also writes the ledger rows as the API does).

${table(
  ['path', 'total ms', 'jobs/s', 'ms per job'],
  [
    ['raw Bull (add → process → complete)', rawMs.toFixed(0), rawRate.toFixed(0), (rawMs / jobs).toFixed(2)],
    ['full ledger path (ledger + Bull + worker runner)', ledgerMs.toFixed(0), ledgerRate.toFixed(0), (ledgerMs / jobs).toFixed(2)],
  ],
)}

Ledger path throughput is **${((ledgerRate / rawRate) * 100).toFixed(0)} %** of raw Bull's in the same run.`;
console.log(body);
await writeSection('worker-throughput', 'Worker throughput: ledger path vs raw Bull', body);
process.exit(0);
