import { parseArgs } from 'node:util';
import { percentile, table, writeSection } from './results.js';
import { startRembgStack, type RembgStack } from './rembg-stack.js';
import { inFlight, settle } from './support.js';

/**
 * remove.bg's synchronous route against our own async one, on the same stack
 * in the same run (API → worker → rembg pool → storage, see rembg-stack.ts):
 *
 * - throughput: `--jobs` photos through `POST /api/image-queue/remove-bg-queue`
 *   (all queued, then awaited in the ledger) against the same number through
 *   `POST /v1.0/removebg` with `X-Api-Key` and `image_url`, each caller waiting
 *   for its image, with twice the worker's concurrency in flight so the worker
 *   never idles between calls. The async phase runs before and after the sync
 *   one and the two are averaged, so the machine's drift weighs on both sides.
 *   Target: sync images/min ≥ 0.95× async jobs/min.
 * - added latency: with as many callers as the worker has slots (nothing waits
 *   in the queue), each call's wall time minus its job's own duration in the
 *   ledger (`X-Job-Id` names the job): what the route, the queue hop and the
 *   wait for the job's end add. Target: p50 ≤ 50 ms.
 *
 *   npm run bench -- removebg [--jobs 120] [--instances 2] [--concurrency 4]
 */
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '120' },
    instances: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '4' },
  },
});
const JOBS = Number(args.jobs);
const CONCURRENCY = Number(args.concurrency);
const RATIO_TARGET = 0.95;
const ADDED_P50_TARGET_MS = 50;

interface SyncCall {
  jobId: string;
  ms: number;
}

async function asyncPhase(stack: RembgStack, tag: string): Promise<number> {
  const started = performance.now();
  const ids: string[] = [];
  for (let i = 0; i < JOBS; i++) ids.push(await stack.submit(`${tag}-${i}`, stack.names[i % stack.names.length]!));
  await settle(stack.app, ids, 1_800_000);
  await failedOf(stack, ids, tag);
  return (JOBS / (performance.now() - started)) * 60_000;
}

async function syncPhase(stack: RembgStack, count: number, lanes: number): Promise<{ perMinute: number; calls: SyncCall[] }> {
  const calls: SyncCall[] = [];
  const started = performance.now();
  await inFlight(count, lanes, async (i) => {
    const t0 = performance.now();
    const res = await fetch(`${stack.api}/v1.0/removebg`, {
      method: 'POST',
      headers: { 'x-api-key': stack.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ image_url: `${stack.sourceUrl}/${stack.names[i % stack.names.length]!}`, size: 'full' }),
    });
    const bytes = await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`POST /v1.0/removebg answered ${res.status}: ${Buffer.from(bytes).toString('utf8').slice(0, 300)}`);
    calls.push({ jobId: String(res.headers.get('x-job-id')), ms: performance.now() - t0 });
  });
  return { perMinute: (count / (performance.now() - started)) * 60_000, calls };
}

async function failedOf(stack: RembgStack, ids: string[], tag: string): Promise<void> {
  const failed = await stack.app.db.selectFrom('jobs').select('id').where('id', 'in', ids).where('status', '!=', 'completed').execute();
  if (failed.length > 0) throw new Error(`${failed.length} of the ${tag} jobs did not complete`);
}

async function main(): Promise<void> {
  const stack = await startRembgStack({ instances: Number(args.instances), concurrency: CONCURRENCY, instanceThreads: 1 });
  try {
    const asyncBefore = await asyncPhase(stack, 'async-a');
    const sync = await syncPhase(stack, JOBS, 2 * CONCURRENCY);
    const asyncAfter = await asyncPhase(stack, 'async-b');
    const latency = await syncPhase(stack, Math.max(CONCURRENCY, Math.round(JOBS / 2)), CONCURRENCY);

    const ids = latency.calls.map((c) => c.jobId);
    const rows = await stack.app.db.selectFrom('jobs').select(['id', 'duration_ms', 'status']).where('id', 'in', ids).execute();
    const duration = new Map(rows.map((r) => [r.id, r.duration_ms ?? 0]));
    const added = latency.calls.map((c) => c.ms - (duration.get(c.jobId) ?? 0)).sort((a, b) => a - b);
    const wall = latency.calls.map((c) => c.ms).sort((a, b) => a - b);
    const jobMs = [...duration.values()].sort((a, b) => a - b);
    const asyncMean = (asyncBefore + asyncAfter) / 2;
    const ratio = sync.perMinute / asyncMean;
    const p50Added = percentile(added, 50);

    const body = [
      `${JOBS} photos per throughput phase (${stack.names.join(', ')} in turn, from a local image host), one worker process (CONCURRENCY_BACKGROUND_REMOVAL=${CONCURRENCY}), ${args.instances} rembg instances; PNG cut-outs on local disk. Sync calls: \`POST /v1.0/removebg\` with \`X-Api-Key\`, JSON \`image_url\`, \`size=full\`, the image bytes read whole.`,
      '',
      table(
        ['phase', 'callers in flight', 'images/min'],
        [
          ['async remove-bg-queue (before)', 'all queued', asyncBefore.toFixed(0)],
          ['sync /v1.0/removebg', 2 * CONCURRENCY, sync.perMinute.toFixed(0)],
          ['async remove-bg-queue (after)', 'all queued', asyncAfter.toFixed(0)],
        ],
      ),
      '',
      `Sync / async (mean of before and after): **${ratio.toFixed(2)}×** (target ≥ ${RATIO_TARGET}: ${ratio >= RATIO_TARGET ? 'met' : 'NOT met'}).`,
      '',
      `Added latency, ${latency.calls.length} sync calls with ${CONCURRENCY} callers (one per worker slot): call wall time minus the job's own duration in the ledger.`,
      '',
      table(
        ['', 'p50 ms', 'p95 ms'],
        [
          ['call wall time', percentile(wall, 50).toFixed(0), percentile(wall, 95).toFixed(0)],
          ['job duration (ledger)', percentile(jobMs, 50).toFixed(0), percentile(jobMs, 95).toFixed(0)],
          ['added by the route', p50Added.toFixed(0), percentile(added, 95).toFixed(0)],
        ],
      ),
      '',
      `Added p50 ${p50Added.toFixed(0)} ms (target ≤ ${ADDED_P50_TARGET_MS} ms: ${p50Added <= ADDED_P50_TARGET_MS ? 'met' : 'NOT met'}).`,
    ].join('\n');
    console.log(body);
    await writeSection('removebg', 'remove.bg-compatible sync route vs the async route (same run)', body);
  } finally {
    await stack.close();
  }
}

await main();
