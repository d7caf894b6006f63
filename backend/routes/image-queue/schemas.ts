import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import type { PipelineRequest } from '../../../jobs/presets.js';
import { BUILTIN_KINDS, JOB_REGISTRY, type AnyJobKind, type JobKind, type KindSet } from '../../../jobs/kinds.js';
import { JOB_STATES } from '../../../jobs/queues.js';
import { vendorIdString, withErrors } from '../../schemas/common.js';

/**
 * Request and response bodies of /api/image-queue (seed 003, "API Endpoints").
 * Each enqueue route takes JSON (a `photoUrl`) or multipart/form-data (the
 * photo itself); what each kind adds to a body is its registry entry's
 * `requestFields` (jobs/kinds.ts).
 */
export const RecordId = vendorIdString('your id for the record this photo belongs to');
export const ProjectId = vendorIdString('your project id');
export const PhotoUrl = Type.String({ minLength: 1, maxLength: 2048, description: 'http(s) URL of the source photo' });
export const VendorIdField = Type.String({ maxLength: 64, description: "optional; must equal the token's vendor (403 otherwise)" });
export const UploadedPhoto = Type.String({ format: 'binary', description: 'the photo (jpeg, png, webp, avif; heic where the server can read it)' });

/** Hard ceiling of a bulk request's items; the plan's cap (default 100) is checked in code. */
export const BULK_HARD_MAX = 10_000;

export interface Bodies {
  json: TObject;
  multipart: TObject;
}

export function singleBodies(spec: AnyJobKind): Bodies {
  const json = Type.Object(
    { recordId: RecordId, projectId: ProjectId, photoUrl: PhotoUrl, ...spec.requestFields, vendorId: Type.Optional(VendorIdField) },
    { additionalProperties: false },
  );
  const multipart = Type.Object(
    { recordId: RecordId, projectId: ProjectId, photo: UploadedPhoto, ...spec.requestFields, vendorId: Type.Optional(VendorIdField) },
    { additionalProperties: false, description: 'multipart/form-data: the photo as file field `photo`; operations/options as JSON text' },
  );
  return { json, multipart };
}

const BulkItem = Type.Object({ recordId: RecordId, photoUrl: PhotoUrl }, { additionalProperties: false });

export function bulkBodies(spec: AnyJobKind): Bodies {
  const json = Type.Object(
    {
      projectId: ProjectId,
      recordIds: Type.Optional(Type.Array(RecordId, { minItems: 1, maxItems: BULK_HARD_MAX, description: 'with photoUrls, same length and order' })),
      photoUrls: Type.Optional(Type.Array(PhotoUrl, { minItems: 1, maxItems: BULK_HARD_MAX })),
      items: Type.Optional(Type.Array(BulkItem, { minItems: 1, maxItems: BULK_HARD_MAX, description: 'instead of recordIds + photoUrls' })),
      ...spec.requestFields,
      vendorId: Type.Optional(VendorIdField),
    },
    { additionalProperties: false },
  );
  const multipart = Type.Object(
    {
      projectId: ProjectId,
      recordIds: Type.Array(RecordId, { minItems: 1, maxItems: BULK_HARD_MAX, description: 'one per photo, in the same order' }),
      photos: Type.Array(UploadedPhoto, { minItems: 1, maxItems: BULK_HARD_MAX, description: 'file fields `photos`, in the order of recordIds' }),
      ...spec.requestFields,
      vendorId: Type.Optional(VendorIdField),
    },
    { additionalProperties: false, description: 'multipart/form-data: repeated `recordIds` fields and `photos` files, in the same order' },
  );
  return { json, multipart };
}

export const RemoveBgBodies = singleBodies(JOB_REGISTRY['remove-bg']);
export const CropFaceBodies = singleBodies(JOB_REGISTRY['face-crop']);
export const ProcessBodies = singleBodies(JOB_REGISTRY.process);
export const BulkRemoveBgBodies = bulkBodies(JOB_REGISTRY['remove-bg']);
export const BulkCropFaceBodies = bulkBodies(JOB_REGISTRY['face-crop']);
export const BulkProcessBodies = bulkBodies(JOB_REGISTRY.process);

/** Either body of a single-photo route, as the handler sees it after validation. */
export interface SingleBody {
  recordId: string;
  projectId: string;
  photoUrl?: string;
  photo?: string;
  vendorId?: string;
  mode?: string;
  options?: Record<string, unknown>;
  operations?: PipelineRequest['operations'];
  preset?: PipelineRequest['preset'];
  presetOptions?: PipelineRequest['presetOptions'];
}

export interface BulkBody {
  projectId: string;
  recordIds?: string[];
  photoUrls?: string[];
  photos?: string[];
  items?: Static<typeof BulkItem>[];
  vendorId?: string;
  mode?: string;
  options?: Record<string, unknown>;
  operations?: PipelineRequest['operations'];
  preset?: PipelineRequest['preset'];
  presetOptions?: PipelineRequest['presetOptions'];
}

export const QueuedResponse = Type.Object({
  success: Type.Literal(true),
  jobId: Type.String(),
  recordId: Type.String(),
  statusUrl: Type.String({ description: 'GET this (with your token) to follow the job' }),
  message: Type.String(),
  estimatedTime: Type.String({ description: 'from the current queue depth, worker concurrency and recent job durations' }),
});
export type QueuedResponse = Static<typeof QueuedResponse>;

export const BulkQueuedResponse = Type.Object({
  success: Type.Literal(true),
  jobIds: Type.Array(Type.String(), { description: 'in request order' }),
  count: Type.Integer(),
  batchId: Type.String(),
  statusUrl: Type.String({ description: 'GET this (with your token) for the batch: counts by state and each item' }),
  message: Type.String(),
  estimatedTime: Type.String({ description: 'until the whole batch is done' }),
});
export type BulkQueuedResponse = Static<typeof BulkQueuedResponse>;

export const JobParams = Type.Object({ jobId: Type.String({ minLength: 1, maxLength: 64 }) });
export const BatchParams = Type.Object({ batchId: Type.String({ minLength: 1, maxLength: 64 }) });

export const JobState = Type.Unsafe<(typeof JOB_STATES)[number]>({ type: 'string', enum: [...JOB_STATES] });
export function jobKindSchema(kinds: KindSet) {
  return Type.Unsafe<JobKind>({ type: 'string', enum: kinds.list.map((spec) => spec.kind) });
}
export const JobKindSchema = jobKindSchema(BUILTIN_KINDS);

export const JobError = Type.Object({ code: Type.String(), message: Type.String() });
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const JobStatusResponse = Type.Object({
  id: Type.String(),
  state: JobState,
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  attempts: Type.Integer(),
  maxAttempts: Type.Integer(),
  data: Type.Object({
    kind: Type.String(),
    recordId: Type.String(),
    projectId: Type.String(),
    batchId: Nullable(Type.String()),
    source: Type.Union([Type.Literal('url'), Type.Literal('upload')]),
    photoUrl: Nullable(Type.String({ description: 'the source URL you sent (null for uploads)' })),
    options: Type.Record(Type.String(), Type.Unknown()),
  }),
  result: Nullable(Type.Record(Type.String(), Type.Unknown())),
  error: Nullable(JobError),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: Nullable(Type.String({ format: 'date-time' })),
  finishedAt: Nullable(Type.String({ format: 'date-time' })),
  durationMs: Nullable(Type.Integer()),
});
export type JobStatusResponse = Static<typeof JobStatusResponse>;

function jobListQuery(kinds: KindSet) {
  return Type.Object(
    {
      status: Type.Optional(Type.Array(JobState, { description: 'one or more states (repeat the parameter)' })),
      kind: Type.Optional(jobKindSchema(kinds)),
      batchId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      cursor: Type.Optional(Type.String({ pattern: '^[0-9A-HJKMNP-TV-Z]{26}$', description: 'nextCursor of the previous page' })),
      limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    },
    { additionalProperties: false },
  );
}
export const JobListQuery = jobListQuery(BUILTIN_KINDS);

export const JobListResponse = Type.Object({
  jobs: Type.Array(JobStatusResponse, { description: 'newest first' }),
  nextCursor: Nullable(Type.String({ description: 'pass as cursor for the next page; null on the last page' })),
});

const StateCounts = Type.Object({
  queued: Type.Integer(),
  active: Type.Integer(),
  completed: Type.Integer(),
  failed: Type.Integer(),
  dead: Type.Integer(),
  cancelled: Type.Integer(),
});

export const BatchResponse = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  projectId: Type.String(),
  total: Type.Integer(),
  state: Type.Union(
    ['queued', 'active', 'completed', 'partial', 'failed'].map((s) => Type.Literal(s)),
    {
      description: 'completed: every item completed; partial: all finished, some failed; failed: all finished, none completed',
    },
  ),
  progress: Type.Integer({ minimum: 0, maximum: 100, description: 'mean progress of the items' }),
  counts: StateCounts,
  createdAt: Type.String({ format: 'date-time' }),
  finishedAt: Nullable(Type.String({ format: 'date-time' })),
  items: Type.Array(
    Type.Object({
      jobId: Type.String(),
      recordId: Type.String(),
      state: JobState,
      progress: Type.Integer(),
      attempts: Type.Integer(),
      result: Nullable(Type.Record(Type.String(), Type.Unknown())),
      error: Nullable(JobError),
      finishedAt: Nullable(Type.String({ format: 'date-time' })),
    }),
    { description: 'in request order' },
  ),
});
export type BatchResponse = Static<typeof BatchResponse>;

export const LedgerQueueCounts = Type.Object({
  waiting: Type.Integer({ description: 'queued, not yet started' }),
  active: Type.Integer(),
  completed: Type.Integer(),
  failed: Type.Integer({ description: 'failed without retry (bad image, no face, …)' }),
  delayed: Type.Integer({ description: 'waiting out a retry backoff' }),
  paused: Type.Integer({ description: 'waiting in a queue an operator paused' }),
  dead: Type.Integer({ description: 'out of attempts (dead-lettered)' }),
  cancelled: Type.Integer({ description: 'stopped by the vendor' }),
});
export type LedgerQueueCounts = Static<typeof LedgerQueueCounts>;

export const QueueDepth = Nullable(
  Type.Object(
    {
      waiting: Type.Integer(),
      active: Type.Integer(),
      delayed: Type.Integer(),
      paused: Type.Integer(),
      isPaused: Type.Boolean(),
    },
    { description: 'the whole queue, every vendor (null while Redis is unreachable)' },
  ),
);

const QueueStats = Type.Object({ ...LedgerQueueCounts.properties, queue: QueueDepth });
export type QueueStats = Static<typeof QueueStats>;

/** One field per kind, named by its stats key (seed 003: backgroundRemoval, faceCrop, imageProcessing). */
function perKind<T extends TSchema>(kinds: KindSet, schema: T): Record<string, T> {
  return Object.fromEntries(kinds.list.map((spec) => [spec.statKey, schema]));
}

function queueStatsResponse(kinds: KindSet) {
  return Type.Object({
    scope: Type.Union([Type.Literal('vendor'), Type.Literal('all')], { description: 'vendor: your own jobs; all: every vendor (admin token)' }),
    ...perKind(kinds, QueueStats),
    vendors: Type.Optional(
      Type.Array(Type.Object({ vendorId: Type.String(), ...perKind(kinds, LedgerQueueCounts) }), {
        description: 'admin only: the counts of each vendor with jobs',
      }),
    ),
    timestamp: Type.String({ format: 'date-time' }),
  });
}
export const QueueStatsResponse = queueStatsResponse(BUILTIN_KINDS);

type StatKey = (typeof JOB_REGISTRY)[keyof typeof JOB_REGISTRY]['statKey'];
export type QueueStatsResponse = {
  scope: 'vendor' | 'all';
  vendors?: ({ vendorId: string } & Record<StatKey, LedgerQueueCounts>)[];
  timestamp: string;
} & Record<StatKey, QueueStats>;

const security = [{ bearerAuth: [] }];
const IdempotencyHeader = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ description: 'same key + same body within 24 h returns the first response; another body is 422' })),
});

const PreferHeader = Type.Object({
  ...IdempotencyHeader.properties,
  prefer: Type.Optional(
    Type.String({
      description: 'RFC 7240 `wait=N` (at most 60 s): answer 200 with the finished job (and Preference-Applied) if it ends within N seconds, else 202 as usual',
    }),
  ),
});

export function enqueueSchema(route: { operationId: string; summary: string }, bodies: Bodies, ok: TSchema, finished?: TSchema) {
  return {
    tags: ['image-queue'],
    operationId: route.operationId,
    summary: route.summary,
    security,
    headers: finished ? PreferHeader : IdempotencyHeader,
    body: { content: { 'application/json': { schema: bodies.json }, 'multipart/form-data': { schema: bodies.multipart } } },
    response: withErrors(finished ? { 200: finished, 202: ok } : { 202: ok }, 403, 409, 413, 415, 422, 429),
  };
}

/** The two enqueue routes' schemas of a kind, from its registry entry. */
export function enqueueSchemas(spec: AnyJobKind) {
  return {
    single: enqueueSchema(spec.routes.single, singleBodies(spec), QueuedResponse, JobStatusResponse),
    bulk: enqueueSchema(spec.routes.bulk, bulkBodies(spec), BulkQueuedResponse),
  };
}

/** Long-poll: the longest a status read may be held (seconds). */
export const WAIT_MAX_S = 60;

export const WaitQuery = Type.Object(
  {
    wait: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: WAIT_MAX_S,
        description:
          'long-poll: hold the request up to this many seconds until the state changes (or, with If-None-Match, until the body differs from that ETag); a finished one answers at once',
      }),
    ),
  },
  { additionalProperties: false },
);

const ConditionalHeaders = Type.Object({
  'if-none-match': Type.Optional(Type.String({ description: 'the ETag of a previous response: 304 without a body while it is still current' })),
});

const NotModified = Type.Null({ description: 'Not Modified: the If-None-Match ETag is still current (no body)' });

export const jobStatusSchema = {
  tags: ['image-queue'],
  operationId: 'getJob',
  summary: 'State, progress and result of one of your jobs',
  security,
  params: JobParams,
  querystring: WaitQuery,
  headers: ConditionalHeaders,
  response: withErrors({ 200: JobStatusResponse, 304: NotModified }, 404, 429),
};

export function jobListSchemaFor(kinds: KindSet) {
  return {
    tags: ['image-queue'],
    operationId: 'listJobs',
    summary: 'Your jobs, newest first, filtered by state, kind or batch; cursor-paginated',
    security,
    querystring: jobListQuery(kinds),
    headers: ConditionalHeaders,
    response: withErrors({ 200: JobListResponse, 304: NotModified }, 404, 429),
  };
}

export const batchSchema = {
  tags: ['image-queue'],
  operationId: 'getBatch',
  summary: 'A bulk request: counts by state and each item in request order',
  security,
  params: BatchParams,
  querystring: WaitQuery,
  headers: ConditionalHeaders,
  response: withErrors({ 200: BatchResponse, 304: NotModified }, 404, 429),
};

export function queueStatsSchemaFor(kinds: KindSet) {
  return {
    tags: ['image-queue'],
    operationId: 'getQueueStats',
    summary: 'Jobs by queue and state: yours (from the ledger) and the global queue depth',
    security,
    response: withErrors({ 200: queueStatsResponse(kinds) }, 429),
  };
}

// ---------------------------------------------------------------------------
// A vendor's controls over its jobs and batches (issue 21).

export const JobDeletedResponse = Type.Object({
  jobId: Type.String(),
  deleted: Type.Literal(true),
  filesRemoved: Type.Boolean({
    description: 'false when the stored files are still being removed (a job that was running, or storage was slow): they go soon',
  }),
});
export const JobCancelledResponse = Type.Object({
  jobId: Type.String(),
  state: Type.Literal('cancelled'),
  was: Type.Union([Type.Literal('queued'), Type.Literal('active')], { description: 'an active attempt is stopped' }),
});
export const JobRetriedResponse = Type.Object({
  jobId: Type.String(),
  state: Type.Literal('queued'),
  attempts: Type.Integer({ description: 'attempts made so far' }),
  maxAttempts: Type.Integer(),
});
export const BatchActionResponse = Type.Object({
  batchId: Type.String(),
  jobIds: Type.Array(Type.String(), { description: 'the jobs the action applied to; jobs in another state were left as they were' }),
});

export const deleteJobSchema = {
  tags: ['image-queue'],
  operationId: 'deleteJob',
  summary: 'Delete one of your jobs, whatever its state: its results, record, faces and stored files (a running attempt is stopped)',
  security,
  params: JobParams,
  response: withErrors({ 200: JobDeletedResponse }, 404, 429),
};
export const cancelJobSchema = {
  tags: ['image-queue'],
  operationId: 'cancelJob',
  summary: 'Cancel a queued or running job (state `cancelled`); a running attempt stops its work',
  security,
  params: JobParams,
  response: withErrors({ 200: JobCancelledResponse }, 404, 409, 429),
};
export const retryJobSchema = {
  tags: ['image-queue'],
  operationId: 'retryJob',
  summary: 'Queue a failed, dead or cancelled job again, with a fresh set of attempts',
  security,
  params: JobParams,
  response: withErrors({ 202: JobRetriedResponse }, 404, 409, 429),
};
export const deleteBatchSchema = {
  tags: ['image-queue'],
  operationId: 'deleteBatch',
  summary: 'Delete a batch and every job in it, with their results and stored files',
  security,
  params: BatchParams,
  response: withErrors({ 200: BatchActionResponse }, 404, 429),
};
export const cancelBatchSchema = {
  tags: ['image-queue'],
  operationId: 'cancelBatch',
  summary: "Cancel the batch's queued and running jobs",
  security,
  params: BatchParams,
  response: withErrors({ 200: BatchActionResponse }, 404, 429),
};
export const retryBatchSchema = {
  tags: ['image-queue'],
  operationId: 'retryBatch',
  summary: "Queue the batch's failed, dead and cancelled jobs again",
  security,
  params: BatchParams,
  response: withErrors({ 202: BatchActionResponse }, 404, 429),
};
