import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { DESCRIPTOR_LENGTH, tagFaces, type FaceToTag } from '../db/repos/faces.js';
import { claimRecords } from '../db/repos/records.js';
import { newId } from '../platform/ids.js';

/**
 * Grouping faces into persons, and the persons API, with descriptors made
 * up for the purpose: each "person" is a random point in descriptor space
 * and each photo of them a small jitter around it (real descriptors of one
 * person sit about 0.1–0.3 apart, of different persons 0.45 and more). The
 * real-face path is in face-persons.test.ts.
 */
function seeded(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  };
}

function person(seed: number): Float32Array {
  const r = seeded(seed);
  return Float32Array.from({ length: DESCRIPTOR_LENGTH }, () => r() * 0.3);
}

function photoOf(base: Float32Array, seed: number): Float32Array {
  const r = seeded(seed);
  return base.map((v) => v + r() * 0.02);
}

const face = (descriptor: Float32Array, x = 10): FaceToTag => ({ box: { x, y: 20, width: 100, height: 120 }, score: 0.9, descriptor });

t.test('faces are grouped into vendor-scoped persons, served by /api/persons', async (t) => {
  const env = await isolatedEnv(t);
  const app = await testApp(t, env);
  const a = await testVendor(app, { name: 'Studio A', faceTagging: true });
  const b = await testVendor(app, { name: 'Studio B', faceTagging: true });
  const ann = person(1);
  const bob = person(2);
  const tag = (vendorId: string, recordId: string, faces: FaceToTag[], jobId = newId()) =>
    tagFaces(app.db, { vendorId, jobId, projectId: 'proj', recordId, imageWidth: 800, imageHeight: 600, faces, maxDistance: 0.4 });
  await claimRecords(app.db, [
    { vendorId: a.vendorId, projectId: 'proj', recordId: 'r1', photoUrl: 'https://img.example/r1.jpg', jobId: newId() },
    { vendorId: a.vendorId, projectId: 'proj', recordId: 'r2', photoUrl: 'https://img.example/r2.jpg', jobId: newId() },
  ]);

  const r1 = await tag(a.vendorId, 'r1', [face(photoOf(ann, 11))]);
  const r2 = await tag(a.vendorId, 'r2', [face(photoOf(ann, 12))]);
  const r3 = await tag(a.vendorId, 'r3', [face(photoOf(bob, 13))]);
  const annId = r1.faces[0]?.personId as string;
  const bobId = r3.faces[0]?.personId as string;
  t.equal(r1.faces[0]?.newPerson, true, 'the first face founds a person');
  t.equal(r2.faces[0]?.personId, annId, 'a second photo of the same person joins it');
  t.ok((r2.faces[0]?.distance as number) < 0.4);
  t.not(bobId, annId, 'a different person gets a person of their own');

  const group = await tag(a.vendorId, 'r4', [face(photoOf(bob, 14), 10), face(photoOf(ann, 15), 300)]);
  t.same(
    group.faces.map((f) => f.personId),
    [bobId, annId],
    'each face of a group photo joins its own person',
  );

  const twins = await tag(a.vendorId, 'r5', [face(photoOf(ann, 16), 10), face(photoOf(ann, 17), 300)]);
  t.equal(twins.faces[0]?.personId, annId);
  t.not(twins.faces[1]?.personId, annId, 'a person appears once in a photo: the look-alike founds a new person');

  t.test('a retried attempt finds its faces already tagged', async (t) => {
    const jobId = newId();
    const first = await tag(a.vendorId, 'r6', [face(photoOf(bob, 18))], jobId);
    const again = await tag(a.vendorId, 'r6', [face(photoOf(bob, 18))], jobId);
    t.same(
      again.faces.map((f) => f.faceId),
      first.faces.map((f) => f.faceId),
    );
    const list = (await app.inject({ method: 'GET', url: '/api/persons', headers: a.auth })).json();
    const bobSummary = list.persons.find((p: { personId: string }) => p.personId === bobId);
    t.equal(bobSummary.faceCount, 3, 'r3, r4 and r6, counted once');
  });

  t.test('re-tagging a record replaces its faces; an older job arriving late changes nothing', async (t) => {
    const oldJob = newId();
    await new Promise((r) => setTimeout(r, 5));
    const newJob = newId();
    const lookAlike = twins.faces[1]?.personId as string;
    // r5 tagged again by a newer job, now with only Ann: the look-alike person loses its only face and disappears
    const retag = await tag(a.vendorId, 'r5', [face(photoOf(ann, 19))], newJob);
    t.equal(retag.faces[0]?.personId, annId);
    const late = await tag(a.vendorId, 'r5', [face(photoOf(bob, 20))], oldJob);
    t.equal(late.superseded, true);
    t.same(late.faces, []);
    const gone = await app.inject({ method: 'GET', url: `/api/persons/${lookAlike}/records`, headers: a.auth });
    t.equal(gone.statusCode, 404, 'an emptied person is gone');
    const ids = (await app.inject({ method: 'GET', url: '/api/persons?limit=200', headers: a.auth }))
      .json()
      .persons.map((p: { personId: string }) => p.personId);
    t.same(ids.sort(), [annId, bobId].sort());
  });

  t.test('GET /api/persons pages through the vendor’s persons', async (t) => {
    const first = await app.inject({ method: 'GET', url: '/api/persons?limit=1', headers: a.auth });
    t.equal(first.statusCode, 200);
    const page1 = first.json();
    t.equal(page1.persons.length, 1);
    t.type(page1.nextCursor, 'string');
    const page2 = (await app.inject({ method: 'GET', url: `/api/persons?limit=1&cursor=${page1.nextCursor}`, headers: a.auth })).json();
    t.equal(page2.persons.length, 1);
    t.equal(page2.nextCursor, null);
    const all = [...page1.persons, ...page2.persons];
    const ann_ = all.find((p) => p.personId === annId);
    t.equal(ann_.faceCount, 4, 'r1, r2, r4, r5');
    t.equal(ann_.recordCount, 4);
    t.match(ann_.sample, { projectId: 'proj', face: { box: { x: Number, y: 20, width: 100, height: 120 }, imageWidth: 800, imageHeight: 600 } });
    t.match(ann_.createdAt, /^\d{4}-\d\d-\d\dT/);

    const bad = await app.inject({ method: 'GET', url: '/api/persons?limit=0', headers: a.auth });
    t.equal(bad.statusCode, 400);
    t.equal(bad.json().code, 'BAD_REQUEST');
    const anonymous = await app.inject({ method: 'GET', url: '/api/persons' });
    t.equal(anonymous.statusCode, 401);
  });

  t.test('GET /api/persons/:personId/records lists the photos a person is in', async (t) => {
    const res = await app.inject({ method: 'GET', url: `/api/persons/${annId}/records?limit=3`, headers: a.auth });
    t.equal(res.statusCode, 200);
    const page = res.json();
    t.equal(page.personId, annId);
    t.same(
      page.records.map((r: { recordId: string }) => r.recordId),
      ['r1', 'r2', 'r4'],
    );
    t.equal(page.records[0].photoUrl, 'https://img.example/r1.jpg', 'the record’s photo');
    t.equal(page.records[0].status, 'queued');
    t.equal(page.records[2].photoUrl, null, 'a record the vendor never registered has no photo URL');
    t.type(page.nextCursor, 'string');
    const rest = (await app.inject({ method: 'GET', url: `/api/persons/${annId}/records?cursor=${page.nextCursor}`, headers: a.auth })).json();
    t.same(
      rest.records.map((r: { recordId: string }) => r.recordId),
      ['r5'],
    );
    t.equal(rest.nextCursor, null);
    const filtered = (await app.inject({ method: 'GET', url: `/api/persons/${annId}/records?projectId=other`, headers: a.auth })).json();
    t.same(filtered.records, []);
    const missing = await app.inject({ method: 'GET', url: `/api/persons/${newId()}/records`, headers: a.auth });
    t.equal(missing.statusCode, 404);
    t.equal(missing.json().code, 'NOT_FOUND');
  });

  t.test('another vendor neither sees nor joins these persons', async (t) => {
    const theirs = await tag(b.vendorId, 'r1', [face(photoOf(ann, 21))]);
    t.not(theirs.faces[0]?.personId, annId, 'the same face at another vendor founds their own person');
    t.equal(theirs.faces[0]?.newPerson, true);
    const foreign = await app.inject({ method: 'GET', url: `/api/persons/${annId}/records`, headers: b.auth });
    t.equal(foreign.statusCode, 404);
    const list = (await app.inject({ method: 'GET', url: '/api/persons', headers: b.auth })).json();
    t.same(
      list.persons.map((p: { personId: string }) => p.personId),
      [theirs.faces[0]?.personId],
    );
  });
});
