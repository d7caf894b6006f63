import t from 'tap';
import { rembgInstancesFail } from './helpers/faults.js';

/**
 * The rembg row of the reliability table: three real rembg processes, one
 * behind a slow link and one SIGKILLed mid-run. test/rembg-pool.test.ts
 * shows each fault alone, and the pool's spreading and circuits in detail.
 */
t.test('one of three rembg instances killed and one slow: no background removal fails', async (t) => {
  const outcome = await rembgInstancesFail(t, { jobs: 24 });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.ok((outcome.extra['doneAtKill'] as number) < 24, 'jobs were still running when the instance died');
  t.equal(outcome.completed, 24, `completed ${JSON.stringify(outcome.codes)}`);
  t.equal(outcome.failed, 0, '0 failed jobs');
  t.equal(outcome.lost, 0);
  t.equal(outcome.duplicated, 0);
});
