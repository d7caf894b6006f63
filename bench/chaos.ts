import { parseArgs } from 'node:util';
import { isolatedEnv } from '../test/helpers/env.js';
import { testVendor } from '../test/helpers/app.js';
import {
  asTest,
  failingStorage,
  killWorkerMidBulk,
  loseRedis,
  rembgInstancesFail,
  stopMysql,
  webhookReceiverDown,
  type FaultOutcome,
  type Scope,
} from '../test/helpers/faults.js';
import { fuzzableApp, fuzzRoutes } from '../test/helpers/fuzz.js';
import { table, writeSection } from './results.js';

/**
 * The reliability table: each fault scenario of test/helpers/faults.ts at a
 * larger scale than CI runs it, then the route fuzzer with many more runs
 * per route. Every scenario runs the real API and worker processes against
 * this machine's MySQL and Redis (private servers for the ones it stops).
 *
 *   npm run bench -- chaos [--jobs 1000] [--fuzz-runs 500] [--only kill,redis-flush,redis-restart,mysql,storage-recovers,storage-down,webhook,rembg,fuzz]
 */
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    'mysql-jobs': { type: 'string', default: '60' },
    'mysql-down-ms': { type: 'string', default: '20000' },
    'fuzz-runs': { type: 'string', default: '500' },
    only: { type: 'string', default: '' },
  },
});
const JOBS = Number(args.jobs);
const only = new Set(args.only.split(',').filter(Boolean));

/** Stands in for tap's Test where the helpers only need teardown: cleanups run in reverse, after each scenario. */
function scope(): Scope & { close(): Promise<void> } {
  const cleanups: (() => unknown)[] = [];
  return {
    teardown: (fn: () => unknown) => void cleanups.push(fn),
    async close() {
      for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch((error: unknown) => console.error('cleanup failed:', error));
    },
  } as Scope & { close(): Promise<void> };
}

const SCENARIOS: Record<string, (s: Scope) => Promise<FaultOutcome>> = {
  kill: (s) => killWorkerMidBulk(s, { jobs: JOBS, concurrency: 5 }),
  'redis-flush': (s) => loseRedis(s, { jobs: JOBS, mode: 'flush' }),
  'redis-restart': (s) => loseRedis(s, { jobs: JOBS, mode: 'restart' }),
  mysql: (s) => stopMysql(s, { jobs: Number(args['mysql-jobs']), downMs: Number(args['mysql-down-ms']), probes: 20 }),
  'storage-recovers': (s) => failingStorage(s, { jobs: 20, recoverAfter: 15 }),
  'storage-down': (s) => failingStorage(s, { jobs: 10, recoverAfter: -1 }),
  webhook: (s) => webhookReceiverDown(s, { jobs: 200, downMs: 20_000 }),
  rembg: (s) => rembgInstancesFail(s, { jobs: 200 }),
};

async function main(): Promise<void> {
  const outcomes: FaultOutcome[] = [];
  for (const [name, run] of Object.entries(SCENARIOS)) {
    if (only.size > 0 && !only.has(name)) continue;
    const s = scope();
    const started = Date.now();
    try {
      const outcome = await run(s);
      outcomes.push(outcome);
      console.log(`${name}: ${JSON.stringify({ ...outcome, seconds: Math.round((Date.now() - started) / 1000) })}`);
    } catch (error) {
      console.error(`${name} failed to run:`, error);
      outcomes.push({
        scenario: name,
        accepted: 0,
        completed: 0,
        failed: 0,
        lost: 0,
        duplicated: 0,
        notes: `did not run: ${String(error).slice(0, 200)}`,
        codes: {},
        extra: {},
      });
    } finally {
      await s.close();
    }
  }
  const fuzz = only.size === 0 || only.has('fuzz') ? await fuzzLong(Number(args['fuzz-runs'])) : null;

  const rows = outcomes.map((o) => [
    o.scenario,
    o.accepted,
    o.completed,
    o.failed,
    o.lost,
    o.duplicated,
    `${o.notes}${
      Object.keys(o.codes).length > 0
        ? `; codes ${Object.entries(o.codes)
            .map(([c, n]) => `${c}×${n}`)
            .join(', ')}`
        : ''
    }`,
  ]);
  const body = [
    'Each fault strikes while jobs run, against the real API, worker processes, MySQL and Redis of this machine (private MariaDB/Redis servers for the ones stopped or flushed). Counts come from the ledger once every job is final (or 3 minutes passed): **lost** = accepted − completed − failed, **twice** = jobs with more than one completed attempt. Both must be 0. `failed` counts final, reported failures (dead letters included). CI runs the same scenarios with smaller numbers (test/fault-*.test.ts, test/worker-reconcile.test.ts).',
    '',
    table(['scenario', 'accepted', 'completed', 'failed', 'lost', 'twice', 'notes'], rows),
    '',
    fuzz
      ? `Route fuzzing (fast-check, test/helpers/fuzz.ts): ${fuzz.requests} requests, ${fuzz.runs} per route over ${fuzz.routes} routes; statuses ${Object.entries(
          fuzz.statuses,
        )
          .map(([s, n]) => `${s}×${n}`)
          .join(
            ', ',
          )}; slowest answer ${fuzz.slowestMs.toFixed(0)} ms; **${fuzz.failures.length} routes with a 5xx, a malformed error or no answer**${fuzz.failures.length > 0 ? `: ${fuzz.failures.map((f) => `${f.route} (${f.problem.slice(0, 80)})`).join('; ')}` : ''}.`
      : '',
  ].join('\n');
  await writeSection('chaos', 'Reliability: faults and fuzzing (chaos)', body);
  console.log(body);
}

async function fuzzLong(runs: number) {
  const s = scope();
  try {
    const env = await isolatedEnv(asTest(s), { ALLOW_PRIVATE_SOURCE_URLS: 'false', LOG_LEVEL: 'silent' });
    const { app, routes } = await fuzzableApp(env);
    s.teardown(() => app.close());
    const vendor = await testVendor(app, { name: 'Chaos Vendor' });
    const admin = await testVendor(app, { name: 'Chaos Admin', role: 'admin' });
    const report = await fuzzRoutes(app, routes, { vendor: vendor.token, admin: admin.token, knownIds: [vendor.vendorId, admin.vendorId] }, { runs });
    return { ...report, runs, routes: routes.length };
  } finally {
    await s.close();
  }
}

await main();
process.exit(0);
