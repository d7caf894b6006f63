import { Type, type Static } from '@sinclair/typebox';
import { vendorIdString, withErrors } from '../../schemas/common.js';

/** Request and response bodies of /api/persons: the persons face tagging grouped a vendor's faces into. */
export const PageQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'items per page' }),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
);

export const PersonRecordsQuery = Type.Object(
  {
    ...PageQuery.properties,
    projectId: Type.Optional(vendorIdString('only records of this project')),
  },
  { additionalProperties: false },
);

export const PersonParams = Type.Object({ personId: Type.String({ minLength: 1, maxLength: 64 }) });

const FaceBox = Type.Object(
  { x: Type.Integer(), y: Type.Integer(), width: Type.Integer(), height: Type.Integer() },
  { description: 'pixels, in the image the face was found in (imageWidth × imageHeight)' },
);

const FaceView = Type.Object({
  faceId: Type.String(),
  box: FaceBox,
  imageWidth: Type.Integer(),
  imageHeight: Type.Integer(),
  score: Type.Number({ description: 'detector confidence' }),
  distance: Type.Union([Type.Number(), Type.Null()], {
    description: "descriptor distance to the person's mean when the face joined; null when it founded the person",
  }),
});

const PersonName = Type.Union([Type.String({ minLength: 1, maxLength: 191 }), Type.Null()], { description: 'a name you gave the person' });

export const PersonSummary = Type.Object({
  personId: Type.String(),
  name: PersonName,
  faceCount: Type.Integer(),
  recordCount: Type.Integer({ description: 'records (photos) the person appears in' }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  sample: Type.Union(
    [Type.Object({ projectId: Type.String(), recordId: Type.String(), photoUrl: Type.Union([Type.String(), Type.Null()]), face: FaceView }), Type.Null()],
    { description: 'the most recently tagged face of the person, to show as its picture' },
  ),
});
export type PersonSummary = Static<typeof PersonSummary>;

export const PersonsPage = Type.Object({
  persons: Type.Array(PersonSummary),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last page' }),
});

export const PersonRecord = Type.Object({
  projectId: Type.String(),
  recordId: Type.String(),
  photoUrl: Type.Union([Type.String(), Type.Null()], { description: 'the source photo of the record' }),
  processedPhotoUrl: Type.Union([Type.String(), Type.Null()], { description: "the record's latest result" }),
  status: Type.Union([Type.String(), Type.Null()], { description: "the record's processing status" }),
  jobId: Type.String({ description: 'the job that tagged the face' }),
  taggedAt: Type.String({ format: 'date-time' }),
  face: FaceView,
});
export type PersonRecord = Static<typeof PersonRecord>;

export const PersonRecordsPage = Type.Object({
  personId: Type.String(),
  records: Type.Array(PersonRecord),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export const listPersonsSchema = {
  tags: ['persons'],
  operationId: 'listPersons',
  summary: 'The persons your tagged faces were grouped into, oldest first',
  security: [{ bearerAuth: [] }],
  querystring: PageQuery,
  response: withErrors({ 200: PersonsPage }, 429),
};

export const personRecordsSchema = {
  tags: ['persons'],
  operationId: 'listPersonRecords',
  summary: 'The records (photos) one of your persons appears in',
  security: [{ bearerAuth: [] }],
  params: PersonParams,
  querystring: PersonRecordsQuery,
  response: withErrors({ 200: PersonRecordsPage }, 404, 429),
};

const security = [{ bearerAuth: [] }];

export const PersonNamed = Type.Object({ personId: Type.String(), name: PersonName, faceCount: Type.Integer() });

export const deletePersonSchema = {
  tags: ['persons'],
  operationId: 'deletePerson',
  summary: 'Erase one of your persons: its faces and their descriptors',
  security,
  params: PersonParams,
  response: withErrors({ 200: Type.Object({ personId: Type.String(), deleted: Type.Literal(true), facesErased: Type.Integer() }) }, 404, 429),
};

export const deletePersonsSchema = {
  tags: ['persons'],
  operationId: 'deleteAllPersons',
  summary: 'Erase all your persons, faces and face descriptors',
  security,
  response: withErrors({ 200: Type.Object({ personsErased: Type.Integer(), facesErased: Type.Integer() }) }, 429),
};

export const PersonPatch = Type.Object({ name: PersonName }, { additionalProperties: false });

export const patchPersonSchema = {
  tags: ['persons'],
  operationId: 'namePerson',
  summary: 'Name one of your persons (null or an empty name clears it)',
  security,
  params: PersonParams,
  body: PersonPatch,
  response: withErrors({ 200: PersonNamed }, 404, 429),
};

export const MergeBody = Type.Object(
  {
    from: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      minItems: 1,
      maxItems: 100,
      uniqueItems: true,
      description: 'persons to merge into this one; they are deleted and their faces join it',
    }),
  },
  { additionalProperties: false },
);

export const mergePersonsSchema = {
  tags: ['persons'],
  operationId: 'mergePersons',
  summary: 'Merge some of your persons into one',
  security,
  params: PersonParams,
  body: MergeBody,
  response: withErrors({ 200: Type.Object({ ...PersonNamed.properties, merged: Type.Array(Type.String()), facesMoved: Type.Integer() }) }, 404, 429),
};
