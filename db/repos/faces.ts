import { sql, type Insertable, type Transaction } from 'kysely';
import type { Db } from '../connect.js';
import type { Database, Face, FacesTable, Person } from '../schema.js';
import { newId } from '../../platform/ids.js';
import { AppError } from '../../jobs/errors.js';

/**
 * Face tagging storage: a vendor's faces and the persons they are grouped
 * into. Grouping is greedy and incremental: each new face joins the person
 * whose mean descriptor is nearest, when nearer than the threshold, and
 * otherwise founds a new person. Faces of one photo never join the same
 * person (one person appears once in a photo).
 *
 * A vendor's tagging runs one at a time across all workers (the vendor row is
 * locked for the transaction), so two photos of a new person tagged at once
 * cannot found two persons.
 */
export const DESCRIPTOR_LENGTH = 128;
export const DEFAULT_PERSON_CANDIDATES = 250;

export interface FaceToTag {
  box: { x: number; y: number; width: number; height: number };
  score: number;
  descriptor: Float32Array;
}

export interface TagRequest {
  vendorId: string;
  jobId: string;
  projectId: string;
  recordId: string;
  imageWidth: number;
  imageHeight: number;
  faces: FaceToTag[];
  /** euclidean distance below which a face joins a person */
  maxDistance: number;
  /** persons read per face on each side of its sketch (FACE_PERSON_CANDIDATES, default DEFAULT_PERSON_CANDIDATES) */
  candidates?: number;
}

export interface TaggedFace {
  faceId: string;
  personId: string;
  index: number;
  box: { x: number; y: number; width: number; height: number };
  score: number;
  /** distance to the person's mean when the face joined; null when it founded the person */
  distance: number | null;
  newPerson: boolean;
}

export interface TagOutcome {
  faces: TaggedFace[];
  /** the record's faces came from a newer job; this one's were not stored */
  superseded: boolean;
  /** person rows read to tag these faces (at most faces × 2 × SCAN_PAGES pages, plus the record's previous persons; held one page at a time) */
  personsRead: number;
}

interface PersonState {
  id: string;
  count: number;
  sum: Float64Array;
  isNew: boolean;
  changed: boolean;
}

export const FACE_TAGGING_OFF_MESSAGE =
  'face tagging is off for this vendor; an admin turns it on (PATCH /api/admin/vendors/:vendorId { "faceTagging": true })';

/** Whether the vendor opted in to face tagging (issue 21: biometric data is opt-in). */
export async function faceTaggingOn(db: Db | Transaction<Database>, vendorId: string): Promise<boolean> {
  const row = await db.selectFrom('vendors').select('face_tagging').where('id', '=', vendorId).executeTakeFirst();
  return Boolean(row?.face_tagging);
}

export async function tagFaces(db: Db, request: TagRequest): Promise<TagOutcome> {
  return db.transaction().execute(async (trx) => {
    // Read under the vendor's lock: a vendor that turned tagging off (or erased its persons) meanwhile stores nothing new.
    const vendor = await trx.selectFrom('vendors').select(['id', 'face_tagging']).where('id', '=', request.vendorId).forUpdate().executeTakeFirst();
    if (!vendor?.face_tagging) throw new AppError('FACE_TAGGING_OFF', FACE_TAGGING_OFF_MESSAGE);

    // A retried attempt finds its faces already tagged.
    const mine = await trx.selectFrom('faces').selectAll().where('job_id', '=', request.jobId).orderBy('face_index').execute();
    if (mine.length > 0) return { faces: mine.map(toTagged), superseded: false, personsRead: 0 };

    // The record's faces from earlier jobs are replaced; a newer job's are kept.
    const previous = await trx
      .selectFrom('faces')
      .selectAll()
      .where('vendor_id', '=', request.vendorId)
      .where('project_id', '=', request.projectId)
      .where('record_id', '=', request.recordId)
      .execute();
    if (previous.some((f) => f.job_id > request.jobId)) return { faces: [], superseded: true, personsRead: 0 };

    const { persons, read: personsRead } = await loadCandidates(trx, request, previous);
    for (const face of previous) leave(persons, face);
    if (previous.length > 0) {
      await trx
        .deleteFrom('faces')
        .where(
          'id',
          'in',
          previous.map((f) => f.id),
        )
        .execute();
    }

    const tagged: TaggedFace[] = [];
    const rows: Insertable<FacesTable>[] = [];
    const taken = new Set<string>();
    for (const [index, face] of request.faces.entries()) {
      const match = nearest(persons, face.descriptor, taken);
      let person: PersonState;
      let distance: number | null = null;
      if (match && match.distance < request.maxDistance) {
        person = match.person;
        distance = match.distance;
      } else {
        person = { id: newId(), count: 0, sum: new Float64Array(DESCRIPTOR_LENGTH), isNew: true, changed: true };
        persons.set(person.id, person);
      }
      join(person, face.descriptor);
      taken.add(person.id);
      const box = roundBox(face.box);
      const faceId = newId();
      rows.push({
        id: faceId,
        vendor_id: request.vendorId,
        person_id: person.id,
        job_id: request.jobId,
        project_id: request.projectId,
        record_id: request.recordId,
        face_index: index,
        image_width: request.imageWidth,
        image_height: request.imageHeight,
        box_x: box.x,
        box_y: box.y,
        box_width: box.width,
        box_height: box.height,
        score: face.score,
        distance,
        descriptor: encodeDescriptor(face.descriptor),
      });
      tagged.push({ faceId, personId: person.id, index, box, score: face.score, distance, newPerson: person.isNew && person.count === 1 });
    }

    await savePersons(trx, request.vendorId, persons);
    if (rows.length > 0) await trx.insertInto('faces').values(rows).execute();
    return { faces: tagged, superseded: false, personsRead };
  });
}

// ---------------------------------------------------------------------------
// Reading, for the persons API. Pages are keyset-paginated by id (ULIDs sort
// by creation time); `cursor` is the last id of the previous page.

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface PersonSummary {
  person: Person;
  recordCount: number;
  /** the person's most recently tagged face, with its record */
  sample: (Face & { photo_url: string | null }) | null;
}

/**
 * A vendor's persons, by id. With `projectId`: only persons with a face in
 * that project, their counts and sample from that project alone (a
 * project-restricted token sees nothing of the others).
 */
export async function listPersons(
  db: Db,
  vendorId: string,
  page: { limit: number; cursor?: string | undefined; projectId?: string | undefined },
): Promise<Page<PersonSummary>> {
  const projectId = page.projectId;
  let q = db.selectFrom('persons').selectAll().where('vendor_id', '=', vendorId).where('face_count', '>', 0);
  if (projectId !== undefined) {
    q = q.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('faces')
          .select('faces.id')
          .whereRef('faces.person_id', '=', 'persons.id')
          .where('faces.vendor_id', '=', vendorId)
          .where('faces.project_id', '=', projectId),
      ),
    );
  }
  if (page.cursor) q = q.where('id', '>', page.cursor);
  const rows = await q
    .orderBy('id')
    .limit(page.limit + 1)
    .execute();
  const persons = rows.slice(0, page.limit);
  if (persons.length === 0) return { items: [], nextCursor: null };
  const ids = persons.map((p) => p.id);

  let countQuery = db
    .selectFrom('faces')
    .select(['person_id', sql<number>`COUNT(DISTINCT project_id, record_id)`.as('records'), sql<number>`COUNT(*)`.as('faces')])
    .where('vendor_id', '=', vendorId)
    .where('person_id', 'in', ids);
  let latestQuery = db
    .selectFrom('faces')
    .select(['person_id', (eb) => eb.fn.max('id').as('face_id')])
    .where('vendor_id', '=', vendorId)
    .where('person_id', 'in', ids);
  if (projectId !== undefined) {
    countQuery = countQuery.where('project_id', '=', projectId);
    latestQuery = latestQuery.where('project_id', '=', projectId);
  }
  const counts = await countQuery.groupBy('person_id').execute();
  const latest = await latestQuery.groupBy('person_id').execute();
  const samples = latest.length
    ? await db
        .selectFrom('faces as f')
        .leftJoin('data_records as d', (join) =>
          join.onRef('d.vendor_id', '=', 'f.vendor_id').onRef('d.project_id', '=', 'f.project_id').onRef('d.record_id', '=', 'f.record_id'),
        )
        .selectAll('f')
        .select('d.photo_url')
        .where('f.vendor_id', '=', vendorId)
        .where(
          'f.id',
          'in',
          latest.map((l) => l.face_id),
        )
        .execute()
    : [];
  const recordsBy = new Map(counts.map((c) => [c.person_id, Number(c.records)]));
  const facesBy = new Map(counts.map((c) => [c.person_id, Number(c.faces)]));
  const sampleBy = new Map(samples.map((s) => [s.person_id, s]));
  return {
    items: persons.map((person) => ({
      // Within one project, the person's face count is that project's.
      person: projectId === undefined ? person : { ...person, face_count: facesBy.get(person.id) ?? 0 },
      recordCount: recordsBy.get(person.id) ?? 0,
      sample: sampleBy.get(person.id) ?? null,
    })),
    nextCursor: rows.length > page.limit ? (persons[persons.length - 1]?.id ?? null) : null,
  };
}

/** One of the vendor's persons; with `projectId`, only one with a face in that project. */
export async function findPerson(db: Db, vendorId: string, personId: string, projectId?: string): Promise<Person | undefined> {
  let q = db.selectFrom('persons').selectAll().where('id', '=', personId).where('vendor_id', '=', vendorId).where('face_count', '>', 0);
  if (projectId !== undefined) {
    q = q.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('faces')
          .select('faces.id')
          .whereRef('faces.person_id', '=', 'persons.id')
          .where('faces.vendor_id', '=', vendorId)
          .where('faces.project_id', '=', projectId),
      ),
    );
  }
  return q.executeTakeFirst();
}

export interface PersonRecord {
  face: Face;
  photo_url: string | null;
  processed_photo_url: string | null;
  processing_status: string | null;
}

/** The records a person appears in: one entry per face (a person appears once per photo). */
export async function listPersonRecords(
  db: Db,
  vendorId: string,
  personId: string,
  page: { limit: number; cursor?: string | undefined; projectId?: string | undefined },
): Promise<Page<PersonRecord>> {
  let q = db
    .selectFrom('faces as f')
    .leftJoin('data_records as d', (join) =>
      join.onRef('d.vendor_id', '=', 'f.vendor_id').onRef('d.project_id', '=', 'f.project_id').onRef('d.record_id', '=', 'f.record_id'),
    )
    .selectAll('f')
    .select(['d.photo_url', 'd.processed_photo_url', 'd.processing_status'])
    .where('f.vendor_id', '=', vendorId)
    .where('f.person_id', '=', personId);
  if (page.projectId !== undefined) q = q.where('f.project_id', '=', page.projectId);
  if (page.cursor) q = q.where('f.id', '>', page.cursor);
  const rows = await q
    .orderBy('f.id')
    .limit(page.limit + 1)
    .execute();
  const items = rows.slice(0, page.limit).map(({ photo_url, processed_photo_url, processing_status, ...face }) => ({
    face: face as Face,
    photo_url,
    processed_photo_url,
    processing_status,
  }));
  return { items, nextCursor: rows.length > page.limit ? (items[items.length - 1]?.face.id ?? null) : null };
}

// ---------------------------------------------------------------------------

/**
 * The persons a job's faces may join, not all of the vendor's. A person's
 * sketch is its mean projected on a fixed unit direction, and a projection
 * never grows a distance, so a person whose sketch is farther from a face's
 * than the best distance found so far (or maxDistance) cannot be nearer.
 * Each face reads the persons outward from its own sketch, a page of
 * `candidates` rows at a time by index range, keeping only the nearest, and
 * stops as soon as no farther row can be nearer: memory is one page, and the
 * match is the one reading every person would find. A face reads at most
 * SCAN_PAGES pages on each side. The persons of the record's previous faces,
 * which those faces leave, are read too.
 */
async function loadCandidates(
  trx: Transaction<Database>,
  request: TagRequest,
  previous: readonly Face[],
): Promise<{ persons: Map<string, PersonState>; read: number }> {
  const pageSize = request.candidates ?? DEFAULT_PERSON_CANDIDATES;
  const persons = new Map<string, PersonState>();
  const keep = (r: { id: string; face_count: number; descriptor_sum: Buffer }) =>
    persons.get(r.id) ?? persons.set(r.id, { id: r.id, count: r.face_count, sum: decodeSum(r.descriptor_sum), isNew: false, changed: false }).get(r.id)!;
  let read = 0;
  const ids = [...new Set(previous.map((f) => f.person_id))];
  if (ids.length > 0) {
    const rows = await trx
      .selectFrom('persons')
      .select(['id', 'face_count', 'descriptor_sum'])
      .where('vendor_id', '=', request.vendorId)
      .where('id', 'in', ids)
      .execute();
    read += rows.length;
    rows.forEach(keep);
  }
  const taken = new Set<string>();
  for (const face of request.faces) {
    const s = sketchOf(face.descriptor);
    let best: { row: { id: string; face_count: number; descriptor_sum: Buffer }; distance: number } | null = null;
    for (const up of [true, false]) {
      let from: { sketch: number; id: string } | null = null;
      for (let page = 0; page < SCAN_PAGES; page++) {
        const reach = Math.min(request.maxDistance, best?.distance ?? Infinity);
        let q = trx
          .selectFrom('persons')
          .select(['id', 'face_count', 'descriptor_sum', 'sketch'])
          .where('vendor_id', '=', request.vendorId)
          .where('sketch', up ? '<=' : '>=', up ? s + reach : s - reach);
        if (from) {
          const after: { sketch: number; id: string } = from;
          q = q.where((eb) =>
            eb.or([eb('sketch', up ? '>' : '<', after.sketch), eb.and([eb('sketch', '=', after.sketch), eb('id', up ? '>' : '<', after.id)])]),
          );
        } else q = q.where('sketch', up ? '>=' : '<', s);
        const rows = await q
          .orderBy('sketch', up ? 'asc' : 'desc')
          .orderBy('id', up ? 'asc' : 'desc')
          .limit(pageSize)
          .execute();
        read += rows.length;
        for (const row of rows) {
          if (taken.has(row.id) || row.face_count === 0) continue;
          const distance = distanceTo(decodeSum(row.descriptor_sum), row.face_count, face.descriptor);
          if (!best || distance < best.distance) best = { row, distance };
        }
        const last = rows[rows.length - 1];
        if (!last || rows.length < pageSize) break;
        from = { sketch: last.sketch, id: last.id };
      }
    }
    if (best && best.distance < request.maxDistance) {
      taken.add(best.row.id);
      keep(best.row);
    }
  }
  return { persons, read };
}

/** Pages of FACE_PERSON_CANDIDATES a face reads at most on each side of its sketch. */
const SCAN_PAGES = 20;

function distanceTo(sum: Float64Array, count: number, descriptor: Float32Array): number {
  let squared = 0;
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) {
    const d = (sum[i] as number) / count - (descriptor[i] as number);
    squared += d * d;
  }
  return Math.sqrt(squared);
}

/** The fixed direction sketches project on: every component alike, unit length. */
const SKETCH_WEIGHT = 1 / Math.sqrt(DESCRIPTOR_LENGTH);

function sketchOf(descriptor: ArrayLike<number>, count = 1): number {
  let sum = 0;
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) sum += descriptor[i] as number;
  return count > 0 ? (sum * SKETCH_WEIGHT) / count : 0;
}

/** A person's sketch from its stored descriptor sum and face count (the migration fills existing rows with it). */
export function personSketch(descriptorSum: Buffer, count: number): number {
  return sketchOf(decodeSum(descriptorSum), count);
}

async function savePersons(trx: Transaction<Database>, vendorId: string, persons: Map<string, PersonState>): Promise<void> {
  const created = [...persons.values()].filter((p) => p.isNew && p.count > 0);
  if (created.length > 0) {
    await trx
      .insertInto('persons')
      .values(created.map((p) => ({ id: p.id, vendor_id: vendorId, face_count: p.count, descriptor_sum: encodeSum(p.sum), sketch: sketchOf(p.sum, p.count) })))
      .execute();
  }
  for (const p of persons.values()) {
    if (p.isNew || !p.changed) continue;
    if (p.count === 0) {
      await trx.deleteFrom('persons').where('id', '=', p.id).where('vendor_id', '=', vendorId).execute();
    } else {
      await trx
        .updateTable('persons')
        .set({ face_count: p.count, descriptor_sum: encodeSum(p.sum), sketch: sketchOf(p.sum, p.count), updated_at: sql<Date>`NOW(3)` })
        .where('id', '=', p.id)
        .where('vendor_id', '=', vendorId)
        .execute();
    }
  }
}

function nearest(persons: Map<string, PersonState>, descriptor: Float32Array, exclude: Set<string>): { person: PersonState; distance: number } | null {
  let best: { person: PersonState; distance: number } | null = null;
  for (const person of persons.values()) {
    if (person.count === 0 || exclude.has(person.id)) continue;
    let squared = 0;
    for (let i = 0; i < DESCRIPTOR_LENGTH; i++) {
      const d = (person.sum[i] as number) / person.count - (descriptor[i] as number);
      squared += d * d;
    }
    const distance = Math.sqrt(squared);
    if (!best || distance < best.distance) best = { person, distance };
  }
  return best;
}

function join(person: PersonState, descriptor: Float32Array): void {
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) person.sum[i] = (person.sum[i] as number) + (descriptor[i] as number);
  person.count += 1;
  person.changed = true;
}

function leave(persons: Map<string, PersonState>, face: Face): void {
  const person = persons.get(face.person_id);
  if (!person) return;
  const descriptor = decodeDescriptor(face.descriptor);
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) person.sum[i] = (person.sum[i] as number) - (descriptor[i] as number);
  person.count = Math.max(0, person.count - 1);
  if (person.count === 0) person.sum.fill(0);
  person.changed = true;
}

function toTagged(f: Face): TaggedFace {
  return {
    faceId: f.id,
    personId: f.person_id,
    index: f.face_index,
    box: { x: f.box_x, y: f.box_y, width: f.box_width, height: f.box_height },
    score: f.score,
    distance: f.distance,
    newPerson: f.distance === null,
  };
}

function roundBox(box: FaceToTag['box']): TaggedFace['box'] {
  return { x: Math.round(box.x), y: Math.round(box.y), width: Math.max(1, Math.round(box.width)), height: Math.max(1, Math.round(box.height)) };
}

export function encodeDescriptor(descriptor: Float32Array): Buffer {
  if (descriptor.length !== DESCRIPTOR_LENGTH) throw new Error(`a face descriptor has ${DESCRIPTOR_LENGTH} values, not ${descriptor.length}`);
  const buffer = Buffer.alloc(DESCRIPTOR_LENGTH * 4);
  descriptor.forEach((v, i) => buffer.writeFloatLE(v, i * 4));
  return buffer;
}

export function decodeDescriptor(buffer: Buffer): Float32Array {
  const out = new Float32Array(DESCRIPTOR_LENGTH);
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) out[i] = buffer.readFloatLE(i * 4);
  return out;
}

function encodeSum(sum: Float64Array): Buffer {
  const buffer = Buffer.alloc(DESCRIPTOR_LENGTH * 8);
  sum.forEach((v, i) => buffer.writeDoubleLE(v, i * 8));
  return buffer;
}

function decodeSum(buffer: Buffer): Float64Array {
  const out = new Float64Array(DESCRIPTOR_LENGTH);
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) out[i] = buffer.readDoubleLE(i * 8);
  return out;
}

// ---------------------------------------------------------------------------
// Erasure (issue 21). Faces leave their persons exactly as a re-tagged
// record's do: the person's sum and count drop, and a person left without
// faces is deleted with its descriptor sum. The vendor row is locked first,
// as tagging does, so erasure and tagging of one vendor never interleave.

/** Deletes the faces of some jobs, or of some persons, or all of a vendor's; persons left empty go too. Returns faces deleted. */
export async function dropFaces(
  trx: Transaction<Database>,
  vendorId: string,
  which: { jobIds: readonly string[] } | { personIds: readonly string[] } | 'all',
): Promise<number> {
  if (which === 'all') {
    await trx.selectFrom('vendors').select('id').where('id', '=', vendorId).forUpdate().execute();
    const faces = await trx.deleteFrom('faces').where('vendor_id', '=', vendorId).executeTakeFirst();
    await trx.deleteFrom('persons').where('vendor_id', '=', vendorId).execute();
    return Number(faces.numDeletedRows);
  }
  let q = trx.selectFrom('faces').selectAll().where('vendor_id', '=', vendorId);
  if ('jobIds' in which) {
    if (which.jobIds.length === 0) return 0;
    q = q.where('job_id', 'in', which.jobIds);
  } else {
    if (which.personIds.length === 0) return 0;
    q = q.where('person_id', 'in', which.personIds);
  }
  const first = await q.select('id').limit(1).execute();
  if (first.length === 0 && 'jobIds' in which) return 0;
  await trx.selectFrom('vendors').select('id').where('id', '=', vendorId).forUpdate().execute();
  const faces = await q.execute();
  if ('personIds' in which) {
    await trx.deleteFrom('persons').where('vendor_id', '=', vendorId).where('id', 'in', which.personIds).execute();
  } else {
    const personIds = [...new Set(faces.map((f) => f.person_id))];
    const persons = await loadPersonsById(trx, vendorId, personIds);
    for (const face of faces) leave(persons, face);
    await savePersons(trx, vendorId, persons);
  }
  if (faces.length > 0) {
    await trx
      .deleteFrom('faces')
      .where(
        'id',
        'in',
        faces.map((f) => f.id),
      )
      .execute();
  }
  return faces.length;
}

async function loadPersonsById(trx: Transaction<Database>, vendorId: string, ids: readonly string[]): Promise<Map<string, PersonState>> {
  if (ids.length === 0) return new Map();
  const rows = await trx
    .selectFrom('persons')
    .select(['id', 'face_count', 'descriptor_sum'])
    .where('vendor_id', '=', vendorId)
    .where('id', 'in', ids)
    .forUpdate()
    .execute();
  return new Map(rows.map((r) => [r.id, { id: r.id, count: r.face_count, sum: decodeSum(r.descriptor_sum), isNew: false, changed: false }]));
}

/**
 * Erases one of a vendor's persons: its faces (with their descriptors) and
 * the person (with its descriptor sum), in one transaction under the
 * vendor's lock. Returns the faces erased, or undefined when the vendor has
 * no such person.
 */
export async function erasePerson(db: Db, vendorId: string, personId: string): Promise<number | undefined> {
  return db.transaction().execute(async (trx) => {
    await trx.selectFrom('vendors').select('id').where('id', '=', vendorId).forUpdate().execute();
    const person = await trx.selectFrom('persons').select('id').where('id', '=', personId).where('vendor_id', '=', vendorId).executeTakeFirst();
    if (!person) return undefined;
    const faces = await trx.deleteFrom('faces').where('vendor_id', '=', vendorId).where('person_id', '=', personId).executeTakeFirst();
    await trx.deleteFrom('persons').where('id', '=', personId).where('vendor_id', '=', vendorId).execute();
    return Number(faces.numDeletedRows);
  });
}

/**
 * Erases all of a vendor's persons and faces, `batch` persons per
 * transaction so that no transaction holds the vendor's lock for long (a
 * vendor with a million faces would otherwise stop its own tagging for the
 * whole erasure). Returns the persons and faces erased.
 */
export async function eraseAllPersons(db: Db, vendorId: string, batch = 200): Promise<{ persons: number; faces: number }> {
  const erased = { persons: 0, faces: 0 };
  for (;;) {
    const done = await db.transaction().execute(async (trx) => {
      await trx.selectFrom('vendors').select('id').where('id', '=', vendorId).forUpdate().execute();
      const ids = (await trx.selectFrom('persons').select('id').where('vendor_id', '=', vendorId).orderBy('id').limit(batch).execute()).map((p) => p.id);
      if (ids.length === 0) {
        // Faces whose person is gone (none are expected) go too, so nothing biometric is left.
        const strays = await trx.deleteFrom('faces').where('vendor_id', '=', vendorId).executeTakeFirst();
        erased.faces += Number(strays.numDeletedRows);
        return true;
      }
      const faces = await trx.deleteFrom('faces').where('vendor_id', '=', vendorId).where('person_id', 'in', ids).executeTakeFirst();
      await trx.deleteFrom('persons').where('vendor_id', '=', vendorId).where('id', 'in', ids).execute();
      erased.faces += Number(faces.numDeletedRows);
      erased.persons += ids.length;
      return false;
    });
    if (done) return erased;
  }
}

/** Names a vendor's person (null clears the name); the row after, or undefined when the vendor has no such person. */
export async function namePerson(db: Db, vendorId: string, personId: string, name: string | null): Promise<Person | undefined> {
  await db
    .updateTable('persons')
    .set({ name, updated_at: sql<Date>`NOW(3)` })
    .where('id', '=', personId)
    .where('vendor_id', '=', vendorId)
    .execute();
  return findPerson(db, vendorId, personId);
}

export type MergeOutcome = { outcome: 'merged'; person: Person; faces: number } | { outcome: 'not-found'; personId: string };

/**
 * Merges persons `from` into `into`: their faces move to `into`, whose mean
 * follows exactly (sums and counts add up), and they are deleted. All of
 * them must be the vendor's; otherwise nothing changes and the first id not
 * found is named. A merged person may then appear twice in one photo: the
 * vendor said they are one.
 */
export async function mergePersons(db: Db, vendorId: string, into: string, from: readonly string[]): Promise<MergeOutcome> {
  return db.transaction().execute(async (trx): Promise<MergeOutcome> => {
    await trx.selectFrom('vendors').select('id').where('id', '=', vendorId).forUpdate().execute();
    const ids = [...new Set([into, ...from])];
    const persons = await loadPersonsById(trx, vendorId, ids);
    const missing = ids.find((id) => !persons.has(id));
    if (missing) return { outcome: 'not-found', personId: missing };
    const target = persons.get(into) as PersonState;
    const sources = ids.filter((id) => id !== into);
    for (const id of sources) {
      const source = persons.get(id) as PersonState;
      for (let i = 0; i < DESCRIPTOR_LENGTH; i++) target.sum[i] = (target.sum[i] as number) + (source.sum[i] as number);
      target.count += source.count;
    }
    const moved =
      sources.length > 0
        ? await trx.updateTable('faces').set({ person_id: into }).where('vendor_id', '=', vendorId).where('person_id', 'in', sources).executeTakeFirst()
        : undefined;
    if (sources.length > 0) await trx.deleteFrom('persons').where('vendor_id', '=', vendorId).where('id', 'in', sources).execute();
    await trx
      .updateTable('persons')
      .set({ face_count: target.count, descriptor_sum: encodeSum(target.sum), sketch: sketchOf(target.sum, target.count), updated_at: sql<Date>`NOW(3)` })
      .where('id', '=', into)
      .where('vendor_id', '=', vendorId)
      .execute();
    const person = await trx.selectFrom('persons').selectAll().where('id', '=', into).executeTakeFirstOrThrow();
    return { outcome: 'merged', person, faces: Number(moved?.numUpdatedRows ?? 0) };
  });
}
