import { Type, type Static } from '@sinclair/typebox';
import { Operations } from '../../../jobs/operations.js';
import { JOB_STATES } from '../../../jobs/queues.js';
import { withErrors } from '../../schemas/common.js';

/** Request and response bodies of /api/image-queue (seed 003, "API Endpoints"). */
export const RecordId = Type.String({ minLength: 1, maxLength: 191, description: 'your id for the record this photo belongs to' });
export const ProjectId = Type.String({ minLength: 1, maxLength: 191, description: 'your project id' });
export const PhotoUrl = Type.String({ minLength: 1, maxLength: 2048, description: 'http(s) URL of the source photo' });
export const VendorIdField = Type.String({ maxLength: 64, description: "optional; must equal the token's vendor (403 otherwise)" });

export const ProcessQueueBody = Type.Object(
  {
    recordId: RecordId,
    projectId: ProjectId,
    photoUrl: PhotoUrl,
    operations: Operations,
    vendorId: Type.Optional(VendorIdField),
  },
  { additionalProperties: false },
);
export type ProcessQueueBody = Static<typeof ProcessQueueBody>;

export const QueuedResponse = Type.Object({
  success: Type.Literal(true),
  jobId: Type.String(),
  recordId: Type.String(),
  statusUrl: Type.String({ description: 'GET this (with your token) to follow the job' }),
  message: Type.String(),
  estimatedTime: Type.String({ description: 'from the current queue depth and recent job durations' }),
});

export const JobParams = Type.Object({ jobId: Type.String({ minLength: 1, maxLength: 64 }) });

export const JobState = Type.Unsafe<(typeof JOB_STATES)[number]>({ type: 'string', enum: [...JOB_STATES] });

export const JobError = Type.Object({ code: Type.String(), message: Type.String() });

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
    batchId: Type.Union([Type.String(), Type.Null()]),
    photoUrl: Type.Union([Type.String(), Type.Null()]),
    options: Type.Record(Type.String(), Type.Unknown()),
  }),
  result: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  error: Type.Union([JobError, Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  durationMs: Type.Union([Type.Integer(), Type.Null()]),
});
export type JobStatusResponse = Static<typeof JobStatusResponse>;

export const processQueueSchema = {
  tags: ['image-queue'],
  summary: 'Queue one photo for processing (an ordered list of operations)',
  security: [{ bearerAuth: [] }],
  body: ProcessQueueBody,
  response: withErrors({ 202: QueuedResponse }, 403, 429),
};

export const jobStatusSchema = {
  tags: ['image-queue'],
  summary: 'State, progress and result of one of your jobs',
  security: [{ bearerAuth: [] }],
  params: JobParams,
  response: withErrors({ 200: JobStatusResponse }, 404, 429),
};
