import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { enqueueJobs, type JobSpec } from '../backend/enqueue.js';

/**
 * One vendor's bulk must not starve another vendor's single job. Enqueue
 * gives a vendor's n-th waiting job Bull priority n (1 is served first), so a
 * vendor with nothing waiting goes ahead of the rest of a long bulk.
 */
t.test("vendor B's single job goes ahead of vendor A's waiting 500-item bulk", async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(24, 16), 'image/jpeg'));
  const vendorA = await testVendor(app, { name: 'A' });
  const vendorB = await testVendor(app, { name: 'B' });

  const specs: JobSpec[] = Array.from({ length: 500 }, (_, i) => ({
    kind: 'process',
    projectId: 'bulk',
    recordId: `a-${i}`,
    source: { type: 'url', url: `${images.url}/p.jpg` },
    options: { operations: [{ op: 'resize', width: 8 }] },
  }));
  // In slices: main's enqueueJobs writes all rows in one INSERT, which a
  // 500-row bulk makes larger than a small max_allowed_packet (reported).
  const bulk: string[] = [];
  for (let i = 0; i < specs.length; i += 50)
    bulk.push(...(await enqueueJobs(app, vendorA.vendorId, specs.slice(i, i + 50), { attempts: 3, batch: false })).jobIds);
  t.equal(bulk.length, 500);
  await testWorker(t, env);

  const doneOfA = async () =>
    Number(
      (
        await app.db
          .selectFrom('jobs')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('vendor_id', '=', vendorA.vendorId)
          .where('status', '=', 'completed')
          .executeTakeFirstOrThrow()
      ).n,
    );
  await waitFor(async () => (await doneOfA()) >= 10, 60_000);

  const single = await queueResize(app, vendorB, `${images.url}/p.jpg`, 'b-1');
  const job = await waitForFinal(app.db, single, 60_000);
  t.equal(job.status, 'completed');
  // Whatever the machine's speed: once B's job was queued, the next free slot took it. A's jobs that started in between
  // can only be ones a slot fetched as B arrived, at most one per slot (CONCURRENCY_IMAGE_PROCESSING, 5).
  const overtaking = Number(
    (
      await app.db
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('vendor_id', '=', vendorA.vendorId)
        .where('started_at', '>', job.created_at)
        .where('started_at', '<', job.started_at!)
        .executeTakeFirstOrThrow()
    ).n,
  );
  t.ok(overtaking <= 5, `${overtaking} of A's waiting jobs started between B's job being queued and starting`);
});
