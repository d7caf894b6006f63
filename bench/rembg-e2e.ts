import { parseArgs } from 'node:util';
import { percentile, table, writeSection } from './results.js';
import { startRembgStack } from './rembg-stack.js';
import { settle } from './support.js';

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

async function main(): Promise<void> {
  const stack = await startRembgStack({ instances: INSTANCES, concurrency: CONCURRENCY, instanceThreads: INSTANCE_THREADS });
  const { app, names: NAMES } = stack;
  try {
    const started = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) ids.push(await stack.submit(`job-${i}`, NAMES[i % NAMES.length]!));
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
    await stack.close();
  }
}

await main();
