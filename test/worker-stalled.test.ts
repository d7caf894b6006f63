import t from 'tap';
import Bull from 'bull';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { attemptRows, queueResize, testLedger, waitForFinal } from './helpers/jobs.js';
import { startAttempt } from '../db/repos/jobs.js';

/**
 * A job whose worker dies mid-attempt more often than MAX_STALLED_COUNT
 * allows (here 0: the first death) is given up by Bull; the ledger records a
 * dead run (db/repos/jobs.ts, recordDeadRun) and queues the job again, or
 * dead-letters it when it is out of attempts. A first dead run costs nothing
 * (the job may have shared its worker with the one that killed it) and makes
 * the job a suspect that runs alone; a suspect's dead run counts as a failed
 * attempt (JOB_STALLED). The dying worker is a Bull client that takes the
 * job, starts its attempt in the ledger and vanishes without ever renewing
 * its lock.
 */
t.test('a job Bull gives up on after stalls is counted by the ledger, retried or dead-lettered', async (t) => {
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    LOCK_DURATION_MS: '1000',
    STALLED_INTERVAL_MS: '1000',
    MAX_STALLED_COUNT: '0',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(32, 24), 'image/jpeg'));
  const vendor = await testVendor(app);
  const admin = await testVendor(app, { role: 'admin' });
  const retried = await queueResize(app, vendor, `${images.url}/p.jpg`, 'rec-retried');
  const doomed = await queueResize(app, vendor, `${images.url}/p.jpg`, 'rec-doomed');
  // Doomed is already a suspect (an earlier run of it died with its worker): it runs alone, so this death is its own.
  await app.db.updateTable('jobs').set({ max_attempts: 1, stalls: 1 }).where('id', '=', doomed).execute();

  // The worker that dies: takes both jobs, starts their attempts, never renews its locks.
  const ledger = testLedger(t, app.db, env);
  const ghost = new Bull('image-processing', { prefix: env['BULL_PREFIX'] as string, redis: env['REDIS_URL'] as string, settings: { lockDuration: 1000 } });
  for (let i = 0; i < 2; i++) {
    const job = await ghost.getNextJob();
    t.ok(job, 'the ghost took a job');
    t.ok(await startAttempt(ledger, String(job?.id), 'ghost'));
  }
  await ghost.close();

  await testWorker(t, env);
  const ok = await waitForFinal(app.db, retried);
  t.equal(ok.status, 'completed');
  t.equal(ok.attempts, 1, 'its first dead run cost it nothing');
  t.equal(ok.stalls, 1, 'but made it a suspect');
  t.same(
    (await attemptRows(app.db, retried)).map((a) => [a.attempt, a.outcome, a.error_code]),
    [[1, 'completed', null]],
  );
  const dead = await waitForFinal(app.db, doomed);
  t.equal(dead.status, 'dead');
  t.equal(dead.error_code, 'JOB_STALLED');
  const letters = await app.inject({ method: 'GET', url: '/api/admin/dead-letters', headers: admin.auth });
  t.same(
    letters.json().items.map((i: { jobId: string }) => i.jobId),
    [doomed],
  );
});
