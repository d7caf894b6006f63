import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { findPerson, listPersonRecords, listPersons } from '../../../db/repos/faces.js';
import type { Face } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import { listPersonsSchema, personRecordsSchema, type PersonRecord, type PersonSummary } from './schemas.js';
import { assertProject, projectOf, vendorOf } from '../../plugins/auth.js';

/**
 * Person filtering (seed 000): the persons face tagging grouped a vendor's
 * faces into, and the records each appears in. Vendor-scoped: another
 * vendor's person reads as not found.
 */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const reading = { auth: 'vendor', scopes: ['persons:read'] } as const;

  app.get('', { schema: listPersonsSchema, config: reading }, async (request) => {
    // A project-restricted token sees the persons of its project, counted there.
    const projectId = projectOf(request) ?? undefined;
    const page = await listPersons(app.db, vendorOf(request).id, { limit: request.query.limit, cursor: request.query.cursor, projectId });
    const persons: PersonSummary[] = page.items.map(({ person, recordCount, sample }) => ({
      personId: person.id,
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
