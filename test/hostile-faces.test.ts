import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { DESCRIPTOR_LENGTH, personSketch, tagFaces } from '../db/repos/faces.js';
import { newId } from '../platform/ids.js';

/**
 * Issue 18: face tagging read every person of the vendor for every job, so a
 * vendor with many persons made each of its jobs load them all into a shared
 * worker. Now a job reads, per face, the persons nearest to it along an
 * indexed sketch of their mean descriptor (at most FACE_PERSON_CANDIDATES on
 * each side), and still finds the person a face belongs to. Another vendor's
 * tagging is unaffected.
 */
let seed = 7;
function random(): number {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
}
function gaussian(sigma: number): number {
  return Math.sqrt(-2 * Math.log(random() || 1e-9)) * Math.cos(2 * Math.PI * random()) * sigma;
}
function descriptor(sigma: number, around?: Float32Array): Float32Array {
  return Float32Array.from({ length: DESCRIPTOR_LENGTH }, (_, i) => (around?.[i] ?? 0) + gaussian(sigma));
}
function sumBuffer(d: Float32Array): Buffer {
  const buffer = Buffer.alloc(DESCRIPTOR_LENGTH * 8);
  d.forEach((v, i) => buffer.writeDoubleLE(v, i * 8));
  return buffer;
}

t.test("tagging reads a bounded set of a vendor's persons and still finds the right one", async (t) => {
  const env = await isolatedEnv(t);
  const app = await testApp(t, env);
  const attacker = await testVendor(app, { name: 'Many persons', faceTagging: true });
  const neighbour = await testVendor(app, { name: 'Neighbour', faceTagging: true });

  // 5,000 persons of one face each, spread as far apart as real faces of different people
  const persons = Array.from({ length: 5000 }, () => ({ id: newId(), mean: descriptor(0.2) }));
  for (let i = 0; i < persons.length; i += 500) {
    await app.db
      .insertInto('persons')
      .values(
        persons.slice(i, i + 500).map((p) => {
          const sum = sumBuffer(p.mean);
          return { id: p.id, vendor_id: attacker.vendorId, face_count: 1, descriptor_sum: sum, sketch: personSketch(sum, 1) };
        }),
      )
      .execute();
  }

  const request = (vendorId: string, recordId: string, faces: Float32Array[]) =>
    tagFaces(app.db, {
      vendorId,
      jobId: newId(),
      projectId: 'p',
      recordId,
      imageWidth: 800,
      imageHeight: 600,
      faces: faces.map((d, i) => ({ box: { x: i * 100, y: 0, width: 80, height: 80 }, score: 0.9, descriptor: d })),
      maxDistance: 0.4,
      candidates: 50,
    });

  const neighbourFace = descriptor(0.2);
  const [probe, neighbourFirst] = await Promise.all([
    request(
      attacker.vendorId,
      'crowd',
      [0, 1000, 2000, 3000].map((i) => descriptor(0.001, persons[i]!.mean)),
    ),
    request(neighbour.vendorId, 'n1', [neighbourFace]),
  ]);
  t.same(
    probe.faces.map((f) => f.personId),
    [0, 1000, 2000, 3000].map((i) => persons[i]!.id),
    'each face joins the person it belongs to (of 5,000), as reading them all would',
  );
  t.ok(probe.personsRead < 4 * 1000, `${probe.personsRead} person rows read for 4 faces, 50 at a time, where reading them all was 4 × 5,000`);

  const stranger = await request(attacker.vendorId, 'stranger', [descriptor(0.2)]);
  t.equal(stranger.faces[0]?.newPerson, true, 'a face like no one founds a new person');
  t.ok(stranger.personsRead <= 2 * 20 * 50, `${stranger.personsRead} rows: a face reads at most 20 pages on each side`);

  const neighbourSecond = await request(neighbour.vendorId, 'n2', [descriptor(0.001, neighbourFace)]);
  t.equal(neighbourSecond.faces[0]?.personId, neighbourFirst.faces[0]?.personId, "the neighbour's faces group as before");
  t.equal(neighbourSecond.personsRead, 1, "and read only the neighbour's own person");
});
