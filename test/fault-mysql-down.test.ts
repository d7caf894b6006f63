import t from 'tap';
import { stopMysql } from './helpers/faults.js';

/**
 * MySQL (a private MariaDB) stopped for 20 s while jobs run: enqueue POSTs
 * answer 503 quickly and write nothing; workers keep retrying their ledger
 * writes; once it is back every job completes exactly once, one record each.
 */
t.test('MySQL stopped for 20 s: 503s meanwhile, nothing lost or written twice', async (t) => {
  const outcome = await stopMysql(t, { jobs: 12, downMs: 20_000 });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.ok((outcome.extra['doneAtStop'] as number) < 12, `jobs were open when MySQL stopped (${outcome.extra['doneAtStop']} done)`);
  t.ok(outcome.extra['probesAll503'], `every POST and status read while MySQL was down was a 503 SERVICE_UNAVAILABLE (${outcome.notes})`);
  t.ok((outcome.extra['slowestProbeMs'] as number) < 2000, `answered within ${outcome.extra['slowestProbeMs']} ms`);
  t.equal(outcome.completed, 12, `completed ${JSON.stringify(outcome.codes)}`);
  t.equal(outcome.lost, 0);
  t.equal(outcome.duplicated, 0);
  t.equal(outcome.extra['records'], 12, 'one record per job, none written twice, none for the refused POSTs');
});
