import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { childEnv } from '../platform/config.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { attemptRows, waitForFinal } from './helpers/jobs.js';
import { POISON_EXIT_CODE, poisonKind } from './helpers/poison-kind.js';
import type { FastifyInstance } from 'fastify';

/**
 * Poison jobs do not spread (issue 18). Vendor A's job ends its worker
 * process whenever it runs (test/helpers/poison-kind.ts); vendor B's jobs
 * share the worker with it. Worker processes are restarted as a supervisor
 * would. Bull's stall limit is 1, so a job whose worker dies twice under it
 * is given up by Bull.
 *
 * Before: B's jobs that shared the worker were stalled with it every time and
 * failed by Bull's stall limit (JOB_STALLED, attempts lost), and the poison
 * job ran (MAX_STALLED_COUNT + 1) × attempts times. Now: a job whose worker
 * died under it runs alone on its next run; only a death while alone counts
 * as an attempt. B's jobs complete, each in one attempt; A's job is dead
 * after its 3 attempts, having run 4 times (the one shared run that made it
 * a suspect, then 3 alone).
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function queuePoison(app: FastifyInstance, vendor: TestVendor, recordId: string, options: { crash: boolean; holdMs: number }) {
  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/poison-queue',
    headers: vendor.auth,
    payload: { recordId, projectId: 'p', photoUrl: 'https://images.example.com/p.jpg', options },
  });
  if (res.statusCode !== 202) throw new Error(`enqueue failed: ${res.statusCode} ${res.body}`);
  return (res.json() as { jobId: string }).jobId;
}

t.test('a job that kills its worker does not take other vendors’ jobs with it, nor run past its attempts', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'poison-test',
    LOCK_DURATION_MS: '1000',
    STALLED_INTERVAL_MS: '1000',
    MAX_STALLED_COUNT: '1',
    JOB_ATTEMPTS: '3',
    LOG_LEVEL: 'warn',
  });
  const app = await testApp(t, env, { jobKinds: [poisonKind] });
  const a = await testVendor(app, { name: 'poisoner' });
  const b = await testVendor(app, { name: 'bystander' });
  const poisonId = await queuePoison(app, a, 'poison', { crash: true, holdMs: 700 });
  const innocent: string[] = [];
  for (let i = 0; i < 4; i++) innocent.push(await queuePoison(app, b, `ok-${i}`, { crash: false, holdMs: 2500 }));

  // The supervisor: one worker process at a time, restarted whenever it dies.
  const exits: (number | null)[] = [];
  let stopping = false;
  let current: ReturnType<typeof spawn> | null = null;
  let output = '';
  const supervised = (async () => {
    for (let n = 0; !stopping && n < 12; n++) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/poison-worker-main.ts'], {
        cwd: ROOT,
        env: childEnv({ ...env, WORKER_ID: `w${n}` }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      current = child;
      child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      if (!stopping) exits.push(code);
    }
  })();
  t.teardown(async () => {
    stopping = true;
    current?.kill('SIGKILL');
    await supervised;
  });

  const rows = await Promise.all([poisonId, ...innocent].map((id) => waitForFinal(app.db, id, 300_000))).catch(async (error: unknown) => {
    const now = await app.db.selectFrom('jobs').select(['record_id', 'status', 'attempts', 'stalls', 'error_code']).execute();
    t.comment(`exits ${JSON.stringify(exits)}; jobs ${JSON.stringify(now)}\n${output.slice(-6000)}`);
    throw error;
  });
  const [poisoned, ...others] = rows;
  const crashes = exits.filter((c) => c === POISON_EXIT_CODE).length;
  t.comment(`worker exits: ${JSON.stringify(exits)}`);

  for (const job of others) {
    const attempts = await attemptRows(app.db, job.id);
    t.equal(job.status, 'completed', `${job.record_id}: ${job.error_code ?? ''} ${job.error_message ?? ''}`);
    t.equal(job.attempts, 1, `${job.record_id} lost no attempt to the poison job`);
    t.same(
      attempts.map((r) => r.outcome),
      ['completed'],
      `${job.record_id}: no JOB_STALLED attempt`,
    );
  }
  const sharedAtFirstCrash = (await app.db.selectFrom('jobs').select(['id', 'stalls']).where('stalls', '>', 0).execute()).map((r) => r.id);
  t.ok(sharedAtFirstCrash.length > 1, `other jobs were running beside the poison job when it first killed its worker (${sharedAtFirstCrash.length - 1})`);

  t.equal(poisoned!.status, 'dead', 'the poison job is dead');
  t.equal(poisoned!.error_code, 'JOB_STALLED');
  t.equal(poisoned!.attempts, 3, 'after its 3 attempts');
  t.same(
    (await attemptRows(app.db, poisonId)).map((r) => [r.attempt, r.outcome, r.error_code]),
    [
      [1, 'failed', 'JOB_STALLED'],
      [2, 'failed', 'JOB_STALLED'],
      [3, 'failed', 'JOB_STALLED'],
    ],
  );
  t.ok(crashes <= 4, `it ran ${crashes} times: its 3 attempts alone and at most the one shared run that made it a suspect`);
  if (crashes > 4) t.comment(output.slice(-4000));
});
