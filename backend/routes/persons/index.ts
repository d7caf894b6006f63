import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { eraseAllPersons, erasePerson, findPerson, listPersonRecords, listPersons, mergePersons, namePerson } from '../../../db/repos/faces.js';
import type { Face } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import {
  deletePersonSchema,
  deletePersonsSchema,
  listPersonsSchema,
  mergePersonsSchema,
  patchPersonSchema,
  personRecordsSchema,
  type PersonRecord,
  type PersonSummary,
} from './schemas.js';
import { assertProject, projectOf, vendorOf } from '../../plugins/auth.js';

/**
 * Person filtering (seed 000): the persons face tagging grouped a vendor's
 * faces into, and the records each appears in; naming, merging and erasing
 * them (issue 21: face descriptors are biometric data the vendor controls).
 * Vendor-scoped: another vendor's person reads as not found.
 */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const reading = { auth: 'vendor', scopes: ['persons:read'] } as const;
  const writing = { auth: 'vendor', scopes: ['persons:write'], rateLimitTier: 'processing' } as const;
  // A person's faces may come from any project: changing one is for a token of the whole vendor.
  const wholeVendor = async (request: FastifyRequest) => {
    if (projectOf(request) !== null) throw new AppError('FORBIDDEN', 'persons span projects; a token restricted to one project cannot change them');
  };

  app.get('', { schema: listPersonsSchema, config: reading }, async (request) => {
    // A project-restricted token sees the persons of its project, counted there.
    const projectId = projectOf(request) ?? undefined;
    const page = await listPersons(app.db, vendorOf(request).id, { limit: request.query.limit, cursor: request.query.cursor, projectId });
    const persons: PersonSummary[] = page.items.map(({ person, recordCount, sample }) => ({
      personId: person.id,
      name: person.name,
      faceCount: person.face_count,
      recordCount,
      createdAt: person.created_at.toISOString(),
      updatedAt: person.updated_at.toISOString(),
      sample: sample ? { projectId: sample.project_id, recordId: sample.record_id, photoUrl: sample.photo_url, face: faceView(sample) } : null,
    }));
    return { persons, nextCursor: page.nextCursor };
  });

  app.get('/:personId/records', { schema: personRecordsSchema, config: reading }, async (request) => {
    const { personId } = request.params;
    if (request.query.projectId !== undefined) assertProject(request, request.query.projectId, 'querystring/projectId');
    const projectId = request.query.projectId ?? projectOf(request) ?? undefined;
    const person = await findPerson(app.db, vendorOf(request).id, personId, projectOf(request) ?? undefined);
    if (!person) throw new AppError('NOT_FOUND', 'no such person');
    const page = await listPersonRecords(app.db, vendorOf(request).id, personId, {
      limit: request.query.limit,
      cursor: request.query.cursor,
      projectId,
    });
    const records: PersonRecord[] = page.items.map((r) => ({
      projectId: r.face.project_id,
      recordId: r.face.record_id,
      photoUrl: r.photo_url,
      processedPhotoUrl: r.processed_photo_url,
      status: r.processing_status,
      jobId: r.face.job_id,
      taggedAt: r.face.created_at.toISOString(),
      face: faceView(r.face),
    }));
    return { personId, records, nextCursor: page.nextCursor };
  });

  app.delete('', { schema: deletePersonsSchema, config: writing, preHandler: wholeVendor }, async (request) => {
    const erased = await eraseAllPersons(app.db, vendorOf(request).id);
    request.log.info({ vendorId: vendorOf(request).id, ...erased }, 'vendor erased all its persons');
    return { personsErased: erased.persons, facesErased: erased.faces };
  });

  app.delete('/:personId', { schema: deletePersonSchema, config: writing, preHandler: wholeVendor }, async (request) => {
    const { personId } = request.params;
    const faces = await erasePerson(app.db, vendorOf(request).id, personId);
    if (faces === undefined) throw new AppError('NOT_FOUND', 'no such person');
    request.log.info({ vendorId: vendorOf(request).id, personId, faces }, 'vendor erased a person');
    return { personId, deleted: true as const, facesErased: faces };
  });

  app.patch('/:personId', { schema: patchPersonSchema, config: writing, preHandler: wholeVendor }, async (request) => {
    const person = await namePerson(app.db, vendorOf(request).id, request.params.personId, request.body.name);
    if (!person) throw new AppError('NOT_FOUND', 'no such person');
    return { personId: person.id, name: person.name, faceCount: person.face_count };
  });

  app.post('/:personId/merge', { schema: mergePersonsSchema, config: writing, preHandler: wholeVendor }, async (request) => {
    const { personId } = request.params;
    const from = request.body.from.filter((id) => id !== personId);
    if (from.length === 0)
      throw new AppError('BAD_REQUEST', 'from names only the person itself', {
        details: { fields: [{ path: 'body/from', message: 'must name other persons' }] },
      });
    const result = await mergePersons(app.db, vendorOf(request).id, personId, from);
    if (result.outcome === 'not-found') throw new AppError('NOT_FOUND', `no such person: ${result.personId}`);
    return { personId, name: result.person.name, faceCount: result.person.face_count, merged: from, facesMoved: result.faces };
  });
};

export default routes;

function faceView(face: Face) {
  return {
    faceId: face.id,
    box: { x: face.box_x, y: face.box_y, width: face.box_width, height: face.box_height },
    imageWidth: face.image_width,
    imageHeight: face.image_height,
    score: face.score,
    distance: face.distance,
  };
}
