import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { attemptRows, queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { payloadCheck } from '../jobs/payload-check.js';
import { queueOf } from '../platform/queues.js';
import { BUILTIN_KINDS } from '../jobs/kinds.js';

/**
 * A Bull payload is checked against its kind's TypeBox schema when the job
 * starts (jobs/kinds.ts, payloadSchema). One that does not match (written to
 * Redis by something other than the API's enqueue) fails at once, before any
 * work, not retried: INVALID_PAYLOAD in the ledger, Bull's copy discarded.
 * Jobs around it run normally.
 */
t.test('an invalid payload fails at once with INVALID_PAYLOAD, recorded in the ledger, and is not retried', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(32, 24), 'image/jpeg'));
  const vendor = await testVendor(app);
  const other = await testVendor(app);
  const bad = await queueResize(app, vendor, `${images.url}/p.jpg`, 'rec-bad');
  const good = await queueResize(app, other, `${images.url}/p.jpg`, 'rec-good');

  // Rewrite the waiting job's payload in Redis: an operation the schema does not know, and a source of the wrong shape.
  const queue = app.queues['image-processing'];
  const bullJob = await queue.getJob(bad);
  t.ok(bullJob);
  const data = bullJob!.data as unknown as Record<string, unknown>;
  await bullJob!.update({ ...data, source: { type: 'ftp', path: '/etc/passwd' }, options: { operations: [{ op: 'explode' }] } } as never);
  // And a Bull job with no ledger row behind it and no payload to speak of.
  const stray = await queue.add({ hello: 'world' } as never, { jobId: 'stray-job' });

  await testWorker(t, env);
  const failed = await waitForFinal(app.db, bad);
  t.equal(failed.status, 'failed', 'failed, not retried and not dead');
  t.equal(failed.error_code, 'INVALID_PAYLOAD');
  t.match(failed.error_message, /does not match its kind/);
  t.equal(failed.attempts, 1, 'one attempt');
  t.same(
    (await attemptRows(app.db, bad)).map((a) => [a.attempt, a.outcome, a.error_code]),
    [[1, 'failed', 'INVALID_PAYLOAD']],
  );
  const record = await app.db
    .selectFrom('data_records')
    .select(['processing_status', 'error_code'])
    .where('record_id', '=', 'rec-bad')
    .executeTakeFirstOrThrow();
  t.same(record, { processing_status: 'failed', error_code: 'INVALID_PAYLOAD' }, 'the record shows it');
  const events = await app.db.selectFrom('job_events').select(['type', 'error_code']).where('job_id', '=', bad).orderBy('seq').execute();
  t.same(
    events.map((e) => e.type),
    ['queued', 'active', 'failed'],
    'the event log has its failure',
  );

  const bullState = await waitFor(async () => {
    const j = await queue.getJob(bad);
    const state = await j?.getState();
    return state === 'failed' ? j : undefined;
  });
  t.equal(bullState.attemptsMade, 1, 'Bull did not retry it');
  const strayState = await waitFor(async () => ((await stray.getState()) === 'failed' ? stray : undefined));
  t.ok(strayState, 'the stray Bull job failed too');
  const strayJob = await queue.getJob('stray-job');
  t.equal(strayJob?.attemptsMade, 1, 'and was not retried');
  t.match(strayJob?.failedReason, /INVALID_PAYLOAD/);

  const ok = await waitForFinal(app.db, good);
  t.equal(ok.status, 'completed', `another vendor's job completes (${ok.error_code}: ${ok.error_message})`);
  t.equal(images.hits.get('/p.jpg'), 1, 'only the valid job fetched its source: the invalid one did no work');
});

t.test("every payload the API's enqueue writes passes its kind's check", async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const photoUrl = 'https://images.example.com/p.jpg?size=large';
  const bodies: [string, Record<string, unknown>][] = [
    ['process-queue', { operations: [{ op: 'resize', width: 8 }] }],
    [
      'process-queue',
      {
        operations: [
          { op: 'rotate', angle: 45 },
          { op: 'resize', width: 64, height: 64, fit: 'cover' },
          { op: 'force_resize', width: 32, height: 16 },
          { op: 'convert', format: 'webp', quality: 70, lossless: false },
          { op: 'variants', sizes: { sm: 16, md: 24 } },
          { op: 'placeholder', size: 8 },
          { op: 'metadata', colors: 3 },
          { op: 'strip' },
          { op: 'faces' },
        ],
      },
    ],
    ['process-queue', { preset: 'nextgallery' }],
    ['process-queue', { preset: 'gallery-variants' }],
    ['remove-bg-queue', {}],
    [
      'remove-bg-queue',
      { options: { format: 'zip', background: '#ffffff80', crop: true, cropMargin: '10px', scale: '80%', position: 'center', subject: 'person' } },
    ],
    ['remove-bg-queue', { options: { backgroundImageUrl: 'https://images.example.com/bg.png', channels: 'alpha', roi: '0 0 50% 50%', maxPixels: 1000000 } }],
    ['crop-face-queue', { mode: 'passport' }],
    ['crop-face-queue', { mode: 'idcard' }],
  ];
  const ids: string[] = [];
  for (const [route, extra] of bodies) {
    const res = await app.inject({
      method: 'POST',
      url: `/api/image-queue/${route}`,
      headers: vendor.auth,
      payload: { recordId: `r-${ids.length}`, projectId: 'p', photoUrl, ...extra },
    });
    t.equal(res.statusCode, 202, `${route} ${JSON.stringify(extra)}: ${res.statusCode === 202 ? 'queued' : res.body}`);
    if (res.statusCode === 202) ids.push((res.json() as { jobId: string }).jobId);
  }
  for (const id of ids) {
    const row = await app.db.selectFrom('jobs').select(['kind']).where('id', '=', id).executeTakeFirstOrThrow();
    const spec = app.jobKinds.get(row.kind);
    const bullJob = await queueOf(app.queues, spec.queue).getJob(id);
    t.same(payloadCheck(spec).problems(bullJob?.data), null, `${row.kind} ${JSON.stringify(bullJob?.data.options)}`);
  }
  t.same(payloadCheck(app.jobKinds.get('process')).problems({ ...(await queueOf(app.queues, 'image-processing').getJob(ids[0]!))?.data, kind: 'remove-bg' }), [
    "/kind: Expected 'process'",
  ]);
});

t.test("a forged but well-formed payload in Redis changes nothing: the worker works from the ledger's copy", async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const images = await testServer(t);
  images.route('/mine.jpg', serveBytes(await makeJpeg(32, 24), 'image/jpeg'));
  images.route('/theirs.jpg', serveBytes(await makeJpeg(48, 40), 'image/jpeg'));
  const vendor = await testVendor(app);
  const victim = await testVendor(app);
  const jobId = await queueResize(app, vendor, `${images.url}/mine.jpg`, 'rec-forged');
  const row = await app.db.selectFrom('jobs').select(['output_prefix']).where('id', '=', jobId).executeTakeFirstOrThrow();

  // Someone with write access to Redis rewrites the waiting job: another vendor, project, source, output place and operations,
  // all of a shape the payload schema accepts.
  const bullJob = await app.queues['image-processing'].getJob(jobId);
  const data = bullJob!.data as unknown as Record<string, unknown>;
  const forged = {
    ...data,
    vendorId: victim.vendorId,
    projectId: 'their-project',
    source: { type: 'url', url: `${images.url}/theirs.jpg` },
    outputPrefix: `${victim.vendorId}/forged`,
    options: { operations: [{ op: 'resize', width: 16 }] },
  };
  t.same(payloadCheck(BUILTIN_KINDS.byQueue('image-processing')!).problems(forged), null, 'the forged payload is well-formed');
  await bullJob!.update(forged as never);

  await testWorker(t, env);
  const done = await waitForFinal(app.db, jobId);
  t.equal(done.status, 'completed', `${done.error_code}: ${done.error_message}`);
  t.equal(done.vendor_id, vendor.vendorId, 'still the vendor that queued it');
  t.equal(images.hits.get('/mine.jpg'), 1, "the ledger's source was fetched");
  t.notOk(images.hits.get('/theirs.jpg'), 'the forged source never was');
  const result = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth });
  const body = JSON.stringify(result.json());
  t.match(body, row.output_prefix, "its output is under the ledger's prefix");
  t.notMatch(body, victim.vendorId, 'nothing names the other vendor or is stored under its prefix');
  t.match(result.json(), { result: { outputs: [{ width: 8 }] } }, "the ledger's operations ran (resize to 8), not the forged ones");
  const victimJobs = await app.inject({ method: 'GET', url: '/api/image-queue/jobs', headers: victim.auth });
  t.notMatch(victimJobs.body, jobId, "nothing of it reached the other vendor's lists");
});
