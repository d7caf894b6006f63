import t from 'tap';
import { killWorkerMidBulk } from './helpers/faults.js';

/**
 * The 200-job bulk of the reliability table: a worker process SIGKILLed a
 * quarter of the way through, a new one started; every job completes,
 * exactly once (test/worker-processes.test.ts shows the same for single
 * jobs, attempt by attempt).
 */
t.test('SIGKILL a worker in the middle of a 200-job bulk: every job completes exactly once', async (t) => {
  const outcome = await killWorkerMidBulk(t, { jobs: 200 });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.ok((outcome.extra['inFlightAtKill'] as number) > 0, `jobs were in flight when the worker died (${outcome.extra['inFlightAtKill']})`);
  t.equal(outcome.accepted, 200);
  t.equal(outcome.completed, 200, `completed ${JSON.stringify(outcome.codes)}`);
  t.equal(outcome.failed, 0);
  t.equal(outcome.lost, 0, 'nothing lost');
  t.equal(outcome.duplicated, 0, 'nothing completed twice');
});
