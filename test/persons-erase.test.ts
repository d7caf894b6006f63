import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { DESCRIPTOR_LENGTH, tagFaces, type FaceToTag } from '../db/repos/faces.js';
import { claimRecords } from '../db/repos/records.js';
import { deleteJobs } from '../db/repos/lifecycle.js';
import { newId } from '../platform/ids.js';

/**
 * Faces are opt-in and erasable (issue 21): tagging stores nothing for a
 * vendor that has not opted in; a vendor names, merges and erases its
 * persons, and erasing leaves no face row or descriptor behind; a job's
 * faces go with the job; another vendor's person ids are 404.
 */
function point(seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: DESCRIPTOR_LENGTH }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31 - 0.5) * 0.3;
  });
}
const face = (descriptor: Float32Array, x = 10): FaceToTag => ({ box: { x, y: 20, width: 100, height: 120 }, score: 0.9, descriptor });

const faceRows = (app: FastifyInstance, vendorId: string) => app.db.selectFrom('faces').selectAll().where('vendor_id', '=', vendorId).execute();
const personRows = (app: FastifyInstance, vendorId: string) => app.db.selectFrom('persons').selectAll().where('vendor_id', '=', vendorId).execute();

function tagger(app: FastifyInstance) {
  return (vendor: TestVendor, recordId: string, faces: FaceToTag[], jobId = newId()) =>
    tagFaces(app.db, { vendorId: vendor.vendorId, jobId, projectId: 'proj', recordId, imageWidth: 800, imageHeight: 600, faces, maxDistance: 0.4 });
}

t.test('face tagging is off for a new vendor until an admin turns it on', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const admin = await testVendor(app, { role: 'admin', name: 'Ops' });
  const vendor = await testVendor(app);
  const tag = tagger(app);

  const view = await app.inject({ method: 'GET', url: `/api/admin/vendors/${vendor.vendorId}`, headers: admin.auth });
  t.equal(view.json().faceTagging, false, 'off by default');
  await t.rejects(tag(vendor, 'r1', [face(point(1))]), { code: 'FACE_TAGGING_OFF' });
  t.same(await faceRows(app, vendor.vendorId), [], 'nothing stored');

  const on = await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${vendor.vendorId}`, headers: admin.auth, payload: { faceTagging: true } });
  t.equal(on.statusCode, 200, on.body);
  t.equal(on.json().faceTagging, true);
  t.equal((await tag(vendor, 'r1', [face(point(1))])).faces.length, 1, 'tagged once turned on');

  const self = await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${vendor.vendorId}`, headers: vendor.auth, payload: { faceTagging: true } });
  t.equal(self.statusCode, 403, 'a vendor cannot opt itself in through the admin API');

  await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${vendor.vendorId}`, headers: admin.auth, payload: { faceTagging: false } });
  await t.rejects(tag(vendor, 'r2', [face(point(2))]), { code: 'FACE_TAGGING_OFF' }, 'turned off again: nothing new is stored');
  t.equal((await faceRows(app, vendor.vendorId)).length, 1);
});

t.test('persons are named, merged and erased; another vendor gets 404', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const a = await testVendor(app, { name: 'A', faceTagging: true });
  const b = await testVendor(app, { name: 'B', faceTagging: true });
  const tag = tagger(app);
  const [ann, bob, cy, dee] = [point(1), point(2), point(3), point(4)];
  const annId = (await tag(a, 'r1', [face(ann)])).faces[0]?.personId as string;
  const bobId = (await tag(a, 'r2', [face(bob)])).faces[0]?.personId as string;
  const cyId = (await tag(a, 'r3', [face(cy), face(dee, 300)])).faces[0]?.personId as string;
  const bPerson = (await tag(b, 'r1', [face(ann)])).faces[0]?.personId as string;
  t.equal(new Set([annId, bobId, cyId]).size, 3);
  const call = (vendor: TestVendor, method: 'PATCH' | 'POST' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url: `/api/persons${url}`, headers: vendor.auth, ...(payload ? { payload } : {}) });

  // Naming.
  const named = await call(a, 'PATCH', `/${annId}`, { name: 'Ann' });
  t.equal(named.statusCode, 200, named.body);
  t.same(named.json(), { personId: annId, name: 'Ann', faceCount: 1 });
  const listed = (await app.inject({ method: 'GET', url: '/api/persons', headers: a.auth })).json();
  t.equal(listed.persons.find((p: { personId: string }) => p.personId === annId).name, 'Ann', 'the list shows the name');
  t.equal((await call(a, 'PATCH', `/${annId}`, { name: 'x'.repeat(192) })).statusCode, 400, 'a name over 191 characters is refused');
  t.equal((await call(a, 'PATCH', `/${annId}`, { name: null })).json().name, null, 'null clears it');
  t.equal((await call(a, 'PATCH', `/${annId}`, { name: 'Ann' })).json().name, 'Ann');
  t.equal((await call(a, 'PATCH', `/${annId}`, { name: '' })).json().name, null, 'so does an empty name');

  // Tenancy: B cannot touch A's persons, and A's are unchanged after B tried.
  t.equal((await call(b, 'PATCH', `/${annId}`, { name: 'Mine' })).statusCode, 404);
  t.equal((await call(b, 'DELETE', `/${annId}`)).statusCode, 404);
  t.equal((await call(b, 'POST', `/${bPerson}/merge`, { from: [annId] })).statusCode, 404, "B cannot merge A's person into its own");
  t.equal((await call(a, 'POST', `/${annId}/merge`, { from: [bPerson] })).statusCode, 404, "A cannot pull in B's person");
  t.equal((await personRows(app, a.vendorId)).length, 4, "A's persons are all there");
  t.equal((await personRows(app, b.vendorId)).length, 1, "B's person is untouched");

  // Scoped tokens: changing persons needs persons:write, which a project token cannot hold.
  const mint = (body: object) => app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: a.apiKey, ...body } });
  const readOnly = (await mint({ scope: 'persons:read' })).json().token as string;
  const denied = await app.inject({ method: 'DELETE', url: `/api/persons/${annId}`, headers: { authorization: `Bearer ${readOnly}` } });
  t.equal(denied.statusCode, 403, 'a persons:read token cannot erase');
  t.equal((await mint({ projectId: 'proj', scope: 'persons:write' })).statusCode, 400, 'persons:write is not given to a project token');

  // Merging: bob and cy become ann; the mean follows exactly.
  const before = await personRows(app, a.vendorId);
  const merged = await call(a, 'POST', `/${annId}/merge`, { from: [bobId, cyId] });
  t.equal(merged.statusCode, 200, merged.body);
  t.match(merged.json(), { personId: annId, faceCount: 3, merged: [bobId, cyId], facesMoved: 2 });
  const after = await personRows(app, a.vendorId);
  t.same(
    after.map((p) => p.id).sort(),
    before
      .map((p) => p.id)
      .filter((id) => id !== bobId && id !== cyId)
      .sort(),
    'the merged persons are gone',
  );
  const annRow = after.find((p) => p.id === annId);
  const sum = (id: string) => before.find((p) => p.id === id)?.descriptor_sum.readDoubleLE(0) as number;
  t.ok(Math.abs((annRow?.descriptor_sum.readDoubleLE(0) as number) - (sum(annId) + sum(bobId) + sum(cyId))) < 1e-9, 'descriptor sums add up');
  const records = (await app.inject({ method: 'GET', url: `/api/persons/${annId}/records`, headers: a.auth })).json();
  t.same(records.records.map((r: { recordId: string }) => r.recordId).sort(), ['r1', 'r2', 'r3']);
  t.equal((await call(a, 'POST', `/${annId}/merge`, { from: [annId] })).statusCode, 400, 'merging a person into itself is refused');

  // Erasing one person: its faces and descriptors go.
  const erased = await call(a, 'DELETE', `/${annId}`);
  t.equal(erased.statusCode, 200, erased.body);
  t.same(erased.json(), { personId: annId, deleted: true, facesErased: 3 });
  t.equal((await app.inject({ method: 'GET', url: `/api/persons/${annId}/records`, headers: a.auth })).statusCode, 404);
  t.notOk(
    (await faceRows(app, a.vendorId)).some((f) => f.person_id === annId),
    'no face row of the person is left',
  );
  t.equal((await call(a, 'DELETE', `/${annId}`)).statusCode, 404, 'erasing twice is 404');

  // Erasing all: nothing biometric is left for A; B keeps its own.
  await tag(a, 'r4', [face(bob)]);
  const all = await call(a, 'DELETE', '');
  t.equal(all.statusCode, 200, all.body);
  t.same(all.json(), { personsErased: 2, facesErased: 2 });
  t.same(await faceRows(app, a.vendorId), []);
  t.same(await personRows(app, a.vendorId), []);
  t.equal((await faceRows(app, b.vendorId)).length, 1, "B's faces stay");
});

t.test("a job's faces go with the job", async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const a = await testVendor(app, { name: 'A', faceTagging: true });
  const tag = tagger(app);
  const jobId = newId();
  await claimRecords(app.db, [{ vendorId: a.vendorId, projectId: 'proj', recordId: 'r1', photoUrl: 'https://img.example/r1.jpg', jobId }]);
  await app.db
    .insertInto('jobs')
    .values({
      id: jobId,
      vendor_id: a.vendorId,
      batch_id: null,
      kind: 'process',
      project_id: 'proj',
      record_id: 'r1',
      source_url: 'https://img.example/r1.jpg',
      source_key: null,
      options: '{}',
      output_prefix: `${a.vendorId}/proj/${jobId}`,
      status: 'completed',
      max_attempts: 3,
      error_code: null,
      error_message: null,
      started_at: null,
      finished_at: new Date(),
      duration_ms: 1,
    })
    .execute();
  const kept = (await tag(a, 'r2', [face(point(1))])).faces[0]?.personId as string;
  await tag(a, 'r1', [face(point(1)), face(point(2), 300)], jobId);
  t.equal((await faceRows(app, a.vendorId)).length, 3);
  const res = await app.inject({ method: 'DELETE', url: `/api/image-queue/job/${jobId}`, headers: a.auth });
  t.equal(res.statusCode, 200, res.body);
  const faces = await faceRows(app, a.vendorId);
  t.same(
    faces.map((f) => f.job_id),
    [faces[0]?.job_id].filter((id) => id !== jobId),
    "only the other job's face is left",
  );
  const persons = await personRows(app, a.vendorId);
  t.same(
    persons.map((p) => [p.id, p.face_count]),
    [[kept, 1]],
    'the person the job founded is gone; the shared one counts one face again',
  );
  t.same(await deleteJobs(app.db, a.vendorId, [jobId], 0), [], 'the job is gone');
});
