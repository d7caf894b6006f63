import t from 'tap';
import { readFile } from 'node:fs/promises';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';
import { DEMO_FACES, demoPhotoPath, portrait } from './helpers/faces.js';
import { enqueueJobs, type JobSpec } from '../backend/enqueue.js';

/**
 * Face tagging with real faces, through a real worker: the `faces`
 * processing operation and the face-crop `tagFaces` option store a
 * descriptor per face and group a vendor's faces into persons, which the
 * persons API then filters photos by.
 */
t.test('two crops of the same person land in one person, a different person in another', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'face-crop,image-processing', JOB_TIMEOUT_MS: '120000' });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  const vendor = await testVendor(app, { faceTagging: true });
  images.route('/ann-a.jpg', serveBytes(await portrait(DEMO_FACES.ann), 'image/jpeg'));
  // another framing of the same face, smaller and more compressed
  images.route('/ann-b.jpg', serveBytes(await portrait(DEMO_FACES.ann, { widen: 2.0, heighten: 2.4, shift: 0.15, scale: 0.8, quality: 75 }), 'image/jpeg'));
  images.route('/bea.jpg', serveBytes(await portrait(DEMO_FACES.bea), 'image/jpeg'));
  images.route('/group.jpg', serveBytes(await readFile(demoPhotoPath(DEMO_FACES.ann.sample)), 'image/jpeg'));

  const spec = (recordId: string, path: string, job: Pick<JobSpec, 'kind' | 'options'>): JobSpec => ({
    ...job,
    projectId: 'party',
    recordId,
    source: { type: 'url', url: `${images.url}${path}` },
  });
  const { jobIds } = await enqueueJobs(
    app,
    vendor.vendorId,
    [
      spec('ann-a', '/ann-a.jpg', { kind: 'process', options: { operations: [{ op: 'faces' }] } }),
      spec('ann-b', '/ann-b.jpg', { kind: 'process', options: { operations: [{ op: 'resize', width: 480 }, { op: 'faces' }] } }),
      spec('bea', '/bea.jpg', { kind: 'face-crop', options: { mode: 'passport', tagFaces: true } }),
    ],
    { attempts: 3, batch: false },
  );
  const settle = (jobId: string) =>
    waitFor(
      async () => {
        const body = (await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth })).json();
        return ['completed', 'failed', 'dead'].includes(body.state) ? body : undefined;
      },
      120_000,
      200,
    );
  const [annA, annB, bea] = await Promise.all(jobIds.map(settle));
  for (const job of [annA, annB, bea]) t.equal(job.state, 'completed', JSON.stringify(job.error));

  const ann = annA.result.faces;
  t.match(ann, { found: 1, skipped: 0, superseded: false });
  const annPerson = ann.faces[0].personId;
  t.equal(annB.result.faces.faces[0].personId, annPerson, 'the second crop of the same face joins the same person');
  t.ok(annB.result.faces.faces[0].box.width < 480, 'boxes refer to the image as it was at the faces step (after the resize)');
  t.same(
    annB.result.steps.map((s: { op: string }) => s.op),
    ['resize', 'faces'],
    'the faces step is a step of its own',
  );
  t.equal(annB.result.outputs.length, 1, 'a data step stores no image; the resize output stands');
  const beaPerson = bea.result.faces.faces[0].personId;
  t.not(beaPerson, annPerson, 'a different person gets another person');
  t.match(bea.result, { width: 827, height: 1063, checks: { pass: true } }, 'tagging rides along a passport crop');

  t.test('a group photo: the known face joins its person, the others found new ones', async (t) => {
    const {
      jobIds: [groupJob],
    } = await enqueueJobs(
      app,
      vendor.vendorId,
      [spec('group', '/group.jpg', { kind: 'process', options: { operations: [{ op: 'faces', detector: 'ssdMobilenetv1' }] } })],
      {
        attempts: 3,
        batch: false,
      },
    );
    const group = await settle(groupJob as string);
    t.equal(group.state, 'completed', JSON.stringify(group.error));
    const faces = group.result.faces.faces as { personId: string; box: { x: number } }[];
    t.equal(faces.length, 3);
    const annInGroup = faces.find((f) => Math.abs(f.box.x - DEMO_FACES.ann.box.x) < 60);
    t.equal(annInGroup?.personId, annPerson, 'the face the portraits were cut from is recognised in the group photo');
    t.equal(new Set(faces.map((f) => f.personId)).size, 3, 'three people, three persons');
  });

  t.test('the persons API filters the vendor’s photos by person', async (t) => {
    const list = (await app.inject({ method: 'GET', url: '/api/persons', headers: vendor.auth })).json();
    t.equal(list.persons.length, 4, 'ann, bea and the two others in the group photo');
    const annSummary = list.persons.find((p: { personId: string }) => p.personId === annPerson);
    t.match(annSummary, { faceCount: 3, recordCount: 3 });
    const records = (await app.inject({ method: 'GET', url: `/api/persons/${annPerson}/records`, headers: vendor.auth })).json();
    t.same(records.records.map((r: { recordId: string }) => r.recordId).sort(), ['ann-a', 'ann-b', 'group']);
    t.equal(records.records.find((r: { recordId: string }) => r.recordId === 'ann-a').photoUrl, `${images.url}/ann-a.jpg`);
    const beaRecords = (await app.inject({ method: 'GET', url: `/api/persons/${beaPerson}/records`, headers: vendor.auth })).json();
    t.same(
      beaRecords.records.map((r: { recordId: string }) => r.recordId),
      ['bea'],
    );
    t.match(beaRecords.records[0].processedPhotoUrl, /passport\.jpg$/, 'the record links its crop');
  });

  t.test('a vendor that has not opted in to face tagging gets no faces stored', async (t) => {
    const off = await testVendor(app, { name: 'No faces' });
    const {
      jobIds: [job],
    } = await enqueueJobs(app, off.vendorId, [spec('ann-off', '/ann-a.jpg', { kind: 'process', options: { operations: [{ op: 'faces' }] } })], {
      attempts: 3,
      batch: false,
    });
    const ended = await waitFor(async () => {
      const body = (await app.inject({ method: 'GET', url: `/api/image-queue/job/${job}`, headers: off.auth })).json();
      return ['completed', 'failed', 'dead'].includes(body.state) ? body : undefined;
    }, 60_000);
    t.equal(ended.state, 'failed');
    t.equal(ended.error.code, 'FACE_TAGGING_OFF');
    t.equal(ended.attempts, 1, 'not retried');
    const faces = await app.db.selectFrom('faces').select('id').where('vendor_id', '=', off.vendorId).execute();
    t.same(faces, [], 'no descriptor stored');
  });
});
