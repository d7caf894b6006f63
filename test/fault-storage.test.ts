import t from 'tap';
import { failingStorage } from './helpers/faults.js';

/**
 * Storage (the Cloudinary stand-in, a real local server) answering 500s.
 * test/cloudinary-storage.test.ts covers the adapter's own retries; here the
 * whole job path: retried until storage answers, or dead-lettered with a
 * clear error and nothing half-written.
 */
t.test('storage that recovers: the uploads are retried and every job completes', async (t) => {
  const outcome = await failingStorage(t, { jobs: 3, recoverAfter: 4 });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.equal(outcome.completed, 3, `completed ${JSON.stringify(outcome.codes)}`);
  t.equal(outcome.lost, 0);
  t.equal(outcome.duplicated, 0);
  t.ok((outcome.extra['uploadsTried'] as number) >= 3 + 4, 'the failed uploads were tried again');
});

t.test('storage that never recovers: dead-lettered with STORAGE_FAILED, no partial records', async (t) => {
  const outcome = await failingStorage(t, { jobs: 3, recoverAfter: -1 });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.equal(outcome.failed, 3);
  t.same(outcome.codes, { STORAGE_FAILED: 3 });
  t.equal(outcome.extra['deadLetters'], 3, 'each is in the dead-letter queue');
  t.equal(outcome.extra['uploadsTried'], 3 * 3 * 2, 'three attempts of two tries (STORAGE_RETRIES=1) per job');
  t.match(outcome.extra['errorMessage'], /500|storage|upload/i, `a clear error: ${outcome.extra['errorMessage']}`);
  t.equal(outcome.extra['partialResults'], 0, 'no result fields');
  t.equal(outcome.extra['partialRecords'], 0, 'no record shows a result');
  t.equal(outcome.lost, 0);
});
