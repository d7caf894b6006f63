import t from 'tap';
import { loseRedis } from './helpers/faults.js';

/**
 * Redis restarted without persistence while a worker is busy (a private
 * Redis). The FLUSHALL case, with 100 jobs, is test/worker-reconcile.test.ts.
 * The worker's connections come back by themselves; the reconciler
 * re-queues every job the ledger still has open.
 */
t.test('Redis restarted without persistence mid-run: the reconciler re-queues, all complete once', async (t) => {
  const outcome = await loseRedis(t, { jobs: 60, mode: 'restart' });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.ok((outcome.extra['doneAtFault'] as number) < 60, `some jobs were still open when Redis lost them (${outcome.extra['doneAtFault']} done)`);
  t.equal(outcome.completed, 60, `completed ${JSON.stringify(outcome.codes)}`);
  t.equal(outcome.lost, 0);
  t.equal(outcome.duplicated, 0);
});
